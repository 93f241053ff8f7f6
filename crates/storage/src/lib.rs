//! The versioned page store: every version of every piece of a Postgres data
//! directory, keyed by LSN, on timelines that branch off each other.
