//! CLI behaviour that needs no running pageserver: help, init, and the
//! one-sentence errors for common mistakes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn sediment(workdir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sediment"))
        .arg("--workdir")
        .arg(workdir)
        .args(args)
        .env_remove("SEDIMENT_WORKDIR")
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    let commands: &[&[&str]] = &[
        &[],
        &["init"],
        &["start"],
        &["stop"],
        &["status"],
        &["tenant"],
        &["tenant", "create"],
        &["tenant", "list"],
        &["timeline"],
        &["timeline", "list"],
        &["timeline", "branch"],
        &["endpoint"],
        &["endpoint", "start"],
        &["endpoint", "stop"],
        &["endpoint", "list"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let output = sediment(dir.path(), &args);
        assert!(output.status.success(), "{command:?}: {}", stderr(&output));
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage"),
            "{command:?}"
        );
    }
}

#[test]
fn commands_before_init_fail_with_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["start"][..],
        &["status"],
        &["tenant", "list"],
        &["endpoint", "list"],
    ] {
        let output = sediment(&dir.path().join("nothing"), args);
        assert!(!output.status.success());
        let message = stderr(&output);
        assert!(message.contains("not initialised"), "{args:?}: {message}");
        assert_eq!(message.trim().lines().count(), 1, "{message}");
    }
}

#[test]
fn init_writes_config_and_refuses_twice() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("w");
    let output = sediment(
        &work,
        &["--json", "init", "--http-port", "1", "--pg-port", "2"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["pageserver"], "127.0.0.1:1");
    let pageserver_toml = std::fs::read_to_string(work.join("pageserver/pageserver.toml")).unwrap();
    assert!(
        pageserver_toml.contains("listen_pg_addr = \"127.0.0.1:2\""),
        "{pageserver_toml}"
    );
    assert!(work.join("sediment.toml").exists());

    let again = sediment(&work, &["init"]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already initialised"));

    // Nothing listens on port 1: API commands say so plainly.
    let output = sediment(&work, &["tenant", "list"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("not reachable"),
        "{}",
        stderr(&output)
    );
    let output = sediment(&work, &["timeline", "list"]);
    assert!(
        stderr(&output).contains("no default tenant"),
        "{}",
        stderr(&output)
    );
    let output = sediment(&work, &["endpoint", "start", "bad name!", "--lsn", "0/1"]);
    assert!(
        stderr(&output).contains("endpoint name"),
        "{}",
        stderr(&output)
    );
    let output = sediment(
        &work,
        &[
            "timeline",
            "branch",
            "--branch-name",
            "b",
            "--at",
            "2026-11-21 10:00:00+00",
        ],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no default tenant"),
        "{}",
        stderr(&output)
    );
    let output = sediment(
        &work,
        &[
            "timeline",
            "branch",
            "--branch-name",
            "b",
            "--at",
            "x",
            "--ancestor-start-lsn",
            "0/1",
        ],
    );
    assert!(
        !output.status.success(),
        "--at and --ancestor-start-lsn conflict"
    );
    let output = sediment(&work, &["endpoint", "stop", "nosuch"]);
    assert!(
        stderr(&output).contains("no endpoint named nosuch"),
        "{}",
        stderr(&output)
    );
    let output = sediment(&work, &["--json", "status"]);
    assert!(output.status.success());
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["pageserver"]["running"], false);
}

#[test]
fn bad_pg_bin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = sediment(&dir.path().join("w"), &["init", "--pg-bin", "/nonexistent"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("PostgreSQL 15"),
        "{}",
        stderr(&output)
    );
}
