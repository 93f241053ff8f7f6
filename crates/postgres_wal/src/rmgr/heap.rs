//! HEAP resource manager records (PG15 `heapam_xlog.h`): the typed bodies of
//! insert, delete, update, hot update, truncate, confirm, lock and inplace.
//!
//! Also holds the small array/OID/TID readers the other body modules share
//! on top of [`BodyCursor`]: a short or garbage body yields a [`BodyError`],
//! never a panic.

/// `XLOG_HEAP_INSERT`.
pub const XLOG_HEAP_INSERT: u8 = 0x00;
/// `XLOG_HEAP_DELETE`.
pub const XLOG_HEAP_DELETE: u8 = 0x10;
/// `XLOG_HEAP_UPDATE`.
pub const XLOG_HEAP_UPDATE: u8 = 0x20;
/// `XLOG_HEAP_TRUNCATE`.
pub const XLOG_HEAP_TRUNCATE: u8 = 0x30;
/// `XLOG_HEAP_HOT_UPDATE`.
pub const XLOG_HEAP_HOT_UPDATE: u8 = 0x40;
/// `XLOG_HEAP_CONFIRM`.
pub const XLOG_HEAP_CONFIRM: u8 = 0x50;
/// `XLOG_HEAP_LOCK`.
pub const XLOG_HEAP_LOCK: u8 = 0x60;
/// `XLOG_HEAP_INPLACE`.
pub const XLOG_HEAP_INPLACE: u8 = 0x70;
/// `XLOG_HEAP_OPMASK`: the operation bits of a HEAP/HEAP2 info byte.
pub const XLOG_HEAP_OPMASK: u8 = 0x70;
/// `XLOG_HEAP_INIT_PAGE`: the (new) page is reinitialised before the change.
pub const XLOG_HEAP_INIT_PAGE: u8 = 0x80;

/// `XLH_INSERT_ALL_VISIBLE_CLEARED`.
pub const XLH_INSERT_ALL_VISIBLE_CLEARED: u8 = 1 << 0;
/// `XLH_INSERT_LAST_IN_MULTI`.
pub const XLH_INSERT_LAST_IN_MULTI: u8 = 1 << 1;
/// `XLH_INSERT_IS_SPECULATIVE`.
pub const XLH_INSERT_IS_SPECULATIVE: u8 = 1 << 2;
/// `XLH_INSERT_CONTAINS_NEW_TUPLE`.
pub const XLH_INSERT_CONTAINS_NEW_TUPLE: u8 = 1 << 3;
/// `XLH_INSERT_ON_TOAST_RELATION`.
pub const XLH_INSERT_ON_TOAST_RELATION: u8 = 1 << 4;
/// `XLH_INSERT_ALL_FROZEN_SET` (multi-insert into an empty page by COPY FREEZE).
pub const XLH_INSERT_ALL_FROZEN_SET: u8 = 1 << 5;

/// `XLH_UPDATE_OLD_ALL_VISIBLE_CLEARED`.
pub const XLH_UPDATE_OLD_ALL_VISIBLE_CLEARED: u8 = 1 << 0;
/// `XLH_UPDATE_NEW_ALL_VISIBLE_CLEARED`.
pub const XLH_UPDATE_NEW_ALL_VISIBLE_CLEARED: u8 = 1 << 1;
/// `XLH_UPDATE_CONTAINS_OLD_TUPLE`.
pub const XLH_UPDATE_CONTAINS_OLD_TUPLE: u8 = 1 << 2;
/// `XLH_UPDATE_CONTAINS_OLD_KEY`.
pub const XLH_UPDATE_CONTAINS_OLD_KEY: u8 = 1 << 3;
/// `XLH_UPDATE_CONTAINS_NEW_TUPLE`.
pub const XLH_UPDATE_CONTAINS_NEW_TUPLE: u8 = 1 << 4;
/// `XLH_UPDATE_PREFIX_FROM_OLD`.
pub const XLH_UPDATE_PREFIX_FROM_OLD: u8 = 1 << 5;
/// `XLH_UPDATE_SUFFIX_FROM_OLD`.
pub const XLH_UPDATE_SUFFIX_FROM_OLD: u8 = 1 << 6;

