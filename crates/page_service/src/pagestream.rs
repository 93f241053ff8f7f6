//! The `pagestream_v2` binary sub-protocol: encoding and decoding of its
//! requests and responses (pure; no I/O).
//!
//! A client enters the stream on an ordinary connection with the simple
//! query `pagestream_v2 <tenant hex> <timeline hex>`; the server answers
//! CopyBothResponse and from then on every request is one CopyData message
//! from the client and every answer one CopyData message from the server.
//! Requests carry a client-chosen id; the server may answer several
//! requests in flight out of order (that is how batching and prefetch
//! work: send many, then collect), so the client matches answers by id.
//! All integers are big-endian. See `docs/page-service-protocol.md`.
//!
//! ```text
//! request  = tag u8, id u32, lsn u64, body
//!   'G' get page        spc u32, db u32, rel u32, fork u8, blkno u32
//!   'R' get page range  spc u32, db u32, rel u32, fork u8, blkno u32, count u32 (1..=MAX_RANGE_PAGES)
//!   'N' relation size   spc u32, db u32, rel u32, fork u8
//!   'E' relation exists spc u32, db u32, rel u32, fork u8
//!   'D' database size   spc u32, db u32
//!   'S' database list   (all relation forks of every database with their sizes)
//!   'B' lazy base backup (lsn 0/0: the last record LSN)
//! response = tag u8, id u32, body
//!   'g' page            8192 bytes
//!   'r' pages           count u32, count × 8192 bytes
//!   'n' size            blocks u32
//!   'e' exists          0 | 1 u8
//!   'd' database size   bytes u64
//!   's' listing         count u32, count × (spc u32, db u32, rel u32, fork u8, blocks u32)
//!   'b' lazy backup     lsn u64, count u32, count × (spc u32, db u32, rel u32, fork u8,
//!                       first_blkno u32, blocks u32, path_len u16, path), tar (the rest)
//!   'x' error           sqlstate 5 bytes, message (UTF-8, the rest)
//! ```
//!
//! A request naming an LSN the timeline has not reached yet waits (bounded
//! by the server's `wait_lsn_timeout`) before it is answered. A failed
//! request gets an `'x'` answer and the stream goes on; a message that does
//! not decode ends the stream with an ErrorResponse, since the two sides
//! no longer agree on the framing.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_wal::record::{ForkNumber, RelFileNode, BLCKSZ};
use postgres_wal::Lsn;

/// Most pages one range request may ask for (512 KiB of answer).
pub const MAX_RANGE_PAGES: u32 = 64;

/// A relation fork, as requests name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelTag {
    pub rel: RelFileNode,
    pub fork: ForkNumber,
}

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestKind {
    GetPage { tag: RelTag, blkno: u32 },
    GetPageRange { tag: RelTag, blkno: u32, count: u32 },
    RelSize { tag: RelTag },
    RelExists { tag: RelTag },
    DbSize { spc_node: u32, db_node: u32 },
    ListRelations,
    LazyBasebackup,
}

/// One request of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub id: u32,
    pub lsn: Lsn,
    pub kind: RequestKind,
}

/// One relation fork and its size in blocks, as listed by `'S'`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelSizeEntry {
    pub tag: RelTag,
    pub blocks: u32,
}

/// A relation segment of a lazy data directory (see
/// [`datadir::LazySegment`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentEntry {
    pub path: String,
    pub tag: RelTag,
    pub first_blkno: u32,
    pub blocks: u32,
}

/// A lazy data directory: everything but relation contents as a tar, and
/// the relation segments to create sparse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LazyBackup {
    /// The LSN the data directory reflects (pages are read at it).
    pub lsn: Lsn,
    pub segments: Vec<SegmentEntry>,
    pub tar: Bytes,
}

/// What an answer carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseKind {
    Page(Bytes),
    Pages(Vec<Bytes>),
    RelSize(u32),
    RelExists(bool),
    DbSize(u64),
    Listing(Vec<RelSizeEntry>),
    LazyBasebackup(LazyBackup),
    Error { sqlstate: String, message: String },
}

