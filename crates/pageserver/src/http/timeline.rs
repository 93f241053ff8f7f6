//! Timeline endpoints: create (bootstrap or branch), list, get, delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use postgres_wal::Lsn;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{parse_tenant_id, parse_timeline_id, ApiPath, JsonBody};
use super::{json_response, AppState};
use crate::tenant::CreateTimelineRequest;
use crate::tenant::Tenant;
use crate::timeline::{Timeline, TimelineInfo};
use std::sync::Arc;

/// The body of `POST /v1/tenant/{tenant_id}/timeline` (shared with the
/// CLI). Ids and LSNs are text there and parsed here, so a malformed one
/// gets a message naming the field rather than a generic deserialisation
/// error.
pub type CreateBody = api_types::TimelineCreateRequest;

/// Turns the wire request into the tenant's.
trait ParseCreate {
    fn parse(self) -> Result<CreateTimelineRequest, ApiError>;
}

impl ParseCreate for CreateBody {
    fn parse(self) -> Result<CreateTimelineRequest, ApiError> {
        if self.existing_initdb_timeline_id.is_some() {
            return Err(ApiError::bad_request(
                "existing_initdb_timeline_id is not supported: every root timeline runs its own initdb",
            ));
        }
        let ancestor_start_lsn = self
            .ancestor_start_lsn
            .map(|text| {
                text.parse::<Lsn>()
                    .map_err(|error| ApiError::bad_request(format!("ancestor_start_lsn: {error}")))
            })
            .transpose()?;
        Ok(CreateTimelineRequest {
            new_timeline_id: parse_timeline_id(&self.new_timeline_id)?,
            ancestor_timeline_id: self
                .ancestor_timeline_id
                .as_deref()
                .map(parse_timeline_id)
                .transpose()?,
            ancestor_start_lsn,
            pg_version: self.pg_version,
            branch_name: self
                .branch_name
                .map(|name| {
                    crate::branch_names::validate(&name)
                        .map(|()| name)
                        .map_err(|error| ApiError::bad_request(error.to_string()))
                })
                .transpose()?,
        })
    }
}

/// `POST /v1/tenant/{tenant_id}/timeline`: 201 with the `TimelineInfo`,
/// also when an identical creation already happened.
pub async fn create(
    State(state): State<AppState>,
    ApiPath(tenant_id): ApiPath<String>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response, ApiError> {
    let tenant_id = parse_tenant_id(&tenant_id)?;
    let request = body.parse()?;
    let tenant = state.manager.get_active(tenant_id)?;
    let kind = if request.ancestor_timeline_id.is_some() {
        "branch"
    } else {
        "bootstrap"
    };
    let result = tenant.create_timeline(request).await;
    let outcome = match &result {
        Ok((_, true)) => "created",
        Ok((_, false)) => "existing",
        Err(_) => "failed",
    };
    state
        .metrics
        .timeline_creations
        .with_label_values(&[kind, outcome])
        .inc();
    let (timeline, _) = result?;
    Ok(json_response(StatusCode::CREATED, timeline.info()))
}

/// `GET /v1/tenant/{tenant_id}/timeline`.
pub async fn list(
    State(state): State<AppState>,
    ApiPath(tenant_id): ApiPath<String>,
) -> Result<Json<Vec<TimelineInfo>>, ApiError> {
    let tenant = state.manager.get(parse_tenant_id(&tenant_id)?)?;
    let timelines = tenant.timelines();
    off_the_workers(move || {
        timelines
            .iter()
            .map(|t| with_corruption(&state, t))
            .collect()
    })
    .await
    .map(Json)
}

/// Runs `info` work on a blocking thread: the logical size walks every
/// relation, and on a lazily attached tenant each read may wait for a layer
/// download that runs on the async workers (waiting for it on one of them
/// could starve the download).
async fn off_the_workers<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ApiError::internal(format!("timeline info task failed: {error}")))
}

/// Adds the last corrupt read the page service saw on the timeline.
fn with_corruption(state: &AppState, timeline: &Timeline) -> TimelineInfo {
    let mut info = timeline.info();
    info.corruption_error = state.corruption.last_error(timeline.id());
    info
}

/// `GET /v1/tenant/{tenant_id}/timeline/{timeline_id}`.
pub async fn get(
    State(state): State<AppState>,
    ApiPath((tenant_id, timeline_id)): ApiPath<(String, String)>,
) -> Result<Json<TimelineInfo>, ApiError> {
    let (_, timeline) = find_timeline(&state, &tenant_id, &timeline_id, false)?;
    off_the_workers(move || with_corruption(&state, &timeline))
        .await
        .map(Json)
}

