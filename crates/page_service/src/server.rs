//! The listener: accepts connections up to a limit, runs one task per
//! connection, and stops everything when the shutdown token fires.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use storage::{TenantId, Timeline, TimelineId};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::connection::Connection;
use crate::proto::Out;
use crate::security::{negotiate_tls, BoxStream};

/// Resolves the (tenant, timeline) a client names to a live timeline. The
/// pageserver implements it over its tenant manager; tests use
/// [`MapResolver`].
pub trait TimelineResolver: Send + Sync + 'static {
    /// The timeline, or why it cannot be served.
    fn resolve(
        &self,
        tenant: TenantId,
        timeline: TimelineId,
    ) -> Result<Arc<Timeline>, ResolveError>;
}

/// Why a (tenant, timeline) cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    #[error("tenant {0} not found")]
    TenantNotFound(TenantId),
    #[error("timeline {timeline} not found in tenant {tenant}")]
    TimelineNotFound {
        tenant: TenantId,
        timeline: TimelineId,
    },
    #[error("tenant {tenant} is not active: {reason}")]
    NotActive { tenant: TenantId, reason: String },
}

impl ResolveError {
    /// The SQLSTATE reported to the client.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            // invalid_catalog_name: "the database you named does not exist".
            ResolveError::TenantNotFound(_) | ResolveError::TimelineNotFound { .. } => "3D000",
            // object_not_in_prerequisite_state.
            ResolveError::NotActive { .. } => "55000",
        }
    }
}

/// A resolver over a fixed map, for tests and tools.
#[derive(Default)]
pub struct MapResolver {
    timelines: RwLock<HashMap<(TenantId, TimelineId), Arc<Timeline>>>,
}

impl MapResolver {
    /// Makes `timeline` reachable as (tenant, its id).
    pub fn insert(&self, tenant: TenantId, timeline: Arc<Timeline>) {
        self.timelines
            .write()
            .insert((tenant, timeline.id()), timeline);
    }
}

impl TimelineResolver for MapResolver {
    fn resolve(
        &self,
        tenant: TenantId,
        timeline: TimelineId,
    ) -> Result<Arc<Timeline>, ResolveError> {
        let map = self.timelines.read();
        if let Some(found) = map.get(&(tenant, timeline)) {
            return Ok(found.clone());
        }
        if map.keys().any(|(t, _)| *t == tenant) {
            Err(ResolveError::TimelineNotFound { tenant, timeline })
        } else {
            Err(ResolveError::TenantNotFound(tenant))
        }
    }
}

/// Settings of the page service.
#[derive(Clone, Debug)]
pub struct PageServiceConfig {
    /// Connections served at once; more are refused with SQLSTATE 53300.
    pub max_connections: usize,
    /// How long a request for an LSN the timeline has not reached yet waits
    /// for ingest before failing.
    pub wait_lsn_timeout: Duration,
    /// Reported as `server_version`; pg_basebackup requires major 15.
    pub server_version: String,
    /// How long a new connection may take to send its startup packet
    /// (PostgreSQL's `authentication_timeout`), so silent clients cannot
    /// hold connection slots.
    pub startup_timeout: Duration,
    /// When set, the password must be a JWT these keys validate.
    pub jwt: Option<auth::JwtAuth>,
    /// When set, connections must use TLS.
    pub tls: Option<crate::security::PageServiceTls>,
    /// Where corrupt reads are counted and remembered.
    pub corruption: Arc<crate::corruption::CorruptionLog>,
}

impl Default for PageServiceConfig {
    fn default() -> Self {
        PageServiceConfig {
            max_connections: 100,
            wait_lsn_timeout: Duration::from_secs(30),
            server_version: "15.18".to_owned(),
            startup_timeout: Duration::from_secs(60),
            jwt: None,
            tls: None,
            corruption: Arc::default(),
        }
    }
}

/// What every connection task shares.
pub(crate) struct Shared {
    pub resolver: Arc<dyn TimelineResolver>,
    pub config: PageServiceConfig,
    pub shutdown: CancellationToken,
}

/// Serves connections from `listener` until `shutdown` is cancelled, then
/// waits for every connection task to finish (each observes the same
/// token and closes its connection with an "administrator command" error).
pub async fn serve(
    listener: TcpListener,
    resolver: Arc<dyn TimelineResolver>,
    config: PageServiceConfig,
    shutdown: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let shared = Arc::new(Shared {
        resolver,
        config,
        shutdown: shutdown.clone(),
    });
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    match limit.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let shared = shared.clone();
                            tasks.spawn(async move {
                                if let Some(stream) = secure(socket, &shared).await {
                                    Connection::new(stream, shared).run().await;
                                }
                                drop(permit);
                            });
                        }
                        Err(_) => {
                            tracing::warn!(%peer, "page service: too many connections");
                            tasks.spawn(refuse(socket));
                        }
                    }
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off briefly
                    // instead of spinning.
                    tracing::warn!(%error, "page service: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// The connection's stream: TLS-wrapped when TLS is configured (`None`
/// when the client did not negotiate it).
async fn secure(socket: TcpStream, shared: &Shared) -> Option<BoxStream> {
    let Some(tls) = &shared.config.tls else {
        return Some(Box::new(socket));
    };
    match negotiate_tls(socket, tls, shared.config.startup_timeout).await {
        Ok(stream) => Some(stream),
        Err(error) => {
            tracing::debug!(%error, "page service: TLS negotiation failed");
            None
        }
    }
}

/// Tells a client over the connection limit why it is refused.
async fn refuse(mut socket: TcpStream) {
    let mut out = Out::default();
    out.error("FATAL", "53300", "sorry, too many clients already");
    let _ = out.flush_to(&mut socket).await;
}
