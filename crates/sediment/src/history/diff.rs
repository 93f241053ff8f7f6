//! `sediment timeline diff --branch B --from LSN|TIME [--to LSN|TIME]`:
//! asks the pageserver's `.../diff` endpoint and prints one line per user
//! relation (system catalogs summarised in one line; all of them in
//! `--json`).

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};

use crate::client::ApiClient;
use crate::output::Output;
use crate::workdir::Workdir;

/// Arguments of `timeline diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Branch to compare on.
    #[arg(long, default_value = "main")]
    branch: String,
    /// Start point: an LSN (0/16B9188) or a time (2026-11-21T10:00:00Z).
    #[arg(long)]
    from: String,
    /// End point (default: the branch head).
    #[arg(long)]
    to: Option<String>,
    /// Tenant (default: the default tenant).
    #[arg(long)]
    tenant_id: Option<String>,
}

/// Runs `timeline diff`.
pub fn run(
    workdir: &Workdir,
    client: &ApiClient,
    args: DiffArgs,
    out: &Output,
) -> anyhow::Result<()> {
    let tenant = workdir.tenant(args.tenant_id.as_deref())?;
    let timeline = workdir.branch_timeline(&tenant, &args.branch)?;
    let from = super::resolve_point(client, &tenant, &timeline, &args.branch, &args.from)?;
    let mut path = format!("/v1/tenant/{tenant}/timeline/{timeline}/diff?from={from}");
    if let Some(to) = &args.to {
        let to = super::resolve_point(client, &tenant, &timeline, &args.branch, to)?;
        path.push_str(&format!("&to={to}"));
    }
    let diff = client
        .get(&path)
        .with_context(|| format!("cannot diff branch {:?}", args.branch))?;
    out.print(
        &render(&args.branch, &diff),
        &json!({"branch": args.branch, "diff": diff}),
    );
    Ok(())
}

/// The human text: user relations one per line, catalogs summed up.
fn render(branch: &str, diff: &Value) -> String {
    let empty = Vec::new();
    let relations = diff["relations"].as_array().unwrap_or(&empty);
    let mut lines = vec![format!(
        "branch {branch}: changes in ({}, {}]",
        diff["from"].as_str().unwrap_or("?"),
        diff["to"].as_str().unwrap_or("?")
    )];
    let (system, user): (Vec<&Value>, Vec<&Value>) = relations
        .iter()
        .partition(|r| r["system"].as_bool().unwrap_or(false));
    for r in &user {
        lines.push(format!(
            "  {:<9} {}  {}  {} pages, {}  (blocks {} -> {})",
            r["change"].as_str().unwrap_or("?"),
            relation_name(r),
            kind_name(r["relkind"].as_str().unwrap_or("")),
            r["pages_changed"].as_u64().unwrap_or(0),
            super::human_bytes(r["bytes_changed"].as_u64().unwrap_or(0)),
            blocks(&r["blocks_before"]),
            blocks(&r["blocks_after"]),
        ));
    }
    if user.is_empty() {
        lines.push("  no user relation changed".to_owned());
    }
    if !system.is_empty() {
        let bytes: u64 = system
            .iter()
            .filter_map(|r| r["bytes_changed"].as_u64())
            .sum();
        lines.push(format!(
            "  (and {} system relations, {}; --json lists them)",
            system.len(),
            super::human_bytes(bytes)
        ));
    }
    lines.join("\n")
}

fn relation_name(r: &Value) -> String {
    let db = r["database"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("db {}", r["database_oid"]));
    match (r["schema"].as_str(), r["name"].as_str()) {
        (Some(schema), Some(name)) => format!("{db}:{schema}.{name}"),
        _ => format!("{db}:file node {}", r["file_node"]),
    }
}

fn kind_name(relkind: &str) -> &'static str {
    match relkind {
        "r" => "table",
        "i" => "index",
        "t" => "toast",
        "S" => "sequence",
        "m" => "matview",
        "p" => "partitioned",
        "I" => "partitioned index",
        _ => "relation",
    }
}

fn blocks(value: &Value) -> String {
    value
        .as_u64()
        .map_or_else(|| "-".to_owned(), |b| b.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lists_user_relations_and_sums_up_catalogs() {
        let diff = json!({"from": "0/100", "to": "0/200", "relations": [
            {"database": "postgres", "database_oid": 5, "schema": "public", "name": "a",
             "relkind": "r", "system": false, "change": "changed", "pages_changed": 2,
             "bytes_changed": 300, "blocks_before": 1, "blocks_after": 2, "file_node": 16384},
            {"database": "postgres", "database_oid": 5, "schema": "pg_catalog", "name": "pg_class",
             "relkind": "r", "system": true, "change": "changed", "pages_changed": 1,
             "bytes_changed": 100, "blocks_before": 1, "blocks_after": 1, "file_node": 1259},
        ]});
        let text = render("main", &diff);
        assert!(
            text.contains("changed   postgres:public.a  table  2 pages, 300 B  (blocks 1 -> 2)"),
            "{text}"
        );
        assert!(text.contains("and 1 system relations"), "{text}");
    }
}
