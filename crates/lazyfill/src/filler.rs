//! The fill loop: answers every pre-access event on a sparse relation
//! segment by writing the missing pages first (with read-ahead for
//! sequential access), and a background thread that walks the remaining
//! holes by *reading* them, so that every write into a segment goes through
//! the one event thread (see the crate docs for why that matters).

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use page_service::client::PageClient;
use page_service::pagestream::{RelTag, MAX_RANGE_PAGES};
use parking_lot::Mutex;
use postgres_wal::record::BLCKSZ;
use postgres_wal::Lsn;

use crate::fanotify::{Event, Group};

const PAGE: u64 = BLCKSZ as u64;
/// Largest read-ahead window for a sequential scan, in pages.
pub const MAX_READAHEAD_PAGES: u32 = 256;
/// Relations with a smaller relfilenode are PostgreSQL's own catalogs, their
/// indexes and TOAST tables as initdb made them (`FirstNormalObjectId`).
const FIRST_NORMAL_OBJECT_ID: u32 = 16384;
/// `template1` and `template0` (fixed OIDs since PostgreSQL 15): one is
/// only read by CREATE DATABASE, nobody connects to the other.
const TEMPLATE1_OID: u32 = 1;
const TEMPLATE0_OID: u32 = 4;
/// Range requests in flight while prefilling.
const PREFILL_IN_FLIGHT: usize = 32;

/// One sparse relation segment file and where its pages come from.
#[derive(Clone, Debug)]
pub struct Segment {
    pub path: PathBuf,
    pub tag: RelTag,
    pub first_blkno: u32,
    pub blocks: u32,
}

impl Segment {
    /// A segment of a system catalog (or its index or TOAST table) of a
    /// database one can connect to, or a shared one: what every new
    /// connection reads before it runs a query.
    pub fn is_catalog(&self) -> bool {
        self.tag.rel.rel_node < FIRST_NORMAL_OBJECT_ID && self.tag.rel.db_node != TEMPLATE0_OID
    }

    /// Background fill order: catalogs first, then small segments before
    /// large ones (many small relations are touched by more queries per page).
    fn fill_rank(&self) -> (bool, u32) {
        (!self.is_catalog(), self.blocks)
    }
}

/// Writes the holes of the catalog segments among `segments` (but
/// `template1`'s, which only CREATE DATABASE reads; at most
/// `max_pages` pages), before they are marked and before Postgres starts, in
/// pipelined range requests. Why: every new backend reads a few hundred
/// catalog pages scattered over ~200 small files; fetched one access at a
/// time through the event thread (with cold layer files on the page server)
/// that made the first connection after a start take ~0.7 s, while one
/// pipelined pass over them costs tens of milliseconds. Only holes are
/// written (a restarted endpoint keeps what Postgres wrote) and a failed
/// fetch only leaves its pages holes, which the marks then serve on demand
/// (or fail with EIO), never zeros. Returns the pages written.
pub fn prefill_catalogs(
    client: &PageClient,
    runtime: &tokio::runtime::Handle,
    lsn: Lsn,
    segments: &[Segment],
    max_pages: u64,
) -> std::io::Result<u64> {
    let mut runs = Vec::new();
    let mut files = Vec::new();
    let mut budget = max_pages;
    let mut catalogs: Vec<&Segment> = segments
        .iter()
        .filter(|s| s.is_catalog() && s.tag.rel.db_node != TEMPLATE1_OID)
        .collect();
    // Shared catalogs first (pg_authid, pg_database: every login), then the
    // smaller databases' files first as the budget allows.
    catalogs.sort_by_key(|s| (s.tag.rel.db_node != 0, s.blocks));
    for segment in catalogs {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment.path)?;
        let size = file.metadata()?.len();
        let limit = u64::from(segment.blocks).min(size / PAGE) as u32;
        let holes = holes_in(file.as_fd(), 0, limit)?;
        let pages: u64 = holes.iter().map(|&(a, b)| u64::from(b - a)).sum();
        if pages == 0 {
            continue;
        }
        if pages > budget {
            break;
        }
        budget -= pages;
        let index = files.len();
        files.push(file);
        for (start, end) in holes {
            let mut page = start;
            while page < end {
                let count = (end - page).min(MAX_RANGE_PAGES);
                runs.push((index, segment.tag, segment.first_blkno, page, count));
                page += count;
            }
        }
    }
    let client = client.clone();
    let fetched = runtime.block_on(async move {
        let limit = Arc::new(tokio::sync::Semaphore::new(PREFILL_IN_FLIGHT));
        let mut tasks = tokio::task::JoinSet::new();
        for (index, tag, first, page, count) in runs {
            let (client, limit) = (client.clone(), limit.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let pages = client.get_pages(tag, first + page, count, lsn).await;
                (index, page, pages)
            });
        }
        let mut out = Vec::new();
        while let Some(done) = tasks.join_next().await {
            out.extend(done.ok());
        }
        out
    });
    let mut written = 0;
    for (index, page, pages) in fetched {
        match pages {
            Ok(pages) => {
                let mut buf = Vec::with_capacity(pages.len() * BLCKSZ);
                for p in &pages {
                    buf.extend_from_slice(p);
                }
                write_all_at(files[index].as_fd(), &buf, u64::from(page) * PAGE)?;
                written += pages.len() as u64;
            }
            // The pages stay holes: the marks fetch them again on access.
            Err(error) => tracing::warn!(%error, page, "catalog prefill fetch failed"),
        }
    }
    Ok(written)
}

