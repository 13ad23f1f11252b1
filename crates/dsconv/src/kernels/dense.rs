//! Dense (groups = 1, zero padding) k×k convolution as the pointwise GEMM over the
//! weight packed as `B[(i·kW + j)·C_in + ci, co] = w[co, ci, i, j]`: each output pixel's
//! row of A is its `kH·kW·C_in` input values. Short kernel rows (the stem) are read in
//! place, one run per kernel row; otherwise a band of output pixels is unfolded into such
//! rows (taps in the padding are zeros) in a scratch buffer (im2col). Safe code over the
//! kernels.

use super::gemm::{self, PackedGemm};
use super::{AlignedVec, Isa, Tier};
use crate::error::Result;
use crate::geometry::ConvGeometry;
use crate::ops::Activation;

/// Bytes of unfolded rows per band: half the 1 MiB L2, so the band stays cached while
/// the GEMM passes over it once per 32-channel panel; grown past it for large weights
/// ([`band_pixels`]: 1024→1024 3×3 @ 7², 1 thread, 45% → 68% of peak; record
/// `2026-11-26-amd-epyc-f26m2-kernels-s5`).
const BAND_BYTES: usize = 512 * 1024;

/// Packs a PyTorch weight `[C_out, C_in, kH, kW]` (groups = 1) for [`conv_pixels`].
pub fn pack(weight: &[f32], dims: [usize; 4], bias: Option<&[f32]>) -> Result<PackedGemm> {
    let [cout, cin, kh, kw] = dims;
    PackedGemm::from_fn(cin * kh * kw, cout, bias, |kk, co| {
        let (tap, ci) = (kk / cin, kk % cin);
        let (i, j) = (tap / kw, tap % kw);
        weight[((co * cin + ci) * kh + i) * kw + j]
    })
}

/// Longest kernel row (`kW·C_in` floats) read in place by [`conv_pixels`]: the unfold of
/// such short runs costs as much as the GEMM.
const SHORT_RUN: usize = 16;

/// Output pixels per band for a reduction of `k` floats into `n` channels, a multiple of
/// the tier's tile. Each band's GEMM streams the whole packed weight (`k·n` floats) once,
/// so when that is larger than the band the band grows to the GEMM's own row block
/// (`MC_TILES` tiles, whose A block the GEMM keeps in L2 per reduction block anyway) and
/// the unfolded rows spill to L3 instead of the weight being read band after band: the
/// last MobileNetV1 layer, 1024→1024 3×3 at 7² (K = 9,216, a 38 MB weight, more than the
/// L3), read it four times from DRAM in bands of 14 pixels.
pub fn band_pixels(isa: Isa, k: usize, n: usize) -> usize {
    let tile = gemm::tile_rows(isa);
    let tiles_in = |bytes: usize| bytes / (4 * k.max(1)) / tile;
    let by_l2 = tiles_in(BAND_BYTES).max(1) * tile;
    if k.saturating_mul(n).saturating_mul(4) > BAND_BYTES {
        let grown = tiles_in(GROWN_BAND_BYTES).min(gemm::MC_TILES) * tile;
        by_l2.max(grown)
    } else {
        by_l2
    }
}

/// Most bytes of unfolded rows a grown band (see [`band_pixels`]) may take: 8 MiB, a
/// quarter of the L3 (the 1024→1024 3×3 layer's 168 pixels of K = 9,216 take 6 MiB).
const GROWN_BAND_BYTES: usize = 8 << 20;

/// Computes output pixels `pixels` (global index `(n·out_H + y)·out_W + x`) into `out`
/// (`pixels.len() · C_out` floats, NHWC order), on the calling thread: kernel rows of at
/// most `KC` floats read in place ([`conv_pixels_in_place`]) when they are short (the
/// stem) or A's row stride does not crowd an L1 set; others unfolded band by band.
pub fn conv_pixels(
    isa: Tier,
    g: &ConvGeometry,
    packed: &PackedGemm,
    input: &[f32],
    pixels: std::ops::Range<usize>,
    out: &mut [f32],
    act: Activation,
    scratch: &mut AlignedVec,
) -> Result<()> {
    debug_assert_eq!(packed.k(), g.in_channels() * g.kernel_h() * g.kernel_w());
    let run = g.kernel_w().saturating_mul(g.in_channels());
    let lda = g.stride_w().saturating_mul(g.in_channels());
    if g.dilation_w() == 1
        && run <= gemm::KC
        && (run <= SHORT_RUN || gemm::reads_in_place(isa.isa(), lda))
    {
        conv_pixels_in_place(isa, g, packed, input, pixels, out, act, scratch)
    } else {
        conv_pixels_unfolded(isa, g, packed, input, pixels, out, act, scratch)
    }
}

