//! Test-only fault injection into the pageserver's remote storage.
//!
//! When the environment variable [`FAULTS_ENV`] names a file at startup,
//! the remote storage is wrapped in `remote_storage::FaultyStorage` and a
//! thread reads the file every 200 ms: its content is the failure rate
//! (`0.3` = 30 % of operations fail with a 5xx answer, a hang, a torn
//! upload or a silent torn upload); a missing, empty or unparsable file
//! means no faults. Tests switch faults on and off by rewriting the file
//! while the pageserver runs. Never set in production: it exists so the
//! retry and verification paths can be exercised in a real process.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use remote_storage::{FaultyStorage, ObjectStorage};

/// Names the control file; unset in production.
pub const FAULTS_ENV: &str = "SEDIMENT_TEST_REMOTE_FAULTS";

/// `inner`, wrapped in fault injection if [`FAULTS_ENV`] is set.
pub fn maybe_wrap(inner: Arc<dyn ObjectStorage>) -> Arc<dyn ObjectStorage> {
    let Some(file) = std::env::var_os(FAULTS_ENV).map(PathBuf::from) else {
        return inner;
    };
    tracing::warn!(control = %file.display(), "remote storage fault injection is on (test only)");
    let faulty = Arc::new(FaultyStorage::new(inner));
    let weak: Weak<FaultyStorage> = Arc::downgrade(&faulty);
    let spawned = std::thread::Builder::new()
        .name("remote-faults".into())
        .spawn(move || control_loop(&file, &weak));
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the fault control thread: no faults injected");
    }
    faulty
}

fn control_loop(file: &std::path::Path, faulty: &Weak<FaultyStorage>) {
    let mut current = 0.0f64;
    while let Some(faulty) = faulty.upgrade() {
        let rate = std::fs::read_to_string(file)
            .ok()
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|rate| rate.is_finite())
            .unwrap_or(0.0);
        if rate != current {
            tracing::warn!(
                rate,
                injected = faulty.injected(),
                "remote fault rate changed"
            );
            faulty.set_failure_rate(rate);
            current = rate;
        }
        drop(faulty);
        std::thread::sleep(Duration::from_millis(200));
    }
}
