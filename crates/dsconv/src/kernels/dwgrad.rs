//! NHWC depthwise backward (multiplier 1, zero padding, any kernel, stride and dilation):
//! the input gradient and the weight gradient of
//! `y[n, oy, ox, c] = Σ_{i,j} x[n, oy·sH + i·dH − pad_top, ox·sW + j·dW − pad_left, c] · w[i, j, c]`.
//!
//! # Input gradient: a depthwise transposed convolution, by output phase
//! `dx[n, iy, ix, c] = Σ dy[n, oy, ox, c] · w[i, j, c]` over the taps with
//! `oy·sH + i·dH − pad_top = iy` and `ox·sW + j·dW − pad_left = ix`. For one input row the
//! kernel rows that reach it (and their `oy`) are resolved once (`rows`); the columns go by
//! phase `r = ix mod sW`: every pixel `ix = r + sW·t` of a phase is reached by the same
//! kernel columns `J_r`, at output column `t + off_j`, so a phase is a stride-1
//! correlation of `dy` with the taps `J_r` (at stride 1 there is one phase: the
//! convolution with the flipped kernel; at stride 2, two). Inside the columns where every
//! tap of `J_r` lands in `dy`, blocks of `P` pixels × one channel vector accumulate in
//! registers (each weight vector loaded once per block), a block sweeping every channel
//! tile before the next block (whole NHWC pixels, read and written in order: with the
//! channel tiles outermost, strided reads missed the cache); border pixels check each tap.
//! The interior's last pixels form one narrower block (1..P−1 pixels); border pixels take
//! their taps alternately into two accumulators. Which path a pixel takes depends on the
//! geometry only, so the split into threads never changes a bit. Every element of `dx` is written
//! (no zeroing beforehand).
//!
//! # Weight gradient: per output row, pixel pairs over every channel tile
//! `dw[i, j, c] = Σ_{n, oy, ox} x[n, iy, ix, c] · dy[n, oy, ox, c]`. For one output row
//! and kernel row, the taps go in groups of up to 5 columns (`TAP_GROUP`); pixels go in
//! pairs (checked only at the border columns), each pair sweeping every channel tile and
//! adding its products to the row's sums (`[kH·kW, C_pad]`, in L1; the tiles' chains are
//! independent). Whole NHWC pixels are read in order: with the channel tiles outermost and
//! the sums in registers, the strided reads missed the cache (C384@14², batch 32: 24 ms).
//! The row's sums are then added to the caller's accumulator. The caller (`grad`)
//! splits the rows into a fixed number of chunks that depends on the geometry only and
//! adds the chunks' sums in chunk order: bitwise identical for every thread count.
//!
//! # Pointwise weight gradient, read in place
//! [`pointwise_weight_block`] (training's other hot weight gradient, kept beside this one):
//! `C[i, j] = Σ_k a[k, i] · b[k, j]` over one block of NHWC pixels, a register tile
//! broadcasting `a`'s channels and loading `b`'s straight from the activations (no
//! transposed or packed copies), each element the GEMM's own `fma` chain.

use super::simd::{Portable, Simd};
use super::{AlignedVec, Isa, Tier};
use crate::error::{Error, Result};
use crate::geometry::{ConvGeometry, PaddingMode};

/// Channel padding of the packed weights and of the weight-gradient accumulators: the
/// widest vector (AVX-512), so every tier loads and stores whole vectors there.
pub(crate) const CHANNEL_PAD: usize = 16;

/// Most kernel columns of one weight-gradient group: the bodies are unrolled over the
/// group, and 5 takes a 3×3 or 5×5 kernel row in one group (7 columns: 5 + 2).
const TAP_GROUP: usize = 5;

/// Whether the depthwise backward kernels take `g`: one input channel per group and one
/// output per input channel (multiplier 1), zero padding (or none).
pub(crate) fn applies(g: &ConvGeometry) -> bool {
    let c = g.in_channels();
    let padded = g.pad_top() + g.pad_bottom() + g.pad_left() + g.pad_right() > 0;
    g.groups() == c && g.out_channels() == c && (g.padding_mode() == PaddingMode::Zeros || !padded)
}

/// Channels padded to [`CHANNEL_PAD`].
pub(crate) fn padded_channels(c: usize) -> usize {
    c.next_multiple_of(CHANNEL_PAD)
}

/// A depthwise weight `[C, 1, kH, kW]` packed tap major, `[kH·kW, C_pad]`, channels padded
/// with zeros: one tap's channel vectors are contiguous.
pub(crate) struct PackedTaps {
    channels: usize,
    taps: usize,
    data: AlignedVec,
}

