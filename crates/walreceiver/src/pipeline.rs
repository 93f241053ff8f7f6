//! The blocking half of the receiver: the [`Writer`] that appends received
//! WAL to the [`WalStore`] and syncs it (driven by the streaming thread), and
//! a *sink* thread that reads the durable bytes back from the store and
//! feeds them to the [`WalSink`].
//!
//! The writer runs on the streaming thread itself, as PostgreSQL's own
//! walreceiver writes and flushes between reads: every commit of an endpoint
//! waits for the fsync, and a hand-over to a thread of its own cost two
//! wake-ups on that path (there, and back to send the flush position).
//! Batching is not lost: whatever arrives during an fsync is read, appended
//! and synced together next. Running up to two fdatasyncs at once on
//! threads of their own (so a batch arriving mid-sync need not wait for
//! it) was built and measured too: no gain (durability bench 0.81 vs 0.87
//! of a solo primary), as the two extra wake-ups per sync cost what the
//! overlap saved, and two concurrent fdatasyncs each took longer.
//!
//! The sink reads from the store rather than from a queue so that a slow
//! consumer never delays the fsync that commits on the endpoint are waiting
//! for, and never makes the receiver stop answering the walsender: ingest
//! may lag behind by as much WAL as the disk holds, in bounded memory.
//!
//! The writer owns the store: appends and fsyncs run without any lock; old
//! files it only detaches, for a *trim* thread to delete (a deletion took
//! ~3 ms on a loaded disk, and the next fsync would wait for it). After
//! each sync it publishes a [`ReadView`] of the files (under
//! a lock held only to swap an `Arc`) before the new durable end. The sink
//! reads that view, so it never waits on the writer's fsync (#16).
//!
//! Both publish their progress in [`Progress`]; the streaming task turns it
//! into standby status updates. A failure of either is recorded there too
//! and stops the receiver. The sink thread runs a few nice steps above the
//! process when the OS allows it (see [`raise_thread_priority`]), as does
//! the streaming thread that talks to the walsender and writes.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use postgres_wal::Lsn;
use tokio::sync::watch;

use crate::error::{ReceiverError, SinkError};
use crate::placement;
use crate::store::{DetachedFiles, ReadView, WalStore};
use crate::WalSink;

/// The writer syncs at least this often while WAL keeps arriving.
const MAX_UNSYNCED_BYTES: u64 = 8 * 1024 * 1024;
/// The sink (and replay) read the store in pieces of at most this size.
const READ_CHUNK_BYTES: usize = 1024 * 1024;
/// How often an idle sink thread looks at the stop flag.
const SINK_IDLE_CHECK: Duration = Duration::from_millis(100);

/// Durable and applied positions, as the threads advance them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Positions {
    pub(crate) flush: Lsn,
    pub(crate) apply: Lsn,
}

/// State shared between the blocking threads and the streaming task.
pub(crate) struct Progress {
    pub(crate) positions: watch::Sender<Positions>,
    /// First fatal error of a thread (`Ok` once a clean sink shutdown was asked).
    pub(crate) failure: Mutex<Option<Result<(), ReceiverError>>>,
    pub(crate) failed: tokio_util::sync::CancellationToken,
    /// `truncate_before` requests for the writer, applied after a sync.
    pub(crate) truncate_before: Arc<Mutex<Option<Lsn>>>,
    /// Set when the receiver stops: the threads finish their current step
    /// and exit (what the sink did not consume is replayed next time).
    pub(crate) stopping: tokio_util::sync::CancellationToken,
    /// Durable end, for the sink thread to wait on; and how far the sink has
    /// read (the writer never truncates past it).
    durable: Mutex<DurableState>,
    durable_changed: Condvar,
}

#[derive(Debug, Clone, Copy)]
struct DurableState {
    flush: Lsn,
    consumed: Lsn,
}

impl Progress {
    pub(crate) fn new(
        positions: Positions,
        consumed: Lsn,
        truncate_before: Arc<Mutex<Option<Lsn>>>,
    ) -> Arc<Progress> {
        Arc::new(Progress {
            positions: watch::Sender::new(positions),
            failure: Mutex::new(None),
            failed: tokio_util::sync::CancellationToken::new(),
            truncate_before,
            stopping: tokio_util::sync::CancellationToken::new(),
            durable: Mutex::new(DurableState {
                flush: positions.flush,
                consumed,
            }),
            durable_changed: Condvar::new(),
        })
    }

