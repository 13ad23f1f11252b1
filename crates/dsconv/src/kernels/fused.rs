//! Fused depthwise → pointwise: the depthwise output is produced in bands of rows sized to
//! the L2 cache and consumed by the pointwise GEMM straight away, so the intermediate
//! tensor never exists as a whole; and the whole inverted residual block (expand →
//! depthwise → project + skip) the same way, band by band of the expanded tensor. Safe
//! code over the kernels.

use super::{AlignedVec, PackedDepthwise, PackedGemm, Tier};
use crate::error::{Error, Result};
use crate::geometry::ConvGeometry;
use crate::ops::Activation;
use crate::tensor::NhwcView;

/// Bytes of depthwise output per band: a quarter of the 1 MiB L2, leaving room for the
/// depthwise input rows and the pointwise weight panels the GEMM streams.
const BAND_BYTES: usize = 256 * 1024;

/// Depthwise output rows per band for geometry `g`.
pub fn band_rows(g: &ConvGeometry) -> usize {
    (BAND_BYTES / (4 * g.out_w() * g.out_channels()).max(1)).max(1)
}

/// Runs output rows `rows` (global `n·out_H + y`) of `pointwise(depthwise(input))` into
/// `out` (`rows.len() · out_W` pixels `out_px ≥ C_out` floats apart, NHWC; the gaps are
/// not written), on the calling thread; `input` is the whole activation `g` reads (its
/// pixel stride is passed on to the depthwise kernel); `scratch` holds one band of the
/// intermediate.
pub fn separable_rows(
    isa: Tier,
    g: &ConvGeometry,
    dw: &PackedDepthwise,
    dw_act: Activation,
    pw: &PackedGemm,
    pw_act: Activation,
    input: NhwcView,
    rows: std::ops::Range<usize>,
    (out, out_px): (&mut [f32], usize),
    scratch: &mut AlignedVec,
) -> Result<()> {
    let mid = g.out_channels();
    let mid_px = super::uncrowded_pixel_stride(mid);
    let band = band_rows(g);
    scratch.ensure_len(band * g.out_w() * mid_px);
    let out_row = g.out_w() * out_px;
    let mut start = rows.start;
    while start < rows.end {
        let count = band.min(rows.end - start);
        let pixels = count * g.out_w();
        let tmp = &mut scratch[..pixels * mid_px];
        dw.run_rows(
            isa,
            g,
            input.data(),
            input.pixel_stride(),
            start..start + count,
            tmp,
            mid_px,
            dw_act,
        )?;
        let offset = (start - rows.start) * out_row;
        pw.run(
            isa,
            tmp,
            mid_px,
            pixels,
            &mut out[offset..offset + count * out_row],
            out_px,
            pw_act,
        )?;
        start += count;
    }
    Ok(())
}

/// Bytes of one band of the fused inverted residual: the expanded input rows of the band
/// (with the depthwise halo) plus the depthwise output rows, half of the 1 MiB L2, so both
/// stay there between the three stages (the weights stream beside them). On-CPU ms of all
/// blocks, 1 thread, MobileNetV2 / Lite0: 256 KiB 2.75 / 4.06, 512 KiB 2.63 / 3.85, 768 KiB
/// 2.68 / 3.88, unfused 2.97 / 4.22 (record `2026-12-02-kernels-tuning-history`).
pub const IR_BAND_BYTES: usize = 512 * 1024;

/// The stages of one inverted residual block, each with its packed weights and fused
/// activation: `project(dw(expand(x))) [+ x]`.
#[derive(Clone, Copy)]
pub struct InvertedResidualKernels<'a> {
    /// The 1×1 expansion (`C_in → hidden`), absent at expansion ratio 1.
    pub expand: Option<(&'a PackedGemm, Activation)>,
    /// The depthwise stage on the expanded tensor.
    pub dw: &'a PackedDepthwise,
    /// Its activation.
    pub dw_act: Activation,
    /// The 1×1 projection (`hidden → C_out`); `None` stops after the depthwise stage, whose
    /// output rows are then the result (a block with squeeze-excitation between depthwise
    /// and project: the gate needs the whole depthwise output first).
    pub project: Option<&'a PackedGemm>,
    /// Its activation (none in MobileNetV2 / EfficientNet: the linear bottleneck).
    pub project_act: Activation,
    /// Band budget in bytes (see [`ir_band_rows`]); [`IR_BAND_BYTES`] unless testing.
    pub band_bytes: usize,
}

/// Whether the depthwise geometry `g` can run in row bands of its input: every output row
/// reads at least one real input row (padding smaller than the kernel), so each band's
/// input is a non-empty run of rows.
pub fn banded(g: &ConvGeometry) -> bool {
    if g.out_h() == 0 || g.in_h() == 0 {
        return false;
    }
    let (top, _) = g.input_window(0, 1);
    let (last_top, _) = g.input_window(g.out_h() - 1, g.out_h());
    let eff = ((g.kernel_h() - 1) * g.dilation_h() + 1) as isize;
    top + eff > 0 && last_top < g.in_h() as isize
}