/// Why a fill failed; the access is then denied with EIO.
#[derive(Debug, thiserror::Error)]
pub enum FillError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("fetching pages: {0}")]
    Fetch(#[from] page_service::client::ClientError),
}

struct SegmentState {
    segment: Segment,
    /// Where the previous access ended (page), to detect sequential scans.
    next_expected: u32,
    window: u32,
}

/// What the event thread and the background thread share.
pub struct Filler {
    pub group: Arc<Group>,
    client: PageClient,
    lsn: Lsn,
    runtime: tokio::runtime::Handle,
    /// By (device, inode): the event fd says which file it is.
    segments: Mutex<HashMap<(u64, u64), SegmentState>>,
    pub pages_fetched: AtomicU64,
    /// Fetches that failed (each denied an access or left a range to the
    /// background filler unfilled).
    pub fetch_failures: AtomicU64,
    /// The last failed fetch's message (the page service's, naming the
    /// layer file and key on corruption), for the status file.
    last_error: Mutex<Option<String>>,
    /// Segments the background filler could not complete: they stay marked
    /// (every access of a hole still fetches, and fails with EIO while the
    /// page cannot be read) but the background filler no longer retries them.
    given_up: Mutex<HashSet<PathBuf>>,
}

impl Filler {
    /// Marks every segment that still has holes; returns the filler and
    /// the number of segments marked.
    pub fn new(
        group: Arc<Group>,
        client: PageClient,
        lsn: Lsn,
        runtime: tokio::runtime::Handle,
        segments: Vec<Segment>,
    ) -> std::io::Result<(Filler, usize)> {
        let mut map = HashMap::new();
        for segment in segments {
            let file = std::fs::File::open(&segment.path)?;
            let meta = file.metadata()?;
            if first_hole(file.as_fd(), 0, meta.len())?.is_none() {
                continue; // filled before a restart: costs nothing more
            }
            group.add(&segment.path)?;
            map.insert(
                (meta.dev(), meta.ino()),
                SegmentState {
                    segment,
                    next_expected: u32::MAX,
                    window: 0,
                },
            );
        }
        let marked = map.len();
        Ok((
            Filler {
                group,
                client,
                lsn,
                runtime,
                segments: Mutex::new(map),
                pages_fetched: AtomicU64::new(0),
                fetch_failures: AtomicU64::new(0),
                last_error: Mutex::new(None),
                given_up: Mutex::new(HashSet::new()),
            },
            marked,
        ))
    }

    /// The segments still marked, in background fill order.
    pub fn remaining(&self) -> Vec<Segment> {
        let mut remaining: Vec<Segment> = self
            .segments
            .lock()
            .values()
            .map(|s| s.segment.clone())
            .collect();
        remaining.sort_by_key(Segment::fill_rank);
        remaining
    }

