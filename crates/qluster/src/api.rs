//! The REST API of `spec/qluster-openapi.yml`, plus the internal `POST /raft` (peer
//! messages) and `GET /wal-lsn` (failover candidate check).
//!
//! Reads are served from the local node's applied state (identical on every node once
//! applied). Writes must reach the leader: a follower answers 417 naming it. Every
//! request but GET/HEAD needs the API token ([`crate::token`]), or gets 401.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use qluster_core::state::{Event, StateError};
use qluster_core::{ClusterState, Command, ConfigPatch, Node, NodeId, NodeRole};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;

use crate::driver::{DriverHandle, ProposeError, Request, Status};
use crate::supervisor::LocalDb;
use crate::token::{require_token, ApiToken};
use crate::transport::{decode_batch, learn_addr, FROM_HEADER};

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub driver: DriverHandle,
    pub db: Arc<LocalDb>,
    pub http: reqwest::Client,
    pub peer_addrs: crate::transport::PeerAddrs,
    pub token: ApiToken,
}

/// An error response `{"msg": ..., "leader": ...}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    msg: String,
    leader: Option<String>,
}

fn code(n: u16) -> StatusCode {
    StatusCode::from_u16(n).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl ApiError {
    fn new(status: u16, msg: impl Into<String>) -> ApiError {
        ApiError {
            status: code(status),
            msg: msg.into(),
            leader: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "msg": self.msg });
        if let Some(l) = self.leader {
            body["leader"] = json!(l);
        }
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/is-leader", get(is_leader))
        .route("/map", get(map))
        .route("/info", get(info))
        .route("/config", get(get_config).post(post_config))
        .route("/db-config", get(db_config))
        .route("/leader", get(get_leader).post(post_leader))
        .route("/node", post(add_node))
        .route("/node/{node}", patch(upgrade_node).delete(remove_node))
        .route("/node-down/{node}", post(node_down))
        .route("/sql/readonly", get(readonly))
        .route("/events", get(events))
        .route("/rpc", get(rpc))
        .route("/raft", post(raft_messages))
        .route("/wal-lsn", get(wal_lsn))
        .layer(axum::middleware::from_fn_with_state(
            state.token.clone(),
            require_token,
        ))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

/// Errors axum itself produces (a body over its 2 MiB limit: 413; a wrong method: 405)
/// come as plain text; the spec says every error body is `{"msg": ...}`.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let msg = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "request body too large (at most 2 MiB)".to_string(),
        other => other
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string(),
    };
    (status, Json(json!({ "msg": msg }))).into_response()
}

fn status(app: &AppState) -> Arc<Status> {
    app.driver.status.borrow().clone()
}

fn cluster(status: &Status) -> ApiResult<&ClusterState> {
    status
        .state
        .as_ref()
        .ok_or_else(|| ApiError::new(412, "this node has no cluster state yet"))
}

fn leader_addr(status: &Status) -> Option<String> {
    let state = status.state.as_ref()?;
    state.nodes.get(&status.leader_id)?.api_addr()
}

/// The error for "this must go to the leader": 417 naming it, or 530 when none is known.
fn not_leader(status: &Status) -> ApiError {
    match leader_addr(status) {
        Some(addr) if status.leader_id != status.id => ApiError {
            status: code(417),
            msg: format!("not the leader; the leader is node {}", status.leader_id),
            leader: Some(addr),
        },
        _ => ApiError::new(530, "no leader is known (election in progress)"),
    }
}

async fn is_leader(State(app): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let s = status(&app);
    cluster(&s)?;
    if s.is_leader && s.leadership_confirmed && s.holds_lease {
        Ok(Json(json!({ "leader": s.id, "term": s.term })))
    } else {
        Err(not_leader(&s))
    }
}

async fn map(State(app): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let s = status(&app);
    let state = cluster(&s)?;
    let leader = state.leader.map(|(id, _)| id);
    Ok(Json(json!({
        "map": { "leader": leader, "nodes": state.view_nodes(leader) },
        "config": state.config,
    })))
}

async fn info(State(app): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let s = status(&app);
    let state = cluster(&s)?;
    let (tx, rx) = oneshot::channel();
    send(&app, Request::Logs { reply: tx }).await?;
    let logs = rx.await.map_err(|_| ApiError::new(500, "driver stopped"))?;
    Ok(Json(json!({
        "term": s.term,
        "applied-index": s.applied,
        "config": state.config,
        "logs": logs,
    })))
}

