//! The pointwise GEMM: `C[m, n] = act(bias[n] + Σ_k A[m, k] · B[k, n]) [+ R[m, n]]`, with
//! `A` the NHWC activations read in place (`[pixels, C_in]`, row stride `lda`), `B` the
//! weight pre-packed at layer construction, `C` the NHWC output (row stride `ldc`) and `R`
//! an optional residual (row stride `ldr`) added after the activation, in registers, as
//! the inverted residual block's project stage needs (`x + project(…)`, no activation): the
//! sum is written in the same pass as the product.
//!
//! # Packing
//! `B` is cut into panels of [`PANEL`] = 32 output channels; panel `p` holds
//! `B[k, 32p .. 32p + 32]` for every `k`, row after row (`k` major), zero-padded past
//! `n`. The bias is padded the same way. Every tier reads the same packing: AVX-512
//! consumes a whole panel per microkernel (2 zmm), AVX2 and the portable tier half or a
//! quarter of it (row stride 32).
//!
//! # Loops (BLIS naming)
//! ```text
//! ic: MR·MC_TILES rows of A   (the A block, ≤ 168·512·4 B = 344 KiB, lives in L2;
//!                              copied to a padded buffer only when its row stride would
//!                              crowd one L1 set, see `should_pack`)
//!  pc: KC of the reduction     (C is re-read between K blocks; bias in the first, act in the last)
//!   jc: NV·LANES columns       (the B micro-panel, KC·32·4 B = 64 KiB, streamed from L2)
//!    ir: MR rows               → microkernel MR × (NV·LANES), accumulators in registers
//! ```
//! A ragged last row tile of 5 or more rows runs an instance of the same microkernel of
//! exactly its height (7×7 layers: 49 = 3·14 + 7 rows; 1 thread, 1024→1024 @ 7²: 85–88%
//! → 92–93% of peak), smaller ones 4-, 2- and 1-row instances; column tails go through a
//! stack tile (`EdgeTile`) so the microkernel stays unmasked. Each output element is computed
//! by the same sequence of operations whatever the tile it lands in, so any row
//! partition (threads, bands) gives bitwise identical results.
//!
//! # Files
//! - this one: [`PackedGemm`], the checks of its public entry points, the tier entries
//!   and the five-loop driver (`gemm_body`);
//! - `pack`: packing B into panels at construction, and A into a padded block when its
//!   row stride would crowd one L1 set (`should_pack`, `pack_a`);
//! - `micro`: the register-tile microkernel (`micro`), its ragged-tile instances
//!   (`run_tile`, `tail_rows`) and the column-edge staging buffer (`EdgeTile`);
//! - `parallel`: `run_parallel*`, the split over a [`Parallel`](super::Parallel) team by
//!   row tiles or by column panels.

mod micro;
mod pack;
mod parallel;

use self::micro::{run_tile, Tile};
use self::pack::{pack_a, should_pack, PACKED_A, PACKED_ROW_PAD};
use super::simd::{Epilogue, Portable, Simd};
use super::{AlignedVec, Isa, Parallel, Tier};
use crate::error::{Error, Result};
use crate::ops::Activation;

/// Output channels per packed panel: two AVX-512 vectors. Divides every MobileNet width
/// (32·α multiples), so no compute is wasted on padding there.
pub const PANEL: usize = 32;

/// Reduction block: C is re-read once per block, and the B micro-panel
/// (`KC·32·4 B = 64 KiB`) streams from L2 while the row tiles of an A block pass over it.
/// Measured on one Zen 5 core (`kernel_speed pw`, % of the measured FMA peak), KC = 128 /
/// 256 / 512: 1024→1024@14 77 / 88 / 89%, 512→512@14 91 / 92 / 95%; other shapes equal
/// (record `2026-12-02-kernels-tuning-history`).
pub const KC: usize = 512;

/// Row tiles per A block: `14·12 = 168` rows × KC × 4 B = 344 KiB of A stays in L2 (1 MiB)
/// beside the B panels. MC_TILES = 12 / 24 / 48 measured 92 / 89 / 90% on 1024→1024@14,
/// 98 / 96 / 96% on 256→256@28 (record `2026-12-02-kernels-tuning-history`).
pub const MC_TILES: usize = 12;

