//! Cluster settings (`Config` in the OpenAPI spec) and how they map onto Raft timing.
//!
//! The settings live in the replicated cluster state, so a change goes through the cluster
//! log and takes effect on every node when the entry is applied. Durations are
//! human-readable strings on the wire ("150ms", "2s"). A patch (`POST /config`) names only
//! the fields it changes; unknown fields are rejected (`deny_unknown_fields`), which the
//! daemon turns into a 400.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Length of one Raft tick. Every timeout is a whole number of ticks; 10 ms keeps the
/// rounding error small without burning CPU.
pub const TICK: Duration = Duration::from_millis(10);

/// The range every duration setting must lie in (inclusive). The lower bounds keep the
/// cluster able to elect and hold a lease on a loaded host; the upper bounds keep a
/// mistyped value ("200000000000y") from leaving the cluster without a leader for good.
pub const BOUNDS: [(&str, Duration, Duration); 5] = [
    ("node-timeout", ms(200), ms(60_000)),
    ("pre-voting-timeout", ms(10), ms(60_000)),
    ("leader-voting-timeout", ms(10), ms(60_000)),
    ("heartbeat-interval", ms(10), ms(10_000)),
    ("replication-retry-interval", ms(10), ms(60_000)),
];

/// `node-timeout` must hold this many heartbeat intervals: the write lease lasts 3/4 of
/// it, and should be renewed more than twice within a lease.
pub const HEARTBEATS_PER_NODE_TIMEOUT: u32 = 4;

/// `replication-factor` may not exceed this, nor the number of voters.
pub const MAX_REPLICATION_FACTOR: u64 = 400;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Cluster settings, replicated through the cluster log. Fields left out of a config
/// file take their default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// A follower that hears no leader for this long starts a pre-election; a leader that
    /// hears no quorum for this long stops leading (check-quorum + write lease).
    #[serde(with = "duration_text")]
    pub node_timeout: Duration,
    /// Extra random time a pre-candidate may wait for pre-votes.
    #[serde(with = "duration_text")]
    pub pre_voting_timeout: Duration,
    /// Extra random time a candidate may wait for votes before starting over.
    #[serde(with = "duration_text")]
    pub leader_voting_timeout: Duration,
    /// How often the leader sends heartbeats.
    #[serde(with = "duration_text")]
    pub heartbeat_interval: Duration,
    /// Nodes that must hold an entry before the API acknowledges it (0: the leader alone).
    pub replication_factor: u64,
    /// When set, `replication_factor` is `voters / 2 + 1`.
    pub quorum_replication: bool,
    /// How often the leader re-probes followers whose replication did not answer.
    #[serde(with = "duration_text")]
    pub replication_retry_interval: Duration,
    /// Whether the leader removes nodes it has not heard from for `node_timeout`.
    pub autoremove_enabled: bool,
    /// Autoremove acts only while the cluster has more nodes than this.
    pub autoremove_minimum: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node_timeout: Duration::from_millis(600),
            pre_voting_timeout: Duration::from_millis(100),
            leader_voting_timeout: Duration::from_millis(100),
            heartbeat_interval: Duration::from_millis(50),
            replication_factor: 0,
            quorum_replication: true,
            replication_retry_interval: Duration::from_millis(500),
            autoremove_enabled: false,
            autoremove_minimum: 3,
        }
    }
}

/// A partial update of [`ClusterConfig`]: every field optional, unknown fields rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ConfigPatch {
    #[serde(
        default,
        with = "opt_duration_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_timeout: Option<Duration>,
    #[serde(
        default,
        with = "opt_duration_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub pre_voting_timeout: Option<Duration>,
    #[serde(
        default,
        with = "opt_duration_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub leader_voting_timeout: Option<Duration>,
    #[serde(
        default,
        with = "opt_duration_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub heartbeat_interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_replication: Option<bool>,
    #[serde(
        default,
        with = "opt_duration_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub replication_retry_interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoremove_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoremove_minimum: Option<u64>,
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{field} must be between {min_ms} ms and {max_ms} ms")]
    OutOfRange {
        field: &'static str,
        min_ms: u128,
        max_ms: u128,
    },
    #[error("node-timeout must be at least {HEARTBEATS_PER_NODE_TIMEOUT} heartbeat-intervals")]
    HeartbeatTooSlow,
    #[error(
        "replication-factor must be at most {max} (the voters, at most {MAX_REPLICATION_FACTOR})"
    )]
    ReplicationFactorTooLarge { max: u64 },
}

/// Raft timing derived from the settings, in ticks of [`TICK`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTiming {
    pub heartbeat_ticks: usize,
    pub election_ticks: usize,
    /// Exclusive upper bound of the randomized election timeout.
    pub max_election_ticks: usize,
}

