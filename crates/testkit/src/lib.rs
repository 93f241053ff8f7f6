//! Test harness: throwaway real PostgreSQL 15 clusters in temp directories,
//! run as an unprivileged OS user when the tests run as root.
//!
//! - [`PgInstall`] finds the PG15 binaries (`SEDIMENT_PG_BIN` or Debian's
//!   path) and the OS user to run them as (`postgres`, `SEDIMENT_PG_OS_USER`).
//! - [`PgCluster`] is one initdb'd cluster: start/stop, `psql`, `pgbench`,
//!   WAL positions and [`PgCluster::collect_wal`]. Dropping it stops the
//!   server and deletes the directory (`SEDIMENT_KEEP_TMP=1` keeps it); a
//!   [`reaper`] does the same if the test process is killed outright.
//! - [`workload`] drives a cluster through WAL-rich workloads shared by the
//!   decoder, redo and pageserver tests.
//! - [`waldump`] runs `pg_waldump --stats=record`, parses its table and
//!   compares per-record-type statistics with our decoder's.
//! - [`s3::SeaweedS3`] is a real S3 server (SeaweedFS `weed mini`) for
//!   remote-storage tests.
//! - [`PgTempDir`] and [`free_port`] help tests that manage other processes.

pub mod cluster;
pub mod error;
pub mod install;
pub mod pgbench;
pub mod reaper;
pub mod s3;
pub mod tempdir;
pub mod wal;
pub mod waldump;
pub mod workload;

pub use cluster::{PgCluster, PgClusterBuilder, SUPERUSER};
pub use error::{Error, Result};
pub use install::{OsUser, PgInstall};
pub use tempdir::{free_port, keep_tmp, PgTempDir};
pub use wal::CollectedWal;
