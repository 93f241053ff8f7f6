//! Remote storage through the management API, on in-process pageservers
//! sharing one remote directory: uploads, attach (`maybe` → `attached`),
//! generations (a stale pageserver never overwrites or deletes a newer
//! one's objects), detach/ignore/load, and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{assert_error, hex_id, test_conf, TestServer};
use serde_json::{json, Value};

async fn start(workdir: &Path, remote: &Path) -> TestServer {
    let mut conf = test_conf();
    conf.remote_storage = Some(remote.display().to_string());
    TestServer::start_with(workdir, conf).await
}

/// Every object under the remote directory with its bytes.
fn objects(remote: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![remote.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(remote).unwrap().display().to_string();
                found.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    found
}

async fn create_with_timeline(server: &TestServer, generation: u32) -> (String, String) {
    let (status, body) = server
        .call(
            "POST",
            "/v1/tenant",
            Some(json!({"generation": generation})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let tenant = body.as_str().unwrap().to_owned();
    let timeline = hex_id();
    let (status, body) = server
        .call(
            "POST",
            &format!("/v1/tenant/{tenant}/timeline"),
            Some(json!({"new_timeline_id": timeline})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (tenant, timeline)
}

/// Waits until the timeline's remote_consistent_lsn reaches its disk_consistent_lsn.
async fn wait_uploaded(server: &TestServer, tenant: &str, timeline: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, info) = server
            .call(
                "GET",
                &format!("/v1/tenant/{tenant}/timeline/{timeline}"),
                None,
            )
            .await;
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

/// Polls attachment_status; returns the final slug (must pass through
/// `maybe` or already be done, never anything else).
async fn wait_attached(server: &TestServer, tenant: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, info) = server
            .call("GET", &format!("/v1/tenant/{tenant}"), None)
            .await;
        assert_eq!(status, 200, "{info}");
        match info["attachment_status"]["slug"].as_str().unwrap() {
            "maybe" => {}
            "attached" | "failed" => return info,
            other => panic!("unexpected attachment status {other}"),
        }
        assert!(Instant::now() < deadline, "attach never finished: {info}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every key's value at `lsn` as served by the pageserver's storage.
fn contents(
    server: &TestServer,
    tenant: &str,
    timeline: &str,
    lsn: postgres_wal::Lsn,
) -> Vec<(String, Vec<u8>)> {
    let tenant = server.manager().get(tenant.parse().unwrap()).unwrap();
    let timeline = tenant.timeline(timeline.parse().unwrap()).unwrap();
    let storage = timeline.storage();
    let keys = storage
        .list_keys(storage::Key::MIN..storage::Key::MAX, lsn)
        .unwrap();
    keys.into_iter()
        .map(|key| (format!("{key:?}"), storage.get(key, lsn).unwrap().to_vec()))
        .collect()
}

/// (eviction markers, resident layer files) in a timeline directory.
fn layer_entries(dir: &Path) -> (usize, usize) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("delta_") || n.starts_with("image_"))
        .collect();
    let markers = names.iter().filter(|n| n.ends_with(".evicted")).count();
    let resident = names.iter().filter(|n| !n.contains('.')).count();
    (markers, resident)
}

fn lsn_of(info: &Value, field: &str) -> postgres_wal::Lsn {
    info[field].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_attach_round_trip_and_generations() {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote");
    let a = start(&dir.path().join("a"), &remote).await;
    let (tenant, timeline) = create_with_timeline(&a, 1).await;
    let uploaded = wait_uploaded(&a, &tenant, &timeline).await;
    let lsn = lsn_of(&uploaded, "last_record_lsn");
    let expected = contents(&a, &tenant, &timeline, lsn);
    assert!(expected.len() > 100, "initdb has many keys");
    let names: Vec<String> = objects(&remote).into_keys().collect();
    assert!(
        names
            .iter()
            .any(|n| n.ends_with("index_part.json-00000001")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.contains("generation-00000001")),
        "{names:?}"
    );

    // B takes the tenant over with generation 2 while A keeps running.
    let b = start(&dir.path().join("b"), &remote).await;
    let (status, body) = b
        .call(
            "PUT",
            &format!("/v1/tenant/{tenant}/location_config"),
            Some(json!({"tenant_id": tenant, "mode": "AttachedSingle", "generation": 2})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let info = wait_attached(&b, &tenant).await;
    assert_eq!(info["attachment_status"]["slug"], "attached", "{info}");
    assert_eq!(info["generation"], 2);
    // The attach is lazy: B holds eviction markers, no layer files, until
    // reads download them.
    let b_timeline = dir
        .path()
        .join("b/tenants")
        .join(&tenant)
        .join("timelines")
        .join(&timeline);
    let (markers, resident) = layer_entries(&b_timeline);
    assert!(markers > 0, "no eviction markers after a lazy attach");
    assert_eq!(resident, 0, "the attach downloaded layer files");
    assert_eq!(contents(&b, &tenant, &timeline, lsn), expected);
    let (_, resident) = layer_entries(&b_timeline);
    assert!(resident > 0, "reads downloaded no layer");
    // B writes its own index (same layers, generation 2) on its first round.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !objects(&remote)
        .keys()
        .any(|n| n.ends_with("index_part.json-00000002"))
    {
        assert!(Instant::now() < deadline, "B never uploaded its index");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gen2 = |all: BTreeMap<String, Vec<u8>>| -> BTreeMap<String, Vec<u8>> {
        all.into_iter()
            .filter(|(n, _)| n.ends_with("-00000002"))
            .collect()
    };
    let before = objects(&remote);
    assert!(gen2(before.clone())
        .keys()
        .any(|n| n.ends_with("index_part.json-00000002")));

    // A, now stale, keeps working: a branch, GC, a final upload at stop.
    let branch = hex_id();
    let (status, body) = a
        .call(
            "POST",
            &format!("/v1/tenant/{tenant}/timeline"),
            Some(json!({"new_timeline_id": branch, "ancestor_timeline_id": timeline})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = a
        .call(
            "PUT",
            &format!("/v1/tenant/{tenant}/timeline/{timeline}/do_gc"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    a.stop().await;
    let after = objects(&remote);
    assert_eq!(
        gen2(after.clone()),
        gen2(before.clone()),
        "B's objects changed"
    );
    // Nothing of A's generation-1 objects that B's index names is gone.
    for name in before.keys() {
        assert!(
            after.contains_key(name),
            "{name} was deleted by the stale pageserver"
        );
    }
    assert!(
        !after.keys().any(|n| n.contains(&branch)),
        "the stale pageserver uploaded a new timeline"
    );
    assert_eq!(contents(&b, &tenant, &timeline, lsn), expected);

    // Detach from B, attach again (generation 3) with the local copy gone.
    let (status, body) = b
        .call("POST", &format!("/v1/tenant/{tenant}/detach"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(!dir.path().join("b/tenants").join(&tenant).exists());
    let (status, body) = b
        .call(
            "POST",
            &format!("/v1/tenant/{tenant}/attach"),
            Some(json!({"generation": 3, "config": {}})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let info = wait_attached(&b, &tenant).await;
    assert_eq!(info["attachment_status"]["slug"], "attached", "{info}");
    assert_eq!(contents(&b, &tenant, &timeline, lsn), expected);

    // A stale generation is refused; so is attaching twice.
    assert_error(
        b.call(
            "POST",
            &format!("/v1/tenant/{tenant}/attach"),
            Some(json!({"generation": 3, "config": {}})),
        )
        .await,
        409,
    );
    b.stop().await;
    let c = start(&dir.path().join("c"), &remote).await;
    let msg = assert_error(
        c.call(
            "POST",
            &format!("/v1/tenant/{tenant}/attach"),
            Some(json!({"generation": 2, "config": {}})),
        )
        .await,
        409,
    );
    assert!(msg.contains("stale"), "{msg}");

    // Ignore and load on C after a proper attach.
    let (status, _) = c
        .call(
            "POST",
            &format!("/v1/tenant/{tenant}/attach"),
            Some(json!({"generation": 4, "config": {}})),
        )
        .await;
    assert_eq!(status, 202);
    wait_attached(&c, &tenant).await;
    let (status, body) = c
        .call("POST", &format!("/v1/tenant/{tenant}/ignore"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_error(
        c.call("GET", &format!("/v1/tenant/{tenant}"), None).await,
        404,
    );
    let (status, body) = c
        .call("POST", &format!("/v1/tenant/{tenant}/load"), None)
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(contents(&c, &tenant, &timeline, lsn), expected);

    // Deleting the tenant removes its remote objects too.
    let (status, body) = c
        .call("DELETE", &format!("/v1/tenant/{tenant}"), None)
        .await;
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.call("GET", &format!("/v1/tenant/{tenant}"), None).await.0 != 404 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !objects(&remote).keys().any(|n| n.contains(&tenant)),
        "remote objects of a deleted tenant remain"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_mobility_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote");
    let server = start(&dir.path().join("ps"), &remote).await;
    let unknown = hex_id();
    let msg = assert_error(
        server
            .call(
                "POST",
                &format!("/v1/tenant/{unknown}/attach"),
                Some(json!({"generation": 1, "config": {}})),
            )
            .await,
        404,
    );
    assert!(msg.contains("remote storage"), "{msg}");
    let msg = assert_error(
        server
            .call(
                "POST",
                &format!("/v1/tenant/{unknown}/attach"),
                Some(json!({"config": {}})),
            )
            .await,
        400,
    );
    assert!(msg.contains("generation"), "{msg}");
    assert_error(
        server
            .call(
                "POST",
                &format!("/v1/tenant/{unknown}/attach"),
                Some(json!({"generation": -1})),
            )
            .await,
        400,
    );
    let msg = assert_error(
        server
            .call(
                "PUT",
                &format!("/v1/tenant/{unknown}/location_config"),
                Some(json!({"tenant_id": unknown, "mode": "Floating", "generation": 1})),
            )
            .await,
        400,
    );
    assert!(msg.contains("Floating"), "{msg}");
    let msg = assert_error(
        server
            .call(
                "PUT",
                &format!("/v1/tenant/{unknown}/location_config"),
                Some(json!({"tenant_id": unknown, "mode": "AttachedSingle"})),
            )
            .await,
        400,
    );
    assert!(msg.contains("generation"), "{msg}");
    // Detached / Secondary of an absent tenant: nothing to do.
    let (status, body) = server
        .call(
            "PUT",
            &format!("/v1/tenant/{unknown}/location_config"),
            Some(json!({"tenant_id": unknown, "mode": "Detached"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_error(
        server
            .call("POST", &format!("/v1/tenant/{unknown}/detach"), None)
            .await,
        404,
    );
    assert_error(
        server
            .call("POST", &format!("/v1/tenant/{unknown}/load"), None)
            .await,
        400,
    );
    server.stop().await;
}
