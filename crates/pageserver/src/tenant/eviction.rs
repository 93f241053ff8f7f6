//! Disk-usage eviction: choosing which layer files to evict and evicting
//! them (`PUT /v1/disk_usage_eviction/run`, and the background task that
//! keeps the work directory's filesystem under the configured
//! `disk_usage_based_eviction` threshold).
//!
//! Only a layer file that the tenant's last uploaded index holds, with the
//! same size, is a candidate: its remote copy is the one the marker points
//! at, so it can always come back. Candidates from every active tenant are
//! evicted least recently read first until the requested bytes are freed.
//! Eviction itself is storage's [`storage::io::OnDemandIo::evict`] (marker
//! written durably, then the file removed); this module runs it on a
//! blocking thread.

use std::path::PathBuf;
use std::sync::Arc;

use remote_storage::layout;
use storage::io::{EvictedMarker, OnDemandIo};

use super::Tenant;

/// One layer file that may be evicted.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The tenant's file I/O (which evicts).
    pub io: OnDemandIo,
    /// The local layer file.
    pub path: PathBuf,
    /// Its remote copy.
    pub marker: EvictedMarker,
    /// Last read, microseconds since the epoch (0: not read since start).
    pub last_access_micros: u64,
}

/// What one eviction run did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct EvictionReport {
    /// Bytes asked for.
    pub requested_bytes: u64,
    /// Bytes freed.
    pub evicted_bytes: u64,
    /// Layer files evicted.
    pub evicted_layers: u64,
    /// Layer files that could have been evicted (uploaded and resident).
    pub candidate_layers: u64,
    /// Their bytes.
    pub candidate_bytes: u64,
    /// Evictions that failed (each logged).
    pub errors: u64,
}

/// The resident, uploaded layer files of a tenant. Stats files: call on a
/// blocking thread.
pub fn candidates(tenant: &Tenant) -> Vec<Candidate> {
    let Some(remote) = tenant.remote() else {
        return Vec::new();
    };
    let io = tenant.on_demand_io();
    let tenant_id = tenant.id().to_string();
    let mut out = Vec::new();
    for timeline in tenant.timelines() {
        let Some(index) = remote.uploaded_index(timeline.id()) else {
            continue;
        };
        let dir = timeline.storage().dir().to_owned();
        let timeline_id = timeline.id().to_string();
        for (name, layer) in &index.layers {
            let path = dir.join(name);
            let resident = std::fs::metadata(&path).map(|m| m.len()).ok();
            if resident != Some(layer.file_size) {
                continue; // Evicted already, gone, or not this upload.
            }
            let Ok(object) = layout::layer_path(&tenant_id, &timeline_id, name, layer.generation)
            else {
                continue;
            };
            out.push(Candidate {
                io: io.clone(),
                last_access_micros: io.last_access_micros(&path),
                marker: EvictedMarker {
                    file_size: layer.file_size,
                    crc32c: layer.crc32c,
                    source: object.as_str().to_owned(),
                },
                path,
            });
        }
    }
    out
}

/// Evicts candidates of `tenants`, least recently read first, until
/// `evict_bytes` are freed. Does file I/O: call on a blocking thread.
pub fn evict(tenants: &[Arc<Tenant>], evict_bytes: u64) -> EvictionReport {
    let mut all: Vec<Candidate> = tenants.iter().flat_map(|t| candidates(t)).collect();
    all.sort_by_key(|c| c.last_access_micros);
    let mut report = EvictionReport {
        requested_bytes: evict_bytes,
        candidate_layers: all.len() as u64,
        candidate_bytes: all.iter().map(|c| c.marker.file_size).sum(),
        ..EvictionReport::default()
    };
    for candidate in all {
        if report.evicted_bytes >= evict_bytes {
            break;
        }
        match candidate.io.evict(&candidate.path, &candidate.marker) {
            Ok(0) => {}
            Ok(freed) => {
                report.evicted_bytes += freed;
                report.evicted_layers += 1;
            }
            Err(error) => {
                tracing::warn!(layer = %candidate.path.display(), %error, "cannot evict layer");
                report.errors += 1;
            }
        }
    }
    tracing::info!(?report, "disk-usage eviction run");
    report
}

/// Bytes to free so that a filesystem of `total` bytes with `avail` bytes
/// available (and `free` free, counting the root reserve) meets `limits`.
pub fn bytes_over(
    limits: &crate::config::DiskUsageEviction,
    total: u64,
    free: u64,
    avail: u64,
) -> u64 {
    let used = total.saturating_sub(free);
    let allowed = u128::from(total) * u128::from(limits.max_usage_pct) / 100;
    let by_pct = u64::try_from(u128::from(used).saturating_sub(allowed)).unwrap_or(u64::MAX);
    let by_avail = limits.min_avail_bytes.saturating_sub(avail);
    by_pct.max(by_avail)
}

/// (total, free, available) bytes of the filesystem holding `dir`.
// The statvfs field types differ across platforms; u64 on this one.
#[allow(clippy::unnecessary_cast)]
fn filesystem_usage(dir: &std::path::Path) -> std::io::Result<(u64, u64, u64)> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    let block = stat.fragment_size() as u64;
    Ok((
        (stat.blocks() as u64).saturating_mul(block),
        (stat.blocks_free() as u64).saturating_mul(block),
        (stat.blocks_available() as u64).saturating_mul(block),
    ))
}

/// The background task: every `period`, measures the filesystem of
/// `workdir` and, if it is over the limits, evicts that many bytes of the
/// active tenants' uploaded layers, least recently used first. Ends when
/// `shutdown` is cancelled.
pub async fn disk_usage_task(
    manager: std::sync::Weak<crate::tenant_manager::TenantManager>,
    limits: crate::config::DiskUsageEviction,
    workdir: PathBuf,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let period = limits.period();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        let Some(manager) = manager.upgrade() else {
            return;
        };
        let tenants: Vec<Arc<Tenant>> = manager
            .list()
            .into_iter()
            .filter(|t| t.state() == super::TenantState::Active)
            .collect();
        drop(manager);
        let dir = workdir.clone();
        let limits = limits.clone();
        let run =
            tokio::task::spawn_blocking(move || -> std::io::Result<Option<EvictionReport>> {
                let (total, free, avail) = filesystem_usage(&dir)?;
                let over = bytes_over(&limits, total, free, avail);
                if over == 0 {
                    return Ok(None);
                }
                tracing::info!(
                    total,
                    free,
                    avail,
                    over,
                    "disk usage over the eviction threshold"
                );
                Ok(Some(evict(&tenants, over)))
            })
            .await;
        match run {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, workdir = %workdir.display(), "cannot measure disk usage");
            }
            Err(error) => tracing::warn!(%error, "disk-usage eviction run failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bytes_over;
    use crate::config::DiskUsageEviction;

    #[test]
    fn bytes_over_takes_the_stricter_limit() {
        let limits = |pct, min| DiskUsageEviction {
            max_usage_pct: pct,
            min_avail_bytes: min,
            period: "1s".into(),
        };
        // 1000 bytes, 700 used, 250 available to us (50 reserved).
        assert_eq!(bytes_over(&limits(80, 0), 1000, 300, 250), 0);
        assert_eq!(bytes_over(&limits(50, 0), 1000, 300, 250), 200);
        assert_eq!(bytes_over(&limits(80, 400), 1000, 300, 250), 150);
        assert_eq!(bytes_over(&limits(0, 0), 1000, 300, 250), 700);
        assert_eq!(bytes_over(&limits(100, 0), 1000, 0, 0), 0);
    }
}
