//! Time lookups: `get_lsn_by_timestamp` and `get_timestamp_of_lsn`, answered
//! from the commit-time samples ingest keeps per timeline
//! ([`crate::commit_times`]). A branch's history before its branch point is
//! its ancestor's, so lookups fall through to the ancestor below it.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use postgres_wal::Lsn;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::AppState;
use crate::commit_times::LsnForTime;
use crate::tenant::Tenant;
use crate::timeline::Timeline;

/// Query of `get_lsn_by_timestamp`.
#[derive(Debug, Deserialize)]
pub struct TimestampQuery {
    timestamp: String,
    #[serde(default)]
    #[allow(dead_code)] // accepted for compatibility; one answer format exists
    version: Option<u32>,
}

/// Query of `get_timestamp_of_lsn`.
#[derive(Debug, Deserialize)]
pub struct LsnQuery {
    lsn: String,
}

/// Parses RFC 3339 (`2026-11-21T10:00:00Z`) and the form Postgres prints
/// (`2026-11-21 10:00:00.123+00`).
pub fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, ApiError> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(time) = DateTime::parse_from_str(text, format) {
            return Ok(time.with_timezone(&Utc));
        }
    }
    Err(ApiError::bad_request(format!(
        "invalid timestamp {text:?}: expected RFC 3339, like 2026-11-21T10:00:00Z"
    )))
}

/// Where `micros` falls in `timeline`'s history up to `max_lsn`, including
/// what it inherited from its ancestors.
fn resolve(tenant: &Tenant, timeline: &Timeline, micros: i64, max_lsn: Lsn) -> LsnForTime {
    let own = timeline.commit_times().lsn_for_time(micros, max_lsn);
    if matches!(own, LsnForTime::Present(_) | LsnForTime::Future) {
        return own;
    }
    let Some((ancestor_id, branch_lsn)) = timeline.storage().ancestor() else {
        return own;
    };
    let Some(ancestor) = tenant.timeline(ancestor_id) else {
        return own;
    };
    match resolve(tenant, &ancestor, micros, branch_lsn.min(max_lsn)) {
        LsnForTime::Present(lsn) => LsnForTime::Present(lsn),
        // After everything the ancestor committed before the branch point
        // but before the branch's own first commit: the branch point.
        LsnForTime::Future if own == LsnForTime::Past => LsnForTime::Present(branch_lsn),
        LsnForTime::Future => LsnForTime::Future,
        LsnForTime::Past => LsnForTime::Past,
        LsnForTime::NoData => own,
    }
}

/// Where the timeline's readable history starts.
fn history_start(timeline: &Timeline) -> Lsn {
    let storage = timeline.storage();
    storage
        .ancestor()
        .map_or(storage.initdb_lsn(), |(_, lsn)| lsn)
        .max(storage.gc_cutoff())
}

fn find(
    state: &AppState,
    tenant_id: &str,
    timeline_id: &str,
) -> Result<(Arc<Tenant>, Arc<Timeline>), ApiError> {
    let tenant = state
        .manager
        .get(super::extract::parse_tenant_id(tenant_id)?)?;
    let timeline_id = super::extract::parse_timeline_id(timeline_id)?;
    let timeline = tenant
        .timeline(timeline_id)
        .ok_or_else(|| ApiError::not_found(format!("timeline {timeline_id} not found")))?;
    Ok((tenant, timeline))
}

/// `GET .../get_lsn_by_timestamp?timestamp=...`: `{"lsn", "kind"}` where
/// kind is `present` (the end of the last commit at or before the time),
/// `future` (after every commit: the head), `past` (before every commit:
/// where the history starts) or `nodata` (no commit seen).
pub async fn lsn_by_timestamp(
    State(state): State<AppState>,
    ApiPath((tenant_id, timeline_id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<TimestampQuery>,
) -> Result<Json<api_types::LsnByTimestampResponse>, ApiError> {
    let time = parse_timestamp(&query.timestamp)?;
    let (tenant, timeline) = find(&state, &tenant_id, &timeline_id)?;
    let head = timeline.last_record_lsn();
    let (lsn, kind) = match resolve(&tenant, &timeline, time.timestamp_micros(), head) {
        LsnForTime::Present(lsn) => (lsn.max(history_start(&timeline)), "present"),
        LsnForTime::Future => (head, "future"),
        LsnForTime::Past => (history_start(&timeline), "past"),
        LsnForTime::NoData => (history_start(&timeline), "nodata"),
    };
    Ok(Json(api_types::LsnByTimestampResponse {
        lsn,
        kind: kind.to_owned(),
    }))
}

/// `GET .../get_timestamp_of_lsn?lsn=...`: the time of the last commit at or
/// before the LSN; 404 when none is known.
pub async fn timestamp_of_lsn(
    State(state): State<AppState>,
    ApiPath((tenant_id, timeline_id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<LsnQuery>,
) -> Result<Json<String>, ApiError> {
    let lsn: Lsn = query
        .lsn
        .parse()
        .map_err(|error| ApiError::bad_request(format!("lsn: {error}")))?;
    let (tenant, mut timeline) = find(&state, &tenant_id, &timeline_id)?;
    let mut at = lsn;
    let micros = loop {
        if let Some(micros) = timeline.commit_times().time_of_lsn(at) {
            break micros;
        }
        let ancestor = timeline
            .storage()
            .ancestor()
            .and_then(|(id, branch)| tenant.timeline(id).map(|t| (t, branch)));
        match ancestor {
            Some((parent, branch)) => {
                at = at.min(branch);
                timeline = parent;
            }
            None => {
                return Err(ApiError::not_found(format!(
                    "no commit timestamp is known at or before {lsn}"
                )))
            }
        }
    };
    let time = DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(|| {
        ApiError::internal(format!("stored commit time {micros} is out of range"))
    })?;
    Ok(Json(time.to_rfc3339_opts(SecondsFormat::Micros, true)))
}