    pub(crate) fn fail(&self, outcome: Result<(), ReceiverError>) {
        let mut failure = self.failure.lock();
        if failure.is_none() {
            *failure = Some(outcome);
        }
        self.failed.cancel();
    }

    /// Lets the sink thread read up to `flush`.
    fn release_to_sink(&self, flush: Lsn) {
        self.durable.lock().flush = flush;
        self.durable_changed.notify_all();
    }

    /// Blocks until WAL past `at` is durable (returns the durable end) or
    /// the receiver stops (`None`).
    fn wait_for_durable_past(&self, at: Lsn) -> Option<Lsn> {
        let mut durable = self.durable.lock();
        durable.consumed = at;
        loop {
            if self.stopping.is_cancelled() {
                return None;
            }
            if durable.flush > at {
                return Some(durable.flush);
            }
            self.durable_changed.wait_for(&mut durable, SINK_IDLE_CHECK);
        }
    }

    fn consumed(&self) -> Lsn {
        self.durable.lock().consumed
    }
}

/// Where the sink and the stream start, decided by [`prepare`].
pub(crate) struct Prepared {
    pub(crate) store: WalStore,
    pub(crate) sink: Box<dyn WalSink>,
    /// The sink's resume point: it first reads (replays) the store from here.
    pub(crate) sink_from: Lsn,
    /// The store's end: streaming continues here.
    pub(crate) stream_from: Lsn,
    pub(crate) positions: Positions,
}

/// Decides where the sink and the stream start. The sink resumes at its
/// `resume_lsn()`; if the store holds it, the sink thread replays the store
/// from there while streaming already continues at the store's end (so a
/// long replay after a restart never keeps the endpoint's commits waiting).
/// If the store cannot serve the sink contiguously (it starts after
/// `resume_lsn`, or ends before it), the store is emptied and both start at
/// `resume_lsn`.
pub(crate) fn prepare(
    mut store: WalStore,
    sink: Box<dyn WalSink>,
) -> Result<Prepared, ReceiverError> {
    let resume = sink.resume_lsn();
    let stream_from = match (store.start_lsn(), store.end_lsn()) {
        (Some(start), Some(end)) if start <= resume && resume <= end => {
            if resume < end {
                tracing::info!(from = %resume, to = %end, "replaying WAL from the local store");
            }
            end
        }
        (Some(start), Some(end)) => {
            tracing::warn!(%resume, %start, %end, "WAL store cannot serve the consumer; starting it afresh");
            store.reset()?;
            resume
        }
        _ => resume,
    };
    Ok(Prepared {
        store,
        sink,
        sink_from: resume,
        stream_from,
        positions: Positions {
            flush: stream_from,
            apply: resume,
        },
    })
}

/// The sink thread and the view of the store it reads, and the thread that
/// deletes the store files the writer detached.
pub(crate) struct Pipeline {
    /// The newest durable view of the store (for [`crate::WalReceiver::durable_view`]).
    pub(crate) view: SharedView,
    sink: JoinHandle<()>,
    trim: JoinHandle<()>,
}

impl Pipeline {
    /// Starts the sink thread, which starts reading the store at
    /// `sink_from`; returns it with the [`Writer`] that appends at
    /// `stream_from`.
    pub(crate) fn start(
        prepared: Prepared,
        progress: Arc<Progress>,
    ) -> std::io::Result<(Pipeline, Writer)> {
        let Prepared {
            store,
            sink,
            sink_from,
            ..
        } = prepared;
        // The trim thread first: should the sink's fail to start, dropping
        // the queue's sender ends it again.
        let (trim_queue, trimmed) = std::sync::mpsc::channel();
        let trim = std::thread::Builder::new()
            .name("wal-trim".to_owned())
            .spawn(move || {
                placement::unpin_current_thread();
                run_trim(&trimmed)
            })?;
        let view: SharedView = Arc::new(Mutex::new(Arc::new(store.read_view())));
        let sink_view = view.clone();
        let sink_progress = progress.clone();
        let sink = std::thread::Builder::new()
            .name("wal-sink".to_owned())
            .spawn(move || {
                raise_thread_priority();
                placement::unpin_current_thread();
                run_sink(sink, &sink_view, sink_from, &sink_progress)
            })?;
        let writer = Writer {
            store,
            view: view.clone(),
            progress,
            trim_queue,
        };
        Ok((Pipeline { view, sink, trim }, writer))
    }

