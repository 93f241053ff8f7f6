//! The harness against a real PostgreSQL 15: start, SQL, pgbench, WAL
//! collection, cleanup on drop (also during a panic), parallel clusters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use testkit::{PgCluster, PgInstall};

#[test]
fn starts_runs_sql_and_restarts() {
    let mut cluster = PgCluster::builder()
        .setting("wal_compression", "lz4")
        .start()
        .unwrap();
    assert!(cluster.port() > 0);
    assert!(cluster
        .socket_dir()
        .join(format!(".s.PGSQL.{}", cluster.port()))
        .exists());
    let version: String = cluster.query_scalar("SHOW server_version_num").unwrap();
    assert!(version.starts_with("15"), "{version}");
    let compression: String = cluster.query_scalar("SHOW wal_compression").unwrap();
    assert_eq!(compression, "lz4");

    // Several statements incl. one that refuses a transaction block.
    cluster
        .psql("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 10); CREATE DATABASE other;")
        .unwrap();
    let rows = cluster
        .psql("SELECT x FROM t WHERE x <= 3 ORDER BY x")
        .unwrap();
    assert_eq!(rows, "1\n2\n3\n");
    cluster.psql_db("other", "CREATE TABLE o (y text)").unwrap();
    let n: i64 = cluster
        .query_scalar_db("other", "SELECT count(*) FROM o")
        .unwrap();
    assert_eq!(n, 0);

    // Data survives a crash-like stop.
    cluster.stop_immediate().unwrap();
    assert!(!cluster.is_running());
    assert!(matches!(
        cluster.psql("SELECT 1"),
        Err(testkit::Error::NotRunning { .. })
    ));
    cluster.start().unwrap();
    let sum: i64 = cluster.query_scalar("SELECT sum(x) FROM t").unwrap();
    assert_eq!(sum, 55);
    cluster.restart().unwrap();
    let sum: i64 = cluster.query_scalar("SELECT sum(x) FROM t").unwrap();
    assert_eq!(sum, 55);
}

#[test]
fn sql_errors_name_the_command_and_server_message() {
    let cluster = PgCluster::start_default().unwrap();
    let error = cluster.psql("SELECT * FROM no_such_table").unwrap_err();
    let text = error.to_string();
    assert!(text.contains("psql"), "{text}");
    assert!(text.contains("no_such_table"), "{text}");
    // ON_ERROR_STOP: nothing after the failing statement runs.
    let _ = cluster.psql("SELECT 1/0; CREATE TABLE after_error (x int);");
    let exists: bool = cluster
        .query_scalar("SELECT to_regclass('after_error') IS NOT NULL")
        .unwrap();
    assert!(!exists);
    let not_a_number = cluster.query_scalar::<i64>("SELECT 'abc'");
    assert!(not_a_number.is_err());
}

#[test]
fn pgbench_reports_tps() {
    let cluster = PgCluster::start_default().unwrap();
    cluster.pgbench(&["-i", "-s", "1", "-q"]).unwrap();
    let accounts: i64 = cluster
        .query_scalar("SELECT count(*) FROM pgbench_accounts")
        .unwrap();
    assert_eq!(accounts, 100_000);
    let tps = cluster
        .pgbench_tps(&["-c", "2", "-j", "2", "-t", "50"])
        .unwrap();
    assert!(tps > 0.0, "{tps}");
    let history: i64 = cluster
        .query_scalar("SELECT count(*) FROM pgbench_history")
        .unwrap();
    assert_eq!(history, 100);
}