/// Parses both ids and finds the timeline (404 when either is unknown);
/// `active` also requires the tenant to be serving.
fn find_timeline(
    state: &AppState,
    tenant_id: &str,
    timeline_id: &str,
    active: bool,
) -> Result<(Arc<Tenant>, Arc<Timeline>), ApiError> {
    let tenant_id = parse_tenant_id(tenant_id)?;
    let timeline_id = parse_timeline_id(timeline_id)?;
    let tenant = if active {
        state.manager.get_active(tenant_id)?
    } else {
        state.manager.get(tenant_id)?
    };
    let timeline = tenant
        .timeline(timeline_id)
        .ok_or_else(|| ApiError::not_found(format!("timeline {timeline_id} not found")))?;
    Ok((tenant, timeline))
}

/// `DELETE /v1/tenant/{tenant_id}/timeline/{timeline_id}`: done when it
/// answers 200; 412 while the timeline has children.
pub async fn delete(
    State(state): State<AppState>,
    ApiPath((tenant_id, timeline_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let tenant_id = parse_tenant_id(&tenant_id)?;
    let timeline_id = parse_timeline_id(&timeline_id)?;
    // The seed describes 412 for a missing tenant, but 412 is not a refusal
    // of a well-formed request; 404 (also listed) is what every other
    // operation answers for it (docs/api-deviations.md).
    let tenant = state.manager.get_active(tenant_id)?;
    // A running writable endpoint streams into the timeline: deleting it
    // under the endpoint would leave its commits waiting forever for a
    // standby that is gone. Refuse; the endpoint has to stop first.
    if let Some(timeline) = tenant.timeline(timeline_id) {
        if let Some(connstr) = timeline.wal_source_connstr() {
            return Err(ApiError::conflict(format!(
                "timeline {timeline_id} has a running writable endpoint streaming WAL into it ({}); stop the endpoint first",
                crate::wal_source::redact_password(&connstr)
            )));
        }
    }
    let work = tokio::task::spawn_blocking(move || tenant.delete_timeline(timeline_id));
    work.await
        .map_err(|error| ApiError::internal(format!("deletion task failed: {error}")))??;
    Ok(json_response(StatusCode::OK, serde_json::json!({})))
}

/// The body of `PUT /v1/tenant/{tenant_id}/timeline/{timeline_id}/wal_source`
/// (an extension to the spec: how an endpoint is connected to its branch).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalSourceBody {
    connstr: String,
    /// The endpoint continues the WAL the timeline holds (see
    /// [`crate::wal_source::attach`]).
    #[serde(default)]
    resume: bool,
}

/// `PUT .../wal_source`: starts streaming WAL from the endpoint at `connstr`.
/// 400 when the source is unusable, 409 when another source is attached.
pub async fn attach_wal_source(
    State(state): State<AppState>,
    ApiPath((tenant_id, timeline_id)): ApiPath<(String, String)>,
    JsonBody(body): JsonBody<WalSourceBody>,
) -> Result<Json<TimelineInfo>, ApiError> {
    // The tenant and timeline first: an unknown one is 404 whatever the body.
    let (tenant, timeline) = find_timeline(&state, &tenant_id, &timeline_id, true)?;
    if body.connstr.trim().is_empty() {
        return Err(ApiError::bad_request("connstr must not be empty"));
    }
    crate::wal_source::attach(
        tenant.dir(),
        &timeline,
        &body.connstr,
        body.resume,
        &tenant.receiver_settings(),
    )
    .await?;
    Ok(Json(timeline.info()))
}

/// `DELETE .../wal_source`: stops streaming and forgets the source.
pub async fn detach_wal_source(
    State(state): State<AppState>,
    ApiPath((tenant_id, timeline_id)): ApiPath<(String, String)>,
) -> Result<Json<TimelineInfo>, ApiError> {
    let (tenant, timeline) = find_timeline(&state, &tenant_id, &timeline_id, true)?;
    crate::wal_source::detach(tenant.dir(), &timeline).await?;
    Ok(Json(timeline.info()))
}

/// `PUT .../do_gc`: garbage-collects the timeline now with the tenant's
/// retention settings; answers a one-line summary (the spec's string).
pub async fn do_gc(
    State(state): State<AppState>,
    ApiPath((tenant_id, timeline_id)): ApiPath<(String, String)>,
) -> Result<Json<String>, ApiError> {
    let (tenant, timeline) = find_timeline(&state, &tenant_id, &timeline_id, true)?;
    let id = timeline.id();
    let work =
        tokio::task::spawn_blocking(move || tenant.gc_timeline(id, std::time::SystemTime::now()));
    let report = work
        .await
        .map_err(|error| ApiError::internal(format!("GC task failed: {error}")))?
        .map_err(ApiError::from)?;
    Ok(Json(
        api_types::GcSummary {
            cutoff: report.cutoff,
            layers_removed: report.layers_removed.len() as u64,
            bytes_removed: report.bytes_removed,
            layers_kept: report.layers_kept as u64,
        }
        .to_string(),
    ))
}
