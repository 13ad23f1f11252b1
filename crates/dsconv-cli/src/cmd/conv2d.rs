//! `dsconv conv2d` (being written in this session).

/// Arguments of `dsconv conv2d`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `dsconv conv2d`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    Err(anyhow::anyhow!("dsconv conv2d is not built yet"))
}
