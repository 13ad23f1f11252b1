//! `dsconv demo` (being written in this session).

/// Arguments of `dsconv demo`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `dsconv demo`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    Err(anyhow::anyhow!("dsconv demo is not built yet"))
}