/// One answer of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub id: u32,
    pub kind: ResponseKind,
}

/// Why a message did not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed pagestream message: {0}")]
pub struct DecodeError(pub String);

fn err(what: impl Into<String>) -> DecodeError {
    DecodeError(what.into())
}

fn fork_byte(fork: ForkNumber) -> u8 {
    match fork {
        ForkNumber::Main => 0,
        ForkNumber::Fsm => 1,
        ForkNumber::VisibilityMap => 2,
        ForkNumber::Init => 3,
    }
}

fn fork_from_byte(b: u8) -> Result<ForkNumber, DecodeError> {
    match b {
        0 => Ok(ForkNumber::Main),
        1 => Ok(ForkNumber::Fsm),
        2 => Ok(ForkNumber::VisibilityMap),
        3 => Ok(ForkNumber::Init),
        other => Err(err(format!("fork number {other}"))),
    }
}

fn put_tag(b: &mut BytesMut, tag: &RelTag) {
    b.put_u32(tag.rel.spc_node);
    b.put_u32(tag.rel.db_node);
    b.put_u32(tag.rel.rel_node);
    b.put_u8(fork_byte(tag.fork));
}

/// A bounds-checked reader over a message body.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn need(&self, n: usize, what: &str) -> Result<(), DecodeError> {
        if self.0.len() < n {
            return Err(err(format!("truncated {what}")));
        }
        Ok(())
    }
    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        self.need(1, what)?;
        Ok(self.0.get_u8())
    }
    fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        self.need(2, what)?;
        Ok(self.0.get_u16())
    }
    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        self.need(4, what)?;
        Ok(self.0.get_u32())
    }
    fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        self.need(8, what)?;
        Ok(self.0.get_u64())
    }
    fn tag(&mut self) -> Result<RelTag, DecodeError> {
        let rel = RelFileNode {
            spc_node: self.u32("spcnode")?,
            db_node: self.u32("dbnode")?,
            rel_node: self.u32("relnode")?,
        };
        let fork = fork_from_byte(self.u8("fork")?)?;
        Ok(RelTag { rel, fork })
    }
    fn page(&mut self) -> Result<Bytes, DecodeError> {
        self.need(BLCKSZ, "page")?;
        let page = Bytes::copy_from_slice(&self.0[..BLCKSZ]);
        self.0.advance(BLCKSZ);
        Ok(page)
    }
    fn end(&self) -> Result<(), DecodeError> {
        if !self.0.is_empty() {
            return Err(err(format!("{} trailing bytes", self.0.len())));
        }
        Ok(())
    }
}

impl Request {
    /// Appends the encoded request (a CopyData payload) to `b`.
    pub fn encode(&self, b: &mut BytesMut) {
        let tag = match self.kind {
            RequestKind::GetPage { .. } => b'G',
            RequestKind::GetPageRange { .. } => b'R',
            RequestKind::RelSize { .. } => b'N',
            RequestKind::RelExists { .. } => b'E',
            RequestKind::DbSize { .. } => b'D',
            RequestKind::ListRelations => b'S',
            RequestKind::LazyBasebackup => b'B',
        };
        b.put_u8(tag);
        b.put_u32(self.id);
        b.put_u64(self.lsn.0);
        match &self.kind {
            RequestKind::GetPage { tag, blkno } => {
                put_tag(b, tag);
                b.put_u32(*blkno);
            }
            RequestKind::GetPageRange { tag, blkno, count } => {
                put_tag(b, tag);
                b.put_u32(*blkno);
                b.put_u32(*count);
            }
            RequestKind::RelSize { tag } | RequestKind::RelExists { tag } => put_tag(b, tag),
            RequestKind::DbSize { spc_node, db_node } => {
                b.put_u32(*spc_node);
                b.put_u32(*db_node);
            }
            RequestKind::ListRelations | RequestKind::LazyBasebackup => {}
        }
    }

