//! A pageserver started in-process on free ports, on a temporary work directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use pageserver::config::PageServerConf;
use pageserver::server::{self, RunningServer};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    running: Option<RunningServer>,
}

pub fn test_conf() -> PageServerConf {
    PageServerConf {
        listen_http_addr: "127.0.0.1:0".to_owned(),
        listen_pg_addr: "127.0.0.1:0".to_owned(),
        ..PageServerConf::default()
    }
}

impl TestServer {
    pub async fn start(workdir: &Path) -> TestServer {
        Self::start_with(workdir, test_conf()).await
    }

    pub async fn start_with(workdir: &Path, conf: PageServerConf) -> TestServer {
        let shutdown = CancellationToken::new();
        let running = server::start(PathBuf::from(workdir), conf, shutdown.clone())
            .await
            .expect("server starts");
        TestServer {
            base: format!("http://{}", running.http_addr),
            client: reqwest::Client::new(),
            shutdown,
            running: Some(running),
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.wait().await;
        }
    }

    /// The tenants, for tests that read storage directly.
    pub fn manager(&self) -> std::sync::Arc<pageserver::tenant_manager::TenantManager> {
        std::sync::Arc::clone(&self.running.as_ref().expect("server running").manager)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request and returns (status, parsed JSON body or Null).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        read(response).await
    }

    /// Sends a raw body (not necessarily JSON).
    pub async fn call_raw(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = self
            .client
            .request(method, self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("request sent");
        read(response).await
    }

    /// `GET /v1/tenant/{tenant}/timeline/{timeline}`, asserted `200`.
    pub async fn timeline_info(&self, tenant: &str, timeline: &str) -> Value {
        let path = format!("/v1/tenant/{tenant}/timeline/{timeline}");
        let (status, info) = self.call("GET", &path, None).await;
        assert_eq!(status, 200, "{info}");
        info
    }

    pub async fn create_tenant(&self) -> String {
        let (status, body) = self
            .call("POST", "/v1/tenant/", Some(serde_json::json!({})))
            .await;
        assert_eq!(status, 201, "{body}");
        body.as_str().unwrap().to_owned()
    }
}

async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("status {status}: body is not JSON: {text:?}"))
    };
    (status, value)
}

/// Asserts an error response: the status and a `{"msg": <non-empty>}` body.
pub fn assert_error(actual: (u16, Value), status: u16) -> String {
    let (code, body) = actual;
    assert_eq!(code, status, "unexpected status, body {body}");
    let msg = body["msg"]
        .as_str()
        .unwrap_or_else(|| panic!("error body without msg: {body}"));
    assert!(!msg.is_empty());
    msg.to_owned()
}

pub fn hex_id() -> String {
    pageserver::ids::TimelineId::generate().to_string()
}
