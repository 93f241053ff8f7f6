//! Remote storage: where a pageserver uploads layer files, per-timeline
//! indexes and WAL, and from where another pageserver attaches a tenant.
//! The pageserver never talks to an object store directly; it goes through
//! this crate.
//!
//! Layout of the crate (one concern per module):
//! - [`backend`]: the [`ObjectStorage`] trait (put / get / get_range / list /
//!   delete / head) and its one real implementation over the `object_store`
//!   crate, for a local directory or any S3 API;
//! - [`config`]: parsing `s3://bucket/prefix` or a local path into a backend;
//! - [`faulty`]: a wrapper injecting errors, timeouts and torn uploads (tests);
//! - [`remote`]: [`Remote`], the handle the pageserver uses: bounded
//!   concurrency, per-attempt timeouts, retries with exponential backoff and
//!   jitter, cancellation;
//! - [`generation`], [`index`], [`layout`], [`wal`]: the pure part (no I/O):
//!   generation numbers and the names they suffix, the `index_part.json`
//!   format and the choice of which index to load, where every object
//!   lives, and how the WAL above the layers is cut into objects.
//!
//! Formats and the generation protocol are described in
//! `docs/remote-storage.md`.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use remote_storage::{Remote, RemoteConfig, RemotePath};
//! let dir = tempfile::tempdir()?;
//! let remote = Remote::new(RemoteConfig::parse(dir.path().to_str().unwrap())?.open()?);
//! let path = RemotePath::new("tenants/a/object")?;
//! remote.put(&path, bytes::Bytes::from_static(b"hello")).await?;
//! assert_eq!(&remote.get(&path).await?[..], b"hello");
//! # Ok(()) }
//! ```

pub mod backend;
pub mod config;
pub mod error;
pub mod faulty;
pub mod generation;
pub mod index;
pub mod layout;
pub mod remote;
pub mod wal;

pub use backend::{ObjectMeta, ObjectStorage, ObjectStoreBackend, RemotePath};
pub use config::{ConfigError, RemoteConfig, S3Settings};
pub use error::RemoteError;
pub use faulty::{Fault, FaultyStorage};
pub use generation::Generation;
pub use index::{IndexDecodeError, IndexPart, LayerMetadata};
pub use remote::{Remote, RetryPolicy};
pub use wal::WalObject;
