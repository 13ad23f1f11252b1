//! Fast CPU kernels, the only module allowed `unsafe` (every block carries a
//! `// SAFETY:` line). The layers (`Conv2d` and the types built on it) dispatch here
//! from `Conv2d::run_nhwc`: pointwise → GEMM, depthwise (multiplier 1, zero padding) →
//! depthwise kernel, dense with zero padding → im2col + GEMM, everything else → the
//! portable direct loop (`crate::direct`).
//!
//! # Structure
//! - `simd` (private): a tiny SIMD trait (`mul_add(a, b, acc) = a·b + acc`, loads,
//!   masked loads/stores, min/max) with three implementations: portable 8-lane arrays,
//!   AVX2+FMA (ymm) and AVX-512 (zmm). Every microkernel is one generic body over it;
//!   each tier gets a thin `#[target_feature]` entry point that instantiates the body
//!   (the bodies are `#[inline(always)]`, and no closure sits between an entry point and
//!   an intrinsic: closures do not inherit target features, and one that did cost 100×).
//! - `gemm`: the GEMM `[pixels, K] × packed [K, C_out]` (weights packed at layer
//!   construction into 32-column panels); 14×32 AVX-512 / 6×16 AVX2 / 4×8 portable
//!   register tiles; bias + activation in the epilogue, in registers, then optionally a
//!   residual `+ R` (`run_add`, `run_parallel_add`: the skip connection of an inverted
//!   residual, bitwise the same sum as adding afterwards, without the second pass).
//! - `dense`: k×k convolution (groups 1) as the GEMM: kernel rows of at most 16 floats
//!   (the stem's 3×3 × 3 channels) read in place as a segmented A
//!   (`PackedGemm::run_segmented`, one run per kernel row; border pixels unfolded), others
//!   through an im2col band in per-thread scratch.
//! - `depthwise`: NHWC depthwise, channel tiles of one vector (masked tail), blocks of
//!   several output pixels, specialised 3×3 and 5×5 at strides 1 and 2: 3×3 stride 1
//!   with the 9 weights in registers, 5×5 and stride 2 with each block's input row in
//!   registers and the weights streamed; border blocks read padded columns as zero
//!   vectors, padded rows read a zero row, and a general per-pixel loop takes every other
//!   shape (and borders wider than K − 1); the input is read in place (pixels any stride
//!   ≥ C apart) except the rows of a crowded layer (`depthwise::crowd`). One file per
//!   concern: see the module docs of `depthwise`.
//! - `fused`: depthwise output in row bands (L2-sized scratch) consumed by the GEMM; and
//!   the whole inverted residual block (`inverted_residual_rows`) in bands of output rows:
//!   the expand GEMM computes the input rows a band reads (its depthwise halo included;
//!   halo rows the previous band expanded are moved to the front, not recomputed), the
//!   depthwise kernel reads them through a `ConvGeometry` cut to the band (rows outside
//!   the image become its padding), and the project GEMM consumes the band's depthwise
//!   output and adds the skip in its epilogue. The expanded tensor never exists whole;
//!   every element goes through the same kernel operations as the unfused stages, so
//!   the result is bitwise theirs for any band size and thread split (tested).
//! - `peak`: the FMA loop behind the measured peak (`crate::machine`), the denominator
//!   of "% of peak" in `dsconv bench` and `dsconv info`.
//! - `aligned`: 64-byte aligned buffers and the per-thread reusable scratch.
//!
//! # Dispatch
//! The tier ([`Isa`]) is detected once ([`available_isas`]: AVX2 needs avx2+fma, AVX-512
//! needs avx512f+bw+vl), capped by `DSCONV_MAX_ISA=scalar|avx2|avx512`; [`selected_isa`]
//! is the best available. Every kernel entry takes a [`Tier`], a token only detection
//! builds, and runs exactly that tier's code: nothing checks again and nothing drops to
//! another tier. An [`Executor`](crate::Executor) carries the tier its forward passes
//! use (`Executor::with_isa`), so one `cargo test` runs every kernel at every tier the
//! machine has. aarch64 NEON is not written: there the portable tier (auto-vectorised by
//! the compiler for NEON) runs.
//!
//! # Threads
//! Work is split statically by the [`Executor`](crate::Executor) (through [`Parallel`]):
//! the GEMM by pixel rows in multiples of the register tile (by 32-column panels when
//! there are too few rows), depthwise and fused separable by output rows, the dense path
//! by pixel runs of whole register tiles; layers under `exec::MIN_MACS_PER_THREAD` stay on
//! one thread. No reduction is ever split and every output element is computed by the
//! same operation sequence whatever tile, band or thread it falls in, so results are
//! bitwise identical for every thread count (tested).
//!
//! The threads are `team::Team`'s: the caller plus `T − 1` workers that spin for
//! `team::SPIN` (300 µs) between regions before sleeping, so a region costs ~0.5 µs
//! instead of a wake-up. Task `t` runs on thread `t mod T` unless that thread has not
//! started it when another runs out, so consecutive layers split alike read what their
//! own core wrote. Against rayon, 2 threads: MobileNetV2 2.33–2.41 → 1.58–1.63 ms (record
//! `2026-12-02-kernels-tuning-history`, with every variant measured).
//!
//! # Tuning constants
//! Each constant's doc gives its value, the decisive numbers and the record they come
//! from; `docs/kernels.md` has them in one table and says how to measure, and the record
//! `bench/records/2026-12-02-kernels-tuning-history.md` holds the full measurements and
//! the numbers at each commit. Standalone depthwise rates move by ±20% with heap and code
//! layout: compare binaries alternating on the same layer (`bench/compare/dw_ab.sh`).