    /// The last failed fetch's message, if any fetch failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    fn record_failure(&self, error: &FillError) {
        self.fetch_failures.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock() = Some(error.to_string());
    }

    /// Serves events until the group fd fails (then the caller exits and
    /// the guard stops Postgres).
    pub fn event_loop(&self) -> std::io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        let own = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        loop {
            let mut events = self.group.read_events(&mut buf)?;
            // Postgres's accesses first: a query waits on them, while the
            // background filler's own reads (this process) can wait.
            events.sort_by_key(|event| event.pid == own);
            for event in events {
                match self.fill_for(&event) {
                    Ok(()) => self.group.allow(&event)?,
                    Err(error) => {
                        tracing::error!(%error, pid = event.pid, "fill failed; denying the access with EIO");
                        self.record_failure(&error);
                        self.group.deny(&event)?;
                    }
                }
            }
        }
    }

    /// Writes the missing pages the event's range (plus read-ahead) covers.
    fn fill_for(&self, event: &Event) -> Result<(), FillError> {
        let meta = nix::sys::stat::fstat(event.fd.as_raw_fd()).map_err(std::io::Error::from)?;
        let key = (meta.st_dev, meta.st_ino);
        let size = meta.st_size.max(0) as u64;
        let (segment, from, requested_to, to) = {
            let mut map = self.segments.lock();
            let Some(state) = map.get_mut(&key) else {
                return Ok(()); // not a segment of ours (any more)
            };
            let (offset, count) = event.range.unwrap_or((0, size));
            let from = (offset / PAGE) as u32;
            let to = offset
                .saturating_add(count)
                .div_ceil(PAGE)
                .min(u64::from(u32::MAX)) as u32;
            // Sequential access doubles the read-ahead window.
            state.window = if from == state.next_expected {
                (state.window * 2).clamp(8, MAX_READAHEAD_PAGES)
            } else {
                0
            };
            state.next_expected = to;
            (
                state.segment.clone(),
                from,
                to,
                to.saturating_add(state.window),
            )
        };
        // Never fill past the segment's stored size nor the file's current
        // size (Postgres may have truncated it: those pages are gone).
        let limit = u64::from(segment.blocks).min(size / PAGE) as u32;
        let to = to.min(limit);
        if from >= to {
            return Ok(());
        }
        let holes = holes_in(event.fd.as_fd(), from, to)?;
        self.fetch_and_write(event.fd.as_fd(), &segment, &holes, requested_to)
    }

    /// Fetches the hole pages (runs of up to MAX_RANGE_PAGES, pipelined)
    /// and writes the runs that arrived through the event fd, which raises
    /// no events. A run that failed stays a hole (never zeros); it fails
    /// the access only when it overlaps the pages the access asked for
    /// (below `requested_to`): a bad page in the read-ahead window must not
    /// fail a read of good pages.
    fn fetch_and_write(
        &self,
        fd: BorrowedFd<'_>,
        segment: &Segment,
        holes: &[(u32, u32)],
        requested_to: u32,
    ) -> Result<(), FillError> {
        let mut runs = Vec::new();
        for &(start, end) in holes {
            let mut page = start;
            while page < end {
                let count = (end - page).min(MAX_RANGE_PAGES);
                runs.push((page, count));
                page += count;
            }
        }
        if runs.is_empty() {
            return Ok(());
        }
        let client = self.client.clone();
        let (tag, first, lsn) = (segment.tag, segment.first_blkno, self.lsn);
        let fetched = self.runtime.block_on(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for (page, count) in runs {
                let client = client.clone();
                tasks.spawn(async move {
                    let pages = client.get_pages(tag, first + page, count, lsn).await;
                    (page, count, pages)
                });
            }
            let mut out = Vec::new();
            while let Some(done) = tasks.join_next().await {
                out.push(done);
            }
            out
        });
        let mut failure = None;
        for done in fetched {
            let (page, count, pages) = match done {
                Ok(run) => run,
                Err(e) => {
                    failure = Some(FillError::Io(std::io::Error::other(e)));
                    continue;
                }
            };
            let pages = match pages {
                Ok(pages) => pages,
                Err(e) => {
                    let error = FillError::Fetch(e);
                    if page < requested_to {
                        failure = Some(error);
                    } else {
                        // Only read-ahead: the access itself can proceed.
                        tracing::warn!(%error, page, count, "read-ahead fetch failed");
                        self.record_failure(&error);
                    }
                    continue;
                }
            };
            let mut buf = Vec::with_capacity(pages.len() * BLCKSZ);
            for p in &pages {
                buf.extend_from_slice(p);
            }
            write_all_at(fd, &buf, u64::from(page) * PAGE)?;
            self.pages_fetched
                .fetch_add(pages.len() as u64, Ordering::Relaxed);
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Background: reads every remaining hole (raising events the event
    /// thread answers), unmarking each segment once it has none. A segment
    /// with a page that cannot be fetched stays marked (its holes never
    /// read as zeros) and is not retried; the rest is filled.
    pub fn background(&self) {
        loop {
            let remaining: Vec<Segment> = {
                let given_up = self.given_up.lock();
                self.remaining()
                    .into_iter()
                    .filter(|s| !given_up.contains(&s.path))
                    .collect()
            };
            if remaining.is_empty() {
                let left = self.given_up.lock().len();
                if left == 0 {
                    tracing::info!("every relation segment is filled");
                } else {
                    tracing::error!(
                        segments = left,
                        last_error = self.last_error().as_deref().unwrap_or(""),
                        "background fill done; some pages could not be fetched and stay unfilled (reads of them fail with EIO)"
                    );
                }
                return;
            }
            for segment in remaining {
                if let Err(error) = self.complete(&segment) {
                    tracing::error!(%error, path = %segment.path.display(), "background fill could not complete the segment; it stays marked");
                    self.given_up.lock().insert(segment.path.clone());
                }
            }
        }
    }

    /// Reads every hole of `segment`; a range whose read fails (the event
    /// thread denied it) is skipped so the rest still fills. Unmarks the
    /// segment only when no hole is left.
    fn complete(&self, segment: &Segment) -> std::io::Result<()> {
        let file = std::fs::File::open(&segment.path)?;
        let meta = file.metadata()?;
        let mut buf = vec![0u8; MAX_RANGE_PAGES as usize * BLCKSZ];
        let mut pos = 0;
        let mut failed = None;
        while let Some(hole) = first_hole(file.as_fd(), pos, meta.len())? {
            let len = (meta.len() - hole).min(buf.len() as u64) as usize;
            // The read raises a pre-access event; the event thread fills.
            match nix::sys::uio::pread(&file, &mut buf[..len], hole as i64) {
                Ok(0) => break,
                Ok(n) => pos = hole + n as u64,
                Err(e) => {
                    failed = Some(std::io::Error::from(e));
                    // The event thread wrote the runs it could fetch; find
                    // the hole that is left and step one page past it.
                    let bad = first_hole(file.as_fd(), hole, meta.len())?.unwrap_or(hole);
                    pos = bad + PAGE;
                }
            }
        }
        if let Some(error) = failed {
            return Err(error);
        }
        // Unmarking with a hole left would let it read as zeros.
        if let Some(hole) = first_hole(file.as_fd(), 0, meta.len())? {
            return Err(std::io::Error::other(format!(
                "a hole is left at byte {hole} after reading the segment"
            )));
        }
        self.group.remove(&segment.path)?;
        self.forget(segment);
        Ok(())
    }

    fn forget(&self, segment: &Segment) {
        self.segments
            .lock()
            .retain(|_, s| s.segment.path != segment.path);
    }
}

fn write_all_at(fd: BorrowedFd<'_>, mut buf: &[u8], mut offset: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = nix::sys::uio::pwrite(fd, buf, offset as i64).map_err(std::io::Error::from)?;
        if n == 0 {
            return Err(std::io::Error::other("pwrite wrote nothing"));
        }
        buf = &buf[n..];
        offset += n as u64;
    }
    Ok(())
}