/// `XLH_DELETE_ALL_VISIBLE_CLEARED`.
pub const XLH_DELETE_ALL_VISIBLE_CLEARED: u8 = 1 << 0;
/// `XLH_DELETE_CONTAINS_OLD_TUPLE`.
pub const XLH_DELETE_CONTAINS_OLD_TUPLE: u8 = 1 << 1;
/// `XLH_DELETE_CONTAINS_OLD_KEY`.
pub const XLH_DELETE_CONTAINS_OLD_KEY: u8 = 1 << 2;
/// `XLH_DELETE_IS_SUPER`: a speculative insertion is being killed.
pub const XLH_DELETE_IS_SUPER: u8 = 1 << 3;
/// `XLH_DELETE_IS_PARTITION_MOVE`.
pub const XLH_DELETE_IS_PARTITION_MOVE: u8 = 1 << 4;

/// `XLHL_XMAX_IS_MULTI` (infobits).
pub const XLHL_XMAX_IS_MULTI: u8 = 0x01;
/// `XLHL_XMAX_LOCK_ONLY`.
pub const XLHL_XMAX_LOCK_ONLY: u8 = 0x02;
/// `XLHL_XMAX_EXCL_LOCK`.
pub const XLHL_XMAX_EXCL_LOCK: u8 = 0x04;
/// `XLHL_XMAX_KEYSHR_LOCK`.
pub const XLHL_XMAX_KEYSHR_LOCK: u8 = 0x08;
/// `XLHL_KEYS_UPDATED`.
pub const XLHL_KEYS_UPDATED: u8 = 0x10;

/// `XLH_LOCK_ALL_FROZEN_CLEARED` (lock and lock-updated flags).
pub const XLH_LOCK_ALL_FROZEN_CLEARED: u8 = 0x01;

pub use super::cursor::{BodyCursor, BodyError};

/// `count` consecutive `uint16`s (offset-number arrays), length-checked
/// before anything is allocated.
pub fn u16_array(r: &mut BodyCursor<'_>, count: usize) -> Result<Vec<u16>, BodyError> {
    let bytes = r.bytes(count.checked_mul(2).ok_or(BodyError::Invalid {
        what: "uint16 array",
        detail: format!("count {count}"),
    })?)?;
    Ok(bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect())
}

/// A `RelFileNode` (three OIDs).
pub fn rel_file_node(r: &mut BodyCursor<'_>) -> Result<crate::record::RelFileNode, BodyError> {
    Ok(crate::record::RelFileNode {
        spc_node: r.u32()?,
        db_node: r.u32()?,
        rel_node: r.u32()?,
    })
}

/// An `ItemPointerData` (block number split in two halves, offset).
pub fn item_pointer(r: &mut BodyCursor<'_>) -> Result<ItemPointer, BodyError> {
    let hi = r.u16()?;
    let lo = r.u16()?;
    let offset = r.u16()?;
    Ok(ItemPointer {
        block: (u32::from(hi) << 16) | u32::from(lo),
        offset,
    })
}

/// Everything not read yet, consuming it.
pub fn rest<'a>(r: &mut BodyCursor<'a>) -> &'a [u8] {
    let rest = r.remaining();
    // Cannot fail: exactly the remaining bytes are taken.
    r.bytes(rest.len()).unwrap_or(rest)
}

/// A tuple identifier (`ItemPointerData`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItemPointer {
    pub block: u32,
    pub offset: u16,
}

/// `xl_heap_header`: the tuple-header fields WAL carries for a new tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapHeader {
    pub infomask2: u16,
    pub infomask: u16,
    pub hoff: u8,
}

/// `SizeOfHeapHeader`.
pub const SIZE_OF_HEAP_HEADER: usize = 5;

impl HeapHeader {
    fn read(reader: &mut BodyCursor<'_>) -> Result<HeapHeader, BodyError> {
        Ok(HeapHeader {
            infomask2: reader.u16()?,
            infomask: reader.u16()?,
            hoff: reader.u8()?,
        })
    }

