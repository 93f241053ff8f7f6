//! Tests of the reader against streams produced by [`crate::testwal`]:
//! records of every size, across pages and segments, fed in any chunking,
//! started at page boundaries or record starts, and corrupted byte by byte.

use super::*;
use crate::record::{ForkNumber, RelFileNode};
use crate::testwal::{Placed, TestBlock, WalWriter};
use proptest::prelude::*;

const SEG: u64 = 1 << 20;
const START: Lsn = Lsn(0x0100_0000);

/// A record to write: (main data length, number of blocks, with image).
type Spec = (usize, u8, bool);

fn block(id: u8, image: bool) -> TestBlock {
    let page: Vec<u8> = (0..BLCKSZ).map(|i| (i * 7 % 253) as u8).collect();
    TestBlock {
        block_id: id,
        rel: RelFileNode {
            spc_node: 1663,
            db_node: 5,
            rel_node: 16384 + u32::from(id % 2),
        },
        fork: 0,
        blkno: u32::from(id) * 3,
        will_init: id == 1,
        data: vec![id; usize::from(id) * 5],
        image: image.then_some((page, 200, 7000)),
    }
}

use crate::record::BLCKSZ;

fn write_stream(specs: &[Spec]) -> (WalWriter, Vec<(Placed, Vec<u8>, usize)>) {
    let mut w = WalWriter::new(START, SEG, 7);
    let mut placed = Vec::new();
    for (i, &(len, nblocks, image)) in specs.iter().enumerate() {
        let data: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
        let blocks: Vec<TestBlock> = (0..nblocks).map(|b| block(b, image && b == 0)).collect();
        let p = w.append(10, 0x00, i as u32, &blocks, &data);
        placed.push((p, data, usize::from(nblocks)));
    }
    (w, placed)
}

