//! Redo of the XLOG records that carry pages: `XLOG_FPI` and
//! `XLOG_FPI_FOR_HINT`. Their images are always marked for apply, and
//! [`crate::apply`] restores those before dispatching here; reaching this
//! module means a block of such a record came without its image.

use postgres_wal::rmgr::RmgrId;

use crate::page::Page;
use crate::{RedoContext, RedoError};

/// `XLOG_FPI_FOR_HINT`.
pub const XLOG_FPI_FOR_HINT: u8 = 0xA0;
/// `XLOG_FPI`.
pub const XLOG_FPI: u8 = 0xB0;

/// Applies an XLOG record to the block in `context`.
pub fn redo(_page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    match context.record.rmgr_info() {
        XLOG_FPI | XLOG_FPI_FOR_HINT => Err(RedoError::Inconsistent(
            "full-page-image record block has no image to restore",
        )),
        info => Err(RedoError::Unsupported {
            rmgr: RmgrId::Xlog.name(),
            info,
        }),
    }
}
