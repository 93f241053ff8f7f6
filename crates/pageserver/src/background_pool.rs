//! The threads the layer lifecycle's heavy work runs on — flushes,
//! compaction and image creation, GC, materialising hot pages — at a lower
//! CPU priority than everything on a commit's path.
//!
//! A writable endpoint's commit waits for the WAL receiver's thread to
//! receive, write, fdatasync and acknowledge its WAL; on a machine whose
//! cores the endpoint's backends keep busy, every slice of CPU the layer
//! work takes at equal priority is taken from them or from that thread.
//! The layer work can wait: no commit waits for it, and writers already
//! stop at `max_frozen_layers` frozen layers until a flush catches up (so
//! memory stays bounded however far it falls behind). So its threads run
//! at nice [`BACKGROUND_NICE`]: the scheduler gives them what the commit
//! path leaves, and about a tenth of a contended core (nice 10 weighs ~110
//! against 1024 at nice 0), never nothing.
//!
//! The pool is a tokio runtime of its own whose threads lower their own
//! priority when they start (on Linux the nice value is per thread), so the
//! work gets ordinary [`JoinHandle`]s. Where the runtime cannot be built
//! the work runs on the calling runtime's blocking pool at normal priority.

use std::sync::OnceLock;

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// Nice value of the pool's threads (0 is normal, 19 the lowest priority).
pub const BACKGROUND_NICE: i32 = 10;
/// Most threads the pool runs blocking work on at once (tokio's default):
/// each tenant runs a flush, a compaction or GC pass and a materialising
/// pass at a time, and a tenant's flush must never queue behind other
/// tenants' long compactions. Idle threads exit after a few seconds.
const MAX_THREADS: usize = 512;

/// Runs `work` on a low-priority thread.
pub fn spawn_blocking<F, R>(work: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    match pool() {
        Some(runtime) => runtime.spawn_blocking(work),
        None => tokio::task::spawn_blocking(work),
    }
}

/// The pool, built on first use; `None` if the OS refused its threads.
fn pool() -> Option<&'static Runtime> {
    static POOL: OnceLock<Option<Runtime>> = OnceLock::new();
    POOL.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(MAX_THREADS)
            .thread_name("layer-work")
            .on_thread_start(lower_own_priority)
            .build()
            .inspect_err(|error| {
                tracing::warn!(%error, "no low-priority pool for layer work; it runs at normal priority");
            })
            .ok()
    })
    .as_ref()
}

/// Raises the calling thread's nice value to [`BACKGROUND_NICE`] (or leaves
/// it where it is if the whole process already runs nicer). Failure (a
/// seccomp filter, say) leaves it at normal priority, which is only slower
/// for commits.
fn lower_own_priority() {
    if let Err(error) = threadsched::lower_to(BACKGROUND_NICE) {
        tracing::debug!(%error, "cannot lower a layer-work thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn layer_work_runs_at_background_priority_and_the_caller_does_not() {
        let caller = threadsched::current_nice().unwrap();
        let (nice, name) = spawn_blocking(|| {
            let name = std::thread::current().name().map(str::to_owned);
            (threadsched::current_nice().unwrap(), name)
        })
        .await
        .unwrap();
        assert_eq!(nice, caller.max(BACKGROUND_NICE));
        assert_eq!(name.as_deref(), Some("layer-work"));
        assert_eq!(threadsched::current_nice().unwrap(), caller);
    }
}
