//! Typed bodies of sequence records (PG15 layouts). Owned by the native-redo work.