    /// Tells the sink thread to stop after its current step, lets the trim
    /// thread delete what `writer` detached, and waits for both (blocking:
    /// call from a blocking context).
    pub(crate) fn finish(self, writer: Writer, progress: &Progress) {
        progress.stopping.cancel();
        progress.durable_changed.notify_all();
        // Closes the trim queue: the thread ends after the files queued.
        drop(writer);
        let _ = self.trim.join();
        let _ = self.sink.join();
    }
}

/// The newest [`ReadView`]; the lock is held only to clone or swap the `Arc`.
pub(crate) type SharedView = Arc<Mutex<Arc<ReadView>>>;

/// Appends received WAL to the store and makes it durable. Its calls block
/// on disk I/O: the streaming thread, which owns it, does nothing else
/// meanwhile (see the module doc).
pub(crate) struct Writer {
    store: WalStore,
    view: SharedView,
    progress: Arc<Progress>,
    /// Files detached from the store, for the trim thread to delete.
    trim_queue: std::sync::mpsc::Sender<DetachedFiles>,
}

impl Writer {
    /// Appends `bytes` at `lsn` (the store's end); durable after [`Writer::sync`].
    pub(crate) fn append(&mut self, lsn: Lsn, bytes: &[u8]) -> Result<(), crate::StoreError> {
        self.store.append(lsn, bytes)
    }

    /// Whether appended bytes wait for a sync.
    pub(crate) fn has_unsynced(&self) -> bool {
        self.store.unsynced_bytes() > 0
    }

    /// Whether enough waits that it must be synced before reading on, so
    /// the flush position keeps moving while WAL arrives without a pause.
    pub(crate) fn must_sync(&self) -> bool {
        self.store.unsynced_bytes() >= MAX_UNSYNCED_BYTES
    }

    /// Syncs what was appended and publishes the new durable end in the
    /// positions; the sink sees it only after [`Writer::release`] (called
    /// once the flush position is on its way to the walsender: woken first,
    /// the sink could take the CPU the reply waits for).
    pub(crate) fn sync(&mut self) -> Result<(), crate::StoreError> {
        let flush = self.store.sync()?;
        // The view first: a sink that sees the new durable end must find it
        // in the view it reads next.
        let fresh = Arc::new(self.store.read_view());
        *self.view.lock() = fresh;
        self.progress.positions.send_modify(|p| p.flush = flush);
        Ok(())
    }

    /// Lets the sink read what the last [`Writer::sync`] made durable, then
    /// detaches the files asked for by `truncate_before` and hands them to
    /// the trim thread: deleting them here would hold up the next sync.
    pub(crate) fn release(&mut self) -> Result<(), crate::StoreError> {
        let flush = self.progress.positions.borrow().flush;
        self.progress.release_to_sink(flush);
        // Kept, not taken: files below it may only be complete after later
        // syncs. Never past what the sink has read.
        let requested = *self.progress.truncate_before.lock();
        if let Some(lsn) = requested {
            let consumed = self.progress.consumed();
            if let Some(detached) = self.store.detach_before(lsn.min(consumed))? {
                // Refused only if the trim thread died: delete them here.
                if let Err(std::sync::mpsc::SendError(detached)) = self.trim_queue.send(detached) {
                    detached.remove()?;
                }
            }
        }
        Ok(())
    }

    /// [`Writer::sync`] and [`Writer::release`] at once.
    pub(crate) fn sync_and_release(&mut self) -> Result<(), crate::StoreError> {
        self.sync()?;
        self.release()
    }
}