#[test]
fn collects_complete_wal_segments() {
    let cluster = PgCluster::builder()
        .initdb_arg("--wal-segsize=1")
        .retain_all_wal()
        .start()
        .unwrap();
    let before = cluster.current_wal_lsn().unwrap();
    cluster
        .psql(
            "CREATE TABLE w AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 20000) g",
        )
        .unwrap();
    assert!(cluster.current_wal_lsn().unwrap() > before);
    let dest = tempfile::tempdir().unwrap();
    let wal = cluster.collect_wal(dest.path()).unwrap();
    assert_eq!(wal.segment_size, 1024 * 1024);
    // A 4+ MB table in 1 MB segments: several complete files from the first.
    assert!(wal.segments.len() >= 4, "{:?}", wal.segments);
    // initdb's own checkpoints recycle its early segments; from the start of
    // the server on, nothing may be missing.
    let segno = |name: &str| u64::from_str_radix(&name[16..], 16).unwrap();
    let first = segno(wal.first_segment().unwrap());
    assert!(first <= before.0 / wal.segment_size, "{:?}", wal.segments);
    for (i, name) in wal.segments.iter().enumerate() {
        assert_eq!(segno(name), first + i as u64, "gap in {:?}", wal.segments);
    }
    for path in wal.paths() {
        assert_eq!(std::fs::metadata(&path).unwrap().len(), wal.segment_size);
    }
    // The last copied segment holds the switch record's end.
    let last_segno = (wal.end_lsn.0 - 1) / wal.segment_size;
    let last = wal.last_segment().unwrap();
    assert_eq!(segno(last), last_segno);
    // pg_waldump agrees that the copied range decodes to the end.
    let dump = std::process::Command::new(cluster.bin("pg_waldump"))
        .arg("-p")
        .arg(dest.path())
        .args([wal.first_segment().unwrap(), last, "--stats"])
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
}

#[test]
fn drop_stops_server_and_removes_dir_even_on_panic() {
    let install = PgInstall::detect().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<(PathBuf, u16)>();
    let result = std::panic::catch_unwind(move || {
        let cluster = PgCluster::start_default().unwrap();
        tx.send((cluster.root_dir().to_path_buf(), cluster.port()))
            .unwrap();
        panic!("test body fails while the cluster runs");
    });
    assert!(result.is_err());
    let (root, port) = rx.recv().unwrap();
    if testkit::keep_tmp() {
        return; // The developer asked to keep it.
    }
    assert!(!root.exists(), "{} left behind", root.display());
    let ready = std::process::Command::new(install.bin("pg_isready"))
        .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-t", "2"])
        .status()
        .unwrap();
    assert!(!ready.success(), "server still answering on port {port}");
}

#[test]
fn parallel_clusters_get_different_ports() {
    let handles: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(|| PgCluster::start_default().unwrap()))
        .collect();
    let clusters: Vec<PgCluster> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_ne!(clusters[0].port(), clusters[1].port());
    assert_ne!(clusters[0].data_dir(), clusters[1].data_dir());
    for cluster in &clusters {
        let port: u16 = cluster.query_scalar("SHOW port").unwrap();
        assert_eq!(port, cluster.port());
    }
}

#[test]
fn temp_dir_is_owned_by_the_postgres_user() {
    let install = PgInstall::detect().unwrap();
    let dir = testkit::PgTempDir::new().unwrap();
    let nested = dir.subdir(&install, "a/b").unwrap();
    use std::os::unix::fs::MetadataExt;
    if let Some(user) = install.run_as() {
        for path in [dir.path(), &dir.path().join("a"), &nested] {
            assert_eq!(
                std::fs::metadata(path).unwrap().uid(),
                user.uid,
                "{}",
                path.display()
            );
        }
    }
    let path = dir.path().to_path_buf();
    drop(dir);
    assert!(testkit::keep_tmp() || !path.exists());
}

#[test]
fn free_ports_are_bindable() {
    let port = testkit::free_port().unwrap();
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
}

#[test]
fn taken_port_is_replaced_at_start() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    let cluster = PgCluster::builder().port(taken).start().unwrap();
    assert_ne!(cluster.port(), taken);
    let port: u16 = cluster.query_scalar("SHOW port").unwrap();
    assert_eq!(port, cluster.port());
}

