//! A PostgreSQL 15 data directory as versioned keys: import and base backup.
