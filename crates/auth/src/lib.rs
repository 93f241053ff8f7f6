//! Authentication and transport security shared by the pageserver (HTTP
//! management API and page service) and the `sediment` CLI.
//!
//! - [`jwt`]: validating bearer tokens against public keys loaded from a
//!   configured file or directory (EdDSA and RS256), with the two scopes the
//!   API spec knows (`pageserverapi`, `tenant`), and reloading those keys.
//! - [`keys`]: generating an Ed25519 key pair and signing tokens (what
//!   `sediment init --auth` and `sediment token` use).
//! - [`tls`]: rustls server and client configurations from PEM files, and a
//!   small CA + server certificate generator for setups and tests.
//!
//! No OpenSSL anywhere: JWT and TLS both run on `ring`.

pub mod jwt;
pub mod keys;
pub mod tls;

pub use jwt::{AuthError, Claims, JwtAuth, Scope};