impl PackedTaps {
    /// Packs the PyTorch-order weight of `g` (which [`applies`]).
    pub(crate) fn new(g: &ConvGeometry, weight: &[f32]) -> Result<Self> {
        let c = g.in_channels();
        let taps = g.kernel_h() * g.kernel_w();
        check("depthwise weight", weight.len(), c * taps)?;
        let cp = padded_channels(c);
        let mut data = AlignedVec::zeros(taps * cp);
        for ch in 0..c {
            for t in 0..taps {
                data[t * cp + ch] = weight[ch * taps + t];
            }
        }
        Ok(PackedTaps {
            channels: c,
            taps,
            data,
        })
    }
}

fn check(what: &'static str, len: usize, expected: usize) -> Result<()> {
    if len != expected {
        return Err(Error::shape(
            what,
            format!("{expected} elements"),
            format!("{len} elements"),
        ));
    }
    Ok(())
}

fn check_geometry(g: &ConvGeometry) -> Result<()> {
    if !applies(g) {
        return Err(Error::shape(
            "depthwise backward kernel geometry",
            "groups = C_in = C_out, zero padding",
            format!("{g:?}"),
        ));
    }
    Ok(())
}

/// One phase of the input columns: pixels `ix = r + sW·t`, `t < count`, reached by the
/// kernel columns `taps` (`(j, off)`: output column `t + off`); `lo..hi` are the `t` at
/// which every tap lands inside `dy`.
struct Phase {
    r: usize,
    count: usize,
    taps: Vec<(usize, isize)>,
    lo: usize,
    hi: usize,
}

/// What the input-gradient bodies read, resolved once per call.
struct InputCtx {
    c: usize,
    cp: usize,
    kw: usize,
    sw: usize,
    out_w: usize,
    phases: Vec<Phase>,
    w: *const f32,
}

fn phases(g: &ConvGeometry) -> Vec<Phase> {
    let (sw, dw, pl) = (g.stride_w(), g.dilation_w(), g.pad_left() as isize);
    let (in_w, out_w) = (g.in_w(), g.out_w() as isize);
    (0..sw.min(in_w))
        .map(|r| {
            let count = (in_w - r).div_ceil(sw);
            // ix + pl − j·dW = ox·sW with ix = r + sW·t ⇒ ox = t + (r + pl − j·dW)/sW.
            let taps: Vec<(usize, isize)> = (0..g.kernel_w())
                .filter_map(|j| {
                    let num = r as isize + pl - (j * dw) as isize;
                    (num.rem_euclid(sw as isize) == 0).then(|| (j, num.div_euclid(sw as isize)))
                })
                .collect();
            // 0 ≤ t + off < out_w for every tap.
            let lo = taps.iter().map(|&(_, o)| -o).max().unwrap_or(0).max(0);
            let hi = taps
                .iter()
                .map(|&(_, o)| out_w - o)
                .min()
                .unwrap_or(count as isize)
                .clamp(0, count as isize);
            let lo = (lo as usize).min(hi as usize);
            Phase {
                r,
                count,
                taps,
                lo,
                hi: hi as usize,
            }
        })
        .collect()
}

/// The input gradient of input rows `rows` (global index `n·in_H + iy`) into `dx` (those
/// rows, NHWC, every element written), from `dy` (NHWC, whole) and the packed weight, on
/// tier `isa`, single-threaded.
pub(crate) fn input_rows(
    isa: Tier,
    g: &ConvGeometry,
    w: &PackedTaps,
    dy: &[f32],
    rows: std::ops::Range<usize>,
    dx: &mut [f32],
) -> Result<()> {
    check_geometry(g)?;
    let c = g.in_channels();
    if w.channels != c || w.taps != g.kernel_h() * g.kernel_w() {
        return Err(Error::shape(
            "depthwise packed weight",
            format!("{c} channels × {} taps", g.kernel_h() * g.kernel_w()),
            format!("{} × {}", w.channels, w.taps),
        ));
    }
    check(
        "depthwise grad_output",
        dy.len(),
        g.batch() * g.out_h() * g.out_w() * c,
    )?;
    if rows.start > rows.end || rows.end > g.batch() * g.in_h() {
        return Err(Error::shape(
            "depthwise input-gradient rows",
            format!("a range within 0..{}", g.batch() * g.in_h()),
            format!("{rows:?}"),
        ));
    }
    let row_len = g.in_w() * c;
    check("depthwise input gradient", dx.len(), rows.len() * row_len)?;
    let ctx = InputCtx {
        c,
        cp: padded_channels(c),
        kw: g.kernel_w(),
        sw: g.stride_w(),
        out_w: g.out_w(),
        phases: phases(g),
        w: w.data.as_ptr(),
    };
    let (sh, dh, pt) = (g.stride_h(), g.dilation_h(), g.pad_top());
    let mut taps: Vec<(*const f32, usize)> = Vec::with_capacity(g.kernel_h());
    for (k, row) in rows.enumerate() {
        let (n, iy) = (row / g.in_h(), row % g.in_h());
        taps.clear();
        for i in 0..g.kernel_h() {
            // oy·sH = iy + pad_top − i·dH.
            let Some(num) = (iy + pt).checked_sub(i * dh) else {
                continue;
            };
            if num % sh == 0 && num / sh < g.out_h() {
                let oy = num / sh;
                // In bounds: oy < out_h, n < batch.
                taps.push((dy[(n * g.out_h() + oy) * g.out_w() * c..].as_ptr(), i));
            }
        }
        let out = &mut dx[k * row_len..][..row_len];
        // SAFETY: `taps` point at whole rows of `dy` (out_w·C floats), `out` is one whole
        // row of `dx` (in_w·C floats), the weights hold kH·kW·C_pad floats, and the phases'
        // taps are used only at output columns inside 0..out_w (interior ranges from
        // `phases`, checked elsewhere); `isa` was detected.
        unsafe { input_dispatch(isa, &ctx, &taps, out.as_mut_ptr()) };
    }
    Ok(())
}

