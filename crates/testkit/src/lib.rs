//! Test harness: throwaway real PostgreSQL 15 clusters in temp directories,
//! run as an unprivileged OS user when the tests run as root.
