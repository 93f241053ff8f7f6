//! Starting, stopping and inspecting the pageserver process.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::client::ApiClient;
use crate::workdir::Workdir;

const PID_FILE: &str = "pageserver.pid";
const LOG_FILE: &str = "pageserver.log";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The pageserver binary: `$SEDIMENT_PAGESERVER_BIN`, else next to this
/// executable.
pub fn pageserver_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("SEDIMENT_PAGESERVER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("cannot locate the sediment executable")?;
    let candidate = exe.with_file_name("pageserver");
    if !candidate.exists() {
        bail!(
            "pageserver binary not found at {} (build it, or set SEDIMENT_PAGESERVER_BIN)",
            candidate.display()
        );
    }
    Ok(candidate)
}

/// The pid of the running pageserver, if the pid file names a live process.
pub fn running_pid(workdir: &Workdir) -> Option<Pid> {
    let text = std::fs::read_to_string(workdir.pageserver_dir().join(PID_FILE)).ok()?;
    let pid = Pid::from_raw(text.trim().parse().ok()?);
    // Signal 0 checks existence without touching the process; a killed
    // pageserver whose parent has not reaped it yet still exists as a zombie.
    kill(pid, None)
        .ok()
        .filter(|()| !is_zombie(pid))
        .map(|()| pid)
}

/// Whether `/proc` shows `pid` as a zombie (exited, not yet reaped).
fn is_zombie(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the parenthesised command name.
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(false)
}

/// Starts the pageserver in the background and waits until it answers.
pub fn start(workdir: &Workdir) -> anyhow::Result<u32> {
    if let Some(pid) = running_pid(workdir) {
        bail!("the pageserver is already running (pid {pid})");
    }
    let client = ApiClient::for_workdir(workdir)?;
    if client.is_up() {
        bail!(
            "something already answers at {}; stop it or change the port in {}",
            client.base(),
            workdir.path.join(crate::workdir::CONFIG_FILE).display()
        );
    }
    let binary = pageserver_binary()?;
    let dir = workdir.pageserver_dir();
    let log_path = dir.join(LOG_FILE);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    // What this start writes to the (appended) log begins here.
    let log_start = log.metadata().map_or(0, |metadata| metadata.len());
    let log_err = log
        .try_clone()
        .context("cannot duplicate the log file handle")?;
    let mut child = spawn_detached(&binary, &dir, log, log_err)?;
    let pid = child.id();
    std::fs::write(dir.join(PID_FILE), pid.to_string()).context("cannot write the pid file")?;
    let started = Instant::now();
    while started.elapsed() < START_TIMEOUT {
        if let Some(status) = child.try_wait().context("cannot watch the pageserver")? {
            let _ = std::fs::remove_file(dir.join(PID_FILE));
            bail!(
                "the pageserver exited at startup ({status}): {}",
                startup_failure(&read_from(&log_path, log_start))
            );
        }
        if client.is_up() {
            return Ok(pid);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "the pageserver did not answer within {}s; see {}",
        START_TIMEOUT.as_secs(),
        log_path.display()
    )
}

fn spawn_detached(
    binary: &Path,
    dir: &Path,
    stdout: std::fs::File,
    stderr: std::fs::File,
) -> anyhow::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    Command::new(binary)
        .arg("--workdir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        // Its own process group: a Ctrl-C in the terminal that ran
        // `sediment start` must not reach the daemon.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))
}

/// Stops the pageserver gracefully (SIGTERM) and waits for it to exit.
pub fn stop(workdir: &Workdir) -> anyhow::Result<Option<Pid>> {
    let Some(pid) = running_pid(workdir) else {
        return Ok(None);
    };
    kill(pid, Signal::SIGTERM).with_context(|| format!("cannot signal pid {pid}"))?;
    let started = Instant::now();
    while started.elapsed() < STOP_TIMEOUT {
        // Reap it if it is our child (it is not when started by another
        // `sediment` process); then check whether it still exists.
        let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        if kill(pid, None).is_err() || is_zombie(pid) {
            let _ = std::fs::remove_file(workdir.pageserver_dir().join(PID_FILE));
            return Ok(Some(pid));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "the pageserver (pid {pid}) did not stop within {}s",
        STOP_TIMEOUT.as_secs()
    )
}

/// What `path` holds from byte `start` on (empty if it cannot be read): the
/// log lines of this start, not those of every earlier one.
fn read_from(path: &Path, start: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path).and_then(|mut file| {
        file.seek(SeekFrom::Start(start))?;
        file.read_to_end(&mut bytes)
    });
    match read {
        Ok(_) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    }
}

/// What a pageserver that exited at startup wrote about why: the error it
/// returned (`Error: ...` and its `Caused by:` chain, without the stack
/// backtrace `RUST_BACKTRACE` adds), else the last lines of its log.
fn startup_failure(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    if let Some(first) = lines.iter().rposition(|line| line.starts_with("Error: ")) {
        return lines[first..]
            .iter()
            .take_while(|line| !line.starts_with("Stack backtrace:"))
            .map(|line| line.trim())
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
            .trim_start_matches("Error: ")
            .to_owned();
    }
    format!(
        "last log lines:\n{}",
        lines[lines.len().saturating_sub(10)..].join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::{read_from, startup_failure};

    #[test]
    fn only_what_this_start_wrote_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("pageserver.log");
        std::fs::write(&log, "Error: an earlier start\nError: this start\n").unwrap();
        assert_eq!(read_from(&log, 24), "Error: this start\n");
        assert_eq!(read_from(&log, 1000), "");
        assert_eq!(read_from(&dir.path().join("missing"), 0), "");
    }

    #[test]
    fn a_startup_error_is_reported_without_its_backtrace() {
        let log = "\
INFO pageserver: starting
Error: invalid pageserver configuration: wal_stream_cpus: \"x\" is not a CPU placement

Caused by:
    0: bad value

Stack backtrace:
   0: anyhow::error::<impl core::convert::From<E> for anyhow::Error>::from
   1: pageserver::main
";
        assert_eq!(
            startup_failure(log),
            "invalid pageserver configuration: wal_stream_cpus: \"x\" is not a CPU placement Caused by: 0: bad value"
        );
        let panicked = "line 1\nthread 'main' panicked at src/main.rs:1:1:\nboom\n";
        assert_eq!(
            startup_failure(panicked),
            format!("last log lines:\n{}", panicked.trim_end())
        );
    }
}
