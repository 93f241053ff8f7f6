//! Stock PostgreSQL 15 clients against the page service on a real socket:
//! pg_basebackup fetches a branch that starts without redo, psql fetches
//! pages, and bad input gets a clear ErrorResponse.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../datadir/tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{postgres_dir, scratch, Postgres};
use datadir::bootstrap::postgres_command;
use page_service::{MapResolver, PageServiceConfig};
use postgres_wal::Lsn;
use storage::{Repository, RepositoryConfig, TenantId, Timeline, TimelineId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const NO_WAL: &[&str] = &["-X", "none"];

struct Fixture {
    root: tempfile::TempDir,
    tenant: TenantId,
    timeline: Arc<Timeline>,
    lsn: Lsn,
    original_dump: String,
    port: u16,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    _repo: Repository,
}

async fn fixture() -> Fixture {
    fixture_with(8).await
}

async fn fixture_with(max_connections: usize) -> Fixture {
    let root = scratch();
    let orig = postgres_dir(&root.path().join("orig"));
    datadir::run_initdb(common::PG_BIN.as_ref(), &orig).unwrap();
    let repo = Repository::open(&root.path().join("repo"), RepositoryConfig::default()).unwrap();
    let timeline = repo
        .create_timeline(TimelineId::generate(), 15, Lsn::INVALID)
        .unwrap();
    let stats = datadir::import_datadir(&timeline, &orig).unwrap();
    let sockets = postgres_dir(&root.path().join("sock-orig"));
    let original = Postgres::start(&orig, &sockets, 5432);
    let original_dump = original.dump("postgres");
    drop(original);

    let tenant = TenantId::generate();
    let resolver = Arc::new(MapResolver::default());
    resolver.insert(tenant, timeline.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let shutdown = CancellationToken::new();
    let config = PageServiceConfig {
        max_connections,
        wait_lsn_timeout: Duration::from_millis(200),
        startup_timeout: Duration::from_secs(2),
        ..PageServiceConfig::default()
    };
    let server = tokio::spawn(page_service::serve(
        listener,
        resolver,
        config,
        shutdown.clone(),
    ));
    Fixture {
        root,
        tenant,
        timeline,
        lsn: stats.lsn,
        original_dump,
        port,
        shutdown,
        server,
        _repo: repo,
    }
}

impl Fixture {
    fn options(&self, extra: &str) -> String {
        format!(
            "options='-c sediment.tenant={} -c sediment.timeline={}{extra}'",
            self.tenant,
            self.timeline.id()
        )
    }

    /// Runs pg_basebackup (as the postgres user) and returns (success, stderr).
    async fn pg_basebackup(
        &self,
        target: &std::path::Path,
        connstr: String,
        format: &str,
        extra: &[&str],
    ) -> (bool, String) {
        let mut command = postgres_command(&common::bin("pg_basebackup")).unwrap();
        command
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg("-D")
            .arg(target)
            .args(["-F", format, "-P", "-d", &connstr])
            .args(extra);
        let output = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::task::spawn_blocking(move || command.output().unwrap()),
        )
        .await
        .expect("pg_basebackup hung")
        .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn check_starts_cleanly(&self, pgdata: &std::path::Path, name: &str) {
        common::give_tree_to_postgres(pgdata);
        let sockets = postgres_dir(&self.root.path().join(format!("sock-{name}")));
        let restored = Postgres::start(pgdata, &sockets, 5432);
        let log = restored.log_text();
        assert!(!log.contains("redo starts"), "WAL replayed:\n{log}");
        assert_eq!(restored.databases(), ["postgres", "template0", "template1"]);
        assert_eq!(restored.dump("postgres"), self.original_dump);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_basebackup_fetches_a_branch_that_starts_without_redo() {
    let fx = fixture().await;

    // Plain format, explicit LSN.
    let plain = postgres_dir(&fx.root.path().join("out")).join("plain");
    let (ok, stderr) = fx
        .pg_basebackup(
            &plain,
            fx.options(&format!(" -c sediment.lsn={}", fx.lsn)),
            "p",
            &["-X", "none"],
        )
        .await;
    assert!(ok, "pg_basebackup -Fp failed: {stderr}");
    // The manifest it received checks out, WAL range included.
    let mut verify = postgres_command(&common::bin("pg_verifybackup")).unwrap();
    verify.arg(&plain);
    let verified = common::run(verify);
    assert!(verified.contains("successfully verified"), "{verified}");
    fx.check_starts_cleanly(&plain, "plain");

    // Tar format, default LSN (the last record).
    let tar_dir = postgres_dir(&fx.root.path().join("tar"));
    let (ok, stderr) = fx
        .pg_basebackup(
            &tar_dir,
            fx.options(""),
            "t",
            &["-X", "fetch", "--no-manifest"],
        )
        .await;
    assert!(ok, "pg_basebackup -Ft failed: {stderr}");
    let tar_bytes = std::fs::read(tar_dir.join("base.tar")).unwrap();
    let unpacked = fx.root.path().join("from-tar");
    common::untar(&tar_bytes, &unpacked);
    fx.check_starts_cleanly(&unpacked, "from-tar");

    fx.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), fx.server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_lsns_and_commands_get_clear_errors() {
    let fx = fixture().await;
    let target = postgres_dir(&fx.root.path().join("out")).join("never");

    let unknown_tenant = format!(
        "options='-c sediment.tenant={} -c sediment.timeline={}'",
        TenantId::generate(),
        fx.timeline.id()
    );
    let (ok, stderr) = fx.pg_basebackup(&target, unknown_tenant, "p", NO_WAL).await;
    assert!(!ok && stderr.contains("not found"), "{stderr}");

    let unknown_timeline = format!(
        "options='-c sediment.tenant={} -c sediment.timeline={}'",
        fx.tenant,
        TimelineId::generate()
    );
    let (ok, stderr) = fx
        .pg_basebackup(&target, unknown_timeline, "p", NO_WAL)
        .await;
    assert!(!ok && stderr.contains("not found in tenant"), "{stderr}");

    let (ok, stderr) = fx
        .pg_basebackup(&target, fx.options(" -c sediment.lsn=FF/0"), "p", NO_WAL)
        .await;
    assert!(!ok && stderr.contains("not in this timeline"), "{stderr}");

    let (ok, stderr) = fx
        .pg_basebackup(&target, "options='-c work_mem=1MB'".into(), "p", NO_WAL)
        .await;
    assert!(!ok && stderr.contains("must name a timeline"), "{stderr}");

    // Raw protocol: malformed commands answer ErrorResponse + ReadyForQuery.
    let replication = vec![
        ("user", "postgres".to_owned()),
        ("replication", "true".to_owned()),
        (
            "options",
            format!(
                "-c sediment.tenant={} -c sediment.timeline={}",
                fx.tenant,
                fx.timeline.id()
            ),
        ),
    ];
    let mut client = RawClient::connect(fx.port, &replication).await;
    for bad in [
        "BASE_BACKUP (BOGUS)",
        "BASE_BACKUP (LABEL 'unterminated",
        "BASE_BACKUP (MANIFEST 'maybe')",
        "SELECT 1",
        "SHOW no_such_setting",
        "pagestream_get 1 2 3",
    ] {
        let reply = client.query(bad).await;
        assert!(reply.error.is_some(), "{bad}: no error");
        assert!(reply.ready, "{bad}: no ReadyForQuery");
    }
    let reply = client.query("IDENTIFY_SYSTEM").await;
    assert!(reply.error.is_none(), "{:?}", reply.error);
    assert_eq!(
        reply.rows[0][2].as_deref(),
        Some(fx.lsn.to_string().as_str())
    );

    // A non-replication connection cannot take base backups.
    let mut plain = RawClient::connect(fx.port, &[("user", "postgres".to_owned())]).await;
    let reply = plain.query("BASE_BACKUP").await;
    assert!(reply.error.unwrap().contains("replication connection"));

    // Garbage instead of a startup packet closes the connection, nothing else.
    let mut garbage = tokio::net::TcpStream::connect(("127.0.0.1", fx.port))
        .await
        .unwrap();
    garbage.write_all(&[0xff; 64]).await.unwrap();
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), garbage.read_to_end(&mut sink))
        .await
        .expect("server kept a garbage connection open")
        .ok();

    // Shutdown closes live connections with a FATAL and stops the server.
    fx.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), fx.server)
        .await
        .unwrap()
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.stream.read_to_end(&mut rest)).await;
    assert!(String::from_utf8_lossy(&rest).contains("shutting down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagestream_get_returns_the_stored_page_through_psql() {
    let fx = fixture().await;
    // pg_class's first block in database 1 (template1); relfilenode 1259 in a fresh cluster.
    let original = std::fs::read(fx.root.path().join("orig/base/1/1259")).unwrap();
    let query = format!(
        "pagestream_get {} {} 1663 1 1259 main 0 {}",
        fx.tenant,
        fx.timeline.id(),
        fx.lsn
    );
    let mut command = postgres_command(&common::bin("psql")).unwrap();
    command.args([
        "-X",
        "-A",
        "-t",
        "-h",
        "127.0.0.1",
        "-p",
        &fx.port.to_string(),
        "-U",
        "postgres",
    ]);
    command.args(["-c", &query]);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let page = hex::decode(text.trim().trim_start_matches("\\x")).unwrap();
    assert_eq!(page, original[..8192]);

    let missing = format!(
        "pagestream_get {} {} 1663 1 1259 main 99999 {}",
        fx.tenant,
        fx.timeline.id(),
        fx.lsn
    );
    let mut client = RawClient::connect(fx.port, &[("user", "postgres".to_owned())]).await;
    let reply = client.query(&missing).await;
    assert!(reply.error.unwrap().contains("no value"));
    fx.shutdown.cancel();
}

/// A minimal protocol client for inspecting raw replies.
struct RawClient {
    stream: tokio::net::TcpStream,
}

#[derive(Debug, Default)]
struct Reply {
    error: Option<String>,
    rows: Vec<Vec<Option<String>>>,
    ready: bool,
}

impl RawClient {
    async fn connect(port: u16, params: &[(&str, String)]) -> RawClient {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let packet = startup_packet(params);
        stream.write_all(&packet).await.unwrap();
        let mut client = RawClient { stream };
        let reply = client.read_until_ready().await;
        assert!(reply.error.is_none(), "startup failed: {:?}", reply.error);
        client
    }

    async fn query(&mut self, text: &str) -> Reply {
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&((text.len() + 5) as u32).to_be_bytes());
        msg.extend_from_slice(text.as_bytes());
        msg.push(0);
        self.stream.write_all(&msg).await.unwrap();
        self.read_until_ready().await
    }

    async fn read_until_ready(&mut self) -> Reply {
        tokio::time::timeout(Duration::from_secs(30), async {
            let mut reply = Reply::default();
            loop {
                let tag = self.stream.read_u8().await.unwrap();
                let len = self.stream.read_u32().await.unwrap() as usize;
                let mut body = vec![0u8; len - 4];
                self.stream.read_exact(&mut body).await.unwrap();
                match tag {
                    b'E' => {
                        let text = String::from_utf8_lossy(&body).into_owned();
                        reply.error = Some(text);
                    }
                    b'D' => reply.rows.push(parse_row(&body)),
                    b'Z' => {
                        reply.ready = true;
                        return reply;
                    }
                    _ => {}
                }
            }
        })
        .await
        .expect("no ReadyForQuery: the server hung")
    }
}

