//! The deletion queue: remote objects to delete once no index of ours names
//! them any more. Deletions run only after the caller has validated that
//! our generation is still the newest ([`super::upload::RemoteTenant`] does
//! this before every run), so a stale pageserver never deletes what a newer
//! attachment may reference. Objects of other (older) generations are
//! deleted too once our index no longer names them: a newer attachment
//! loads our index or a newer one, never theirs.

use parking_lot::Mutex;
use remote_storage::{Generation, Remote, RemoteError, RemotePath};

/// Objects waiting to be deleted.
#[derive(Debug)]
pub struct DeletionQueue {
    remote: Remote,
    tenant_id: String,
    generation: Generation,
    pending: Mutex<Vec<RemotePath>>,
}

impl DeletionQueue {
    /// An empty queue.
    pub fn new(remote: Remote, tenant_id: String, generation: Generation) -> DeletionQueue {
        DeletionQueue {
            remote,
            tenant_id,
            generation,
            pending: Mutex::new(Vec::new()),
        }
    }

    /// Queues an object.
    pub fn push(&self, path: RemotePath) {
        self.pending.lock().push(path);
    }

    /// Drops queued objects that `keep` says are named again (an index
    /// just uploaded names an object of the same name, e.g. a WAL range
    /// uploaded again after a failed round): such an object must survive.
    pub fn forget(&self, keep: impl Fn(&RemotePath) -> bool) {
        self.pending.lock().retain(|path| !keep(path));
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.pending.lock().is_empty()
    }

    /// Deletes what is queued. The caller has just validated the
    /// generation. A failure puts the rest back for the next run.
    pub async fn run(&self) -> Result<(), RemoteError> {
        let batch = std::mem::take(&mut *self.pending.lock());
        for (done, path) in batch.iter().enumerate() {
            if let Err(error) = self.remote.delete(path).await {
                self.pending.lock().extend(batch[done..].iter().cloned());
                return Err(error);
            }
            tracing::debug!(tenant_id = %self.tenant_id, generation = %self.generation,
                %path, "deleted remote object");
        }
        Ok(())
    }
}
