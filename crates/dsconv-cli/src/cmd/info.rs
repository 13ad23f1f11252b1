//! `dsconv info`: the CPU features seen, the instruction-set tiers available, the kernels
//! selected, and optionally the measured FMA peak of each tier.

use anyhow::Result;
use dsconv::kernels::{self, Isa};
use serde_json::json;
use std::fmt::Write as _;

/// Arguments of `dsconv info`.
#[derive(clap::Args)]
pub struct Args {
    /// Also measure the single-thread f32 FMA peak of every available tier (~0.1 s).
    #[arg(long)]
    peak: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `dsconv info`.
pub fn run(args: Args) -> Result<()> {
    let features = kernels::cpu_features();
    let supported = kernels::supported_isas();
    let available = kernels::available_isas();
    let selected = kernels::selected_isa();
    let cap = match kernels::isa_cap() {
        Ok(Some(isa)) => isa.name().to_string(),
        Ok(None) => "unset".to_string(),
        Err(e) => format!("ignored ({e})"),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let peaks: Vec<(Isa, f64)> = if args.peak {
        available
            .iter()
            .map(|&isa| (isa, kernels::peak::fma_peak_gflops(isa, 20)))
            .collect()
    } else {
        Vec::new()
    };
    let names = |isas: &[Isa]| isas.iter().map(|i| i.name()).collect::<Vec<_>>();
    if args.json {
        let value = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "arch": std::env::consts::ARCH,
            "cpu_features": features.iter().map(|(f, on)| json!({"name": f, "present": on})).collect::<Vec<_>>(),
            "supported_isas": names(&supported),
            "max_isa_env": cap,
            "available_isas": names(available),
            "selected_isa": selected.name(),
            "kernels": kernels::kernel_names(selected).iter().map(|(op, k)| json!({"op": op, "kernel": k})).collect::<Vec<_>>(),
            "threads_available": threads,
            "fma_peak_gflops": peaks.iter().map(|(i, g)| json!({"isa": i.name(), "gflops": g})).collect::<Vec<_>>(),
        });
        return emit(&format!("{}\n", serde_json::to_string_pretty(&value)?));
    }
    let mut text = String::new();
    writeln!(
        text,
        "dsconv {} on {}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    )?;
    let seen: Vec<String> = features
        .iter()
        .map(|(f, on)| format!("{f} {}", if *on { "yes" } else { "no" }))
        .collect();
    writeln!(text, "CPU features:     {}", seen.join(", "))?;
    writeln!(text, "supported tiers:  {}", names(&supported).join(", "))?;
    writeln!(text, "{}:   {cap}", kernels::MAX_ISA_ENV)?;
    writeln!(text, "available tiers:  {}", names(available).join(", "))?;
    writeln!(text, "selected tier:    {}", selected.name())?;
    writeln!(
        text,
        "threads:          {threads} available (--threads / Executor::new)"
    )?;
    writeln!(text, "kernels:")?;
    for (op, kernel) in kernels::kernel_names(selected) {
        writeln!(text, "  {op:<10} {kernel}")?;
    }
    for (isa, gflops) in peaks {
        writeln!(
            text,
            "FMA peak, 1 thread, {:<7} {gflops:.1} GFLOP/s",
            isa.name()
        )?;
    }
    emit(&text)
}

/// Writes to stdout; a closed pipe surfaces as an io error (success in `cmd::report`).
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