/// [`conv_pixels`] through im2col: bands of output pixels unfolded into scratch rows of
/// `kH·kW·C_in` values (padding taps zero), each band one GEMM.
#[allow(clippy::too_many_arguments)]
fn conv_pixels_unfolded(
    isa: Tier,
    g: &ConvGeometry,
    packed: &PackedGemm,
    input: &[f32],
    pixels: std::ops::Range<usize>,
    out: &mut [f32],
    act: Activation,
    scratch: &mut AlignedVec,
) -> Result<()> {
    let k = packed.k();
    let cout = g.out_channels();
    // No more scratch than the call's pixels need (a grown band is 168 pixels of K).
    let band = band_pixels(isa.isa(), k, packed.n()).min(pixels.len().max(1));
    scratch.ensure_len(band * k);
    let plane = g.out_h() * g.out_w();
    let image_len = g.in_h() * g.in_w() * g.in_channels();
    let mut start = pixels.start;
    while start < pixels.end {
        let count = band.min(pixels.end - start);
        for (r, p) in (start..start + count).enumerate() {
            let (n, rest) = (p / plane, p % plane);
            let row = &mut scratch[r * k..(r + 1) * k];
            unfold_pixel(
                g,
                input,
                n * image_len,
                rest / g.out_w(),
                rest % g.out_w(),
                row,
            );
        }
        let offset = (start - pixels.start) * cout;
        packed.run(
            isa,
            &scratch[..count * k],
            k,
            count,
            &mut out[offset..offset + count * cout],
            cout,
            act,
        )?;
        start += count;
    }
    Ok(())
}

/// [`conv_pixels`] read in place (implicit GEMM), for kernel rows of at most `KC` floats
/// (the stem: 3×3 × 3 channels, K = 27; PP-OCR det's 96→24 3×3: runs of 288, K = 864 in
/// three reduction blocks): the interior pixels of each output row segment whose kernel
/// rows all lie inside the image read the input in place as a segmented A (one run of `kW·C_in` floats per kernel row,
/// [`PackedGemm::run_segmented`]), so only border pixels are unfolded. The unfold cost
/// the stem as much as its GEMM: 3→32 s2 @ 224, one thread, 169 µs with the unfold
/// against 92 µs for the GEMM alone on an unfolded input; the 96→24 3×3 at 160², one
/// thread, Zen 3: 17.2 → 15.5 ms (medians of three alternating rounds). Same operations
/// per output element as the unfolded GEMM, so the same bits.
#[allow(clippy::too_many_arguments)]
fn conv_pixels_in_place(
    isa: Tier,
    g: &ConvGeometry,
    packed: &PackedGemm,
    input: &[f32],
    pixels: std::ops::Range<usize>,
    out: &mut [f32],
    act: Activation,
    scratch: &mut AlignedVec,
) -> Result<()> {
    let k = packed.k();
    let (cin, cout) = (g.in_channels(), g.out_channels());
    // No more scratch than the call's pixels need (a grown band is 168 pixels of K).
    let band = band_pixels(isa.isa(), k, packed.n()).min(pixels.len().max(1));
    scratch.ensure_len(band * k);
    let plane = g.out_h() * g.out_w();
    let image_len = g.in_h() * g.in_w() * cin;
    let row_len = g.in_w() * cin;
    let interior = g.interior_cols();
    // Unfolds output pixels `xs` of row `oy` of image `n` and multiplies them, a band at a
    // time, into `dst` (`xs.len()` output rows).
    let mut unfolded = |n: usize, oy: usize, xs: std::ops::Range<usize>, dst: &mut [f32]| {
        let mut x0 = xs.start;
        while x0 < xs.end {
            let count = band.min(xs.end - x0);
            for (r, x) in (x0..x0 + count).enumerate() {
                let row = &mut scratch[r * k..(r + 1) * k];
                unfold_pixel(g, input, n * image_len, oy, x, row);
            }
            let d = &mut dst[(x0 - xs.start) * cout..][..count * cout];
            packed.run(isa, &scratch[..count * k], k, count, d, cout, act)?;
            x0 += count;
        }
        Ok::<(), crate::Error>(())
    };
    let mut start = pixels.start;
    while start < pixels.end {
        let (n, rest) = (start / plane, start % plane);
        let (oy, ox) = (rest / g.out_w(), rest % g.out_w());
        let end = ox + (pixels.end - start).min(g.out_w() - ox);
        let seg = &mut out[(start - pixels.start) * cout..][..(end - ox) * cout];
        let top = g.input_row(oy, 0);
        let bottom = g.input_row(oy, g.kernel_h() - 1);
        let rows_inside = top >= 0 && (bottom as usize) < g.in_h();
        // The interior part a..b of ox..end (empty when a kernel row is padding).
        let (a, b) = if rows_inside {
            let a = interior.start.clamp(ox, end);
            (a, interior.end.clamp(a, end))
        } else {
            (end, end)
        };
        let (head, rest) = seg.split_at_mut((a - ox) * cout);
        let (mid, tail) = rest.split_at_mut((b - a) * cout);
        unfolded(n, oy, ox..a, head)?;
        if a < b {
            let first = n * image_len + top as usize * row_len;
            let col = g.input_col(a, 0) as usize * cin;
            packed.run_segmented(
                isa,
                &input[first + col..],
                g.stride_w() * cin,
                g.kernel_h(),
                g.dilation_h() * row_len,
                b - a,
                mid,
                cout,
                act,
            )?;
        }
        unfolded(n, oy, b..end, tail)?;
        start += end - ox;
    }
    Ok(())
}

