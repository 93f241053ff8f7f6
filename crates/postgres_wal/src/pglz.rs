//! Decompression of PostgreSQL's own LZ format (`pglz`), used for full-page
//! images when `wal_compression = pglz`.
//!
//! The format is a sequence of groups: one control byte whose bits, lowest
//! first, say whether each of the next (up to) eight items is a literal byte
//! (bit clear) or a back-reference (bit set). A back-reference is two bytes
//! `[LLLL OOOO] [OOOO OOOO]` giving a 12-bit offset into the output already
//! produced and a length of `L + 3`; a length nibble of 15 means one more byte
//! follows that is added to the length (up to 273 in all). References may
//! overlap the bytes they produce, which is how runs are encoded.
//!
//! This is our own implementation written from that description; every bound
//! is checked, so corrupt input yields an error and never a panic.

/// Why a pglz stream could not be decompressed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PglzError {
    #[error("back-reference at input offset {at} is cut off")]
    TruncatedReference { at: usize },
    #[error(
        "back-reference at input offset {at} points {offset} bytes back, only {produced} produced"
    )]
    BadOffset {
        at: usize,
        offset: usize,
        produced: usize,
    },
    #[error("decompressed {produced} bytes, expected {expected}")]
    WrongLength { produced: usize, expected: usize },
    #[error("{unused} input bytes left over after the output was complete")]
    TrailingInput { unused: usize },
}

/// Decompresses `source` into exactly `expected_len` bytes, requiring (like
/// `pglz_decompress(..., check_complete = true)`) that the input is consumed
/// exactly and the output is filled exactly.
pub fn decompress(source: &[u8], expected_len: usize) -> Result<Vec<u8>, PglzError> {
    let mut out: Vec<u8> = Vec::with_capacity(expected_len);
    let mut sp = 0usize;
    while sp < source.len() && out.len() < expected_len {
        let mut control = source[sp];
        sp += 1;
        for _ in 0..8 {
            if sp >= source.len() || out.len() >= expected_len {
                break;
            }
            if control & 1 != 0 {
                sp = copy_reference(source, sp, &mut out, expected_len)?;
            } else {
                out.push(source[sp]);
                sp += 1;
            }
            control >>= 1;
        }
    }
    if out.len() != expected_len {
        return Err(PglzError::WrongLength {
            produced: out.len(),
            expected: expected_len,
        });
    }
    if sp != source.len() {
        return Err(PglzError::TrailingInput {
            unused: source.len() - sp,
        });
    }
    Ok(out)
}

/// Decodes the back-reference at `source[at..]`, appends its bytes (clipped
/// to `limit` output bytes) and returns the input position after it.
fn copy_reference(
    source: &[u8],
    at: usize,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<usize, PglzError> {
    let (first, second) = match (source.get(at), source.get(at + 1)) {
        (Some(&a), Some(&b)) => (a, b),
        _ => return Err(PglzError::TruncatedReference { at }),
    };
    let mut len = usize::from(first & 0x0f) + 3;
    let offset = (usize::from(first & 0xf0) << 4) | usize::from(second);
    let mut next = at + 2;
    if len == 18 {
        let extra = *source
            .get(next)
            .ok_or(PglzError::TruncatedReference { at })?;
        len += usize::from(extra);
        next += 1;
    }
    if offset == 0 || offset > out.len() {
        return Err(PglzError::BadOffset {
            at,
            offset,
            produced: out.len(),
        });
    }
    let len = len.min(limit - out.len());
    let start = out.len() - offset;
    // Byte by byte on purpose: an overlapping reference (offset < len)
    // repeats the bytes it is producing.
    for i in 0..len {
        let byte = out[start + i];
        out.push(byte);
    }
    Ok(next)
}

/// Compresses `data` into the pglz format. Only used by tests (and the
/// synthetic WAL writer) to produce input for [`decompress`]; it makes no
/// attempt at PostgreSQL's compression ratio, only at a valid stream.
#[cfg(any(test, feature = "test-util"))]
pub fn compress_for_tests(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let control_at = out.len();
        out.push(0u8);
        for bit in 0..8 {
            if pos >= data.len() {
                break;
            }
            // Greedy search for the longest match in the last 4095 bytes.
            let window_start = pos.saturating_sub(4095);
            let mut best = (0usize, 0usize);
            for cand in window_start..pos {
                let mut l = 0;
                while l < 273 && pos + l < data.len() && data[cand + l] == data[pos + l] {
                    l += 1;
                }
                if l > best.1 {
                    best = (pos - cand, l);
                }
            }
            if best.1 >= 3 {
                let (offset, len) = best;
                out[control_at] |= 1 << bit;
                if len >= 18 {
                    out.push((((offset >> 4) & 0xf0) | 0x0f) as u8);
                    out.push((offset & 0xff) as u8);
                    out.push((len - 18) as u8);
                } else {
                    out.push((((offset >> 4) & 0xf0) | (len - 3)) as u8);
                    out.push((offset & 0xff) as u8);
                }
                pos += len;
            } else {
                out.push(data[pos]);
                pos += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn literals_and_overlapping_reference() {
        // control 0b0000_0010: literal 'a', then reference offset 1 length 5.
        let src = [0b10, b'a', 0x02, 0x01];
        assert_eq!(decompress(&src, 6).unwrap(), b"aaaaaa");
    }

    #[test]
    fn long_reference_uses_the_extra_length_byte() {
        let src = [0b10, b'x', 0x0f, 0x01, 2];
        assert_eq!(decompress(&src, 21).unwrap(), vec![b'x'; 21]);
    }

    #[test]
    fn corrupt_streams_are_errors() {
        assert!(matches!(
            decompress(&[0b1, 0x00, 0x00], 4),
            Err(PglzError::BadOffset { .. })
        ));
        assert!(matches!(
            decompress(&[0b10, b'a', 0x0f], 10),
            Err(PglzError::TruncatedReference { .. })
        ));
        assert!(matches!(
            decompress(&[0, b'a', b'b'], 1),
            Err(PglzError::TrailingInput { .. })
        ));
        assert!(matches!(
            decompress(&[0, b'a'], 2),
            Err(PglzError::WrongLength { .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trips(data in proptest::collection::vec(prop_oneof![Just(0u8), Just(7u8), any::<u8>()], 0..2000)) {
            let packed = compress_for_tests(&data);
            prop_assert_eq!(decompress(&packed, data.len()).unwrap(), data);
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..300), len in 0usize..1000) {
            let _ = decompress(&data, len);
        }
    }
}