/// # Safety
/// As `input_rows` checks them.
unsafe fn input_dispatch(isa: Tier, ctx: &InputCtx, taps: &[(*const f32, usize)], out: *mut f32) {
    // SAFETY: the function's contract; a `Tier` exists only for a tier this CPU has.
    unsafe {
        match isa.isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => input_avx512(ctx, taps, out),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => input_avx2(ctx, taps, out),
            _ => input_portable(ctx, taps, out),
        }
    }
}

/// The weight-gradient accumulator of one call: `[kH·kW, C_pad]`.
pub(crate) fn accumulator_len(g: &ConvGeometry) -> usize {
    g.kernel_h() * g.kernel_w() * padded_channels(g.in_channels())
}

/// A kernel row's tap groups: `(first column, columns, interior output columns)`.
type Group = (usize, usize, std::ops::Range<usize>);

struct WeightCtx {
    c: usize,
    cp: usize,
    kh: usize,
    kw: usize,
    sw: usize,
    dw: usize,
    pl: usize,
    in_w: usize,
    out_w: usize,
    groups: Vec<Group>,
}

/// Adds the weight gradient of output rows `rows` (global index `n·out_H + oy`) to `acc`
/// (`[kH·kW, C_pad]`, [`accumulator_len`]): each row's sum is formed alone and added, rows
/// in order. `x` and `dy` are NHWC and whole. Tier `isa`, single-threaded.
pub(crate) fn weight_rows(
    isa: Tier,
    g: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    rows: std::ops::Range<usize>,
    acc: &mut [f32],
) -> Result<()> {
    check_geometry(g)?;
    let c = g.in_channels();
    check(
        "depthwise input",
        x.len(),
        g.batch() * g.in_h() * g.in_w() * c,
    )?;
    check(
        "depthwise grad_output",
        dy.len(),
        g.batch() * g.out_h() * g.out_w() * c,
    )?;
    check(
        "depthwise weight accumulator",
        acc.len(),
        accumulator_len(g),
    )?;
    if rows.start > rows.end || rows.end > g.batch() * g.out_h() {
        return Err(Error::shape(
            "depthwise weight-gradient rows",
            format!("a range within 0..{}", g.batch() * g.out_h()),
            format!("{rows:?}"),
        ));
    }
    let kw = g.kernel_w();
    let groups = (0..kw)
        .step_by(TAP_GROUP)
        .map(|j0| {
            let n = TAP_GROUP.min(kw - j0);
            let mut lo = 0;
            let mut hi = g.out_w();
            for j in j0..j0 + n {
                let v = g.valid_cols(j);
                lo = lo.max(v.start);
                hi = hi.min(v.end);
            }
            (j0, n, lo.min(hi)..hi)
        })
        .collect();
    let ctx = WeightCtx {
        c,
        cp: padded_channels(c),
        kh: g.kernel_h(),
        kw,
        sw: g.stride_w(),
        dw: g.dilation_w(),
        pl: g.pad_left(),
        in_w: g.in_w(),
        out_w: g.out_w(),
        groups,
    };
    let mut row_acc = AlignedVec::zeros(accumulator_len(g));
    let mut taps: Vec<(*const f32, usize)> = Vec::with_capacity(g.kernel_h());
    for row in rows {
        let (n, oy) = (row / g.out_h(), row % g.out_h());
        taps.clear();
        for i in 0..g.kernel_h() {
            let iy = g.input_row(oy, i);
            if (0..g.in_h() as isize).contains(&iy) {
                taps.push((x[(n * g.in_h() + iy as usize) * g.in_w() * c..].as_ptr(), i));
            }
        }
        let d = &dy[row * g.out_w() * c..][..g.out_w() * c];
        // SAFETY: `taps` point at whole input rows (in_w·C floats) and `d` is a whole
        // `dy` row; input columns are used only inside 0..in_w (interior ranges from
        // `valid_cols`, checked elsewhere); `acc` holds kH·kW·C_pad floats; `isa` was
        // detected; `row_acc` is as long as `acc`.
        unsafe {
            weight_dispatch(
                isa,
                &ctx,
                &taps,
                d.as_ptr(),
                acc.as_mut_ptr(),
                row_acc.as_mut_ptr(),
            )
        };
    }
    Ok(())
}