fn seek(
    fd: BorrowedFd<'_>,
    offset: u64,
    whence: nix::unistd::Whence,
) -> std::io::Result<Option<u64>> {
    match nix::unistd::lseek(fd.as_raw_fd(), offset as i64, whence) {
        Ok(at) => Ok(Some(at as u64)),
        Err(nix::errno::Errno::ENXIO) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The first hole at or after `from` and before `size`, page-aligned.
pub fn first_hole(fd: BorrowedFd<'_>, from: u64, size: u64) -> std::io::Result<Option<u64>> {
    let Some(hole) = seek(fd, from, nix::unistd::Whence::SeekHole)? else {
        return Ok(None);
    };
    let hole = hole / PAGE * PAGE;
    Ok((hole < size).then_some(hole))
}

/// Page runs `[start, end)` within `[from, to)` that hold a hole (even a
/// partial one).
pub fn holes_in(fd: BorrowedFd<'_>, from: u32, to: u32) -> std::io::Result<Vec<(u32, u32)>> {
    let (start, end) = (u64::from(from) * PAGE, u64::from(to) * PAGE);
    let mut holes = Vec::new();
    let mut pos = start;
    while pos < end {
        let Some(hole) = seek(fd, pos, nix::unistd::Whence::SeekHole)? else {
            break;
        };
        if hole >= end {
            break;
        }
        let data = seek(fd, hole, nix::unistd::Whence::SeekData)?.unwrap_or(u64::MAX);
        // A page with any hole in it is refilled whole: a write cut short
        // at a 4 KiB block (the filler killed mid-pwrite) leaves half a
        // page, whose hole must never be read as zeros. (A torn page of
        // Postgres's own is restored from its full-page image on redo.)
        let (first, last) = (hole / PAGE, data.min(end).div_ceil(PAGE).min(u64::from(to)));
        if first < last {
            holes.push((first as u32, last as u32));
        }
        if data == u64::MAX {
            break;
        }
        pos = data;
    }
    Ok(holes)
}
