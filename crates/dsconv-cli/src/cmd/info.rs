//! `dsconv info`: what this machine is, what dsconv runs on it, and what it measures the
//! machine can do.
//!
//! The text report is a list of sections, each a function that writes its own lines
//! ([`SECTIONS`]); `--json` gives the same facts as one object.

use dsconv::kernels::{self, Isa};
use serde_json::json;
use std::io::Write;

/// Arguments of `dsconv info`.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  dsconv info\n  dsconv info --threads 1\n  \
                        DSCONV_MAX_ISA=avx2 dsconv info --json --no-measure")]
pub struct Args {
    /// Threads for the measured peak and bandwidth (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Skip the measurements (FMA peak, bandwidth; about a second).
    #[arg(long)]
    pub no_measure: bool,
}

/// One section of the text report: writes its lines to `out`.
pub type Section = fn(&Args, &mut dyn Write) -> anyhow::Result<()>;

/// The sections, in print order.
pub const SECTIONS: &[Section] = &[cpu_section, kernels_section, measured_section];

/// Runs `dsconv info`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.threads > dsconv::exec::MAX_THREADS {
        return Err(super::user_error(format!(
            "--threads {} is more than {}",
            args.threads,
            dsconv::exec::MAX_THREADS
        )));
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        let value = json_report(&args);
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        for section in SECTIONS {
            section(&args, &mut out)?;
        }
    }
    out.flush()?;
    Ok(())
}

fn isa_names(isas: &[Isa]) -> Vec<&'static str> {
    isas.iter().map(|i| i.name()).collect()
}

/// The `DSCONV_MAX_ISA` setting as seen: unset, its value, or why it is ignored.
fn cap_description() -> String {
    match (std::env::var(kernels::MAX_ISA_ENV), kernels::isa_cap()) {
        (Err(_), _) => "unset".to_string(),
        (Ok(v), Ok(_)) => v,
        (Ok(v), Err(e)) => format!("'{v}' ignored: {e}"),
    }
}

/// The thread counts measured: 1, and `--threads` if more.
fn measured_counts(args: &Args) -> Vec<usize> {
    let threads = dsconv::machine::resolve_threads(args.threads);
    if threads > 1 {
        vec![1, threads]
    } else {
        vec![1]
    }
}

fn json_report(args: &Args) -> serde_json::Value {
    let selected = kernels::selected_isa();
    let measured: Vec<serde_json::Value> = if args.no_measure {
        Vec::new()
    } else {
        measured_counts(args)
            .into_iter()
            .map(|t| {
                let p = dsconv::machine::profile(t);
                json!({"threads": t, "isa": p.isa, "peak_gflops": p.peak_gflops,
                       "dram_read_gbs": p.dram_read_gbs, "l2_read_gbs": p.l2_read_gbs})
            })
            .collect()
    };
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "arch": std::env::consts::ARCH,
        "cpu": dsconv::machine::cpu_model(),
        "cores": dsconv::machine::resolve_threads(0),
        "cpu_features": dsconv::machine::cpu_features().iter()
            .map(|(f, on)| json!({"name": f, "present": on})).collect::<Vec<_>>(),
        "supported_isas": isa_names(&kernels::supported_isas()),
        "max_isa_env": cap_description(),
        "available_isas": isa_names(kernels::available_isas()),
        "selected_isa": selected.name(),
        "kernels": kernels::kernel_names(selected).iter()
            .map(|(op, k)| json!({"op": op, "kernel": k})).collect::<Vec<_>>(),
        "measured": measured,
    })
}

/// CPU name, cores and the SIMD features seen at run time.
pub fn cpu_section(_args: &Args, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "dsconv {} on {}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    )?;
    writeln!(
        out,
        "cpu:            {}",
        dsconv::machine::cpu_model().unwrap_or_else(|| "unknown".into())
    )?;
    writeln!(
        out,
        "cores:          {} available",
        dsconv::machine::resolve_threads(0)
    )?;
    let features = dsconv::machine::cpu_features();
    let list = |present: bool| {
        let names: Vec<&str> = features
            .iter()
            .filter(|(_, p)| *p == present)
            .map(|(n, _)| *n)
            .collect();
        if names.is_empty() {
            "-".to_string()
        } else {
            names.join(" ")
        }
    };
    writeln!(out, "features:       {}", list(true))?;
    writeln!(out, "missing:        {}", list(false))?;
    Ok(())
}

/// The kernel tier forward passes use, the tiers this CPU supports, the cap, and the
/// microkernel each operation runs.
pub fn kernels_section(_args: &Args, out: &mut dyn Write) -> anyhow::Result<()> {
    let selected = kernels::selected_isa();
    writeln!(
        out,
        "kernels:        {} (available: {}; supported: {}; {} {})",
        selected.name(),
        isa_names(kernels::available_isas()).join(" "),
        isa_names(&kernels::supported_isas()).join(" "),
        kernels::MAX_ISA_ENV,
        cap_description()
    )?;
    for (op, kernel) in kernels::kernel_names(selected) {
        writeln!(out, "  {op:<12}  {kernel}")?;
    }
    Ok(())
}

/// The FMA peak and read bandwidth measured now, for one thread and for `--threads`.
pub fn measured_section(args: &Args, out: &mut dyn Write) -> anyhow::Result<()> {
    if args.no_measure {
        return Ok(());
    }
    writeln!(
        out,
        "measured (best of several; lower if the machine is busy):"
    )?;
    for t in measured_counts(args) {
        let p = dsconv::machine::profile(t);
        writeln!(
            out,
            "  {t} thread{}: FMA peak {:.1} GFLOP/s ({}), read bandwidth DRAM {:.1} GB/s, \
             L2 ≥ {:.1} GB/s",
            if t == 1 { " " } else { "s" },
            p.peak_gflops,
            p.isa,
            p.dram_read_gbs,
            p.l2_read_gbs
        )?;
    }
    Ok(())
}
