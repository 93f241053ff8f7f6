//! The fill process of a lazy endpoint: stock PostgreSQL 15 runs on a data
//! directory whose relation segments are *sparse* files of the right size
//! (see `datadir::lazy`), and this process writes each missing page the
//! moment before Postgres first touches it, fetched with GetPage@LSN from
//! the page service (`page_service::client`).
//!
//! # Mechanism: fanotify pre-content events
//!
//! A `FAN_CLASS_PRE_CONTENT` group marks every segment that still has holes
//! with `FAN_PRE_ACCESS` (kernel ≥ 6.14; measured on this machine's 6.18).
//! Each read or write of a marked file blocks until the filler answers the
//! event, which carries the byte range. The filler writes the pages of the
//! range that are still holes (`SEEK_HOLE`/`SEEK_DATA`), plus a read-ahead
//! window that doubles while access is sequential (holes get no OS
//! read-ahead), through the event's fd — opened by the kernel without
//! notification, so the filler's own writes raise no events — then allows
//! the access. A fetch that fails is answered `FAN_DENY` with `EIO`: the
//! query fails; it never sees a hole as a page. (Only the pages the access
//! asked for count: a bad page in the read-ahead window stays a hole and
//! the access proceeds.) The failure's message — on a corrupt layer the
//! page service's, naming the layer file and key — is logged and kept in
//! the status file (`last_error`). A segment the background filler cannot
//! complete stays marked, so its remaining holes keep failing reads rather
//! than reading as zeros. FUSE (the other option
//! measured) is not built: with fanotify the steady state costs nothing
//! (filled segments are unmarked, hot reads never leave the kernel), and
//! the kernel here has pre-content events. Without them `Group::new` fails
//! and the caller falls back to a full data directory.
//!
//! # Never overwriting a page Postgres wrote
//!
//! Only the single event thread ever writes into a segment, and only pages
//! that are holes at that moment. A Postgres write into a marked file is
//! itself a pre-access event: it waits until the event thread has filled
//! the range, then overwrites it — so the event thread can never write
//! after Postgres. The background filler does not write at all: it
//! *reads* the remaining holes through an ordinary fd, which raises events
//! the event thread serves like any other, then unmarks the segment once
//! `SEEK_HOLE` finds none. Fills never go past the segment's stored size
//! nor the file's current size (Postgres may have truncated it).
//!
//! # Never a zero page that is not one: supervision
//!
//! If the filler died with its group closed, the marks would vanish and
//! holes would read as zeros, which Postgres takes for empty pages — silent
//! wrong answers. So the filler forks a small **guard** process that holds
//! a duplicate of the group fd (the group lives while any fd does, so
//! reads of holes then *block* instead of returning zeros) and starts the
//! postmaster as its child, being a child subreaper. The guard watches the
//! filler through a pipe whose only write end the filler holds: when the
//! filler dies (however — SIGKILL included), the pipe reads EOF and the
//! guard SIGSTOPs the postmaster, SIGKILLs its children and it, then kills
//! and reaps every orphan until it has no child left (backends blocked on a
//! pending event are killable), and only then exits, releasing the last
//! group fd: pending events are then allowed, but no process is left to
//! see the hole. (A process group is not enough — measured: every
//! PostgreSQL child calls `setsid()`, so killing the postmaster's group
//! left a backend that then read holes as empty pages and returned a
//! wrong count.) If the guard dies instead, the
//! filler still serves every event, sees its child gone, kills the
//! postmaster's process group itself (from `postmaster.pid`) and exits.
//! When Postgres stops normally the guard exits and the filler follows.
//!
//! # Restart
//!
//! What is filled is what is not a hole: a restarted endpoint marks only
//! segments that still have holes, and resumes.
//!
//! Modules: [`fanotify`] (the system calls), [`filler`] (event loop,
//! read-ahead, background fill), [`supervise`] (filler/guard/Postgres
//! processes and the status file).

pub mod fanotify;
pub mod filler;
pub mod supervise;

/// Logs to stderr (`RUST_LOG`, default `info`); for the fill process's main.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
}
