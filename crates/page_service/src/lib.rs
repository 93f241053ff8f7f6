//! The Postgres wire-protocol service of the pageserver.
//!
//! A tokio server speaking the PostgreSQL v3 protocol (startup, optional
//! TLS and JWT-as-password authentication (see [`security`]), simple queries),
//! so that stock PostgreSQL 15 tools can talk to the pageserver:
//!
//! - **`pg_basebackup` fetches a branch** over a replication connection:
//!   `IDENTIFY_SYSTEM`, `SHOW wal_segment_size`/`data_directory_mode` and the
//!   PostgreSQL 15 `BASE_BACKUP ( ... )` command, answered with the same
//!   messages a walsender sends (see [`backup`]). The data directory comes
//!   from [`datadir::Basebackup`] and starts without WAL replay.
//! - **`pagestream_get`** on an ordinary connection returns one page at an
//!   LSN as a `bytea` row, for tools and tests.
//! - **`pagestream_v2 [<tenant> <timeline>]`** on an ordinary connection
//!   enters a binary CopyBoth sub-protocol for GetPage@LSN, page ranges,
//!   relation size/existence, database size and a bulk relation listing,
//!   with many requests in flight (see [`pagestream`] for the format and
//!   [`client::PageClient`] for the async client the lazy endpoints use).
//!
//! # Naming tenant, timeline and LSN
//!
//! pg_basebackup cannot send custom commands or options, but every libpq
//! client passes the `options` connection parameter through, so that is
//! where the names go (see [`naming`]):
//!
//! ```text
//! pg_basebackup -h 127.0.0.1 -p 64000 -D /tmp/branch -X none \
//!   -d "options='-c sediment.tenant=<tenant hex> -c sediment.timeline=<timeline hex> -c sediment.lsn=0/16B9188'"
//! ```
//!
//! `sediment.lsn` is optional (default: the last record LSN). Use `-X none`
//! or `-X fetch` (the archive already holds the one WAL segment needed;
//! there is no WAL to stream). Both `-Fp` and `-Ft` work, with or without
//! a backup manifest (`pg_verifybackup` accepts it). An unknown tenant or
//! timeline fails at connect time with SQLSTATE 3D000; an LSN the timeline
//! cannot serve fails the command with 22023.
//!
//! ```text
//! psql -h 127.0.0.1 -p 64000 -c "pagestream_get <tenant> <timeline> 1663 5 1259 main 0 0/16B9188"
//! ```
//!
//! # Running it
//!
//! ```no_run
//! # async fn demo(resolver: std::sync::Arc<dyn page_service::TimelineResolver>) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let server = tokio::spawn(page_service::serve(
//!     listener, resolver, page_service::PageServiceConfig::default(), shutdown.clone()));
//! // ... later:
//! shutdown.cancel();
//! let _ = server.await; // every connection has been closed
//! # Ok(()) }
//! ```

pub mod backup;
pub mod client;
pub mod command;
mod connection;
pub mod corruption;
pub mod naming;
pub mod pagestream;
pub mod proto;
pub mod security;
pub mod server;
mod stream;

pub use server::{serve, MapResolver, PageServiceConfig, ResolveError, TimelineResolver};
