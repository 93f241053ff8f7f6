//! Self-fencing that does not depend on the daemon being alive.
//!
//! The daemon starts a watchdog: this same binary run as `qluster --watchdog PG_DATA_DIR`,
//! a separate process whose standard input is a pipe from the daemon. The daemon writes,
//! every [`LINK_INTERVAL`], the end of its write lease as a `CLOCK_MONOTONIC` time in
//! nanoseconds (0: no lease). The watchdog
//! - kills the postmaster and all its children (SIGKILL) as soon as the pipe reaches end
//!   of file: the daemon is gone, however it died (any signal, crash, OOM kill), since
//!   the kernel closes its end of the pipe;
//! - kills a *primary* postmaster (running without `standby.signal`) as soon as the last
//!   lease it was told of has ended: a daemon that is frozen (SIGSTOP), starved or cut
//!   off stops extending it, and the watchdog acts on the deadline it already has.
//!
//! The clock is shared by both processes (one kernel), so the deadline the watchdog
//! enforces is exactly the one the daemon computed; nothing depends on when the
//! watchdog reads the pipe. The watchdog blocks SIGTERM, SIGINT and SIGHUP, so a signal
//! sent to the daemon's whole process group cannot take both down and leave Postgres
//! running; it exits only after fencing, at end of file.
//!
//! The daemon side ([`spawn_link`]) also fences Postgres itself and starts a new
//! watchdog if the watchdog dies or its pipe fails.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::postgres::{kill_postmaster_tree, postmaster_of, primary_running};

/// How often the daemon renews the watchdog's deadline.
const LINK_INTERVAL: Duration = Duration::from_millis(10);
/// How often the watchdog checks the deadline.
const CHECK_INTERVAL: Duration = Duration::from_millis(5);
/// A stall detector beat later than this counts as a pause.
const PAUSE_MIN: Duration = Duration::from_millis(40);
/// How long after a pause (beyond its own length) messages may still be stale.
const PAUSE_AFTERMATH: Duration = Duration::from_millis(100);

/// `CLOCK_MONOTONIC` now, in nanoseconds; `u64::MAX` if the clock cannot be read, so a
/// failure reads as "every lease has ended".
pub fn mono_now_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => (t.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec() as u64),
        Err(_) => u64::MAX,
    }
}

/// The end of this node's write lease, shared by the driver (which sets it), the fence,
/// the supervisor and the watchdog link.
#[derive(Debug, Default)]
pub struct Lease {
    until_ns: AtomicU64,
    /// When a message from the current Raft leader last arrived (follower side).
    leader_contact_ns: AtomicU64,
    /// Last beat of the stall detector thread ([`spawn_stall_detector`]).
    beat_ns: AtomicU64,
    /// When the stall detector last found the process had been paused, and for how long.
    stall_ns: AtomicU64,
    stall_len_ns: AtomicU64,
}

impl Lease {
    /// Sets the end of the lease (`None`: no lease).
    pub fn set(&self, until: Option<Instant>) {
        let ns = match until {
            None => 0,
            Some(t) => {
                let now = Instant::now();
                let mono = mono_now_ns();
                if t >= now {
                    mono.saturating_add((t - now).as_nanos() as u64)
                } else {
                    mono.saturating_sub((now - t).as_nanos() as u64)
                }
            }
        };
        self.until_ns.store(ns, Ordering::SeqCst);
    }

    /// End of the lease in `CLOCK_MONOTONIC` nanoseconds (0: none).
    pub fn until_ns(&self) -> u64 {
        self.until_ns.load(Ordering::SeqCst)
    }

    /// How much older than its arrival time a peer message processed now may really be,
    /// because this process was paused (SIGSTOP, starvation): messages that queued up
    /// meanwhile are read only after it resumes. While the stall detector has not beaten
    /// for a while the process may just be resuming: the silence counts. After a pause
    /// it found, its length counts for as long again plus [`PAUSE_AFTERMATH`], long
    /// enough to read whatever queued up. Heard times are moved back by this much, so a
    /// stale answer never extends the lease; a short pause costs no lease.
    pub fn pause_discount(&self) -> Duration {
        let now = mono_now_ns();
        let silent = now.saturating_sub(self.beat_ns.load(Ordering::SeqCst));
        if silent > PAUSE_MIN.as_nanos() as u64 {
            return Duration::from_nanos(silent);
        }
        let resumed = self.stall_ns.load(Ordering::SeqCst);
        let length = self.stall_len_ns.load(Ordering::SeqCst);
        let aftermath = length.saturating_add(PAUSE_AFTERMATH.as_nanos() as u64);
        if resumed > 0 && now.saturating_sub(resumed) < aftermath {
            Duration::from_nanos(length)
        } else {
            Duration::ZERO
        }
    }

    /// Notes that a message from the current leader arrived now.
    pub fn note_leader_contact(&self) {
        self.leader_contact_ns
            .store(mono_now_ns(), Ordering::SeqCst);
    }

    /// Whether the current leader was heard from within `within`.
    pub fn leader_heard_within(&self, within: Duration) -> bool {
        let at = self.leader_contact_ns.load(Ordering::SeqCst);
        at > 0 && mono_now_ns().saturating_sub(at) < within.as_nanos() as u64
    }

    /// Whether the local database may accept writes now.
    pub fn may_write(&self) -> bool {
        mono_now_ns() < self.until_ns()
    }
}

