//! Using history: `sediment timeline diff` ([`diff`]: what changed between
//! two points of a branch, computed by the pageserver from stored records)
//! and `sediment table restore` ([`restore`]: one table as of a past point,
//! brought into the branch's running writable endpoint).
//!
//! Both accept a point as an LSN (`16/B374D848`) or a time (RFC 3339 or
//! Postgres timestamptz text), resolved to an LSN by the pageserver's
//! commit-time map ([`resolve_point`]).

pub mod diff;
pub mod restore;

use anyhow::{bail, Context};
use postgres_wal::Lsn;

use crate::client::ApiClient;

/// An LSN, or a time resolved to the end of the last commit at or before
/// it on `timeline`.
pub fn resolve_point(
    client: &ApiClient,
    tenant: &str,
    timeline: &str,
    branch: &str,
    point: &str,
) -> anyhow::Result<Lsn> {
    if let Ok(lsn) = point.parse::<Lsn>() {
        return Ok(lsn);
    }
    if !point.contains('-') {
        bail!(
            "{point:?} is neither an LSN (like 0/16B9188) nor a time (like 2026-11-21T10:00:00Z)"
        );
    }
    let query: String = form_urlencoded::byte_serialize(point.as_bytes()).collect();
    let found: api_types::LsnByTimestampResponse = client
        .get_as(&format!(
            "/v1/tenant/{tenant}/timeline/{timeline}/get_lsn_by_timestamp?timestamp={query}"
        ))
        .with_context(|| format!("cannot find the LSN of branch {branch:?} at {point:?}"))?;
    let lsn = found.lsn;
    match found.kind.as_str() {
        "present" | "future" => Ok(lsn),
        "past" => bail!(
            "{point:?} is before the oldest commit the pageserver knows on branch {branch:?} (its history starts at {lsn})"
        ),
        _ => bail!("the pageserver knows no commit times on branch {branch:?} yet, so {point:?} cannot be resolved; pass an LSN"),
    }
}

/// Bytes in human units (KiB, MiB, ...).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(8192), "8.0 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
    }
}
