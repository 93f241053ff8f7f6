//! The pageserver's WAL receiver: connects to a stock PostgreSQL 15 endpoint
//! *as a physical standby*, makes the WAL it streams durable in a local
//! [`WalStore`], hands it to a [`WalSink`] (ingest), and reports the durable
//! position as the standby's flush LSN, so that with
//! `synchronous_standby_names = 'pageserver'` a commit returns only once the
//! pageserver holds it durably.
//!
//! - [`store`]: the durable local WAL (format, crash rules).
//! - [`receiver`]: [`WalReceiver`] (the loop, status, stop) and [`probe`].
//! - `pipeline`: the store's writer (run by the streaming thread) and the
//!   sink thread (neither runs on the shared async runtime).
//! - [`placement`]: which CPUs the streaming thread runs on (near the
//!   store's disk's completion interrupts by default).
//! - `connection`, `protocol`, [`connstr`]: the replication connection, the
//!   CopyBoth sub-protocol, connection strings.
//!
//! ```no_run
//! # async fn example(sink: Box<dyn walreceiver::WalSink>) -> Result<(), Box<dyn std::error::Error>> {
//! use walreceiver::{probe, ReceiverOptions, WalReceiver, WalStore};
//! let connstr = "host=127.0.0.1 port=55432 user=postgres";
//! let source = probe(connstr, None).await?;
//! let mut options = ReceiverOptions::new(connstr, "pageserver");
//! options.expected_system_id = Some(source.system_id);
//! let store = WalStore::open(std::path::Path::new("/data/timeline/wal"))?;
//! let receiver = WalReceiver::spawn(options, store, sink);
//! println!("flush {}", receiver.status().flush_lsn);
//! receiver.stop().await;
//! # Ok(()) }
//! ```

mod connection;
pub mod connstr;
mod error;
mod pipeline;
pub mod placement;
mod protocol;
pub mod receiver;
pub mod store;

pub use error::{ReceiverError, SinkError};
pub use placement::Placement;
pub use postgres_wal::Lsn;
pub use receiver::{probe, ReceiverOptions, ReceiverStatus, SourceInfo, WalReceiver, WalSink};
pub use store::{ReadView, StoreError, WalStore};