/// Starts the stall detector: a plain thread that beats every [`LINK_INTERVAL`] and
/// records when it finds that it (and so the whole process) was not scheduled for more
/// than [`PAUSE_MIN`] — SIGSTOP/SIGCONT, or starvation — and for how long (see
/// [`Lease::pause_discount`]). Being a thread of its own, slow work in the driver (an
/// fsync) is not taken for a pause: messages carry their arrival time.
pub fn spawn_stall_detector(lease: Arc<Lease>) -> std::io::Result<()> {
    lease.beat_ns.store(mono_now_ns(), Ordering::SeqCst);
    std::thread::Builder::new()
        .name("stall-detector".into())
        .spawn(move || loop {
            std::thread::sleep(LINK_INTERVAL);
            let now = mono_now_ns();
            let last = lease.beat_ns.load(Ordering::SeqCst);
            let paused = now.saturating_sub(last);
            if paused > PAUSE_MIN.as_nanos() as u64 {
                lease.stall_len_ns.store(paused, Ordering::SeqCst);
                lease.stall_ns.store(now, Ordering::SeqCst);
                if paused > 4 * PAUSE_MIN.as_nanos() as u64 {
                    tracing::warn!("process paused for {:?}", Duration::from_nanos(paused));
                }
            }
            lease.beat_ns.store(now, Ordering::SeqCst);
        })?;
    Ok(())
}

/// Daemon side: starts the watchdog and keeps its deadline current from a plain thread
/// (not a runtime task, so a busy runtime cannot delay renewals — a late renewal only
/// fences early, which is safe, but needlessly).
pub fn spawn_link(data_dir: PathBuf, lease: Arc<Lease>) -> std::io::Result<()> {
    let mut link = Link::start(&data_dir)?;
    std::thread::Builder::new()
        .name("watchdog-link".into())
        .spawn(move || loop {
            if let Err(e) = link.renew(lease.until_ns()) {
                tracing::error!("watchdog lost ({e}); fencing postgres and starting a new one");
                if let Some(pid) = postmaster_of(&data_dir) {
                    kill_postmaster_tree(pid);
                }
                link.stop();
                std::thread::sleep(Duration::from_millis(100));
                match Link::start(&data_dir) {
                    Ok(l) => link = l,
                    Err(e) => tracing::error!("cannot start the watchdog: {e}"),
                }
            }
            std::thread::sleep(LINK_INTERVAL);
        })?;
    Ok(())
}

/// One running watchdog and the write end of its pipe.
struct Link {
    child: Option<Child>,
    pipe: Option<std::fs::File>,
}

impl Link {
    fn start(data_dir: &Path) -> std::io::Result<Link> {
        // CLOEXEC: no other child (pg_ctl, postgres) may hold the write end, or the
        // watchdog would never see end of file when the daemon dies.
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let child = Command::new(std::env::current_exe()?)
            .arg("--watchdog")
            .arg(data_dir)
            .stdin(Stdio::from(read))
            .stdout(Stdio::null())
            .spawn()?;
        Ok(Link {
            child: Some(child),
            pipe: Some(std::fs::File::from(write)),
        })
    }

    fn renew(&mut self, until_ns: u64) -> std::io::Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                return Err(std::io::Error::other(format!("watchdog exited: {status}")));
            }
        }
        let pipe = self
            .pipe
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no watchdog"))?;
        pipe.write_all(format!("{until_ns}\n").as_bytes())
    }

    fn stop(&mut self) {
        self.pipe = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Watchdog side: runs until the daemon's end of the pipe closes, then fences and exits.
pub fn run_watchdog(data_dir: &Path) -> std::io::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut blocked = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        blocked.add(s);
    }
    blocked.thread_block().map_err(std::io::Error::from)?;
    let until = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicBool::new(false));
    {
        let (until, closed) = (until.clone(), closed.clone());
        std::thread::Builder::new()
            .name("watchdog-read".into())
            .spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    // A garbled line ends every lease: fail closed.
                    until.store(line.trim().parse().unwrap_or(0), Ordering::SeqCst);
                }
                closed.store(true, Ordering::SeqCst);
            })?;
    }
    loop {
        if closed.load(Ordering::SeqCst) {
            if let Some(pid) = postmaster_of(data_dir) {
                kill_postmaster_tree(pid);
                tracing::warn!("watchdog: the daemon is gone; killed postmaster {pid}");
            }
            return Ok(());
        }
        if mono_now_ns() >= until.load(Ordering::SeqCst) {
            if let Some(pid) = primary_running(data_dir) {
                kill_postmaster_tree(pid);
                tracing::warn!("watchdog: write lease ended; killed primary postmaster {pid}");
            }
        }
        std::thread::sleep(CHECK_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_in_the_future_allows_writes_until_it_ends() {
        let lease = Lease::default();
        assert!(!lease.may_write(), "no lease at first");
        lease.set(Some(Instant::now() + Duration::from_millis(200)));
        assert!(lease.may_write());
        lease.set(Some(Instant::now() - Duration::from_millis(1)));
        assert!(!lease.may_write());
        lease.set(None);
        assert_eq!(lease.until_ns(), 0);
    }

    #[test]
    fn a_pause_moves_heard_times_back_by_its_length() {
        let lease = Lease::default();
        lease.beat_ns.store(mono_now_ns(), Ordering::SeqCst);
        assert_eq!(lease.pause_discount(), Duration::ZERO);
        // A pause of 300 ms that just ended: messages now may be that old.
        let now = mono_now_ns();
        lease.stall_len_ns.store(300_000_000, Ordering::SeqCst);
        lease.stall_ns.store(now, Ordering::SeqCst);
        assert_eq!(lease.pause_discount(), Duration::from_millis(300));
        // Long after it, nothing.
        lease.stall_ns.store(now - 500_000_000, Ordering::SeqCst);
        assert_eq!(lease.pause_discount(), Duration::ZERO);
        // No beat for 200 ms: maybe resuming right now.
        lease
            .beat_ns
            .store(mono_now_ns() - 200_000_000, Ordering::SeqCst);
        assert!(lease.pause_discount() >= Duration::from_millis(200));
    }
}
