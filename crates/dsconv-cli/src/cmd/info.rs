//! `dsconv info`: what this machine is and what dsconv measures it can do.
//!
//! The output is a list of sections, each a function that writes its own lines; add a
//! section (e.g. the kernels selected for each operation) by adding a function to
//! [`SECTIONS`].

use std::io::Write;

/// Arguments of `dsconv info`.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  dsconv info\n  dsconv info --threads 1")]
pub struct Args {
    /// Threads for the measured peak and bandwidth (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// One section of the report: writes its lines to `out`.
pub type Section = fn(&Args, &mut dyn Write) -> anyhow::Result<()>;

/// The sections, in print order.
pub const SECTIONS: &[Section] = &[cpu_section, kernels_section, measured_section];

/// Runs `dsconv info`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.threads > 1024 {
        return Err(super::user_error(format!(
            "--threads {} is more than 1024",
            args.threads
        )));
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for section in SECTIONS {
        section(&args, &mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// CPU name, cores and the SIMD features seen at run time.
pub fn cpu_section(_args: &Args, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(out, "dsconv {}", env!("CARGO_PKG_VERSION"))?;
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

/// The kernel tier forward passes use, the tiers this CPU supports and the cap.
pub fn kernels_section(_args: &Args, out: &mut dyn Write) -> anyhow::Result<()> {
    use dsconv::kernels::{available_isas, isa_cap, selected_isa, supported_isas, MAX_ISA_ENV};
    let names =
        |isas: &[dsconv::kernels::Isa]| isas.iter().map(|i| i.name()).collect::<Vec<_>>().join(" ");
    let cap = match (std::env::var(MAX_ISA_ENV), isa_cap()) {
        (Err(_), _) => "unset".to_string(),
        (Ok(v), Ok(_)) => v,
        (Ok(v), Err(e)) => format!("'{v}' ignored: {e}"),
    };
    writeln!(
        out,
        "kernels:        {} (available: {}; supported: {}; {MAX_ISA_ENV} {cap})",
        selected_isa().name(),
        names(available_isas()),
        names(&supported_isas())
    )?;
    Ok(())
}

/// The FMA peak and read bandwidth measured now, for one thread and for `--threads`.
pub fn measured_section(args: &Args, out: &mut dyn Write) -> anyhow::Result<()> {
    let threads = dsconv::machine::resolve_threads(args.threads);
    let mut counts = vec![1];
    if threads > 1 {
        counts.push(threads);
    }
    writeln!(
        out,
        "measured (best of several; lower if the machine is busy):"
    )?;
    for t in counts {
        let p = dsconv::machine::profile(t);
        writeln!(
            out,
            "  {t} thread{}: FMA peak {:.1} GFLOP/s ({}), read bandwidth DRAM {:.1} GB/s, L2 ≥ {:.1} GB/s",
            if t == 1 { " " } else { "s" },
            p.peak_gflops,
            p.isa,
            p.dram_read_gbs,
            p.l2_read_gbs
        )?;
    }
    Ok(())
}