    /// Parses block data holding an `xl_heap_header` followed by tuple data
    /// (insert); returns the header and the tuple bytes after `t_hoff`'s
    /// fixed part.
    pub fn parse_with_tuple(data: &[u8]) -> Result<(HeapHeader, &[u8]), BodyError> {
        let mut reader = BodyCursor::new(data, "xl_heap_header");
        let header = HeapHeader::read(&mut reader)?;
        Ok((header, rest(&mut reader)))
    }
}

/// `xl_heap_insert`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapInsert {
    pub offnum: u16,
    pub flags: u8,
}

/// `xl_heap_delete`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapDelete {
    pub xmax: u32,
    pub offnum: u16,
    pub infobits_set: u8,
    pub flags: u8,
}

/// `xl_heap_update` (also used by hot updates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapUpdate {
    pub old_xmax: u32,
    pub old_offnum: u16,
    pub old_infobits_set: u8,
    pub flags: u8,
    pub new_xmax: u32,
    pub new_offnum: u16,
}

/// The new-tuple part of an update's block 0 data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateNewTuple<'a> {
    /// Bytes of user data shared with the old tuple's start (0 if none).
    pub prefix_len: u16,
    /// Bytes of user data shared with the old tuple's end (0 if none).
    pub suffix_len: u16,
    pub header: HeapHeader,
    /// Null bitmap/padding (up to `t_hoff`) and then the changed user data.
    pub data: &'a [u8],
}

impl<'a> UpdateNewTuple<'a> {
    /// Parses block 0 data of an update record with the record's `flags`.
    pub fn parse(flags: u8, data: &'a [u8]) -> Result<UpdateNewTuple<'a>, BodyError> {
        let mut reader = BodyCursor::new(data, "xl_heap_update new tuple");
        let prefix_len = if flags & XLH_UPDATE_PREFIX_FROM_OLD != 0 {
            reader.u16()?
        } else {
            0
        };
        let suffix_len = if flags & XLH_UPDATE_SUFFIX_FROM_OLD != 0 {
            reader.u16()?
        } else {
            0
        };
        let header = HeapHeader::read(&mut reader)?;
        Ok(UpdateNewTuple {
            prefix_len,
            suffix_len,
            header,
            data: rest(&mut reader),
        })
    }
}

/// `xl_heap_truncate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeapTruncate {
    pub db_id: u32,
    pub flags: u8,
    pub relids: Vec<u32>,
}

/// `xl_heap_lock`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapLock {
    /// The locker: an xid, or a MultiXactId when infobits say so.
    pub locking_xid: u32,
    pub offnum: u16,
    pub infobits_set: u8,
    pub flags: u8,
}

/// A parsed HEAP record main-data body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeapRecord {
    Insert(HeapInsert),
    Delete(HeapDelete),
    Update(HeapUpdate),
    HotUpdate(HeapUpdate),
    Truncate(HeapTruncate),
    /// `xl_heap_confirm`: speculative insertion confirmed at `offnum`.
    Confirm {
        offnum: u16,
    },
    Lock(HeapLock),
    /// `xl_heap_inplace`: tuple at `offnum` overwritten in place.
    Inplace {
        offnum: u16,
    },
}

