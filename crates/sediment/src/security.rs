//! The CLI's credentials and `sediment token`.
//!
//! `sediment init --auth` makes an Ed25519 key pair: the private key stays in
//! the work directory (`auth_private_key.pem`, mode 0600), the public key
//! goes to `pageserver/auth_public_keys/`, and the pageserver requires a JWT
//! on the management API and the page service. The CLI then signs its own
//! short-lived tokens: `pageserverapi` for API calls, the tenant's scope as
//! the page-service password of `pg_basebackup`.
//!
//! `sediment init --tls` makes a CA and a server certificate for 127.0.0.1
//! and localhost; the pageserver serves both listeners over TLS and the CLI
//! verifies them against that CA (`pageserver/tls/ca.crt`).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use auth::{Claims, Scope};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::output::Output;
use crate::workdir::Workdir;

/// The private key's file name in the work directory.
pub const PRIVATE_KEY_FILE: &str = "auth_private_key.pem";
/// The public keys' directory under the pageserver's work directory.
pub const PUBLIC_KEYS_DIR: &str = "auth_public_keys";
/// Where `init --tls` writes the CA and the server certificate.
pub const TLS_DIR: &str = "tls";
/// How long the tokens the CLI signs for its own calls stay valid.
pub const OWN_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Credentials settings in `sediment.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    /// Private key the CLI signs tokens with (relative to the work
    /// directory); absent when auth is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<PathBuf>,
    /// CA certificate the pageserver's TLS certificate is checked against
    /// (relative to the work directory); absent when TLS is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// Sets up auth and TLS for a new work directory, adding the pageserver's
/// settings to `pageserver_toml`.
pub fn init(
    workdir: &Path,
    auth_on: bool,
    tls_on: bool,
    pageserver_toml: &mut toml::Table,
) -> anyhow::Result<Option<SecuritySettings>> {
    if !auth_on && !tls_on {
        return Ok(None);
    }
    let pageserver_dir = workdir.join("pageserver");
    let mut settings = SecuritySettings {
        private_key: None,
        ca_file: None,
    };
    if auth_on {
        let pair = auth::keys::generate_ed25519().context("cannot generate a key pair")?;
        let keys_dir = pageserver_dir.join(PUBLIC_KEYS_DIR);
        std::fs::create_dir_all(&keys_dir)
            .with_context(|| format!("cannot create {}", keys_dir.display()))?;
        std::fs::write(keys_dir.join("sediment.pem"), &pair.public_pem)
            .with_context(|| format!("cannot write into {}", keys_dir.display()))?;
        let private = workdir.join(PRIVATE_KEY_FILE);
        auth::tls::write_private(&private, pair.private_pem.as_bytes())
            .with_context(|| format!("cannot write {}", private.display()))?;
        pageserver_toml.insert(
            "auth_validation_public_key_path".into(),
            PUBLIC_KEYS_DIR.into(),
        );
        pageserver_toml.insert("http_auth_type".into(), "jwt".into());
        pageserver_toml.insert("pg_auth_type".into(), "jwt".into());
        settings.private_key = Some(PathBuf::from(PRIVATE_KEY_FILE));
    }
    if tls_on {
        let dir = pageserver_dir.join(TLS_DIR);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let certs = auth::tls::generate_ca_and_server_cert(&[
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])?;
        certs
            .write_to(&dir)
            .with_context(|| format!("cannot write certificates into {}", dir.display()))?;
        pageserver_toml.insert(
            "ssl_cert_file".into(),
            format!("{TLS_DIR}/server.crt").into(),
        );
        pageserver_toml.insert(
            "ssl_key_file".into(),
            format!("{TLS_DIR}/server.key").into(),
        );
        settings.ca_file = Some(PathBuf::from("pageserver").join(TLS_DIR).join("ca.crt"));
    }
    Ok(Some(settings))
}

/// A token the CLI signs for itself with `claims`, valid for `lifetime`
/// from now (`None` when auth is off).
pub fn own_token(
    workdir: &Workdir,
    claims: Claims,
    lifetime: Duration,
) -> anyhow::Result<Option<String>> {
    let Some(key) = workdir
        .config
        .security
        .as_ref()
        .and_then(|s| s.private_key.as_ref())
    else {
        return Ok(None);
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = Claims {
        exp: Some(now.saturating_add(lifetime.as_secs())),
        ..claims
    };
    Ok(Some(auth::keys::sign_with_file(
        &workdir.path.join(key),
        &claims,
    )?))
}

/// The CA file the CLI trusts (`None` when TLS is off).
pub fn ca_file(workdir: &Workdir) -> Option<PathBuf> {
    workdir
        .config
        .security
        .as_ref()
        .and_then(|s| s.ca_file.as_ref())
        .map(|ca| workdir.path.join(ca))
}

/// Arguments of `sediment token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// `pageserverapi` (every operation) or `tenant` (one tenant's).
    #[arg(long)]
    scope: String,
    /// The tenant of a `tenant` token.
    #[arg(long)]
    tenant_id: Option<String>,
}

/// `sediment token`: prints a token (the last line of the output).
pub fn token(workdir: &Workdir, args: TokenArgs, out: &Output) -> anyhow::Result<()> {
    let scope: Scope = args.scope.parse().map_err(anyhow::Error::msg)?;
    let claims = match (scope, args.tenant_id) {
        (Scope::PageServerApi, None) => Claims::pageserver_api(),
        (Scope::PageServerApi, Some(_)) => bail!("--tenant-id goes with --scope tenant only"),
        (Scope::Tenant, Some(tenant)) => {
            if tenant.len() != 32 || !tenant.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("--tenant-id must be 32 hex digits, not {tenant:?}");
            }
            Claims::tenant(tenant.to_ascii_lowercase())
        }
        (Scope::Tenant, None) => bail!("--scope tenant needs --tenant-id HEX"),
    };
    let Some(key) = workdir
        .config
        .security
        .as_ref()
        .and_then(|s| s.private_key.as_ref())
    else {
        bail!(
            "auth is not set up in this work directory: initialise it with `sediment init --auth`"
        );
    };
    let token = auth::keys::sign_with_file(&workdir.path.join(key), &claims)?;
    out.print(&token, &json!({ "token": token }));
    Ok(())
}
