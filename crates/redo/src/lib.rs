//! Native redo for PostgreSQL 15 resource managers (no I/O): given the previous
//! version of a page and a decoded WAL record, produce the next version.
//! Also owns page masking, equal in effect to what Postgres masks when it
//! checks WAL consistency. Work in progress; see issue "native redo".
