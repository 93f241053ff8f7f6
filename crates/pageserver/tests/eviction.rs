//! Disk-usage eviction and on-demand download through the management API:
//! evict every uploaded layer, then a timeline and its branch read back
//! exactly (every key compared with the values recorded before), across a
//! restart too, with the downloads counted in `/metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{assert_error, hex_id, test_conf, TestServer};
use serde_json::{json, Value};

async fn start(workdir: &Path, remote: &Path) -> TestServer {
    let mut conf = test_conf();
    conf.remote_storage = Some(remote.display().to_string());
    TestServer::start_with(workdir, conf).await
}

async fn create_timeline(server: &TestServer, tenant: &str, body: Value) -> String {
    let timeline = hex_id();
    let mut body = body;
    body["new_timeline_id"] = json!(timeline);
    let (status, body) = server
        .call("POST", &format!("/v1/tenant/{tenant}/timeline"), Some(body))
        .await;
    assert_eq!(status, 201, "{body}");
    timeline
}

async fn wait_uploaded(server: &TestServer, tenant: &str, timeline: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let path = format!("/v1/tenant/{tenant}/timeline/{timeline}");
        let (status, info) = server.call("GET", &path, None).await;
        assert_eq!(status, 200, "{info}");
        if !info["remote_consistent_lsn"].is_null()
            && info["remote_consistent_lsn"] == info["disk_consistent_lsn"]
        {
            return info;
        }
        assert!(Instant::now() < deadline, "never uploaded: {info}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every key's value at `lsn`, read on a blocking thread (reads download).
async fn contents(
    server: &TestServer,
    tenant: &str,
    timeline: &str,
    lsn: postgres_wal::Lsn,
) -> Vec<(String, Vec<u8>)> {
    let tenant = server.manager().get(tenant.parse().unwrap()).unwrap();
    let timeline = tenant.timeline(timeline.parse().unwrap()).unwrap();
    tokio::task::spawn_blocking(move || {
        let storage = timeline.storage();
        let keys = storage
            .list_keys(storage::Key::MIN..storage::Key::MAX, lsn)
            .unwrap();
        keys.into_iter()
            .map(|key| (format!("{key:?}"), storage.get(key, lsn).unwrap().to_vec()))
            .collect()
    })
    .await
    .unwrap()
}

/// Layer files and eviction markers in a timeline directory.
fn local_files(workdir: &Path, tenant: &str, timeline: &str) -> (usize, usize) {
    let dir = workdir.join(format!("tenants/{tenant}/timelines/{timeline}"));
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let markers = names.iter().filter(|n| n.ends_with(".evicted")).count();
    let layers = names
        .iter()
        .filter(|n| (n.starts_with("delta_") || n.starts_with("image_")) && !n.contains('.'))
        .count();
    (layers, markers)
}

async fn metric(server: &TestServer, name: &str) -> u64 {
    let text = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

fn lsn_of(info: &Value, field: &str) -> postgres_wal::Lsn {
    info[field].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evict_everything_then_read_exactly_downloading_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let (workdir, remote) = (dir.path().join("ps"), dir.path().join("remote"));
    let server = start(&workdir, &remote).await;
    let (status, body) = server
        .call("POST", "/v1/tenant", Some(json!({"generation": 1})))
        .await;
    assert_eq!(status, 201, "{body}");
    let tenant = body.as_str().unwrap().to_owned();
    let main = create_timeline(&server, &tenant, json!({})).await;
    let main_info = wait_uploaded(&server, &tenant, &main).await;
    let main_lsn = lsn_of(&main_info, "last_record_lsn");
    let branch = create_timeline(&server, &tenant, json!({"ancestor_timeline_id": main})).await;
    let branch_info = wait_uploaded(&server, &tenant, &branch).await;
    let branch_lsn = lsn_of(&branch_info, "last_record_lsn");
    let expected_main = contents(&server, &tenant, &main, main_lsn).await;
    let expected_branch = contents(&server, &tenant, &branch, branch_lsn).await;
    assert!(expected_main.len() > 100, "initdb has many keys");
    let (layers_before, _) = local_files(&workdir, &tenant, &main);
    assert!(layers_before > 0);

    // Bad input first: a body without evict_bytes is a 400.
    assert_error(
        server
            .call("PUT", "/v1/disk_usage_eviction/run", Some(json!({})))
            .await,
        400,
    );
    let (status, report) = server
        .call(
            "PUT",
            "/v1/disk_usage_eviction/run",
            Some(json!({"evict_bytes": u64::MAX / 2})),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert!(
        report["evicted_layers"].as_u64().unwrap() >= layers_before as u64,
        "{report}"
    );
    assert_eq!(
        report["evicted_bytes"], report["candidate_bytes"],
        "{report}"
    );
    assert_eq!(local_files(&workdir, &tenant, &main), (0, layers_before));
    // Nothing left to evict.
    let (_, again) = server
        .call(
            "PUT",
            "/v1/disk_usage_eviction/run",
            Some(json!({"evict_bytes": 1})),
        )
        .await;
    assert_eq!(again["evicted_layers"], 0, "{again}");

    // Restarted: the page cache is cold and layers reopen from markers.
    server.stop().await;
    let server = start(&workdir, &remote).await;
    assert_eq!(
        metric(&server, "pageserver_ondemand_downloads_total").await,
        0
    );
    assert_eq!(
        contents(&server, &tenant, &branch, branch_lsn).await,
        expected_branch
    );
    assert_eq!(
        contents(&server, &tenant, &main, main_lsn).await,
        expected_main
    );
    let downloads = metric(&server, "pageserver_ondemand_downloads_total").await;
    assert_eq!(
        downloads as usize, layers_before,
        "each layer downloaded once"
    );
    assert!(metric(&server, "pageserver_ondemand_download_bytes_total").await > 0);
    assert_eq!(local_files(&workdir, &tenant, &main), (layers_before, 0));

    // Evicted again without a restart (layers open): still exact. The
    // uploader first writes its index again (layers known after a restart).
    wait_uploaded(&server, &tenant, &main).await;
    let (_, report) = server
        .call(
            "PUT",
            "/v1/disk_usage_eviction/run",
            Some(json!({"evict_bytes": u64::MAX / 2})),
        )
        .await;
    assert!(report["evicted_layers"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(
        contents(&server, &tenant, &main, main_lsn).await,
        expected_main
    );

    // A generation raise copies the index forward: the generation-2 index
    // names the generation-1 objects; no layer is uploaded again.
    let (status, body) = server
        .call(
            "PUT",
            &format!("/v1/tenant/{tenant}/location_config"),
            Some(json!({"tenant_id": tenant, "mode": "AttachedSingle", "generation": 2})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let index = remote.join(format!(
        "tenants/{tenant}/timelines/{main}/index_part.json-00000002"
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !index.exists() {
        assert!(Instant::now() < deadline, "no generation-2 index");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let objects: Vec<String> = std::fs::read_dir(index.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let reuploaded: Vec<&String> = objects
        .iter()
        .filter(|n| !n.starts_with("index_part") && n.ends_with("-00000002"))
        .collect();
    assert!(
        reuploaded.is_empty(),
        "layers uploaded again: {reuploaded:?}"
    );
    server.stop().await;
}

/// The background task with a threshold no disk meets (`max_usage_pct =
/// 0`): every uploaded layer is evicted without an API call, the timeline
/// still reads exactly (downloading), and the task evicts them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_eviction_keeps_disk_under_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let (workdir, remote) = (dir.path().join("ps"), dir.path().join("remote"));
    let mut conf = test_conf();
    conf.remote_storage = Some(remote.display().to_string());
    conf.disk_usage_based_eviction = Some(pageserver::config::DiskUsageEviction {
        max_usage_pct: 0,
        min_avail_bytes: 0,
        period: "200ms".into(),
    });
    let server = TestServer::start_with(&workdir, conf).await;
    let (status, body) = server
        .call("POST", "/v1/tenant", Some(json!({"generation": 1})))
        .await;
    assert_eq!(status, 201, "{body}");
    let tenant = body.as_str().unwrap().to_owned();
    let main = create_timeline(&server, &tenant, json!({})).await;
    let info = wait_uploaded(&server, &tenant, &main).await;
    let lsn = lsn_of(&info, "last_record_lsn");
    let wait_all_evicted = || async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (layers, markers) = local_files(&workdir, &tenant, &main);
            if layers == 0 && markers > 0 {
                return markers;
            }
            assert!(
                Instant::now() < deadline,
                "background eviction never evicted: {layers} layers, {markers} markers"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let markers = wait_all_evicted().await;
    let read = contents(&server, &tenant, &main, lsn).await;
    assert!(read.len() > 100, "initdb has many keys");
    assert!(metric(&server, "pageserver_ondemand_downloads_total").await > 0);
    assert_eq!(wait_all_evicted().await, markers);
    // Exact: the same values as read the first time, after re-downloads.
    assert_eq!(contents(&server, &tenant, &main, lsn).await, read);
    server.stop().await;
}
