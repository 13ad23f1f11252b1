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

/// Longest contiguous run copied as one 16-float vector, and the scratch slack for it.
const SPILL: usize = 16;

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
    // SPILL floats of slack: short contiguous runs are copied as one whole vector (see
    // below), which may write past the band's last row.
    scratch.ensure_len(band * k + SPILL);
    let plane = g.out_h * g.out_w;
    let image_len = g.in_h * g.in_w * cin;
    let row_len = g.in_w * cin;
    let run_len = g.kernel_w * cin;
    let interior = g.interior_cols();
    let mut start = pixels.start;
    while start < pixels.end {
        let count = band.min(pixels.end - start);
        let rows = &mut scratch[..count * k + SPILL];
        // (n, oy, ox) of pixel `start`, then stepped row segment by row segment.
        let (mut n, rest) = (start / plane, start % plane);
        let (mut oy, mut ox) = (rest / g.out_w, rest % g.out_w);
        let mut r = 0;
        while r < count {
            let seg = (count - r).min(g.out_w - ox);
            let image_start = n * image_len;
            // Interior pixels of a short-run geometry (the stem: 3×3 × 3 channels) copy
            // each kernel row as one whole vector, with the source rows resolved once per
            // output row segment (per-pixel bounds and row arithmetic made the stem's
            // im2col cost as much as its GEMM).
            let fast = g.dilation_w == 1 && run_len <= SPILL && g.kernel_h <= MAX_FAST_ROWS;
            let mut srcs = [None; MAX_FAST_ROWS];
            if fast {
                for (i, src) in srcs.iter_mut().enumerate().take(g.kernel_h) {
                    let iy = g.input_row(oy, i);
                    if (0..g.in_h as isize).contains(&iy) {
                        *src = Some(image_start + iy as usize * row_len);
                    }
                }
            }
            for p in 0..seg {
                let x = ox + p;
                let rr = r + p;
                if fast && interior.contains(&x) {
                    let col = (x * g.stride_w - g.pad_left) * cin;
                    for (i, src) in srcs.iter().enumerate().take(g.kernel_h) {
                        let dst = rr * k + i * run_len;
                        match src {
                            Some(row) if row + col + SPILL <= input.len() => {
                                // One whole-vector copy; the extra floats land on
                                // positions written later (this pixel's next kernel row,
                                // the next pixel) or in the slack.
                                let src = row + col;
                                rows[dst..dst + SPILL].copy_from_slice(&input[src..src + SPILL]);
                            }
                            Some(row) => {
                                let src = row + col;
                                rows[dst..dst + run_len]
                                    .copy_from_slice(&input[src..src + run_len]);
                            }
                            None => rows[dst..dst + run_len].fill(0.0),
                        }
                    }
                    continue;
                }
                unfold_pixel(
                    g,
                    input,
                    image_start,
                    oy,
                    x,
                    &mut rows[rr * k..(rr + 1) * k],
                );
            }
            r += seg;
            ox += seg;
            if ox == g.out_w {
                ox = 0;
                oy += 1;
                if oy == g.out_h {
                    oy = 0;
                    n += 1;
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

/// Kernel heights up to this take the fast interior copy of [`conv_pixels`].
const MAX_FAST_ROWS: usize = 8;

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
    let cin = g.in_channels;
    let row_len = g.in_w * cin;
    let run_len = g.kernel_w * cin;
    let first = g.input_col(ox, 0);
    let last = g.input_col(ox, g.kernel_w - 1);
    let contiguous = g.dilation_w == 1 && first >= 0 && (last as usize) < g.in_w;
    for i in 0..g.kernel_h {
        let iy = g.input_row(oy, i);
        let dst = i * run_len;
        if !(0..g.in_h as isize).contains(&iy) {
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
        for j in 0..g.kernel_w {
            let ix = g.input_col(ox, j);
            let d = dst + j * cin;
            if (0..g.in_w as isize).contains(&ix) {
                let src = src_row + ix as usize * cin;
                row[d..d + cin].copy_from_slice(&input[src..src + cin]);
            } else {
                row[d..d + cin].fill(0.0);
            }
        }
    }
}
