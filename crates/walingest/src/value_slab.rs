//! Memory for the small values ingest stores (a stored record per block,
//! the checkpoint), handed out from shared chunks.
//!
//! Ingest makes one or two such values per record, a few dozen bytes to a
//! few hundred each. Allocated one by one they cost a `malloc` each on the
//! ingesting thread and a `free` each on whichever thread drops the open
//! layer after flushing it (a glibc free of another thread's memory takes
//! that arena's lock). Cut from 64 KiB chunks they cost a reference count
//! each. A chunk lives until its last value is dropped; the values of one
//! chunk are ingested together and go into the same open layer (or two
//! adjacent ones), so they are dropped together too.

use bytes::{Bytes, BytesMut};

/// Bytes allocated at a time.
const CHUNK_BYTES: usize = 64 * 1024;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct ValueSlab {
    /// Free room of the current chunk (its values already cut off).
    free: BytesMut,
}

impl ValueSlab {
    /// A buffer with room for `len` bytes to append the next value to
    /// before [`ValueSlab::take`]. It is empty unless a value was left
    /// untaken.
    pub fn room(&mut self, len: usize) -> &mut BytesMut {
        if self.free.capacity() - self.free.len() < len {
            let mut chunk = BytesMut::with_capacity((self.free.len() + len).max(CHUNK_BYTES));
            chunk.extend_from_slice(&self.free);
            self.free = chunk;
        }
        &mut self.free
    }

    /// The bytes appended since the last call, as a value.
    pub fn take(&mut self) -> Bytes {
        self.free.split().freeze()
    }

    /// `bytes` as a value.
    pub fn copy(&mut self, bytes: &[u8]) -> Bytes {
        self.room(bytes.len()).extend_from_slice(bytes);
        self.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_cut_from_one_chunk_until_it_is_full() {
        let mut slab = ValueSlab::default();
        let a = slab.copy(b"first");
        let b = slab.copy(b"second value");
        assert_eq!((&a[..], &b[..]), (&b"first"[..], &b"second value"[..]));
        // Adjacent in one allocation.
        assert_eq!(a.as_ptr().wrapping_add(a.len()), b.as_ptr());
        // A value larger than a chunk gets a chunk of its own.
        let big = slab.copy(&vec![7u8; CHUNK_BYTES + 1]);
        assert_eq!(big.len(), CHUNK_BYTES + 1);
        assert!(big.iter().all(|&x| x == 7));
        // Dropping the others leaves each value intact.
        drop((a, big));
        assert_eq!(&b[..], b"second value");
        let c = slab.copy(b"");
        assert!(c.is_empty());
    }

    #[test]
    fn a_value_being_written_moves_with_its_bytes_to_a_new_chunk() {
        let mut slab = ValueSlab::default();
        let filler = slab.copy(&vec![1u8; CHUNK_BYTES - 3]);
        slab.room(2).extend_from_slice(b"ab");
        slab.room(10).extend_from_slice(b"cdefghijkl");
        let value = slab.take();
        assert_eq!(&value[..], b"abcdefghijkl");
        assert_eq!(filler.len(), CHUNK_BYTES - 3);
    }
}
