//! Wiring the pieces into a running server: load tenants, bind the listeners,
//! serve until the shutdown token is cancelled, then drain.
//!
//! Every task gets the same `CancellationToken`; cancelling it is the one
//! shutdown signal (the binary cancels it on SIGTERM/SIGINT, tests cancel it
//! directly).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower_http::normalize_path::NormalizePathLayer;

use crate::config::PageServerConf;
use crate::http::{self, AppState};
use crate::ids::{TenantId, TimelineId};
use crate::metrics::{Metrics, MetricsError};
use crate::tenant::TenantState;
use crate::tenant_manager::TenantManager;
use page_service::ResolveError;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The work directory or tenants could not be read.
    #[error("cannot load tenants from {path}: {source}")]
    Load {
        /// The work directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// Metrics could not be set up.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// Auth or TLS settings are unusable.
    #[error(transparent)]
    Security(#[from] crate::security::SecurityError),
}

/// A started pageserver.
#[derive(Debug)]
pub struct RunningServer {
    /// Where the management API listens.
    pub http_addr: SocketAddr,
    /// Where the page service (Postgres wire protocol) listens.
    pub pg_addr: SocketAddr,
    /// The tenants.
    pub manager: Arc<TenantManager>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Waits until every task has finished (after `shutdown` is cancelled).
    pub async fn wait(self) {
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "server task failed");
            }
        }
    }
}

/// Loads the work directory and starts serving.
pub async fn start(
    workdir: PathBuf,
    conf: PageServerConf,
    shutdown: CancellationToken,
) -> Result<RunningServer, ServerError> {
    let security = crate::security::Security::from_conf(&conf, &workdir)?;
    let conf = Arc::new(conf);
    let load_conf = Arc::clone(&conf);
    let load_dir = workdir.clone();
    let load_token = shutdown.clone();
    let manager =
        tokio::task::spawn_blocking(move || TenantManager::load(load_conf, &load_dir, load_token))
            .await
            .map_err(|error| ServerError::Load {
                path: workdir.clone(),
                source: std::io::Error::other(error),
            })?
            .map_err(|source| ServerError::Load {
                path: workdir.clone(),
                source,
            })?;
    let manager = Arc::new(manager);
    for tenant in manager.list() {
        tenant.resume_wal_sources();
    }
    let metrics = Metrics::new()?;

    let http_listener = bind(&conf.listen_http_addr).await?;
    let http_addr = local_addr(&http_listener, &conf.listen_http_addr)?;
    tracing::info!(%http_addr, "management API listening");
    let state = AppState {
        manager: Arc::clone(&manager),
        metrics,
        security: security.clone(),
        corruption: Arc::default(),
    };
    let corruption = Arc::clone(&state.corruption);
    let pg_listener = bind(&conf.listen_pg_addr).await?;
    let pg_addr = local_addr(&pg_listener, &conf.listen_pg_addr)?;
    tracing::info!(%pg_addr, "page service listening");

    let background_metrics = state.metrics.clone();
    let http_tls = security.tls.clone();
    let http_task = tokio::spawn(serve_http(http_listener, state, http_tls, shutdown.clone()));
    let resolver = Arc::new(TenantResolver {
        manager: Arc::clone(&manager),
    });
    let pg_task = tokio::spawn(page_service::serve(
        pg_listener,
        resolver,
        page_service::PageServiceConfig {
            corruption,
            ..page_service_config(&security)
        },
        shutdown.clone(),
    ));
    // The layer lifecycle (flushes, compaction, GC) runs per tenant.
    manager.start_background_tasks(background_metrics);
    if let Some(limits) = conf.disk_usage_based_eviction.clone() {
        tokio::spawn(crate::tenant::eviction::disk_usage_task(
            Arc::downgrade(&manager),
            limits,
            workdir.clone(),
            shutdown.clone(),
        ));
    }
    let stop_task = tokio::spawn(shutdown_tenants(Arc::clone(&manager), shutdown));

    Ok(RunningServer {
        http_addr,
        pg_addr,
        manager,
        tasks: vec![http_task, pg_task, stop_task],
    })
}

/// The page service's settings: JWT keys when `pg_auth_type = "jwt"`, TLS
/// when a certificate is configured.
fn page_service_config(security: &crate::security::Security) -> page_service::PageServiceConfig {
    if security.pg_auth && security.tls.is_none() {
        tracing::warn!(
            "page service: JWTs are sent as cleartext passwords without TLS; \
             configure ssl_cert_file and ssl_key_file outside a trusted network"
        );
    }
    page_service::PageServiceConfig {
        jwt: security.jwt.clone().filter(|_| security.pg_auth),
        tls: security
            .tls
            .clone()
            .map(page_service::security::PageServiceTls),
        ..page_service::PageServiceConfig::default()
    }
}

/// Once the shutdown signal fires, stops every tenant's storage so that
/// readers waiting for an LSN are released.
async fn shutdown_tenants(manager: Arc<TenantManager>, shutdown: CancellationToken) {
    shutdown.cancelled().await;
    for tenant in manager.list() {
        // Cancel first: receivers still waiting to resume give up.
        tenant.cancel_token().cancel();
        tenant.stop_wal_receivers().await;
        crate::tenant::upload::final_upload(&tenant).await;
        tenant.shutdown();
    }
}

/// Lets the page service find timelines through the tenant manager.
struct TenantResolver {
    manager: Arc<TenantManager>,
}

impl page_service::TimelineResolver for TenantResolver {
    fn resolve(
        &self,
        tenant_id: TenantId,
        timeline_id: TimelineId,
    ) -> Result<Arc<storage::Timeline>, ResolveError> {
        let tenant = self
            .manager
            .get(tenant_id)
            .map_err(|_| ResolveError::TenantNotFound(tenant_id))?;
        match tenant.state() {
            TenantState::Active => {}
            TenantState::Stopping => {
                return Err(ResolveError::NotActive {
                    tenant: tenant_id,
                    reason: "being deleted".to_owned(),
                })
            }
            TenantState::Attaching => {
                return Err(ResolveError::NotActive {
                    tenant: tenant_id,
                    reason: "being attached".to_owned(),
                })
            }
            TenantState::Broken { reason } => {
                return Err(ResolveError::NotActive {
                    tenant: tenant_id,
                    reason,
                })
            }
        }
        tenant
            .timeline(timeline_id)
            .map(|timeline| Arc::clone(timeline.storage()))
            .ok_or(ResolveError::TimelineNotFound {
                tenant: tenant_id,
                timeline: timeline_id,
            })
    }
}

async fn bind(addr: &str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.to_owned(),
            source,
        })
}

fn local_addr(listener: &TcpListener, addr: &str) -> Result<SocketAddr, ServerError> {
    listener.local_addr().map_err(|source| ServerError::Bind {
        addr: addr.to_owned(),
        source,
    })
}

async fn serve_http(
    listener: TcpListener,
    state: AppState,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
) {
    // `/v1/tenant/` and `/v1/tenant` are the same resource in the spec;
    // trimming the slash before routing keeps one route per resource.
    let app = NormalizePathLayer::trim_trailing_slash().layer(http::router(state));
    crate::http_serve::serve(listener, app, tls, shutdown).await;
}
