//! The `pageserver` binary: configuration errors at startup, serving with
//! `-c` overrides on free ports, a base backup through the page service for
//! stock `pg_basebackup`, and a clean exit on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PG_BASEBACKUP: &str = "/usr/lib/postgresql/15/bin/pg_basebackup";

fn pageserver() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pageserver"))
}

#[test]
fn unknown_or_malformed_settings_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["-c", "no_such_setting=1"][..],
        &["-c", "id=abc"],
        &["-c", "novalue"],
    ] {
        let output = pageserver()
            .arg("--workdir")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("Error"), "{args:?}: {stderr}");
    }
    std::fs::write(
        dir.path().join("pageserver.toml"),
        "listen_http_adr = '127.0.0.1:0'\n",
    )
    .unwrap();
    let output = pageserver()
        .arg("--workdir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("listen_http_adr"));
}

#[test]
fn serves_base_backups_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (http_port, pg_port) = (testkit::free_port().unwrap(), testkit::free_port().unwrap());
    let mut child = pageserver()
        .arg("--workdir")
        .arg(dir.path())
        .args(["-c", &format!("listen_http_addr=127.0.0.1:{http_port}")])
        .args(["-c", &format!("listen_pg_addr=127.0.0.1:{pg_port}")])
        .args(["-c", "id=42"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::blocking::Client::new();
    let base = format!("http://127.0.0.1:{http_port}");
    let started = Instant::now();
    let status = loop {
        if let Ok(response) = client.get(format!("{base}/v1/status")).send() {
            break response.json::<serde_json::Value>().unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "pageserver never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status["id"], 42);

    let tenant: String = client
        .post(format!("{base}/v1/tenant"))
        .json(&serde_json::json!({}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let timeline = pageserver::ids::TimelineId::generate().to_string();
    let info: serde_json::Value = client
        .post(format!("{base}/v1/tenant/{tenant}/timeline"))
        .json(&serde_json::json!({"new_timeline_id": timeline}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let lsn = info["last_record_lsn"].as_str().unwrap();

    let backup = |tenant: &str, dest: &std::path::Path| {
        let connstr = format!(
            "host=127.0.0.1 port={pg_port} user=postgres options='-c sediment.tenant={tenant} -c sediment.timeline={timeline} -c sediment.lsn={lsn}'"
        );
        Command::new(PG_BASEBACKUP)
            .arg("-d")
            .arg(connstr)
            .arg("-D")
            .arg(dest)
            .args(["-X", "none", "--no-manifest"])
            .output()
            .unwrap()
    };
    let good = backup(&tenant, &dir.path().join("backup"));
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("backup/PG_VERSION"))
            .unwrap()
            .trim(),
        "15"
    );
    let unknown = pageserver::ids::TenantId::generate().to_string();
    let bad = backup(&unknown, &dir.path().join("nothing"));
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "pageserver ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit}");
}
