//! The form in which a WAL record is stored as a [`storage::Value::WalRecord`]
//! for one of its blocks, so that [`crate::NativeRedo`] can decode it again.
//!
//! Layout (format 1): `format u8 = 1 | block_id u8 | start_lsn u64 LE |
//! end_lsn u64 LE | the record's bytes as CRC-checked by the reader`. Keeping
//! the whole record (rather than a per-block extract) means redo sees exactly
//! what PostgreSQL's redo sees, including other blocks' data that some redo
//! routines consult; the cost is space when a record also carries images of
//! other blocks (noted as a known gap in the crate docs).

use bytes::Bytes;
use postgres_wal::record::DecodedRecord;
use postgres_wal::{decode_record, Lsn};

const FORMAT_V1: u8 = 1;
const HEADER_SIZE: usize = 1 + 1 + 8 + 8;

/// Encodes `record_bytes` (a whole record from `start_lsn` to `end_lsn`) for
/// block `block_id`.
pub fn encode(block_id: u8, start_lsn: Lsn, end_lsn: Lsn, record_bytes: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(HEADER_SIZE + record_bytes.len());
    out.push(FORMAT_V1);
    out.push(block_id);
    out.extend_from_slice(&start_lsn.0.to_le_bytes());
    out.extend_from_slice(&end_lsn.0.to_le_bytes());
    out.extend_from_slice(record_bytes);
    Bytes::from(out)
}

/// A stored record, decoded.
#[derive(Debug)]
pub struct StoredRecord {
    pub block_id: u8,
    pub record: DecodedRecord,
}

/// Decodes a value written by [`encode`]; malformed bytes give an error.
pub fn decode(bytes: &[u8]) -> Result<StoredRecord, String> {
    if bytes.len() < HEADER_SIZE {
        return Err(format!(
            "stored record of {} bytes is too short",
            bytes.len()
        ));
    }
    if bytes[0] != FORMAT_V1 {
        return Err(format!("unknown stored record format {}", bytes[0]));
    }
    let block_id = bytes[1];
    let start_lsn = Lsn(le_u64(&bytes[2..10]));
    let end_lsn = Lsn(le_u64(&bytes[10..18]));
    let record = decode_record(&bytes[HEADER_SIZE..], start_lsn, end_lsn)
        .map_err(|e| format!("stored record at {start_lsn}: {e}"))?;
    Ok(StoredRecord { block_id, record })
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[1; 17]).is_err());
        assert!(decode(&[2; 40]).is_err());
        let mut v = encode(0, Lsn(8), Lsn(16), &[0xff; 30]).to_vec();
        assert!(decode(&v).is_err());
        v.truncate(HEADER_SIZE);
        assert!(decode(&v).is_err());
    }
}
