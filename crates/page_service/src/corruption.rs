//! Corrupt data found while serving: counted, logged at ERROR, and kept per
//! timeline so the management API can show the last one in the timeline's
//! status (clients such as `pg_basebackup` may not print an error that
//! arrives in the middle of a COPY stream, so the CLI looks there).
//!
//! A read is "corrupt" when a layer file fails its checks
//! ([`storage::LayerFileError::Corrupt`]); the message names the layer file
//! and, for base backups, the key being read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use datadir::BasebackupError;
use parking_lot::Mutex;
use storage::{GetError, LayerFileError, TimelineId};

/// SQLSTATE `data_corrupted`.
pub const DATA_CORRUPTED: &str = "XX001";

/// Corruption seen by the page service; shared with the pageserver.
#[derive(Debug, Default)]
pub struct CorruptionLog {
    count: AtomicU64,
    last: Mutex<HashMap<TimelineId, String>>,
}

impl CorruptionLog {
    /// Records one corrupt read on `timeline`.
    pub fn record(&self, timeline: TimelineId, message: &str) {
        self.count.fetch_add(1, Ordering::Relaxed);
        tracing::error!(timeline_id = %timeline, %message, "corrupt data while serving a read");
        self.last.lock().insert(timeline, message.to_owned());
    }

    /// Corrupt reads seen since startup.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The last corruption message of `timeline`, if any.
    pub fn last_error(&self, timeline: TimelineId) -> Option<String> {
        self.last.lock().get(&timeline).cloned()
    }
}

/// Whether a read failed on a corrupt layer file.
pub fn is_corrupt_read(error: &GetError) -> bool {
    matches!(error, GetError::Layer(LayerFileError::Corrupt { .. }))
}

/// Whether a base backup failed on a corrupt layer file.
pub fn is_corrupt_backup(error: &BasebackupError) -> bool {
    match error {
        BasebackupError::Read { source, .. } | BasebackupError::LsnNotAvailable { source, .. } => {
            is_corrupt_read(source)
        }
        _ => false,
    }
}
