//! Per-tenant settings (`TenantConfig` of the management API).
//!
//! Every field is optional: a tenant stores only the settings it overrides,
//! and the effective value falls back to the pageserver-wide default and then
//! to the built-in one. Unknown fields are rejected, so a typo in a request is
//! a 400 rather than a silently ignored setting.
//!
//! Where each setting takes effect:
//! - `checkpoint_distance`, `checkpoint_timeout`: the freeze policy the
//!   tenant's background task applies (`background`);
//! - `compaction_period`, `compaction_threshold`, `compaction_target_size`,
//!   `image_creation_threshold`: its compaction passes;
//! - `gc_period`, `gc_horizon`, `pitr_interval`: its GC passes (and
//!   `do_gc`);
//! - `walreceiver_connect_timeout`: the WAL receiver's connection attempts
//!   (unless the source's connection string sets `connect_timeout`).
//!
//! Settings with nothing to act on here are refused with the reason
//! ([`TenantConfigError::Unsupported`]): `lagging_wal_timeout` and
//! `max_lsn_wal_lag` choose between several WAL sources, while a timeline
//! streams from its one endpoint; `trace_read_requests = true` and a
//! non-zero `heatmap_period` name features this pageserver does not have.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// Tenant settings; `None` means "not set here".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// How often garbage collection runs (duration, e.g. `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc_period: Option<String>,
    /// Bytes of WAL history kept for reads below the head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc_horizon: Option<u64>,
    /// Time of history kept for point-in-time branches (duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitr_interval: Option<String>,
    /// Bytes of WAL after which the in-memory layer is frozen and written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_distance: Option<u64>,
    /// Time after which the in-memory layer is frozen and written (duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_timeout: Option<String>,
    /// Target size of a compacted layer file in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compaction_target_size: Option<u64>,
    /// How often compaction runs (duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compaction_period: Option<String>,
    /// Number of L0 layers that triggers compaction. The spec types it as a
    /// string; both a number and a numeric string are accepted.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "number_or_numeric_string",
        serialize_with = "as_numeric_string"
    )]
    pub compaction_threshold: Option<u64>,
    /// Number of deltas over an image that triggers a new image layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_creation_threshold: Option<u64>,
    /// Timeout for the WAL receiver's connection attempt (duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walreceiver_connect_timeout: Option<String>,
    /// Time without WAL after which the WAL source is considered lagging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lagging_wal_timeout: Option<String>,
    /// Bytes of lag after which the WAL receiver switches source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lsn_wal_lag: Option<u64>,
    /// Whether page reads are traced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_read_requests: Option<bool>,
    /// Seconds between heatmap uploads (0 disables them).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "number_or_numeric_string"
    )]
    pub heatmap_period: Option<u64>,
}

/// Why a tenant config is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TenantConfigError {
    /// A duration field does not parse (`1h`, `30s`, `7days` do).
    #[error("{field}: {value:?} is not a duration (like 30s, 10m, 1h, 7days)")]
    BadDuration {
        /// The field.
        field: &'static str,
        /// The rejected text.
        value: String,
    },
    /// A size or count field is below its minimum.
    #[error("{field} must be at least {minimum}")]
    TooSmall {
        /// The field.
        field: &'static str,
        /// The smallest accepted value.
        minimum: u64,
    },
    /// The setting has nothing to act on in this pageserver.
    #[error("{field} is not supported: {reason}")]
    Unsupported {
        /// The field.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// The JSON does not describe a tenant config (unknown field, wrong type).
    #[error("{0}")]
    Malformed(String),
}

fn number_or_numeric_string<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Raw::Number(n)) => Ok(Some(n)),
        Some(Raw::Text(text)) => text
            .parse()
            .ok()
            .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))
            .map(Some)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("{text:?} is not a non-negative integer"))
            }),
    }
}

/// Parses a duration the way the config files write them.
///
/// The grammar is the served spec's `pattern` for duration settings: one or
/// more `<1-9 digits><unit>` separated by single spaces, units `ms`, `s`,
/// `m`, `min`, `h`, `d`, `days`, `w`. Anything else is refused, also what
/// `humantime` would take (`1 h`, ` 1h`): a schema-violating value must be
/// refused, not silently read.
pub fn parse_duration(text: &str) -> Option<Duration> {
    const UNITS: [&str; 8] = ["ms", "s", "m", "min", "h", "d", "days", "w"];
    let well_formed = text.split(' ').all(|part| {
        let digits = part.bytes().take_while(u8::is_ascii_digit).count();
        (1..=9).contains(&digits) && UNITS.contains(&&part[digits..])
    });
    if !well_formed {
        return None;
    }
    humantime::parse_duration(text).ok()
}

