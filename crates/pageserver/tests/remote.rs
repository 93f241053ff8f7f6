//! Remote storage through the management API, on in-process pageservers
//! sharing one remote storage (a local directory, and SeaweedFS as a real
//! S3 server): uploads, lazy attach (`maybe` → `attached`),
//! generations (a stale pageserver never overwrites or deletes a newer
//! one's objects), detach/ignore/load, and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{assert_error, hex_id, test_conf, TestServer};
use remote_storage::{Remote, RemoteConfig, RemoteError, RemotePath, S3Settings};
use serde_json::{json, Value};
use testkit::s3::SeaweedS3;

/// The remote storage the pageservers of one test share, and a client of
/// it for checking objects.
struct Store {
    url: String,
    client: Remote,
}

impl Store {
    fn local(dir: &Path) -> Store {
        let url = dir.display().to_string();
        let client = Remote::new(RemoteConfig::parse(&url).unwrap().open().unwrap());
        Store { url, client }
    }

    fn s3(s3: &SeaweedS3, prefix: &str) -> Store {
        let url = format!("s3://{}/{prefix}", s3.bucket());
        let settings = S3Settings {
            endpoint: Some(s3.endpoint()),
            region: Some(testkit::s3::REGION.into()),
            access_key_id: Some(testkit::s3::ACCESS_KEY_ID.into()),
            secret_access_key: Some(testkit::s3::SECRET_ACCESS_KEY.into()),
        };
        let client = Remote::new(
            RemoteConfig::parse(&url)
                .unwrap()
                .open_with(&settings)
                .unwrap(),
        );
        Store { url, client }
    }

    async fn start(&self, workdir: &Path) -> TestServer {
        let mut conf = test_conf();
        conf.remote_storage = Some(self.url.clone());
        TestServer::start_with(workdir, conf).await
    }

