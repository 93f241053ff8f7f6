//! Fetching a base backup of a timeline at an LSN (or at its head) from the
//! page service with stock `pg_basebackup`.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

use crate::workdir::Workdir;

/// Fetches the base backup into `pgdata` (which must not exist yet); at the
/// timeline's head when `lsn` is `None`.
pub fn fetch(
    workdir: &Workdir,
    tenant: &str,
    timeline: &str,
    lsn: Option<&str>,
    pgdata: &Path,
) -> anyhow::Result<()> {
    let (host, port) = workdir
        .config
        .pageserver
        .pg_addr
        .rsplit_once(':')
        .context("the page service address has no port")?;
    let mut connstr = connection_string(host, port, tenant, timeline, lsn);
    if let Some(ca) = crate::security::ca_file(workdir) {
        connstr.push_str(&format!(
            " sslmode=verify-full sslrootcert='{}'",
            ca.display()
        ));
    }
    let mut command = Command::new(workdir.config.pg_bin_dir.join("pg_basebackup"));
    // The page service takes a JWT as the password (confined to the tenant).
    if let Some(token) = crate::security::own_token(
        workdir,
        auth::Claims::tenant(tenant),
        crate::security::OWN_TOKEN_LIFETIME,
    )? {
        command.env("PGPASSWORD", token);
    }
    let output = command
        .arg("-d")
        .arg(&connstr)
        .arg("-D")
        .arg(pgdata)
        .args(["-F", "p", "-X", "none", "--no-manifest", "--no-sync"])
        .output()
        .context("cannot run pg_basebackup")?;
    if !output.status.success() {
        // pg_basebackup does not print an error that arrives mid-COPY; the
        // pageserver keeps corruption in the timeline's status.
        if let Some(corruption) = corruption_error(workdir, tenant, timeline) {
            bail!("the pageserver found corrupt data: {corruption}");
        }
        bail!(
            "pg_basebackup from the page service failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The timeline's last corruption error, if the pageserver reports one.
fn corruption_error(workdir: &Workdir, tenant: &str, timeline: &str) -> Option<String> {
    let client = crate::client::ApiClient::for_workdir(workdir).ok()?;
    client
        .timeline_info(tenant, timeline)
        .ok()?
        .corruption_error
}

/// The libpq connection string that selects tenant, timeline and LSN on the
/// page service (no LSN: the head).
pub fn connection_string(
    host: &str,
    port: &str,
    tenant: &str,
    timeline: &str,
    lsn: Option<&str>,
) -> String {
    let lsn = lsn
        .map(|lsn| format!(" -c sediment.lsn={lsn}"))
        .unwrap_or_default();
    format!(
        "host={host} port={port} user=postgres dbname=postgres options='-c sediment.tenant={tenant} -c sediment.timeline={timeline}{lsn}'"
    )
}
