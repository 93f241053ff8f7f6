//! Timeline endpoints against a real server: bootstrap with stock initdb,
//! branches, idempotent re-creation, conflicts, deletion rules, restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_error, hex_id, TestServer};
use serde_json::{json, Value};

fn lsn_value(text: &Value) -> u64 {
    let (high, low) = text.as_str().unwrap().split_once('/').unwrap();
    (u64::from_str_radix(high, 16).unwrap() << 32) | u64::from_str_radix(low, 16).unwrap()
}

async fn bootstrap(server: &TestServer, tenant: &str, timeline: &str) -> Value {
    let (status, info) = server
        .call(
            "POST",
            &format!("/v1/tenant/{tenant}/timeline/"),
            Some(json!({"new_timeline_id": timeline})),
        )
        .await;
    assert_eq!(status, 201, "{info}");
    info
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_branch_recreate_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let tenant = server.create_tenant().await;
    let main = hex_id();

    // A creation still running makes a second identical request a 409.
    let racing = {
        let client = server.client.clone();
        let url = server.url(&format!("/v1/tenant/{tenant}/timeline"));
        let body = json!({"new_timeline_id": main});
        tokio::spawn(async move {
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let concurrent = server
        .call(
            "POST",
            &format!("/v1/tenant/{tenant}/timeline"),
            Some(json!({"new_timeline_id": main})),
        )
        .await;
    assert_eq!(racing.await.unwrap(), 201);
    assert_error(concurrent, 409);

    let (status, info) = server
        .call("GET", &format!("/v1/tenant/{tenant}/timeline/{main}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(info["timeline_id"], json!(main));
    assert_eq!(info["tenant_id"], json!(tenant));
    assert_eq!(info["state"], json!("Active"));
    assert!(info["ancestor_timeline_id"].is_null());
    let head = lsn_value(&info["last_record_lsn"]);
    assert!(
        head > 0x0100_0000,
        "initdb LSN {head:#x} is past the first segment"
    );
    assert_eq!(
        info["disk_consistent_lsn"], info["last_record_lsn"],
        "bootstrap is flushed"
    );
    assert_eq!(info["initdb_lsn"], info["last_record_lsn"]);
    assert_eq!(info["latest_gc_cutoff_lsn"], json!("0/0"));
    assert_eq!(info["pg_version"], json!(15));
    // A fresh cluster's files add up to tens of megabytes.
    let logical = info["current_logical_size"].as_u64().unwrap();
    assert!(logical > 10_000_000, "logical size {logical}");
    assert!(info["current_physical_size"].as_u64().unwrap() > 0);

    // Identical re-creation returns the existing timeline.
    let again = bootstrap(&server, &tenant, &main).await;
    assert_eq!(again["timeline_id"], json!(main));
    assert_eq!(again["last_record_lsn"], info["last_record_lsn"]);

    // Branch at the head and at an explicit LSN.
    let branch = hex_id();
    let (status, binfo) = server
        .call(
            "POST",
            &format!("/v1/tenant/{tenant}/timeline"),
            Some(json!({"new_timeline_id": branch, "ancestor_timeline_id": main})),
        )
        .await;
    assert_eq!(status, 201, "{binfo}");
    assert_eq!(binfo["ancestor_timeline_id"], json!(main));
    assert_eq!(binfo["ancestor_lsn"], info["last_record_lsn"]);
    let grandchild = hex_id();
    let (status, ginfo) = server
        .call("POST", &format!("/v1/tenant/{tenant}/timeline"), Some(json!({"new_timeline_id": grandchild, "ancestor_timeline_id": branch, "ancestor_start_lsn": info["last_record_lsn"]})))
        .await;
    assert_eq!(status, 201, "{ginfo}");
    // Same request again: 201; different parameters for an existing id: 409.
    let (status, _) = server
        .call(
            "POST",
            &format!("/v1/tenant/{tenant}/timeline"),
            Some(json!({"new_timeline_id": branch, "ancestor_timeline_id": main})),
        )
        .await;
    assert_eq!(status, 201);
    assert_error(
        server
            .call(
                "POST",
                &format!("/v1/tenant/{tenant}/timeline"),
                Some(json!({"new_timeline_id": branch})),
            )
            .await,
        409,
    );
    assert_error(
        server
            .call(
                "POST",
                &format!("/v1/tenant/{tenant}/timeline"),
                Some(json!({"new_timeline_id": main, "ancestor_timeline_id": branch})),
            )
            .await,
        409,
    );

    // Invalid branch requests.
    let timelines_path = format!("/v1/tenant/{tenant}/timeline");
    let create = |body: Value| server.call("POST", &timelines_path, Some(body));
    assert_error(create(json!({"new_timeline_id": hex_id(), "ancestor_timeline_id": main, "ancestor_start_lsn": "FF/0"})).await, 406);
    assert_error(create(json!({"new_timeline_id": hex_id(), "ancestor_timeline_id": main, "ancestor_start_lsn": "0/10"})).await, 406);
    assert_error(create(json!({"new_timeline_id": hex_id(), "ancestor_timeline_id": main, "ancestor_start_lsn": "not-an-lsn"})).await, 400);
    assert_error(
        create(json!({"new_timeline_id": hex_id(), "ancestor_start_lsn": "0/10"})).await,
        400,
    );
    assert_error(
        create(json!({"new_timeline_id": hex_id(), "ancestor_timeline_id": hex_id()})).await,
        404,
    );
    assert_error(
        create(json!({"new_timeline_id": hex_id(), "ancestor_timeline_id": "nope"})).await,
        400,
    );
    assert_error(create(json!({"new_timeline_id": "nope"})).await, 400);
    assert_error(
        create(json!({"new_timeline_id": hex_id(), "pg_version": 14})).await,
        400,
    );
    assert_error(
        create(json!({"new_timeline_id": hex_id(), "existing_initdb_timeline_id": main})).await,
        400,
    );
    // Unknown fields are tolerated (the schema allows them); nulls are not.
    // (An identical re-creation of `main`, so the timeline count stays.)
    let (status, body) = create(json!({"new_timeline_id": main, "surprise": true})).await;
    assert_eq!(
        (status, &body["timeline_id"]),
        (201, &json!(main)),
        "{body}"
    );
    assert_error(
        create(json!({"new_timeline_id": hex_id(), "ancestor_timeline_id": null})).await,
        400,
    );
    assert_error(create(json!({"ancestor_timeline_id": main})).await, 400);
    assert_error(
        server
            .call(
                "POST",
                &format!("/v1/tenant/{}/timeline", hex_id()),
                Some(json!({"new_timeline_id": hex_id()})),
            )
            .await,
        404,
    );
    assert_error(
        server
            .call(
                "POST",
                "/v1/tenant/abc/timeline",
                Some(json!({"new_timeline_id": hex_id()})),
            )
            .await,
        400,
    );

    // List and get errors.
    let (status, list) = server
        .call("GET", &format!("/v1/tenant/{tenant}/timeline"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert_error(
        server
            .call("GET", &format!("/v1/tenant/{}/timeline", hex_id()), None)
            .await,
        404,
    );
    assert_error(server.call("GET", "/v1/tenant/q/timeline", None).await, 400);
    assert_error(
        server
            .call(
                "GET",
                &format!("/v1/tenant/{tenant}/timeline/{}", hex_id()),
                None,
            )
            .await,
        404,
    );
    assert_error(
        server
            .call("GET", &format!("/v1/tenant/{tenant}/timeline/xyz"), None)
            .await,
        400,
    );

    // Deletion: parents with children are refused with 412.
    let delete = |id: &str| {
        let path = format!("/v1/tenant/{tenant}/timeline/{id}");
        let server = &server;
        async move { server.call("DELETE", &path, None).await }
    };
    let msg = assert_error(delete(&main).await, 412);
    assert!(msg.contains(&branch), "{msg}");
    assert_error(delete(&branch).await, 412);
    assert_eq!(delete(&grandchild).await.0, 200);
    assert_error(delete(&grandchild).await, 404);
    assert_eq!(delete(&branch).await.0, 200);
    assert_eq!(delete(&main).await.0, 200);
    assert_error(delete("bad").await, 400);
    assert_error(
        server
            .call(
                "DELETE",
                &format!("/v1/tenant/{}/timeline/{main}", hex_id()),
                None,
            )
            .await,
        404,
    );
    let (_, list) = server
        .call("GET", &format!("/v1/tenant/{tenant}/timeline"), None)
        .await;
    assert_eq!(list, json!([]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_and_timelines_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let tenant = server.create_tenant().await;
    let other_tenant = server.create_tenant().await;
    let main = hex_id();
    bootstrap(&server, &tenant, &main).await;
    let branch = hex_id();
    let (status, _) = server
        .call(
            "POST",
            &format!("/v1/tenant/{tenant}/timeline"),
            Some(json!({"new_timeline_id": branch, "ancestor_timeline_id": main})),
        )
        .await;
    assert_eq!(status, 201);
    let (_, tenants_before) = server.call("GET", "/v1/tenant", None).await;
    let (_, timelines_before) = server
        .call("GET", &format!("/v1/tenant/{tenant}/timeline"), None)
        .await;
    server.stop().await;

    let server = TestServer::start(dir.path()).await;
    let (_, tenants_after) = server.call("GET", "/v1/tenant", None).await;
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&tenants_after), ids(&tenants_before));
    assert!(ids(&tenants_after).contains(&other_tenant));
    let (_, timelines_after) = server
        .call("GET", &format!("/v1/tenant/{tenant}/timeline"), None)
        .await;
    // Uploads to remote storage run in the background (and on shutdown), so
    // the remote LSNs may have moved; everything else must be identical.
    let without_remote = |v: &Value| -> Vec<Value> {
        let mut timelines = v.as_array().unwrap().clone();
        for timeline in &mut timelines {
            let info = timeline.as_object_mut().unwrap();
            info.remove("remote_consistent_lsn");
            info.remove("remote_consistent_lsn_visible");
        }
        timelines
    };
    assert_eq!(
        without_remote(&timelines_after),
        without_remote(&timelines_before)
    );
    server.stop().await;
}

/// Sum of the layer files (`delta_*`, `image_*`) of a timeline directory.
fn layer_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            (name.starts_with("delta_") || name.starts_with("image_")) && !name.contains('.')
        })
        .map(|entry| entry.metadata().unwrap().len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_of_a_fresh_tree() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let tenant = server.create_tenant().await;
    let main = hex_id();
    let info = bootstrap(&server, &tenant, &main).await;
    let branch = hex_id();
    let (status, _) = server
        .call(
            "POST",
            &format!("/v1/tenant/{tenant}/timeline"),
            Some(json!({"new_timeline_id": branch, "ancestor_timeline_id": main})),
        )
        .await;
    assert_eq!(status, 201);

    // Physical size is exactly the bytes of the timeline's layer files.
    let timeline_dir = dir
        .path()
        .join("tenants")
        .join(&tenant)
        .join("timelines")
        .join(&main);
    let physical = info["current_physical_size"].as_u64().unwrap();
    assert_eq!(physical, layer_bytes(&timeline_dir));

    // Nothing was written after initdb: the whole tenant costs one
    // snapshot of main, the branch shares it.
    let logical = info["current_logical_size"].as_u64().unwrap();
    let (status, size) = server
        .call("GET", &format!("/v1/tenant/{tenant}/size"), None)
        .await;
    assert_eq!(status, 200, "{size}");
    assert_eq!(size["id"], json!(tenant));
    assert_eq!(size["size"], json!(logical), "{size}");
    let segments = size["inputs"]["segments"].as_array().unwrap();
    let branch_start = segments
        .iter()
        .find(|s| s["timeline_id"] == json!(branch))
        .unwrap();
    let parent = &segments[branch_start["segment"]["parent"].as_u64().unwrap() as usize];
    assert_eq!(parent["timeline_id"], json!(main), "{size}");
    assert_eq!(
        size["inputs"]["timeline_inputs"].as_array().unwrap().len(),
        2
    );

    let (status, inputs) = server
        .call(
            "GET",
            &format!("/v1/tenant/{tenant}/size?inputs_only=true"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(inputs["size"].is_null(), "{inputs}");
    assert!(inputs["inputs"]["segments"][0]["segment"]["size"].is_null());

    let (status, synthetic) = server
        .call("GET", &format!("/v1/tenant/{tenant}/synthetic_size"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(synthetic["size"], json!(logical));
    assert_eq!(
        synthetic["segment_sizes"].as_array().unwrap().len(),
        segments.len()
    );
    assert_eq!(
        synthetic["segment_sizes"][0]["method"],
        json!("SnapshotAfter")
    );

    // Layer statistics reach /metrics.
    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("pageserver_layer_bytes{level=\"L0\"}"))
        .unwrap_or_else(|| panic!("{metrics}"));
    let bytes: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(bytes >= physical, "{line}");
    server.stop().await;
}
