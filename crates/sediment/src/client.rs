//! A small blocking client for the pageserver management API, turning
//! connection failures and `{"msg"}` error bodies into one-sentence errors.
//! Bodies are the shared types of the `api_types` crate: a field renamed on
//! the server fails to deserialise here with its name, instead of printing `?`.

use std::time::Duration;

use anyhow::{anyhow, Context};
use api_types::{ErrorBody, TimelineInfo};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::workdir::Workdir;

/// The pageserver answered with an error status; callers that handle a
/// particular status (409 for a running endpoint, 404) downcast to this.
#[derive(Debug)]
pub struct Refused {
    /// HTTP status.
    pub status: reqwest::StatusCode,
    /// The `msg` of the error body.
    pub msg: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the pageserver refused the request ({}): {}",
            self.status, self.msg
        )
    }
}

impl std::error::Error for Refused {}

/// The HTTP status of a refusal somewhere in `error`'s chain.
pub fn refused_status(error: &anyhow::Error) -> Option<reqwest::StatusCode> {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Refused>())
        .map(|refused| refused.status)
}

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
        let token = crate::security::own_token(
            workdir,
            auth::Claims::pageserver_api(),
            crate::security::OWN_TOKEN_LIFETIME,
        )?;
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

    /// GET into a typed answer.
    pub fn get_as<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        typed(self.get(path)?, path)
    }

    /// The `TimelineInfo` of one timeline.
    pub fn timeline_info(&self, tenant: &str, timeline: &str) -> anyhow::Result<TimelineInfo> {
        self.get_as(&format!("/v1/tenant/{tenant}/timeline/{timeline}"))
    }

    /// POST a JSON body, expecting success and a JSON body.
    pub fn post<B: Serialize + ?Sized>(&self, path: &str, body: &B) -> anyhow::Result<Value> {
        self.send(self.http.post(self.url(path)).json(body), path)
    }

    /// POST into a typed answer.
    pub fn post_as<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        typed(self.post(path, body)?, path)
    }

    /// PUT a JSON body, expecting success and a JSON body.
    pub fn put<B: Serialize + ?Sized>(&self, path: &str, body: &B) -> anyhow::Result<Value> {
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
                    "cannot reach the pageserver at {}; is it running (`sediment start`)?",
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
            let msg = serde_json::from_value::<ErrorBody>(body.clone())
                .map(|error| error.msg)
                .unwrap_or_else(|_| body.to_string());
            return Err(Refused { status, msg }.into());
        }
        Ok(body)
    }
}

/// Deserialises an answer, naming the request when it does not fit.
fn typed<T: DeserializeOwned>(body: Value, path: &str) -> anyhow::Result<T> {
    serde_json::from_value(body)
        .with_context(|| format!("the pageserver's answer to {path} has an unexpected shape"))
}
