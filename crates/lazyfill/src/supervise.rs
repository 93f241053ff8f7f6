//! The processes of a lazy endpoint: the filler (this binary's `run`), the
//! guard (`guard`, forked by the filler, holding a duplicate of the
//! fanotify group fd) and the postmaster (the guard's child; the guard is
//! a child subreaper, so every orphaned Postgres process becomes its child). See the crate docs for why each exists.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use page_service::client::{PageClient, Security};
use page_service::pagestream::RelTag;
use postgres_wal::record::{ForkNumber, RelFileNode};
use postgres_wal::Lsn;
use serde::{Deserialize, Serialize};

use crate::fanotify::Group;
use crate::filler::{Filler, Segment};

/// Most catalog pages written before Postgres starts (64 MiB): a fresh
/// database's catalogs are ~1,000 pages, so this covers dozens of databases
/// and bounds the start's cost however many there are.
const PREFILL_MAX_PAGES: u64 = 8192;

/// A relation segment as the config file lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SegmentConfig {
    /// Relative to `pgdata`.
    pub path: String,
    pub spc: u32,
    pub db: u32,
    pub rel: u32,
    /// 0 main, 1 fsm, 2 vm, 3 init.
    pub fork: u8,
    pub first_blkno: u32,
    pub blocks: u32,
}

/// What `lazyfill run <config.json>` reads.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FillConfig {
    /// Page service `host:port`.
    pub pageserver: String,
    /// CA certificate (PEM) to verify the page service's TLS certificate
    /// against; absent: plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// JWT (scope tenant) sent as the page service password; absent: none.
    /// The file holding it is written mode 0600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub tenant: String,
    pub timeline: String,
    /// The LSN pages are read at (the lazy base backup's).
    pub lsn: String,
    pub pgdata: PathBuf,
    pub segments: Vec<SegmentConfig>,
    /// Where progress is written (JSON, replaced atomically).
    pub status_file: PathBuf,
    /// argv of the postmaster (run in the foreground).
    pub postgres: Vec<String>,
    pub postgres_uid: u32,
    pub postgres_gid: u32,
    /// Postgres's stdout and stderr.
    pub postgres_log: PathBuf,
    /// Complete the segments in the background (off: only what Postgres
    /// touches is fetched; tests use it to keep holes around).
    #[serde(default = "yes")]
    pub background_fill: bool,
}

fn yes() -> bool {
    true
}

/// Progress, as `sediment endpoint list` shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FillStatus {
    pub mechanism: String,
    pub filler_pid: u32,
    pub segments_total: usize,
    pub segments_remaining: usize,
    pub pages_total: u64,
    pub pages_remaining: u64,
    pub pages_fetched: u64,
    /// Fetches that failed; each failed a read with EIO or left pages
    /// unfilled (never zeros).
    #[serde(default)]
    pub fetch_failures: u64,
    /// The last failed fetch's message (on corruption the page service's
    /// names the layer file and key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

fn fork_from(b: u8) -> anyhow::Result<ForkNumber> {
    Ok(match b {
        0 => ForkNumber::Main,
        1 => ForkNumber::Fsm,
        2 => ForkNumber::VisibilityMap,
        3 => ForkNumber::Init,
        other => anyhow::bail!("fork number {other} in the config"),
    })
}

fn segments(config: &FillConfig) -> anyhow::Result<Vec<Segment>> {
    config
        .segments
        .iter()
        .map(|s| {
            Ok(Segment {
                path: datadir::lazy::checked_join(&config.pgdata, &s.path)?,
                tag: RelTag {
                    rel: RelFileNode {
                        spc_node: s.spc,
                        db_node: s.db,
                        rel_node: s.rel,
                    },
                    fork: fork_from(s.fork)?,
                },
                first_blkno: s.first_blkno,
                blocks: s.blocks,
            })
        })
        .collect()
}

