//! `sediment timeline diff --branch B --from LSN|TIME [--to LSN|TIME]`:
//! asks the pageserver's `.../diff` endpoint and prints one line per user
//! relation (system catalogs summarised in one line; all of them in
//! `--json`).

use anyhow::Context;
use api_types::{RelationChangeInfo, TimelineDiffResponse};
use clap::Args;
use serde_json::json;

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
    let diff: TimelineDiffResponse = client
        .get_as(&path)
        .with_context(|| format!("cannot diff branch {:?}", args.branch))?;
    out.print(
        &render(&args.branch, &diff),
        &json!({"branch": args.branch, "diff": diff}),
    );
    Ok(())
}

/// The human text: a table of user relations (change, relation, kind,
/// pages, bytes, size in blocks before and after), catalogs summed up in
/// one line.
fn render(branch: &str, diff: &TimelineDiffResponse) -> String {
    let mut lines = vec![format!(
        "branch {branch}: changes in ({}, {}]",
        diff.from, diff.to
    )];
    let (system, user): (Vec<&RelationChangeInfo>, Vec<&RelationChangeInfo>) =
        diff.relations.iter().partition(|r| r.system);
    if user.is_empty() {
        lines.push("  no user relation changed".to_owned());
    } else {
        let header = ["CHANGE", "RELATION", "KIND", "PAGES", "BYTES", "BLOCKS"].map(str::to_owned);
        let rows: Vec<[String; 6]> = user
            .iter()
            .map(|r| {
                [
                    r.change.clone(),
                    relation_name(r),
                    kind_name(r.relkind.as_deref().unwrap_or("")).to_owned(),
                    r.pages_changed.to_string(),
                    super::human_bytes(r.bytes_changed),
                    format!("{} -> {}", blocks(r.blocks_before), blocks(r.blocks_after)),
                ]
            })
            .collect();
        lines.extend(table(&header, &rows));
    }
    if !system.is_empty() {
        let bytes: u64 = system.iter().map(|r| r.bytes_changed).sum();
        lines.push(format!(
            "  (and {} system relations, {}; --json lists them)",
            system.len(),
            super::human_bytes(bytes)
        ));
    }
    lines.join("\n")
}

/// Left-aligned columns (pages and bytes right-aligned), two spaces
/// apart, indented by two.
fn table(header: &[String; 6], rows: &[[String; 6]]) -> Vec<String> {
    let mut widths = [0usize; 6];
    for row in std::iter::once(header).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let numeric = [false, false, false, true, true, false];
    std::iter::once(header)
        .chain(rows)
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .zip(numeric)
                .map(|((cell, width), right)| {
                    if right {
                        format!("{cell:>width$}")
                    } else {
                        format!("{cell:<width$}")
                    }
                })
                .collect();
            format!("  {}", cells.join("  ")).trim_end().to_owned()
        })
        .collect()
}

fn relation_name(r: &RelationChangeInfo) -> String {
    let db = r
        .database
        .clone()
        .unwrap_or_else(|| format!("db {}", r.database_oid));
    match (&r.schema, &r.name) {
        (Some(schema), Some(name)) => format!("{db}:{schema}.{name}"),
        _ => format!("{db}:file node {}", r.file_node),
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

fn blocks(value: Option<u32>) -> String {
    value.map_or_else(|| "-".to_owned(), |b| b.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_a_table_of_user_relations_with_catalogs_summed_up() {
        let diff: TimelineDiffResponse = serde_json::from_value(json!({"from": "0/100", "to": "0/200", "relations": [
            {"database": "postgres", "database_oid": 5, "schema": "public", "name": "accounts",
             "oid": 16384, "relkind": "r", "system": false, "change": "changed", "pages_changed": 12,
             "bytes_changed": 300, "blocks_before": 1, "blocks_after": 12, "file_node": 16384},
            {"database": null, "database_oid": 7, "schema": null, "name": null, "oid": null,
             "relkind": null, "system": false, "change": "dropped", "pages_changed": 0,
             "bytes_changed": 0, "blocks_before": 3, "blocks_after": null, "file_node": 16999},
            {"database": "postgres", "database_oid": 5, "schema": "pg_catalog", "name": "pg_class",
             "oid": 1259, "relkind": "r", "system": true, "change": "changed", "pages_changed": 1,
             "bytes_changed": 100, "blocks_before": 1, "blocks_after": 1, "file_node": 1259},
        ]}))
        .unwrap();
        let text = render("main", &diff);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "branch main: changes in (0/100, 0/200]");
        assert_eq!(
            lines[1],
            "  CHANGE   RELATION                  KIND      PAGES  BYTES  BLOCKS"
        );
        assert_eq!(
            lines[2],
            "  changed  postgres:public.accounts  table        12  300 B  1 -> 12"
        );
        assert_eq!(
            lines[3],
            "  dropped  db 7:file node 16999      relation      0    0 B  3 -> -"
        );
        assert_eq!(
            lines[4],
            "  (and 1 system relations, 100 B; --json lists them)"
        );
        assert_eq!(lines.len(), 5, "{text}");
    }
}
