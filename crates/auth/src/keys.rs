//! Key generation and token signing for the CLI.
//!
//! `sediment init --auth` makes an Ed25519 key pair: the private key (PKCS#8
//! PEM) stays with the CLI, the public key (SubjectPublicKeyInfo PEM) goes in
//! the pageserver's key directory. Tokens are signed with EdDSA, or RS256
//! when given an RSA private key.

use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::KeyPair as _;

use crate::jwt::Claims;

/// Why a key could not be made or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Key generation failed in the crypto library.
    #[error("cannot generate a key pair: {0}")]
    Generate(String),
    /// The private key file could not be read.
    #[error("cannot read private key {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The private key is not an Ed25519 or RSA PEM key.
    #[error("{path} is not an Ed25519 or RSA private key in PEM form")]
    BadKey {
        /// The file.
        path: PathBuf,
    },
    /// Signing failed.
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

/// A freshly generated key pair, both halves PEM text.
#[derive(Debug, Clone)]
pub struct GeneratedKeyPair {
    /// PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`).
    pub private_pem: String,
    /// SubjectPublicKeyInfo public key (`-----BEGIN PUBLIC KEY-----`).
    pub public_pem: String,
}

/// The fixed DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the
/// algorithm identifier 1.3.101.112 and a 32-byte bit string follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Generates an Ed25519 key pair.
pub fn generate_ed25519() -> Result<GeneratedKeyPair, KeyError> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|error| KeyError::Generate(error.to_string()))?;
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|error| KeyError::Generate(error.to_string()))?;
    let mut spki = ED25519_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    Ok(GeneratedKeyPair {
        private_pem: pem_encode("PRIVATE KEY", pkcs8.as_ref()),
        public_pem: pem_encode("PUBLIC KEY", &spki),
    })
}

/// Signs `claims` with the private key in `pem` (Ed25519 → EdDSA, RSA →
/// RS256). `source` names the key in errors.
pub fn sign(pem: &[u8], source: &Path, claims: &Claims) -> Result<String, KeyError> {
    let (algorithm, key) = if let Ok(key) = EncodingKey::from_ed_pem(pem) {
        (Algorithm::EdDSA, key)
    } else if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
        (Algorithm::RS256, key)
    } else {
        return Err(KeyError::BadKey {
            path: source.to_path_buf(),
        });
    };
    jsonwebtoken::encode(&Header::new(algorithm), claims, &key)
        .map_err(|error| KeyError::Sign(error.to_string()))
}

/// Reads the private key at `path` and signs `claims` with it.
pub fn sign_with_file(path: &Path, claims: &Claims) -> Result<String, KeyError> {
    let pem = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    sign(&pem, path, claims)
}

/// PEM armour around DER bytes.
fn pem_encode(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der.to_vec()))
}
