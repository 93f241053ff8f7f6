//! `sediment` (placeholder until its issue lands).

fn main() -> anyhow::Result<()> {
    anyhow::bail!("sediment is not implemented yet")
}
