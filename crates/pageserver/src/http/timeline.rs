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
use crate::tenant_manager::TenantError;
use crate::timeline::{Timeline, TimelineInfo};
use std::sync::Arc;

/// The body of `POST /v1/tenant/{tenant_id}/timeline`. Ids and LSNs are kept
/// as text here and parsed afterwards, so a malformed one gets a message
/// naming the field rather than a generic deserialisation error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    new_timeline_id: String,
    #[serde(default)]
    ancestor_timeline_id: Option<String>,
    #[serde(default)]
    ancestor_start_lsn: Option<String>,
    #[serde(default)]
    pg_version: Option<u32>,
    #[serde(default)]
    existing_initdb_timeline_id: Option<String>,
    /// Human name of the timeline (an extension; `crate::branch_names`).
    #[serde(default)]
    branch_name: Option<String>,
}

impl CreateBody {
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
    let branch_name = body.branch_name.clone();
    let request = body.parse()?;
    let tenant = state.manager.get_active(tenant_id)?;
    if let Some(name) = &branch_name {
        super::names::check_new_name(&tenant, request.new_timeline_id, name)?;
    }
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
    if let Some(name) = &branch_name {
        super::names::name_timeline(&tenant, &timeline, name)?;
    }
    Ok(json_response(StatusCode::CREATED, timeline.info()))
}

/// `GET /v1/tenant/{tenant_id}/timeline`.
pub async fn list(
    State(state): State<AppState>,
    ApiPath(tenant_id): ApiPath<String>,
) -> Result<Json<Vec<TimelineInfo>>, ApiError> {
    let tenant = state.manager.get(parse_tenant_id(&tenant_id)?)?;
    Ok(Json(
        tenant
            .timelines()
            .iter()
            .map(|t| with_corruption(&state, t.info()))
            .collect(),
    ))
}

/// Adds the last corrupt read the page service saw on the timeline.
fn with_corruption(state: &AppState, mut info: TimelineInfo) -> TimelineInfo {
    info.corruption_error = state.corruption.last_error(info.timeline_id);
    info
}

/// `GET /v1/tenant/{tenant_id}/timeline/{timeline_id}`.
pub async fn get(
    State(state): State<AppState>,
    ApiPath((tenant_id, timeline_id)): ApiPath<(String, String)>,
) -> Result<Json<TimelineInfo>, ApiError> {
    let (_, timeline) = find_timeline(&state, &tenant_id, &timeline_id, false)?;
    Ok(Json(with_corruption(&state, timeline.info())))
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
    // The spec answers 412 "tenant is missing" for this endpoint only.
    let tenant = state
        .manager
        .get_active(tenant_id)
        .map_err(|error| match error {
            TenantError::NotFound(_) => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, error.to_string())
            }
            other => ApiError::from(other),
        })?;
    // A timeline being deleted takes no more WAL.
    if let Some(timeline) = tenant.timeline(timeline_id) {
        let has_children = tenant
            .timelines()
            .iter()
            .any(|t| t.ancestor_timeline_id() == Some(timeline_id));
        if timeline.wal_source_connstr().is_some() && !has_children {
            crate::wal_source::detach(tenant.dir(), &timeline).await?;
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
}

/// `PUT .../wal_source`: starts streaming WAL from the endpoint at `connstr`.
/// 400 when the source is unusable, 409 when another source is attached.
pub async fn attach_wal_source(
    State(state): State<AppState>,
    ApiPath((tenant_id, timeline_id)): ApiPath<(String, String)>,
    JsonBody(body): JsonBody<WalSourceBody>,
) -> Result<Json<TimelineInfo>, ApiError> {
    if body.connstr.trim().is_empty() {
        return Err(ApiError::bad_request("connstr must not be empty"));
    }
    let (tenant, timeline) = find_timeline(&state, &tenant_id, &timeline_id, true)?;
    let connect_timeout = tenant.effective_config().connect_timeout();
    crate::wal_source::attach(tenant.dir(), &timeline, &body.connstr, connect_timeout).await?;
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
        .map_err(|error| match error {
            crate::tenant::GcError::NotFound(_) => ApiError::not_found(error.to_string()),
            crate::tenant::GcError::Config(_) => ApiError::bad_request(error.to_string()),
            crate::tenant::GcError::Storage(_) => ApiError::internal(error.to_string()),
        })?;
    Ok(Json(format!(
        "gc cutoff {}: removed {} layer files ({} bytes), kept {}",
        report.cutoff,
        report.layers_removed.len(),
        report.bytes_removed,
        report.layers_kept
    )))
}