#[test]
fn basebackup_copy_starts_with_the_data() {
    let source = PgCluster::start_default().unwrap();
    source
        .psql("CREATE TABLE kept AS SELECT generate_series(1, 1000) AS x")
        .unwrap();
    let root = testkit::PgTempDir::new().unwrap();
    source.basebackup(&root, "copy").unwrap();
    let mut copy = PgCluster::builder()
        .setting("log_min_messages", "warning")
        .adopt(root, "copy")
        .unwrap();
    copy.start().unwrap();
    assert_ne!(copy.port(), source.port());
    let sum: i64 = copy.query_scalar("SELECT sum(x) FROM kept").unwrap();
    assert_eq!(sum, 500_500);
    let fingerprints = testkit::workload::table_fingerprints(&source, "postgres").unwrap();
    assert_eq!(fingerprints.keys().collect::<Vec<_>>(), ["public.kept"]);
    assert_eq!(
        testkit::workload::table_fingerprints(&copy, "postgres").unwrap(),
        fingerprints
    );
    // Independent from the source from here on.
    copy.psql("INSERT INTO kept VALUES (0)").unwrap();
    assert_ne!(
        testkit::workload::table_fingerprints(&copy, "postgres").unwrap(),
        fingerprints
    );
    let rows: i64 = source.query_scalar("SELECT count(*) FROM kept").unwrap();
    assert_eq!(rows, 1000);
}

#[test]
fn start_failure_shows_the_server_log() {
    let error = PgCluster::builder()
        .setting("shared_buffers", "not a size")
        .start()
        .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("pg_ctl"), "{text}");
    assert!(text.contains("shared_buffers"), "{text}");
}

#[test]
fn settings_with_quotes_and_backslashes_round_trip() {
    let value = r"it's a \path";
    let cluster = PgCluster::builder()
        .setting("cluster_name", value)
        .start()
        .unwrap();
    let got: String = cluster.query_scalar("SHOW cluster_name").unwrap();
    assert_eq!(got, value);
}

#[test]
fn hung_commands_are_killed_after_the_timeout() {
    let cluster = PgCluster::start_default().unwrap();
    let mut psql = cluster.command("psql");
    psql.args(["-X", "-c", "SELECT pg_sleep(60)"]);
    let started = std::time::Instant::now();
    let error =
        testkit::install::run_capture_within(&mut psql, None, Duration::from_secs(1)).unwrap_err();
    assert!(
        matches!(error, testkit::Error::Timeout { secs: 1, .. }),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // The killed client's backend goes away; the server is still usable.
    let one: i32 = cluster.query_scalar("SELECT 1").unwrap();
    assert_eq!(one, 1);
}

/// Not a test by itself: the body of the child process that
/// `killed_test_process_leaves_no_server_behind` starts and SIGKILLs.
#[test]
#[ignore = "helper process for killed_test_process_leaves_no_server_behind"]
fn reaper_helper_process() {
    if std::env::var_os("SEDIMENT_REAPER_HELPER").is_none() {
        return;
    }
    let cluster = PgCluster::start_default().unwrap();
    println!("READY {} {}", cluster.port(), cluster.root_dir().display());
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn killed_test_process_leaves_no_server_behind() {
    use std::io::BufRead;
    if testkit::keep_tmp() {
        return;
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "reaper_helper_process",
            "--ignored",
            "--nocapture",
        ])
        .env("SEDIMENT_REAPER_HELPER", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let ready = stdout
        .lines()
        .map(|l| l.unwrap())
        .find(|l| l.starts_with("READY "))
        .expect("helper printed READY");
    let mut fields = ready.split_whitespace().skip(1);
    let port: u16 = fields.next().unwrap().parse().unwrap();
    let root = PathBuf::from(fields.next().unwrap());
    assert!(root.exists());
    child.kill().unwrap(); // SIGKILL: no unwinding, no Drop.
    child.wait().unwrap();

    let install = PgInstall::detect().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let listening = std::process::Command::new(install.bin("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-t", "1"])
            .status()
            .unwrap()
            .success();
        if !listening && !root.exists() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server on {port} or {} outlived its killed test process",
            root.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