impl HeapRecord {
    /// Parses the main data of a HEAP record whose `xl_info` is `info`.
    pub fn parse(info: u8, main_data: &[u8]) -> Result<HeapRecord, BodyError> {
        let mut r = BodyCursor::new(main_data, heap_record_name(info));
        let record = match info & XLOG_HEAP_OPMASK {
            XLOG_HEAP_INSERT => HeapRecord::Insert(HeapInsert {
                offnum: r.u16()?,
                flags: r.u8()?,
            }),
            XLOG_HEAP_DELETE => HeapRecord::Delete(HeapDelete {
                xmax: r.u32()?,
                offnum: r.u16()?,
                infobits_set: r.u8()?,
                flags: r.u8()?,
            }),
            XLOG_HEAP_UPDATE => HeapRecord::Update(parse_update(&mut r)?),
            XLOG_HEAP_HOT_UPDATE => HeapRecord::HotUpdate(parse_update(&mut r)?),
            XLOG_HEAP_TRUNCATE => {
                let db_id = r.u32()?;
                let nrelids = r.u32()?;
                let flags = r.u8()?;
                r.align(4)?;
                let count = usize::try_from(nrelids).unwrap_or(usize::MAX);
                if count > r.remaining().len() / 4 {
                    return Err(BodyError::Invalid {
                        what: "xl_heap_truncate.nrelids",
                        detail: nrelids.to_string(),
                    });
                }
                let relids = (0..count).map(|_| r.u32()).collect::<Result<_, _>>()?;
                HeapRecord::Truncate(HeapTruncate {
                    db_id,
                    flags,
                    relids,
                })
            }
            XLOG_HEAP_CONFIRM => HeapRecord::Confirm { offnum: r.u16()? },
            XLOG_HEAP_LOCK => HeapRecord::Lock(HeapLock {
                locking_xid: r.u32()?,
                offnum: r.u16()?,
                infobits_set: r.u8()?,
                flags: r.u8()?,
            }),
            XLOG_HEAP_INPLACE => HeapRecord::Inplace { offnum: r.u16()? },
            _ => return Err(BodyError::UnknownType { what: "Heap", info }),
        };
        Ok(record)
    }
}

fn parse_update(r: &mut BodyCursor<'_>) -> Result<HeapUpdate, BodyError> {
    Ok(HeapUpdate {
        old_xmax: r.u32()?,
        old_offnum: r.u16()?,
        old_infobits_set: r.u8()?,
        flags: r.u8()?,
        new_xmax: r.u32()?,
        new_offnum: r.u16()?,
    })
}

/// The name `pg_waldump` uses for a HEAP info code.
pub fn heap_record_name(info: u8) -> &'static str {
    let init = info & XLOG_HEAP_INIT_PAGE != 0;
    match (info & XLOG_HEAP_OPMASK, init) {
        (XLOG_HEAP_INSERT, false) => "INSERT",
        (XLOG_HEAP_INSERT, true) => "INSERT+INIT",
        (XLOG_HEAP_DELETE, _) => "DELETE",
        (XLOG_HEAP_UPDATE, false) => "UPDATE",
        (XLOG_HEAP_UPDATE, true) => "UPDATE+INIT",
        (XLOG_HEAP_TRUNCATE, _) => "TRUNCATE",
        (XLOG_HEAP_HOT_UPDATE, false) => "HOT_UPDATE",
        (XLOG_HEAP_HOT_UPDATE, true) => "HOT_UPDATE+INIT",
        (XLOG_HEAP_CONFIRM, _) => "HEAP_CONFIRM",
        (XLOG_HEAP_LOCK, _) => "LOCK",
        _ => "INPLACE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_delete_and_rejects_short() {
        let body = [7, 0, 0, 0, 3, 0, 0x12, 0x01];
        let parsed = HeapRecord::parse(XLOG_HEAP_DELETE, &body).unwrap();
        assert_eq!(
            parsed,
            HeapRecord::Delete(HeapDelete {
                xmax: 7,
                offnum: 3,
                infobits_set: 0x12,
                flags: 1
            })
        );
        assert!(matches!(
            HeapRecord::parse(XLOG_HEAP_DELETE, &body[..7]),
            Err(BodyError::TooShort { .. })
        ));
    }

    #[test]
    fn update_new_tuple_with_prefix_and_suffix() {
        let flags = XLH_UPDATE_PREFIX_FROM_OLD | XLH_UPDATE_SUFFIX_FROM_OLD;
        let data = [4, 0, 2, 0, 3, 0, 2, 0, 24, 0xAA];
        let parsed = UpdateNewTuple::parse(flags, &data).unwrap();
        assert_eq!((parsed.prefix_len, parsed.suffix_len), (4, 2));
        assert_eq!(parsed.header.hoff, 24);
        assert_eq!(parsed.data, &[0xAA]);
    }

    #[test]
    fn truncate_with_absurd_count_is_an_error() {
        let body = [1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x7F, 0, 0, 0, 0];
        assert!(matches!(
            HeapRecord::parse(XLOG_HEAP_TRUNCATE, &body),
            Err(BodyError::Invalid { .. })
        ));
    }
}
