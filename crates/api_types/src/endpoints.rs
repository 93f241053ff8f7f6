//! Endpoint registrations (an extension): the `sediment` CLI tells the
//! pageserver which Postgres endpoints serve a timeline, read-only at an LSN
//! or writable at its head, so that the web console and `sediment endpoint
//! list` can show endpoints the pageserver would otherwise never hear of
//! (a read-only endpoint talks to it only for its base backup).

use serde::{Deserialize, Serialize};

/// How an endpoint serves its timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointMode {
    /// Frozen at an LSN, `default_transaction_read_only=on`.
    ReadOnly,
    /// A primary at the branch head, streaming its WAL into the branch.
    Writable,
}

impl EndpointMode {
    /// The wire name (`read_only`, `writable`).
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointMode::ReadOnly => "read_only",
            EndpointMode::Writable => "writable",
        }
    }
}

/// The body of `PUT /v1/tenant/{tenant_id}/timeline/{timeline_id}/endpoint/{endpoint_name}`.
/// The LSN is text so that the server can name the field in its 400.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointRegistration {
    /// Read-only or writable.
    pub mode: EndpointMode,
    /// Where a read-only endpoint is frozen; where a writable one started.
    pub lsn: String,
    /// The TCP port Postgres listens on.
    pub port: u16,
    /// The postmaster's process id, when known.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::present"
    )]
    pub pid: Option<u32>,
}

/// One registered endpoint, as `GET /v1/tenant/{tenant_id}/endpoint` and the
/// `PUT` answer show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointInfo {
    /// Its name (unique within the tenant).
    pub name: String,
    /// The tenant.
    pub tenant_id: String,
    /// The timeline it serves.
    pub timeline_id: String,
    /// Read-only or writable.
    pub mode: EndpointMode,
    /// Where a read-only endpoint is frozen; where a writable one started.
    pub lsn: crate::Lsn,
    /// The TCP port Postgres listens on.
    pub port: u16,
    /// The postmaster's process id, when the CLI gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}
