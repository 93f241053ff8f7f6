//! Fuzz target: arbitrary bytes into the WAL reader and the record decoder.
//!
//! The first input byte picks a mode so that one corpus exercises every
//! layer: the streaming reader (any start position, any chunking), the
//! record decoder on raw bytes, and the decoder plus body parsers on a
//! record whose header and CRC are made valid around the fuzzed body (the
//! CRC would otherwise stop almost every input before block parsing and
//! image decompression).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postgres_wal::decode::{compute_record_crc, decode_record, RecordLayout};
use postgres_wal::rmgr;
use postgres_wal::{Lsn, WalConfig, WalStreamDecoder};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => stream(rest),
        1 => {
            let _ = RecordLayout::parse(rest);
            if let Ok(record) = decode_record(rest, Lsn(0x100_0028), Lsn(0x100_0100)) {
                let _ = rmgr::parse_body(&record);
            }
        }
        _ => valid_header_record(rest),
    }
});

/// Feeds the bytes to a streaming decoder starting at a page boundary or a
/// record start chosen by the input, in chunks whose size it also chooses.
fn stream(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let chunk = usize::from(data[0]) * 64 + 1;
    // Segment 1 of a 16 MB-segment cluster, so that real WAL (the seeds are
    // the start of a fresh cluster's first segment) decodes from a page
    // boundary; odd values start at a record position instead.
    let start = if data[1] & 1 == 0 {
        Lsn(0x100_0000 + u64::from(data[1] / 2) * 8192)
    } else {
        Lsn(0x100_0000 + 40 + u64::from(data[1]) * 8)
    };
    let mut decoder = WalStreamDecoder::new(
        start,
        WalConfig {
            segment_size: 16 << 20,
            system_id: None,
        },
    );
    for piece in data[2..].chunks(chunk) {
        decoder.feed_bytes(piece);
        loop {
            match decoder.poll_decode() {
                Ok(Some(record)) => {
                    let _ = rmgr::parse_body(&record);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// Wraps the bytes in a header with the right length and CRC.
fn valid_header_record(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let (rmid, info) = (data[0] % 24, data[1]);
    let mut record = vec![0u8; 24];
    record.extend_from_slice(&data[2..]);
    let total = record.len() as u32;
    record[0..4].copy_from_slice(&total.to_le_bytes());
    record[16] = info;
    record[17] = rmid;
    let crc = compute_record_crc(&record);
    record[20..24].copy_from_slice(&crc.to_le_bytes());
    if let Ok(record) = decode_record(&record, Lsn(0x100_0028), Lsn(0x100_1000)) {
        let _ = rmgr::parse_body(&record);
    }
}