/// AVX-512 register tile: 14 rows × 2 zmm = 28 accumulators + 2 B vectors + 1 broadcast
/// = 31 of 32 registers (24–28 accumulators hide the FMA latency at two FMAs per cycle).
/// 14 divides the pixel counts of MobileNet at 224 (196, 784, 3136, 12544).
const AVX512_MR: usize = 14;
/// AVX2 register tile: 6 rows × 2 ymm = 12 accumulators + 2 B + 1 broadcast of 16 ymm.
const AVX2_MR: usize = 6;
/// Portable tile: 4 rows × 8 lanes (16 SSE registers hold 8 accumulator halves + B).
const PORTABLE_MR: usize = 4;

/// Rows per register tile for `isa` (the GEMM's natural row granule for partitioning).
pub fn tile_rows(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => AVX512_MR,
        Isa::Avx2 => AVX2_MR,
        Isa::Scalar => PORTABLE_MR,
    }
}

/// Output columns per microkernel step for `isa` (`NV·LANES`: 32, 16, 8): the column
/// granule of a split, since every column range starting on a multiple of it visits the
/// same chunks as the whole run.
pub(crate) fn col_chunk(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 32,
        Isa::Avx2 => 16,
        Isa::Scalar => 8,
    }
}

/// Whether an A at row stride `lda` floats is read in place by tier `isa`'s tiles (not
/// copied to a padded block: its rows would crowd one L1 set, see `should_pack`).
pub(crate) fn reads_in_place(isa: Isa, lda: usize) -> bool {
    !should_pack(lda, tile_rows(isa))
}

thread_local! {
    /// The calling thread's row-scaled copy (see [`PackedGemm::with_scaled_rows`]).
    static SCALED: std::cell::RefCell<PackedGemm> = std::cell::RefCell::new(PackedGemm::empty());
}

/// A weight matrix `[K, N]` packed into 32-column panels, with its bias.
#[derive(Debug, Clone)]
pub struct PackedGemm {
    k: usize,
    n: usize,
    /// `panels · k · PANEL` floats.
    data: AlignedVec,
    /// `panels · PANEL` floats (zeros when the layer has no bias).
    bias: AlignedVec,
}

impl PackedGemm {
    /// Packs `B[kk, col] = weight(kk, col)` for `kk < k`, `col < n`, with an optional bias
    /// of `n` elements.
    pub fn from_fn(
        k: usize,
        n: usize,
        bias: Option<&[f32]>,
        weight: impl Fn(usize, usize) -> f32,
    ) -> Result<Self> {
        let mut packed = PackedGemm::zeros(k, n, bias)?;
        for (p, panel) in packed.data.chunks_exact_mut(k * PANEL).enumerate() {
            for (kk, row) in panel.chunks_exact_mut(PANEL).enumerate() {
                for (l, v) in row.iter_mut().enumerate() {
                    let col = p * PANEL + l;
                    if col < n {
                        *v = weight(kk, col);
                    }
                }
            }
        }
        Ok(packed)
    }

    /// No buffers (K = N = 0): only the target of `scale_rows_into`, never run.
    fn empty() -> Self {
        PackedGemm {
            k: 0,
            n: 0,
            data: AlignedVec::default(),
            bias: AlignedVec::default(),
        }
    }

    /// A zero `[k, n]` matrix with its bias: the sizes checked, the panels allocated.
    fn zeros(k: usize, n: usize, bias: Option<&[f32]>) -> Result<Self> {
        if k == 0 || n == 0 {
            return Err(Error::shape(
                "gemm weight",
                "K ≥ 1 and N ≥ 1",
                format!("K = {k}, N = {n}"),
            ));
        }
        if let Some(b) = bias {
            if b.len() != n {
                return Err(Error::shape(
                    "gemm bias",
                    format!("{n} elements"),
                    format!("{}", b.len()),
                ));
            }
        }
        let panels = n.div_ceil(PANEL);
        let size = panels
            .checked_mul(k)
            .and_then(|v| v.checked_mul(PANEL))
            .ok_or(Error::Overflow("packed gemm weight"))?;
        let mut padded_bias = AlignedVec::zeros(panels * PANEL);
        if let Some(b) = bias {
            padded_bias[..n].copy_from_slice(b);
        }
        Ok(PackedGemm {
            k,
            n,
            data: AlignedVec::zeros(size),
            bias: padded_bias,
        })
    }

