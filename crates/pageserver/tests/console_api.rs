//! What the web console reads, against a real server: `branch_name` on
//! timeline creation (validated, unique per tenant even for racing
//! creations, idempotent, persisted across a restart, removed with the
//! timeline), endpoint registrations (validated, persisted across a restart,
//! removed by `DELETE` and with their timeline), the layer map route, and
//! the embedded console assets. (The console itself runs in Chromium in
//! `crates/sediment/tests/console.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_error, hex_id, TestServer};
use serde_json::{json, Value};

async fn create(server: &TestServer, tenant: &str, body: Value) -> (u16, Value) {
    server
        .call("POST", &format!("/v1/tenant/{tenant}/timeline"), Some(body))
        .await
}

fn lsn_value(text: &Value) -> u64 {
    let (high, low) = text.as_str().unwrap().split_once('/').unwrap();
    (u64::from_str_radix(high, 16).unwrap() << 32) | u64::from_str_radix(low, 16).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_names_layer_map_and_console_assets() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let tenant = server.create_tenant().await;
    let main = hex_id();
    let (status, info) = create(
        &server,
        &tenant,
        json!({"new_timeline_id": main, "branch_name": "main"}),
    )
    .await;
    assert_eq!(status, 201, "{info}");
    assert_eq!(info["branch_name"], "main");
    let dev = hex_id();
    let (status, info) = create(
        &server,
        &tenant,
        json!({"new_timeline_id": dev, "ancestor_timeline_id": main, "branch_name": "dev"}),
    )
    .await;
    assert_eq!(status, 201, "{info}");
    assert_eq!(info["branch_name"], "dev");

    // Idempotent re-creation keeps the name; a name is unique per tenant;
    // an existing timeline cannot be renamed by re-creating it.
    let (status, again) = create(
        &server,
        &tenant,
        json!({"new_timeline_id": dev, "ancestor_timeline_id": main, "branch_name": "dev"}),
    )
    .await;
    assert_eq!(status, 201, "{again}");
    let msg = assert_error(
        create(
            &server,
            &tenant,
            json!({"new_timeline_id": hex_id(), "ancestor_timeline_id": main, "branch_name": "dev"}),
        )
        .await,
        409,
    );
    assert!(msg.contains("dev"), "{msg}");
    assert_error(
        create(
            &server,
            &tenant,
            json!({"new_timeline_id": dev, "ancestor_timeline_id": main, "branch_name": "other"}),
        )
        .await,
        409,
    );
    for bad in ["", "a\nb"] {
        assert_error(
            create(
                &server,
                &tenant,
                json!({"new_timeline_id": hex_id(), "ancestor_timeline_id": main, "branch_name": bad}),
            )
            .await,
            400,
        );
    }
    // Without a name a timeline has none (the field is omitted).
    let unnamed = hex_id();
    let (status, info) = create(
        &server,
        &tenant,
        json!({"new_timeline_id": unnamed, "ancestor_timeline_id": main}),
    )
    .await;
    assert_eq!(status, 201, "{info}");
    assert!(info.get("branch_name").is_none(), "{info}");

    // The layer map: well-formed rectangles whose sizes add up to the
    // timeline's physical size.
    let (status, map) = server
        .call(
            "GET",
            &format!("/v1/tenant/{tenant}/timeline/{main}/layer"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{map}");
    assert_eq!(map["timeline_id"], main.as_str());
    let layers = map["historic_layers"].as_array().unwrap();
    assert!(!layers.is_empty(), "{map}");
    for layer in layers {
        let key_start = layer["key_start"].as_str().unwrap();
        let key_end = layer["key_end"].as_str().unwrap();
        assert_eq!(key_start.len(), 36);
        assert!(key_start < key_end, "{layer}");
        assert!(lsn_value(&layer["lsn_start"]) < lsn_value(&layer["lsn_end"]));
        assert!(["L0", "L1", "image"].contains(&layer["level"].as_str().unwrap()));
        assert!(layer["layer_file_name"].as_str().unwrap().starts_with(
            if layer["kind"] == "Image" {
                "image_"
            } else {
                "delta_"
            }
        ));
    }
    let layer_bytes: u64 = layers
        .iter()
        .map(|l| l["layer_file_size"].as_u64().unwrap())
        .sum();
    let (_, info) = server
        .call("GET", &format!("/v1/tenant/{tenant}/timeline/{main}"), None)
        .await;
    assert_eq!(Some(layer_bytes), info["current_physical_size"].as_u64());
    assert!(
        !map["in_memory_layers"].as_array().unwrap().is_empty(),
        "{map}"
    );
    assert_error(
        server
            .call(
                "GET",
                &format!("/v1/tenant/{tenant}/timeline/{}/layer", hex_id()),
                None,
            )
            .await,
        404,
    );

    // The console's assets are served from the binary.
    for (path, content_type, needle) in [
        ("/console", "text/html", "/console/console.js"),
        ("/console/", "text/html", "/console/console.js"),
        ("/console/tenant/x", "text/html", "/console/console.js"),
        ("/console/console.js", "text/javascript", "historic_layers"),
        ("/console/console.css", "text/css", "font"),
    ] {
        let response = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let header = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(header.starts_with(content_type), "{path}: {header}");
        assert!(response.text().await.unwrap().contains(needle), "{path}");
    }
    server.stop().await;

    // Names survive a restart; deleting a timeline removes its name file.
    let server = TestServer::start(dir.path()).await;
    let (_, timelines) = server
        .call("GET", &format!("/v1/tenant/{tenant}/timeline"), None)
        .await;
    let name_of = |id: &str| {
        timelines
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["timeline_id"] == id)
            .map(|t| t["branch_name"].clone())
            .unwrap()
    };
    assert_eq!(name_of(&main), "main");
    assert_eq!(name_of(&dev), "dev");
    assert_eq!(name_of(&unnamed), Value::Null);
    let (status, body) = server
        .call(
            "DELETE",
            &format!("/v1/tenant/{tenant}/timeline/{dev}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let names_dir = dir
        .path()
        .join("tenants")
        .join(&tenant)
        .join("branch_names");
    assert!(names_dir.join(format!("{main}.json")).exists());
    assert!(!names_dir.join(format!("{dev}.json")).exists());
    // The name is free again.
    let (status, info) = create(
        &server,
        &tenant,
        json!({"new_timeline_id": hex_id(), "ancestor_timeline_id": main, "branch_name": "dev"}),
    )
    .await;
    assert_eq!(status, 201, "{info}");
    server.stop().await;
}

/// Racing creations that ask for one name: while the first is still
/// bootstrapping (initdb takes seconds), the others must be refused, naming
/// the timeline that has the name; exactly one timeline ends up with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_creations_with_one_branch_name_get_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let tenant = server.create_tenant().await;
    let ids: Vec<String> = (0..3).map(|_| hex_id()).collect();
    let requests = ids.iter().map(|id| {
        create(
            &server,
            &tenant,
            json!({"new_timeline_id": id, "branch_name": "race"}),
        )
    });
    let answers = futures::future::join_all(requests).await;
    let winners: Vec<&String> = ids
        .iter()
        .zip(&answers)
        .filter(|(_, (status, _))| *status == 201)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    let winner = winners[0];
    for (id, answer) in ids.iter().zip(answers) {
        if id == winner {
            assert_eq!(answer.1["branch_name"], "race", "{answer:?}");
            continue;
        }
        let msg = assert_error(answer, 409);
        assert!(
            msg.contains("\"race\"") && msg.contains(winner.as_str()),
            "{msg}"
        );
    }
    let (_, timelines) = server
        .call("GET", &format!("/v1/tenant/{tenant}/timeline"), None)
        .await;
    let timelines = timelines.as_array().unwrap();
    assert_eq!(timelines.len(), 1, "{timelines:?}");
    assert_eq!(timelines[0]["timeline_id"], winner.as_str());
    // Branches racing for one name from the same parent: one winner too.
    let branch_ids: Vec<String> = (0..4).map(|_| hex_id()).collect();
    let requests = branch_ids.iter().map(|id| {
        create(
            &server,
            &tenant,
            json!({"new_timeline_id": id, "ancestor_timeline_id": winner, "branch_name": "dev"}),
        )
    });
    let answers = futures::future::join_all(requests).await;
    let created = answers.iter().filter(|(status, _)| *status == 201).count();
    let refused = answers.iter().filter(|(status, _)| *status == 409).count();
    assert_eq!((created, refused), (1, 3), "{answers:?}");
    server.stop().await;
}

async fn list(server: &TestServer, tenant: &str) -> Value {
    let (status, body) = server
        .call("GET", &format!("/v1/tenant/{tenant}/endpoint"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn endpoint_path(tenant: &str, timeline: &str, name: &str) -> String {
    format!("/v1/tenant/{tenant}/timeline/{timeline}/endpoint/{name}")
}

/// Registrations: what `sediment endpoint start` tells the pageserver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_registrations_persist_and_follow_their_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let tenant = server.create_tenant().await;
    let main = hex_id();
    let (status, info) = create(
        &server,
        &tenant,
        json!({"new_timeline_id": main, "branch_name": "main"}),
    )
    .await;
    assert_eq!(status, 201, "{info}");
    let dev = hex_id();
    let (status, info) = create(
        &server,
        &tenant,
        json!({"new_timeline_id": dev, "ancestor_timeline_id": main, "branch_name": "dev"}),
    )
    .await;
    assert_eq!(status, 201, "{info}");
    assert_eq!(list(&server, &tenant).await, json!([]));

    let (status, body) = server
        .call(
            "PUT",
            &endpoint_path(&tenant, &main, "ro"),
            Some(json!({"mode": "read_only", "lsn": "0/16B9188", "port": 55433, "pid": 4242})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"name": "ro", "tenant_id": tenant, "timeline_id": main, "mode": "read_only",
               "lsn": "0/16B9188", "port": 55433, "pid": 4242})
    );
    let (status, body) = server
        .call(
            "PUT",
            &endpoint_path(&tenant, &dev, "rw"),
            Some(json!({"mode": "writable", "lsn": "0/2000028", "port": 55432})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Malformed requests are 400 with a message naming the problem; an
    // unknown timeline is 404.
    for (name, body, needle) in [
        (
            "bad.name",
            json!({"mode": "read_only", "lsn": "0/1", "port": 1}),
            "endpoint name",
        ),
        (
            "ok",
            json!({"mode": "read_only", "lsn": "16B9188", "port": 1}),
            "lsn",
        ),
        (
            "ok",
            json!({"mode": "read_only", "lsn": "0/1", "port": 0}),
            "port",
        ),
        (
            "ok",
            json!({"mode": "read_only", "lsn": "0/1", "port": 70000}),
            "port",
        ),
        (
            "ok",
            json!({"mode": "primary", "lsn": "0/1", "port": 1}),
            "mode",
        ),
        (
            "ok",
            json!({"mode": "read_only", "lsn": "0/1", "port": 1, "pid": null}),
            "pid",
        ),
        (
            "ok",
            json!({"mode": "read_only", "lsn": "0/1", "port": 1, "extra": 1}),
            "extra",
        ),
    ] {
        let msg = assert_error(
            server
                .call("PUT", &endpoint_path(&tenant, &main, name), Some(body))
                .await,
            400,
        );
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
    assert_error(
        server
            .call(
                "PUT",
                &endpoint_path(&tenant, &hex_id(), "ok"),
                Some(json!({"mode": "read_only", "lsn": "0/1", "port": 1})),
            )
            .await,
        404,
    );
    let listed = list(&server, &tenant).await;
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ro", "rw"], "{listed}");
    server.stop().await;

    // Kept across a restart.
    let server = TestServer::start(dir.path()).await;
    assert_eq!(list(&server, &tenant).await, listed);
    // Unregistering on another timeline leaves the registration alone;
    // on its own it removes it; twice is fine.
    for (timeline, left) in [(&dev, 2), (&main, 1), (&main, 1)] {
        let (status, body) = server
            .call("DELETE", &endpoint_path(&tenant, timeline, "ro"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(list(&server, &tenant).await.as_array().unwrap().len(), left);
    }
    // Deleting a timeline drops the registrations on it.
    let (status, body) = server
        .call(
            "DELETE",
            &format!("/v1/tenant/{tenant}/timeline/{dev}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(list(&server, &tenant).await, json!([]));
    server.stop().await;
    let server = TestServer::start(dir.path()).await;
    assert_eq!(list(&server, &tenant).await, json!([]));
    assert_error(
        server
            .call("GET", &format!("/v1/tenant/{}/endpoint", hex_id()), None)
            .await,
        404,
    );
    server.stop().await;
}
