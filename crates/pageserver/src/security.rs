//! The pageserver's security settings, resolved once at startup: the JWT
//! keys (if configured), which listeners require a token, and the TLS
//! acceptor (if a certificate and key are configured).
//!
//! Misconfiguration is a startup error naming the setting: auth turned on
//! without keys, a certificate without its key, unreadable PEM files.

use std::path::{Path, PathBuf};

use auth::JwtAuth;
use tokio_rustls::TlsAcceptor;

use crate::config::{AuthType, PageServerConf};

/// Why the security settings are unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityError {
    /// Auth is on but no key path is configured.
    #[error("{0} = \"jwt\" needs auth_validation_public_key_path")]
    NoKeyPath(&'static str),
    /// The keys could not be loaded.
    #[error(transparent)]
    Keys(#[from] auth::AuthError),
    /// Only one of the certificate and the key is configured.
    #[error("TLS needs both ssl_cert_file and ssl_key_file")]
    HalfTls,
    /// The certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] auth::tls::TlsError),
}

/// Resolved security settings.
#[derive(Clone, Default)]
pub struct Security {
    /// The JWT validator, when keys are configured.
    pub jwt: Option<JwtAuth>,
    /// Whether the management API requires a token.
    pub http_auth: bool,
    /// Whether the page service requires a token as the password.
    pub pg_auth: bool,
    /// TLS for both listeners, when configured.
    pub tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("jwt", &self.jwt)
            .field("http_auth", &self.http_auth)
            .field("pg_auth", &self.pg_auth)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Security {
    /// Resolves `conf`; relative paths are relative to `workdir`.
    pub fn from_conf(conf: &PageServerConf, workdir: &Path) -> Result<Security, SecurityError> {
        let resolve = |path: &PathBuf| workdir.join(path);
        let jwt = conf
            .auth_validation_public_key_path
            .as_ref()
            .map(|path| JwtAuth::load(&resolve(path)))
            .transpose()?;
        let http_auth = conf.http_auth_type == AuthType::Jwt;
        let pg_auth = conf.pg_auth_type == AuthType::Jwt;
        if jwt.is_none() && http_auth {
            return Err(SecurityError::NoKeyPath("http_auth_type"));
        }
        if jwt.is_none() && pg_auth {
            return Err(SecurityError::NoKeyPath("pg_auth_type"));
        }
        let tls = match (&conf.ssl_cert_file, &conf.ssl_key_file) {
            (Some(cert), Some(key)) => Some(auth::tls::acceptor(&resolve(cert), &resolve(key))?),
            (None, None) => None,
            _ => return Err(SecurityError::HalfTls),
        };
        Ok(Security {
            jwt,
            http_auth,
            pg_auth,
            tls,
        })
    }
}