/// Output rows per band of the fused inverted residual on depthwise geometry `g`: as many
/// as keep the expanded input rows (halo included) and the depthwise output rows within
/// `bytes` ([`IR_BAND_BYTES`] in the networks); at least one.
pub fn ir_band_rows(g: &ConvGeometry, bytes: usize) -> usize {
    let hidden = g.in_channels().max(1);
    let in_row = 4 * g.in_w() * hidden;
    let out_row = 4 * g.out_w() * hidden;
    let eff = (g.kernel_h() - 1) * g.dilation_h() + 1;
    let mut rows = 1;
    while rows < g.out_h() {
        let next = rows + 1;
        let in_rows = ((next - 1) * g.stride_h() + eff).min(g.in_h());
        if in_rows * in_row + next * out_row > bytes {
            break;
        }
        rows = next;
    }
    rows
}

/// Runs output rows `rows` (global `n·out_H + y`) of the inverted residual block
/// `k` on the calling thread: `out` holds `rows.len() · out_W · C_out` floats (NHWC), or
/// `rows.len() · out_W · hidden` depthwise output floats when `k.project` is `None`.
/// `input` is the block input `[N, H, W, C_in]` (with an expansion; the expanded tensor
/// has the depthwise input dims of `g`), or the depthwise input itself (without).
/// `residual`, when given, is an NHWC tensor of the output's dims added after the
/// project's activation (in the GEMM epilogue).
///
/// The expanded tensor exists only one band at a time in `scratch`: the input rows a band
/// of [`ir_band_rows`] output rows needs (its halo included) are expanded by the GEMM,
/// the depthwise kernel reads them through a geometry cut to the band (the rows above and
/// below the image are its padding), and the project GEMM consumes the band's depthwise
/// output. Halo rows already expanded for the previous band are moved, not recomputed.
/// Every element goes through the same kernels and operation order as the three stages
/// run whole, so the result is bitwise that of the unfused block, for any row range.
pub fn inverted_residual_rows(
    isa: Tier,
    g: &ConvGeometry,
    k: &InvertedResidualKernels<'_>,
    input: &[f32],
    residual: Option<&[f32]>,
    rows: std::ops::Range<usize>,
    out: &mut [f32],
    scratch: &mut AlignedVec,
) -> Result<()> {
    let hidden = g.in_channels();
    let cout = k.project.map_or(hidden, PackedGemm::n);
    let out_row = g.out_w() * cout;
    let total_rows = g.batch() * g.out_h();
    if rows.start > rows.end || rows.end > total_rows {
        return Err(Error::shape(
            "inverted residual rows",
            format!("a range within 0..{total_rows}"),
            format!("{rows:?}"),
        ));
    }
    let out_len = (rows.end - rows.start) * out_row;
    let project_k = k.project.map_or(hidden, PackedGemm::k);
    if out.len() < out_len || project_k != hidden || (residual.is_some() && k.project.is_none()) {
        return Err(Error::shape(
            "inverted residual output",
            format!("{out_len} elements, project K = {hidden}"),
            format!("{} elements, K = {project_k}", out.len()),
        ));
    }
    let total_out = total_rows * out_row;
    if let Some(r) = residual {
        if r.len() != total_out {
            return Err(Error::shape(
                "inverted residual skip input",
                format!("{total_out} elements (the output's dims)"),
                format!("{}", r.len()),
            ));
        }
    }
    let band = ir_band_rows(g, k.band_bytes);
    let bands = IrBands {
        isa,
        k,
        residual,
        first: rows.start,
        out,
        out_w: g.out_w(),
    };
    match k.expand {
        Some(expand) => expand_rows(g, expand, input, bands, rows, band, scratch),
        None => no_expand_rows(g, input, bands, rows, band, scratch),
    }
}

/// What every band of [`inverted_residual_rows`] ends with: the project stage's operands
/// and the call's output (`out` starts at global output row `first`).
struct IrBands<'k, 'o> {
    isa: Tier,
    k: &'k InvertedResidualKernels<'k>,
    residual: Option<&'k [f32]>,
    first: usize,
    out: &'o mut [f32],
    /// Output pixels per row.
    out_w: usize,
}

impl IrBands<'_, '_> {
    /// Scratch floats for one band's depthwise output: none without a project (the
    /// depthwise writes into `out`).
    fn tmp_len(&self, band: usize) -> usize {
        match self.k.project {
            Some(p) => band * self.out_w * p.k(),
            None => 0,
        }
    }