/// Unfolds output pixel `(oy, ox)` of the image starting at `image_start` into `row`
/// (`kH·kW·C_in` floats; taps in the padding are zeros).
fn unfold_pixel(
    g: &ConvGeometry,
    input: &[f32],
    image_start: usize,
    oy: usize,
    ox: usize,
    row: &mut [f32],
) {
    let cin = g.in_channels();
    let row_len = g.in_w() * cin;
    let run_len = g.kernel_w() * cin;
    let first = g.input_col(ox, 0);
    let last = g.input_col(ox, g.kernel_w() - 1);
    let contiguous = g.dilation_w() == 1 && first >= 0 && (last as usize) < g.in_w();
    for i in 0..g.kernel_h() {
        let iy = g.input_row(oy, i);
        let dst = i * run_len;
        if !(0..g.in_h() as isize).contains(&iy) {
            row[dst..dst + run_len].fill(0.0);
            continue;
        }
        let src_row = image_start + iy as usize * row_len;
        if contiguous {
            // All kW taps inside and adjacent: one contiguous kW·C_in run.
            let src = src_row + first as usize * cin;
            row[dst..dst + run_len].copy_from_slice(&input[src..src + run_len]);
            continue;
        }
        for j in 0..g.kernel_w() {
            let ix = g.input_col(ox, j);
            let d = dst + j * cin;
            if (0..g.in_w() as isize).contains(&ix) {
                let src = src_row + ix as usize * cin;
                row[d..d + cin].copy_from_slice(&input[src..src + cin]);
            } else {
                row[d..d + cin].fill(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Conv2dParams, Padding};
    use crate::rng::SplitMix64;

    /// Bands are whole register tiles; a weight larger than a band makes the band the
    /// GEMM's row block (the 1024→1024 3×3 layer: K = 9,216) within `GROWN_BAND_BYTES`, a
    /// small one leaves the L2 bound alone.
    #[test]
    fn bands_grow_to_the_gemm_block_for_large_weights() {
        for isa in crate::kernels::available_tiers() {
            let tile = gemm::tile_rows(isa.isa());
            for (k, n) in [(27, 32), (288, 64), (1152, 128), (4608, 512), (9216, 1024)] {
                let band = band_pixels(isa.isa(), k, n);
                assert!(band >= tile && band.is_multiple_of(tile), "{k}x{n}: {band}");
                let by_l2 = (BAND_BYTES / (4 * k) / tile).max(1) * tile;
                if k * n * 4 > BAND_BYTES {
                    let grown = (GROWN_BAND_BYTES / (4 * k) / tile).min(gemm::MC_TILES) * tile;
                    assert_eq!(band, by_l2.max(grown), "{k}x{n}");
                } else {
                    assert_eq!(band, by_l2, "{k}x{n}");
                }
            }
            assert_eq!(band_pixels(isa.isa(), 9216, 1024), tile * gemm::MC_TILES);
            // A huge reduction grows at most to GROWN_BAND_BYTES (168 rows of it: 135 MB).
            let huge = 7 * 7 * 4096;
            let band = band_pixels(isa.isa(), huge, 32);
            assert!(
                band * huge * 4 <= GROWN_BAND_BYTES.max(tile * huge * 4),
                "{band}"
            );
        }
    }

    /// Reading short kernel rows in place gives bitwise the unfolded GEMM's output, at
    /// every tier, for stems and other short-run shapes: asymmetric padding (rows and
    /// columns of padding on each side), stride 1–3, row dilation, batch 2, pixel ranges
    /// that start and end mid-row and cross images; and the output beyond the range is
    /// left alone.
    #[test]
    fn in_place_is_bitwise_the_unfolded_gemm() {
        let mut rng = SplitMix64::new(3);
        let cases = [
            // (cin, cout, kh, kw, stride, dilation_h, (t, b, l, r), h, w)
            (3, 32, 3, 3, 2, 1, (1, 1, 1, 1), 30, 29),
            (3, 32, 3, 3, 2, 1, (0, 1, 0, 1), 23, 24),
            (3, 17, 3, 3, 1, 1, (2, 0, 0, 2), 9, 11),
            (1, 8, 5, 16, 3, 1, (1, 1, 7, 8), 13, 40),
            (2, 40, 3, 4, 1, 2, (2, 2, 1, 2), 12, 10),
            (4, 8, 7, 1, 1, 1, (3, 3, 0, 0), 10, 6),
            // Long runs, K over KC: reduction blocks of 1, 3 (+ 2) and 2 (+ 1) runs.
            (96, 24, 3, 3, 1, 1, (1, 1, 1, 1), 9, 10),
            (26, 33, 5, 5, 2, 1, (2, 1, 2, 0), 11, 12),
            (85, 8, 3, 2, 1, 1, (0, 1, 1, 0), 7, 9),
            (40, 40, 3, 5, 1, 2, (2, 2, 2, 2), 8, 9),
        ];
        for isa in crate::kernels::available_tiers() {
            for &(cin, cout, kh, kw, stride, dh, (t, b, l, r), h, w) in &cases {
                let params = Conv2dParams {
                    dilation: [dh, 1],
                    ..Conv2dParams::default()
                        .with_stride(stride)
                        .with_padding(Padding::asymmetric(t, b, l, r))
                };
                let g = ConvGeometry::new([2, cin, h, w], [cout, cin, kh, kw], &params).unwrap();
                let wt = rng.vec(cout * cin * kh * kw, -1.0, 1.0);
                let bias = rng.vec(cout, -1.0, 1.0);
                let packed = pack(&wt, [cout, cin, kh, kw], Some(&bias)).unwrap();
                let x = rng.vec(2 * h * w * cin, -1.0, 1.0);
                let total = 2 * g.out_h() * g.out_w();
                let mut scratch = AlignedVec::default();
                for pixels in [0..total, 3..total - 5, g.out_w() + 1..2 * g.out_w() + 2] {
                    let len = pixels.len() * cout;
                    let mut got = vec![f32::NAN; len + 8];
                    let mut want = vec![f32::NAN; len];
                    let act = Activation::Relu6;
                    conv_pixels_in_place(
                        isa,
                        &g,
                        &packed,
                        &x,
                        pixels.clone(),
                        &mut got,
                        act,
                        &mut scratch,
                    )
                    .unwrap();
                    conv_pixels_unfolded(
                        isa,
                        &g,
                        &packed,
                        &x,
                        pixels.clone(),
                        &mut want,
                        act,
                        &mut scratch,
                    )
                    .unwrap();
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got[..len]), bits(&want), "{isa:?} {cin}x{kh}x{kw}");
                    assert!(got[len..].iter().all(|v| v.is_nan()));
                }
            }
        }
    }

    #[test]
    fn segmented_gemm_rejects_runs_outside_its_input() {
        let packed = PackedGemm::from_fn(27, 8, None, |k, n| (k + n) as f32).unwrap();
        let a = vec![1.0; 100];
        let mut out = vec![0.0; 4 * 8];
        let isa = crate::kernels::Tier::best();
        let act = Activation::None;
        // 4 rows at stride 6, 3 runs of 9 at stride 30: needs 3·6 + 2·30 + 9 = 87 floats.
        assert!(packed
            .run_segmented(isa, &a, 6, 3, 30, 4, &mut out, 8, act)
            .is_ok());
        assert!(packed
            .run_segmented(isa, &a[..86], 6, 3, 30, 4, &mut out, 8, act)
            .is_err());
        assert!(packed
            .run_segmented(isa, &a, 6, 4, 30, 4, &mut out, 8, act)
            .is_err());
        assert!(packed
            .run_segmented(isa, &a, 6, 3, 8, 4, &mut out, 8, act)
            .is_err());
        assert!(packed
            .run_segmented(isa, &a, 6, 0, 30, 4, &mut out, 8, act)
            .is_err());
        assert!(packed
            .run_segmented(isa, &a, 6, 3, usize::MAX, 4, &mut out, 8, act)
            .is_err());
        assert!(packed
            .run_segmented(isa, &a, 6, 3, 30, 4, &mut out[..31], 8, act)
            .is_err());
    }
}
