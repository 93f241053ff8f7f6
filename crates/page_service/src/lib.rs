//! The Postgres wire-protocol service of the pageserver.