fn parse_row(body: &[u8]) -> Vec<Option<String>> {
    let n = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut at = 2;
    let mut row = Vec::new();
    for _ in 0..n {
        let len = i32::from_be_bytes(body[at..at + 4].try_into().unwrap());
        at += 4;
        if len < 0 {
            row.push(None);
        } else {
            let len = len as usize;
            row.push(Some(
                String::from_utf8_lossy(&body[at..at + len]).into_owned(),
            ));
            at += len;
        }
    }
    row
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_refused_then_admitted_again() {
    let fx = fixture_with(1).await;
    let params = [("user", "postgres".to_owned())];
    let first = RawClient::connect(fx.port, &params).await;

    let mut second = tokio::net::TcpStream::connect(("127.0.0.1", fx.port))
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), second.read_to_end(&mut reply))
        .await
        .expect("refused connection left open")
        .unwrap();
    assert_eq!(reply.first(), Some(&b'E'));
    assert!(String::from_utf8_lossy(&reply).contains("53300"));

    // A client that never sends a startup packet is dropped after the
    // startup timeout, freeing its slot.
    drop(first);
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", fx.port))
        .await
        .unwrap();
    let mut nothing = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut nothing))
        .await
        .expect("silent client kept its slot")
        .unwrap();
    // The permit is released when the first connection's task ends.
    let mut admitted = false;
    for _ in 0..50 {
        let mut probe = tokio::net::TcpStream::connect(("127.0.0.1", fx.port))
            .await
            .unwrap();
        probe.write_all(&startup_packet(&params)).await.unwrap();
        let tag = probe.read_u8().await.unwrap();
        if tag == b'R' {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(admitted, "the freed slot was never reused");
    fx.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), fx.server)
        .await
        .unwrap()
        .unwrap();
}

fn startup_packet(params: &[(&str, String)]) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}
