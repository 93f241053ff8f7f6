//! What the web console reads, against a real server: `branch_name` on
//! timeline creation (validated, unique per tenant, idempotent, persisted
//! across a restart, removed with the timeline), the layer map route, and
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