    /// Decodes one CopyData payload; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Request, DecodeError> {
        let mut r = Reader(bytes);
        let tag = r.u8("request tag")?;
        let id = r.u32("request id")?;
        let lsn = Lsn(r.u64("lsn")?);
        let kind = match tag {
            b'G' => RequestKind::GetPage {
                tag: r.tag()?,
                blkno: r.u32("blkno")?,
            },
            b'R' => {
                let tag = r.tag()?;
                let blkno = r.u32("blkno")?;
                let count = r.u32("count")?;
                if count == 0 || count > MAX_RANGE_PAGES {
                    return Err(err(format!(
                        "range of {count} pages (1..={MAX_RANGE_PAGES} allowed)"
                    )));
                }
                RequestKind::GetPageRange { tag, blkno, count }
            }
            b'N' => RequestKind::RelSize { tag: r.tag()? },
            b'E' => RequestKind::RelExists { tag: r.tag()? },
            b'D' => RequestKind::DbSize {
                spc_node: r.u32("spcnode")?,
                db_node: r.u32("dbnode")?,
            },
            b'S' => RequestKind::ListRelations,
            b'B' => RequestKind::LazyBasebackup,
            other => return Err(err(format!("request tag 0x{other:02x}"))),
        };
        r.end()?;
        Ok(Request { id, lsn, kind })
    }
}

impl Response {
    /// Appends the encoded response (a CopyData payload) to `b`.
    pub fn encode(&self, b: &mut BytesMut) {
        let tag = match self.kind {
            ResponseKind::Page(_) => b'g',
            ResponseKind::Pages(_) => b'r',
            ResponseKind::RelSize(_) => b'n',
            ResponseKind::RelExists(_) => b'e',
            ResponseKind::DbSize(_) => b'd',
            ResponseKind::Listing(_) => b's',
            ResponseKind::LazyBasebackup(_) => b'b',
            ResponseKind::Error { .. } => b'x',
        };
        b.put_u8(tag);
        b.put_u32(self.id);
        match &self.kind {
            ResponseKind::Page(page) => b.put_slice(page),
            ResponseKind::Pages(pages) => {
                b.put_u32(pages.len() as u32);
                for page in pages {
                    b.put_slice(page);
                }
            }
            ResponseKind::RelSize(n) => b.put_u32(*n),
            ResponseKind::RelExists(e) => b.put_u8(u8::from(*e)),
            ResponseKind::DbSize(n) => b.put_u64(*n),
            ResponseKind::Listing(entries) => {
                b.put_u32(entries.len() as u32);
                for entry in entries {
                    put_tag(b, &entry.tag);
                    b.put_u32(entry.blocks);
                }
            }
            ResponseKind::LazyBasebackup(backup) => {
                b.put_u64(backup.lsn.0);
                b.put_u32(backup.segments.len() as u32);
                for seg in &backup.segments {
                    put_tag(b, &seg.tag);
                    b.put_u32(seg.first_blkno);
                    b.put_u32(seg.blocks);
                    let path = &seg.path.as_bytes()[..seg.path.len().min(u16::MAX as usize)];
                    b.put_u16(path.len() as u16);
                    b.put_slice(path);
                }
                b.put_slice(&backup.tar);
            }
            ResponseKind::Error { sqlstate, message } => {
                let mut code = [b'X'; 5];
                for (dst, src) in code.iter_mut().zip(sqlstate.bytes()) {
                    *dst = src;
                }
                b.put_slice(&code);
                b.put_slice(message.as_bytes());
            }
        }
    }

