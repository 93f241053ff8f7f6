//! Temporary directories the Postgres user owns, and free TCP ports.
//!
//! Directories are removed on drop — including while a panicking test
//! unwinds — unless `SEDIMENT_KEEP_TMP=1`, in which case the path is printed
//! so a failed run can be inspected.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::install::PgInstall;

/// Environment variable: `1` keeps temp dirs after the test and prints them.
pub const KEEP_TMP_ENV: &str = "SEDIMENT_KEEP_TMP";

/// Whether `SEDIMENT_KEEP_TMP` asks to keep temp dirs.
pub fn keep_tmp() -> bool {
    std::env::var(KEEP_TMP_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// A temp directory owned by the Postgres OS user (see [`PgInstall::run_as`]).
#[derive(Debug)]
pub struct PgTempDir {
    inner: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl PgTempDir {
    /// Creates `$TMPDIR/sediment-XXXXXX` owned by the Postgres user.
    pub fn new() -> Result<PgTempDir> {
        Self::new_for(&PgInstall::detect()?)
    }

    /// Same as [`PgTempDir::new`] for an already detected installation.
    pub fn new_for(install: &PgInstall) -> Result<PgTempDir> {
        let dir = tempfile::Builder::new()
            .prefix("sediment-")
            .tempdir()
            .map_err(|e| Error::io("create temp dir in", std::env::temp_dir(), e))?;
        install.chown(dir.path())?;
        Ok(PgTempDir {
            path: dir.path().to_path_buf(),
            inner: Some(dir),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates `name` inside this directory (and parents), owned by the
    /// Postgres user, and returns its path.
    pub fn subdir(&self, install: &PgInstall, name: &str) -> Result<PathBuf> {
        let path = self.path.join(name);
        std::fs::create_dir_all(&path).map_err(|e| Error::io("create dir", &path, e))?;
        let mut current = path.as_path();
        // Every new level must be the user's, not just the leaf.
        while current != self.path {
            install.chown(current)?;
            match current.parent() {
                Some(parent) => current = parent,
                None => break,
            }
        }
        Ok(path)
    }
}

impl Drop for PgTempDir {
    fn drop(&mut self) {
        if let Some(dir) = self.inner.take() {
            if keep_tmp() {
                let kept = dir.keep();
                eprintln!("{KEEP_TMP_ENV}=1: keeping {}", kept.display());
            }
            // Otherwise TempDir's own drop removes it.
        }
    }
}

/// Ports [`free_port`] hands out: below Linux's default ephemeral range
/// (32768–60999), so an outgoing connection of this or another test, which
/// takes its local port from that range, can never occupy a port a test has
/// been given but not yet bound (that race made servers fail with "Address
/// already in use" when ports came from binding port 0).
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A TCP port that was free on every address a moment ago. Ports are handed
/// out in turn from [`TEST_PORTS`], starting at a place derived from the
/// process id so concurrently running test binaries start far apart; a port
/// is never handed out twice by one process. Someone may still take it before
/// we use it, so callers that bind later must retry on conflict (the cluster
/// start does).
pub fn free_port() -> Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    // First call: seed from the pid (a multiplier spreads neighbouring pids).
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(2_654_435_761) % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % span;
        // `offset < span`, which fits in u16.
        let port = TEST_PORTS.start + offset as u16;
        // Binding the wildcard address fails if anyone listens on the port
        // at any address, or holds it in a live connection.
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(Error::io(
        "find a free port in",
        format!("{}..{}", TEST_PORTS.start, TEST_PORTS.end),
        std::io::Error::from(std::io::ErrorKind::AddrInUse),
    ))
}