    /// Packs `B[kk, col] = b[kk·ldb + col]` for `kk < k`, `col < n`, without a bias: row
    /// slices copied whole into the panels (an activation packed per call, as the
    /// pointwise weight gradient does, where [`from_fn`](Self::from_fn)'s element-wise
    /// closure cost more than the GEMM).
    pub fn from_rows(b: &[f32], k: usize, n: usize, ldb: usize) -> Result<Self> {
        let mut packed = PackedGemm::zeros(k, n, None)?;
        if ldb < n || !fits(b.len(), k, ldb, n) {
            return Err(Error::shape(
                "gemm rows",
                format!("{k} rows of {n} with stride ≥ {n}"),
                format!("{} elements with stride {ldb}", b.len()),
            ));
        }
        for (p, panel) in packed.data.chunks_exact_mut(k * PANEL).enumerate() {
            let (c0, width) = (p * PANEL, PANEL.min(n - p * PANEL));
            for (kk, row) in panel.chunks_exact_mut(PANEL).enumerate() {
                row[..width].copy_from_slice(&b[kk * ldb + c0..][..width]);
            }
        }
        Ok(packed)
    }

    /// Runs `f` on this matrix with row `kk` scaled by `scale[kk]` (`B'[kk, col] = B[kk,
    /// col] · scale[kk]`), the bias unchanged: a per-channel gate on the GEMM's input (a
    /// squeeze-excitation's) folded into the weight, when the weight is smaller than the
    /// input it would otherwise scale. The scaled copy lives in a buffer of the calling
    /// thread, kept between calls (grown, never shrunk: no allocation or page faults in
    /// steady state; a fresh one for a re-entrant call), and is written by up to `tasks` of
    /// `exec`'s threads, a run of whole panels each.
    pub fn with_scaled_rows<R>(
        &self,
        scale: &[f32],
        exec: &impl Parallel,
        tasks: usize,
        f: impl FnOnce(&PackedGemm) -> Result<R>,
    ) -> Result<R> {
        if scale.len() != self.k {
            return Err(Error::shape(
                "gemm row scale",
                format!("{} values", self.k),
                format!("{}", scale.len()),
            ));
        }
        SCALED.with(|cell| match cell.try_borrow_mut() {
            Ok(mut copy) => {
                self.scale_rows_into(scale, &mut copy, exec, tasks)?;
                f(&copy)
            }
            Err(_) => {
                let mut copy = PackedGemm::empty();
                self.scale_rows_into(scale, &mut copy, exec, tasks)?;
                f(&copy)
            }
        })
    }

    /// `dst` = this matrix with its rows scaled (`scale.len() == k`, checked by the
    /// caller), in `dst`'s buffers grown as needed.
    fn scale_rows_into(
        &self,
        scale: &[f32],
        dst: &mut PackedGemm,
        exec: &impl Parallel,
        tasks: usize,
    ) -> Result<()> {
        let panel_len = self.k * PANEL;
        let len = self.n.div_ceil(PANEL) * panel_len;
        dst.k = self.k;
        dst.n = self.n;
        dst.data.ensure_len(len);
        dst.bias.ensure_len(self.bias.len());
        dst.bias[..self.bias.len()].copy_from_slice(&self.bias);
        let src = &self.data[..len];
        exec.try_for_each_row_blocks(&mut dst.data[..len], panel_len, 1, tasks, &|p0, chunk| {
            let src = &src[p0 * panel_len..][..chunk.len()];
            for (dp, sp) in chunk
                .chunks_exact_mut(panel_len)
                .zip(src.chunks_exact(panel_len))
            {
                for ((d, s), &g) in dp
                    .chunks_exact_mut(PANEL)
                    .zip(sp.chunks_exact(PANEL))
                    .zip(scale)
                {
                    for (d, s) in d.iter_mut().zip(s) {
                        *d = s * g;
                    }
                }
            }
            Ok(())
        })
    }

