//! Fused depthwise → pointwise: the depthwise output is produced in bands of rows sized to
//! the L2 cache and consumed by the pointwise GEMM straight away, so the intermediate
//! tensor never exists as a whole. Safe code over the kernels.

use super::{AlignedVec, Isa, PackedDepthwise, PackedGemm};
use crate::error::Result;
use crate::geometry::ConvGeometry;
use crate::ops::Activation;

/// Bytes of depthwise output per band: a quarter of the 1 MiB L2, leaving room for the
/// depthwise input rows and the pointwise weight panels the GEMM streams.
const BAND_BYTES: usize = 256 * 1024;

/// Depthwise output rows per band for geometry `g`.
pub fn band_rows(g: &ConvGeometry) -> usize {
    (BAND_BYTES / (4 * g.out_w * g.out_channels).max(1)).max(1)
}

/// Runs output rows `rows` (global `n·out_H + y`) of `pointwise(depthwise(input))` into
/// `out` (`rows.len() · out_W · C_out` floats, NHWC), on the calling thread; `scratch`
/// holds one band of the intermediate.
pub fn separable_rows(
    isa: Isa,
    g: &ConvGeometry,
    dw: &PackedDepthwise,
    dw_act: Activation,
    pw: &PackedGemm,
    pw_act: Activation,
    input: &[f32],
    rows: std::ops::Range<usize>,
    out: &mut [f32],
    scratch: &mut AlignedVec,
) -> Result<()> {
    let mid = g.out_channels;
    let band = band_rows(g);
    scratch.ensure_len(band * g.out_w * mid);
    let out_row = g.out_w * pw.n();
    let mut start = rows.start;
    while start < rows.end {
        let count = band.min(rows.end - start);
        let pixels = count * g.out_w;
        let tmp = &mut scratch[..pixels * mid];
        dw.run_rows(isa, g, input, start..start + count, tmp, mid, dw_act)?;
        let offset = (start - rows.start) * out_row;
        pw.run(
            isa,
            tmp,
            mid,
            pixels,
            &mut out[offset..offset + count * out_row],
            pw.n(),
            pw_act,
        )?;
        start += count;
    }
    Ok(())
}
