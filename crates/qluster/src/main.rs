//! `qluster` (placeholder until its issue lands).

fn main() -> anyhow::Result<()> {
    anyhow::bail!("qluster is not implemented yet")
}
