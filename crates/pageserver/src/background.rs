//! The per-tenant background task: the one owner of the layer lifecycle.
//!
//! One tokio task per tenant, stopped by the tenant's cancellation token.
//! Every tick (at most a second) it applies the tenant's freeze policy
//! (`checkpoint_distance`, `checkpoint_timeout`) to each timeline, lets WAL
//! receivers drop local WAL that is now in layer files and syncs commit
//! times; every `compaction_period` it runs compaction and image creation
//! for each timeline, and every `gc_period` garbage collection with the
//! tenant's `gc_horizon` / `pitr_interval`. The heavy passes run on a
//! blocking thread while the task keeps ticking, so flushes never wait for a
//! compaction; a pass never starts while the previous one runs. All of it
//! runs on [`crate::background_pool`]'s low-priority threads.
//!
//! Every tick, too, a materialising pass (its own blocking thread, one at a
//! time) rebuilds at the head the pages writers made hot
//! (`storage::Timeline::materialize_hot` with
//! `storage::policy::materialize_threshold(image_creation_threshold)`), so
//! a read at the head applies about `image_creation_threshold` records
//! whatever the freeze thresholds. Every tick rather than every
//! `compaction_period`: its work is proportional to the keys written since
//! the last pass, and a longer period would let hot pages collect that
//! period's records.
//!
//! Settings are re-read from the tenant on every tick, so a `PUT
//! /v1/tenant/config` takes effect without a restart. A failing step is
//! logged and counted in the metrics and tried again next period; it never
//! ends the task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use postgres_wal::Lsn;
use storage::policy::{should_freeze, OpenLayerState};
use storage::FreezePolicy;
use tokio::task::JoinHandle;

use crate::ids::TimelineId;
use crate::metrics::Metrics;
use crate::storage_ops::{self, CompactionPolicy};
use crate::tenant::{Tenant, TenantState};
use crate::tenant_config::{parse_duration, TenantConfig};

/// Longest time between two ticks.
const MAX_TICK: Duration = Duration::from_secs(1);
/// Shortest time between two ticks (a tiny period must not spin).
const MIN_TICK: Duration = Duration::from_millis(100);

/// Bytes the open in-memory layer may reach before writers freeze it
/// themselves: a memory guard between two ticks of the background task,
/// which otherwise decides freezing by the tenant's settings.
pub const OPEN_LAYER_MEMORY_GUARD: u64 = 1024 * 1024 * 1024;

/// The freeze policy writers apply inline (the memory guard only).
pub fn inline_freeze_policy() -> FreezePolicy {
    FreezePolicy {
        max_open_bytes: OPEN_LAYER_MEMORY_GUARD,
        max_lsn_distance: u64::MAX,
        max_age: Duration::MAX,
    }
}

/// Most keys one materialising pass rebuilds per timeline (the hottest
/// first): bounds a pass to about a second of redo on a busy timeline.
pub const MAX_MATERIALIZE_KEYS: usize = 2000;

/// A tenant's lifecycle settings, decoded from its effective config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleSettings {
    /// When the open layer is frozen and flushed.
    pub freeze: FreezePolicy,
    /// When compaction and image creation run.
    pub compaction: CompactionPolicy,
    /// Time between compaction passes.
    pub compaction_period: Duration,
    /// Time between GC passes.
    pub gc_period: Duration,
}

impl LifecycleSettings {
    /// Decodes an effective config (every field set; a missing or
    /// unparsable one falls back to the built-in default, which validation
    /// makes unreachable for stored configs).
    pub fn from_config(config: &TenantConfig) -> LifecycleSettings {
        let config = config.or(&TenantConfig::builtin_defaults());
        let duration = |text: &Option<String>, default: u64| {
            text.as_deref()
                .and_then(parse_duration)
                .unwrap_or(Duration::from_secs(default))
        };
        let count = |value: Option<u64>, default: usize| {
            value.map_or(default, |v| usize::try_from(v).unwrap_or(usize::MAX))
        };
        let distance = config.checkpoint_distance.unwrap_or(256 * 1024 * 1024);
        LifecycleSettings {
            freeze: FreezePolicy {
                // Values in memory track WAL closely (and exceed it where
                // the WAL carried compressed page images): the distance
                // bounds both, within storage's default memory budget.
                max_open_bytes: distance.min(FreezePolicy::default().max_open_bytes),
                max_lsn_distance: distance,
                max_age: duration(&config.checkpoint_timeout, 600),
            },
            compaction: CompactionPolicy {
                compaction_threshold: count(config.compaction_threshold, 10),
                compaction_target_size: config.compaction_target_size.unwrap_or(128 << 20),
                image_creation_threshold: count(config.image_creation_threshold, 3),
            },
            compaction_period: duration(&config.compaction_period, 20),
            gc_period: duration(&config.gc_period, 3600),
        }
    }

