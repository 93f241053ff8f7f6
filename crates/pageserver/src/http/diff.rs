//! `GET .../timeline/{timeline_id}/diff?from=LSN[&to=LSN]`: which relations
//! changed between two points (a Sediment addition, see
//! `docs/api-deviations.md` and `docs/timeline-diff.md`). The walk lives in
//! [`datadir::history`]; this handler parses, runs it on a blocking thread
//! and shapes the JSON.

use api_types::{RelationChangeInfo, TimelineDiffResponse};
use axum::extract::State;
use axum::Json;
use datadir::{HistoryError, RelationChange, TimelineDiff};
use postgres_wal::Lsn;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{parse_tenant_id, parse_timeline_id, ApiPath, ApiQuery};
use super::AppState;

/// Query of the diff endpoint.
#[derive(Debug, Deserialize)]
pub struct DiffQuery {
    from: String,
    #[serde(default)]
    to: Option<String>,
}

fn parse_lsn(name: &str, text: &str) -> Result<Lsn, ApiError> {
    text.parse()
        .map_err(|error| ApiError::bad_request(format!("{name}: {error}")))
}

/// `GET /v1/tenant/{tenant_id}/timeline/{timeline_id}/diff`.
pub async fn diff(
    State(state): State<AppState>,
    ApiPath((tenant_id, timeline_id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<DiffQuery>,
) -> Result<Json<TimelineDiffResponse>, ApiError> {
    let from = parse_lsn("from", &query.from)?;
    let to = query
        .to
        .as_deref()
        .map(|t| parse_lsn("to", t))
        .transpose()?;
    let tenant = state.manager.get(parse_tenant_id(&tenant_id)?)?;
    let timeline_id = parse_timeline_id(&timeline_id)?;
    let timeline = tenant
        .timeline(timeline_id)
        .ok_or_else(|| ApiError::not_found(format!("timeline {timeline_id} not found")))?;
    let to = to.unwrap_or_else(|| timeline.last_record_lsn());
    let storage = timeline.storage().clone();
    let result = tokio::task::spawn_blocking(move || datadir::diff(&storage, from, to))
        .await
        .map_err(|error| ApiError::internal(format!("diff task failed: {error}")))?;
    match result {
        Ok(diff) => Ok(Json(response(&diff))),
        Err(error @ HistoryError::BadRange { .. }) => Err(ApiError::bad_request(error.to_string())),
        // A point outside the readable history (below the GC cutoff, above
        // the head, before initdb wrote a catalog) is not there: 404, as
        // the seed answers a timestamp with no data.
        Err(error @ (HistoryError::LsnNotAvailable { .. } | HistoryError::Catalog(_))) => {
            Err(ApiError::not_found(error.to_string()))
        }
        Err(error) => Err(ApiError::internal(error.to_string())),
    }
}

fn response(diff: &TimelineDiff) -> TimelineDiffResponse {
    TimelineDiffResponse {
        from: diff.from,
        to: diff.to,
        relations: diff.relations.iter().map(change_info).collect(),
    }
}

fn change_info(change: &RelationChange) -> RelationChangeInfo {
    let relation = change.relation.as_ref();
    RelationChangeInfo {
        database_oid: change.db_oid,
        database: change.db_name.clone(),
        file_node: change.file_node,
        oid: relation.map(|r| r.oid),
        schema: relation.map(|r| r.schema.clone()),
        name: relation.map(|r| r.name.clone()),
        relkind: relation.map(|r| r.kind.to_string()),
        system: change.is_system(),
        change: change.kind.as_str().to_owned(),
        pages_changed: change.pages_changed,
        bytes_changed: change.bytes_changed,
        blocks_before: change.blocks_before,
        blocks_after: change.blocks_after,
    }
}