async fn get_config(State(app): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let s = status(&app);
    Ok(Json(json!(cluster(&s)?.config)))
}

async fn post_config(
    State(app): State<AppState>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let patch: ConfigPatch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(400, format!("bad config: {e}")))?;
    propose(&app, Command::SetConfig { patch }).await?;
    let s = status(&app);
    Ok(Json(json!(cluster(&s)?.config)))
}

async fn db_config(State(app): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let s = status(&app);
    let state = cluster(&s)?;
    let mut parameters: BTreeMap<String, String> = state.db_config.parameters.clone();
    // The setting the primary runs with, not only the configured count: asynchronous
    // mode waits for one standby (`ANY 1`) unless the primary logged its fallback to
    // acknowledging alone (it logs that before it falls back, see the supervisor).
    let names = match state.db_config.synchronous_standbys {
        0 if state.acknowledged_alone.is_some() => "''".to_string(),
        0 => "'ANY 1 (*)'".to_string(),
        k => format!("'ANY {k} (*)'"),
    };
    parameters.insert("synchronous_standby_names".into(), names);
    let mut body = json!({ "parameters": parameters });
    if let Some(primary) = routable_primary(&app, &s, state) {
        body["primary"] = json!(primary);
    }
    Ok(Json(body))
}

/// The primary a client may be sent to, or `None` while there is none for certain: the
/// leader of the current term, once its promotion completed (its `PrimaryReady` entry
/// for this term is applied), and while it holds its write lease — on the leader itself
/// the lease, on a follower a message from that leader within the lease's length.
fn routable_primary(app: &AppState, s: &Status, state: &ClusterState) -> Option<String> {
    let (id, term) = state.leader?;
    if state.primary != Some((id, term)) || s.term != term {
        return None;
    }
    let fresh = if id == s.id {
        s.is_leader && app.db.lease.may_write()
    } else {
        let lease = qluster_core::lease::lease_duration(state.config.node_timeout);
        s.leader_id == id && app.db.lease.leader_heard_within(lease)
    };
    if !fresh {
        return None;
    }
    state.nodes.get(&id).and_then(Node::db_addr)
}

async fn get_leader(State(app): State<AppState>) -> ApiResult<Json<Node>> {
    let s = status(&app);
    let state = cluster(&s)?;
    let node = state
        .nodes
        .get(&s.leader_id)
        .ok_or_else(|| ApiError::new(530, "no leader is known (election in progress)"))?;
    let mut node = node.clone();
    node.role = NodeRole::Leader;
    Ok(Json(node))
}

#[derive(Deserialize)]
struct LeaderQuery {
    node: Option<String>,
}

async fn post_leader(
    State(app): State<AppState>,
    Query(q): Query<LeaderQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let target: NodeId = parse_param(q.node.as_deref(), "node")?;
    let s = status(&app);
    let state = cluster(&s)?;
    match state.nodes.get(&target).map(|n| n.role) {
        None => return Err(ApiError::new(400, format!("node {target} is not a member"))),
        Some(NodeRole::Replica | NodeRole::Leader) => {}
        Some(role) => {
            return Err(ApiError::new(
                412,
                format!("node {target} is {role:?} and cannot lead"),
            ))
        }
    }
    if !s.is_leader {
        // Switchover is served by the leader; forward (the spec has no 417 here).
        let addr = leader_addr(&s).ok_or_else(|| not_leader(&s))?;
        return forward_leader(&app, &addr, target).await;
    }
    if target != s.id {
        send(&app, Request::TransferLeader { to: target }).await?;
    }
    wait_for_leader(&app, target).await
}

