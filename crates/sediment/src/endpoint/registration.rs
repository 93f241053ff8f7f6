//! Registering endpoints with the pageserver (its `.../endpoint/{name}`
//! extension), so that the web console and other clients of the API see
//! every endpoint, including read-only ones that never talk to the
//! pageserver after their base backup. `endpoint start` registers, `endpoint
//! stop` unregisters (also for an endpoint that had already died), and
//! `endpoint list` shows what the pageserver knows next to the local state.
//!
//! A registration is a label: failing to write or remove one never fails a
//! start or stop (the endpoint itself is what matters); it is reported as a
//! warning saying what the pageserver will show meanwhile.

use std::collections::BTreeMap;
use std::path::Path;

use api_types::{EndpointInfo, EndpointMode, EndpointRegistration};

use super::EndpointState;
use crate::client::{refused_status, ApiClient};

/// Tells the pageserver that `state`'s endpoint runs (warns on failure).
pub fn register(client: &ApiClient, state: &EndpointState) {
    let body = EndpointRegistration {
        mode: if state.writable {
            EndpointMode::Writable
        } else {
            EndpointMode::ReadOnly
        },
        lsn: state.lsn.clone(),
        port: state.port,
        pid: postmaster_pid(&state.pgdata),
    };
    let path = endpoint_path(state);
    if let Err(error) = client.put(&path, &body) {
        eprintln!(
            "warning: endpoint {} runs, but the pageserver could not record it (the web console will not show it): {error:#}",
            state.name
        );
    }
}

/// Tells the pageserver that `state`'s endpoint no longer runs (warns on
/// failure; a timeline or tenant that is gone has no registrations left).
pub fn unregister(client: &ApiClient, state: &EndpointState) {
    match client.delete(&endpoint_path(state)) {
        Ok(_) => {}
        Err(error) if refused_status(&error) == Some(reqwest::StatusCode::NOT_FOUND) => {}
        Err(error) => eprintln!(
            "warning: endpoint {} stopped, but the pageserver still lists it until `sediment endpoint stop {}` runs again with the pageserver up: {error:#}",
            state.name, state.name
        ),
    }
}

/// Every registration the pageserver holds, by tenant; `None` when it
/// cannot be asked (not running), so callers can say so instead of
/// claiming that nothing is registered.
pub fn all(client: &ApiClient) -> Option<BTreeMap<String, Vec<EndpointInfo>>> {
    let tenants: Vec<api_types::TenantInfo> = client.get_as("/v1/tenant").ok()?;
    let mut found = BTreeMap::new();
    for tenant in tenants {
        // A tenant still attaching or being deleted has none to show.
        let listed: Vec<EndpointInfo> = client
            .get_as(&format!("/v1/tenant/{}/endpoint", tenant.id))
            .unwrap_or_default();
        found.insert(tenant.id, listed);
    }
    Some(found)
}

/// The registration of a local endpoint, if the pageserver has one for it
/// (same name, tenant and timeline).
pub fn find<'a>(
    registrations: &'a BTreeMap<String, Vec<EndpointInfo>>,
    state: &EndpointState,
) -> Option<&'a EndpointInfo> {
    registrations
        .get(&state.tenant_id)?
        .iter()
        .find(|info| info.name == state.name && info.timeline_id == state.timeline_id)
}

/// One line for a registration no local endpoint accounts for (started by
/// another work directory, or left by a stop that could not reach the
/// pageserver).
pub fn summary(info: &EndpointInfo, branch: Option<&str>) -> String {
    let on = branch.map_or_else(
        || format!("timeline {}", info.timeline_id),
        |name| format!("branch {name}"),
    );
    let mode = match info.mode {
        EndpointMode::ReadOnly => format!("read-only on {on} at {}", info.lsn),
        EndpointMode::Writable => format!("read-write on {on} (from {})", info.lsn),
    };
    format!(
        "{}  registered on the pageserver only  {mode}  port {}{}",
        info.name,
        info.port,
        info.pid
            .map(|pid| format!("  pid {pid}"))
            .unwrap_or_default()
    )
}

fn endpoint_path(state: &EndpointState) -> String {
    format!(
        "/v1/tenant/{}/timeline/{}/endpoint/{}",
        state.tenant_id, state.timeline_id, state.name
    )
}

/// The postmaster's pid from `postmaster.pid` (its first line).
fn postmaster_pid(pgdata: &Path) -> Option<u32> {
    std::fs::read_to_string(pgdata.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
        .filter(|pid| *pid > 0)
}
