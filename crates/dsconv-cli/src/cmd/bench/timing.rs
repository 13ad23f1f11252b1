//! Timing and progress of `dsconv bench`: the timing rule (see the parent module's doc),
//! the median and minimum of the runs, and progress lines on stderr.

use anyhow::Result;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Median and minimum of the timed runs.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Median of the timed runs, milliseconds.
    pub median_ms: f64,
    /// Fastest timed run, milliseconds.
    pub min_ms: f64,
    /// Timed runs.
    pub runs: usize,
}

/// How long to time one operation.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// At least this many timed runs (`--runs`)...
    pub runs: usize,
    /// ...adding up to at least this (`--min-time`),
    pub min_time: Duration,
    /// unless they add up to this with at least 3 runs (`--max-time`).
    pub max_time: Duration,
}

/// Warm-up: at least one call and until this much time has passed.
const WARM_UP: Duration = Duration::from_millis(20);
/// At most this many timed runs, however short the operation (bounds the sample vector).
pub const MAX_RUNS: usize = 100_000;

/// Times `f` (see the module doc for the rule) and returns its median and minimum.
pub fn time<F: FnMut() -> dsconv::Result<()>>(budget: Budget, mut f: F) -> Result<Timing> {
    let start = Instant::now();
    f()?;
    while start.elapsed() < WARM_UP {
        f()?;
    }
    let mut samples = Vec::with_capacity(budget.runs.max(16));
    let mut total = Duration::ZERO;
    loop {
        let t = Instant::now();
        f()?;
        let dt = t.elapsed();
        total += dt;
        samples.push(dt.as_secs_f64() * 1e3);
        let n = samples.len();
        let enough = n >= budget.runs.max(1) && total >= budget.min_time;
        let too_long = n >= 3.min(budget.runs.max(1)) && total >= budget.max_time;
        if enough || too_long || n >= MAX_RUNS {
            break;
        }
    }
    let (median_ms, min_ms) = median_and_min(&mut samples);
    Ok(Timing {
        median_ms,
        min_ms,
        runs: samples.len(),
    })
}

/// The median (of the middle two for an even count) and the minimum of `samples`, which
/// must not be empty; sorts them.
pub fn median_and_min(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    let median = if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    };
    (median, samples[0])
}

/// Progress on stderr: one line rewritten in place on a terminal, one short line per
/// block otherwise; nothing with `--quiet`. Never on stdout, so JSON stays clean.
pub struct Progress {
    enabled: bool,
    terminal: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress {
            enabled: !quiet,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Shows what is being timed now (terminal only: elsewhere it would be noise).
    pub fn now(&self, what: &str) {
        if self.enabled && self.terminal {
            eprint!("\r\x1b[K{what}");
            let _ = std::io::stderr().flush();
        }
    }

    /// Reports a finished step.
    pub fn done(&self, what: &str) {
        if !self.enabled {
            return;
        }
        if self.terminal {
            eprint!("\r\x1b[K{what}");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("{what}");
        }
    }

    /// Clears the in-place line before the results are printed.
    pub fn finish(&self) {
        if self.enabled && self.terminal {
            eprint!("\r\x1b[K");
            let _ = std::io::stderr().flush();
        }
    }
}
