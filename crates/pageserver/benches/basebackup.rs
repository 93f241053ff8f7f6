//! Base backup throughput of the pageserver next to PostgreSQL's own.
//!
//! Builds a PostgreSQL 15 cluster holding `SEDIMENT_BENCH_ROWS` rows
//! (default 1,000,000, about 65 MB of table), shuts it down cleanly and
//! imports it into a pageserver timeline. Then stock `pg_basebackup` fetches
//! the same data twice: from the pageserver's page service and from the live
//! postmaster, each best of three, into a plain-format directory. Prints
//! MB/s for both (over the bytes outside `pg_wal`) and their ratio. Run with `cargo bench -p pageserver`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pageserver::config::PageServerConf;
use tokio_util::sync::CancellationToken;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The stock cluster's superuser password (TCP logins need one).
const PASSWORD: &str = "basebackup-bench";

fn as_postgres(program: &str) -> Command {
    datadir::bootstrap::postgres_command(&Path::new(PG_BIN).join(program)).unwrap()
}

fn run_ok(command: &mut Command) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn directory_bytes(dir: &Path) -> u64 {
    fileio::directory_size_bytes(dir)
}

/// Best of three runs of `pg_basebackup` with `connstr`; returns (seconds, bytes).
fn best_of_three(connstr: &str, scratch: &Path, label: &str) -> (f64, u64) {
    let mut best = Duration::MAX;
    let mut bytes = 0;
    for attempt in 0..3 {
        let dest = scratch.join(format!("{label}-{attempt}"));
        let started = Instant::now();
        run_ok(
            Command::new(format!("{PG_BIN}/pg_basebackup"))
                .arg("-d")
                .arg(connstr)
                .arg("-D")
                .arg(&dest)
                .args(["-X", "none", "--no-manifest", "--no-sync", "-c", "fast"]),
        );
        best = best.min(started.elapsed());
        // The pageserver's archive also carries one WAL segment with the
        // synthesised checkpoint; count only the data both sides send.
        bytes = directory_bytes(&dest) - directory_bytes(&dest.join("pg_wal"));
        std::fs::remove_dir_all(&dest).unwrap();
    }
    (best.as_secs_f64(), bytes)
}

fn make_cluster(scratch: &Path, rows: u64) -> (PathBuf, u16) {
    let pgdata = scratch.join("source");
    datadir::run_initdb(Path::new(PG_BIN), &pgdata).unwrap();
    let port = testkit::free_port().unwrap();
    let conf = format!(
        "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n",
        pgdata.display()
    );
    let mut text = std::fs::read_to_string(pgdata.join("postgresql.conf")).unwrap();
    text.push_str(&conf);
    std::fs::write(pgdata.join("postgresql.conf"), text).unwrap();
    pg_ctl(&pgdata, "start");
    // initdb's cluster has peer on the socket, passwords over TCP (where
    // pg_basebackup is measured): the superuser gets one.
    run_ok(as_postgres("psql").arg("-h").arg(&pgdata).args(["-X", "-q", "-U", "postgres", "-p", &port.to_string(), "-c"]).arg(format!(
        "ALTER ROLE postgres PASSWORD '{PASSWORD}'; CREATE TABLE bench AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, {rows}) g; CREATE INDEX ON bench (id); CHECKPOINT;"
    )));
    pg_ctl(&pgdata, "stop");
    (pgdata, port)
}

fn pg_ctl(pgdata: &Path, action: &str) {
    let log = pgdata.join("bench.log");
    run_ok(
        as_postgres("pg_ctl")
            .arg("-D")
            .arg(pgdata)
            .arg("-l")
            .arg(log)
            .args(["-w", "-m", "fast", action]),
    );
}

fn main() {
    let rows: u64 = std::env::var("SEDIMENT_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let scratch = tempfile::Builder::new()
        .prefix("pageserver-bench-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    datadir::bootstrap::give_to_postgres(scratch.path()).unwrap();
    let (pgdata, pg_port) = make_cluster(scratch.path(), rows);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let shutdown = CancellationToken::new();
    let conf = PageServerConf {
        listen_http_addr: "127.0.0.1:0".into(),
        listen_pg_addr: "127.0.0.1:0".into(),
        ..PageServerConf::default()
    };
    let server = runtime
        .block_on(pageserver::server::start(
            scratch.path().join("pageserver"),
            conf,
            shutdown.clone(),
        ))
        .unwrap();
    let tenant = server
        .manager
        .create_tenant(None, Default::default(), None)
        .unwrap();
    let timeline_id = pageserver::ids::TimelineId::generate();
    let started = Instant::now();
    let timeline = tenant.import_root_timeline(timeline_id, &pgdata).unwrap();
    let import_seconds = started.elapsed().as_secs_f64();
    let lsn = timeline.last_record_lsn();

    let from_pageserver = format!(
        "host=127.0.0.1 port={} user=postgres options='-c sediment.tenant={} -c sediment.timeline={timeline_id} -c sediment.lsn={lsn}'",
        server.pg_addr.port(),
        tenant.id()
    );
    let (ps_seconds, ps_bytes) = best_of_three(&from_pageserver, scratch.path(), "pageserver");

    pg_ctl(&pgdata, "start");
    let from_postgres = format!("host=127.0.0.1 port={pg_port} user=postgres password={PASSWORD}");
    let (pg_seconds, pg_bytes) = best_of_three(&from_postgres, scratch.path(), "postgres");
    pg_ctl(&pgdata, "stop");
    shutdown.cancel();
    runtime.block_on(server.wait());

    let mb = |bytes: u64| bytes as f64 / 1_000_000.0;
    let ps_rate = mb(ps_bytes) / ps_seconds;
    let pg_rate = mb(pg_bytes) / pg_seconds;
    println!("rows: {rows}; import into the pageserver: {import_seconds:.2} s");
    println!(
        "basebackup/pageserver: {:.1} MB in {ps_seconds:.3} s = {ps_rate:.1} MB/s",
        mb(ps_bytes)
    );
    println!(
        "basebackup/postgres:   {:.1} MB in {pg_seconds:.3} s = {pg_rate:.1} MB/s",
        mb(pg_bytes)
    );
    println!("ratio pageserver/postgres: {:.2}", ps_rate / pg_rate);
}