/// Forwards a switchover to the leader (the daemon's HTTP client sends the API token).
async fn forward_leader(
    app: &AppState,
    addr: &str,
    target: NodeId,
) -> ApiResult<Json<serde_json::Value>> {
    let resp = app
        .http
        .post(format!("http://{addr}/leader?node={target}"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| ApiError::new(530, format!("leader unreachable: {e}")))?;
    let code_num = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.unwrap_or(json!({}));
    if code_num == 200 {
        Ok(Json(body))
    } else {
        let msg = body["msg"]
            .as_str()
            .unwrap_or("switchover failed")
            .to_string();
        Err(ApiError::new(code_num, msg))
    }
}

async fn wait_for_leader(app: &AppState, target: NodeId) -> ApiResult<Json<serde_json::Value>> {
    let timeout = {
        let s = status(app);
        cluster(&s)?.config.node_timeout * 4
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut rx = app.driver.status.clone();
    loop {
        {
            let s = rx.borrow_and_update();
            let confirmed = s.state.as_ref().and_then(|st| st.leader).map(|(id, _)| id);
            if s.leader_id == target && confirmed == Some(target) {
                return Ok(Json(json!({ "leader": target, "term": s.term })));
            }
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            return Err(ApiError::new(
                531,
                format!("node {target} did not take over in time"),
            ));
        }
    }
}

#[derive(Deserialize)]
struct AddNodeQuery {
    ip: Option<String>,
    role: Option<String>,
    #[serde(rename = "db-port")]
    db_port: Option<String>,
    #[serde(rename = "api-port")]
    api_port: Option<String>,
}

fn parse_param<T: std::str::FromStr>(value: Option<&str>, name: &str) -> ApiResult<T> {
    let v = value.ok_or_else(|| ApiError::new(400, format!("missing parameter {name}")))?;
    v.parse()
        .map_err(|_| ApiError::new(400, format!("malformed parameter {name}: {v:?}")))
}

fn parse_opt<T: std::str::FromStr>(value: Option<&str>, name: &str) -> ApiResult<Option<T>> {
    value.map(|v| parse_param(Some(v), name)).transpose()
}

async fn add_node(
    State(app): State<AppState>,
    Query(q): Query<AddNodeQuery>,
) -> ApiResult<Json<Node>> {
    let ip: String = parse_param(q.ip.as_deref(), "ip")?;
    if ip.parse::<std::net::IpAddr>().is_err() {
        return Err(ApiError::new(
            400,
            format!("ip {ip:?} is not an IP address"),
        ));
    }
    let role: String = parse_param(q.role.as_deref(), "role")?;
    if role != "listener" {
        return Err(ApiError::new(400, "new nodes join as role=listener"));
    }
    let command = Command::AddNode {
        ip,
        db_port: parse_opt(q.db_port.as_deref(), "db-port")?,
        api_port: parse_opt(q.api_port.as_deref(), "api-port")?,
    };
    let node = propose(&app, command).await?;
    node.map(Json)
        .ok_or_else(|| ApiError::new(500, "node was not created"))
}

#[derive(Deserialize)]
struct UpgradeQuery {
    #[serde(rename = "db-port")]
    db_port: Option<String>,
    #[serde(rename = "api-port")]
    api_port: Option<String>,
}

fn node_id(raw: &str) -> ApiResult<NodeId> {
    parse_param(Some(raw), "node")
}

async fn upgrade_node(
    State(app): State<AppState>,
    Path(node): Path<String>,
    Query(q): Query<UpgradeQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let node = node_id(&node)?;
    let command = Command::UpgradeNode {
        node,
        db_port: parse_param(q.db_port.as_deref(), "db-port")?,
        api_port: parse_param(q.api_port.as_deref(), "api-port")?,
    };
    let n = propose(&app, command).await?;
    Ok(Json(json!(n)))
}

fn refuse_leader_target(app: &AppState, node: NodeId, what: &str) -> ApiResult<()> {
    let s = status(app);
    if s.is_leader && node == s.id {
        return Err(ApiError::new(
            412,
            format!("node {node} is the leader; switch leadership first ({what})"),
        ));
    }
    Ok(())
}

async fn remove_node(
    State(app): State<AppState>,
    Path(node): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let node = node_id(&node)?;
    refuse_leader_target(&app, node, "remove")?;
    let command = Command::RemoveNode {
        node,
        reason: "removed by request".into(),
    };
    propose(&app, command).await?;
    Ok(Json(json!({ "removed": node })))
}

async fn node_down(
    State(app): State<AppState>,
    Path(node): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let node = node_id(&node)?;
    refuse_leader_target(&app, node, "node-down")?;
    propose(&app, Command::NodeDown { node }).await?;
    Ok(Json(json!({ "down": node })))
}

async fn readonly(State(app): State<AppState>) -> ApiResult<Json<Vec<String>>> {
    let s = status(&app);
    Ok(Json(cluster(&s)?.readonly.iter().cloned().collect()))
}

/// The replicated (cluster log) events and this node's local ones, oldest first.
fn all_events(s: &Status) -> Vec<Event> {
    let replicated = s.state.iter().flat_map(|st| st.events.iter());
    let mut all: Vec<Event> = replicated.chain(s.local_events.iter()).cloned().collect();
    all.sort_by(|a, b| a.time.cmp(&b.time));
    all
}

async fn events(State(app): State<AppState>) -> Json<Vec<Event>> {
    Json(all_events(&status(&app)))
}

async fn rpc(State(app): State<AppState>) -> String {
    let s = status(&app);
    let mut out = format!(
        "node {} role {} term {} leader {} applied {} commit {} lease {}\n",
        s.id, s.raft_role, s.term, s.leader_id, s.applied, s.commit, s.holds_lease
    );
    for e in all_events(&s) {
        let node = e.node.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{} term={} node={} {}: {}\n",
            e.time, e.term, node, e.kind, e.message
        ));
    }
    out
}

