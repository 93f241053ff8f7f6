//! A stock PostgreSQL 15 endpoint streaming its WAL into a timeline through
//! the `wal_source` API: what it commits becomes readable at its LSN,
//! commits wait for the pageserver (synchronous standby), bad sources are
//! refused, and streaming resumes after a pageserver restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{assert_error, hex_id, TestServer};
use pageserver::tenant_manager::TenantManager;
use postgres_wal::Lsn;
use serde_json::{json, Value};
use testkit::{PgCluster, PgTempDir};

fn lsn_of(value: &Value) -> Lsn {
    value.as_str().unwrap().parse().unwrap()
}

async fn bootstrap(server: &TestServer, tenant: &str) -> String {
    let timeline = hex_id();
    let (status, info) = server
        .call(
            "POST",
            &format!("/v1/tenant/{tenant}/timeline"),
            Some(json!({"new_timeline_id": timeline})),
        )
        .await;
    assert_eq!(status, 201, "{info}");
    timeline
}

fn storage_timeline(
    manager: &TenantManager,
    tenant: &str,
    timeline: &str,
) -> std::sync::Arc<storage::Timeline> {
    let tenant = manager.get(tenant.parse().unwrap()).unwrap();
    let timeline = tenant.timeline(timeline.parse().unwrap()).unwrap();
    std::sync::Arc::clone(timeline.storage())
}

/// A data directory from a base backup of `timeline` at `lsn` (default: head),
/// adopted as a harness cluster with `settings`; not started.
fn endpoint_from(
    timeline: &storage::Timeline,
    lsn: Option<Lsn>,
    settings: &[(&str, &str)],
) -> PgCluster {
    let root = PgTempDir::new().unwrap();
    let tar_path = root.path().join("base.tar");
    let backup = datadir::Basebackup::prepare(timeline, lsn).unwrap();
    backup
        .write_tar(std::fs::File::create(&tar_path).unwrap())
        .unwrap();
    let pgdata = root.path().join("pgdata");
    std::fs::create_dir_all(&pgdata).unwrap();
    untar(&tar_path, &pgdata);
    PgCluster::builder()
        .settings(settings)
        .adopt(root, "pgdata")
        .unwrap()
}

fn untar(tar: &Path, dest: &Path) {
    let status = Command::new("tar")
        .arg("-xf")
        .arg(tar)
        .arg("-C")
        .arg(dest)
        .status()
        .unwrap();
    assert!(status.success());
}

const WRITABLE: &[(&str, &str)] = &[
    ("wal_level", "replica"),
    ("max_wal_senders", "4"),
    ("max_replication_slots", "4"),
    ("synchronous_standby_names", "pageserver"),
    ("wal_consistency_checking", ""),
];

/// The superuser's password on writable endpoints: a base backup's
/// `pg_hba.conf` lets TCP clients (the pageserver) in with a password only.
const PASSWORD: &str = "wal-source-test";

fn source_connstr(cluster: &PgCluster) -> String {
    format!(
        "host=127.0.0.1 port={} user={} password={PASSWORD} dbname=postgres",
        cluster.port(),
        testkit::SUPERUSER
    )
}

/// Starts a writable endpoint and gives its superuser [`PASSWORD`].
fn start_writable(endpoint: &mut PgCluster) {
    endpoint.start().unwrap();
    endpoint.set_superuser_password(PASSWORD).unwrap();
}

/// Points the timeline's WAL source at `endpoint`; asserts 200.
async fn attach_wal_source(
    server: &TestServer,
    tenant: &str,
    timeline: &str,
    endpoint: &PgCluster,
) {
    let path = format!("/v1/tenant/{tenant}/timeline/{timeline}/wal_source");
    let (status, info) = server
        .call(
            "PUT",
            &path,
            Some(json!({"connstr": source_connstr(endpoint)})),
        )
        .await;
    assert_eq!(status, 200, "{info}");
}