    /// Every object with its bytes.
    async fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        let listing = self
            .client
            .list(&RemotePath::new("tenants").unwrap())
            .await
            .unwrap();
        let mut found = BTreeMap::new();
        for object in listing {
            match self.client.get(&object.path).await {
                Ok(bytes) => {
                    found.insert(object.path.as_str().to_owned(), bytes.to_vec());
                }
                // Deleted between the listing and the read.
                Err(RemoteError::NotFound(_)) => {}
                Err(error) => panic!("cannot read {}: {error}", object.path.as_str()),
            }
        }
        found
    }
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
            Some(json!({"new_timeline_id": timeline, "branch_name": "main"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (tenant, timeline)
}

/// The `branch_name` a server reports for a timeline.
async fn branch_name_of(server: &TestServer, tenant: &str, timeline: &str) -> Value {
    server.timeline_info(tenant, timeline).await["branch_name"].clone()
}

/// Waits until the timeline's remote_consistent_lsn reaches its disk_consistent_lsn.
async fn wait_uploaded(server: &TestServer, tenant: &str, timeline: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = server.timeline_info(tenant, timeline).await;
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
    let store = Store::local(&dir.path().join("remote"));
    round_trip_and_generations(dir.path(), &store).await;
}

/// The same against a real S3 server (SeaweedFS).
#[test]
fn detach_attach_round_trip_and_generations_on_s3() {
    let s3 = SeaweedS3::start_new("gens").expect("weed mini starts");
    // The in-process pageservers read S3 settings from the environment; set
    // before any runtime thread exists.
    for (key, value) in s3.env() {
        std::env::set_var(key, value);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::s3(&s3, "ps");
        round_trip_and_generations(dir.path(), &store).await;
    });
}

/// Writes `count` new versions of a few keys into the timeline's storage
/// and flushes each batch into its own layer (so compaction has work).
fn churn(storage: &storage::Timeline, count: u32) {
    let rel = postgres_wal::record::RelFileNode {
        spc_node: 1663,
        db_node: 5,
        rel_node: 777_777,
    };
    for round in 0..count {
        let lsn = postgres_wal::Lsn(storage.last_record_lsn().0 + 0x100);
        let mut writer = storage.writer();
        for blkno in 0..8u32 {
            let key = storage::Key::rel_block(rel, postgres_wal::record::ForkNumber::Main, blkno);
            let page = vec![u8::try_from(round % 251).unwrap(); 8192];
            writer
                .put(key, lsn, storage::Value::Image(page.into()))
                .unwrap();
        }
        writer.finish(lsn).unwrap();
        storage.freeze_and_flush().unwrap();
    }
}

async fn round_trip_and_generations(dir: &Path, store: &Store) {
    let a = store.start(&dir.join("a")).await;
    let (tenant, timeline) = create_with_timeline(&a, 1).await;
    let uploaded = wait_uploaded(&a, &tenant, &timeline).await;
    let lsn = lsn_of(&uploaded, "last_record_lsn");
    let expected = contents(&a, &tenant, &timeline, lsn);
    assert!(expected.len() > 100, "initdb has many keys");
    let objects = store.objects().await;
    let index = objects
        .iter()
        .find(|(n, _)| n.ends_with("index_part.json-00000001"))
        .map(|(_, bytes)| String::from_utf8_lossy(bytes).into_owned())
        .unwrap_or_else(|| panic!("no index: {:?}", objects.keys()));
    assert!(index.contains("\"branch_name\": \"main\""), "{index}");
    assert!(index.contains("\"version\": 2"), "{index}");
    let names: Vec<String> = objects.into_keys().collect();
    assert!(
        names.iter().any(|n| n.contains("generation-00000001")),
        "{names:?}"
    );

    // B takes the tenant over with generation 2 while A keeps running.
    let b = store.start(&dir.join("b")).await;
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
    // The branch name came with the index (format 2). (Asked only now: the
    // timeline's info computes its logical size, which reads layers.)
    assert_eq!(branch_name_of(&b, &tenant, &timeline).await, "main");
    // B writes its own index (same layers, generation 2) on its first round.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !store
        .objects()
        .await
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
    let before = store.objects().await;
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
    // New layers, compacted (old L0s deleted locally), a new image.
    let a_storage = a
        .manager()
        .get(tenant.parse().unwrap())
        .unwrap()
        .timeline(timeline.parse().unwrap())
        .unwrap()
        .storage()
        .clone();
    tokio::task::spawn_blocking(move || {
        churn(&a_storage, 6);
        let policy = storage::CompactionPolicy {
            compaction_threshold: 2,
            ..storage::CompactionPolicy::default()
        };
        let compacted = a_storage.compact(&policy).unwrap();
        eprintln!("stale pageserver compacted: {compacted:?}");
        a_storage
            .create_image_layer(
                storage::Key::MIN..storage::Key::MAX,
                a_storage.disk_consistent_lsn(),
            )
            .unwrap();
    })
    .await
    .unwrap();
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
    let after = store.objects().await;
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
    // B evicts everything and reads again: every layer comes back from the
    // objects A left alone.
    let (status, report) = b
        .call(
            "PUT",
            "/v1/disk_usage_eviction/run",
            Some(json!({"evict_bytes": u64::MAX / 2})),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert!(report["evicted_layers"].as_u64().unwrap() > 0, "{report}");
    let (_, resident) = layer_entries(&b_timeline);
    assert_eq!(resident, 0, "{report}");
    assert_eq!(contents(&b, &tenant, &timeline, lsn), expected);

    // Detach from B, attach again (generation 3) with the local copy gone.
    let (status, body) = b
        .call("POST", &format!("/v1/tenant/{tenant}/detach"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(!dir.join("b/tenants").join(&tenant).exists());
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
    // B's own index carried the name on.
    assert_eq!(branch_name_of(&b, &tenant, &timeline).await, "main");

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
    let c = store.start(&dir.join("c")).await;
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

    // Deleting a timeline removes its remote objects (after the 404).
    let doomed = hex_id();
    let (status, body) = c
        .call(
            "POST",
            &format!("/v1/tenant/{tenant}/timeline"),
            Some(json!({"new_timeline_id": doomed, "ancestor_timeline_id": timeline})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !store.objects().await.keys().any(|n| n.contains(&doomed)) {
        assert!(Instant::now() < deadline, "the branch was never uploaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = c
        .call(
            "DELETE",
            &format!("/v1/tenant/{tenant}/timeline/{doomed}"),
            None,
        )
        .await;
    assert!(status == 200 || status == 202, "{status} {body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while c
        .call(
            "GET",
            &format!("/v1/tenant/{tenant}/timeline/{doomed}"),
            None,
        )
        .await
        .0
        != 404
        || store.objects().await.keys().any(|n| n.contains(&doomed))
    {
        assert!(
            Instant::now() < deadline,
            "the deleted timeline's remote objects remain"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

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
        !store.objects().await.keys().any(|n| n.contains(&tenant)),
        "remote objects of a deleted tenant remain"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_mobility_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("remote"));
    let server = store.start(&dir.path().join("ps")).await;
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
        404,
    );
    server.stop().await;
}

/// `Secondary` keeps a warm copy: B, secondary while A is attached,
/// downloads A's layers (also those A adds later) and writes nothing
/// remote; switched to `AttachedSingle` with a new generation it holds
/// every layer locally at once (no eviction markers, no download) and
/// serves exactly what A served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_keeps_a_warm_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("remote"));
    let a = store.start(&dir.path().join("a")).await;
    let (tenant, timeline) = create_with_timeline(&a, 1).await;
    wait_uploaded(&a, &tenant, &timeline).await;
    let b = store.start(&dir.path().join("b")).await;
    let (status, body) = b
        .call(
            "PUT",
            &format!("/v1/tenant/{tenant}/location_config"),
            Some(json!({"tenant_id": tenant, "mode": "Secondary"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Not a tenant B serves.
    assert_error(
        b.call("GET", &format!("/v1/tenant/{tenant}"), None).await,
        404,
    );
    // A adds layers; B's copy follows A's newest index.
    let a_storage = a
        .manager()
        .get(tenant.parse().unwrap())
        .unwrap()
        .timeline(timeline.parse().unwrap())
        .unwrap()
        .storage()
        .clone();
    let churned = a_storage.clone();
    tokio::task::spawn_blocking(move || churn(&churned, 3))
        .await
        .unwrap();
    let info = wait_uploaded(&a, &tenant, &timeline).await;
    let lsn = lsn_of(&info, "last_record_lsn");
    let expected = contents(&a, &tenant, &timeline, lsn);
    let warm = dir.path().join("b/secondary").join(&tenant).join(&timeline);
    let wanted: std::collections::BTreeSet<String> = a_storage
        .layer_files()
        .iter()
        .map(storage::LayerDesc::file_name)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have: std::collections::BTreeSet<String> = std::fs::read_dir(&warm)
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        if have == wanted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "secondary copy {have:?}, A has {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = store.objects().await;
    assert!(
        !before.keys().any(|n| n.ends_with("-00000002")),
        "the secondary wrote objects"
    );

    // A hands over; B becomes attached with generation 2.
    let (status, body) = a
        .call(
            "PUT",
            &format!("/v1/tenant/{tenant}/location_config"),
            Some(json!({"tenant_id": tenant, "mode": "AttachedStale", "generation": 1})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
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
    let b_timeline = dir
        .path()
        .join("b/tenants")
        .join(&tenant)
        .join("timelines")
        .join(&timeline);
    assert_eq!(
        layer_entries(&b_timeline),
        (0, wanted.len()),
        "not every layer was adopted from the warm copy"
    );
    assert!(!warm.exists(), "the secondary copy stayed behind");
    let b_tenant = b.manager().get(tenant.parse().unwrap()).unwrap();
    assert_eq!(contents(&b, &tenant, &timeline, lsn), expected);
    assert_eq!(
        b_tenant
            .on_demand_io()
            .counters()
            .count
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "reads after a warm attach downloaded layers"
    );
    a.stop().await;
    b.stop().await;
}

/// The layer files of a warm copy with their inode numbers (a download
/// installs a new file, so an unchanged inode means the file was kept).
fn warm_files(dir: &Path) -> BTreeMap<String, u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().ino(),
            )
        })
        .collect()
}

/// Waits until the warm copy in `dir` holds exactly A's layers.
async fn wait_warm(dir: &Path, a_storage: &storage::Timeline) -> BTreeMap<String, u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let wanted: std::collections::BTreeSet<String> = a_storage
            .layer_files()
            .iter()
            .map(storage::LayerDesc::file_name)
            .collect();
        let have = warm_files(dir);
        if have
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            == wanted
        {
            return have;
        }
        assert!(
            Instant::now() < deadline,
            "secondary copy {have:?}, A has {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `Secondary` location survives a restart of its pageserver: the warm
/// layers are kept (same files), the refresh task resumes (layers A adds
/// afterwards arrive), and promoted with generation 2 it serves exactly
/// what A served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("remote"));
    let a = store.start(&dir.path().join("a")).await;
    let (tenant, timeline) = create_with_timeline(&a, 1).await;
    wait_uploaded(&a, &tenant, &timeline).await;
    let b = store.start(&dir.path().join("b")).await;
    let (status, body) = b
        .call(
            "PUT",
            &format!("/v1/tenant/{tenant}/location_config"),
            Some(json!({"tenant_id": tenant, "mode": "Secondary"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let a_storage = a
        .manager()
        .get(tenant.parse().unwrap())
        .unwrap()
        .timeline(timeline.parse().unwrap())
        .unwrap()
        .storage()
        .clone();
    let warm = dir.path().join("b/secondary").join(&tenant).join(&timeline);
    let before = wait_warm(&warm, &a_storage).await;
    assert!(!before.is_empty());

    b.stop().await;
    let b = store.start(&dir.path().join("b")).await;
    let kept = warm_files(&warm);
    for (name, ino) in &before {
        assert_eq!(kept.get(name), Some(ino), "warm layer {name} not kept");
    }
    // Still not a tenant B serves, and its copy still follows A.
    assert_error(
        b.call("GET", &format!("/v1/tenant/{tenant}"), None).await,
        404,
    );
    let churned = a_storage.clone();
    tokio::task::spawn_blocking(move || churn(&churned, 3))
        .await
        .unwrap();
    let info = wait_uploaded(&a, &tenant, &timeline).await;
    let lsn = lsn_of(&info, "last_record_lsn");
    let expected = contents(&a, &tenant, &timeline, lsn);
    let after = wait_warm(&warm, &a_storage).await;
    assert!(
        after.keys().any(|name| !before.contains_key(name)),
        "the resumed secondary did not refresh: {after:?}"
    );

    let (status, body) = a
        .call(
            "PUT",
            &format!("/v1/tenant/{tenant}/location_config"),
            Some(json!({"tenant_id": tenant, "mode": "AttachedStale", "generation": 1})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
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
    assert_eq!(contents(&b, &tenant, &timeline, lsn), expected);
    assert!(!warm.exists(), "the secondary copy stayed behind");
    a.stop().await;
    b.stop().await;
}

/// `AttachedStale` survives a restart: uploads and deletions stay stopped
/// (the mode is in `tenant.json`) until `AttachedSingle` with a newer
/// generation clears it, and uploads then resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attached_stale_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("remote"));
    let workdir = dir.path().join("a");
    let a = store.start(&workdir).await;
    let (tenant, timeline) = create_with_timeline(&a, 1).await;
    wait_uploaded(&a, &tenant, &timeline).await;
    let (status, body) = a
        .call(
            "PUT",
            &format!("/v1/tenant/{tenant}/location_config"),
            Some(json!({"tenant_id": tenant, "mode": "AttachedStale", "generation": 1})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    a.stop().await;

    let a = store.start(&workdir).await;
    let stale = |server: &TestServer| {
        server
            .manager()
            .get(tenant.parse().unwrap())
            .unwrap()
            .remote()
            .expect("remote side")
            .is_stale()
    };
    assert!(stale(&a), "AttachedStale was forgotten by the restart");
    let (status, body) = a
        .call(
            "PUT",
            &format!("/v1/tenant/{tenant}/location_config"),
            Some(json!({"tenant_id": tenant, "mode": "AttachedSingle", "generation": 2})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(!stale(&a));
    a.stop().await;
    let a = store.start(&workdir).await;
    assert!(
        !stale(&a),
        "AttachedSingle did not clear the persisted mode"
    );
    // Uploads run again, in generation 2.
    let storage = a
        .manager()
        .get(tenant.parse().unwrap())
        .unwrap()
        .timeline(timeline.parse().unwrap())
        .unwrap()
        .storage()
        .clone();
    tokio::task::spawn_blocking(move || churn(&storage, 2))
        .await
        .unwrap();
    wait_uploaded(&a, &tenant, &timeline).await;
    assert!(
        store
            .objects()
            .await
            .keys()
            .any(|name| name.contains("index_part.json-00000002")),
        "no generation-2 index after the mode was cleared"
    );
    a.stop().await;
}
