//! The pageserver: tenants and their timelines, the management API that
//! creates and inspects them, and the daemon wiring around it.
//!
//! Layout (one concern per module):
//! - [`config`]: `pageserver.toml` and `-c key=value` overrides;
//! - [`tenant_config`]: per-tenant settings of the API;
//! - [`ids`]: tenant and timeline ids;
//! - [`tenant_manager`]: the set of tenants, persisted under `<workdir>/tenants/`;
//! - [`tenant`] / [`timeline`]: one tenant (a `storage::Repository` plus
//!   settings), one timeline (bootstrapped by `datadir::bootstrap`);
//!   `tenant::upload` / `tenant::attach`: the tenant in remote storage
//!   (uploads by generation, attach downloads; `docs/remote-storage.md`);
//! - `tenant_manager::mobility`: attach, detach, ignore, load, location_config;
//! - [`http`]: the management API (axum), one file per resource;
//! - [`wal_source`]: the endpoint a timeline streams WAL from (walreceiver
//!   crate) and the sink that feeds it to ingest (walingest crate);
//! - [`branch_names`]: human names of timelines (the CLI's branch names);
//! - [`commit_times`]: commit timestamp ↔ LSN samples (time lookups and
//!   branching at a point in time);
//! - [`background`]: the per-tenant task that owns the layer lifecycle
//!   (freezing, compaction, image layers, GC);
//! - [`storage_ops`]: the adapters through which it calls storage;
//! - [`size`]: the tenant size model (`/size`, `/synthetic_size`);
//! - [`metrics`]: Prometheus metrics;
//! - [`security`]: JWT keys, which listeners need a token, TLS;
//! - [`http_serve`]: the HTTP(S) accept loop with read timeouts;
//! - [`server`]: binds the management API and the page service
//!   (`page_service` crate) and runs them until shutdown.
//!
//! The `pageserver` binary is a thin shell over [`server::start`].

pub mod background;
pub mod background_pool;
pub mod branch_names;
pub mod commit_times;
pub mod config;
pub mod http;
pub mod http_serve;
pub mod ids;
pub mod metrics;
pub mod remote_faults;
pub mod security;
pub mod server;
pub mod size;
pub mod storage_ops;
pub mod tenant;
pub mod tenant_config;
pub mod tenant_manager;
pub mod timeline;
pub mod wal_source;
