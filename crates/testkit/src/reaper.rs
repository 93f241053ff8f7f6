//! A watchdog that cleans up after a test process that died without
//! unwinding (SIGKILL from a CI timeout, `abort`, Ctrl-C on `cargo test`).
//!
//! `Drop` only runs when the test process lives long enough to run it. The
//! reaper is a tiny `sh` loop, in its own process group so a signal to the
//! test's group does not take it down too, that polls the test process once
//! a second; when that is gone it sends the postmaster SIGQUIT (immediate
//! shutdown) and removes the cluster's directory. A normal drop kills the
//! reaper first, so it never races the harness.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::error::{Error, Result};

/// `$1` test pid, `$2` postmaster.pid path, `$3` dir to remove, `$4` keep.
const SCRIPT: &str = r#"
while kill -0 "$1" 2>/dev/null; do sleep 1; done
pm=$(head -n 1 "$2" 2>/dev/null)
if [ -n "$pm" ] && kill -QUIT "$pm" 2>/dev/null; then
    i=0
    while kill -0 "$pm" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
fi
[ "$4" = 1 ] || rm -rf "$3"
"#;

/// The running watchdog; [`Reaper::disarm`] (or drop) stops it.
#[derive(Debug)]
pub struct Reaper {
    child: Option<Child>,
}

impl Reaper {
    /// Watches the current process on behalf of the cluster whose
    /// `postmaster.pid` is `pid_file`, living under `root`.
    pub fn spawn(pid_file: &Path, root: &Path, keep: bool) -> Result<Reaper> {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(SCRIPT)
            .arg("sediment-reaper")
            .arg(std::process::id().to_string())
            .arg(pid_file)
            .arg(root)
            .arg(if keep { "1" } else { "0" })
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let child = command.spawn().map_err(|source| Error::Spawn {
            command: "sh -c <reaper script>".to_owned(),
            source,
        })?;
        Ok(Reaper { child: Some(child) })
    }

    /// Stops the watchdog: the harness is cleaning up itself.
    pub fn disarm(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.disarm();
    }
}
