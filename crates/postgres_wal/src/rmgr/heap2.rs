//! Typed bodies of heap2 records (PG15 layouts). Owned by the native-redo work.