    /// The last two stages of the band of `count` output rows from global row `start`:
    /// the depthwise of rows `dw_rows` of geometry `g` on `dw_in` (pixels `hidden` floats
    /// apart) into `tmp`, then `out = project(tmp) [+ residual]`; without a project, the
    /// depthwise writes its rows straight into `out`.
    #[allow(clippy::too_many_arguments)]
    fn project_band(
        &mut self,
        g: &ConvGeometry,
        dw_in: &[f32],
        dw_rows: std::ops::Range<usize>,
        tmp: &mut [f32],
        start: usize,
        count: usize,
    ) -> Result<()> {
        let k = self.k;
        let hidden = g.in_channels();
        let pixels = count * self.out_w;
        let Some(project) = k.project else {
            let o = (start - self.first) * self.out_w * hidden;
            let dst = &mut self.out[o..o + pixels * hidden];
            return k
                .dw
                .run_rows(self.isa, g, dw_in, hidden, dw_rows, dst, hidden, k.dw_act);
        };
        let tmp = &mut tmp[..pixels * hidden];
        k.dw.run_rows(self.isa, g, dw_in, hidden, dw_rows, tmp, hidden, k.dw_act)?;
        let cout = project.n();
        let out_row = self.out_w * cout;
        let o = (start - self.first) * out_row;
        let res = self.residual.map(|r| (&r[start * out_row..], cout));
        let dst = &mut self.out[o..o + count * out_row];
        project.run_add(self.isa, tmp, hidden, pixels, dst, cout, k.project_act, res)
    }
}

/// [`inverted_residual_rows`] without an expansion: the depthwise reads the input in place,
/// band by band.
fn no_expand_rows(
    g: &ConvGeometry,
    input: &[f32],
    mut bands: IrBands<'_, '_>,
    rows: std::ops::Range<usize>,
    band: usize,
    scratch: &mut AlignedVec,
) -> Result<()> {
    scratch.ensure_len(bands.tmp_len(band));
    let mut start = rows.start;
    while start < rows.end {
        let count = band.min(rows.end - start);
        bands.project_band(g, input, start..start + count, scratch, start, count)?;
        start += count;
    }
    Ok(())
}

/// [`inverted_residual_rows`] with an expansion: per band, the expand GEMM of the band's
/// input rows (halo rows the previous band expanded are moved, not recomputed), the
/// depthwise through the geometry cut to the band, then the project step.
fn expand_rows(
    g: &ConvGeometry,
    (expand, expand_act): (&PackedGemm, Activation),
    input: &[f32],
    mut bands: IrBands<'_, '_>,
    rows: std::ops::Range<usize>,
    band: usize,
    scratch: &mut AlignedVec,
) -> Result<()> {
    let isa = bands.isa;
    let hidden = g.in_channels();
    let in_row = g.in_w() * hidden;
    if !banded(g) || expand.n() != hidden {
        return Err(Error::shape(
            "fused inverted residual",
            format!("an expansion to {hidden} channels and padding below the kernel size"),
            format!("expansion to {}, {g:?}", expand.n()),
        ));
    }
    let cin = expand.k();
    let in_image = g.in_h() * g.in_w() * cin;
    if input.len() != g.batch() * in_image {
        return Err(Error::shape(
            "inverted residual input",
            format!("{} elements", g.batch() * in_image),
            format!("{}", input.len()),
        ));
    }
    let eff = (g.kernel_h() - 1) * g.dilation_h() + 1;
    let max_in_rows = ((band - 1) * g.stride_h() + eff).min(g.in_h());
    let exp_len = max_in_rows * in_row;
    scratch.ensure_len(exp_len + bands.tmp_len(band));
    let (exp, dw_out) = scratch.split_at_mut(exp_len);
    // Expanded rows [c0, c1) of image `cn` held at the start of `exp`.
    let mut held: Option<(usize, usize, usize)> = None;
    let mut start = rows.start;
    while start < rows.end {
        let (n, y0) = (start / g.out_h(), start % g.out_h());
        let count = band.min(rows.end - start).min(g.out_h() - y0);
        // The depthwise geometry cut to this band: its input is rows r0..r1 of image n,
        // and the rows of the window outside the image are its padding.
        let (band_rows, sub) = g.row_band(y0, count)?;
        let (r0, r1) = (band_rows.start, band_rows.end);
        // Reuse the halo rows the previous band expanded.
        let mut have = 0;
        if let Some((cn, c0, c1)) = held {
            if cn == n && c0 <= r0 && r0 < c1 {
                have = c1.min(r1) - r0;
                exp.copy_within((r0 - c0) * in_row..(r0 - c0 + have) * in_row, 0);
            }
        }
        if r0 + have < r1 {
            let from = n * in_image + (r0 + have) * g.in_w() * cin;
            let pixels = (r1 - r0 - have) * g.in_w();
            expand.run(
                isa,
                &input[from..from + pixels * cin],
                cin,
                pixels,
                &mut exp[have * in_row..(r1 - r0) * in_row],
                hidden,
                expand_act,
            )?;
        }
        held = Some((n, r0, r1));
        let dw_in = &exp[..(r1 - r0) * in_row];
        bands.project_band(&sub, dw_in, 0..count, dw_out, start, count)?;
        start += count;
    }
    Ok(())
}
