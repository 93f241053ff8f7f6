//! A fault-injecting [`ObjectStorage`] wrapper for tests: queued faults hit
//! the next operations in order, and a failure rate makes any operation fail
//! at random. Faults model what S3 does to a client: a 5xx answer, a
//! request that hangs past the client's timeout, and a torn upload (part of
//! the object written, then the connection drops).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use rand::Rng;

use crate::backend::{ObjectMeta, ObjectStorage, RemotePath};
use crate::error::RemoteError;

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails as a 5xx answer would.
    ServerError,
    /// The operation hangs this long, then fails as a dropped connection.
    Hang(Duration),
    /// A put writes the first half of the object, then fails; other
    /// operations fail as [`Fault::ServerError`].
    TornUpload,
    /// A put writes the first half of the object and reports success (a
    /// broken proxy); only a size check afterwards can catch it.
    SilentTornUpload,
}

/// Wraps a backend and injects faults.
#[derive(Debug)]
pub struct FaultyStorage {
    inner: Arc<dyn ObjectStorage>,
    queued: Mutex<VecDeque<Fault>>,
    /// Probability in millionths that an operation fails with a random fault.
    failure_ppm: AtomicU64,
    injected: AtomicU64,
}

impl FaultyStorage {
    /// Wraps `inner`; no faults until some are queued or a rate is set.
    pub fn new(inner: Arc<dyn ObjectStorage>) -> FaultyStorage {
        FaultyStorage {
            inner,
            queued: Mutex::new(VecDeque::new()),
            failure_ppm: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        }
    }

    /// The next operation (after earlier queued faults) suffers `fault`.
    pub fn push(&self, fault: Fault) {
        self.queued.lock().push_back(fault);
    }

    /// Every operation fails with probability `rate` (0.0 ..= 1.0) with a
    /// fault drawn at random (hangs last 50 ms).
    pub fn set_failure_rate(&self, rate: f64) {
        let ppm = (rate.clamp(0.0, 1.0) * 1_000_000.0) as u64;
        self.failure_ppm.store(ppm, Ordering::Relaxed);
    }

    /// How many faults have been injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    fn next_fault(&self) -> Option<Fault> {
        let fault = self.queued.lock().pop_front().or_else(|| {
            let ppm = self.failure_ppm.load(Ordering::Relaxed);
            let mut rng = rand::rng();
            (ppm > 0 && rng.random_range(0..1_000_000) < ppm).then(|| {
                match rng.random_range(0..4) {
                    0 => Fault::ServerError,
                    1 => Fault::Hang(Duration::from_millis(50)),
                    2 => Fault::TornUpload,
                    _ => Fault::SilentTornUpload,
                }
            })
        });
        if fault.is_some() {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        fault
    }

    /// Applies a fault to a non-put operation.
    async fn fail(path: &RemotePath, fault: Fault) -> RemoteError {
        if let Fault::Hang(duration) = fault {
            tokio::time::sleep(duration).await;
        }
        RemoteError::Transient {
            path: path.to_string(),
            message: format!("injected fault: {fault:?}"),
        }
    }
}

#[async_trait::async_trait]
impl ObjectStorage for FaultyStorage {
    async fn put(&self, path: &RemotePath, data: Bytes) -> Result<(), RemoteError> {
        match self.next_fault() {
            None => self.inner.put(path, data).await,
            Some(Fault::TornUpload) => {
                self.inner.put(path, data.slice(..data.len() / 2)).await?;
                Err(FaultyStorage::fail(path, Fault::TornUpload).await)
            }
            Some(Fault::SilentTornUpload) => {
                self.inner.put(path, data.slice(..data.len() / 2)).await
            }
            Some(fault) => Err(FaultyStorage::fail(path, fault).await),
        }
    }

    async fn get(&self, path: &RemotePath) -> Result<Bytes, RemoteError> {
        match self.next_fault() {
            None => self.inner.get(path).await,
            Some(fault) => Err(FaultyStorage::fail(path, fault).await),
        }
    }

    async fn get_range(&self, path: &RemotePath, range: Range<u64>) -> Result<Bytes, RemoteError> {
        match self.next_fault() {
            None => self.inner.get_range(path, range).await,
            Some(fault) => Err(FaultyStorage::fail(path, fault).await),
        }
    }

    async fn list(&self, prefix: &RemotePath) -> Result<Vec<ObjectMeta>, RemoteError> {
        match self.next_fault() {
            None => self.inner.list(prefix).await,
            Some(fault) => Err(FaultyStorage::fail(prefix, fault).await),
        }
    }

    async fn delete(&self, path: &RemotePath) -> Result<(), RemoteError> {
        match self.next_fault() {
            None => self.inner.delete(path).await,
            Some(fault) => Err(FaultyStorage::fail(path, fault).await),
        }
    }

    async fn head(&self, path: &RemotePath) -> Result<ObjectMeta, RemoteError> {
        match self.next_fault() {
            None => self.inner.head(path).await,
            Some(fault) => Err(FaultyStorage::fail(path, fault).await),
        }
    }
}
