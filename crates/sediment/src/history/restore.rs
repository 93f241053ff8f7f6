//! `sediment table restore TABLE --at TIME | --lsn LSN [--as NEW_NAME]
//! [--branch B]`: one table (with its indexes, constraints and owned
//! sequences) as of a past point, loaded into the branch's running writable
//! endpoint in one transaction.
//!
//! How: a temporary read-only endpoint at the point (lazy: only the pages
//! the dump reads are fetched), `pg_dump -t` of the table from it, then
//! `psql --single-transaction` into the live endpoint — dropping the live
//! table first (refused when a view or a foreign key of another table
//! depends on it, rather than dropping those silently), or, with `--as`,
//! after renaming the table, its indexes, constraints and owned sequences
//! inside the temporary endpoint (whose writes go nowhere). Every other
//! table is left alone. The temporary endpoint is always destroyed.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use clap::Args;
use postgres_wal::Lsn;
use serde_json::json;

use crate::client::ApiClient;
use crate::endpoint::{self, EndpointState};
use crate::output::Output;
use crate::workdir::Workdir;

/// Arguments of `table restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The table: `name` (schema public) or `schema.name`, as stored
    /// (case-sensitive).
    table: String,
    /// The point as a time (2026-11-21T10:00:00Z or '2026-11-21 10:00:00+00').
    #[arg(long, conflicts_with = "lsn", required_unless_present = "lsn")]
    at: Option<String>,
    /// The point as an LSN (0/16B9188).
    #[arg(long)]
    lsn: Option<String>,
    /// Restore under this name (same schema) instead of replacing the table.
    #[arg(long = "as", value_name = "NEW_NAME")]
    new_name: Option<String>,
    /// Branch whose running writable endpoint receives the table.
    #[arg(long, default_value = "main")]
    branch: String,
    /// Tenant (default: the default tenant).
    #[arg(long)]
    tenant_id: Option<String>,
}

/// `schema.name`, both parts validated plain identifiers.
struct TableName {
    schema: String,
    name: String,
}

impl TableName {
    fn parse(text: &str) -> anyhow::Result<TableName> {
        let (schema, name) = text.split_once('.').unwrap_or(("public", text));
        for part in [schema, name] {
            check_identifier(part).with_context(|| format!("table {text:?}"))?;
        }
        Ok(TableName {
            schema: schema.to_owned(),
            name: name.to_owned(),
        })
    }

    /// `"schema"."name"`.
    fn quoted(&self) -> String {
        format!("\"{}\".\"{}\"", self.schema, self.name)
    }

    /// As a SQL string literal of the quoted name (for `::regclass`).
    fn literal(&self) -> String {
        format!("'{}'", self.quoted())
    }

    fn display(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// Letters, digits, `_` and `$`, not starting with a digit, at most 63
/// bytes: names that need no escaping anywhere we put them.
fn check_identifier(part: &str) -> anyhow::Result<()> {
    let ok = !part.is_empty()
        && part.len() <= 63
        && !part.starts_with(|c: char| c.is_ascii_digit())
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if !ok {
        bail!("{part:?} is not a plain identifier (letters, digits, _ and $, at most 63 bytes)");
    }
    Ok(())
}

/// Runs `table restore`.
pub fn run(workdir: &Workdir, args: RestoreArgs, out: &Output) -> anyhow::Result<()> {
    let client = ApiClient::for_workdir(workdir)?;
    let table = TableName::parse(&args.table)?;
    if let Some(new_name) = &args.new_name {
        check_identifier(new_name).context("--as")?;
    }
    let tenant = workdir.tenant(args.tenant_id.as_deref())?;
    let timeline = workdir.branch_timeline(&tenant, &args.branch)?;
    let live = live_endpoint(workdir, &timeline, &args.branch)?;
    let lsn = match (&args.lsn, &args.at) {
        (Some(lsn), _) => lsn
            .parse::<Lsn>()
            .with_context(|| format!("--lsn {lsn:?}"))?,
        (None, Some(at)) => super::resolve_point(&client, &tenant, &timeline, &args.branch, at)?,
        (None, None) => bail!("give the point with --at TIME or --lsn LSN"),
    };
    check_readable(&client, &tenant, &timeline, &args.branch, lsn)?;
    let target = match &args.new_name {
        Some(new_name) => TableName {
            schema: table.schema.clone(),
            name: new_name.clone(),
        },
        None => TableName {
            schema: table.schema.clone(),
            name: table.name.clone(),
        },
    };
    let replace = exists(workdir, live.port, &target)?;
    if replace && args.new_name.is_some() {
        bail!(
            "{} already exists; choose another --as name",
            target.display()
        );
    }
    if replace {
        refuse_dependents(workdir, live.port, &target)?;
    }
    let temp = TempEndpoint::start(workdir, &args, &tenant, lsn)?;
    let dump = temp.dump(&table, args.new_name.as_deref(), lsn)?;
    load(workdir, live.port, &target, replace, &dump)?;
    drop(temp);
    let rows: u64 = endpoint::query(
        workdir,
        live.port,
        &format!("SELECT count(*) FROM {}", target.quoted()),
    )?
    .parse()
    .context("counting the restored rows")?;
    out.print(
        &format!(
            "restored {} as of {lsn} into endpoint {}{}: {rows} rows",
            table.display(),
            live.name,
            args.new_name
                .as_ref()
                .map(|n| format!(" as {}.{n}", target.schema))
                .unwrap_or_default()
        ),
        &json!({"table": table.display(), "restored_as": target.display(), "lsn": lsn.to_string(),
                "endpoint": live.name, "replaced": replace, "rows": rows}),
    );
    Ok(())
}

/// The running writable endpoint of the branch.
fn live_endpoint(workdir: &Workdir, timeline: &str, branch: &str) -> anyhow::Result<EndpointState> {
    endpoint::list_states(workdir)
        .into_iter()
        .find(|s| s.writable && s.running && s.timeline_id == timeline)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "branch {branch:?} has no running writable endpoint to restore into; start one with `sediment endpoint start NAME --branch-name {branch}`"
            )
        })
}