    /// The size [`Response::encode`] will produce, to reserve buffers.
    pub fn encoded_len(&self) -> usize {
        5 + match &self.kind {
            ResponseKind::Page(p) => p.len(),
            ResponseKind::Pages(pages) => 4 + pages.iter().map(Bytes::len).sum::<usize>(),
            ResponseKind::RelSize(_) => 4,
            ResponseKind::RelExists(_) => 1,
            ResponseKind::DbSize(_) => 8,
            ResponseKind::Listing(entries) => 4 + entries.len() * 17,
            ResponseKind::LazyBasebackup(backup) => {
                12 + backup
                    .segments
                    .iter()
                    .map(|s| 23 + s.path.len().min(u16::MAX as usize))
                    .sum::<usize>()
                    + backup.tar.len()
            }
            ResponseKind::Error { message, .. } => 5 + message.len(),
        }
    }

    /// Decodes one CopyData payload; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Response, DecodeError> {
        let mut r = Reader(bytes);
        let tag = r.u8("response tag")?;
        let id = r.u32("response id")?;
        let kind = match tag {
            b'g' => ResponseKind::Page(r.page()?),
            b'r' => {
                let count = r.u32("count")?;
                if count > MAX_RANGE_PAGES {
                    return Err(err(format!("{count} pages in one answer")));
                }
                let mut pages = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    pages.push(r.page()?);
                }
                ResponseKind::Pages(pages)
            }
            b'n' => ResponseKind::RelSize(r.u32("size")?),
            b'e' => match r.u8("exists")? {
                0 => ResponseKind::RelExists(false),
                1 => ResponseKind::RelExists(true),
                other => return Err(err(format!("exists flag {other}"))),
            },
            b'd' => ResponseKind::DbSize(r.u64("database size")?),
            b's' => {
                let count = r.u32("count")? as usize;
                // Check the length before allocating for a hostile count.
                r.need(count.saturating_mul(17), "listing")?;
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    let tag = r.tag()?;
                    entries.push(RelSizeEntry {
                        tag,
                        blocks: r.u32("blocks")?,
                    });
                }
                ResponseKind::Listing(entries)
            }
            b'b' => {
                let lsn = Lsn(r.u64("lsn")?);
                let count = r.u32("count")? as usize;
                r.need(count.saturating_mul(23), "segments")?;
                let mut segments = Vec::with_capacity(count);
                for _ in 0..count {
                    let tag = r.tag()?;
                    let first_blkno = r.u32("first block")?;
                    let blocks = r.u32("blocks")?;
                    let len = usize::from(r.u16("path length")?);
                    r.need(len, "path")?;
                    let path = std::str::from_utf8(&r.0[..len])
                        .map_err(|_| err("path is not UTF-8"))?
                        .to_owned();
                    r.0.advance(len);
                    segments.push(SegmentEntry {
                        path,
                        tag,
                        first_blkno,
                        blocks,
                    });
                }
                let tar = Bytes::copy_from_slice(r.0);
                r.0 = &[];
                ResponseKind::LazyBasebackup(LazyBackup { lsn, segments, tar })
            }
            b'x' => {
                r.need(5, "sqlstate")?;
                let sqlstate = String::from_utf8_lossy(&r.0[..5]).into_owned();
                let message = String::from_utf8_lossy(&r.0[5..]).into_owned();
                r.0 = &[];
                ResponseKind::Error { sqlstate, message }
            }
            other => return Err(err(format!("response tag 0x{other:02x}"))),
        };
        r.end()?;
        Ok(Response { id, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_tag() -> impl Strategy<Value = RelTag> {
        (any::<u32>(), any::<u32>(), any::<u32>(), 0u8..4).prop_map(|(s, d, r, f)| RelTag {
            rel: RelFileNode {
                spc_node: s,
                db_node: d,
                rel_node: r,
            },
            fork: fork_from_byte(f).unwrap_or(ForkNumber::Main),
        })
    }

    fn arb_request() -> impl Strategy<Value = Request> {
        let kind = prop_oneof![
            (arb_tag(), any::<u32>()).prop_map(|(tag, blkno)| RequestKind::GetPage { tag, blkno }),
            (arb_tag(), any::<u32>(), 1..=MAX_RANGE_PAGES)
                .prop_map(|(tag, blkno, count)| RequestKind::GetPageRange { tag, blkno, count }),
            arb_tag().prop_map(|tag| RequestKind::RelSize { tag }),
            arb_tag().prop_map(|tag| RequestKind::RelExists { tag }),
            (any::<u32>(), any::<u32>())
                .prop_map(|(spc_node, db_node)| RequestKind::DbSize { spc_node, db_node }),
            Just(RequestKind::ListRelations),
            Just(RequestKind::LazyBasebackup),
        ];
        (any::<u32>(), any::<u64>(), kind).prop_map(|(id, lsn, kind)| Request {
            id,
            lsn: Lsn(lsn),
            kind,
        })
    }

    fn arb_page() -> impl Strategy<Value = Bytes> {
        any::<u8>().prop_map(|b| Bytes::from(vec![b; BLCKSZ]))
    }

    fn arb_response() -> impl Strategy<Value = Response> {
        let kind = prop_oneof![
            arb_page().prop_map(ResponseKind::Page),
            prop::collection::vec(arb_page(), 0..4).prop_map(ResponseKind::Pages),
            any::<u32>().prop_map(ResponseKind::RelSize),
            any::<bool>().prop_map(ResponseKind::RelExists),
            any::<u64>().prop_map(ResponseKind::DbSize),
            prop::collection::vec(
                (arb_tag(), any::<u32>()).prop_map(|(tag, blocks)| RelSizeEntry { tag, blocks }),
                0..8
            )
            .prop_map(ResponseKind::Listing),
            (
                any::<u64>(),
                prop::collection::vec(
                    (arb_tag(), any::<u32>(), any::<u32>(), "[a-z0-9/._]{0,20}").prop_map(
                        |(tag, first_blkno, blocks, path)| SegmentEntry {
                            path,
                            tag,
                            first_blkno,
                            blocks
                        }
                    ),
                    0..4
                ),
                prop::collection::vec(any::<u8>(), 0..64)
            )
                .prop_map(|(lsn, segments, tar)| ResponseKind::LazyBasebackup(
                    LazyBackup {
                        lsn: Lsn(lsn),
                        segments,
                        tar: Bytes::from(tar)
                    }
                )),
            ("[0-9A-Z]{5}", ".*")
                .prop_map(|(sqlstate, message)| ResponseKind::Error { sqlstate, message }),
        ];
        (any::<u32>(), kind).prop_map(|(id, kind)| Response { id, kind })
    }

    proptest! {
        #[test]
        fn requests_round_trip(req in arb_request()) {
            let mut b = BytesMut::new();
            req.encode(&mut b);
            prop_assert_eq!(Request::decode(&b).unwrap(), req);
        }

        #[test]
        fn responses_round_trip(resp in arb_response()) {
            let mut b = BytesMut::new();
            resp.encode(&mut b);
            prop_assert_eq!(b.len(), resp.encoded_len());
            prop_assert_eq!(Response::decode(&b).unwrap(), resp);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Request::decode(&bytes);
            let _ = Response::decode(&bytes);
        }

        #[test]
        fn truncated_messages_are_errors(req in arb_request(), cut in 1usize..8) {
            let mut b = BytesMut::new();
            req.encode(&mut b);
            let keep = b.len().saturating_sub(cut);
            prop_assert!(Request::decode(&b[..keep]).is_err());
        }
    }

    #[test]
    fn hostile_counts_are_refused_without_allocating() {
        let mut b = BytesMut::new();
        b.put_u8(b's');
        b.put_u32(1);
        b.put_u32(u32::MAX);
        assert!(Response::decode(&b).is_err());
        let mut b = BytesMut::new();
        b.put_u8(b'R');
        b.put_u32(1);
        b.put_u64(0);
        put_tag(
            &mut b,
            &RelTag {
                rel: RelFileNode {
                    spc_node: 1663,
                    db_node: 5,
                    rel_node: 1259,
                },
                fork: ForkNumber::Main,
            },
        );
        b.put_u32(0);
        b.put_u32(MAX_RANGE_PAGES + 1);
        assert!(Request::decode(&b).is_err());
    }
}
