//! `pageserver` (placeholder until its issue lands).

fn main() -> anyhow::Result<()> {
    anyhow::bail!("pageserver is not implemented yet")
}
