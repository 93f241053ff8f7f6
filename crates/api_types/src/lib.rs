//! The request and response bodies of the pageserver management API
//! (`spec/pageserver-openapi.yml` plus the additions in
//! `docs/api-deviations.md`), shared by the server's handlers and the
//! `sediment` CLI so that a renamed field breaks the build, not the output.
//!
//! This crate owns only shapes: serde, no I/O. Tenant and timeline ids travel
//! as their 32-hex-digit text; the server parses them into storage ids (with
//! messages naming the field) and the CLI keeps them as text. LSNs are
//! [`Lsn`], written as Postgres does (`16/B374D848`). Absent optional fields
//! are omitted on the wire, never `null`: the spec's schemas are not
//! `nullable` (the diff's relation fields are, see `history`). Endpoint
//! registrations live in `endpoints`.

use std::fmt;
use std::str::FromStr;

mod endpoints;
mod history;

pub use endpoints::{EndpointInfo, EndpointMode, EndpointRegistration};
pub use history::{RelationChangeInfo, StatusResponse, TimelineDiffResponse};

pub use postgres_wal::Lsn;
use serde::{Deserialize, Serialize};

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// One human-readable sentence.
    pub msg: String,
}

/// `attachment_status` of [`TenantInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentStatus {
    /// `maybe`, `attached` or `failed`.
    pub slug: String,
    /// Details; `reason` is set when `failed`.
    pub data: AttachmentStatusData,
}

/// The `data` of an attachment status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentStatusData {
    /// Why the attachment failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `TenantInfo`: `GET /v1/tenant`, `GET /v1/tenant/{tenant_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    /// The tenant id.
    pub id: String,
    /// `Active`, `Stopping` or `Broken`.
    pub state: String,
    /// Bytes on local disk.
    pub current_physical_size: u64,
    /// Attachment state.
    pub attachment_status: AttachmentStatus,
    /// Attachment generation, if given at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
}

/// `TimelineInfo`: the timeline endpoints' answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineInfo {
    /// Owning tenant.
    pub tenant_id: String,
    /// The timeline.
    pub timeline_id: String,
    /// Parent, for branches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ancestor_timeline_id: Option<String>,
    /// Branch point on the parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ancestor_lsn: Option<Lsn>,
    /// Last ingested record's end.
    pub last_record_lsn: Lsn,
    /// Start of the last ingested record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_record_lsn: Option<Lsn>,
    /// Everything up to here is on local disk.
    pub disk_consistent_lsn: Lsn,
    /// Everything up to here is in remote storage (omitted when none is configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_consistent_lsn: Option<Lsn>,
    /// Remote-consistent LSN visible to readers of remote storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_consistent_lsn_visible: Option<Lsn>,
    /// Reads and branches below this LSN are refused.
    pub latest_gc_cutoff_lsn: Lsn,
    /// Where the timeline's history starts.
    pub initdb_lsn: Lsn,
    /// Bytes of a base backup at the head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_logical_size: Option<u64>,
    /// Bytes of the layer files the timeline reads from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_physical_size: Option<u64>,
    /// WAL receiver source, when streaming (a running writable endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_source_connstr: Option<String>,
    /// LSN of the last WAL message received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_received_msg_lsn: Option<Lsn>,
    /// Time (microseconds since the epoch) of the last WAL message received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_received_msg_ts: Option<u64>,
    /// Why the WAL receiver last failed to connect or stream, if it did
    /// (an extension to the spec's fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_receiver_error: Option<String>,
    /// `Active` or `Broken`.
    pub state: String,
    /// Why it is broken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken_reason: Option<String>,
    /// The last corrupt layer file a read ran into (an extension to the
    /// spec's fields): the file, and the key for base backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corruption_error: Option<String>,
    /// PostgreSQL major version.
    pub pg_version: u32,
    /// Human name given at creation (an extension to the spec's fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_name: Option<String>,
}

/// For an optional request field (`#[serde(default, deserialize_with =
/// "api_types::present")]`): absent is `None`, but an explicit `null` is
/// refused, since no request schema of the spec is `nullable` (serde alone
/// would read `null` as absent and accept a schema-violating request).
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// The body of `POST /v1/tenant/{tenant_id}/timeline`. Ids and LSNs are
/// text so that the server can name the malformed field in its 400. Unknown
/// fields are tolerated: the spec's schema allows additional properties.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineCreateRequest {
    /// Id of the new timeline.
    pub new_timeline_id: String,
    /// Parent, for a branch; absent for a bootstrap (initdb).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub ancestor_timeline_id: Option<String>,
    /// Branch point; default the parent's head.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub ancestor_start_lsn: Option<String>,
    /// PostgreSQL major version (only 15).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub pg_version: Option<u32>,
    /// Not supported: every root timeline runs its own initdb.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub existing_initdb_timeline_id: Option<String>,
    /// Human name of the timeline (an extension): unique within the tenant.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub branch_name: Option<String>,
}

/// Tenant settings as the API carries them (`TenantConfig`): a JSON object
/// whose keys the server validates (`crates/pageserver/src/tenant_config.rs`
/// owns the list and the value types).
pub type TenantConfig = serde_json::Map<String, serde_json::Value>;

/// `POST /v1/tenant`: the settings plus an optional id and generation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantCreateRequest {
    /// The new tenant's id; generated by the server when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub new_tenant_id: Option<String>,
    /// Attachment generation.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub generation: Option<u32>,
    /// Tenant settings, flattened into the same object.
    #[serde(flatten)]
    pub config: TenantConfig,
}