/// The filler process: marks, forks the guard (which starts Postgres),
/// serves events and fills in the background until the guard exits.
/// Returns the exit code.
pub fn run_filler(config: &FillConfig, guard_command: &[String]) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let lsn: Lsn = config.lsn.parse().context("lsn")?;
    let security = Security::new(config.ca_file.as_deref(), config.token.clone())?;
    let client = runtime
        .block_on(PageClient::connect_secured(
            &config.pageserver,
            config.tenant.parse().context("tenant")?,
            config.timeline.parse().context("timeline")?,
            &security,
        ))
        .with_context(|| format!("connecting to the page service at {}", config.pageserver))?;
    let group = Arc::new(Group::new().context("fanotify pre-content events unavailable")?);
    // If the guard dies, its Postgres processes become ours to kill.
    nix::sys::prctl::set_child_subreaper(true)?;
    let all = segments(config)?;
    let begun = std::time::Instant::now();
    let prefilled =
        crate::filler::prefill_catalogs(&client, runtime.handle(), lsn, &all, PREFILL_MAX_PAGES)?;
    tracing::info!(
        pages = prefilled,
        ms = begun.elapsed().as_millis() as u64,
        "catalogs prefilled"
    );
    let pages_total: u64 = all.iter().map(|s| u64::from(s.blocks)).sum();
    let segments_total = all.len();
    let (filler, marked) = Filler::new(group.clone(), client, lsn, runtime.handle().clone(), all)?;
    filler.pages_fetched.fetch_add(prefilled, Ordering::Relaxed);
    tracing::info!(
        mechanism = "fanotify",
        marked,
        segments_total,
        "lazy fill starting"
    );
    let filler = Arc::new(filler);
    // The guard inherits a duplicate of the group fd and the read end of a
    // pipe whose write end only this process holds.
    let (pipe_r, pipe_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let inherit_pipe = nix::unistd::dup(pipe_r.as_raw_fd())?;
    let inherit_group = nix::unistd::dup(group.raw_fd())?;
    let (program, prefix) = guard_command.split_first().context("no guard command")?;
    let spawned = Command::new(program)
        .args(prefix)
        .arg(inherit_group.to_string())
        .arg(inherit_pipe.to_string())
        .arg(config.postgres_uid.to_string())
        .arg(config.postgres_gid.to_string())
        .arg(&config.postgres_log)
        .arg("--")
        .args(&config.postgres)
        .spawn();
    let _ = nix::unistd::close(inherit_pipe);
    let _ = nix::unistd::close(inherit_group);
    drop(pipe_r);
    let mut guard = spawned.context("starting the guard")?;
    let events = filler.clone();
    std::thread::spawn(move || {
        if let Err(error) = events.event_loop() {
            tracing::error!(%error, "fanotify event loop failed; exiting so the guard stops Postgres");
            std::process::exit(3);
        }
    });
    if config.background_fill {
        let background = filler.clone();
        std::thread::spawn(move || background.background());
    }
    let status = filler.clone();
    let (status_file, pages) = (config.status_file.clone(), pages_total);
    std::thread::spawn(move || loop {
        write_status(&status_file, &status, segments_total, pages);
        std::thread::sleep(Duration::from_millis(500));
    });
    let exit = guard.wait()?;
    write_status(&config.status_file, &filler, segments_total, pages_total);
    drop(pipe_w);
    if exit.code().is_none() {
        // The guard was killed: Postgres must not outlive supervision.
        kill_orphaned_postgres(&config.pgdata);
    }
    Ok(exit.code().unwrap_or(1))
}

fn write_status(path: &Path, filler: &Filler, segments_total: usize, pages_total: u64) {
    let remaining = filler.remaining();
    let status = FillStatus {
        mechanism: "fanotify".into(),
        filler_pid: std::process::id(),
        segments_total,
        segments_remaining: remaining.len(),
        pages_total,
        pages_remaining: remaining_pages(&remaining),
        pages_fetched: filler.pages_fetched.load(Ordering::Relaxed),
        fetch_failures: filler.fetch_failures.load(Ordering::Relaxed),
        last_error: filler.last_error(),
    };
    let tmp = path.with_extension("tmp");
    if let Ok(text) = serde_json::to_vec(&status) {
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
}

/// Pages still holes in the segments not yet complete.
fn remaining_pages(segments: &[Segment]) -> u64 {
    let mut pages = 0;
    for segment in segments {
        let Ok(file) = std::fs::File::open(&segment.path) else {
            continue;
        };
        let size =
            u64::from(segment.blocks).min(file.metadata().map(|m| m.len()).unwrap_or(0) / 8192);
        if let Ok(holes) = crate::filler::holes_in(file.as_fd(), 0, size as u32) {
            pages += holes.iter().map(|(a, b)| u64::from(b - a)).sum::<u64>();
        }
    }
    pages
}

/// The guard died: its Postgres processes were reparented to us (a child
/// subreaper); kill them all while we still serve events.
fn kill_orphaned_postgres(pgdata: &Path) {
    let pid = std::fs::read_to_string(pgdata.join("postmaster.pid"))
        .ok()
        .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok())
        .filter(|pid| *pid > 1);
    if let Some(pid) = pid {
        kill_all_postgres(Pid::from_raw(pid));
    }
}

