//! `dsconv cost` (being written in this session).

/// Arguments of `dsconv cost`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `dsconv cost`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    Err(anyhow::anyhow!("dsconv cost is not built yet"))
}
