//! Redo of SEQUENCE records (`seq_redo`): the page is rebuilt from scratch
//! holding the logged tuple, with `SEQ_MAGIC` in its special space.

use postgres_wal::rmgr::sequence::{SeqRecord, SEQ_MAGIC};

use crate::page::Page;
use crate::{RedoContext, RedoError};

/// Applies a SEQUENCE record to the block in `context`.
pub fn redo(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let record = SeqRecord::parse(context.record.info, &context.record.main_data)?;
    page.init(4);
    let special = usize::from(page.special());
    page.set_u32_at(special, SEQ_MAGIC);
    page.add_item(record.tuple, 1, false, false)?;
    Ok(())
}
