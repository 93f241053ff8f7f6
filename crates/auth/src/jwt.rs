//! Bearer-token validation.
//!
//! Tokens are JWTs signed with EdDSA (Ed25519) or RS256. The public keys come
//! from one configured path: a PEM file, or a directory whose every regular
//! file is a PEM public key (so a key can be rotated by adding the new one,
//! reloading, then removing the old one). Keys are swapped atomically on
//! reload; a reload that finds no key keeps the old set and fails.
//!
//! Claims: `scope` is `pageserverapi` (every operation) or `tenant` (with a
//! `tenant_id`, only that tenant's resources); `exp`, when present, is
//! enforced. Which error means which HTTP status: [`AuthError::is_forbidden`]
//! → 403, any other validation failure → 401.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Everything the pageserver offers.
    #[serde(rename = "pageserverapi")]
    PageServerApi,
    /// One tenant's resources (the `tenant_id` claim).
    Tenant,
}

impl std::str::FromStr for Scope {
    type Err = AuthError;
    fn from_str(text: &str) -> Result<Scope, AuthError> {
        match text {
            "pageserverapi" => Ok(Scope::PageServerApi),
            "tenant" => Ok(Scope::Tenant),
            other => Err(AuthError::Invalid(format!(
                "unknown scope {other:?}: expected pageserverapi or tenant"
            ))),
        }
    }
}

/// The claims this project reads from a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// What the token allows.
    pub scope: Scope,
    /// The tenant (hex) a `tenant` token is confined to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Expiry, seconds since the Unix epoch; absent means no expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
}

impl Claims {
    /// A `pageserverapi` token's claims.
    pub fn pageserver_api() -> Claims {
        Claims {
            scope: Scope::PageServerApi,
            tenant_id: None,
            exp: None,
        }
    }

    /// A `tenant` token's claims for `tenant_id` (hex).
    pub fn tenant(tenant_id: impl Into<String>) -> Claims {
        Claims {
            scope: Scope::Tenant,
            tenant_id: Some(tenant_id.into()),
            exp: None,
        }
    }

    /// Whether these claims reach `tenant` (`None`: an operation that is not
    /// about one tenant, which only `pageserverapi` may call).
    pub fn check_tenant(&self, tenant: Option<&str>) -> Result<(), AuthError> {
        match (self.scope, tenant) {
            (Scope::PageServerApi, _) => Ok(()),
            (Scope::Tenant, None) => Err(AuthError::Forbidden(
                "a tenant-scoped token cannot call an operation that is not about its tenant"
                    .to_owned(),
            )),
            (Scope::Tenant, Some(wanted)) => match &self.tenant_id {
                Some(own) if own.eq_ignore_ascii_case(wanted) => Ok(()),
                Some(own) => Err(AuthError::Forbidden(format!(
                    "the token is for tenant {own}, not {wanted}"
                ))),
                None => Err(AuthError::Forbidden(
                    "the tenant-scoped token has no tenant_id claim".to_owned(),
                )),
            },
        }
    }
}

/// Why a token or key set was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token was given.
    #[error("missing authorization: send `Authorization: Bearer <JWT>`")]
    Missing,
    /// The token is malformed, badly signed or signed by an unknown key.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token's `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// The token is valid but does not allow this operation.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A key file could not be read.
    #[error("cannot read key {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file is not a usable PEM key.
    #[error("{path} is not an Ed25519 or RSA public key in PEM form: {reason}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The configured path holds no key.
    #[error("no public key found in {0}")]
    NoKeys(PathBuf),
}

impl AuthError {
    /// Whether this is "valid token, not allowed" (HTTP 403) rather than
    /// "not authenticated" (HTTP 401).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, AuthError::Forbidden(_))
    }
}

/// One loaded public key.
struct PublicKey {
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Validates tokens against the keys under one path; cheap to share.
#[derive(Clone)]
pub struct JwtAuth {
    path: PathBuf,
    keys: Arc<RwLock<Arc<Vec<PublicKey>>>>,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("path", &self.path)
            .field("keys", &self.keys.read().len())
            .finish()
    }
}

impl JwtAuth {
    /// Loads the keys under `path` (a PEM file or a directory of them).
    pub fn load(path: &Path) -> Result<JwtAuth, AuthError> {
        let keys = load_keys(path)?;
        Ok(JwtAuth {
            path: path.to_path_buf(),
            keys: Arc::new(RwLock::new(Arc::new(keys))),
        })
    }

    /// Where the keys come from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the keys; on failure the previous set stays in force.
    /// Returns how many keys are now loaded.
    pub fn reload(&self) -> Result<usize, AuthError> {
        let keys = load_keys(&self.path)?;
        let count = keys.len();
        *self.keys.write() = Arc::new(keys);
        Ok(count)
    }

    /// Validates `token` and returns its claims.
    pub fn decode(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| AuthError::Invalid(error.to_string()))?;
        if !matches!(header.alg, Algorithm::EdDSA | Algorithm::RS256) {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not accepted (EdDSA or RS256)",
                header.alg
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = true;
        validation.leeway = 0;
        // Clone the Arc so verification runs without holding the lock.
        let keys = Arc::clone(&self.keys.read());
        let mut last_error = AuthError::Invalid("no key of the token's algorithm".to_owned());
        for key in keys.iter().filter(|key| key.algorithm == header.alg) {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(error) => {
                    last_error = match error.kind() {
                        jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                        _ => AuthError::Invalid(error.to_string()),
                    };
                    if matches!(last_error, AuthError::Expired) {
                        return Err(last_error);
                    }
                }
            }
        }
        Err(last_error)
    }

    /// Validates an `Authorization` header value (`Bearer <token>`).
    pub fn decode_bearer(&self, header: Option<&str>) -> Result<Claims, AuthError> {
        let value = header.ok_or(AuthError::Missing)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                AuthError::Invalid("the Authorization header is not `Bearer <token>`".to_owned())
            })?;
        self.decode(token.trim())
    }
}

/// Reads every key under `path`.
fn load_keys(path: &Path) -> Result<Vec<PublicKey>, AuthError> {
    let io = |source| AuthError::Io {
        path: path.to_path_buf(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(io)?;
    let mut files = Vec::new();
    if metadata.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io)? {
            let entry = entry.map_err(io)?;
            let file = entry.path();
            // Hidden files are editor/backup droppings, not keys.
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if file.is_file() && !hidden {
                files.push(file);
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut keys = Vec::new();
    for file in files {
        keys.push(load_key(&file)?);
    }
    if keys.is_empty() {
        return Err(AuthError::NoKeys(path.to_path_buf()));
    }
    Ok(keys)
}

/// Reads one PEM public key, Ed25519 or RSA.
fn load_key(file: &Path) -> Result<PublicKey, AuthError> {
    let pem = std::fs::read(file).map_err(|source| AuthError::Io {
        path: file.to_path_buf(),
        source,
    })?;
    if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
        return Ok(PublicKey {
            algorithm: Algorithm::EdDSA,
            key,
        });
    }
    DecodingKey::from_rsa_pem(&pem)
        .map(|key| PublicKey {
            algorithm: Algorithm::RS256,
            key,
        })
        .map_err(|error| AuthError::BadKey {
            path: file.to_path_buf(),
            reason: error.to_string(),
        })
}
