//! Management API against a real server on a free port: status, tenants,
//! tenant settings, routing errors, and the endpoints not offered yet.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_error, hex_id, TestServer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_spec_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;

    let (status, body) = server.call("GET", "/v1/status", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], 1);
    // Endpoints run with consistency checking for exactly the managers the
    // pageserver does not redo natively.
    assert_eq!(body["wal_consistency_checking"], "");
    assert_eq!(
        body["native_redo_rmgrs"],
        json!([
            "XLOG", "Heap", "Heap2", "Btree", "Sequence", "BRIN", "Generic", "Hash", "Gin", "Gist",
            "SPGist"
        ])
    );

    let spec = server
        .client
        .get(server.url("/v1/openapi.yml"))
        .send()
        .await
        .unwrap();
    assert_eq!(spec.status(), 200);
    let text = spec.text().await.unwrap();
    assert_eq!(text, include_str!("../openapi.yml"));
    assert!(text.contains("/v1/tenant/{tenant_id}/timeline/{timeline_id}"));

    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains(
            "pageserver_http_requests_total{method=\"GET\",route=\"/v1/status\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("pageserver_tenants 0"), "{text}");
    assert!(
        text.contains("pageserver_native_redo_rmgr{rmgr=\"Heap\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("pageserver_native_redo_rmgr{rmgr=\"Hash\"} 1"),
        "{text}"
    );
    assert!(!text.contains("rmgr=\"Transaction\""), "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_create_list_get_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;

    // Generated id.
    let generated = server.create_tenant().await;
    assert_eq!(generated.len(), 32);
    assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()));

    // Given id, with settings and a generation.
    let id = hex_id();
    let (status, body) = server
        .call("POST", "/v1/tenant", Some(json!({"new_tenant_id": id, "gc_horizon": 4096, "pitr_interval": "1h", "generation": 3})))
        .await;
    assert_eq!((status, body), (201, json!(id)));

    // Duplicate.
    let msg = assert_error(
        server
            .call("POST", "/v1/tenant/", Some(json!({"new_tenant_id": id})))
            .await,
        409,
    );
    assert!(msg.contains(&id), "{msg}");

    // Malformed ids and bodies.
    for bad_id in ["xyz", "0123", &"g".repeat(32), &"a".repeat(33)] {
        assert_error(
            server
                .call(
                    "POST",
                    "/v1/tenant/",
                    Some(json!({"new_tenant_id": bad_id})),
                )
                .await,
            400,
        );
    }
    assert_error(
        server
            .call("POST", "/v1/tenant/", Some(json!({"new_tenant_id": 5})))
            .await,
        400,
    );
    let msg = assert_error(
        server
            .call("POST", "/v1/tenant/", Some(json!({"no_such_setting": 1})))
            .await,
        400,
    );
    assert!(msg.contains("no_such_setting"), "{msg}");
    assert_error(
        server
            .call("POST", "/v1/tenant/", Some(json!({"gc_horizon": "big"})))
            .await,
        400,
    );
    assert_error(
        server
            .call(
                "POST",
                "/v1/tenant/",
                Some(json!({"pitr_interval": "someday"})),
            )
            .await,
        400,
    );
    assert_error(
        server
            .call("POST", "/v1/tenant/", Some(json!({"generation": -1})))
            .await,
        400,
    );
    assert_error(
        server.call("POST", "/v1/tenant/", Some(json!([1]))).await,
        400,
    );
    assert_error(
        server.call_raw("POST", "/v1/tenant/", "{not json").await,
        400,
    );
    // An explicit null is not "absent": no field of the schema is nullable.
    let msg = assert_error(
        server
            .call("POST", "/v1/tenant/", Some(json!({"generation": null})))
            .await,
        400,
    );
    assert!(msg.contains("generation"), "{msg}");

    // List and get.
    let (status, list) = server.call("GET", "/v1/tenant/", None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&id.as_str()) && ids.contains(&generated.as_str()));

    // No body: the spec's body is optional and an id is generated.
    let (status, body) = server.call_raw("POST", "/v1/tenant/", "").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body.as_str().map(str::len), Some(32), "{body}");

    let (status, info) = server.call("GET", &format!("/v1/tenant/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(info["id"], json!(id));
    assert_eq!(info["attachment_status"]["slug"], json!("attached"));
    assert!(info["attachment_status"]["data"].is_object());
    assert!(info["current_physical_size"].as_u64().unwrap() > 0);
    assert_eq!(info["generation"], json!(3));

    assert_error(
        server
            .call("GET", &format!("/v1/tenant/{}", hex_id()), None)
            .await,
        404,
    );
    assert_error(server.call("GET", "/v1/tenant/not-an-id", None).await, 400);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_delete_follows_the_polling_contract() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let id = server.create_tenant().await;
    let path = format!("/v1/tenant/{id}");

    let (status, _) = server.call("DELETE", &path, None).await;
    assert_eq!(status, 202);
    // Poll: 409 while running, then 404 when done.
    let mut done = false;
    for _ in 0..200 {
        let (status, body) = server.call("DELETE", &path, None).await;
        assert!(status == 409 || status == 404, "{status} {body}");
        assert!(body["msg"].is_string());
        if status == 404 {
            done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(done, "deletion never finished");
    assert_error(server.call("GET", &path, None).await, 404);
    assert!(!dir.path().join("tenants").join(&id).exists());
    let (_, list) = server.call("GET", "/v1/tenant", None).await;
    assert_eq!(list, json!([]));

    assert_error(server.call("DELETE", "/v1/tenant/zz", None).await, 400);
    assert_error(
        server
            .call("DELETE", &format!("/v1/tenant/{}", hex_id()), None)
            .await,
        404,
    );

    // The id can be used again.
    let (status, _) = server
        .call("POST", "/v1/tenant", Some(json!({"new_tenant_id": id})))
        .await;
    assert_eq!(status, 201);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_config_get_and_update() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let id = server.create_tenant().await;

    let (status, body) = server
        .call("GET", &format!("/v1/tenant/{id}/config/"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["tenant_specific_overrides"], json!({}));
    assert_eq!(body["effective_config"]["pitr_interval"], json!("7days"));

    let (status, body) = server
        .call(
            "PUT",
            "/v1/tenant/config",
            Some(json!({"tenant_id": id, "pitr_interval": "2h", "gc_horizon": 10})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["id"], json!(id));
    let (_, body) = server
        .call("GET", &format!("/v1/tenant/{id}/config"), None)
        .await;
    assert_eq!(
        body["tenant_specific_overrides"],
        json!({"pitr_interval": "2h", "gc_horizon": 10})
    );
    assert_eq!(body["effective_config"]["gc_horizon"], json!(10));

    assert_error(
        server
            .call(
                "PUT",
                "/v1/tenant/config",
                Some(json!({"tenant_id": id, "bogus": 1})),
            )
            .await,
        400,
    );
    assert_error(
        server
            .call(
                "PUT",
                "/v1/tenant/config",
                Some(json!({"pitr_interval": "1h"})),
            )
            .await,
        400,
    );
    assert_error(
        server
            .call(
                "PUT",
                "/v1/tenant/config",
                Some(json!({"tenant_id": "nope"})),
            )
            .await,
        400,
    );
    assert_error(
        server
            .call(
                "PUT",
                "/v1/tenant/config",
                Some(json!({"tenant_id": hex_id()})),
            )
            .await,
        404,
    );
    assert_error(
        server
            .call("GET", &format!("/v1/tenant/{}/config", hex_id()), None)
            .await,
        404,
    );
    assert_error(server.call("GET", "/v1/tenant/x/config", None).await, 400);
    // Settings with nothing to act on are refused, saying why; the
    // effective config does not claim values for them.
    for (field, value) in [
        ("lagging_wal_timeout", json!("5s")),
        ("max_lsn_wal_lag", json!(1000)),
        ("trace_read_requests", json!(true)),
        ("heatmap_period", json!(60)),
    ] {
        let msg = assert_error(
            server
                .call(
                    "PUT",
                    "/v1/tenant/config",
                    Some(json!({"tenant_id": id, field: value})),
                )
                .await,
            400,
        );
        assert!(
            msg.contains(field) && msg.contains("not supported"),
            "{msg}"
        );
    }
    let (_, body) = server
        .call("GET", &format!("/v1/tenant/{id}/config"), None)
        .await;
    assert!(
        body["effective_config"]["max_lsn_wal_lag"].is_null(),
        "{body}"
    );
    assert_eq!(body["effective_config"]["compaction_period"], json!("20s"));
    server.stop().await;

    // Settings survive a restart.
    let server = TestServer::start(dir.path()).await;
    let (_, body) = server
        .call("GET", &format!("/v1/tenant/{id}/config"), None)
        .await;
    assert_eq!(
        body["tenant_specific_overrides"]["pitr_interval"],
        json!("2h")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_errors_are_json_and_never_500() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let tenant = server.create_tenant().await;

    assert_error(server.call("GET", "/v1/nothing-here", None).await, 404);
    assert_error(server.call("GET", "/", None).await, 404);
    assert_error(server.call("PATCH", "/v1/tenant", None).await, 405);
    assert_error(server.call("POST", "/v1/status", None).await, 405);

    let huge = format!("{{\"x\": \"{}\"}}", "a".repeat(3 * 1024 * 1024));
    // The server answers 413 as soon as it sees the size and may close the
    // connection before the client has sent everything; either way it is
    // refused, and the server keeps serving.
    // A client of its own, so the connection the server drops is not
    // pooled and reused by the requests below.
    let sent = reqwest::Client::new()
        .post(server.url("/v1/tenant"))
        .body(huge)
        .send()
        .await;
    if let Ok(response) = sent {
        assert_eq!(response.status().as_u16(), 413);
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["msg"].is_string());
    }
    assert_eq!(server.call("GET", "/v1/status", None).await.0, 200);

    let bad_requests: Vec<(&str, String, String)> = vec![
        ("POST", "/v1/tenant".into(), "null".into()),
        ("POST", "/v1/tenant".into(), "\"str\"".into()),
        (
            "POST",
            "/v1/tenant".into(),
            "{\"new_tenant_id\": null, \"gc_horizon\": 1e99}".into(),
        ),
        ("POST", format!("/v1/tenant/{tenant}/timeline"), "{}".into()),
        ("POST", format!("/v1/tenant/{tenant}/timeline"), "[]".into()),
        (
            "POST",
            format!("/v1/tenant/{tenant}/timeline"),
            "{\"new_timeline_id\": 7}".into(),
        ),
        (
            "POST",
            format!("/v1/tenant/{tenant}/timeline"),
            "\u{0}".into(),
        ),
        ("GET", "/v1/tenant/%ZZ".into(), String::new()),
        ("GET", "/v1/tenant/%F0%9F%92%A9".into(), String::new()),
        (
            "GET",
            format!("/v1/tenant/{tenant}/timeline/%00"),
            String::new(),
        ),
        (
            "DELETE",
            format!("/v1/tenant/{tenant}/timeline/{}", "f".repeat(500)),
            String::new(),
        ),
        (
            "PUT",
            "/v1/tenant/config".into(),
            "{\"tenant_id\": [1]}".into(),
        ),
    ];
    for (method, path, body) in bad_requests {
        let (status, response) = server.call_raw(method, &path, &body).await;
        assert!(
            (400..500).contains(&status),
            "{method} {path} {body:?} -> {status} {response}"
        );
        assert!(response["msg"].is_string(), "{method} {path} -> {response}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_of_later_features_answer_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let tenant = server.create_tenant().await;
    let unknown = hex_id();

    assert_error(
        server
            .call("POST", &format!("/v1/tenant/{tenant}/attach"), None)
            .await,
        409,
    );
    assert_error(
        server
            .call("POST", &format!("/v1/tenant/{unknown}/attach"), None)
            .await,
        400,
    );
    assert_error(
        server.call("POST", "/v1/tenant/bad/attach", None).await,
        400,
    );
    assert_error(
        server
            .call("POST", &format!("/v1/tenant/{unknown}/detach"), None)
            .await,
        404,
    );
    assert_error(
        server
            .call("PUT", &format!("/v1/tenant/{tenant}/location_config"), None)
            .await,
        400,
    );
    // The size model answers for a tenant without timelines: nothing.
    let (status, size) = server
        .call("GET", &format!("/v1/tenant/{tenant}/size"), None)
        .await;
    assert_eq!((status, &size["size"]), (200, &json!(0)), "{size}");
    let (status, size) = server
        .call("GET", &format!("/v1/tenant/{tenant}/synthetic_size"), None)
        .await;
    assert_eq!(status, 200, "{size}");
    assert_eq!(size["segment_sizes"], json!([]), "{size}");
    assert_error(
        server
            .call(
                "GET",
                &format!("/v1/tenant/{tenant}/size?inputs_only=maybe"),
                None,
            )
            .await,
        400,
    );
    assert_error(
        server
            .call("PUT", "/v1/disk_usage_eviction/run", None)
            .await,
        400,
    );
    assert_error(
        server
            .call("POST", "/v1/reload_auth_validation_keys", None)
            .await,
        // No key path configured: the spec's 500 ("no keys were found").
        500,
    );
    let missing_timeline = format!(
        "/v1/tenant/{tenant}/timeline/{unknown}/get_lsn_by_timestamp?timestamp=2026-01-01T00:00:00Z"
    );
    assert_error(server.call("GET", &missing_timeline, None).await, 404);
    assert_error(
        server
            .call(
                "PUT",
                &format!("/v1/tenant/{tenant}/timeline/zz/do_gc"),
                None,
            )
            .await,
        400,
    );
    server.stop().await;
}

/// Every route, every method, with junk ids and junk bodies: the answer is
/// always a spec-shaped error below 500 (or a success), never a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_requests_never_get_a_500() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let tenant = server.create_tenant().await;
    let ids = [
        tenant.as_str(),
        "x",
        "00",
        "%20",
        "ffffffffffffffffffffffffffffffff",
        "é",
    ];
    let templates = [
        "/v1/tenant/{t}",
        "/v1/tenant/{t}/config",
        "/v1/tenant/{t}/timeline",
        "/v1/tenant/{t}/timeline/{l}",
        "/v1/tenant/{t}/attach",
        "/v1/tenant/{t}/detach",
        "/v1/tenant/{t}/location_config",
        "/v1/tenant/{t}/ignore",
        "/v1/tenant/{t}/load",
        "/v1/tenant/{t}/size",
        "/v1/tenant/{t}/synthetic_size",
        "/v1/tenant/{t}/timeline/{l}/do_gc",
        "/v1/tenant/{t}/timeline/{l}/get_lsn_by_timestamp",
        "/v1/tenant/{t}/timeline/{l}/get_timestamp_of_lsn",
        "/v1/tenant/{t}/timeline/{l}/get_lsn_by_timestamp?timestamp=junk",
        "/v1/tenant/{t}/timeline/{l}/get_timestamp_of_lsn?lsn=1/zz",
        "/v1/tenant/{t}/timeline/{l}/wal_source",
        "/v1/tenant",
        "/v1/tenant/config",
    ];
    let bodies = [
        "",
        "{",
        "[]",
        "{\"new_timeline_id\": \"zz\"}",
        "{\"new_tenant_id\": {}}",
        "{\"tenant_id\": 1}",
        "\"\\ud800\"",
    ];
    let mut checked = 0;
    for template in templates {
        for (n, id) in ids.iter().enumerate() {
            let path = template
                .replace("{t}", id)
                .replace("{l}", ids[(n + 1) % ids.len()]);
            for method in ["GET", "PUT", "POST", "DELETE"] {
                // Deleting (or detaching, ignoring) the one real tenant
                // would only shrink the test.
                let removes = (method == "DELETE" && path == format!("/v1/tenant/{tenant}"))
                    || path == format!("/v1/tenant/{tenant}/detach")
                    || path == format!("/v1/tenant/{tenant}/ignore")
                    || path.starts_with(&format!("/v1/tenant/{tenant}/location_config"));
                if removes {
                    continue;
                }
                let body = bodies[checked % bodies.len()];
                let (status, response) = server.call_raw(method, &path, body).await;
                assert!(
                    status < 500,
                    "{method} {path} {body:?} -> {status} {response}"
                );
                if status >= 400 {
                    assert!(response["msg"].is_string(), "{method} {path} -> {response}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 300);
    server.stop().await;
}