/// # Safety
/// As `weight_rows` checks them.
unsafe fn weight_dispatch(
    isa: Tier,
    ctx: &WeightCtx,
    taps: &[(*const f32, usize)],
    dy: *const f32,
    acc: *mut f32,
    row_acc: *mut f32,
) {
    // SAFETY: the function's contract; a `Tier` exists only for a tier this CPU has.
    unsafe {
        match isa.isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => weight_avx512(ctx, taps, dy, acc, row_acc),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => weight_avx2(ctx, taps, dy, acc, row_acc),
            _ => weight_portable(ctx, taps, dy, acc, row_acc),
        }
    }
}

// Pixels per input-gradient register block: P accumulators + a weight + a `dy` vector
// (AVX2: 8 of 16 ymm, AVX-512: 10 of 32 zmm).
macro_rules! tier {
    ($input:ident, $weight:ident, $S:ty, [$($feat:literal)?], $p:literal) => {
        $(#[target_feature(enable = $feat)])?
        unsafe fn $input(ctx: &InputCtx, taps: &[(*const f32, usize)], out: *mut f32) {
            // SAFETY: the caller's contract (`input_rows`).
            unsafe { input_row::<$S, $p>(ctx, taps, out) }
        }
        $(#[target_feature(enable = $feat)])?
        unsafe fn $weight(
            ctx: &WeightCtx,
            taps: &[(*const f32, usize)],
            dy: *const f32,
            acc: *mut f32,
            row_acc: *mut f32,
        ) {
            // SAFETY: the caller's contract (`weight_rows`).
            unsafe { weight_row::<$S>(ctx, taps, dy, acc, row_acc) }
        }
    };
}

#[cfg(target_arch = "x86_64")]
tier!(
    input_avx512,
    weight_avx512,
    super::simd::Avx512,
    ["avx512f,avx512bw,avx512vl,avx2,fma"],
    8
);
#[cfg(target_arch = "x86_64")]
tier!(input_avx2, weight_avx2, super::simd::Avx2, ["avx2,fma"], 6);
tier!(input_portable, weight_portable, Portable, [], 4);

#[inline(always)]
unsafe fn load_in<S: Simd, const MASKED: bool>(p: *const f32, valid: usize) -> S::V {
    // SAFETY: the caller guarantees `valid` (LANES when not masked) readable floats at p.
    unsafe {
        if MASKED {
            S::load_partial(p, valid)
        } else {
            S::load(p)
        }
    }
}

#[inline(always)]
unsafe fn store_out<S: Simd, const MASKED: bool>(p: *mut f32, v: S::V, valid: usize) {
    // SAFETY: the caller guarantees `valid` (LANES when not masked) writable floats at p.
    unsafe {
        if MASKED {
            S::store_partial(p, v, valid)
        } else {
            S::store(p, v)
        }
    }
}

/// `over_tiles!(S, c, f[G,](args))` runs `f::<S, G, MASKED>(args, c0, valid)` on every channel tile of `$c`
/// channels: the whole vectors, then the masked tail. A macro, not a closure: closures do
/// not inherit the entry point's target features.
macro_rules! over_tiles {
    ($S:ident, $c:expr, $f:ident[$($g:tt)*]($($arg:expr),*)) => {{
        let c = $c;
        let full = c / $S::LANES * $S::LANES;
        let mut c0 = 0;
        while c0 < full {
            $f::<$S, $($g)* false>($($arg,)* c0, $S::LANES);
            c0 += $S::LANES;
        }
        if full < c {
            $f::<$S, $($g)* true>($($arg,)* full, c - full);
        }
    }};
}

/// One input row of `dx`: by phase, pixel block by pixel block, each block over every
/// channel tile (so the NHWC reads and writes stream through whole pixels).
#[inline(always)]
unsafe fn input_row<S: Simd, const P: usize>(
    ctx: &InputCtx,
    taps: &[(*const f32, usize)],
    out: *mut f32,
) {
    for ph in &ctx.phases {
        // SAFETY (all calls below): t < ph.count keeps ix = r + sW·t < in_w; blocks stay
        // inside lo..hi, where every tap's output column is inside dy's row; tiles stay
        // within C.
        unsafe {
            let mut t = 0;
            while t < ph.lo {
                over_tiles!(S, ctx.c, input_checked[](ctx, ph, taps, out, t));
                t += 1;
            }
            while t + P <= ph.hi {
                over_tiles!(S, ctx.c, input_block[P,](ctx, ph, taps, out, t));
                t += P;
            }
            // The rest of the interior as one narrower block (P ≤ 8).
            let rest = ph.hi - t.min(ph.hi);
            match rest {
                0 => {}
                1 => over_tiles!(S, ctx.c, input_block[1,](ctx, ph, taps, out, t)),
                2 => over_tiles!(S, ctx.c, input_block[2,](ctx, ph, taps, out, t)),
                3 => over_tiles!(S, ctx.c, input_block[3,](ctx, ph, taps, out, t)),
                4 => over_tiles!(S, ctx.c, input_block[4,](ctx, ph, taps, out, t)),
                5 => over_tiles!(S, ctx.c, input_block[5,](ctx, ph, taps, out, t)),
                6 => over_tiles!(S, ctx.c, input_block[6,](ctx, ph, taps, out, t)),
                _ => over_tiles!(S, ctx.c, input_block[7,](ctx, ph, taps, out, t)),
            }
            t += rest;
            while t < ph.count {
                over_tiles!(S, ctx.c, input_checked[](ctx, ph, taps, out, t));
                t += 1;
            }
        }
    }
}

/// Pixels `t .. t + B` of phase `ph`, every tap inside `dy`.
#[inline(always)]
unsafe fn input_block<S: Simd, const B: usize, const MASKED: bool>(
    ctx: &InputCtx,
    ph: &Phase,
    taps: &[(*const f32, usize)],
    out: *mut f32,
    t: usize,
    c0: usize,
    valid: usize,
) {
    let c = ctx.c;
    // SAFETY: the caller's contract: t + B ≤ hi, so every `t + p + off` is an output
    // column; weights are padded to C_pad ≥ c0 + LANES.
    unsafe {
        let mut acc = [S::zero(); B];
        for &(row, i) in taps {
            for &(j, off) in &ph.taps {
                let w = S::load(ctx.w.add((i * ctx.kw + j) * ctx.cp + c0));
                let base = row.add((t as isize + off) as usize * c + c0);
                for (p, a) in acc.iter_mut().enumerate() {
                    *a = S::mul_add(load_in::<S, MASKED>(base.add(p * c), valid), w, *a);
                }
            }
        }
        for (p, a) in acc.iter().enumerate() {
            let ix = ph.r + ctx.sw * (t + p);
            store_out::<S, MASKED>(out.add(ix * c + c0), *a, valid);
        }
    }
}

/// Pixel `t` of phase `ph`, each tap checked.
#[inline(always)]
unsafe fn input_checked<S: Simd, const MASKED: bool>(
    ctx: &InputCtx,
    ph: &Phase,
    taps: &[(*const f32, usize)],
    out: *mut f32,
    t: usize,
    c0: usize,
    valid: usize,
) {
    let c = ctx.c;
    // SAFETY: output columns are checked against 0..out_w; t < count keeps ix < in_w.
    unsafe {
        // Two accumulators taking the taps in turn (swapped after each: register
        // renaming, no move), so two FMA chains overlap.
        let (mut acc, mut other) = (S::zero(), S::zero());
        for &(row, i) in taps {
            for &(j, off) in &ph.taps {
                let ox = t as isize + off;
                if ox < 0 || ox >= ctx.out_w as isize {
                    continue;
                }
                let w = S::load(ctx.w.add((i * ctx.kw + j) * ctx.cp + c0));
                let v = load_in::<S, MASKED>(row.add(ox as usize * c + c0), valid);
                acc = S::mul_add(v, w, acc);
                std::mem::swap(&mut acc, &mut other);
            }
        }
        let ix = ph.r + ctx.sw * t;
        store_out::<S, MASKED>(out.add(ix * c + c0), S::add(acc, other), valid);
    }
}

/// One output row's weight gradient added to `acc`: the row's sums formed alone in
/// `row_acc` (same layout, zeroed here), then added. Pixel pairs sweep every channel tile
/// (whole NHWC pixels, read in order), the pair's products added to `row_acc` in L1.
#[inline(always)]
unsafe fn weight_row<S: Simd>(
    ctx: &WeightCtx,
    taps: &[(*const f32, usize)],
    dy: *const f32,
    acc: *mut f32,
    row_acc: *mut f32,
) {
    let len = ctx.kh * ctx.kw * ctx.cp;
    // SAFETY: `acc` and `row_acc` hold kH·kW·C_pad floats (C_pad a multiple of LANES);
    // the groups' bodies keep the caller's contract.
    unsafe {
        let mut k = 0;
        while k < len {
            S::store(row_acc.add(k), S::zero());
            k += S::LANES;
        }
        for &(row, i) in taps {
            for (j0, n, interior) in &ctx.groups {
                let at = row_acc.add((i * ctx.kw + j0) * ctx.cp);
                let g = (row, *j0, at, interior.clone());
                match n {
                    1 => weight_group::<S, 1>(ctx, g, dy),
                    2 => weight_group::<S, 2>(ctx, g, dy),
                    3 => weight_group::<S, 3>(ctx, g, dy),
                    4 => weight_group::<S, 4>(ctx, g, dy),
                    _ => weight_group::<S, 5>(ctx, g, dy),
                }
            }
        }
        let mut k = 0;
        while k < len {
            S::store(
                acc.add(k),
                S::add(S::load(acc.add(k)), S::load(row_acc.add(k))),
            );
            k += S::LANES;
        }
    }
}

/// One kernel row's columns `j0 .. j0 + T` of one output row (`row`: its input row,
/// `at`: `row_acc` at tap `(i, j0)`), every pixel: border pixels checked, interior pixels
/// in pairs, each over every channel tile.
#[inline(always)]
unsafe fn weight_group<S: Simd, const T: usize>(
    ctx: &WeightCtx,
    (row, j0, at, interior): (*const f32, usize, *mut f32, std::ops::Range<usize>),
    dy: *const f32,
) {
    // SAFETY: interior columns read inside the input row (from `valid_cols`), border ones
    // are checked; tiles stay within C; `at` has T·C_pad floats per tap row.
    unsafe {
        for ox in 0..interior.start {
            over_tiles!(S, ctx.c, weight_checked[T,](ctx, row, j0, dy, at, ox));
        }
        let mut ox = interior.start;
        while ox + 2 <= interior.end {
            over_tiles!(S, ctx.c, weight_pixels[T, 2,](ctx, row, j0, dy, at, ox));
            ox += 2;
        }
        if ox < interior.end {
            over_tiles!(S, ctx.c, weight_pixels[T, 1,](ctx, row, j0, dy, at, ox));
        }
        for ox in interior.end..ctx.out_w {
            over_tiles!(S, ctx.c, weight_checked[T,](ctx, row, j0, dy, at, ox));
        }
    }
}

/// Interior pixels `ox .. ox + B` of one channel tile: `at[jj] += Σ_p x[ix_jj(ox + p)] ·
/// dy[ox + p]`, pixels in order.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn weight_pixels<S: Simd, const T: usize, const B: usize, const MASKED: bool>(
    ctx: &WeightCtx,
    row: *const f32,
    j0: usize,
    dy: *const f32,
    at: *mut f32,
    ox: usize,
    c0: usize,
    valid: usize,
) {
    let c = ctx.c;
    // SAFETY: the caller's contract: pixels ox .. ox + B are interior, so every tap's input
    // column is inside the row; `at` rows are C_pad ≥ c0 + LANES long.
    unsafe {
        let mut d = [S::zero(); B];
        for (p, dv) in d.iter_mut().enumerate() {
            *dv = load_in::<S, MASKED>(dy.add((ox + p) * c + c0), valid);
        }
        let base = row.add((ox * ctx.sw + j0 * ctx.dw - ctx.pl) * c + c0);
        for jj in 0..T {
            let ap = at.add(jj * ctx.cp + c0);
            let mut a = S::load(ap);
            for (p, &dv) in d.iter().enumerate() {
                let v = load_in::<S, MASKED>(base.add((jj * ctx.dw + p * ctx.sw) * c), valid);
                a = S::mul_add(v, dv, a);
            }
            S::store(ap, a);
        }
    }
}

/// Border pixel `ox` of one channel tile, each tap checked against the input row.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn weight_checked<S: Simd, const T: usize, const MASKED: bool>(
    ctx: &WeightCtx,
    row: *const f32,
    j0: usize,
    dy: *const f32,
    at: *mut f32,
    ox: usize,
    c0: usize,
    valid: usize,
) {
    let c = ctx.c;
    // SAFETY: ox < out_w; input columns are checked against 0..in_w; `at` rows are
    // C_pad ≥ c0 + LANES long.
    unsafe {
        let d = load_in::<S, MASKED>(dy.add(ox * c + c0), valid);
        for jj in 0..T {
            let ix = (ox * ctx.sw + (j0 + jj) * ctx.dw) as isize - ctx.pl as isize;
            if ix >= 0 && (ix as usize) < ctx.in_w {
                let v = load_in::<S, MASKED>(row.add(ix as usize * c + c0), valid);
                let ap = at.add(jj * ctx.cp + c0);
                S::store(ap, S::mul_add(v, d, S::load(ap)));
            }
        }
    }
}

