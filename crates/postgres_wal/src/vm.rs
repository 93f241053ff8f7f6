//! Visibility-map page layout (`visibilitymap.c` of PG15): where a heap
//! block's two bits live. Owned here, next to the SLRU layouts in
//! [`crate::slru`], so redo (which applies VM changes) and storage (which
//! stores them as derived operations) use one definition.

use crate::record::{BLCKSZ, SIZE_OF_PAGE_HEADER};

/// Bits per heap block (`BITS_PER_HEAPBLOCK`): all-visible and all-frozen.
pub const BITS_PER_HEAP_BLOCK: u32 = 2;
/// Heap blocks per map byte (`HEAPBLOCKS_PER_BYTE`).
pub const HEAP_BLOCKS_PER_BYTE: u32 = 4;
/// Where the bitmap starts on a VM page: after the standard page header
/// (`MAXALIGN(SizeOfPageHeaderData)`, already aligned).
pub const PAGE_HEADER_SIZE: usize = SIZE_OF_PAGE_HEADER;
/// Bytes of map per VM page (`MAPSIZE`).
pub const MAP_SIZE: usize = BLCKSZ - PAGE_HEADER_SIZE;
/// Heap blocks covered by one VM page (`HEAPBLOCKS_PER_PAGE`).
pub const HEAP_BLOCKS_PER_PAGE: u32 = MAP_SIZE as u32 * HEAP_BLOCKS_PER_BYTE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_postgres_15() {
        // HEAPBLOCKS_PER_PAGE for 8 kB pages, as pg_visibility reports it.
        assert_eq!(HEAP_BLOCKS_PER_PAGE, 32672);
        assert_eq!(HEAP_BLOCKS_PER_BYTE * BITS_PER_HEAP_BLOCK, 8);
    }
}
