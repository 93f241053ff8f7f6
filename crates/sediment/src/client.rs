//! A small blocking client for the pageserver management API, turning
//! connection failures and `{"msg"}` error bodies into one-sentence errors.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

use crate::workdir::Workdir;

/// Client for one pageserver.
pub struct ApiClient {
    base: String,
    http: reqwest::blocking::Client,
    token: Option<String>,
}

impl ApiClient {
    /// A client for the work directory's pageserver: HTTPS against the
    /// configured CA and a `pageserverapi` token when those are set up.
    pub fn for_workdir(workdir: &Workdir) -> anyhow::Result<ApiClient> {
        let token = crate::security::own_token(workdir, auth::Claims::pageserver_api())?;
        Self::build(workdir.api_base(), token, crate::security::ca_file(workdir))
    }

    fn build(
        base: String,
        token: Option<String>,
        ca: Option<std::path::PathBuf>,
    ) -> anyhow::Result<ApiClient> {
        // Timeline bootstrap runs initdb; give it room.
        let mut builder = reqwest::blocking::Client::builder().timeout(Duration::from_secs(300));
        if let Some(ca) = ca {
            let pem = std::fs::read(&ca)
                .with_context(|| format!("cannot read the CA certificate {}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{} is not a PEM certificate", ca.display()))?;
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(cert);
        }
        let http = builder.build().context("cannot create an HTTP client")?;
        Ok(ApiClient { base, http, token })
    }

    /// Base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GET, expecting success and a JSON body.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(path)), path)
    }

    /// POST a JSON body, expecting success and a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(self.url(path)).json(body), path)
    }

    /// PUT a JSON body, expecting success and a JSON body.
    pub fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.put(self.url(path)).json(body), path)
    }

    /// DELETE, expecting success.
    pub fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.delete(self.url(path)), path)
    }

    /// Whether `/v1/status` answers.
    pub fn is_up(&self) -> bool {
        self.http
            .get(self.url("/v1/status"))
            .timeout(Duration::from_secs(2))
            .send()
            .map(|response| response.status().is_success())
            .unwrap_or(false)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn send(
        &self,
        request: reqwest::blocking::RequestBuilder,
        path: &str,
    ) -> anyhow::Result<Value> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().map_err(|error| {
            if error.is_connect() {
                anyhow!(
                    "the pageserver is not reachable at {}; is it running (`sediment start`)?",
                    self.base
                )
            } else {
                anyhow!("request to {path} failed: {error}")
            }
        })?;
        let status = response.status();
        let text = response
            .text()
            .with_context(|| format!("cannot read the answer to {path}"))?;
        let body: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            let msg = body["msg"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| body.to_string());
            bail!("the pageserver refused the request ({status}): {msg}");
        }
        Ok(body)
    }
}
