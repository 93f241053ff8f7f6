//! Restoring full-page images (`RestoreBlockImage`): undo pglz, lz4 or zstd
//! compression, then put the "hole" (the unused middle of the page, left
//! out of the WAL) back as zeros, giving exactly `BLCKSZ` bytes.

use crate::decode::{
    ImageHeader, BKPIMAGE_COMPRESS_LZ4, BKPIMAGE_COMPRESS_PGLZ, BKPIMAGE_COMPRESS_ZSTD,
};
use crate::pglz::{self, PglzError};
use crate::record::BLCKSZ;

/// Why an image could not be restored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    #[error("pglz: {0}")]
    Pglz(#[from] PglzError),
    #[error("lz4: {0}")]
    Lz4(String),
    #[error("zstd: {0}")]
    Zstd(String),
    #[error("decompressed to {produced} bytes, expected {expected}")]
    WrongLength { produced: usize, expected: usize },
    #[error("image of {stored} bytes with a hole at {hole_offset} does not fit a page")]
    BadHole { stored: usize, hole_offset: usize },
}

/// Restores the page from the `stored` image bytes described by `header`.
pub fn restore_image(stored: &[u8], header: &ImageHeader) -> Result<Vec<u8>, ImageError> {
    let hole_offset = usize::from(header.hole_offset);
    let hole_length = usize::from(header.hole_length);
    let expected = BLCKSZ.checked_sub(hole_length).ok_or(ImageError::BadHole {
        stored: stored.len(),
        hole_offset,
    })?;
    let decompressed;
    let without_hole: &[u8] = if header.info & BKPIMAGE_COMPRESS_PGLZ != 0 {
        decompressed = pglz::decompress(stored, expected)?;
        &decompressed
    } else if header.info & BKPIMAGE_COMPRESS_LZ4 != 0 {
        decompressed = decompress_lz4(stored, expected)?;
        &decompressed
    } else if header.info & BKPIMAGE_COMPRESS_ZSTD != 0 {
        decompressed = decompress_zstd(stored, expected)?;
        &decompressed
    } else {
        stored
    };
    if without_hole.len() != expected || hole_offset > without_hole.len() {
        return Err(ImageError::BadHole {
            stored: without_hole.len(),
            hole_offset,
        });
    }
    let mut page = Vec::with_capacity(BLCKSZ);
    page.extend_from_slice(&without_hole[..hole_offset]);
    page.resize(hole_offset + hole_length, 0);
    page.extend_from_slice(&without_hole[hole_offset..]);
    Ok(page)
}

fn decompress_lz4(stored: &[u8], expected: usize) -> Result<Vec<u8>, ImageError> {
    let mut out = vec![0u8; expected];
    let produced = lz4_flex::block::decompress_into(stored, &mut out)
        .map_err(|e| ImageError::Lz4(e.to_string()))?;
    if produced != expected {
        return Err(ImageError::WrongLength { produced, expected });
    }
    Ok(out)
}

thread_local! {
    /// One zstd decompression context per thread: creating one per image
    /// (what `zstd::bulk::decompress_to_buffer` does) allocates and clears
    /// ~100 KB, which showed as 8% of the pageserver's profile.
    static ZSTD_CONTEXT: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn decompress_zstd(stored: &[u8], expected: usize) -> Result<Vec<u8>, ImageError> {
    let mut out = vec![0u8; expected];
    let produced = ZSTD_CONTEXT
        .with(|cell| {
            let mut slot = cell.borrow_mut();
            let context = match &mut *slot {
                Some(context) => context,
                empty => empty.insert(zstd::bulk::Decompressor::new()?),
            };
            context.decompress_to_buffer(stored, &mut out)
        })
        .map_err(|e| ImageError::Zstd(e.to_string()))?;
    if produced != expected {
        return Err(ImageError::WrongLength { produced, expected });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{BKPIMAGE_APPLY, BKPIMAGE_HAS_HOLE};

    fn sample_page() -> Vec<u8> {
        let mut page: Vec<u8> = (0..BLCKSZ).map(|i| (i % 251) as u8).collect();
        page[100..8000].fill(0);
        page
    }

    fn header(info: u8, stored: usize, hole: Option<(u16, u16)>) -> ImageHeader {
        let (hole_offset, hole_length) = hole.unwrap_or((0, 0));
        ImageHeader {
            stored_len: stored as u16,
            hole_offset,
            hole_length,
            info,
        }
    }

    fn without_hole(page: &[u8]) -> Vec<u8> {
        [&page[..100], &page[8000..]].concat()
    }

    #[test]
    fn uncompressed_image_with_hole() {
        let page = sample_page();
        let stored = without_hole(&page);
        let h = header(
            BKPIMAGE_HAS_HOLE | BKPIMAGE_APPLY,
            stored.len(),
            Some((100, 7900)),
        );
        assert_eq!(restore_image(&stored, &h).unwrap(), page);
    }

    #[test]
    fn each_compression_restores_the_page() {
        let page = sample_page();
        let raw = without_hole(&page);
        let hole = Some((100, 7900));
        let lz4 = lz4_flex::block::compress(&raw);
        let zst = zstd::bulk::compress(&raw, 3).unwrap();
        let pglz = crate::pglz::compress_for_tests(&raw);
        for (flag, data) in [
            (BKPIMAGE_COMPRESS_LZ4, lz4),
            (BKPIMAGE_COMPRESS_ZSTD, zst),
            (BKPIMAGE_COMPRESS_PGLZ, pglz),
        ] {
            let h = header(flag | BKPIMAGE_HAS_HOLE, data.len(), hole);
            assert_eq!(restore_image(&data, &h).unwrap(), page, "flag {flag:x}");
            // A damaged stream must be an error, not a panic or a wrong page.
            let mut bad = data.clone();
            bad.truncate(bad.len() / 2);
            assert!(restore_image(&bad, &h).is_err(), "flag {flag:x}");
        }
    }

    #[test]
    fn full_page_without_hole() {
        let page = sample_page();
        let h = header(0, BLCKSZ, None);
        assert_eq!(restore_image(&page, &h).unwrap(), page);
        let h = header(BKPIMAGE_COMPRESS_LZ4, 10, None);
        assert!(restore_image(&[0u8; 10], &h).is_err());
    }
}
