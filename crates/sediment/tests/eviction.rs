//! Disk-usage eviction end to end with real Postgres: pgbench history and a
//! branch with its own writes; the pageserver restarts (cold page cache),
//! `PUT /v1/disk_usage_eviction/run` evicts every uploaded layer file, and
//! then a read-only endpoint at a recorded LSN, the branch's endpoint and
//! the main endpoint read exactly what they did before (sums, `pg_dump`),
//! with the layers downloaded on demand and counted in `/metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{pg_dump, psql, run_ok, Sediment};
use serde_json::json;

fn pgbench(port: u16, args: &[&str]) {
    let output = common::client("pgbench", port)
        .args(["-h", "127.0.0.1", "-U", "postgres", "-p", &port.to_string()])
        .args(args)
        .arg("postgres")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

fn values(port: u16) -> String {
    psql(
        port,
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_history)",
    )
}

/// Resident layer files and eviction markers under a directory.
fn layer_files(dir: &Path) -> (usize, usize) {
    let (mut layers, mut markers) = (0, 0);
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else if name.ends_with(".evicted") {
                markers += 1;
            } else if (name.starts_with("delta_") || name.starts_with("image_"))
                && !name.contains('.')
            {
                layers += 1;
            }
        }
    }
    (layers, markers)
}

fn metric(sediment: &Sediment, name: &str) -> u64 {
    let url = format!("http://127.0.0.1:{}/metrics", sediment.http_port);
    let text = reqwest::blocking::get(url).unwrap().text().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[test]
fn endpoints_read_exactly_after_evicting_everything() {
    let _serial = common::serial();
    let scratch = common::scratch();
    let (sediment, tenant) = Sediment::running_with_tenant(scratch.path());
    let api = sediment.api();
    let main_timeline = sediment.timeline_id("main");

    let main = sediment.endpoint("main", &[]);
    pgbench(main, &["-i", "-q", "-s", "1"]);
    pgbench(main, &["-c", "2", "-T", "3"]);
    let lsn = psql(main, "SELECT pg_current_wal_insert_lsn()");
    let at_lsn = values(main);
    api.wait_ingested(&tenant, &main_timeline, &lsn);
    sediment.json(&[
        "timeline",
        "branch",
        "--branch-name",
        "side",
        "--ancestor-start-lsn",
        &lsn,
    ]);
    pgbench(main, &["-c", "2", "-T", "2"]);
    let side = sediment.endpoint("side", &["--branch-name", "side"]);
    psql(
        side,
        "UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid % 10 = 0",
    );
    let side_values = values(side);
    let main_values = values(main);
    let dump_before = pg_dump(main, "postgres", &[]);
    sediment.json(&["endpoint", "stop", "side"]);
    sediment.json(&["endpoint", "stop", "main"]);

    // A graceful stop flushes and uploads; the restart empties the cache.
    run_ok(&mut sediment.cmd(&["stop"]));
    run_ok(&mut sediment.cmd(&["start"]));
    let tenant_dir = sediment.workdir.join("pageserver/tenants").join(&tenant);
    let (resident, _) = layer_files(&tenant_dir);
    assert!(resident > 0);
    // The uploader reloads its index within a round; evict until all are.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut evicted = 0;
    while layer_files(&tenant_dir).0 > 0 {
        assert!(Instant::now() < deadline, "layers never all evicted");
        let (status, report) = api.put(
            "/v1/disk_usage_eviction/run",
            &json!({"evict_bytes": 1u64 << 50}),
        );
        assert_eq!(status, 200, "{report}");
        evicted += report["evicted_layers"].as_u64().unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(evicted as usize, resident);
    assert_eq!(layer_files(&tenant_dir), (0, resident));
    assert_eq!(metric(&sediment, "pageserver_ondemand_downloads_total"), 0);

    let ro = sediment.endpoint("ro", &["--lsn", &lsn]);
    assert_eq!(values(ro), at_lsn);
    sediment.json(&["endpoint", "stop", "ro", "--destroy"]);
    let side = sediment.endpoint("side", &["--branch-name", "side"]);
    assert_eq!(values(side), side_values);
    sediment.json(&["endpoint", "stop", "side"]);
    let main = sediment.endpoint("main", &[]);
    assert_eq!(values(main), main_values);
    assert!(
        pg_dump(main, "postgres", &[]) == dump_before,
        "pg_dump differs after eviction"
    );
    let downloads = metric(&sediment, "pageserver_ondemand_downloads_total");
    assert!(
        downloads > 0 && downloads as usize <= resident,
        "{downloads} of {resident}"
    );
    assert!(metric(&sediment, "pageserver_ondemand_download_bytes_total") > 0);
    eprintln!("{downloads} of {resident} evicted layers downloaded on demand");
    sediment.shutdown();
}