    /// Reduction length K (input channels, or `kH·kW·C_in` for a dense convolution).
    pub fn k(&self) -> usize {
        self.k
    }
    /// Output columns N.
    pub fn n(&self) -> usize {
        self.n
    }

    /// `out[r·ldc + col] = act(bias[col] + Σ_kk a[r·lda + kk] · B[kk, col])` for `r < m`,
    /// `col < N`, on the calling thread with tier `isa`. Elements of `out` outside those positions are not touched.
    pub fn run(
        &self,
        isa: Tier,
        a: &[f32],
        lda: usize,
        m: usize,
        out: &mut [f32],
        ldc: usize,
        act: Activation,
    ) -> Result<()> {
        self.run_add(isa, a, lda, m, out, ldc, act, None)
    }

    /// [`run`](Self::run) plus a residual added after the activation:
    /// `out[r·ldc + col] = act(…) + res[r·ldr + col]` with `residual = Some((res, ldr))`.
    /// Each element is the same `f32` sum as running `run` and adding `res` afterwards
    /// (bitwise), without the second pass over `out`.
    pub fn run_add(
        &self,
        isa: Tier,
        a: &[f32],
        lda: usize,
        m: usize,
        out: &mut [f32],
        ldc: usize,
        act: Activation,
        residual: Option<(&[f32], usize)>,
    ) -> Result<()> {
        if m == 0 {
            return Ok(());
        }
        self.check_residual(m, residual)?;
        if lda < self.k || !fits(a.len(), m, lda, self.k) {
            return Err(Error::shape(
                "gemm input",
                format!("{m} rows of {} with stride ≥ {}", self.k, self.k),
                format!("{} elements with stride {lda}", a.len()),
            ));
        }
        self.check_out(m, out.len(), ldc)?;
        let res = residual.map(|(r, ld)| (r.as_ptr(), ld));
        // SAFETY: extents checked above; all columns.
        unsafe {
            self.run_cols(
                isa,
                a,
                (lda, 1, 0),
                m,
                out.as_mut_ptr(),
                ldc,
                act,
                res,
                0..self.n,
            )
        };
        Ok(())
    }

    /// [`run`](Self::run) with each row of A in `segs` equal runs: row `r` reads
    /// `a[r·lda + s·seg_stride ..][..K / segs]` for `s < segs`, in order, as its K values.
    /// This is a convolution read in place (implicit GEMM): with `lda = stride·C_in`, one
    /// run per kernel row and `seg_stride` one input row, an output row segment needs no
    /// im2col copy. Each element is computed by the same operations as `run` on the
    /// unfolded matrix, so the bits are the same. Needs `segs` dividing K, runs of at most
    /// `KC` floats (each reduction block is whole runs) and `seg_stride ≥ K / segs`.
    #[allow(clippy::too_many_arguments)]
    pub fn run_segmented(
        &self,
        isa: Tier,
        a: &[f32],
        lda: usize,
        segs: usize,
        seg_stride: usize,
        m: usize,
        out: &mut [f32],
        ldc: usize,
        act: Activation,
    ) -> Result<()> {
        if m == 0 {
            return Ok(());
        }
        let seg_len = self.k.checked_div(segs).unwrap_or(0);
        let need = (m - 1)
            .checked_mul(lda)
            .zip((segs.max(1) - 1).checked_mul(seg_stride))
            .and_then(|(x, y)| x.checked_add(y))
            .and_then(|x| x.checked_add(seg_len));
        if segs == 0
            || !self.k.is_multiple_of(segs)
            || seg_len > KC
            || seg_stride < seg_len
            || need.is_none_or(|n| n > a.len())
        {
            return Err(Error::shape(
                "segmented gemm input",
                format!(
                    "{m} rows of {segs} runs of K / runs ≤ {KC} floats, K = {}",
                    self.k
                ),
                format!(
                    "{} elements, row stride {lda}, run stride {seg_stride}",
                    a.len()
                ),
            ));
        }
        self.check_out(m, out.len(), ldc)?;
        // SAFETY: extents checked above (every run of every row inside `a`, m rows of N
        // in `out`); all columns.
        unsafe {
            self.run_cols(
                isa,
                a,
                (lda, segs, seg_stride),
                m,
                out.as_mut_ptr(),
                ldc,
                act,
                None,
                0..self.n,
            )
        };
        Ok(())
    }