/// Feeds `bytes` (starting at `start`) in chunks of the given sizes and
/// collects every record until the input is exhausted or an error occurs.
fn decode_chunked(
    start: Lsn,
    bytes: &[u8],
    chunks: &[usize],
) -> (Vec<DecodedRecord>, Option<WalError>) {
    let mut decoder = WalStreamDecoder::new(
        start,
        WalConfig {
            segment_size: SEG,
            system_id: None,
        },
    );
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < bytes.len() {
        let n = chunks
            .get(i % chunks.len().max(1))
            .copied()
            .unwrap_or(bytes.len())
            .max(1);
        let end = (pos + n).min(bytes.len());
        decoder.feed_bytes(&bytes[pos..end]);
        pos = end;
        i += 1;
        loop {
            match decoder.poll_decode() {
                Ok(Some(r)) => out.push(r),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fn check_matches(got: &[DecodedRecord], placed: &[(Placed, Vec<u8>, usize)]) {
    assert_eq!(got.len(), placed.len());
    for (r, (p, data, nblocks)) in got.iter().zip(placed) {
        assert_eq!(r.start_lsn, p.start);
        assert_eq!(r.end_lsn, p.end);
        assert_eq!(&r.main_data, data);
        assert_eq!(r.blocks.len(), *nblocks);
        for b in &r.blocks {
            assert_eq!(b.data, vec![b.block_id; usize::from(b.block_id) * 5]);
            assert_eq!(b.fork, ForkNumber::Main);
            if let Some(img) = &b.image {
                assert_eq!(img.page.len(), BLCKSZ);
                assert!(img.page[200..7200].iter().all(|&x| x == 0));
                assert_eq!(img.page[100], (100 * 7 % 253) as u8);
            }
        }
    }
}

#[test]
fn records_spanning_pages_and_segments_come_back_exactly() {
    let specs: Vec<Spec> = vec![
        (10, 0, false),
        (20_000, 1, true),
        (0, 2, false),
        (8150, 0, false),
        (3 * 1024 * 1024 / 2, 0, false), // longer than a segment
        (5, 3, true),
    ];
    let (mut w, placed) = write_stream(&specs);
    w.pad_to_segment_end();
    let (got, err) = decode_chunked(START, w.bytes(), &[w.bytes().len()]);
    check_matches(&got, &placed);
    let err = err.expect("zero tail ends the WAL");
    assert!(err.is_end_of_wal(), "{err}");
}

#[test]
fn switch_skips_to_the_next_segment() {
    let mut w = WalWriter::new(START, SEG, 7);
    let a = w.append(10, 0, 1, &[], b"before");
    let s = w.append(0, 0x40, 0, &[], &[]);
    let b = w.append(10, 0, 2, &[], b"after");
    assert_eq!(s.end, Lsn(START.0 + SEG));
    assert_eq!(b.start, Lsn(START.0 + SEG + 40));
    let (got, err) = decode_chunked(START, w.bytes(), &[4096]);
    assert!(err.is_none());
    let starts: Vec<Lsn> = got.iter().map(|r| r.start_lsn).collect();
    assert_eq!(starts, vec![a.start, s.start, b.start]);
    assert_eq!(got[1].end_lsn, Lsn(START.0 + SEG));
}

#[test]
fn starting_at_a_page_boundary_skips_the_continued_record() {
    let specs: Vec<Spec> = (0..40).map(|i| (1000 + i * 37, 0, false)).collect();
    let (w, placed) = write_stream(&specs);
    // Page 3 of the stream starts in the middle of some record.
    let page_start = 3 * WAL_PAGE_SIZE as usize;
    let first_after = placed
        .iter()
        .position(|(p, _, _)| p.start.0 >= START.0 + page_start as u64)
        .unwrap();
    let (got, err) = decode_chunked(
        Lsn(START.0 + page_start as u64),
        &w.bytes()[page_start..],
        &[333],
    );
    assert!(err.is_none());
    check_matches(&got, &placed[first_after..]);
}

#[test]
fn starting_at_a_record_start_mid_page() {
    let specs: Vec<Spec> = (0..10).map(|i| (100 + i * 10, 1, false)).collect();
    let (w, placed) = write_stream(&specs);
    let p = placed[4].0.start;
    let offset = (p.0 - START.0) as usize;
    let (got, err) = decode_chunked(p, &w.bytes()[offset..], &[1]);
    assert!(err.is_none());
    check_matches(&got, &placed[4..]);
}

#[test]
fn wrong_prev_link_is_reported_at_the_record() {
    let mut w = WalWriter::new(START, SEG, 7);
    w.append(10, 0, 1, &[], b"one");
    let second = w.append(10, 0, 2, &[], b"two");
    let mut decoder = WalStreamDecoder::new_after(
        second.start,
        Lsn(12345),
        WalConfig {
            segment_size: SEG,
            system_id: None,
        },
    );
    decoder.feed_bytes(&w.bytes()[(second.start.0 - START.0) as usize..]);
    let err = decoder.poll_raw().unwrap_err();
    assert_eq!(err.lsn(), second.start);
    assert!(matches!(
        err,
        WalError::Record {
            source: RecordError::BadPrevLink { .. },
            ..
        }
    ));
}

#[test]
fn wrong_system_id_is_rejected() {
    let mut w = WalWriter::new(START, SEG, 7);
    w.append(10, 0, 1, &[], b"one");
    let mut decoder = WalStreamDecoder::new(
        START,
        WalConfig {
            segment_size: SEG,
            system_id: Some(8),
        },
    );
    decoder.feed_bytes(w.bytes());
    assert!(matches!(
        decoder.poll_raw(),
        Err(WalError::PageHeader {
            source: PageHeaderError::WrongSystemId { .. },
            ..
        })
    ));
}

#[test]
fn segment_decoder_checks_contiguity() {
    let mut w = WalWriter::new(START, SEG, 7);
    w.append(10, 0, 1, &[], b"one");
    w.pad_to_segment_end();
    let mut d = SegmentDecoder::new(WalConfig {
        segment_size: SEG,
        system_id: None,
    });
    d.add_segment(START, w.bytes()).unwrap();
    assert!(matches!(
        d.add_segment(Lsn(START.0 + 2 * SEG), w.bytes()),
        Err(WalError::NonContiguousSegment { .. })
    ));
    assert!(matches!(
        d.add_segment(Lsn(START.0 + SEG), &w.bytes()[..100]),
        Err(WalError::WrongSegmentLength { .. })
    ));
}

fn spec_strategy() -> impl Strategy<Value = Vec<Spec>> {
    proptest::collection::vec(
        (
            prop_oneof![0usize..64, 0usize..300, 7000usize..9000, 0usize..40_000],
            0u8..4,
            any::<bool>(),
        ),
        1..25,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_chunking_yields_exactly_the_records(
        specs in spec_strategy(),
        chunks in proptest::collection::vec(1usize..20_000, 1..8),
    ) {
        let (w, placed) = write_stream(&specs);
        let (got, err) = decode_chunked(START, w.bytes(), &chunks);
        prop_assert!(err.is_none(), "{:?}", err);
        check_matches(&got, &placed);
    }

    #[test]
    fn any_record_byte_corruption_is_an_error(
        specs in spec_strategy(),
        pick in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let (mut w, placed) = write_stream(&specs);
        w.pad_to_segment_end();
        let ranges = w.record_ranges().to_vec();
        let total: usize = ranges.iter().map(|r| r.1).sum();
        let mut k = pick.index(total);
        let mut at = 0;
        for (off, len) in &ranges {
            if k < *len { at = off + k; break; }
            k -= len;
        }
        let mut bytes = w.bytes().to_vec();
        // A zero page after the data, so an inflated length runs into it.
        bytes.resize(bytes.len() + WAL_PAGE_SIZE as usize, 0);
        bytes[at] ^= flip;
        let corrupted_lsn = START.0 + at as u64;
        let victim = placed.iter().rposition(|(p, _, _)| p.start.0 <= corrupted_lsn).unwrap();
        let (got, err) = decode_chunked(START, &bytes, &[4096]);
        // Everything before the damaged record is intact, the damaged one
        // is never returned, and decoding stops with an error.
        prop_assert!(got.len() <= victim, "damaged record returned");
        check_matches(&got, &placed[..got.len()]);
        prop_assert!(err.is_some(), "corruption must stop decoding");
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..20_000),
        start_page in 0u64..4,
        offset in prop_oneof![Just(0u64), 0u64..8192],
    ) {
        let start = Lsn(START.0 + start_page * WAL_PAGE_SIZE + offset);
        let _ = decode_chunked(start, &bytes, &[777]);
    }
}

#[test]
fn feed_with_reads_in_place_and_undoes_failed_reads() {
    let specs: Vec<Spec> = (0..30).map(|i| (500 + i * 300, 1, i % 3 == 0)).collect();
    let (w, placed) = write_stream(&specs);
    let mut decoder = WalStreamDecoder::new(
        START,
        WalConfig {
            segment_size: SEG,
            system_id: None,
        },
    );
    let mut got = Vec::new();
    let mut pos = 0;
    while pos < w.bytes().len() {
        // A failing read must leave no bytes behind.
        let failed: Result<usize, &str> = decoder.feed_with(100, |_| Err("boom"));
        assert!(failed.is_err());
        let n = decoder
            .feed_with(3000, |buf| {
                let n = buf.len().min(w.bytes().len() - pos);
                buf[..n].copy_from_slice(&w.bytes()[pos..pos + n]);
                Ok::<usize, ()>(n)
            })
            .unwrap();
        pos += n;
        while let Some(r) = decoder.poll_decode().unwrap() {
            got.push(r);
        }
    }
    check_matches(&got, &placed);
}
