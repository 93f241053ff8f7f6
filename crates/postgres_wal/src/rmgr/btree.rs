//! Typed bodies of btree records (PG15 layouts). Owned by the native-redo work.