/// Rows of `C` per pointwise weight-gradient register tile (one broadcast each).
const PW_ROWS_AVX512: usize = 8;
const PW_ROWS_AVX2: usize = 6;
const PW_ROWS_PORTABLE: usize = 4;

/// Columns of `C` per pointwise weight-gradient panel: a panel's `B` rows of one K step
/// (`PW_PANEL · PW_KSTEP` floats, 128 KiB) stay in L2 while every row tile of `C` passes
/// over them.
const PW_PANEL: usize = 256;

/// Reduction steps per pass of the pointwise weight gradient: a row tile's `A` values of
/// one pass (`PW_KSTEP` rows, one or two cache lines each) stay in L1 while the panel's
/// column tiles pass over them. `C` is stored and reloaded between passes (exact).
const PW_KSTEP: usize = 128;

/// Reduction steps ahead at which a pointwise weight-gradient tile prefetches its `A` and
/// `B` rows: the operands are read in place at a stride of a whole pixel, so the first
/// tile over a pass's rows would otherwise wait on memory for each of them.
const PW_PREFETCH: usize = 16;

/// Hints the cache line at `p` into L1 (no effect elsewhere; never faults).
#[inline(always)]
fn prefetch(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing architecturally and never faults, whatever the
    // address (`p` comes from `wrapping_add`, never dereferenced).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The pointwise weight gradient's product of one pixel block, read in place:
/// `c[(i − i0)·b_ch + j] = Σ_{k < rows} a[k·a_ch + i] · b[k·b_ch + j]` for `i` in `i_rows`
/// and every `j < b_ch`, `c` overwritten. `a` and `b` are NHWC activations of `rows`
/// pixels (`a_ch` and `b_ch` channels): no transposition of `a` and no packing of `b`.
///
/// Each element is the chain `acc = +0; acc = fma(a, b, acc)` over `k` in order, with the
/// tier's `mul_add`, exactly as [`PackedGemm::run`](super::PackedGemm::run) computes
/// `Aᵀ·B` from a transposed `a` and a packed `b` (bias zero, no activation): the same bits,
/// for any split of `i_rows`.
pub(crate) fn pointwise_weight_block(
    isa: Tier,
    a: &[f32],
    a_ch: usize,
    b: &[f32],
    b_ch: usize,
    rows: usize,
    i_rows: std::ops::Range<usize>,
    c: &mut [f32],
) -> Result<()> {
    let need_a = rows.checked_mul(a_ch);
    let need_b = rows.checked_mul(b_ch);
    if need_a.is_none_or(|n| n > a.len()) || need_b.is_none_or(|n| n > b.len()) {
        return Err(Error::shape(
            "pointwise weight-gradient operands",
            format!("{rows} rows of {a_ch} and of {b_ch} floats"),
            format!("{} and {} floats", a.len(), b.len()),
        ));
    }
    if i_rows.start > i_rows.end || i_rows.end > a_ch {
        return Err(Error::shape(
            "pointwise weight-gradient rows",
            format!("a range within 0..{a_ch}"),
            format!("{i_rows:?}"),
        ));
    }
    check(
        "pointwise weight-gradient output",
        c.len(),
        i_rows.len() * b_ch,
    )?;
    if i_rows.is_empty() || b_ch == 0 {
        return Ok(());
    }
    if rows == 0 {
        c.fill(0.0);
        return Ok(());
    }
    let args = PwArgs {
        a: a[i_rows.start..].as_ptr(),
        a_ch,
        b: b.as_ptr(),
        b_ch,
        rows,
        m: i_rows.len(),
        c: c.as_mut_ptr(),
    };
    // SAFETY: extents checked above: `rows` rows of `a_ch` (from column i_rows.start, m
    // columns used) and of `b_ch` floats, `m` rows of `b_ch` in `c`; a `Tier` exists only
    // for a tier this CPU has.
    unsafe {
        match isa.isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => pw_avx512(&args),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => pw_avx2(&args),
            _ => pw_portable(&args),
        }
    }
    Ok(())
}

