//! JWT auth on the management API: every operation × {no token, bad
//! signature, expired, `pageserverapi`, the right tenant, another tenant}
//! gets the status the spec promises, and keys rotate with a reload.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use auth::keys::{generate_ed25519, sign};
use auth::Claims;
use common::{hex_id, test_conf, TestServer};
use pageserver::config::AuthType;

struct Tokens {
    admin: String,
    tenant: String,
    other_tenant: String,
    forged: String,
    expired: String,
}

fn tokens(private: &str, tenant: &str) -> Tokens {
    let key = |claims: &Claims| sign(private.as_bytes(), Path::new("key"), claims).unwrap();
    let stranger = generate_ed25519().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut expired = Claims::pageserver_api();
    expired.exp = Some(now - 120);
    Tokens {
        admin: key(&Claims::pageserver_api()),
        tenant: key(&Claims::tenant(tenant)),
        other_tenant: key(&Claims::tenant(hex_id())),
        forged: sign(
            stranger.private_pem.as_bytes(),
            Path::new("stranger"),
            &Claims::pageserver_api(),
        )
        .unwrap(),
        expired: key(&expired),
    }
}

async fn status(server: &TestServer, method: &str, path: &str, token: Option<&str>) -> u16 {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = server.client.request(method.clone(), server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if method == reqwest::Method::POST || method == reqwest::Method::PUT {
        request = request.json(&serde_json::json!({}));
    }
    let response = request.send().await.unwrap();
    let code = response.status().as_u16();
    if code == 401 || code == 403 {
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            body["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    code
}

fn start_conf(keys: &Path) -> pageserver::config::PageServerConf {
    pageserver::config::PageServerConf {
        auth_validation_public_key_path: Some(keys.to_path_buf()),
        http_auth_type: AuthType::Jwt,
        ..test_conf()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_checks_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("auth_public_keys");
    std::fs::create_dir(&keys).unwrap();
    let pair = generate_ed25519().unwrap();
    std::fs::write(keys.join("key.pem"), &pair.public_pem).unwrap();
    let server = TestServer::start_with(dir.path(), start_conf(&keys)).await;

    // A tenant to be "the right tenant", created with the admin token.
    let tenant = {
        let admin = tokens(&pair.private_pem, &hex_id()).admin;
        let response = server
            .client
            .post(server.url("/v1/tenant"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        response.json::<String>().await.unwrap()
    };
    let t = tokens(&pair.private_pem, &tenant);
    let timeline = hex_id();
    let tenant_ops: Vec<(&str, String)> = vec![
        ("GET", format!("/v1/tenant/{tenant}")),
        ("GET", format!("/v1/tenant/{tenant}/config")),
        ("GET", format!("/v1/tenant/{tenant}/timeline")),
        ("POST", format!("/v1/tenant/{tenant}/timeline")),
        ("GET", format!("/v1/tenant/{tenant}/timeline/{timeline}")),
        ("DELETE", format!("/v1/tenant/{tenant}/timeline/{timeline}")),
        ("GET", format!("/v1/tenant/{tenant}/timeline/{timeline}/get_lsn_by_timestamp?timestamp=2024-01-01T00:00:00Z")),
        ("GET", format!("/v1/tenant/{tenant}/timeline/{timeline}/get_timestamp_of_lsn?lsn=0/16B9188")),
        ("PUT", format!("/v1/tenant/{tenant}/timeline/{timeline}/do_gc")),
        ("POST", format!("/v1/tenant/{tenant}/attach")),
        ("PUT", format!("/v1/tenant/{tenant}/location_config")),
        ("POST", format!("/v1/tenant/{tenant}/detach")),
        ("POST", format!("/v1/tenant/{tenant}/ignore")),
        ("POST", format!("/v1/tenant/{tenant}/load")),
        ("GET", format!("/v1/tenant/{tenant}/synthetic_size")),
        ("GET", format!("/v1/tenant/{tenant}/size")),
    ];
    let global_ops: Vec<(&str, String)> = vec![
        ("GET", "/v1/tenant".to_owned()),
        ("POST", "/v1/tenant".to_owned()),
        ("PUT", "/v1/tenant/config".to_owned()),
        ("POST", "/v1/reload_auth_validation_keys".to_owned()),
    ];
    let allowed = |code: u16| code != 401 && code != 403;
    for (kind, ops) in [("tenant", &tenant_ops), ("global", &global_ops)] {
        for (method, path) in ops.iter() {
            let path = path.as_str();
            let case = format!("{method} {path}");
            assert_eq!(
                status(&server, method, path, None).await,
                401,
                "no token: {case}"
            );
            assert_eq!(
                status(&server, method, path, Some(&t.forged)).await,
                401,
                "forged: {case}"
            );
            assert_eq!(
                status(&server, method, path, Some(&t.expired)).await,
                401,
                "expired: {case}"
            );
            assert_eq!(
                status(&server, method, path, Some("garbage")).await,
                401,
                "garbage: {case}"
            );
            let code = status(&server, method, path, Some(&t.admin)).await;
            assert!(allowed(code), "pageserverapi got {code}: {case}");
            let code = status(&server, method, path, Some(&t.tenant)).await;
            if kind == "tenant" {
                assert!(allowed(code), "right tenant got {code}: {case}");
            } else {
                assert_eq!(code, 403, "tenant token on a global operation: {case}");
            }
            assert_eq!(
                status(&server, method, path, Some(&t.other_tenant)).await,
                403,
                "other tenant: {case}"
            );
        }
    }
    // Tenant deletion last: it removes the tenant the other cases use.
    let path = format!("/v1/tenant/{tenant}");
    assert_eq!(status(&server, "DELETE", &path, None).await, 401);
    assert_eq!(
        status(&server, "DELETE", &path, Some(&t.other_tenant)).await,
        403
    );
    assert!(allowed(
        status(&server, "DELETE", &path, Some(&t.tenant)).await
    ));

    // Public operations need no token.
    for path in ["/v1/status", "/v1/openapi.yml", "/metrics"] {
        assert_eq!(status(&server, "GET", path, None).await, 200, "{path}");
    }
    // Refusals are counted like any response.
    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("status=\"401\""), "{metrics}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_with_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let old = generate_ed25519().unwrap();
    let new = generate_ed25519().unwrap();
    std::fs::write(keys.join("old.pem"), &old.public_pem).unwrap();
    let server = TestServer::start_with(dir.path(), start_conf(&keys)).await;
    let old_token = tokens(&old.private_pem, &hex_id()).admin;
    let new_token = tokens(&new.private_pem, &hex_id()).admin;
    assert_eq!(
        status(&server, "GET", "/v1/tenant", Some(&old_token)).await,
        200
    );
    assert_eq!(
        status(&server, "GET", "/v1/tenant", Some(&new_token)).await,
        401
    );

    std::fs::remove_file(keys.join("old.pem")).unwrap();
    std::fs::write(keys.join("new.pem"), &new.public_pem).unwrap();
    // Files changing on disk change nothing until the reload.
    assert_eq!(
        status(&server, "GET", "/v1/tenant", Some(&old_token)).await,
        200
    );
    assert_eq!(
        status(
            &server,
            "POST",
            "/v1/reload_auth_validation_keys",
            Some(&old_token)
        )
        .await,
        200
    );
    assert_eq!(
        status(&server, "GET", "/v1/tenant", Some(&old_token)).await,
        401
    );
    assert_eq!(
        status(&server, "GET", "/v1/tenant", Some(&new_token)).await,
        200
    );

    // No key left: 500, and the loaded keys stay in force.
    std::fs::remove_file(keys.join("new.pem")).unwrap();
    assert_eq!(
        status(
            &server,
            "POST",
            "/v1/reload_auth_validation_keys",
            Some(&new_token)
        )
        .await,
        500
    );
    assert_eq!(
        status(&server, "GET", "/v1/tenant", Some(&new_token)).await,
        200
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_without_keys_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let conf = pageserver::config::PageServerConf {
        http_auth_type: AuthType::Jwt,
        ..test_conf()
    };
    let error = pageserver::server::start(
        dir.path().to_path_buf(),
        conf,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("auth_validation_public_key_path"),
        "{error}"
    );
}