async fn wait_ingested(server: &TestServer, tenant: &str, timeline: &str, lsn: Lsn) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = server.timeline_info(tenant, timeline).await;
        if lsn_of(&info["last_record_lsn"]) >= lsn {
            return info;
        }
        assert!(
            Instant::now() < deadline,
            "timeline never reached {lsn}: {info}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn insert_lsn(cluster: &PgCluster) -> Lsn {
    cluster
        .query_scalar::<String>("SELECT pg_current_wal_insert_lsn()")
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_wal_streams_into_the_timeline_and_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let tenant = server.create_tenant().await;
    let timeline = bootstrap(&server, &tenant).await;
    let path = format!("/v1/tenant/{tenant}/timeline/{timeline}/wal_source");
    let storage = storage_timeline(&server.manager(), &tenant, &timeline);

    let (status, body) = server.call("GET", "/v1/status", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["wal_consistency_checking"], "");
    assert!(body["native_redo_rmgrs"]
        .as_array()
        .unwrap()
        .contains(&json!("Heap")));

    let mut endpoint = endpoint_from(&storage, None, WRITABLE);
    start_writable(&mut endpoint);

    // Bad sources are refused before anything changes.
    let closed = testkit::free_port().unwrap();
    assert_error(
        server
            .call(
                "PUT",
                &path,
                Some(json!({"connstr": format!("host=127.0.0.1 port={closed} user=postgres")})),
            )
            .await,
        400,
    );
    assert_error(
        server
            .call("PUT", &path, Some(json!({"connstr": ""})))
            .await,
        400,
    );
    assert_error(
        server
            .call(
                "PUT",
                &format!("/v1/tenant/{tenant}/timeline/{}/wal_source", hex_id()),
                Some(json!({"connstr": source_connstr(&endpoint)})),
            )
            .await,
        404,
    );
    // Another cluster (its own initdb) is not this timeline's WAL source.
    let stranger = PgCluster::builder()
        .settings(&[("wal_level", "replica")])
        .start()
        .unwrap();
    let msg = assert_error(
        server
            .call(
                "PUT",
                &path,
                Some(json!({"connstr": source_connstr(&stranger)})),
            )
            .await,
        400,
    );
    assert!(msg.contains("system"), "{msg}");
    drop(stranger);

    let (status, info) = server
        .call(
            "PUT",
            &path,
            Some(json!({"connstr": source_connstr(&endpoint)})),
        )
        .await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["wal_source_connstr"], source_connstr(&endpoint));
    // The same source again is fine; a different one conflicts.
    let (status, _) = server
        .call(
            "PUT",
            &path,
            Some(json!({"connstr": source_connstr(&endpoint)})),
        )
        .await;
    assert_eq!(status, 200);
    assert_error(
        server
            .call(
                "PUT",
                &path,
                Some(json!({"connstr": "host=127.0.0.1 port=1 user=x"})),
            )
            .await,
        409,
    );

    // Commits return (the synchronous standby answers) and land in the timeline.
    endpoint
        .psql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g;")
        .unwrap();
    let first = insert_lsn(&endpoint);
    let first_time: String = endpoint
        .query_scalar("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    endpoint
        .psql("UPDATE t SET v = 'changed' WHERE id <= 100; DELETE FROM t WHERE id > 4000;")
        .unwrap();
    let second = insert_lsn(&endpoint);
    let info = wait_ingested(&server, &tenant, &timeline, second).await;
    assert!(info["last_received_msg_lsn"].is_string(), "{info}");

    // Time lookups: the moment after the first commits maps to a point
    // between them and the later changes.
    let by_time = |timestamp: &str| {
        format!(
            "/v1/tenant/{tenant}/timeline/{timeline}/get_lsn_by_timestamp?timestamp={timestamp}"
        )
    };
    let (status, found) = server.call("GET", &by_time(&first_time), None).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["kind"], "present", "{found}");
    let at_first_time = lsn_of(&found["lsn"]);
    assert!(at_first_time <= second, "{found}");
    let (_, found) = server
        .call("GET", &by_time("2000-01-01T00:00:00Z"), None)
        .await;
    assert_eq!(found["kind"], "past", "{found}");
    let (_, found) = server
        .call("GET", &by_time("2100-01-01T00:00:00Z"), None)
        .await;
    assert_eq!(found["kind"], "future", "{found}");
    assert_error(server.call("GET", &by_time("yesterday"), None).await, 400);
    let (status, when) = server
        .call(
            "GET",
            &format!("/v1/tenant/{tenant}/timeline/{timeline}/get_timestamp_of_lsn?lsn={second}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{when}");
    assert!(
        when.as_str().unwrap() > first_time.as_str(),
        "{when} vs {first_time}"
    );

    // A branch at that point with its own writable endpoint. Its history
    // below the branch point is still only in the parent's local WAL (no
    // layer flush yet), so after a restart it must wait for the parent.
    let branch = hex_id();
    let (status, info) = server
        .call(
            "POST",
            &format!("/v1/tenant/{tenant}/timeline"),
            Some(
                json!({"new_timeline_id": branch, "ancestor_timeline_id": timeline,
                "ancestor_start_lsn": second.to_string()}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{info}");
    let branch_storage = storage_timeline(&server.manager(), &tenant, &branch);
    let mut branch_endpoint = endpoint_from(&branch_storage, None, WRITABLE);
    start_writable(&mut branch_endpoint);
    attach_wal_source(&server, &tenant, &branch, &branch_endpoint).await;
    branch_endpoint
        .psql("DELETE FROM t WHERE id <= 10;")
        .unwrap();

    // Restart the pageserver: the sources are resumed and streaming continues.
    server.stop().await;
    let server = TestServer::start(dir.path()).await;
    endpoint
        .psql("INSERT INTO t VALUES (9999, 'after restart');")
        .unwrap();
    let third = insert_lsn(&endpoint);
    wait_ingested(&server, &tenant, &timeline, third).await;
    branch_endpoint
        .psql("DELETE FROM t WHERE id <= 20;")
        .unwrap();
    let branch_head = insert_lsn(&branch_endpoint);
    wait_ingested(&server, &tenant, &branch, branch_head).await;
    let branch_storage = storage_timeline(&server.manager(), &tenant, &branch);
    let mut replica = endpoint_from(&branch_storage, Some(branch_head), &[]);
    replica.start().unwrap();
    let got: String = replica
        .query_scalar("SELECT count(*) || ',' || count(*) FILTER (WHERE id = 9999) FROM t")
        .unwrap();
    assert_eq!(got, "3980,0", "the branch keeps its own history");
    drop(replica);
    drop(branch_endpoint);
    let storage = storage_timeline(&server.manager(), &tenant, &timeline);

    // Every recorded point reads back exactly.
    for (lsn, count, changed, late) in [
        (at_first_time, 5000, 0, 0),
        (first, 5000, 0, 0),
        (second, 4000, 100, 0),
        (third, 4001, 100, 1),
    ] {
        let mut replica = endpoint_from(&storage, Some(lsn), &[]);
        replica.start().unwrap();
        let got: String = replica
            .query_scalar(
                "SELECT count(*) || ',' || count(*) FILTER (WHERE v = 'changed') || ',' || count(*) FILTER (WHERE id = 9999) FROM t",
            )
            .unwrap();
        assert_eq!(got, format!("{count},{changed},{late}"), "at {lsn}");
        replica.stop().unwrap();
    }

    // GC with no retention moves the cutoff to the head of the timeline —
    // except that the branch point stays readable for the child — and
    // branching below the cutoff is refused.
    let (status, body) = server
        .call(
            "PUT",
            "/v1/tenant/config",
            Some(json!({"tenant_id": tenant, "gc_horizon": 0, "pitr_interval": "0s"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, summary) = server
        .call(
            "PUT",
            &format!("/v1/tenant/{tenant}/timeline/{timeline}/do_gc"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{summary}");
    assert!(
        summary.as_str().unwrap().starts_with("gc cutoff"),
        "{summary}"
    );
    let info = server.timeline_info(&tenant, &timeline).await;
    let cutoff = lsn_of(&info["latest_gc_cutoff_lsn"]);
    assert!(cutoff >= third, "{info}");
    let msg = assert_error(
        server
            .call(
                "POST",
                &format!("/v1/tenant/{tenant}/timeline"),
                Some(
                    json!({"new_timeline_id": hex_id(), "ancestor_timeline_id": timeline,
                    "ancestor_start_lsn": first.to_string()}),
                ),
            )
            .await,
        406,
    );
    assert!(msg.contains("GC cutoff"), "{msg}");
    // The child's history below its branch point is still readable.
    let mut replica = endpoint_from(&branch_storage, Some(branch_head), &[]);
    replica.start().unwrap();
    let count: i64 = replica.query_scalar("SELECT count(*) FROM t").unwrap();
    assert_eq!(count, 3980);
    drop(replica);

    let (status, info) = server.call("DELETE", &path, None).await;
    assert_eq!(status, 200, "{info}");
    assert!(info["wal_source_connstr"].is_null(), "{info}");
    endpoint.stop().unwrap();
    server.stop().await;
}

/// Deleting a tenant right after its streaming endpoint is detached, while
/// the background task flushes what was ingested in small layers: every deletion completes (the tenant is then
/// 404, its directory gone, it never turns Broken with "deletion failed"),
/// several times. (A flush running when deletion removed the directory
/// made the removal fail with "Directory not empty".) Then a pageserver
/// stopped while WAL streams comes back with its timeline Active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_tenant_while_wal_streams_and_flushes_always_completes() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path()).await;
    // Asynchronous: commits must not wait for a pageserver being deleted.
    let streaming: &[(&str, &str)] = &[
        ("wal_level", "replica"),
        ("max_wal_senders", "4"),
        ("max_replication_slots", "4"),
        ("wal_consistency_checking", ""),
    ];
    for round in 0..4 {
        let tenant = server.create_tenant().await;
        let (status, body) = server
            .call(
                "PUT",
                "/v1/tenant/config",
                Some(json!({"tenant_id": tenant, "checkpoint_distance": 1 << 20,
                            "checkpoint_timeout": "1s", "compaction_period": "1s"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let timeline = bootstrap(&server, &tenant).await;
        let storage = storage_timeline(&server.manager(), &tenant, &timeline);
        let mut endpoint = endpoint_from(&storage, None, streaming);
        start_writable(&mut endpoint);
        attach_wal_source(&server, &tenant, &timeline, &endpoint).await;
        endpoint
            .psql("CREATE TABLE t (id int, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 100000) g;")
            .unwrap();
        let head = insert_lsn(&endpoint);
        wait_ingested(&server, &tenant, &timeline, head).await;
        // Keep WAL coming (a few MB: several flushes) while deleting.
        let (psql, connstr) = (endpoint.bin("psql"), endpoint.connstr());
        let writer = std::thread::spawn(move || {
            let _ = Command::new(psql)
                .args(["-X", "-q", "-d", &connstr, "-c"])
                .arg("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 300000) g")
                .output();
        });
        // Delete at a different point of the flush cycle each round, right
        // after detaching the source (a tenant with an attached source is
        // refused), with ingested WAL still being flushed.
        tokio::time::sleep(Duration::from_millis(150 * round)).await;
        let source = format!("/v1/tenant/{tenant}/timeline/{timeline}/wal_source");
        let (status, body) = server.call("DELETE", &source, None).await;
        assert!(status < 300, "{status} {body}");
        if round == 0 {
            // What an earlier removal that failed half-way leaves: renaming
            // the tenant onto it failed with "Directory not empty".
            let stale = dir
                .path()
                .join("tenants")
                .join(format!("{tenant}.___deleted"));
            std::fs::create_dir_all(stale.join("timelines")).unwrap();
            std::fs::write(stale.join("timelines/leftover"), b"x").unwrap();
        }
        let (status, body) = server
            .call("DELETE", &format!("/v1/tenant/{tenant}"), None)
            .await;
        assert!(status == 202 || status == 200, "{status} {body}");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, info) = server
                .call("GET", &format!("/v1/tenant/{tenant}"), None)
                .await;
            if status == 404 {
                break;
            }
            assert_ne!(info["state"], "Broken", "round {round}: {info}");
            assert!(
                Instant::now() < deadline,
                "round {round}: never deleted: {info}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let tenants_dir = dir.path().join("tenants");
        let left: Vec<_> = std::fs::read_dir(&tenants_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(&tenant))
            .collect();
        assert!(left.is_empty(), "round {round}: left behind: {left:?}");
        writer.join().unwrap();
        drop(endpoint);
    }

    // Stopping the pageserver while WAL streams is a shutdown, not a
    // failure: after the restart the timeline is Active.
    let tenant = server.create_tenant().await;
    let timeline = bootstrap(&server, &tenant).await;
    let storage = storage_timeline(&server.manager(), &tenant, &timeline);
    let mut endpoint = endpoint_from(&storage, None, streaming);
    start_writable(&mut endpoint);
    attach_wal_source(&server, &tenant, &timeline, &endpoint).await;
    let (psql, connstr) = (endpoint.bin("psql"), endpoint.connstr());
    let writer = std::thread::spawn(move || {
        let _ = Command::new(psql)
            .args(["-X", "-q", "-d", &connstr, "-c"])
            .arg("CREATE TABLE u AS SELECT g, md5(g::text) AS v FROM generate_series(1, 300000) g")
            .output();
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.timeline_info(&tenant, &timeline).await;
    assert_eq!(before["state"], "Active", "{before}");
    server.stop().await;
    server = TestServer::start(dir.path()).await;
    writer.join().unwrap();
    let head = insert_lsn(&endpoint);
    let info = wait_ingested(&server, &tenant, &timeline, head).await;
    assert_eq!(info["state"], "Active", "{info}");
    assert!(info.get("broken_reason").is_none(), "{info}");
    server.stop().await;
}