async fn raft_messages(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let arrived = std::time::Instant::now();
    if let Some(from) = headers.get(FROM_HEADER).and_then(|v| v.to_str().ok()) {
        learn_addr(&app.peer_addrs, from);
    }
    let msgs = decode_batch(&body).map_err(|e| ApiError::new(400, e.to_string()))?;
    app.driver
        .inbound
        .send((arrived, msgs))
        .await
        .map_err(|_| ApiError::new(500, "driver stopped"))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn wal_lsn(State(app): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    // A node without data (none managed, or being cloned) holds no commits: it answers
    // lsn 0. One with data whose database is down answers 503: its WAL is unknown, and
    // a new leader must not promote past it.
    if app.db.pg.as_ref().is_some_and(|pg| !pg.has_data()) {
        return Ok(Json(json!({ "lsn": 0, "in_recovery": true })));
    }
    let pos = app
        .db
        .wal_position()
        .await
        .map_err(|e| ApiError::new(503, e.to_string()))?;
    Ok(Json(json!(pos)))
}

async fn send(app: &AppState, req: Request) -> ApiResult<()> {
    app.driver
        .requests
        .send(req)
        .await
        .map_err(|_| ApiError::new(500, "driver stopped"))
}

/// Proposes a command and maps the outcome onto the spec's status codes.
/// How long a mutating request waits for an election in progress to end before it is
/// answered 530. A leader that rebuilt its Raft node for new timeouts wins its own
/// election back within a round trip; a client should not have to retry for that.
const ELECTION_WAIT: Duration = Duration::from_secs(2);

/// The driver's status once some leader is known, or after [`ELECTION_WAIT`].
async fn status_with_leader(app: &AppState) -> Arc<Status> {
    let mut rx = app.driver.status.clone();
    let known = |s: &Arc<Status>| s.is_leader || s.leader_id != 0;
    // A timeout or a stopped driver both leave the latest status to answer from.
    let _ = tokio::time::timeout(ELECTION_WAIT, rx.wait_for(known)).await;
    let latest = rx.borrow().clone();
    latest
}

async fn propose(app: &AppState, command: Command) -> ApiResult<Option<Node>> {
    let s = status(app);
    // Bad input is refused as such whoever leads: checked against this node's copy of the
    // state (the leader checks again against its own).
    if let Err(e @ StateError::InvalidConfig(_)) = cluster(&s)?.validate(&command) {
        return Err(ApiError::new(400, e.to_string()));
    }
    let s = status_with_leader(app).await;
    if !cluster(&s)?.nodes.contains_key(&s.id) {
        return Err(ApiError::new(
            410,
            format!("node {} has been removed from the cluster", s.id),
        ));
    }
    if !s.is_leader {
        return Err(not_leader(&s));
    }
    let (tx, rx) = oneshot::channel();
    send(app, Request::Propose { command, reply: tx }).await?;
    let result = rx.await.map_err(|_| ApiError::new(500, "driver stopped"))?;
    result.map_err(|e| match e {
        ProposeError::NotLeader => not_leader(&status(app)),
        ProposeError::InFlight => ApiError::new(420, e.to_string()),
        ProposeError::NotBootstrapped => ApiError::new(412, e.to_string()),
        ProposeError::State(StateError::UnknownNode(_)) => ApiError::new(410, e.to_string()),
        ProposeError::State(StateError::InvalidConfig(_)) => ApiError::new(400, e.to_string()),
        ProposeError::State(_) => ApiError::new(412, e.to_string()),
        ProposeError::Unknown(_) => ApiError::new(531, e.to_string()),
        ProposeError::Internal(_) => ApiError::new(500, e.to_string()),
    })
}
