//! Typed bodies of heap records (PG15 layouts). Owned by the native-redo work.