/// `PUT /v1/tenant/config`: replaces a tenant's overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantConfigRequest {
    /// The tenant.
    pub tenant_id: String,
    /// The new overrides, flattened into the same object.
    #[serde(flatten)]
    pub config: TenantConfig,
}

/// `GET /v1/tenant/{tenant_id}/config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantConfigResponse {
    /// What the tenant sets itself.
    pub tenant_specific_overrides: TenantConfig,
    /// The overrides on top of the pageserver's defaults.
    pub effective_config: TenantConfig,
}

/// `POST /v1/tenant/{tenant_id}/attach`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantAttachRequest {
    /// Settings for the attached tenant.
    #[serde(default)]
    pub config: TenantConfig,
    /// Attachment generation; newer than any earlier attachment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
}

/// `PUT /v1/tenant/{tenant_id}/location_config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantLocationConfigRequest {
    /// The tenant (must match the path).
    pub tenant_id: String,
    /// `AttachedSingle`, `AttachedMulti`, `AttachedStale`, `Secondary` or `Detached`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Mandatory for the attached modes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
    /// Settings of a secondary location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_conf: Option<SecondaryConfig>,
    /// Tenant settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_conf: Option<TenantConfig>,
}

/// `secondary_conf` of a location config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondaryConfig {
    /// Whether to download layers ahead of need.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm: Option<bool>,
}

/// `GET /v1/tenant/{tenant_id}/size`: `size` is absent with `inputs_only`.
/// `inputs` is the size model's input (segments and timelines), kept as
/// JSON: only the server interprets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantSizeResponse {
    /// The tenant.
    pub id: String,
    /// Synthetic size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// The model's inputs.
    #[serde(default)]
    pub inputs: serde_json::Value,
}

/// `PUT /v1/tenant/{tenant_id}/wal_source` (extension): the endpoint the
/// timeline streams WAL from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalSourceRequest {
    /// libpq connection string of the endpoint.
    pub connstr: String,
}

/// `GET .../get_lsn_by_timestamp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LsnByTimestampResponse {
    /// The LSN found.
    pub lsn: Lsn,
    /// `present`, `past`, `future` or `nodata`.
    pub kind: String,
}

/// What one `do_gc` run did. The spec types the answer as a string; the
/// server writes this summary's [`Display`](fmt::Display) and the CLI parses
/// it back with [`FromStr`] to report the numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcSummary {
    /// History below this LSN may be gone now.
    pub cutoff: Lsn,
    /// Layer files removed.
    pub layers_removed: u64,
    /// Their bytes.
    pub bytes_removed: u64,
    /// Layer files kept.
    pub layers_kept: u64,
}

impl fmt::Display for GcSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gc cutoff {}: removed {} layer files ({} bytes), kept {}",
            self.cutoff, self.layers_removed, self.bytes_removed, self.layers_kept
        )
    }
}

/// A `do_gc` answer that is not a [`GcSummary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcSummaryParseError(pub String);

impl fmt::Display for GcSummaryParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unexpected GC summary {:?}", self.0)
    }
}

impl std::error::Error for GcSummaryParseError {}

impl FromStr for GcSummary {
    type Err = GcSummaryParseError;

    fn from_str(text: &str) -> Result<GcSummary, GcSummaryParseError> {
        let bad = || GcSummaryParseError(text.chars().take(200).collect());
        let rest = text.strip_prefix("gc cutoff ").ok_or_else(bad)?;
        let (cutoff, rest) = rest.split_once(": removed ").ok_or_else(bad)?;
        let (removed, rest) = rest.split_once(" layer files (").ok_or_else(bad)?;
        let (bytes, kept) = rest.split_once(" bytes), kept ").ok_or_else(bad)?;
        Ok(GcSummary {
            cutoff: cutoff.parse().map_err(|_| bad())?,
            layers_removed: removed.parse().map_err(|_| bad())?,
            bytes_removed: bytes.parse().map_err(|_| bad())?,
            layers_kept: kept.trim().parse().map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_summary_round_trips_through_its_text() {
        let summary = GcSummary {
            cutoff: Lsn(0x1_6B9_188),
            layers_removed: 3,
            bytes_removed: 123_456,
            layers_kept: 7,
        };
        let text = summary.to_string();
        assert_eq!(
            text,
            "gc cutoff 0/16B9188: removed 3 layer files (123456 bytes), kept 7"
        );
        assert_eq!(text.parse::<GcSummary>(), Ok(summary));
        assert!("gc cutoff x".parse::<GcSummary>().is_err());
    }

    #[test]
    fn absent_optional_timeline_fields_are_omitted() {
        let info: TimelineInfo = serde_json::from_value(serde_json::json!({
            "tenant_id": "a", "timeline_id": "b", "last_record_lsn": "0/10",
            "disk_consistent_lsn": "0/10", "latest_gc_cutoff_lsn": "0/0",
            "initdb_lsn": "0/8", "state": "Active", "pg_version": 15
        }))
        .expect("minimal TimelineInfo");
        let text = serde_json::to_string(&info).expect("serialise");
        assert!(!text.contains("null"), "{text}");
        assert!(!text.contains("ancestor"), "{text}");
    }

    #[test]
    fn create_request_flattens_the_config() {
        let mut config = TenantConfig::new();
        config.insert("gc_horizon".into(), 1024.into());
        let request = TenantCreateRequest {
            new_tenant_id: Some("ab".into()),
            generation: None,
            config,
        };
        assert_eq!(
            serde_json::to_value(&request).expect("serialise"),
            serde_json::json!({"new_tenant_id": "ab", "gc_horizon": 1024})
        );
    }
}