pub(crate) mod act;
mod aligned;
pub(crate) mod dense;
pub(crate) mod depthwise;
pub(crate) mod dwgrad;

pub(crate) mod fused;
pub(crate) mod gemm;
pub mod peak;
mod simd;
pub(crate) mod team;

pub(crate) use aligned::{with_scratch, AlignedVec};
pub use depthwise::PackedDepthwise;
pub use gemm::PackedGemm;

use std::sync::OnceLock;

/// `c` floats per pixel, or `c + 16` when `c` floats are a multiple of 1 KiB (a pixel
/// stride that is a multiple of 1 KiB puts every pixel's channel tile in a few L1 sets:
/// with C = 512/1024 plain NHWC lost 2–3× on depthwise): the pixel stride of the fused
/// depthwise bands, and of a network's own activations through `Workspace::pixel_stride`.
pub(crate) fn uncrowded_pixel_stride(c: usize) -> usize {
    if depthwise::crowded(c) {
        c + depthwise::CROWD_PAD
    } else {
        c
    }
}

/// Greatest common divisor (`gcd(a, 0) = a`): how many L1 sets a stride cycles through
/// (the GEMM's `should_pack`, the depthwise strips' `strip_fits_l1`).
pub(crate) fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

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

/// The kernels a tier runs, as `(operation, kernel name)`; names follow XNNPACK's grammar
/// (`f32_<op>_<tile>__<isa>`).
pub fn kernel_names(isa: Isa) -> Vec<(&'static str, String)> {
    let name = isa.name();
    let lanes = isa.lanes();
    let mr = gemm::tile_rows(isa);
    let nr = match isa {
        Isa::Avx512 => gemm::PANEL,
        _ => 2 * lanes,
    };
    // Pixels per depthwise block (`depthwise::dw_*`'s const generics): 3×3 stride 1,
    // 3×3 stride 2, 5×5.
    let (pb_3s1, pb_3s2, pb_5) = match isa {
        Isa::Avx512 => (8, 8, 8),
        Isa::Avx2 => (4, 4, 4),
        Isa::Scalar => (4, 2, 2),
    };
    vec![
        ("pointwise", format!("f32_gemm_{mr}x{nr}__{name}")),
        (
            "depthwise",
            format!(
                "f32_dwconv_3x3s1_{pb_3s1}px{lanes}c__{name}, f32_dwconv_3x3s2_{pb_3s2}px{lanes}c_sw__{name}, \
                 f32_dwconv_5x5_{pb_5}px{lanes}c_sw__{name}, f32_dwconv_general_1px{lanes}c__{name} \
                 (sw: streamed weights)"
            ),
        ),
        (
            "dense",
            format!(
                "f32_gemm_{mr}x{nr}__{name} on the input in place (kernel rows ≤ 512 floats, \
                 rows not crowding an L1 set), else f32_im2col + f32_gemm_{mr}x{nr}__{name}"
            ),
        ),
        (
            "separable",
            format!("f32_dwconv band → f32_gemm_{mr}x{nr}__{name} (fused)"),
        ),
        (
            "mbconv",
            format!(
                "f32_gemm_{mr}x{nr}__{name} (expand, halo rows) → f32_dwconv band → \
                 f32_gemm_{mr}x{nr}__{name} + skip (fused, L2 bands)"
            ),
        ),
        ("other", "direct (portable, any groups/padding mode)".to_string()),
    ]
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

/// What a kernel that splits its own work needs from a thread team: the tier to run at and
/// a way to run tasks. [`Executor`](crate::Executor) implements it; the kernels name only
/// this trait, so the layering stays one-directional (`exec` → `kernels`). The pointwise
/// GEMM is the one kernel that uses it: with few pixel rows it splits by weight columns,
/// writing disjoint column ranges of one output from several threads, which needs the
/// `unsafe` shared pointer only `kernels` may hold.
pub trait Parallel: Sync {
    /// The tier the kernels run at.
    fn tier(&self) -> Tier;
    /// Threads available.
    fn threads(&self) -> usize;
    /// Calls `f(0)`, ..., `f(tasks − 1)`, each once, spread over the threads; returns when
    /// all have finished.
    fn run_tasks(&self, tasks: usize, f: &(dyn Fn(usize) + Sync));
    /// Calls `f(first_row, chunk)` on disjoint contiguous chunks of `out` (rows of
    /// `row_len`), each but the last a multiple of `block_rows` rows, over up to `tasks`
    /// threads; returns the error of the chunk with the lowest first row, if any.
    fn try_for_each_row_blocks(
        &self,
        out: &mut [f32],
        row_len: usize,
        block_rows: usize,
        tasks: usize,
        f: &(dyn Fn(usize, &mut [f32]) -> crate::Result<()> + Sync + Send),
    ) -> crate::Result<()>;
}

/// Proof that this process may run a tier: only detection builds one ([`Tier::new`],
/// [`Tier::best`], [`available_tiers`]), in the style of pulp's tokens. Every kernel
/// entry takes a `Tier` and calls that tier's `#[target_feature]` code without checking
/// again, and no kernel drops silently to another tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tier(Isa);

impl Tier {
    /// The token for `isa`: an error if this CPU (or `DSCONV_MAX_ISA`) does not allow it.
    pub fn new(isa: Isa) -> crate::Result<Tier> {
        check_isa(isa).map(Tier)
    }

    /// The best available tier (the default of every [`Executor`](crate::Executor)).
    pub fn best() -> Tier {
        Tier(selected_isa())
    }

    /// The instruction set this token proves.
    pub fn isa(self) -> Isa {
        self.0
    }

    /// Lower-case name (`scalar`, `avx2`, `avx512`).
    pub fn name(self) -> &'static str {
        self.0.name()
    }
}

/// Every tier usable in this process ([`available_isas`] as tokens), most portable first.
pub fn available_tiers() -> impl Iterator<Item = Tier> {
    available_isas().iter().map(|&isa| Tier(isa))
}
