//! The web console in a real browser: a pageserver with auth on (started by
//! the CLI), a tenant with three branches (`main`, `dev` off `main`,
//! `feature` off `dev`), two running writable endpoints (on `main` and
//! `dev`) and a read-only one registered on `main` at the branch point of
//! `dev` (registered through the API: `endpoint start --lsn` with auth on
//! cannot set passwords in a read-only server yet); `sediment console` prints a URL with a token, and Debian's
//! headless Chromium (`apt-get install chromium`; the test fails if it is
//! missing) loads it. The DOM after the page's script ran must show every
//! branch name with its branch LSN and logical size exactly as the API
//! reports them, the writable endpoints by name and the read-only one at its
//! LSN (it is known to the pageserver only by its registration); without
//! the token the page shows the
//! auth error instead of data. A screenshot is saved as
//! `target/test-artifacts/console-tenant.png` (and one of a layer map) and
//! checked to be a real picture: a PNG that decodes, of some size, with
//! many colours.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{ensure_pageserver_built, free_port, run_ok, Sediment, PG_BIN};
use serde_json::Value;

/// psql against a connection string (auth on: it carries the password).
fn sql(connstr: &str, statements: &str) -> String {
    run_ok(
        Command::new(format!("{PG_BIN}/psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                connstr,
            ])
            .args(["-c", statements]),
    )
    .trim()
    .to_owned()
}

/// `endpoint start`; returns its connection string.
fn start_endpoint(sediment: &Sediment, name: &str, branch: &str) -> String {
    let port = free_port().to_string();
    let started = sediment.json(&[
        "endpoint",
        "start",
        name,
        "--branch-name",
        branch,
        "--port",
        &port,
    ]);
    started["connstr"].as_str().unwrap().to_owned()
}

/// Debian's Chromium, or a clear failure.
fn chromium() -> PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "the console browser test needs Debian's headless Chromium: apt-get install -y chromium"
    );
}

