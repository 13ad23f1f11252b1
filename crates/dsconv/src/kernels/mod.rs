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
//!   through an im2col band in per-thread scratch. Stem 3→32 s2 @ 224, one thread: 169 µs
//!   with the im2col copy, 106 µs in place (the GEMM alone on a pre-unfolded input: 91).
//! - `depthwise`: NHWC depthwise, channel tiles of one vector (masked tail), blocks of
//!   several output pixels, specialised 3×3 and 5×5 at strides 1 and 2: 3×3 stride 1
//!   with the 9 weights in registers, 5×5 and stride 2 with each block's input row in
//!   registers and the weights streamed (5×5 and rows of ≤ 8 columns also cover the
//!   borders in blocks, padded columns reading as zero vectors); a per-pixel path for
//!   the other borders and a general path for every other shape; padded rows read a
//!   zero row; the input is read in place (pixels any stride ≥ C apart) except the rows of
//!   a crowded layer (below).
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
//! is the best available. An [`Executor`](crate::Executor) carries the tier its forward
//! passes use (`Executor::with_isa`), so one `cargo test` runs every kernel at every
//! tier the machine has. aarch64 NEON is not written: there the portable tier
//! (auto-vectorised by the compiler for NEON) runs.
//!
//! # Threads
//! Work is split statically by the [`Executor`](crate::Executor): the GEMM by pixel rows
//! in multiples of the register tile (by 32-column panels when there are too few rows),
//! depthwise and fused separable by output rows, the dense path by pixel runs of whole
//! register tiles; layers under `exec::MIN_MACS_PER_THREAD` stay on one thread. No
//! reduction is ever split and every output element is computed by the same operation
//! sequence whatever tile, band or thread it falls in, so results are bitwise identical
//! for every thread count (tested).
//!
//! The threads are `team::Team`'s: the caller plus `T − 1` workers that spin for
//! `team::SPIN` (300 µs) between regions before sleeping, so a region costs ~0.5 µs
//! (measured: 2 empty tasks per region, 200,000 regions) instead of a wake-up. Task `t`
//! runs on thread `t mod T` unless that thread has not started it when another runs out,
//! so consecutive layers split alike read what their own core wrote. Measured on the
//! 2-vCPU Zen 5 dev machine (`dsconv bench --model M --threads 2`, median ms, the same
//! minutes): rayon with a job injected per region V1 3.10–3.23 / V2 2.33–2.41 / Lite0
//! 2.93–3.82; the whole pass inside the rayon pool 2.91–3.38 / 1.80–1.88 / 2.57–3.13; the
//! team with first-come tasks 2.85–2.98 / 1.69–1.73 / 2.43–2.50; with owned tasks (and the
//! stem split fixed, below) 2.65–2.76 / 1.58–1.63 / 2.27–2.37. Splitting each region into
//! 2 or 4 tasks per thread for balance measured slower (V1 2.94–3.20 and 3.32–3.57 against
//! 2.96–3.04 in the same minutes). The dense stem splits in register tiles: split in
//! whole 4,844-pixel im2col bands, its 12,544 pixels went 9,688 / 2,856 over two threads
//! (2 threads 0.150 → 0.097 ms).
//!
//! Observed on this shared VM: for stretches of time one thread of a pair runs the same
//! work 1.3–1.9× slower than the other (which one varies; per-task timings inside fused
//! blocks and standalone depthwise layers), at other times both run alike; static
//! partitioning cannot hide that, and finer dynamic splitting cost more than it saved.
//!
//! # Tuning constants and the measurements that chose them
//! The dev machine turned out to be AMD Zen 5 (`cpu family 26`, 2 vCPU, 48 KiB L1d,
//! 1 MiB L2 per core), not the Zen 4 of DESIGN.md: it runs zmm FMAs at full width, and
//! `peak::fma_peak_gflops` measures 260–270 GFLOP/s per core (not ~115). Numbers below
//! are single-thread on-CPU GFLOP/s from
//! `cargo run --release -p dsconv --example kernel_speed` on that busy shared machine
//! (±5%).
//!
//! | constant | value | why |
//! |---|---|---|
//! | `gemm::PANEL` | 32 | two zmm; divides every MobileNet width |
//! | AVX-512 tile | 14×32 | 28 accumulators + 2 B + 1 broadcast = 31 zmm; 14 divides 196/784/3136/12544 |
//! | AVX2 tile | 6×16 | 12 + 2 + 1 = 15 ymm |
//! | `gemm::KC` | 512 | 128/256/512: 1024→1024@14 77/88/89%, 512→512@14 91/92/95% |
//! | `gemm::MC_TILES` | 12 | 12/24/48: 1024→1024@14 92/89/90%, 256→256@28 98/96/96% |
//! | `should_pack` | >4 rows per L1 set | 1024 channels in place (4 KiB stride): 44 GFLOP/s; padded copy: 232 |
//! | depthwise pixel blocks | 8 (3×3 s1, weights in registers; 3×3 s2 and 5×5 with streamed weights) | register counts and measurements in `depthwise` |
//! | `depthwise::cover_row` | ⌈W/8⌉ near-equal blocks per row; border blocks checked by masked-off loads aimed inside the row | replaced single border pixels + an overlapping last block; 1 thread, GFLOP/s, `dw_probe`-style runs of `Conv2d::forward_into` (3 each, old → new): 3×3 s1 C128@28² 129–139 → 170–181, C64@28² 141–148 → 186–191, C128@14² 124–131 → 161–170, C256@14² 125 → 148–153, C512@14² 64–66 → 85–98, C32@56² 160–163 → 178–187; 5×5 s1 C240@28² 165 → 186–193, C1152@7² 124–127 → 136–147; s2 C128@56² 51–61 → 63–64 |
//! | checked blocks (`depthwise::load_span`) | only the first and last K − 1 input columns of a border block checked; rows ≤ 8 columns in one block of near-equal width like any other (were two overlapping 4-pixel streamed blocks, every column checked); 3×3 s1 at 7 columns with weights in registers | 1 thread GFLOP/s, `dw_probe` (before → after): 3×3 s1 C256@14² 146 → 179, C64@28² 183 → 193, C128@7² 99 → 154, C960@7² 112 → 178, C1024@7² 51 → 74; 5×5 s1 C1152@7² 129 → 198, C672@7² 134 → 208; s2 C128@28² 81 → 88 |
//! | `depthwise::ROW_GROUP` | 4 output rows per block and tile in row mode at stride 1 (2 at C = 1024) | 1 thread GFLOP/s, 1 / 2 / 4 / 8 rows: 3×3 C512@14² 84 / 106 / 115 / 85, C256@28² 105 / 110 / 124 / 120, C1024@7² 71 / 78 / 67 / 52; 5×5 C512@14² 89 → 103, C256@28² 110 → 154 with 4 |
//! | crowded-input copy (`depthwise::CROWD_PAD`) | C·4 a multiple of 1 KiB, stride 1, output not crowded: input rows copied to C + 16 floats per pixel; fused separable bands then use C + 16 floats per pixel | into a C + 16 output, GFLOP/s without → with: C512@14² 83 → 96, C512@7² 92 → 119, C1024@7² 69 → 90; stride 2 and crowded outputs lost, so they read in place |
//! | `depthwise::STRIP_WAYS` | 8 lines per L1 set | C=128@56² s1: 74 → 85–88 down the strips; C=512@14² (2 KiB pixel stride, 2 sets): 51 → 22 down the strips, so it goes row by row |
//! | `depthwise::STRIP_WAYS_S2` | 4 lines per L1 set (3×3 only; 5×5 s2 takes `STRIP_WAYS`: C144@56² 92 → 138, C240@28² 94 → 164, C672@14² 100 → 165) | stride 2 down the strips vs row by row (µs): C=32@112² 50/60, C=64@112² 87/97, C=128@56² 47/49; C=256@28² 30/27, C=512@14² 20/16 stay row by row |
//! | `depthwise::HEAD_MIN_TILES` | 8 tiles | a masked head tile aligns the input loads of a 16-byte-aligned `Vec` (stride 1, C·4 a multiple of the vector): C=128@56² 72 → 100; at C=32 the extra tile cost more (88 → 65) |
//! | `dense::BAND_BYTES` | 512 KiB | half of L2 for the unfolded rows; bands grow to the GEMM's row block (168 pixels) when the weight is larger: 1024→1024 3×3 @ 7² read its 38 MB weight from DRAM once per 14-pixel band, 45% → 68% of peak on 1 thread, 54% → 64% on 2 (`dsconv bench --layers mobilenet-v1 --ops standard`) |
//! | GEMM ragged tiles | exact-height microkernel for 5–13 rows | the 8/4/2/1 pieces re-streamed B and the 2- and 1-row ones waited on FMA latency: 7×7 pointwise (49 = 3·14 + 7 rows) 1 thread 512→1024 85–89% → 93%, 1024→1024 85–88% → 92–93%; 2 threads 451 → 495–501 GFLOP/s |
//! | `activation_px` (MobileNetV1 activations) | C + 16 floats per pixel for C = 256/512/1024 between fused separable blocks and into the pool | no crowded-row copy per depthwise call, uncrowded GEMM rows; whole MobileNetV1, 2 threads, 6 alternating runs: median 2.79 → 2.68 ms; 1 thread 5.89–6.21 → 5.73–6.08 ms (3 runs) |
//! | `fused::BAND_BYTES` | 256 KiB | a quarter of L2 for the depthwise band |
//! | `fused::IR_BAND_BYTES` | 512 KiB | expanded rows + depthwise rows of one inverted-residual band; smaller expanded tensors run unbanded. On-CPU ms of all blocks, 1 thread, V2 / Lite0 (`ir_speed blocks`, `IR_BAND_KIB`): 128 KiB 3.10 / 4.75, 256 2.75 / 4.06, 512 2.63 / 3.85, 768 2.68 / 3.88; unfused 2.97 / 4.22 |
//!
//! Measured at commit time (1 thread, on-CPU GFLOP/s, % of the measured 268 GFLOP/s
//! peak): pointwise 1024→1024@14 249 (93%), 512→512@14 255 (95%), 256→256@28 259 (97%),
//! 128→128@56 252 (94%), 32→64@112 237 (88%), 512→1024@7 226 (84%); dense 3×3
//! 128→128@56 240 (89%), stem 3→32 s2@224 115 (43%); depthwise 3×3 s1 C=128@56 93 (35%),
//! C=32@112 95 (35%), C=128@28 (L2-hot) 94 (35%), C=512@14 53 (20%), s2 C=128@56 42
//! (16%) (standalone depthwise is bound by moving its 1.6 MB input and output through
//! L3/L2, and with full-width FMAs the FMA roofline is twice Zen 4's); fused separable
//! 128→128@56 231 (86%, unfused 217), 512→512@14 244 (91%, unfused 240); whole
//! MobileNetV1-224 batch 1: 5.87 ms, 195 GFLOP/s (73%). Fused inverted residual blocks
//! (one thread, on-CPU): 112² 16→96→24 s2 343 µs (unfused 443), 56² 24→144→24 s1 170 µs
//! (unfused 211). Whole networks, 224², batch 1, 1 thread, `dsconv bench --model`,
//! alternating with the binary before fusion and workspaces (load ≈ 2.4): MobileNetV2
//! 3.11–3.19 ms (before 3.51–3.58), EfficientNet-Lite0 4.34–4.39 ms (before 4.88–4.99);
//! `bench/compare/compare.py` in the same minute put ONNX Runtime 1.32 at 3.68 / 4.60 ms
//! on one thread and 1.91 / 3.19 ms on two (dsconv 2.50 / 3.82: two threads scale
//! 1.35×, ORT 1.9×; the second vCPU was shared with other jobs). Two-thread numbers on this
//! shared 2-vCPU machine were not reproducible (other jobs held the second core).
//!
//! Caution when tuning depthwise: standalone rates move by ±20% with things the kernel
//! does not control. `kernel_speed` runs every layer in one process, so the heap layout
//! (where each tensor lands) changes with any allocation earlier in the run (3×3 s1
//! C=128@28 ran 100 GFLOP/s alone and 83 after the other layers, in the same binary),
//! and a change to one instantiation of the large `dw_avx512` body moved an untouched
//! path (stride 2 strips made 3×3 s1 C=32@112 96 → 79 GFLOP/s alone, unchanged in the
//! whole network). Compare binaries on the same filter, alternating runs, and check
//! `dsconv bench --model` before keeping a change.

mod aligned;
pub(crate) mod dense;
pub(crate) mod depthwise;

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
                "f32_gemm_{mr}x{nr}__{name} on the input in place (kernel rows ≤ 16 floats), \
                 else f32_im2col + f32_gemm_{mr}x{nr}__{name}"
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