impl ClusterConfig {
    /// Returns the settings with `patch` applied, validated.
    pub fn patched(&self, patch: &ConfigPatch) -> Result<ClusterConfig, ConfigError> {
        let mut next = self.clone();
        let set = |slot: &mut Duration, value: Option<Duration>| {
            if let Some(v) = value {
                *slot = v;
            }
        };
        set(&mut next.node_timeout, patch.node_timeout);
        set(&mut next.pre_voting_timeout, patch.pre_voting_timeout);
        set(&mut next.leader_voting_timeout, patch.leader_voting_timeout);
        set(&mut next.heartbeat_interval, patch.heartbeat_interval);
        set(
            &mut next.replication_retry_interval,
            patch.replication_retry_interval,
        );
        next.replication_factor = patch.replication_factor.unwrap_or(next.replication_factor);
        next.quorum_replication = patch.quorum_replication.unwrap_or(next.quorum_replication);
        next.autoremove_enabled = patch.autoremove_enabled.unwrap_or(next.autoremove_enabled);
        next.autoremove_minimum = patch.autoremove_minimum.unwrap_or(next.autoremove_minimum);
        next.validate()?;
        Ok(next)
    }

    /// Checks every duration against [`BOUNDS`] and that heartbeats fit in node-timeout.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, min, max) in BOUNDS {
            let value = self.duration(field);
            if value < min || value > max {
                return Err(ConfigError::OutOfRange {
                    field,
                    min_ms: min.as_millis(),
                    max_ms: max.as_millis(),
                });
            }
        }
        if self.node_timeout < self.heartbeat_interval * HEARTBEATS_PER_NODE_TIMEOUT {
            return Err(ConfigError::HeartbeatTooSlow);
        }
        if self.replication_factor > MAX_REPLICATION_FACTOR {
            return Err(ConfigError::ReplicationFactorTooLarge {
                max: MAX_REPLICATION_FACTOR,
            });
        }
        Ok(())
    }

    /// [`ClusterConfig::validate`], and a replication factor no larger than `voters`.
    pub fn validate_for(&self, voters: usize) -> Result<(), ConfigError> {
        self.validate()?;
        let max = (voters as u64).min(MAX_REPLICATION_FACTOR);
        if self.replication_factor > max {
            return Err(ConfigError::ReplicationFactorTooLarge { max });
        }
        Ok(())
    }

    /// A duration setting by its name in [`BOUNDS`].
    fn duration(&self, field: &str) -> Duration {
        match field {
            "node-timeout" => self.node_timeout,
            "pre-voting-timeout" => self.pre_voting_timeout,
            "leader-voting-timeout" => self.leader_voting_timeout,
            "heartbeat-interval" => self.heartbeat_interval,
            _ => self.replication_retry_interval,
        }
    }

    /// The settings with every duration clamped into [`BOUNDS`]: a state persisted by an
    /// older version without bounds still yields a cluster that can elect.
    pub fn clamped(&self) -> ClusterConfig {
        let clamp = |field: &str, d: Duration| {
            BOUNDS
                .iter()
                .find(|(f, _, _)| *f == field)
                .map_or(d, |(_, min, max)| d.clamp(*min, *max))
        };
        let mut c = self.clone();
        c.node_timeout = clamp("node-timeout", c.node_timeout);
        c.pre_voting_timeout = clamp("pre-voting-timeout", c.pre_voting_timeout);
        c.leader_voting_timeout = clamp("leader-voting-timeout", c.leader_voting_timeout);
        c.heartbeat_interval = clamp("heartbeat-interval", c.heartbeat_interval)
            .min(c.node_timeout / HEARTBEATS_PER_NODE_TIMEOUT);
        c
    }

    /// Raft timing in ticks. The election timeout is randomized in
    /// `[node-timeout, node-timeout + max(pre-voting, leader-voting))`: raft-rs has one
    /// election timer for both phases, so the voting timeouts bound the random spread
    /// that keeps candidates from splitting the vote forever.
    pub fn raft_timing(&self) -> RaftTiming {
        let c = self.clamped();
        let ticks = |d: Duration| ((d.as_millis() / TICK.as_millis()).max(1)) as usize;
        let election_ticks = ticks(c.node_timeout).max(2);
        let spread = ticks(c.pre_voting_timeout.max(c.leader_voting_timeout)).max(1);
        RaftTiming {
            heartbeat_ticks: ticks(c.heartbeat_interval).min(election_ticks - 1),
            election_ticks,
            max_election_ticks: election_ticks + spread,
        }
    }

    /// How many nodes must hold an entry before the API acknowledges it.
    pub fn required_replicas(&self, voters: usize) -> usize {
        if self.quorum_replication {
            voters / 2 + 1
        } else {
            (self.replication_factor as usize).max(1)
        }
    }
}

