//! `branch_name` in timeline creation (an extension; see
//! [`crate::branch_names`]): a name is unique within its tenant, and an
//! identical repeated creation may repeat it.

use super::error::ApiError;
use crate::ids::TimelineId;
use crate::tenant::Tenant;
use crate::timeline::Timeline;

/// Before creating `new_timeline_id` named `name`: 400 for an invalid name,
/// 409 when another timeline of the tenant has it, or when the timeline
/// already exists under another name. (Two concurrent creations with one
/// name can both pass; the CLI, which picks names, serialises itself.)
pub(crate) fn check_new_name(
    tenant: &Tenant,
    new_timeline_id: TimelineId,
    name: &str,
) -> Result<(), ApiError> {
    crate::branch_names::validate(name)
        .map_err(|error| ApiError::bad_request(error.to_string()))?;
    for timeline in tenant.timelines() {
        let Some(existing) = timeline.branch_name() else {
            continue;
        };
        let same_timeline = timeline.id() == new_timeline_id;
        if (existing == name) != same_timeline {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                if same_timeline {
                    format!("timeline {new_timeline_id} already exists as branch {existing:?}")
                } else {
                    format!(
                        "branch name {name:?} is already timeline {} of this tenant",
                        timeline.id()
                    )
                },
            ));
        }
    }
    Ok(())
}

/// After creation: persists the name unless the timeline already has it.
pub(crate) fn name_timeline(
    tenant: &Tenant,
    timeline: &Timeline,
    name: &str,
) -> Result<(), ApiError> {
    if timeline.branch_name().as_deref() == Some(name) {
        return Ok(());
    }
    timeline
        .set_branch_name(tenant.dir(), name)
        .map_err(|error| {
            ApiError::internal(format!(
                "timeline {} was created, but its branch name could not be saved: {error}",
                timeline.id()
            ))
        })
}