    /// Time between ticks: frequent enough for the shortest period.
    pub fn tick(&self) -> Duration {
        MAX_TICK
            .min(self.compaction_period)
            .min(self.gc_period)
            .max(MIN_TICK)
    }
}

/// Whether a timeline's unflushed WAL should be frozen now. `dirty_for` is
/// how long the timeline has had records above `disk_consistent_lsn`.
pub fn flush_due(
    policy: &FreezePolicy,
    in_memory_bytes: u64,
    disk_consistent_lsn: Lsn,
    last_record_lsn: Lsn,
    dirty_for: Duration,
) -> bool {
    should_freeze(
        policy,
        &OpenLayerState {
            size_bytes: in_memory_bytes,
            start_lsn: disk_consistent_lsn,
            last_record_lsn,
            age: dirty_for,
            is_empty: last_record_lsn <= disk_consistent_lsn,
        },
    )
}

/// Starts the tenant's background task.
pub fn spawn(tenant: Arc<Tenant>, metrics: Metrics) {
    let task = tokio::spawn(run(Arc::clone(&tenant), metrics));
    // Kept by the tenant: deletion waits for it to stop.
    tenant.add_background_task(task);
}

/// Per-task state carried between ticks.
#[derive(Default)]
struct TaskState {
    /// When each timeline was first seen with unflushed records.
    dirty_since: HashMap<TimelineId, Instant>,
    /// The compaction or GC pass running now, if any.
    pass: Option<JoinHandle<()>>,
    /// The materialising pass running now, if any.
    materialize: Option<JoinHandle<()>>,
    next_compaction: Option<Instant>,
    next_gc: Option<Instant>,
}

async fn run(tenant: Arc<Tenant>, metrics: Metrics) {
    let cancel = tenant.cancel_token().clone();
    let mut state = TaskState::default();
    tracing::info!(tenant_id = %tenant.id(), "background task started");
    loop {
        let settings = LifecycleSettings::from_config(&tenant.effective_config());
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(settings.tick()) => {}
        }
        if tenant.state() != TenantState::Active {
            continue;
        }
        flush_tick(&tenant, &settings, &mut state, &metrics).await;
        start_materialize(&tenant, &settings, &mut state, &metrics);
        start_pass_if_due(&tenant, &settings, &mut state, &metrics);
    }
    for pass in [state.pass.take(), state.materialize.take()]
        .into_iter()
        .flatten()
    {
        // A pass cannot be interrupted; waiting keeps shutdown orderly.
        let _ = pass.await;
    }
    tracing::info!(tenant_id = %tenant.id(), "background task stopped");
}

