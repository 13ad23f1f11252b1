//! Fast CPU kernels, the only module allowed `unsafe`.
//!
//! # Structure
//! - [`simd`](self) (private): a tiny SIMD trait with three implementations, portable
//!   arrays, AVX2+FMA and AVX-512; every microkernel is one generic body over it, and
//!   each tier gets a thin `#[target_feature]` entry point that instantiates the body.
//! - `gemm`: the pointwise GEMM `[pixels, K] × packed [K, C_out]` with a register-blocked
//!   microkernel and bias + activation fused in the epilogue; also runs dense k×k
//!   convolutions through an im2col band (`dense`).
//! - `depthwise`: NHWC depthwise convolution with channel tiles of one vector, several
//!   output pixels per register block, specialised 3×3/5×5 at strides 1 and 2, and a
//!   general path for the borders and other shapes.
//! - `fused`: depthwise output in row bands consumed by the GEMM directly.
//!
//! # Dispatch
//! The instruction-set tier ([`Isa`]) is detected once ([`available_isas`]), capped by
//! the environment variable `DSCONV_MAX_ISA=scalar|avx2|avx512`; [`selected_isa`] is the
//! best available. An [`Executor`](crate::Executor) carries the tier its forward passes
//! use, so tests run every kernel at every available tier in one `cargo test`.
//! aarch64 NEON is not written: there the portable tier (auto-vectorised by the compiler)
//! runs.
//!
//! # Tuning constants
//! Every constant names its hardware meaning and the measurement that chose it, next to
//! its definition (`gemm::KC`, `gemm::MC_TILES`, the register tiles in `gemm`, the pixel
//! blocks in `depthwise`, the band size in `fused`). The measurements were taken on the
//! dev machine (AMD EPYC Zen 4, 2 vCPU, 32 KiB L1d, 1 MiB L2 per core) with
//! `cargo run --release -p dsconv --example kernel_speed`.

mod aligned;
pub(crate) mod dense;
pub(crate) mod depthwise;
pub(crate) mod fused;
pub(crate) mod gemm;
pub mod peak;
mod simd;

pub use aligned::AlignedVec;
pub use depthwise::PackedDepthwise;
pub use gemm::PackedGemm;

use std::sync::OnceLock;

/// An instruction-set tier, from the most portable to the widest. Ordered: a cap keeps
/// the tiers `≤` it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust, auto-vectorised for the target's baseline (SSE2, NEON).
    Scalar,
    /// AVX2 and FMA (x86_64), 8 f32 lanes.
    Avx2,
    /// AVX-512 F, BW and VL (x86_64), 16 f32 lanes, masked tails.
    Avx512,
}

impl Isa {
    /// Lower-case name, as accepted by `DSCONV_MAX_ISA`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Vector width in f32 lanes.
    pub fn lanes(self) -> usize {
        match self {
            Isa::Scalar => 8,
            Isa::Avx2 => 8,
            Isa::Avx512 => 16,
        }
    }
}

impl std::str::FromStr for Isa {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" => Ok(Isa::Scalar),
            "avx2" => Ok(Isa::Avx2),
            "avx512" => Ok(Isa::Avx512),
            other => Err(crate::Error::param(
                "instruction set",
                format!("'{other}' is not one of scalar, avx2, avx512"),
            )),
        }
    }
}

/// The environment variable that caps the tier.
pub const MAX_ISA_ENV: &str = "DSCONV_MAX_ISA";

/// Tiers the CPU supports, ignoring any cap.
pub fn supported_isas() -> Vec<Isa> {
    let mut isas = vec![Isa::Scalar];
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            isas.push(Isa::Avx2);
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
            {
                isas.push(Isa::Avx512);
            }
        }
    }
    isas
}

/// The cap read from `DSCONV_MAX_ISA`: `Ok(None)` when unset, an error when unparsable.
pub fn isa_cap() -> crate::Result<Option<Isa>> {
    match std::env::var(MAX_ISA_ENV) {
        Ok(v) => v.parse().map(Some),
        Err(_) => Ok(None),
    }
}

/// Tiers usable in this process: supported by the CPU and within `DSCONV_MAX_ISA`
/// (an unparsable value is ignored; `dsconv info` reports it). Detected once.
pub fn available_isas() -> &'static [Isa] {
    static AVAILABLE: OnceLock<Vec<Isa>> = OnceLock::new();
    AVAILABLE.get_or_init(|| {
        let cap = isa_cap().ok().flatten().unwrap_or(Isa::Avx512);
        supported_isas()
            .into_iter()
            .filter(|&isa| isa <= cap)
            .collect()
    })
}

/// The best available tier, used by default.
pub fn selected_isa() -> Isa {
    available_isas().last().copied().unwrap_or(Isa::Scalar)
}

/// Checks that `isa` can run here.
pub fn check_isa(isa: Isa) -> crate::Result<Isa> {
    if available_isas().contains(&isa) {
        Ok(isa)
    } else {
        Err(crate::Error::param(
            "instruction set",
            format!(
                "{} is not available here (available: {})",
                isa.name(),
                available_isas()
                    .iter()
                    .map(|i| i.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    }
}

/// `isa` if it can run here, else the portable tier: the gate every kernel entry goes
/// through before calling a `#[target_feature]` function.
pub(crate) fn runnable(isa: Isa) -> Isa {
    if available_isas().contains(&isa) {
        isa
    } else {
        Isa::Scalar
    }
}