/// Chromium headless with a throwaway profile; `extra` says what to do.
fn chromium_run(profile: &Path, url: &str, extra: &[&str]) -> String {
    // As root Chromium needs --no-sandbox; the virtual time budget lets
    // the page's fetches and rendering finish before the dump.
    let output = Command::new(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The DOM once the page's script has rendered (it marks the body), polled
/// a few times because a loaded machine may need more than one budget.
fn rendered_dom(profile: &Path, url: &str, must_contain: &str) -> String {
    let mut last = String::new();
    for _ in 0..5 {
        last = chromium_run(profile, url, &["--dump-dom"]);
        if last.contains("data-rendered=") && last.contains(must_contain) {
            return last;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("the console never rendered {must_contain:?}; last DOM:\n{last}");
}

struct TokenApi {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl TokenApi {
    fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .unwrap();
        assert!(response.status().is_success(), "{path}: {response:?}");
        response.json().unwrap()
    }

    fn put(&self, path: &str, body: &Value) -> Value {
        let response = self
            .http
            .put(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .unwrap();
        assert!(response.status().is_success(), "{path}: {response:?}");
        response.json().unwrap()
    }

    fn status_without_token(&self, path: &str) -> u16 {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .unwrap()
            .status()
            .as_u16()
    }
}

/// The `<tr>` of one timeline in the branches table.
fn branch_row<'a>(dom: &'a str, timeline_id: &str) -> &'a str {
    let marker = format!("class=\"branch-row\" data-timeline=\"{timeline_id}\"");
    let start = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no row for timeline {timeline_id} in:\n{dom}"));
    let end = dom[start..]
        .find("</tr>")
        .map_or(dom.len(), |end| start + end);
    &dom[start..end]
}

/// What the test compares: per timeline, name, branch LSN, logical size.
fn expected_rows(api: &TokenApi, tenant: &str) -> Vec<(String, String, String, u64)> {
    let timelines = api.get(&format!("/v1/tenant/{tenant}/timeline"));
    let mut rows: Vec<(String, String, String, u64)> = timelines
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let branch_lsn = t["ancestor_lsn"]
                .as_str()
                .or(t["initdb_lsn"].as_str())
                .unwrap()
                .to_owned();
            (
                t["timeline_id"].as_str().unwrap().to_owned(),
                t["branch_name"].as_str().unwrap().to_owned(),
                branch_lsn,
                t["current_logical_size"].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// Checks the screenshot is a real picture, not a blank page.
fn check_screenshot(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.len() > 20_000,
        "{} is only {} bytes",
        path.display(),
        bytes.len()
    );
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert!(frame.width >= 1000 && frame.height >= 700, "{frame:?}");
    let channels = frame.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> =
        pixels[..frame.buffer_size()].chunks(channels).collect();
    // Text, the dark header, blue branch lines, green endpoint markers.
    assert!(
        colours.len() > 50,
        "{} has only {} colours",
        path.display(),
        colours.len()
    );
}

#[test]
fn console_shows_branches_sizes_and_endpoints_in_chromium() {
    let _serial = common::serial();
    chromium();
    ensure_pageserver_built();
    let scratch = common::scratch();
    let sediment = Sediment {
        workdir: scratch.path().join("work"),
        http_port: free_port(),
        pg_port: free_port(),
    };
    run_ok(&mut sediment.cmd(&[
        "init",
        "--auth",
        "--http-port",
        &sediment.http_port.to_string(),
        "--pg-port",
        &sediment.pg_port.to_string(),
    ]));
    run_ok(&mut sediment.cmd(&["start"]));
    let tenant = sediment.json(&["tenant", "create", "--set-default"])["tenant_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // main with a table, dev branched off it with more data, feature off dev.
    let main_endpoint = start_endpoint(&sediment, "main-ep", "main");
    sql(
        &main_endpoint,
        "CREATE TABLE accounts (id int PRIMARY KEY, note text);
         INSERT INTO accounts SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;",
    );
    let lsn = sql(&main_endpoint, "SELECT pg_current_wal_lsn()");
    sediment.json(&[
        "timeline",
        "branch",
        "--branch-name",
        "dev",
        "--ancestor-start-lsn",
        &lsn,
    ]);
    let dev_endpoint = start_endpoint(&sediment, "dev-ep", "dev");
    sql(
        &dev_endpoint,
        "CREATE TABLE events AS SELECT g AS id, md5(g::text) AS digest FROM generate_series(1, 30000) g;",
    );
    let dev_lsn = sql(&dev_endpoint, "SELECT pg_current_wal_lsn()");
    sediment.json(&[
        "timeline",
        "branch",
        "--branch-name",
        "feature",
        "--ancestor-branch-name",
        "dev",
        "--ancestor-start-lsn",
        &dev_lsn,
    ]);

    // `sediment console` prints a URL carrying a token and the tenant.
    let url = sediment.json(&["console"])["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let base = format!("http://127.0.0.1:{}", sediment.http_port);
    assert!(url.starts_with(&format!("{base}/console?token=")), "{url}");
    assert!(url.ends_with(&format!("#/tenant/{tenant}")), "{url}");
    // The plain-text form prints the same URL; each call mints a fresh token whose
    // expiry is "now + ttl" in whole seconds, so only the parts around it must match.
    let text = run_ok(&mut sediment.cmd(&["console"]));
    let without_token = |u: &str| {
        let (head, rest) = u.split_once("?token=").unwrap_or((u, ""));
        let tail = rest.split_once('#').map_or("", |(_, fragment)| fragment);
        format!("{head}#{tail}")
    };
    assert_eq!(without_token(text.trim()), without_token(&url), "{text}");
    let token = run_ok(&mut sediment.cmd(&["token", "--scope", "pageserverapi"]))
        .trim()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let api = TokenApi {
        base: base.clone(),
        token,
        http: reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    };
    let ro_port = free_port();
    let main_id = sediment.timeline_id("main");
    api.put(
        &format!("/v1/tenant/{tenant}/timeline/{main_id}/endpoint/ro-ep"),
        &serde_json::json!({"mode": "read_only", "lsn": lsn, "port": ro_port}),
    );
    // The shell is public, the data is not.
    assert_eq!(api.status_without_token("/console"), 200);
    assert_eq!(api.status_without_token("/console/console.js"), 200);
    assert_eq!(api.status_without_token("/v1/tenant"), 401);

    let profile = scratch.path().join("chromium-profile");
    // Without the token the page explains what is missing and shows no data.
    let denied = rendered_dom(
        &profile.join("denied"),
        &format!("{base}/console#/tenant/{tenant}"),
        "id=\"error\"",
    );
    assert!(denied.contains("requires a token"), "{denied}");
    assert!(!denied.contains("branch-row"), "{denied}");

    // With it: every branch with its branch LSN and size as the API says.
    // Sizes can move between the API read and the page's own (a checkpoint
    // on an endpoint); compare only when two API reads around the page agree.
    let mut checked = false;
    for _ in 0..5 {
        let before = expected_rows(&api, &tenant);
        let dom = rendered_dom(&profile.join("token"), &url, "id=\"branches\"");
        let after = expected_rows(&api, &tenant);
        if before != after {
            continue;
        }
        assert_eq!(before.len(), 3, "{before:?}");
        let mut names: Vec<&str> = before.iter().map(|row| row.1.as_str()).collect();
        names.sort();
        assert_eq!(names, ["dev", "feature", "main"]);
        for (timeline_id, name, branch_lsn, logical_bytes) in &before {
            let row = branch_row(&dom, timeline_id);
            assert!(
                row.contains(&format!("data-branch=\"{name}\""))
                    && row.contains(&format!(">{name}</a>")),
                "{name}: {row}"
            );
            assert!(
                row.contains(&format!("class=\"lsn branch-lsn\">{branch_lsn}</td>")),
                "{name} branch LSN {branch_lsn}: {row}"
            );
            assert!(
                row.contains(&format!("data-bytes=\"{logical_bytes}\""))
                    && row.contains(&format!("({logical_bytes} bytes)")),
                "{name} logical size {logical_bytes}: {row}"
            );
            let streaming = name != "feature";
            assert_eq!(
                row.contains("badge ok\">writable"),
                streaming,
                "{name}: {row}"
            );
        }
        // The tree is drawn: one group per branch, two writable endpoint
        // markers named by their registration, one read-only marker.
        assert_eq!(dom.matches("class=\"branch\" data-timeline=").count(), 3);
        for name in ["main-ep", "dev-ep"] {
            assert!(
                dom.contains(&format!("writable endpoint {name} 127.0.0.1:")),
                "{name}: {dom}"
            );
        }
        assert_eq!(
            dom.matches("class=\"read-only-endpoint\" data-endpoint=\"ro-ep\"")
                .count(),
            1,
            "{dom}"
        );
        assert!(
            dom.contains(&format!(
                "read-only endpoint ro-ep (port {ro_port}) at {lsn}"
            )),
            "{dom}"
        );
        assert!(
            branch_row(&dom, &main_id).contains(&format!("ro-ep @ {lsn}")),
            "{dom}"
        );
        // The endpoints table: all three with their mode.
        for (name, mode) in [
            ("dev-ep", "writable"),
            ("main-ep", "writable"),
            ("ro-ep", "read_only"),
        ] {
            assert!(
                dom.contains(&format!(
                    "class=\"endpoint-row\" data-endpoint=\"{name}\" data-mode=\"{mode}\""
                )),
                "{name}: {dom}"
            );
        }
        checked = true;
        break;
    }
    assert!(checked, "timeline sizes never held still for one page load");

    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("console-tenant.png");
    let _ = std::fs::remove_file(&shot);
    chromium_run(
        &profile.join("token"),
        &url,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,1000",
        ],
    );
    check_screenshot(&shot);

    // The layer map of main: the API lists its layer files and the page
    // draws one rectangle per file.
    let layers = api.get(&format!("/v1/tenant/{tenant}/timeline/{main_id}/layer"));
    let files = layers["historic_layers"].as_array().unwrap();
    assert!(!files.is_empty(), "{layers}");
    let layer_url = url.replace(
        &format!("#/tenant/{tenant}"),
        &format!("#/tenant/{tenant}/timeline/{main_id}"),
    );
    let dom = rendered_dom(&profile.join("token"), &layer_url, "id=\"layer-map\"");
    let drawn = dom.matches("class=\"layer\"").count();
    let after = api.get(&format!("/v1/tenant/{tenant}/timeline/{main_id}/layer"))
        ["historic_layers"]
        .as_array()
        .unwrap()
        .len();
    // Background compaction may change the set between the two reads.
    assert!(
        drawn == files.len() || drawn == after,
        "drew {drawn} layers, the API listed {} then {after}",
        files.len()
    );
    let shot = artifacts.join("console-layer-map.png");
    let _ = std::fs::remove_file(&shot);
    chromium_run(
        &profile.join("token"),
        &layer_url,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,1000",
        ],
    );
    check_screenshot(&shot);
    sediment.shutdown();
}