/// Deletes detached store files, batch by batch in the order they were
/// detached (oldest first), until the writer is gone. A failure leaves the
/// files for the next open of the store, which takes them as its oldest.
fn run_trim(queue: &std::sync::mpsc::Receiver<DetachedFiles>) {
    for detached in queue {
        if let Err(error) = detached.remove() {
            tracing::warn!(%error, "cannot delete WAL store files the consumer no longer needs");
        }
    }
}

fn run_sink(
    mut sink: Box<dyn WalSink>,
    view: &Mutex<Arc<ReadView>>,
    mut at: Lsn,
    progress: &Progress,
) {
    while let Some(durable) = progress.wait_for_durable_past(at) {
        let wanted = usize::try_from(durable - at)
            .unwrap_or(usize::MAX)
            .min(READ_CHUNK_BYTES);
        let current = view.lock().clone();
        let chunk = match current.read(at, wanted) {
            Ok(chunk) => chunk,
            Err(error) => {
                progress.fail(Err(error.into()));
                return;
            }
        };
        // A panicking consumer must stop the receiver with a visible reason,
        // not silently take the thread down.
        let consumed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink.consume(at, &chunk)))
                .unwrap_or_else(|panic| {
                    Err(SinkError::failed(format!(
                        "panicked: {}",
                        panic_message(&panic)
                    )))
                });
        match consumed {
            Ok(applied) => progress.positions.send_modify(|p| p.apply = applied),
            Err(SinkError::ShuttingDown) => {
                progress.fail(Ok(()));
                return;
            }
            Err(error) => {
                progress.fail(Err(error.into()));
                return;
            }
        }
        at = at + chunk.len() as u64;
    }
}

/// How many nice steps the writer and sink threads take above the process.
const PRIORITY_STEPS: i32 = 5;