/// Raw operands of [`pointwise_weight_block`] (`a` at the first row of `C` computed).
struct PwArgs {
    a: *const f32,
    a_ch: usize,
    b: *const f32,
    b_ch: usize,
    rows: usize,
    m: usize,
    c: *mut f32,
}

macro_rules! pw_tier {
    ($name:ident, $S:ty, [$($feat:literal)?], $r:expr) => {
        $(#[target_feature(enable = $feat)])?
        unsafe fn $name(p: &PwArgs) {
            // SAFETY: the caller's contract (`pointwise_weight_block`).
            unsafe { pw_body::<$S, { $r }>(p) }
        }
    };
}

#[cfg(target_arch = "x86_64")]
pw_tier!(
    pw_avx512,
    super::simd::Avx512,
    ["avx512f,avx512bw,avx512vl,avx2,fma"],
    PW_ROWS_AVX512
);
#[cfg(target_arch = "x86_64")]
pw_tier!(pw_avx2, super::simd::Avx2, ["avx2,fma"], PW_ROWS_AVX2);
pw_tier!(pw_portable, Portable, [], PW_ROWS_PORTABLE);

/// Panels of columns, passes of [`PW_KSTEP`] reduction steps, row tiles of `R` (the last
/// one narrower), column tiles of two vectors, then one vector, then a masked tail.
#[inline(always)]
unsafe fn pw_body<S: Simd, const R: usize>(p: &PwArgs) {
    let two = 2 * S::LANES;
    let mut j0 = 0;
    while j0 < p.b_ch {
        let j1 = (j0 + PW_PANEL).min(p.b_ch);
        let mut k0 = 0;
        while k0 < p.rows {
            let kn = PW_KSTEP.min(p.rows - k0);
            let first = k0 == 0;
            let mut i = 0;
            while i < p.m {
                let r = R.min(p.m - i);
                // SAFETY: rows i .. i + r < m of C, reduction steps k0 .. k0 + kn < rows,
                // columns j .. j + width ≤ b_ch (the caller's contract).
                unsafe {
                    let a = p.a.add(k0 * p.a_ch + i);
                    let t = PwTile {
                        a,
                        lda: p.a_ch,
                        ldb: p.b_ch,
                        k: kn,
                        ldc: p.b_ch,
                        first,
                    };
                    let mut j = j0;
                    while j + two <= j1 {
                        pw_rows::<S, R, 2, false>(
                            &t,
                            r,
                            p.b.add(k0 * p.b_ch + j),
                            p.c.add(i * p.b_ch + j),
                            0,
                        );
                        j += two;
                    }
                    if j + S::LANES <= j1 {
                        pw_rows::<S, R, 1, false>(
                            &t,
                            r,
                            p.b.add(k0 * p.b_ch + j),
                            p.c.add(i * p.b_ch + j),
                            0,
                        );
                        j += S::LANES;
                    }
                    if j < j1 {
                        pw_rows::<S, R, 1, true>(
                            &t,
                            r,
                            p.b.add(k0 * p.b_ch + j),
                            p.c.add(i * p.b_ch + j),
                            j1 - j,
                        );
                    }
                }
                i += r;
            }
            k0 += kn;
        }
        j0 = j1;
    }
}

/// What a pointwise weight-gradient tile reads besides its `B` and `C` corners.
struct PwTile {
    a: *const f32,
    lda: usize,
    ldb: usize,
    k: usize,
    ldc: usize,
    first: bool,
}

/// A tile of `r ≤ R` rows: the instance of exactly that height.
#[inline(always)]
unsafe fn pw_rows<S: Simd, const R: usize, const NV: usize, const MASKED: bool>(
    t: &PwTile,
    r: usize,
    b: *const f32,
    c: *mut f32,
    valid: usize,
) {
    // SAFETY: the caller's contract, for r rows.
    unsafe {
        match r {
            1 => pw_tile::<S, 1, NV, MASKED>(t, b, c, valid),
            2 if R > 2 => pw_tile::<S, 2, NV, MASKED>(t, b, c, valid),
            3 if R > 3 => pw_tile::<S, 3, NV, MASKED>(t, b, c, valid),
            4 if R > 4 => pw_tile::<S, 4, NV, MASKED>(t, b, c, valid),
            5 if R > 5 => pw_tile::<S, 5, NV, MASKED>(t, b, c, valid),
            6 if R > 6 => pw_tile::<S, 6, NV, MASKED>(t, b, c, valid),
            7 if R > 7 => pw_tile::<S, 7, NV, MASKED>(t, b, c, valid),
            _ => pw_tile::<S, R, NV, MASKED>(t, b, c, valid),
        }
    }
}

/// One register tile: `RT` rows × `NV` vectors of `C` (`valid` lanes of the one vector
/// when `MASKED`), `t.k` reduction steps added to it in order (from zero when `t.first`).
#[inline(always)]
unsafe fn pw_tile<S: Simd, const RT: usize, const NV: usize, const MASKED: bool>(
    t: &PwTile,
    b: *const f32,
    c: *mut f32,
    valid: usize,
) {
    let lanes = S::LANES;
    // SAFETY: the caller guarantees RT rows of A at stride 1 for t.k steps of stride
    // t.lda, t.k rows of NV vectors (valid lanes) of B at stride t.ldb, RT rows of C.
    unsafe {
        let mut acc = [[S::zero(); NV]; RT];
        if !t.first {
            for (r, row) in acc.iter_mut().enumerate() {
                for (v, x) in row.iter_mut().enumerate() {
                    *x = load_in::<S, MASKED>(c.add(r * t.ldc + v * lanes), valid);
                }
            }
        }
        let (mut a, mut b) = (t.a, b);
        for _ in 0..t.k {
            prefetch(b.wrapping_add(PW_PREFETCH * t.ldb));
            prefetch(a.wrapping_add(PW_PREFETCH * t.lda));
            let mut bv = [S::zero(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = load_in::<S, MASKED>(b.add(v * lanes), valid);
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let av = S::splat(*a.add(r));
                for v in 0..NV {
                    row[v] = S::mul_add(av, bv[v], row[v]);
                }
            }
            a = a.add(t.lda);
            b = b.add(t.ldb);
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, &x) in row.iter().enumerate() {
                store_out::<S, MASKED>(c.add(r * t.ldc + v * lanes), x, valid);
            }
        }
    }
}
