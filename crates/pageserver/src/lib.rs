//! The pageserver: tenants and their timelines, the management API that
//! creates and inspects them, and the daemon wiring around it.
//!
//! Layout (one concern per module):
//! - [`config`]: `pageserver.toml` and `-c key=value` overrides;
//! - [`tenant_config`]: per-tenant settings of the API;
//! - [`ids`]: tenant and timeline ids;
//! - [`tenant_manager`]: the set of tenants, persisted under `<workdir>/tenants/`;
//! - [`tenant`] / [`timeline`]: one tenant, one timeline;
//! - [`bootstrap`]: running stock `initdb` for root timelines;
//! - [`http`]: the management API (axum), one file per resource;
//! - [`metrics`]: Prometheus metrics;
//! - [`server`]: binds listeners and runs everything until shutdown.
//!
//! The `pageserver` binary is a thin shell over [`server::start`].

pub mod bootstrap;
pub mod config;
pub mod durable;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod server;
pub mod tenant;
pub mod tenant_config;
pub mod tenant_manager;
pub mod timeline;
