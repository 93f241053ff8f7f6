//! Redo of GENERIC records (`generic_xlog.c`, used by extensions such as
//! bloom): each block's data is a delta of `(offset u16, length u16,
//! bytes)` fragments copied onto the page, after which the hole between
//! `pd_lower` and `pd_upper` is zeroed, as `generic_redo` does.

use crate::page::{Page, PageError};
use crate::{RedoContext, RedoError};

/// Applies a GENERIC record's delta to the block in `context`.
pub fn redo(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let delta = context.data();
    let mut at = 0;
    while at < delta.len() {
        let header = delta
            .get(at..at + 4)
            .ok_or(RedoError::Inconsistent("truncated generic delta fragment"))?;
        let offset = usize::from(u16::from_le_bytes([header[0], header[1]]));
        let length = usize::from(u16::from_le_bytes([header[2], header[3]]));
        let bytes = delta
            .get(at + 4..at + 4 + length)
            .ok_or(RedoError::Inconsistent("truncated generic delta data"))?;
        page.bytes_mut()
            .get_mut(offset..offset + length)
            .ok_or(RedoError::Inconsistent("generic delta past the page end"))?
            .copy_from_slice(bytes);
        at += 4 + length;
    }
    let (lower, upper) = (usize::from(page.lower()), usize::from(page.upper()));
    if lower > upper || upper > page.bytes().len() {
        return Err(PageError::Pointers {
            lower: page.lower(),
            upper: page.upper(),
            special: page.special(),
        }
        .into());
    }
    page.bytes_mut()[lower..upper].fill(0);
    Ok(())
}