impl TenantConfig {
    /// Built-in defaults for every field.
    pub fn builtin_defaults() -> TenantConfig {
        TenantConfig {
            gc_period: Some("1h".to_owned()),
            gc_horizon: Some(64 * 1024 * 1024),
            pitr_interval: Some("7days".to_owned()),
            checkpoint_distance: Some(256 * 1024 * 1024),
            checkpoint_timeout: Some("10m".to_owned()),
            compaction_target_size: Some(128 * 1024 * 1024),
            compaction_period: Some("20s".to_owned()),
            compaction_threshold: Some(10),
            image_creation_threshold: Some(3),
            walreceiver_connect_timeout: Some("10s".to_owned()),
            lagging_wal_timeout: None,
            max_lsn_wal_lag: None,
            trace_read_requests: Some(false),
            heatmap_period: Some(0),
        }
    }

    /// Parses a JSON object, rejecting unknown fields and invalid values.
    ///
    /// Types are the spec's: `compaction_threshold` a numeric string,
    /// `heatmap_period` an integer (config files may write either as a
    /// number or a numeric string; the API holds clients to its schema).
    pub fn from_json(value: serde_json::Value) -> Result<TenantConfig, TenantConfigError> {
        // No setting is nullable in the spec; serde would read `null` as unset.
        if let Some((key, _)) = value
            .as_object()
            .and_then(|fields| fields.iter().find(|(_, v)| v.is_null()))
        {
            return Err(TenantConfigError::Malformed(format!(
                "{key} must not be null; omit it instead"
            )));
        }
        if let Some(value) = value.get("compaction_threshold").filter(|v| !v.is_string()) {
            return Err(TenantConfigError::Malformed(format!(
                "compaction_threshold must be a string of digits, got {value}"
            )));
        }
        if let Some(value) = value.get("heatmap_period").filter(|v| !v.is_u64()) {
            return Err(TenantConfigError::Malformed(format!(
                "heatmap_period must be a non-negative integer, got {value}"
            )));
        }
        let config: TenantConfig = serde_json::from_value(value)
            .map_err(|error| TenantConfigError::Malformed(error.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that types alone cannot (durations, non-zero sizes).
    pub fn validate(&self) -> Result<(), TenantConfigError> {
        let durations = [
            ("gc_period", &self.gc_period),
            ("pitr_interval", &self.pitr_interval),
            ("checkpoint_timeout", &self.checkpoint_timeout),
            ("compaction_period", &self.compaction_period),
            (
                "walreceiver_connect_timeout",
                &self.walreceiver_connect_timeout,
            ),
            ("lagging_wal_timeout", &self.lagging_wal_timeout),
        ];
        for (field, value) in durations {
            if let Some(text) = value {
                if parse_duration(text).is_none() {
                    return Err(TenantConfigError::BadDuration {
                        field,
                        value: text.clone(),
                    });
                }
            }
        }
        // Layer sizes below 1 MiB would write thousands of tiny files for
        // every initdb (a schemathesis run found a 40 s detach that way).
        const MIB: u64 = 1024 * 1024;
        let minimums = [
            ("checkpoint_distance", self.checkpoint_distance, MIB),
            ("compaction_target_size", self.compaction_target_size, MIB),
            ("compaction_threshold", self.compaction_threshold, 1),
            ("image_creation_threshold", self.image_creation_threshold, 1),
            ("max_lsn_wal_lag", self.max_lsn_wal_lag, 1),
        ];
        for (field, value, minimum) in minimums {
            if value.is_some_and(|value| value < minimum) {
                return Err(TenantConfigError::TooSmall { field, minimum });
            }
        }
        self.validate_supported()
    }

    /// Refuses settings that would have no effect here.
    fn validate_supported(&self) -> Result<(), TenantConfigError> {
        const ONE_SOURCE: &str =
            "a timeline streams WAL from its one endpoint; there is no other source to switch to";
        let unsupported = [
            (
                self.lagging_wal_timeout.is_some(),
                "lagging_wal_timeout",
                ONE_SOURCE,
            ),
            (
                self.max_lsn_wal_lag.is_some(),
                "max_lsn_wal_lag",
                ONE_SOURCE,
            ),
            (
                self.trace_read_requests == Some(true),
                "trace_read_requests",
                "page read tracing is not implemented (only false is accepted)",
            ),
            (
                self.heatmap_period.is_some_and(|p| p > 0),
                "heatmap_period",
                "heatmaps are not uploaded by this pageserver (only 0 is accepted)",
            ),
        ];
        match unsupported.into_iter().find(|(set, _, _)| *set) {
            Some((_, field, reason)) => Err(TenantConfigError::Unsupported { field, reason }),
            None => Ok(()),
        }
    }

    /// `walreceiver_connect_timeout`, when set and valid.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.walreceiver_connect_timeout
            .as_deref()
            .and_then(parse_duration)
    }

    /// `self`'s settings, each missing one taken from `fallback`.
    pub fn or(&self, fallback: &TenantConfig) -> TenantConfig {
        TenantConfig {
            gc_period: self.gc_period.clone().or(fallback.gc_period.clone()),
            gc_horizon: self.gc_horizon.or(fallback.gc_horizon),
            pitr_interval: self
                .pitr_interval
                .clone()
                .or(fallback.pitr_interval.clone()),
            checkpoint_distance: self.checkpoint_distance.or(fallback.checkpoint_distance),
            checkpoint_timeout: self
                .checkpoint_timeout
                .clone()
                .or(fallback.checkpoint_timeout.clone()),
            compaction_target_size: self
                .compaction_target_size
                .or(fallback.compaction_target_size),
            compaction_period: self
                .compaction_period
                .clone()
                .or(fallback.compaction_period.clone()),
            compaction_threshold: self.compaction_threshold.or(fallback.compaction_threshold),
            image_creation_threshold: self
                .image_creation_threshold
                .or(fallback.image_creation_threshold),
            walreceiver_connect_timeout: self
                .walreceiver_connect_timeout
                .clone()
                .or(fallback.walreceiver_connect_timeout.clone()),
            lagging_wal_timeout: self
                .lagging_wal_timeout
                .clone()
                .or(fallback.lagging_wal_timeout.clone()),
            max_lsn_wal_lag: self.max_lsn_wal_lag.or(fallback.max_lsn_wal_lag),
            trace_read_requests: self.trace_read_requests.or(fallback.trace_read_requests),
            heatmap_period: self.heatmap_period.or(fallback.heatmap_period),
        }
    }
}

/// Writes a number as the numeric string the spec types it as.
fn as_numeric_string<S: serde::Serializer>(value: &Option<u64>, out: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(number) => out.serialize_str(&number.to_string()),
        None => out.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_known_fields() {
        let config = TenantConfig::from_json(json!({
            "gc_horizon": 1000, "pitr_interval": "1h", "compaction_threshold": "4",
            "trace_read_requests": false, "heatmap_period": 0
        }))
        .unwrap();
        assert_eq!(config.gc_horizon, Some(1000));
        assert_eq!(config.compaction_threshold, Some(4));
        assert_eq!(config.trace_read_requests, Some(false));
    }

    #[test]
    fn rejects_unknown_fields_bad_types_and_values() {
        let cases = [
            json!({"no_such_setting": 1}),
            json!({"gc_horizon": "lots"}),
            json!({"gc_horizon": -1}),
            json!({"pitr_interval": "forever"}),
            json!({"max_lsn_wal_lag": 0}),
            json!({"max_lsn_wal_lag": 100}),
            json!({"lagging_wal_timeout": "10s"}),
            json!({"trace_read_requests": true}),
            json!({"heatmap_period": 60}),
            json!({"compaction_threshold": "x"}),
            json!({"compaction_threshold": 4}),
            json!({"compaction_threshold": " 4"}),
            json!({"heatmap_period": "0"}),
            json!({"gc_period": ""}),
            json!({"gc_period": "1 h"}),
            json!({"gc_period": " 1h"}),
            json!({"checkpoint_distance": 1024}),
            json!({"compaction_target_size": 1}),
            json!([1, 2]),
        ];
        for case in cases {
            assert!(TenantConfig::from_json(case.clone()).is_err(), "{case}");
        }
    }

    #[test]
    fn effective_config_prefers_own_settings() {
        let own = TenantConfig {
            gc_horizon: Some(5),
            ..TenantConfig::default()
        };
        let effective = own.or(&TenantConfig::builtin_defaults());
        assert_eq!(effective.gc_horizon, Some(5));
        assert_eq!(effective.pitr_interval.as_deref(), Some("7days"));
        TenantConfig::builtin_defaults().validate().unwrap();
    }
}