/// Refuses points below the GC cutoff or beyond the head.
fn check_readable(
    client: &ApiClient,
    tenant: &str,
    timeline: &str,
    branch: &str,
    lsn: Lsn,
) -> anyhow::Result<()> {
    let info = client.timeline_info(tenant, timeline)?;
    let cutoff = info.latest_gc_cutoff_lsn;
    if lsn < cutoff {
        bail!("LSN {lsn} is below the GC cutoff {cutoff} of branch {branch:?}: that history has been garbage-collected");
    }
    let head = info.last_record_lsn;
    if lsn > head {
        bail!("LSN {lsn} is beyond the head {head} of branch {branch:?}");
    }
    Ok(())
}

fn exists(workdir: &Workdir, port: u16, table: &TableName) -> anyhow::Result<bool> {
    let sql = format!("SELECT to_regclass({}) IS NOT NULL", table.literal());
    Ok(endpoint::query(workdir, port, &sql)? == "t")
}

/// Views and other tables' foreign keys that would block `DROP TABLE`.
fn refuse_dependents(workdir: &Workdir, port: u16, table: &TableName) -> anyhow::Result<()> {
    let sql = format!(
        "SELECT string_agg(what, ', ' ORDER BY what) FROM ( \
           SELECT DISTINCT 'view ' || v.oid::regclass::text AS what FROM pg_depend d \
             JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class \
            WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = {t}::regclass AND v.oid <> d.refobjid \
           UNION ALL \
           SELECT 'foreign key ' || conname || ' of ' || conrelid::regclass::text FROM pg_constraint \
            WHERE contype = 'f' AND confrelid = {t}::regclass AND conrelid <> confrelid) deps",
        t = table.literal()
    );
    let deps = endpoint::query(workdir, port, &sql)?;
    if !deps.is_empty() {
        bail!(
            "cannot replace {} because {deps} depend on it; drop those first or restore under another name with --as NEW_NAME",
            table.display()
        );
    }
    Ok(())
}

/// Loads the dump in one transaction, dropping the live table first when
/// replacing it.
fn load(
    workdir: &Workdir,
    port: u16,
    target: &TableName,
    replace: bool,
    dump: &Path,
) -> anyhow::Result<()> {
    let mut command = psql(workdir, port);
    command.args(["--single-transaction", "-v", "ON_ERROR_STOP=1"]);
    if replace {
        command
            .arg("-c")
            .arg(format!("DROP TABLE {}", target.quoted()));
    }
    command.arg("-f").arg(dump);
    run_client(&mut command, "loading the table into the endpoint")
}