/// Serde for `Duration` as humantime text.
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde for `Option<Duration>` as humantime text.
mod opt_duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => super::duration_text::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_config_takes_defaults() {
        let c: ClusterConfig = serde_json::from_str(r#"{"node-timeout":"800ms"}"#).unwrap();
        assert_eq!(c.node_timeout, Duration::from_millis(800));
        assert_eq!(
            c.heartbeat_interval,
            ClusterConfig::default().heartbeat_interval
        );
    }

    #[test]
    fn patch_rejects_unknown_fields() {
        let err = serde_json::from_str::<ConfigPatch>(r#"{"node-timeout":"1s","bogus":1}"#);
        assert!(err.is_err());
    }

    #[test]
    fn patch_changes_only_named_fields() {
        let patch: ConfigPatch =
            serde_json::from_str(r#"{"node-timeout":"3s","replication-factor":2}"#).unwrap();
        let base = ClusterConfig::default();
        let next = base.patched(&patch).unwrap();
        assert_eq!(next.node_timeout, Duration::from_secs(3));
        assert_eq!(next.replication_factor, 2);
        assert_eq!(next.heartbeat_interval, base.heartbeat_interval);
    }

    #[test]
    fn config_round_trips_as_kebab_case_text() {
        let text = serde_json::to_string(&ClusterConfig::default()).unwrap();
        assert!(text.contains(r#""node-timeout":"600ms""#), "{text}");
        let back: ClusterConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ClusterConfig::default());
    }

    #[test]
    fn heartbeat_must_fit_four_times_in_node_timeout() {
        let patch = ConfigPatch {
            heartbeat_interval: Some(Duration::from_millis(151)),
            ..Default::default()
        };
        assert_eq!(
            ClusterConfig::default().patched(&patch),
            Err(ConfigError::HeartbeatTooSlow)
        );
    }

    #[test]
    fn timing_maps_durations_to_ticks() {
        let t = ClusterConfig::default().raft_timing();
        assert_eq!(t.election_ticks, 60);
        assert_eq!(t.heartbeat_ticks, 5);
        assert_eq!(t.max_election_ticks, 70);
    }

    #[test]
    fn every_duration_is_bounded_at_both_ends() {
        let base = ClusterConfig::default();
        for (field, min, max) in BOUNDS {
            let at = |d: Duration| {
                let mut c = base.clone();
                c.node_timeout = Duration::from_secs(60);
                match field {
                    "node-timeout" => c.node_timeout = d,
                    "pre-voting-timeout" => c.pre_voting_timeout = d,
                    "leader-voting-timeout" => c.leader_voting_timeout = d,
                    "heartbeat-interval" => c.heartbeat_interval = d,
                    _ => c.replication_retry_interval = d,
                }
                if field == "node-timeout" {
                    c.heartbeat_interval = (d / HEARTBEATS_PER_NODE_TIMEOUT).min(ms(1000));
                }
                c.validate()
            };
            assert_eq!(at(min), Ok(()), "{field} at its minimum");
            assert_eq!(at(max), Ok(()), "{field} at its maximum");
            assert!(at(min - Duration::from_millis(1)).is_err(), "{field} below");
            assert!(at(max + Duration::from_millis(1)).is_err(), "{field} above");
        }
    }

    #[test]
    fn absurd_node_timeout_is_refused() {
        let patch: ConfigPatch =
            serde_json::from_str(r#"{"node-timeout":"200000000000y"}"#).unwrap_or_default();
        let refused =
            ClusterConfig::default().patched(&patch).is_err() || patch.node_timeout.is_none();
        assert!(refused);
    }

    #[test]
    fn replication_factor_is_capped_by_voters() {
        let c = ClusterConfig {
            replication_factor: 4,
            ..Default::default()
        };
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(
            c.validate_for(3),
            Err(ConfigError::ReplicationFactorTooLarge { max: 3 })
        );
        let c = ClusterConfig {
            replication_factor: 401,
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn out_of_range_state_is_clamped_for_raft() {
        let c = ClusterConfig {
            node_timeout: Duration::from_secs(u32::MAX as u64),
            ..Default::default()
        };
        assert_eq!(c.raft_timing().election_ticks, 6000);
    }

    #[test]
    fn required_replicas_follows_quorum_flag() {
        let mut c = ClusterConfig::default();
        assert_eq!(c.required_replicas(3), 2);
        c.quorum_replication = false;
        c.replication_factor = 0;
        assert_eq!(c.required_replicas(3), 1, "0 means the leader alone");
        c.replication_factor = 3;
        assert_eq!(c.required_replicas(3), 3);
    }
}