    /// Checks that an output of `len` floats holds `m` rows of N at stride `ldc`.
    fn check_out(&self, m: usize, len: usize, ldc: usize) -> Result<()> {
        if ldc < self.n || !fits(len, m, ldc, self.n) {
            return Err(Error::shape(
                "gemm output",
                format!("{m} rows of {} with stride ≥ {}", self.n, self.n),
                format!("{len} elements with stride {ldc}"),
            ));
        }
        Ok(())
    }

    /// Checks that a residual holds `m` rows of N at its stride.
    fn check_residual(&self, m: usize, residual: Option<(&[f32], usize)>) -> Result<()> {
        match residual {
            Some((r, ldr)) if m > 0 && (ldr < self.n || !fits(r.len(), m, ldr, self.n)) => {
                Err(Error::shape(
                    "gemm residual",
                    format!("{m} rows of {} with stride ≥ {}", self.n, self.n),
                    format!("{} elements with stride {ldr}", r.len()),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Columns `cols` (starting on a multiple of [`col_chunk`]) of `run`, on the calling
    /// thread.
    ///
    /// `a_layout = (lda, segs, seg_stride)`: A as in [`run_segmented`](Self::run_segmented)
    /// (`(lda, 1, 0)` for a plain matrix).
    ///
    /// # Safety
    /// `a` holds `m` rows of K at that layout (segmented: runs ≤ `KC`) and `out` `m` rows at
    /// stride `ldc ≥ N`, and so does the residual, if any, at its stride `≥ N`; no other thread writes these columns of `out` meanwhile.
    unsafe fn run_cols(
        &self,
        isa: Tier,
        a: &[f32],
        a_layout: (usize, usize, usize),
        m: usize,
        out: *mut f32,
        ldc: usize,
        act: Activation,
        residual: Option<(*const f32, usize)>,
        cols: std::ops::Range<usize>,
    ) {
        PACKED_A.with(|cell| {
            let mut packed_a = cell.borrow_mut();
            // Every call sizes the buffer: a plain A (one run per row) may be packed. (A
            // segmented call once skipped this and wrote past an empty buffer.)
            packed_a.ensure_len(tile_rows(isa.isa()) * MC_TILES * (KC + PACKED_ROW_PAD));
            // SAFETY: the caller's contract.
            unsafe {
                self.run_checked(
                    isa,
                    a,
                    a_layout,
                    m,
                    out,
                    ldc,
                    act,
                    residual,
                    packed_a.as_mut_ptr(),
                    cols,
                )
            };
        });
    }

    /// `run_cols` with the per-thread packing buffer at `packed_a`
    /// (`tile_rows(isa)·MC_TILES·(KC + PACKED_ROW_PAD)` floats). The thread-local borrow happens out here:
    /// a closure inside a `#[target_feature]` function would not inherit the features.
    unsafe fn run_checked(
        &self,
        isa: Tier,
        a: &[f32],
        (lda, segs, seg_stride): (usize, usize, usize),
        m: usize,
        out: *mut f32,
        ldc: usize,
        act: Activation,
        residual: Option<(*const f32, usize)>,
        packed_a: *mut f32,
        cols: std::ops::Range<usize>,
    ) {
        let args = GemmArgs {
            packed_a,
            pack: segs == 1 && should_pack(lda, tile_rows(isa.isa())),
            m,
            k: self.k,
            a: a.as_ptr(),
            lda,
            segs,
            seg_stride,
            b: self.data.as_ptr(),
            bias: self.bias.as_ptr(),
            c: out,
            ldc,
            res: residual.map_or(std::ptr::null(), |(r, _)| r),
            ldr: residual.map_or(0, |(_, ld)| ld),
            col_begin: cols.start,
            col_end: cols.end,
            epi: Epilogue::new(act),
        };
        // SAFETY: the extents of a and out are the caller's contract; data and bias hold
        // panels·k·PANEL and panels·PANEL floats by construction; packed_a holds a whole
        // A block; a `Tier` exists only for a tier whose features this CPU has.
        unsafe {
            match isa.isa() {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => gemm_avx512(&args),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => gemm_avx2(&args),
                _ => gemm_portable(&args),
            }
        }
    }
}

/// True when `len` elements hold `rows ≥ 1` rows of `width` at stride `ld`.
pub(crate) fn fits(len: usize, rows: usize, ld: usize, width: usize) -> bool {
    match (rows - 1)
        .checked_mul(ld)
        .and_then(|v| v.checked_add(width))
    {
        Some(need) => len >= need,
        None => false,
    }
}

/// Raw operands of one GEMM call; extents checked by [`PackedGemm::run`].
struct GemmArgs {
    /// Per-thread scratch for one packed A block.
    packed_a: *mut f32,
    /// Whether A is packed (see [`should_pack`]) or read in place.
    pack: bool,
    m: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    /// Each row of A in `segs` runs of `k / segs` consecutive floats, run `s` starting
    /// `s·seg_stride` floats after the row's start (1 and 0 for a plain matrix; see
    /// [`PackedGemm::run_segmented`]).
    segs: usize,
    seg_stride: usize,
    b: *const f32,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    /// Residual added after the activation (null: none), row stride `ldr`.
    res: *const f32,
    ldr: usize,
    /// Output columns `col_begin .. col_end` (col_begin on a multiple of [`col_chunk`]).
    col_begin: usize,
    col_end: usize,
    epi: Epilogue,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn gemm_avx512(args: &GemmArgs) {
    // SAFETY: entry contract (extents checked, AVX-512 detected).
    unsafe { gemm_body::<super::simd::Avx512, AVX512_MR, 2>(args) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gemm_avx2(args: &GemmArgs) {
    // SAFETY: entry contract (extents checked, AVX2+FMA detected).
    unsafe { gemm_body::<super::simd::Avx2, AVX2_MR, 2>(args) }
}

unsafe fn gemm_portable(args: &GemmArgs) {
    // SAFETY: entry contract (extents checked); the portable tier needs no feature.
    unsafe { gemm_body::<Portable, PORTABLE_MR, 1>(args) }
}

/// Reduction block of a GEMM of `k` in `segs` runs: [`KC`] for a plain A; for a segmented
/// one as many whole runs as fit in `KC` (at least one), so each block starts at a run.
/// The microkernel accumulates onto C in `k` order whatever the blocking, so the bits do
/// not depend on it.
fn seg_block(k: usize, segs: usize) -> usize {
    if segs <= 1 {
        return KC;
    }
    let run = k / segs;
    (KC / run.max(1)).max(1) * run
}

/// The five-loop driver, generic over the tier; see the module docs.
#[inline(always)]
unsafe fn gemm_body<S: Simd, const MR: usize, const NV: usize>(g: &GemmArgs) {
    let width = NV * S::LANES;
    debug_assert_eq!(PANEL % width, 0);
    debug_assert_eq!(g.col_begin % width, 0);
    let block_rows = MR * MC_TILES;
    let pa = g.packed_a;
    {
        let mut ic = 0;
        while ic < g.m {
            let mc = block_rows.min(g.m - ic);
            let mut pc = 0;
            while pc < g.k {
                let kc = seg_block(g.k, g.segs).min(g.k - pc);
                let (first, last) = (pc == 0, pc + kc == g.k);
                // SAFETY: rows ic..ic+mc < m and columns pc..pc+kc ≤ k of A (extents
                // checked by the caller); the packed block holds block_rows·KC floats.
                if g.pack {
                    unsafe { pack_a(g.a.add(ic * g.lda + pc), g.lda, mc, kc, pa) };
                }
                let packed_ld = kc + PACKED_ROW_PAD;
                let (row_stride, k_stride) = if g.pack { (packed_ld, 1) } else { (g.lda, 1) };
                let mut col0 = g.col_begin;
                while col0 < g.col_end {
                    // A last chunk of exactly three 8-lane vectors at a panel's start (N =
                    // 32q + 24: PP-OCR det's 96→24 3×3 head convolutions) runs 3 × 24 tiles
                    // (9 accumulators, 3 B loads and 3 broadcasts per step) instead of a
                    // 6 × 16 and a 6 × 8 tile (the latter 6 accumulators, short of hiding
                    // the FMA latency, and 7 loads per 6 FMAs): one thread, Zen 3, 96→24
                    // 3×3 at 160²: 15.3 → 12.7 ms. (4 × 24 needs all 16 ymm registers and
                    // LLVM spilled: 26 ms.) Same per-lane operations, so the same bits.
                    let three = NV == 2
                        && S::LANES == 8
                        && col0.is_multiple_of(PANEL)
                        && g.col_end - col0 == 3 * S::LANES;
                    let cols = if three {
                        3 * S::LANES
                    } else {
                        width.min(g.col_end - col0)
                    };
                    let (panel, within) = (col0 / PANEL, col0 % PANEL);
                    // SAFETY (all offsets below): reduction pc..pc+kc ≤ k, columns
                    // col0..col0+cols inside one padded panel, rows ic+ir < m; the caller
                    // checked the extents of C, and the packed buffers hold whole panels.
                    let b = unsafe { g.b.add((panel * g.k + pc) * PANEL + within) };
                    let bias = unsafe { g.bias.add(col0) };
                    let tile_mr = if three { 3 } else { MR };
                    let mut ir = 0;
                    while ir < mc {
                        let rows = mc - ir;
                        let t = Tile {
                            kc,
                            // Segmented A is never packed; its K blocks are whole runs
                            // (`seg_block`), so a block starts at a run's start.
                            seg_len: if g.segs > 1 { g.k / g.segs } else { kc },
                            seg_jump: if g.segs > 1 {
                                g.seg_stride - g.k / g.segs
                            } else {
                                0
                            },
                            // Packed rows sit at stride kc + PACKED_ROW_PAD.
                            a: unsafe {
                                if g.pack {
                                    pa.add(ir * packed_ld)
                                } else if g.segs > 1 {
                                    g.a.add((ic + ir) * g.lda + pc / (g.k / g.segs) * g.seg_stride)
                                } else {
                                    g.a.add((ic + ir) * g.lda + pc)
                                }
                            },
                            row_stride,
                            k_stride,
                            b,
                            c: unsafe { g.c.add((ic + ir) * g.ldc + col0) },
                            ldc: g.ldc,
                            res: if g.res.is_null() {
                                g.res
                            } else {
                                unsafe { g.res.add((ic + ir) * g.ldr + col0) }
                            },
                            ldr: g.ldr,
                            first,
                            last,
                            bias,
                            cols,
                        };
                        // A last column chunk of at most one vector (144 = 4·32 + 16
                        // channels) runs a one-vector-wide microkernel instead of half
                        // of a two-vector one through the edge buffer. Same per-lane
                        // operations, so the same bits.
                        unsafe {
                            if three {
                                run_tile::<S, 3, 3>(&t, rows, &g.epi);
                            } else if NV > 1 && cols <= S::LANES {
                                run_tile::<S, MR, 1>(&t, rows, &g.epi);
                            } else {
                                run_tile::<S, MR, NV>(&t, rows, &g.epi);
                            }
                        }
                        ir += tile_mr;
                    }
                    col0 += cols;
                }
                if last && g.epi.out_of_line() {
                    // Sigmoid / SiLU over the whole row block just finished (its rows are
                    // still in L1/L2), in long loops whose exponentials overlap, rather than
                    // tile by tile (12 vectors a call): `perf` on EfficientNet-B0 batch 1, 1
                    // thread, Zen 3: the pass fell from 0.41× to 0.31× the GEMM's samples.
                    // SAFETY: rows ic..ic+mc < m, columns col_begin..col_end of C (and of
                    // the residual) checked by the caller.
                    unsafe {
                        let res = if g.res.is_null() {
                            g.res
                        } else {
                            g.res.add(ic * g.ldr + g.col_begin)
                        };
                        S::rows_epilogue(
                            g.c.add(ic * g.ldc + g.col_begin),
                            g.ldc,
                            mc,
                            g.col_end - g.col_begin,
                            res,
                            g.ldr,
                            &g.epi,
                        );
                    }
                }
                pc += kc;
            }
            ic += mc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `from_rows` packs exactly what `from_fn` packs, at any row stride, and refuses a
    /// buffer too short for its rows or an empty matrix.
    #[test]
    fn from_rows_packs_like_from_fn() {
        for (k, n, ldb) in [(1, 1, 1), (7, 33, 40), (5, 64, 64), (3, 70, 71)] {
            let b: Vec<f32> = (0..k * ldb).map(|v| v as f32 * 0.5 - 3.0).collect();
            let rows = PackedGemm::from_rows(&b, k, n, ldb).unwrap();
            let by_fn = PackedGemm::from_fn(k, n, None, |kk, c| b[kk * ldb + c]).unwrap();
            assert_eq!((rows.k(), rows.n()), (k, n));
            assert_eq!(rows.data[..], by_fn.data[..], "k {k} n {n} ldb {ldb}");
            assert_eq!(rows.bias[..], by_fn.bias[..]);
        }
        let b = vec![0.0f32; 10];
        assert!(matches!(
            PackedGemm::from_rows(&b, 3, 4, 4),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            PackedGemm::from_rows(&b, 2, 4, 3),
            Err(Error::Shape { .. })
        ));
        assert!(PackedGemm::from_rows(&b, 0, 4, 4).is_err());
        assert!(PackedGemm::from_rows(&b, 2, 5, 5).is_ok());
    }

    /// `with_scaled_rows` hands `f` exactly the matrix packed from the scaled weight, with
    /// the bias, on 1 and 3 threads, through the kept buffer as sizes grow and shrink (a
    /// longer buffer from an earlier, larger matrix included) and in a re-entrant call;
    /// a scale of the wrong length is an error.
    #[test]
    fn scaled_rows_match_packing_the_scaled_weight() {
        let isa = Tier::best();
        let one = crate::Executor::single();
        let three = crate::Executor::new(3).unwrap();
        for (k, n) in [(40, 70), (3, 5), (17, 96), (64, 33), (1, 1)] {
            let w = |kk: usize, c: usize| (kk * 31 + c * 7) as f32 * 0.01 - 1.0;
            let bias: Vec<f32> = (0..n).map(|c| c as f32 * 0.25).collect();
            let scale: Vec<f32> = (0..k).map(|kk| 0.5 + kk as f32 * 0.125).collect();
            let packed = PackedGemm::from_fn(k, n, Some(&bias), w).unwrap();
            let want = PackedGemm::from_fn(k, n, Some(&bias), |kk, c| w(kk, c) * scale[kk]);
            let want = want.unwrap();
            let len = want.data.len();
            for exec in [&one, &three] {
                let got = packed.with_scaled_rows(&scale, exec, exec.threads(), |p| {
                    assert_eq!((p.k(), p.n()), (k, n));
                    assert_eq!(p.data[..len], want.data[..], "k {k} n {n}");
                    assert_eq!(p.bias[..want.bias.len()], want.bias[..]);
                    // A re-entrant call gets its own buffer and the same matrix.
                    packed.with_scaled_rows(&scale, exec, 1, |q| {
                        assert_eq!(q.data[..len], want.data[..]);
                        Ok(())
                    })?;
                    // Both run to the same outputs.
                    let a: Vec<f32> = (0..3 * k).map(|v| (v % 5) as f32 - 2.0).collect();
                    let (mut x, mut y) = (vec![0f32; 3 * n], vec![0f32; 3 * n]);
                    p.run(isa, &a, k, 3, &mut x, n, Activation::None)?;
                    want.run(isa, &a, k, 3, &mut y, n, Activation::None)?;
                    assert_eq!(x, y);
                    Ok(p.data.len())
                });
                assert!(got.unwrap() >= len);
            }
            let short = &scale[..k - 1];
            assert!(packed.with_scaled_rows(short, &one, 1, |_| Ok(())).is_err());
        }
    }
}
