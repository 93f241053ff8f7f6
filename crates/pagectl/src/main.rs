//! `pagectl` (placeholder until its issue lands).

fn main() -> anyhow::Result<()> {
    anyhow::bail!("pagectl is not implemented yet")
}
