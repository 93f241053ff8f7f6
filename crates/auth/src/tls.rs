//! rustls configurations from PEM files, and certificate generation.
//!
//! The server side reads a certificate chain and its private key; the client
//! side trusts the CA certificates of one PEM file. Both use the `ring`
//! provider explicitly, so no process-wide default provider has to be
//! installed first. [`generate_ca_and_server_cert`] makes a throwaway CA and
//! a server certificate signed by it (for `init` and tests).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} from {path}: {reason}")]
    Pem {
        /// Certificate, key or CA.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the material (mismatched key, bad certificate).
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// Certificate generation failed.
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |reason: String| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|error| pem_error(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(error.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error("no certificate in the file".to_owned()));
    }
    Ok(certs)
}

/// A server configuration from a certificate chain and its key (PEM files).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = read_certs(cert, "certificate")?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|error| TlsError::Pem {
        what: "private key",
        path: key.to_path_buf(),
        reason: error.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TLS acceptor for [`server_config`].
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    Ok(tokio_rustls::TlsAcceptor::from(server_config(cert, key)?))
}

/// A client configuration trusting the CA certificates in `ca` (PEM).
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca, "CA certificate")? {
        roots.add(cert)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A generated CA and a server certificate it signed, all PEM text.
#[derive(Debug, Clone)]
pub struct GeneratedCerts {
    /// The CA certificate (what clients trust).
    pub ca_cert_pem: String,
    /// The server certificate.
    pub server_cert_pem: String,
    /// The server's private key.
    pub server_key_pem: String,
}

/// Makes a CA and a server certificate for `hosts` (DNS names or IPs).
pub fn generate_ca_and_server_cert(hosts: &[String]) -> Result<GeneratedCerts, TlsError> {
    let generate = |error: rcgen::Error| TlsError::Generate(error.to_string());
    let ca_key = rcgen::KeyPair::generate().map_err(generate)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sediment test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(generate)?;
    let server_key = rcgen::KeyPair::generate().map_err(generate)?;
    let mut server_params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(generate)?;
    server_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sediment pageserver");
    let server_cert = server_params
        .signed_by(&server_key, &ca_cert, &ca_key)
        .map_err(generate)?;
    Ok(GeneratedCerts {
        ca_cert_pem: ca_cert.pem(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
    })
}

impl GeneratedCerts {
    /// Writes `ca.crt`, `server.crt` and `server.key` into `dir` (the key
    /// readable by the owner only) and returns their paths in that order.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<(PathBuf, PathBuf, PathBuf)> {
        let ca = dir.join("ca.crt");
        let cert = dir.join("server.crt");
        let key = dir.join("server.key");
        std::fs::write(&ca, &self.ca_cert_pem)?;
        std::fs::write(&cert, &self.server_cert_pem)?;
        write_private(&key, self.server_key_pem.as_bytes())?;
        Ok((ca, cert, key))
    }
}

/// Writes a secret file with mode 0600.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)
}
