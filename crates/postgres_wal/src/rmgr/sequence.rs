//! SEQUENCE resource manager records (PG15 `commands/sequence.h`): the one
//! record type `XLOG_SEQ_LOG`, which carries the whole sequence tuple.

use super::heap::{rel_file_node, rest, BodyCursor, BodyError};
use crate::record::RelFileNode;

/// `XLOG_SEQ_LOG`.
pub const XLOG_SEQ_LOG: u8 = 0x00;

/// `SEQ_MAGIC`, stored in a sequence page's special space.
pub const SEQ_MAGIC: u32 = 0x1717;

/// `xl_seq_rec` followed by the sequence tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqRecord<'a> {
    pub node: RelFileNode,
    /// The complete heap tuple (header and data) the page will hold.
    pub tuple: &'a [u8],
}

impl<'a> SeqRecord<'a> {
    /// Parses the main data of a SEQUENCE record whose `xl_info` is `info`.
    pub fn parse(info: u8, main_data: &'a [u8]) -> Result<SeqRecord<'a>, BodyError> {
        if info & 0xF0 != XLOG_SEQ_LOG {
            return Err(BodyError::UnknownType {
                what: "Sequence",
                info,
            });
        }
        let mut r = BodyCursor::new(main_data, "xl_seq_rec");
        let node = rel_file_node(&mut r)?;
        let tuple = rest(&mut r);
        if tuple.is_empty() {
            return Err(BodyError::Invalid {
                what: "xl_seq_rec tuple length",
                detail: "empty".to_string(),
            });
        }
        Ok(SeqRecord { node, tuple })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_node_and_tuple() {
        let mut body = Vec::new();
        for v in [1663u32, 5, 16384] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.extend_from_slice(&[9; 30]);
        let rec = SeqRecord::parse(XLOG_SEQ_LOG, &body).unwrap();
        assert_eq!(rec.node.rel_node, 16384);
        assert_eq!(rec.tuple.len(), 30);
        assert!(SeqRecord::parse(XLOG_SEQ_LOG, &body[..12]).is_err());
        assert!(SeqRecord::parse(0x10, &body).is_err());
    }
}