/// Flushes every timeline the freeze policy says is due, then lets the WAL
/// store drop what is durable and syncs commit times.
async fn flush_tick(
    tenant: &Arc<Tenant>,
    settings: &LifecycleSettings,
    state: &mut TaskState,
    metrics: &Metrics,
) {
    let now = Instant::now();
    let timelines = tenant.timelines();
    state
        .dirty_since
        .retain(|id, _| timelines.iter().any(|t| t.id() == *id));
    for timeline in timelines {
        let storage = Arc::clone(timeline.storage());
        if storage.broken_reason().is_some() {
            continue;
        }
        let (disk, last) = (storage.disk_consistent_lsn(), storage.last_record_lsn());
        let dirty_for = if last > disk {
            now - *state.dirty_since.entry(timeline.id()).or_insert(now)
        } else {
            state.dirty_since.remove(&timeline.id());
            Duration::ZERO
        };
        let (_, bytes) = storage.in_memory_size();
        let due = flush_due(&settings.freeze, bytes, disk, last, dirty_for);
        let times = Arc::clone(timeline.commit_times());
        let flush_metrics = metrics.clone();
        let flushed = crate::background_pool::spawn_blocking(move || {
            if due {
                let started = Instant::now();
                let result = storage.freeze_and_flush();
                flush_metrics.background_run("flush", started, result.is_ok());
                if let Err(error) = result {
                    tracing::warn!(timeline_id = %storage.id(), %error, "flush failed");
                }
            } else if let Err(error) = storage.flush_frozen() {
                // Layers frozen by the memory guard are written promptly.
                tracing::warn!(timeline_id = %storage.id(), %error, "flush of frozen layers failed");
            }
            if let Err(error) = times.sync() {
                tracing::warn!(timeline_id = %storage.id(), %error, "cannot sync commit times");
            }
            storage.disk_consistent_lsn()
        })
        .await;
        if let Ok(lsn) = flushed {
            if due {
                state.dirty_since.remove(&timeline.id());
            }
            timeline.truncate_wal_store_before(lsn);
        }
    }
}

/// Starts a compaction or GC pass on a blocking thread when one is due and
/// none is running.
fn start_pass_if_due(
    tenant: &Arc<Tenant>,
    settings: &LifecycleSettings,
    state: &mut TaskState,
    metrics: &Metrics,
) {
    if state.pass.as_ref().is_some_and(|pass| !pass.is_finished()) {
        return;
    }
    state.pass = None;
    let now = Instant::now();
    let next_compaction = *state
        .next_compaction
        .get_or_insert(now + settings.compaction_period);
    let next_gc = *state.next_gc.get_or_insert(now + settings.gc_period);
    // A shortened period takes effect now rather than after the old one.
    state.next_compaction = Some(next_compaction.min(now + settings.compaction_period));
    state.next_gc = Some(next_gc.min(now + settings.gc_period));
    let tenant = Arc::clone(tenant);
    let metrics = metrics.clone();
    // The more overdue pass goes first, so a short compaction period
    // cannot starve GC (or the reverse).
    let compaction_due = now >= next_compaction;
    let gc_due = now >= next_gc;
    if compaction_due && (!gc_due || next_compaction <= next_gc) {
        state.next_compaction = Some(now + settings.compaction_period);
        let policy = settings.compaction.clone();
        let guard = tenant.background_pass();
        state.pass = Some(crate::background_pool::spawn_blocking(move || {
            let _running = guard;
            compaction_pass(&tenant, &policy, &metrics);
        }));
    } else if gc_due {
        state.next_gc = Some(now + settings.gc_period);
        let guard = tenant.background_pass();
        state.pass = Some(crate::background_pool::spawn_blocking(move || {
            let _running = guard;
            gc_pass(&tenant, &metrics);
        }));
    }
}

/// Starts a materialising pass over every timeline unless one runs.
fn start_materialize(
    tenant: &Arc<Tenant>,
    settings: &LifecycleSettings,
    state: &mut TaskState,
    metrics: &Metrics,
) {
    if state
        .materialize
        .as_ref()
        .is_some_and(|pass| !pass.is_finished())
    {
        return;
    }
    let threshold =
        storage::policy::materialize_threshold(settings.compaction.image_creation_threshold);
    if threshold == 0 {
        state.materialize = None;
        return;
    }
    let tenant = Arc::clone(tenant);
    let metrics = metrics.clone();
    state.materialize = Some(crate::background_pool::spawn_blocking(move || {
        materialize_pass(&tenant, threshold, &metrics);
    }));
}

/// Materialises the hot keys of every active timeline at its head.
fn materialize_pass(tenant: &Tenant, threshold: usize, metrics: &Metrics) {
    for timeline in tenant.timelines() {
        if tenant.cancel_token().is_cancelled() {
            return;
        }
        let storage = timeline.storage();
        if storage.broken_reason().is_some() {
            continue;
        }
        let started = Instant::now();
        match storage.materialize_hot(threshold, MAX_MATERIALIZE_KEYS) {
            Ok(result) if result.materialized + result.skipped > 0 => {
                metrics.background_run("materialize", started, true);
                tracing::debug!(tenant_id = %tenant.id(), timeline_id = %timeline.id(),
                    lsn = %result.lsn, keys = result.materialized, skipped = result.skipped,
                    "materialised hot pages");
            }
            Ok(_) | Err(storage::GetError::ShuttingDown) => {}
            Err(error) => {
                metrics.background_run("materialize", started, false);
                tracing::warn!(tenant_id = %tenant.id(), timeline_id = %timeline.id(), %error,
                    "materialising hot pages failed; retrying next tick");
            }
        }
    }
}

