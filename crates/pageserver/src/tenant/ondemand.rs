//! The pageserver's half of on-demand layer download: the
//! [`storage::io::LayerDownloader`] a tenant's storage calls when a read
//! needs an evicted layer file.
//!
//! Storage reads are synchronous (run on blocking threads); the download is
//! async. It is spawned on the runtime the tenant's remote side was started
//! on and waited for over a channel, so this works from any thread. The
//! object path is the marker's `source`; [`remote_storage::Remote`] retries
//! and verifies size and CRC-32C (storage checks them once more before
//! installing the file).

use std::path::Path;

use parking_lot::Mutex;
use remote_storage::{Remote, RemotePath};
use storage::io::{EvictedMarker, LayerDownloader};

use crate::ids::TenantId;

/// Downloads evicted layers of one tenant from remote storage.
#[derive(Debug)]
pub struct RemoteLayerDownloader {
    tenant_id: TenantId,
    remote: Mutex<Option<(Remote, tokio::runtime::Handle)>>,
}

impl RemoteLayerDownloader {
    /// A downloader with no remote yet: downloads fail until
    /// [`RemoteLayerDownloader::set_remote`].
    pub fn new(tenant_id: TenantId) -> RemoteLayerDownloader {
        RemoteLayerDownloader {
            tenant_id,
            remote: Mutex::new(None),
        }
    }

    /// Where downloads come from, and the runtime they run on.
    pub fn set_remote(&self, remote: Remote, runtime: tokio::runtime::Handle) {
        *self.remote.lock() = Some((remote, runtime));
    }
}

impl LayerDownloader for RemoteLayerDownloader {
    fn download(&self, path: &Path, marker: &EvictedMarker) -> std::io::Result<Vec<u8>> {
        let Some((remote, runtime)) = self.remote.lock().clone() else {
            return Err(std::io::Error::other(format!(
                "{} is evicted and tenant {} has no remote storage to download it from",
                path.display(),
                self.tenant_id
            )));
        };
        let object = RemotePath::new(marker.source.clone()).map_err(std::io::Error::other)?;
        let (size, crc) = (marker.file_size, marker.crc32c);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let result = remote.get_verified(&object, size, crc).await;
            // The reader may have gone away; nothing to do then.
            let _ = tx.send(result);
        });
        let data = wait_off_the_runtime(|| rx.recv())
            .map_err(|_| std::io::Error::other("the runtime stopped during a layer download"))?
            .map_err(|error| {
                std::io::Error::other(format!(
                    "cannot download {} from remote storage: {error}",
                    path.display()
                ))
            })?;
        tracing::info!(tenant_id = %self.tenant_id, layer = %path.display(), bytes = data.len(),
            "downloaded evicted layer");
        Ok(data.to_vec())
    }
}

/// Runs the blocking `wait` so that it cannot starve the runtime. A read
/// that needs an evicted layer may come from an async task (an HTTP handler
/// computing a timeline's logical size); the download it spawned then sits
/// in that worker's LIFO slot, which no other worker steals, and a plain
/// blocking wait there never ends (seen: `timeline branch` right after an
/// attach hung forever). `block_in_place` hands the worker's queue to
/// another thread first.
fn wait_off_the_runtime<T>(wait: impl FnOnce() -> T) -> T {
    let on_multi_thread_worker = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if on_multi_thread_worker {
        tokio::task::block_in_place(wait)
    } else {
        wait()
    }
}
