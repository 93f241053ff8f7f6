//! A bounds-checked little-endian reader for record bodies, and the error
//! every body parser returns. Body parsers read C structs field by field at
//! their PG15 offsets (on x86-64/aarch64 alignment), never by casting.

use crate::Lsn;

/// Why a record body could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error("{what}: body too short (needed {needed} bytes at offset {offset}, have {len})")]
    TooShort {
        what: &'static str,
        offset: usize,
        needed: usize,
        len: usize,
    },
    #[error("{what}: record is of resource manager {rmid}, not this one")]
    WrongRmgr { what: &'static str, rmid: u8 },
    #[error("{what}: unknown record type (info {info:#04x})")]
    UnknownType { what: &'static str, info: u8 },
    #[error("{what}: invalid value: {detail}")]
    Invalid { what: &'static str, detail: String },
}

/// Reads fixed-size fields from a body, failing with [`BodyError::TooShort`].
#[derive(Clone, Debug)]
pub struct BodyCursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> BodyCursor<'a> {
    /// A cursor at the start of `bytes`; `what` names the struct in errors.
    pub fn new(bytes: &'a [u8], what: &'static str) -> BodyCursor<'a> {
        BodyCursor {
            bytes,
            pos: 0,
            what,
        }
    }

    /// Current offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> &'a [u8] {
        &self.bytes[self.pos..]
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], BodyError> {
        let err = BodyError::TooShort {
            what: self.what,
            offset: self.pos,
            needed: n,
            len: self.bytes.len(),
        };
        let end = self.pos.checked_add(n).ok_or(err.clone())?;
        let slice = self.bytes.get(self.pos..end).ok_or(err)?;
        self.pos = end;
        Ok(slice)
    }

    /// Skips `n` bytes (struct padding).
    pub fn skip(&mut self, n: usize) -> Result<(), BodyError> {
        self.bytes(n).map(|_| ())
    }

    /// Moves to `offset` (a field offset within the struct).
    pub fn seek(&mut self, offset: usize) -> Result<(), BodyError> {
        if offset > self.bytes.len() {
            return Err(BodyError::TooShort {
                what: self.what,
                offset,
                needed: 0,
                len: self.bytes.len(),
            });
        }
        self.pos = offset;
        Ok(())
    }

    /// Skips to the next multiple of `alignment`.
    pub fn align(&mut self, alignment: usize) -> Result<(), BodyError> {
        let pad = (alignment - self.pos % alignment) % alignment;
        self.skip(pad)
    }

    pub fn u8(&mut self) -> Result<u8, BodyError> {
        Ok(self.bytes(1)?[0])
    }

    pub fn bool(&mut self) -> Result<bool, BodyError> {
        Ok(self.u8()? != 0)
    }

    pub fn u16(&mut self) -> Result<u16, BodyError> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, BodyError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i32(&mut self) -> Result<i32, BodyError> {
        Ok(self.u32()? as i32)
    }

    pub fn u64(&mut self) -> Result<u64, BodyError> {
        let mut v = [0u8; 8];
        v.copy_from_slice(self.bytes(8)?);
        Ok(u64::from_le_bytes(v))
    }

    pub fn i64(&mut self) -> Result<i64, BodyError> {
        Ok(self.u64()? as i64)
    }

    pub fn lsn(&mut self) -> Result<Lsn, BodyError> {
        Ok(Lsn(self.u64()?))
    }

    /// `count` u32 values, with the count checked against the bytes left
    /// before anything is allocated.
    pub fn u32_array(&mut self, count: usize) -> Result<Vec<u32>, BodyError> {
        let raw = self.bytes(count.checked_mul(4).ok_or(BodyError::TooShort {
            what: self.what,
            offset: self.pos,
            needed: usize::MAX,
            len: self.bytes.len(),
        })?)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// A NUL-terminated string in a fixed-size field of `len` bytes.
    pub fn fixed_cstr(&mut self, len: usize) -> Result<String, BodyError> {
        let raw = self.bytes(len)?;
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        Ok(String::from_utf8_lossy(&raw[..end]).into_owned())
    }

    /// A NUL-terminated string of unknown length.
    pub fn cstr(&mut self) -> Result<String, BodyError> {
        let rest = self.remaining();
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(BodyError::TooShort {
                what: self.what,
                offset: self.pos,
                needed: rest.len() + 1,
                len: self.bytes.len(),
            })?;
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(s)
    }
}

/// Fails unless `record` belongs to `rmgr`.
pub fn expect_rmgr(
    record: &crate::record::DecodedRecord,
    rmgr: super::RmgrId,
    what: &'static str,
) -> Result<(), BodyError> {
    if record.rmid != rmgr as u8 {
        return Err(BodyError::WrongRmgr {
            what,
            rmid: record.rmid,
        });
    }
    Ok(())
}