fn psql(workdir: &Workdir, port: u16) -> Command {
    let mut command = Command::new(workdir.config.pg_bin_dir.join("psql"));
    command
        .args([
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .args(["-p", &port.to_string()])
        .env_remove("PGOPTIONS")
        .env("PGPASSFILE", endpoint::pgpass_file(workdir));
    command
}

fn run_client(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// A read-only endpoint at the point, destroyed when dropped.
struct TempEndpoint<'a> {
    workdir: &'a Workdir,
    state: EndpointState,
}

impl<'a> TempEndpoint<'a> {
    fn start(
        workdir: &'a Workdir,
        args: &RestoreArgs,
        tenant: &str,
        lsn: Lsn,
    ) -> anyhow::Result<Self> {
        let name = format!("restore-{}", std::process::id());
        let state = endpoint::start_read_only(workdir, &name, &args.branch, Some(tenant), lsn)
            .with_context(|| format!("cannot start a temporary endpoint at {lsn}"))?;
        Ok(TempEndpoint { workdir, state })
    }

    /// `pg_dump -t` of the table into the endpoint's directory, after
    /// renaming it (and what hangs off it) to `new_name` if given.
    fn dump(
        &self,
        table: &TableName,
        new_name: Option<&str>,
        lsn: Lsn,
    ) -> anyhow::Result<std::path::PathBuf> {
        let port = self.state.port;
        if !exists(self.workdir, port, table)? {
            bail!("table {} does not exist at {lsn}", table.display());
        }
        let dumped = match new_name {
            Some(new_name) => {
                endpoint::query(self.workdir, port, &rename_sql(table, new_name))
                    .context("renaming the table in the temporary endpoint")?;
                TableName {
                    schema: table.schema.clone(),
                    name: new_name.to_owned(),
                }
            }
            None => TableName {
                schema: table.schema.clone(),
                name: table.name.clone(),
            },
        };
        let dir = self.state.pgdata.parent().unwrap_or(&self.state.pgdata);
        let file = dir.join("restore.sql");
        let mut command = Command::new(self.workdir.config.pg_bin_dir.join("pg_dump"));
        command
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
            .args(["-p", &port.to_string(), "-t", &dumped.quoted(), "-f"])
            .arg(&file)
            .env("PGPASSFILE", endpoint::pgpass_file(self.workdir));
        run_client(&mut command, "pg_dump")?;
        Ok(file)
    }
}

impl Drop for TempEndpoint<'_> {
    fn drop(&mut self) {
        if let Err(error) = endpoint::stop_and_destroy(self.workdir, &self.state.name) {
            eprintln!(
                "warning: cannot remove the temporary endpoint {}: {error:#}",
                self.state.name
            );
        }
    }
}

/// Renames the table, its constraints, indexes and owned sequences (a name
/// containing the old table name gets it replaced, others get the new name
/// as a prefix), so the dump loads next to the live table.
fn rename_sql(table: &TableName, new_name: &str) -> String {
    format!(
        "SET TRANSACTION READ WRITE; \
         DO $$ DECLARE r record; tbl regclass := {lit}::regclass; \
           new_of text; \
         BEGIN \
           FOR r IN SELECT conname AS n FROM pg_constraint WHERE conrelid = tbl LOOP \
             new_of := CASE WHEN position('{old}' in r.n) > 0 THEN replace(r.n, '{old}', '{new}') ELSE '{new}_' || r.n END; \
             EXECUTE format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', tbl, r.n, new_of); \
           END LOOP; \
           FOR r IN SELECT c.oid, c.relname AS n FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                     WHERE i.indrelid = tbl AND position('{new}' in c.relname) = 0 LOOP \
             new_of := CASE WHEN position('{old}' in r.n) > 0 THEN replace(r.n, '{old}', '{new}') ELSE '{new}_' || r.n END; \
             EXECUTE format('ALTER INDEX %s RENAME TO %I', r.oid::regclass, new_of); \
           END LOOP; \
           FOR r IN SELECT c.oid, c.relname AS n FROM pg_depend d JOIN pg_class c ON c.oid = d.objid \
                     WHERE d.refobjid = tbl AND d.deptype IN ('a', 'i') AND c.relkind = 'S' LOOP \
             new_of := CASE WHEN position('{old}' in r.n) > 0 THEN replace(r.n, '{old}', '{new}') ELSE '{new}_' || r.n END; \
             EXECUTE format('ALTER SEQUENCE %s RENAME TO %I', r.oid::regclass, new_of); \
           END LOOP; \
           EXECUTE format('ALTER TABLE %s RENAME TO %I', tbl, '{new}'); \
         END $$;",
        lit = table.literal(),
        old = table.name,
        new = new_name
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_default_to_public_and_refuse_odd_identifiers() {
        let t = TableName::parse("orders").unwrap();
        assert_eq!(t.display(), "public.orders");
        assert_eq!(t.quoted(), "\"public\".\"orders\"");
        assert_eq!(TableName::parse("s1.t_2").unwrap().display(), "s1.t_2");
        for bad in ["", "a.b.c", "x'y", "1abc", "a b", "a\"b"] {
            assert!(TableName::parse(bad).is_err(), "{bad}");
        }
    }
}
