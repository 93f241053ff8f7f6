//! Waiting for ingest to reach an LSN: a blocking wait with a timeout for
//! threads, and a future for async callers (who add their own timeout, e.g.
//! `tokio::time::timeout`). Both also wait for every ancestor to hold its
//! history up to the branch point, which after a restart it may not yet.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use postgres_wal::Lsn;

use super::Timeline;
use crate::error::WaitLsnError;

impl Timeline {
    /// Waits until `last_record_lsn >= lsn`, at most `timeout`, and until
    /// every ancestor holds the history up to its branch point (after a
    /// restart an ancestor may still be catching up). Blocking: call it from
    /// a thread that may block (e.g. tokio's `spawn_blocking`).
    pub fn wait_lsn(&self, lsn: Lsn, timeout: Duration) -> Result<(), WaitLsnError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut timeline = self;
        let mut target = lsn;
        loop {
            timeline.wait_own_lsn(target, started, deadline)?;
            match &timeline.ancestor {
                Some(ancestor) => {
                    target = timeline.ancestor_lsn;
                    timeline = ancestor;
                }
                None => return Ok(()),
            }
        }
    }

    fn wait_own_lsn(
        &self,
        lsn: Lsn,
        started: Instant,
        deadline: Instant,
    ) -> Result<(), WaitLsnError> {
        let mut state = self.lsns.lock();
        loop {
            if state.shutting_down {
                return Err(WaitLsnError::ShuttingDown);
            }
            if state.last_record >= lsn {
                return Ok(());
            }
            if self
                .lsn_advanced
                .wait_until(&mut state, deadline)
                .timed_out()
                && state.last_record < lsn
            {
                return Err(WaitLsnError::Timeout {
                    timeline: self.id,
                    lsn,
                    last_record_lsn: state.last_record,
                    waited: started.elapsed(),
                });
            }
        }
    }

    /// Resolves once [`Timeline::wait_lsn`] would return: `last_record_lsn >=
    /// lsn` here and every ancestor caught up to its branch point. Never
    /// blocks a thread; resolves to `ShuttingDown` on shutdown.
    pub fn wait_lsn_async(&self, lsn: Lsn) -> WaitLsnFuture<'_> {
        WaitLsnFuture {
            timeline: self,
            lsn,
        }
    }
}

/// Future of [`Timeline::wait_lsn_async`].
pub struct WaitLsnFuture<'a> {
    timeline: &'a Timeline,
    lsn: Lsn,
}

impl Future for WaitLsnFuture<'_> {
    type Output = Result<(), WaitLsnError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut timeline = self.timeline;
        let mut target = self.lsn;
        loop {
            {
                let mut state = timeline.lsns.lock();
                if state.shutting_down {
                    return Poll::Ready(Err(WaitLsnError::ShuttingDown));
                }
                if state.last_record < target {
                    state.waiters.push((target, cx.waker().clone()));
                    return Poll::Pending;
                }
            }
            match &timeline.ancestor {
                Some(ancestor) => {
                    target = timeline.ancestor_lsn;
                    timeline = ancestor;
                }
                None => return Poll::Ready(Ok(())),
            }
        }
    }
}