/// What the guard is told on its command line.
pub struct GuardArgs {
    pub group_fd: RawFd,
    pub pipe_fd: RawFd,
    pub uid: u32,
    pub gid: u32,
    pub log: PathBuf,
    pub postgres: Vec<String>,
}

/// The guard: starts the postmaster in its own process group and, if the
/// filler dies, SIGKILLs that group and waits for it to be empty before
/// exiting (releasing the last group fd). Returns the exit code.
pub fn run_guard(args: GuardArgs) -> anyhow::Result<i32> {
    // SAFETY: both fds were opened by our parent for us and passed on the
    // command line; nothing else in this process owns them.
    let (group, pipe) = unsafe {
        (
            OwnedFd::from_raw_fd(args.group_fd),
            OwnedFd::from_raw_fd(args.pipe_fd),
        )
    };
    for fd in [&group, &pipe] {
        nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
    }
    let _group = Group::from_fd(group);
    // Orphaned Postgres processes become our children, so we can make sure
    // they are all gone before the group fd closes.
    nix::sys::prctl::set_child_subreaper(true)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log)
        .with_context(|| format!("{}", args.log.display()))?;
    let (program, rest) = args.postgres.split_first().context("no postgres command")?;
    let mut postmaster = Command::new(program)
        .args(rest)
        .uid(args.uid)
        .gid(args.gid)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let postmaster_pid = Pid::from_raw(postmaster.id() as i32);
    let mut pipe = std::fs::File::from(pipe);
    loop {
        if let Some(status) = postmaster.try_wait()? {
            return Ok(status.code().unwrap_or(1));
        }
        let mut fds = [nix::poll::PollFd::new(
            pipe.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16))?;
        if ready > 0 {
            let mut byte = [0u8; 1];
            if matches!(pipe.read(&mut byte), Ok(0) | Err(_)) {
                eprintln!(
                    "lazyfill guard: the filler died; killing every Postgres process (postmaster {postmaster_pid})"
                );
                kill_all_postgres(postmaster_pid);
                return Ok(1);
            }
        }
    }
}

/// Kills the postmaster and every process it ever forked, and returns only
/// once all are gone, so none can outlive the group fd this process holds.
///
/// Process groups are not enough: every PostgreSQL child calls `setsid()`.
/// So: stop the postmaster (no more forks), SIGKILL its children, then it;
/// as a child subreaper this process inherits every orphan, so it kills and
/// reaps its children until it has none left.
fn kill_all_postgres(postmaster: Pid) {
    let _ = nix::sys::signal::kill(postmaster, Signal::SIGSTOP);
    for child in children_of(postmaster) {
        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
    }
    let _ = nix::sys::signal::kill(postmaster, Signal::SIGKILL);
    let me = nix::unistd::getpid();
    loop {
        for child in children_of(me) {
            let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        }
        match nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Err(nix::errno::Errno::ECHILD) => return,
            Ok(nix::sys::wait::WaitStatus::StillAlive) => {
                std::thread::sleep(Duration::from_millis(5))
            }
            _ => {}
        }
    }
}

/// The processes whose parent is `parent` (from `/proc/<pid>/stat`).
fn children_of(parent: Pid) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // "pid (comm) state ppid ...": comm may hold spaces.
                    let after = &stat[stat.rfind(')')? + 1..];
                    after.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(parent.as_raw())
        })
        .map(Pid::from_raw)
        .collect()
}

/// The command line of the fill process: `run <config.json>` or the
/// internal `guard <group fd> <pipe fd> <uid> <gid> <log> -- <postgres argv>`.
/// `guard_command` is how this same program is invoked for `guard` (e.g.
/// `[exe, "guard"]`, or `[exe, "lazyfill", "guard"]` inside `sediment`).
pub fn main_with_args(args: &[String], guard_command: &[String]) -> anyhow::Result<i32> {
    match args.first().map(String::as_str) {
        Some("run") if args.len() == 2 => {
            let text = std::fs::read(&args[1]).with_context(|| args[1].clone())?;
            let config: FillConfig = serde_json::from_slice(&text).context("config")?;
            run_filler(&config, guard_command)
        }
        Some("guard") if args.len() > 7 && args[6] == "--" => run_guard(GuardArgs {
            group_fd: args[1].parse().context("group fd")?,
            pipe_fd: args[2].parse().context("pipe fd")?,
            uid: args[3].parse().context("uid")?,
            gid: args[4].parse().context("gid")?,
            log: PathBuf::from(&args[5]),
            postgres: args[7..].to_vec(),
        }),
        _ => anyhow::bail!("usage: lazyfill run <config.json>"),
    }
}
