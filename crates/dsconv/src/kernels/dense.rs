//! Dense (groups = 1, zero padding) k×k convolution as im2col + the pointwise GEMM:
//! a band of output pixels is unfolded into rows of `kH·kW·C_in` values (taps in the
//! padding are zeros) in a scratch buffer, then multiplied by the weight packed as
//! `B[(i·kW + j)·C_in + ci, co] = w[co, ci, i, j]`. Safe code over the kernels.

use super::gemm::{self, PackedGemm};
use super::{AlignedVec, Isa};
use crate::error::Result;
use crate::geometry::ConvGeometry;
use crate::ops::Activation;

/// Bytes of unfolded rows per band: half the 1 MiB L2, so the band stays cached while
/// the GEMM passes over it once per 32-channel panel.
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

/// Copies `src` into `dst` (same length); an element loop for short runs, where a
/// `memcpy` call costs more than the copy.
#[inline]
fn copy_small(dst: &mut [f32], src: &[f32]) {
    if src.len() <= 16 {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    } else {
        dst.copy_from_slice(src);
    }
}

/// Output pixels per band for a reduction of `k` floats, a multiple of the tier's tile.
pub fn band_pixels(isa: Isa, k: usize) -> usize {
    let tile = gemm::tile_rows(isa);
    (BAND_BYTES / (4 * k.max(1)) / tile).max(1) * tile
}

/// Computes output pixels `pixels` (global index `(n·out_H + y)·out_W + x`) into `out`
/// (`pixels.len() · C_out` floats, NHWC order), on the calling thread.
pub fn conv_pixels(
    isa: Isa,
    g: &ConvGeometry,
    packed: &PackedGemm,
    input: &[f32],
    pixels: std::ops::Range<usize>,
    out: &mut [f32],
    act: Activation,
    scratch: &mut AlignedVec,
) -> Result<()> {
    let k = packed.k();
    let cin = g.in_channels;
    let cout = g.out_channels;
    debug_assert_eq!(k, cin * g.kernel_h * g.kernel_w);
    let band = band_pixels(isa, k);
    scratch.ensure_len(band * k);
    let plane = g.out_h * g.out_w;
    let mut start = pixels.start;
    while start < pixels.end {
        let count = band.min(pixels.end - start);
        let rows = &mut scratch[..count * k];
        for (r, row) in rows.chunks_exact_mut(k).enumerate() {
            let p = start + r;
            let (n, rest) = (p / plane, p % plane);
            let (oy, ox) = (rest / g.out_w, rest % g.out_w);
            let image = &input[n * g.in_h * g.in_w * cin..][..g.in_h * g.in_w * cin];
            let row_len = g.in_w * cin;
            for i in 0..g.kernel_h {
                let iy = g.input_row(oy, i);
                let dst_row = &mut row[i * g.kernel_w * cin..][..g.kernel_w * cin];
                if !(0..g.in_h as isize).contains(&iy) {
                    dst_row.fill(0.0);
                    continue;
                }
                let src_row = &image[iy as usize * row_len..][..row_len];
                let first = g.input_col(ox, 0);
                let last = g.input_col(ox, g.kernel_w - 1);
                if g.dilation_w == 1 && first >= 0 && (last as usize) < g.in_w {
                    // All kW taps inside and adjacent: one contiguous kW·C_in copy (the
                    // stem's C_in = 3 made per-tap copies of 3 floats the bottleneck).
                    let src = first as usize * cin;
                    copy_small(dst_row, &src_row[src..src + g.kernel_w * cin]);
                    continue;
                }
                for j in 0..g.kernel_w {
                    let ix = g.input_col(ox, j);
                    let dst = &mut dst_row[j * cin..][..cin];
                    if (0..g.in_w as isize).contains(&ix) {
                        let src = ix as usize * cin;
                        copy_small(dst, &src_row[src..src + cin]);
                    } else {
                        dst.fill(0.0);
                    }
                }
            }
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