/// Compaction and image creation for every active timeline.
fn compaction_pass(tenant: &Tenant, policy: &CompactionPolicy, metrics: &Metrics) {
    for timeline in tenant.timelines() {
        if tenant.cancel_token().is_cancelled() {
            return;
        }
        let storage = timeline.storage();
        if storage.broken_reason().is_some() {
            continue;
        }
        let started = Instant::now();
        let result = storage_ops::compact(storage, policy);
        metrics.background_run("compaction", started, result.is_ok());
        match result {
            Ok(outcome) => {
                if outcome.images_created > 0 {
                    metrics.background_run("image", started, true);
                }
                tracing::debug!(tenant_id = %tenant.id(), timeline_id = %timeline.id(),
                    images = outcome.images_created, l0 = outcome.l0_compacted, "compaction pass");
            }
            Err(error) => {
                tracing::warn!(tenant_id = %tenant.id(), timeline_id = %timeline.id(), %error,
                    "compaction failed; retrying next period");
            }
        }
    }
}

/// GC for every active timeline with the tenant's retention settings.
fn gc_pass(tenant: &Tenant, metrics: &Metrics) {
    for timeline in tenant.timelines() {
        if tenant.cancel_token().is_cancelled() {
            return;
        }
        if timeline.storage().broken_reason().is_some() {
            continue;
        }
        let started = Instant::now();
        let result = tenant.gc_timeline(timeline.id(), SystemTime::now());
        metrics.background_run("gc", started, result.is_ok());
        match result {
            Ok(report) => metrics.gc_removed(report.layers_removed.len(), report.bytes_removed),
            Err(error) => {
                tracing::warn!(tenant_id = %tenant.id(), timeline_id = %timeline.id(), %error,
                    "GC failed; retrying next period");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_follow_the_tenant_config() {
        let config = TenantConfig {
            checkpoint_distance: Some(1000),
            checkpoint_timeout: Some("5s".to_owned()),
            compaction_period: Some("1s".to_owned()),
            compaction_threshold: Some(4),
            image_creation_threshold: Some(2),
            gc_period: Some("2s".to_owned()),
            ..TenantConfig::default()
        };
        let settings = LifecycleSettings::from_config(&config);
        assert_eq!(settings.freeze.max_lsn_distance, 1000);
        assert_eq!(settings.freeze.max_open_bytes, 1000);
        assert_eq!(settings.freeze.max_age, Duration::from_secs(5));
        assert_eq!(settings.compaction.compaction_threshold, 4);
        assert_eq!(settings.compaction.image_creation_threshold, 2);
        assert_eq!(settings.compaction_period, Duration::from_secs(1));
        assert_eq!(settings.gc_period, Duration::from_secs(2));
        assert_eq!(settings.tick(), Duration::from_secs(1));
        let defaults = LifecycleSettings::from_config(&TenantConfig::default());
        assert_eq!(defaults.gc_period, Duration::from_secs(3600));
        assert_eq!(defaults.compaction_period, Duration::from_secs(20));
    }

    #[test]
    fn flush_is_due_by_distance_age_or_memory_never_when_clean() {
        let policy = FreezePolicy {
            max_open_bytes: 100,
            max_lsn_distance: 1000,
            max_age: Duration::from_secs(10),
        };
        let secs = Duration::from_secs;
        assert!(!flush_due(&policy, 10, Lsn(0), Lsn(500), secs(1)));
        assert!(flush_due(&policy, 10, Lsn(0), Lsn(1000), secs(1)));
        assert!(flush_due(&policy, 10, Lsn(0), Lsn(500), secs(10)));
        assert!(flush_due(&policy, 100, Lsn(0), Lsn(500), secs(1)));
        assert!(!flush_due(&policy, 500, Lsn(900), Lsn(900), secs(100)));
    }
}