/// Raises the calling thread's scheduling priority [`PRIORITY_STEPS`] above
/// the process's (its main thread's, so a thread started by an already
/// raised thread ends at the same level). The streaming thread's replies,
/// the writer's sync and the sink's apply are what an endpoint's commits
/// and a branch at "now" wait on; all do little work, but on a host shared
/// with Postgres they otherwise queue behind its busy backends for a
/// scheduler slice (the p99 of `replay_lag` was ~17 ms with a p50 of
/// 0.6 ms). Needs `CAP_SYS_NICE`; without it the thread keeps its priority.
pub(crate) fn raise_thread_priority() {
    if let Err(error) = threadsched::raise_above_process(PRIORITY_STEPS) {
        tracing::debug!(%error, "WAL thread keeps its priority");
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every consume call's LSN and bytes.
    type Calls = Arc<Mutex<Vec<(Lsn, Vec<u8>)>>>;

    struct VecSink {
        resume: Lsn,
        got: Calls,
    }

    impl WalSink for VecSink {
        fn resume_lsn(&self) -> Lsn {
            self.resume
        }
        fn consume(&mut self, lsn: Lsn, bytes: &[u8]) -> Result<Lsn, SinkError> {
            self.got.lock().push((lsn, bytes.to_vec()));
            Ok(lsn + bytes.len() as u64)
        }
    }

    fn store_with(dir: &std::path::Path, start: Lsn, bytes: &[u8]) -> WalStore {
        let mut store = WalStore::open(dir).unwrap();
        store.append(start, bytes).unwrap();
        store.sync().unwrap();
        store
    }

    #[test]
    fn the_sink_replays_from_its_resume_point_while_streaming_continues_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let store = store_with(dir.path(), Lsn(1000), &data);
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Box::new(VecSink {
            resume: Lsn(1500),
            got: got.clone(),
        });
        let prepared = prepare(store, sink).unwrap();
        assert_eq!(prepared.sink_from, Lsn(1500));
        assert_eq!(prepared.stream_from, Lsn(4000));
        assert_eq!(
            prepared.positions,
            Positions {
                flush: Lsn(4000),
                apply: Lsn(1500)
            }
        );

        // The sink thread replays the stored tail, then takes new WAL.
        let progress = Progress::new(prepared.positions, prepared.sink_from, Arc::default());
        let (pipeline, mut writer) = Pipeline::start(prepared, progress.clone()).unwrap();
        writer.append(Lsn(4000), b"new").unwrap();
        writer.sync_and_release().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while progress.positions.borrow().apply < Lsn(4003) {
            assert!(
                std::time::Instant::now() < deadline,
                "sink did not catch up"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        pipeline.finish(writer, &progress);
        let calls = got.lock();
        assert_eq!(calls[0].0, Lsn(1500));
        let replayed: Vec<u8> = calls.iter().flat_map(|(_, b)| b.clone()).collect();
        assert_eq!(&replayed[..2500], &data[500..]);
        assert_eq!(&replayed[2500..], b"new");
    }

    /// Like [`VecSink`], but its first consume waits for `go`.
    struct GatedSink {
        go: std::sync::mpsc::Receiver<()>,
        calls: usize,
    }

    impl WalSink for GatedSink {
        fn resume_lsn(&self) -> Lsn {
            Lsn(1000)
        }
        fn consume(&mut self, lsn: Lsn, bytes: &[u8]) -> Result<Lsn, SinkError> {
            if self.calls == 0 {
                let _ = self.go.recv();
            }
            self.calls += 1;
            Ok(lsn + bytes.len() as u64)
        }
    }

    /// #16: while the writer is inside a (here: stuck) fsync, the sink still
    /// reads and consumes what was durable before. With the store's lock
    /// held across the fsync, the sink's second read waits for the fsync and
    /// this test fails at its 60 s deadline.
    #[test]
    fn the_sink_is_not_blocked_by_a_slow_fsync() {
        let dir = tempfile::tempdir().unwrap();
        // More than one read chunk, so the sink reads again after its first
        // (held) consume.
        let data = vec![7u8; READ_CHUNK_BYTES + READ_CHUNK_BYTES / 2];
        let end = Lsn(1000) + data.len() as u64;
        let mut store = store_with(dir.path(), Lsn(1000), &data);
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel();
        store.sync_gate = Some((entered_tx, release_rx));
        let (go, go_rx) = std::sync::mpsc::channel();
        let sink = Box::new(GatedSink {
            go: go_rx,
            calls: 0,
        });
        let prepared = prepare(store, sink).unwrap();
        let progress = Progress::new(prepared.positions, prepared.sink_from, Arc::default());
        let (pipeline, mut writer) = Pipeline::start(prepared, progress.clone()).unwrap();
        writer.append(end, b"new").unwrap();
        let syncing = std::thread::spawn(move || {
            let synced = writer.sync_and_release();
            (writer, synced)
        });
        entered
            .recv_timeout(Duration::from_secs(60))
            .expect("the writer reaches its fsync");
        // The writer is inside its fsync now; let the sink go on.
        go.send(()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut caught_up = false;
        while std::time::Instant::now() < deadline {
            if progress.positions.borrow().apply >= end {
                caught_up = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Still inside the fsync: the writer has not published the new WAL.
        assert!(progress.positions.borrow().flush <= end);
        release.send(()).unwrap();
        assert!(caught_up, "the sink waited for the writer's fsync");
        let (writer, synced) = syncing.join().unwrap();
        synced.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while progress.positions.borrow().apply < end + 3 {
            assert!(std::time::Instant::now() < deadline, "sink did not finish");
            std::thread::sleep(Duration::from_millis(10));
        }
        pipeline.finish(writer, &progress);
    }

    /// The local file system, except that the first file removal says so on
    /// `entered` and then waits for `release` (a loaded disk).
    #[derive(Debug)]
    struct SlowFirstRemoval {
        entered: Mutex<Option<std::sync::mpsc::Sender<()>>>,
        release: Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl fileio::FileIo for SlowFirstRemoval {
        fn write_file(&self, path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
            fileio::StdFileIo.write_file(path, data)
        }
        fn read_file(&self, path: &std::path::Path) -> std::io::Result<Vec<u8>> {
            fileio::StdFileIo.read_file(path)
        }
        fn open_read(&self, path: &std::path::Path) -> std::io::Result<Arc<dyn fileio::ReadAt>> {
            fileio::StdFileIo.open_read(path)
        }
        fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
            fileio::StdFileIo.rename(from, to)
        }
        fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
            fileio::StdFileIo.sync_dir(dir)
        }
        fn create_dir_all(&self, dir: &std::path::Path) -> std::io::Result<()> {
            fileio::StdFileIo.create_dir_all(dir)
        }
        fn list_dir(&self, dir: &std::path::Path) -> std::io::Result<Vec<fileio::DirEntry>> {
            fileio::StdFileIo.list_dir(dir)
        }
        fn remove_file(&self, path: &std::path::Path) -> std::io::Result<()> {
            if let Some(entered) = self.entered.lock().take() {
                let _ = entered.send(());
                let _ = self.release.lock().recv();
            }
            fileio::StdFileIo.remove_file(path)
        }
        fn remove_dir_all(&self, dir: &std::path::Path) -> std::io::Result<()> {
            fileio::StdFileIo.remove_dir_all(dir)
        }
        fn create_append(
            &self,
            path: &std::path::Path,
        ) -> std::io::Result<Box<dyn fileio::AppendFile>> {
            fileio::StdFileIo.create_append(path)
        }
        fn open_append(
            &self,
            path: &std::path::Path,
        ) -> std::io::Result<Box<dyn fileio::AppendFile>> {
            fileio::StdFileIo.open_append(path)
        }
        fn truncate(&self, path: &std::path::Path, len: u64) -> std::io::Result<()> {
            fileio::StdFileIo.truncate(path, len)
        }
    }

    /// Deleting a store file took ~3 ms on a loaded disk, on the thread
    /// whose next fsync the endpoint's commits wait for. The writer only
    /// detaches files; the trim thread deletes them. With the deletion in
    /// `release`, the writer below stays inside the stuck removal and the
    /// test fails at its deadline.
    #[test]
    fn a_slow_file_deletion_never_holds_up_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel();
        let io = Arc::new(SlowFirstRemoval {
            entered: Mutex::new(Some(entered_tx)),
            release: Mutex::new(release_rx),
        });
        let mut store = WalStore::open_with_io(io, dir.path(), 64 * 1024).unwrap();
        let data = vec![5u8; 256 * 1024];
        store.append(Lsn(1000), &data).unwrap();
        store.sync().unwrap();
        let end = Lsn(1000) + data.len() as u64;
        let sink = Box::new(VecSink {
            resume: Lsn(1000),
            got: Arc::default(),
        });
        let prepared = prepare(store, sink).unwrap();
        let truncate_before = Arc::new(Mutex::new(None));
        let progress = Progress::new(
            prepared.positions,
            prepared.sink_from,
            truncate_before.clone(),
        );
        let (pipeline, mut writer) = Pipeline::start(prepared, progress.clone()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while progress.consumed() < end {
            assert!(
                std::time::Instant::now() < deadline,
                "sink did not catch up"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        *truncate_before.lock() = Some(end);
        let (done_tx, done) = std::sync::mpsc::channel();
        let writing = std::thread::spawn(move || {
            let mut at = end;
            for _ in 0..3 {
                writer.append(at, b"more").unwrap();
                writer.sync_and_release().unwrap();
                at = at + 4;
            }
            let _ = done_tx.send(());
            writer
        });
        entered
            .recv_timeout(Duration::from_secs(60))
            .expect("a store file is being deleted");
        let finished = done.recv_timeout(Duration::from_secs(10));
        release.send(()).unwrap();
        assert!(finished.is_ok(), "the writer waited for a file deletion");
        let writer = writing.join().unwrap();
        pipeline.finish(writer, &progress);
        let left = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left, 1, "every file wholly below the request is deleted");
    }

    #[test]
    fn a_store_that_cannot_serve_the_consumer_is_emptied() {
        for resume in [Lsn(500), Lsn(5000)] {
            let dir = tempfile::tempdir().unwrap();
            let store = store_with(dir.path(), Lsn(1000), &[1; 100]);
            let sink = Box::new(VecSink {
                resume,
                got: Arc::default(),
            });
            let prepared = prepare(store, sink).unwrap();
            assert_eq!(prepared.stream_from, resume);
            assert_eq!(prepared.store.end_lsn(), None);
            assert_eq!(WalStore::open(dir.path()).unwrap().end_lsn(), None);
        }
    }
}
