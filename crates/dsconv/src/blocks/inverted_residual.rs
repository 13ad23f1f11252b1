//! The inverted residual block of MobileNetV2 and EfficientNet (MBConv): expand 1×1 →
//! depthwise k×k → [squeeze-excitation] → project 1×1, plus the input when shapes allow.

use super::SqueezeExcite;
use crate::cost::{Cost, LayerCost};
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::geometry::ConvGeometry;
use crate::kernels::fused::{self, InvertedResidualKernels};
use crate::kernels::PackedGemm;
use crate::layers::{DepthwiseConv2d, DepthwiseSeparableConv2d, PointwiseConv2d};
use crate::ops::Activation;
use crate::tensor::{Layout, Tensor};
use crate::workspace::Workspace;

/// Below this many output rows per thread the non-banded block's tail runs as two passes
/// (depthwise, then one project GEMM split by tiles) instead of row bands: MobileNetV2's
/// 7×7 blocks at batch 1 split 4 : 3 over two threads as bands.
const SMALL_TAIL_ROWS: usize = 4;

/// Whether splitting the depthwise geometry `g`'s output rows over `threads` makes each
/// thread's band expand more than 1/[`HALO_SHARE`] extra input rows (the halo its
/// neighbours expand too): a 5×5 depthwise on a 14×14 map at batch 1 on two threads
/// expands 9 + 9 rows for 14. Such squeeze-excitation blocks expand whole instead (split
/// evenly, no halo), as their depthwise output is made whole anyway.
fn halo_heavy(g: &ConvGeometry, threads: usize) -> bool {
    if threads < 2 {
        return false;
    }
    let per_thread = (g.batch() * g.out_h()).div_ceil(threads) * g.stride_h();
    let reach = (g.kernel_h() - 1) * g.dilation_h() + 1;
    let halo = reach.saturating_sub(g.stride_h());
    HALO_SHARE * halo > per_thread
}

/// See [`halo_heavy`].
const HALO_SHARE: usize = 8;

/// Initial value of a fresh output: NaN in debug builds (see `layers::conv2d`).
const UNWRITTEN: f32 = if cfg!(debug_assertions) {
    f32::NAN
} else {
    0.0
};

/// `y = project(dw(expand(x))) [+ x]`, each stage with its BatchNorm folded and its
/// activation fused (typically ReLU6 after expand and depthwise, none after project: the
/// "linear bottleneck"). The expand stage is absent when the expansion ratio is 1.
/// The residual is added only when the depthwise stride is 1 and the channel counts of
/// input and output agree.
#[derive(Debug, Clone)]
pub struct InvertedResidual {
    expand: Option<PointwiseConv2d>,
    /// Depthwise then project: run fused (depthwise row bands fed to the project GEMM,
    /// never materialising the expanded-resolution depthwise output) where the kernels
    /// allow.
    tail: DepthwiseSeparableConv2d,
    residual: bool,
    /// Squeeze-excitation on the depthwise output, before the project (MobileNetV3,
    /// EfficientNet-B*).
    se: Option<SqueezeExcite>,
    /// Band budget of the fused path ([`Self::DEFAULT_BAND_BYTES`] unless changed).
    band_bytes: usize,
}

impl InvertedResidual {
    /// The default byte budget of one band of the fused path: the expanded input rows of
    /// a band (with the depthwise halo) plus its depthwise output rows, half of a 1 MiB
    /// L2, so both stay there between the three stages. Chosen on the Zen 5 dev machine
    /// (on-CPU ms of all MobileNetV2 / EfficientNet-Lite0 blocks, one thread): 128 KiB
    /// 3.10 / 4.75, 256 KiB 2.75 / 4.06, 512 KiB 2.63 / 3.85, 768 KiB 2.68 / 3.88;
    /// unfused 2.97 / 4.22.
    pub const DEFAULT_BAND_BYTES: usize = fused::IR_BAND_BYTES;

    /// Composes the three stages, checking that channel counts chain; `residual` asks for
    /// the skip connection, which needs stride 1 and `in = out` channels.
    pub fn new(
        expand: Option<PointwiseConv2d>,
        depthwise: DepthwiseConv2d,
        project: PointwiseConv2d,
        residual: bool,
    ) -> Result<Self> {
        let dw_in = depthwise.channels();
        if let Some(e) = &expand {
            if e.out_channels() != dw_in {
                return Err(Error::shape(
                    "inverted residual expand",
                    format!("{dw_in} output channels (the depthwise input)"),
                    format!("{}", e.out_channels()),
                ));
            }
        }
        let dw_out = depthwise.as_conv2d().out_channels();
        if project.in_channels() != dw_out {
            return Err(Error::shape(
                "inverted residual project",
                format!("{dw_out} input channels (the depthwise output)"),
                format!("{}", project.in_channels()),
            ));
        }
        let block = InvertedResidual {
            expand,
            tail: DepthwiseSeparableConv2d::new(depthwise, project)?,
            residual,
            se: None,
            band_bytes: fused::IR_BAND_BYTES,
        };
        if residual
            && (block.depthwise().as_conv2d().params().stride != [1, 1]
                || block.in_channels() != block.out_channels())
        {
            return Err(Error::param(
                "residual",
                "a skip connection needs stride 1 and as many output as input channels",
            ));
        }
        Ok(block)
    }

    /// Sets the byte budget of one band of the fused path (default
    /// [`DEFAULT_BAND_BYTES`](Self::DEFAULT_BAND_BYTES)): an expanded tensor larger than
    /// this runs in bands of it, a smaller one as one GEMM. Results do not depend on it (bitwise);
    /// tests use tiny budgets to put band edges everywhere.
    pub fn with_band_bytes(mut self, bytes: usize) -> Self {
        self.band_bytes = bytes;
        self
    }

    /// Adds squeeze-excitation between the depthwise and the project stage (MBConv of
    /// MobileNetV3 and EfficientNet-B*); its channels must be the depthwise output's.
    pub fn with_squeeze_excite(mut self, se: SqueezeExcite) -> Result<Self> {
        let c = self.depthwise().as_conv2d().out_channels();
        if se.channels() != c {
            return Err(Error::shape(
                "inverted residual squeeze-excitation",
                format!("{c} channels (the depthwise output)"),
                format!("{}", se.channels()),
            ));
        }
        self.se = Some(se);
        Ok(self)
    }

    /// The squeeze-excitation stage, if any.
    pub fn squeeze_excite(&self) -> Option<&SqueezeExcite> {
        self.se.as_ref()
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        match &self.expand {
            Some(e) => e.in_channels(),
            None => self.depthwise().channels(),
        }
    }
    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.project().out_channels()
    }
    /// True if the input is added to the output.
    pub fn has_residual(&self) -> bool {
        self.residual
    }
    /// The expand stage, if any.
    pub fn expand(&self) -> Option<&PointwiseConv2d> {
        self.expand.as_ref()
    }
    /// The depthwise stage.
    pub fn depthwise(&self) -> &DepthwiseConv2d {
        self.tail.depthwise()
    }
    /// The project stage.
    pub fn project(&self) -> &PointwiseConv2d {
        self.tail.pointwise()
    }

    /// Output logical dims for input logical dims `[N, C, H, W]`.
    pub fn output_dims(&self, input: [usize; 4]) -> Result<[usize; 4]> {
        let mid = match &self.expand {
            Some(e) => e.as_conv2d().geometry(input)?.output_dims(),
            None => input,
        };
        let dw = self.depthwise().as_conv2d().geometry(mid)?.output_dims();
        Ok(self.project().as_conv2d().geometry(dw)?.output_dims())
    }

    /// Cost of the three convolutions and the squeeze-excitation if any (the residual add
    /// is not counted as MACs).
    pub fn cost(&self, input: [usize; 4]) -> Result<Cost> {
        let mut cost = Cost::default();
        let mut dims = input;
        if let Some(e) = &self.expand {
            cost += e.cost(dims)?;
            dims = e.as_conv2d().geometry(dims)?.output_dims();
        }
        cost += self.tail.cost(dims)?;
        if let Some(se) = &self.se {
            cost += se.cost(self.depthwise().as_conv2d().geometry(dims)?.output_dims());
        }
        Ok(cost)
    }

    /// Cost-table rows of the three convolutions, named `names = [expand, depthwise,
    /// project]`, each counted as a bias-free convolution followed by a BatchNorm (as in
    /// the PyTorch module), for an input of logical dims `[N, C, H, W]`.
    pub fn layer_costs(&self, names: [&str; 3], input: [usize; 4]) -> Result<Vec<LayerCost>> {
        let mut rows = Vec::with_capacity(3);
        let mut dims = input;
        if let Some(e) = &self.expand {
            let g = e.as_conv2d().geometry(dims)?;
            rows.push(LayerCost::conv(names[0], &g, false).with_batchnorm());
            dims = g.output_dims();
        }
        let g = self.depthwise().as_conv2d().geometry(dims)?;
        rows.push(LayerCost::conv(names[1], &g, false).with_batchnorm());
        let g = self.project().as_conv2d().geometry(g.output_dims())?;
        rows.push(LayerCost::conv(names[2], &g, false).with_batchnorm());
        Ok(rows)
    }

    /// Forward pass with `exec`'s threads; the output has the input's layout. Runs
    /// [`forward_into`](Self::forward_into) (fused, bitwise equal to
    /// [`forward_unfused_with`](Self::forward_unfused_with)).
    pub fn forward_with(&self, input: &Tensor, exec: &Executor) -> Result<Tensor> {
        let x = &*input.as_nhwc();
        let [n, c, h, w] = self.output_dims(x.logical_dims())?;
        let mut out = Tensor::filled([n, h, w, c], Layout::Nhwc, UNWRITTEN)?;
        self.forward_into(x, &mut out, exec, &Workspace::default())?;
        Ok(match input.layout() {
            Layout::Nhwc => out,
            Layout::Nchw => out.to_layout(Layout::Nchw),
        })
    }

    /// Forward pass of an NHWC `input` into an NHWC `out` the caller owns (dims
    /// `[N, out_H, out_W, C_out]`); any intermediate tensor comes from `ws`.
    ///
    /// When the depthwise stage has its fast kernel (multiplier 1, zero padding): with an
    /// expansion whose output would not fit one band ([`with_band_bytes`](Self::with_band_bytes)), the
    /// whole block runs fused in row bands (`kernels::fused::inverted_residual_rows`):
    /// the expanded tensor never exists as a whole; otherwise the expansion runs as one
    /// GEMM into a `ws` buffer and depthwise → project run fused. Either way the skip
    /// connection is added in the project GEMM's epilogue. Without the fast kernel the
    /// stages run one after the other. Results are bitwise those of
    /// [`forward_unfused_with`](Self::forward_unfused_with) for every thread count.
    pub fn forward_into(
        &self,
        input: &Tensor,
        out: &mut Tensor,
        exec: &Executor,
        ws: &Workspace,
    ) -> Result<()> {
        let in_dims = input.logical_dims();
        let out_dims = self.output_dims(in_dims)?;
        if input.layout() != Layout::Nhwc
            || out.layout() != Layout::Nhwc
            || out.logical_dims() != out_dims
        {
            return Err(Error::shape(
                "inverted residual forward_into",
                format!("NHWC input and NHWC output of logical dims {out_dims:?}"),
                format!(
                    "{} input, {} output {:?}",
                    input.layout().name(),
                    out.layout().name(),
                    out.logical_dims()
                ),
            ));
        }
        if self.residual && in_dims != out_dims {
            return Err(Error::shape(
                "inverted residual skip connection",
                format!("output dims {out_dims:?} equal to the input's"),
                format!("{in_dims:?}"),
            ));
        }
        let mid_dims = match &self.expand {
            Some(e) => e.as_conv2d().geometry(in_dims)?.output_dims(),
            None => in_dims,
        };
        let dw = self.depthwise().as_conv2d();
        let pw = self.project().as_conv2d();
        let g = dw.geometry(mid_dims)?;
        let pg = pw.geometry(g.output_dims())?;
        let expand = match &self.expand {
            Some(e) => {
                let conv = e.as_conv2d();
                let eg = conv.geometry(in_dims)?;
                conv.pointwise_kernel(&eg)
                    .map(|p| Some((p, conv.activation(), eg)))
            }
            None => Some(None),
        };
        if let Some(se) = &self.se {
            return self.forward_se_into(se, expand, &g, input, out, exec, ws);
        }
        let (Some(expand), Some(dk), Some(pk)) =
            (expand, dw.depthwise_kernel(&g), pw.pointwise_kernel(&pg))
        else {
            let y = self.forward_unfused_with(input, exec)?;
            out.data_mut().copy_from_slice(y.data());
            return Ok(());
        };
        let residual = self.residual.then(|| input.data());
        let mut kernels = InvertedResidualKernels {
            expand: None,
            dw: dk,
            dw_act: dw.activation(),
            project: Some(pk),
            project_act: pw.activation(),
            band_bytes: self.band_bytes,
        };
        let mut macs = crate::cost::conv_macs(&g).saturating_add(crate::cost::conv_macs(&pg));
        let mut mid = None;
        if let Some((p, act, eg)) = expand {
            let m = eg.batch() * eg.out_h() * eg.out_w();
            let bytes = m.saturating_mul(eg.out_channels()).saturating_mul(4);
            if bytes > self.band_bytes && fused::banded(&g) {
                kernels.expand = Some((p, act));
                macs = macs.saturating_add(crate::cost::conv_macs(&eg));
            } else {
                let mut t = ws.take([eg.batch(), eg.out_h(), eg.out_w(), eg.out_channels()])?;
                let tasks = exec.tasks_for(crate::cost::conv_macs(&eg));
                let (cin, hidden) = (eg.in_channels(), eg.out_channels());
                let r =
                    p.run_parallel(exec, tasks, input.data(), cin, m, t.data_mut(), hidden, act);
                mid = Some(t);
                r?;
            }
        }
        let dw_input = mid.as_ref().map_or(input.data(), |t| t.data());
        // Few output rows for the threads (a 7×7 map at batch 1 splits 4 : 3 over two):
        // the depthwise over all rows, then one project GEMM that splits by tiles.
        let rows = g.batch() * g.out_h();
        let result =
            if mid.is_some() && exec.threads() > 1 && rows < SMALL_TAIL_ROWS * exec.threads() {
                self.run_tail_unfused(exec, &g, &kernels, dw_input, residual, out, ws)
            } else {
                self.run_tail(exec, &g, &kernels, dw_input, residual, out, macs)
            };
        if let Some(t) = mid {
            ws.give(t);
        }
        result
    }

    /// [`run_tail`](Self::run_tail) as two passes over the threads for small maps: the
    /// depthwise output made whole in a `ws` buffer (split by rows), then the project GEMM
    /// over it (split by row tiles or column panels, so evenly). Bitwise the fused tail:
    /// the GEMM accumulates each output in the same order however it is tiled.
    #[allow(clippy::too_many_arguments)]
    fn run_tail_unfused(
        &self,
        exec: &Executor,
        g: &ConvGeometry,
        kernels: &InvertedResidualKernels<'_>,
        input: &[f32],
        residual: Option<&[f32]>,
        out: &mut Tensor,
        ws: &Workspace,
    ) -> Result<()> {
        let Some(project) = kernels.project else {
            let macs = crate::cost::conv_macs(g);
            return self.run_tail(exec, g, kernels, input, residual, out, macs);
        };
        let hidden = g.out_channels();
        let (rows, row_len) = (g.batch() * g.out_h(), g.out_w() * hidden);
        let mut d = ws.take([g.batch(), g.out_h(), g.out_w(), hidden])?;
        let isa = exec.tier();
        let tasks = exec.tasks_for(crate::cost::conv_macs(g)).min(rows);
        let r = exec.try_for_each_rows(d.data_mut(), row_len, tasks, |first, chunk| {
            let span = first..first + chunk.len() / row_len;
            kernels
                .dw
                .run_rows(isa, g, input, hidden, span, chunk, hidden, kernels.dw_act)
        });
        let r = r.and_then(|()| {
            let (m, cout) = (rows * g.out_w(), project.n());
            let macs = (m as u64).saturating_mul((hidden * cout) as u64);
            let tasks = exec.tasks_for(macs);
            let res = residual.map(|x| (x, cout));
            let act = kernels.project_act;
            project.run_parallel_add(
                exec,
                tasks,
                d.data(),
                hidden,
                m,
                out.data_mut(),
                cout,
                act,
                res,
            )
        });
        ws.give(d);
        r
    }

    /// [`forward_into`](Self::forward_into) with squeeze-excitation: the depthwise output
    /// `D` is made whole in a `ws` buffer (expand → depthwise fused in row bands when the
    /// expanded tensor exceeds a band, so it never exists whole), the gates come from `D`'s
    /// channel means, `D` is scaled in place, then the project GEMM (skip in its epilogue).
    /// Bitwise the stage-by-stage path for every thread count.
    #[allow(clippy::too_many_arguments)]
    fn forward_se_into(
        &self,
        se: &SqueezeExcite,
        expand: Option<Option<(&PackedGemm, Activation, ConvGeometry)>>,
        g: &ConvGeometry,
        input: &Tensor,
        out: &mut Tensor,
        exec: &Executor,
        ws: &Workspace,
    ) -> Result<()> {
        let dw = self.depthwise().as_conv2d();
        let mut d = ws.take([g.batch(), g.out_h(), g.out_w(), g.out_channels()])?;
        let result = (|| {
            let banded = match (expand, dw.depthwise_kernel(g)) {
                (Some(Some((p, act, eg))), Some(dk)) => {
                    let m = eg.batch() * eg.out_h() * eg.out_w();
                    let bytes = m.saturating_mul(eg.out_channels()).saturating_mul(4);
                    let banded = bytes > self.band_bytes
                        && fused::banded(g)
                        && !halo_heavy(g, exec.threads());
                    banded.then_some((
                        InvertedResidualKernels {
                            expand: Some((p, act)),
                            dw: dk,
                            dw_act: dw.activation(),
                            project: None,
                            project_act: Activation::None,
                            band_bytes: self.band_bytes,
                        },
                        crate::cost::conv_macs(&eg),
                    ))
                }
                _ => None,
            };
            match banded {
                Some((kernels, expand_macs)) => {
                    let macs = expand_macs.saturating_add(crate::cost::conv_macs(g));
                    let row_len = g.out_w() * g.out_channels();
                    let isa = exec.tier();
                    exec.try_rows_with_scratch(
                        d.data_mut(),
                        row_len,
                        macs,
                        |rows, chunk, scratch| {
                            fused::inverted_residual_rows(
                                isa,
                                g,
                                &kernels,
                                input.data(),
                                None,
                                rows,
                                chunk,
                                scratch,
                            )
                        },
                    )?;
                }
                None => match &self.expand {
                    Some(e) => {
                        let eg = e.as_conv2d().geometry(input.logical_dims())?;
                        let mut t =
                            ws.take([eg.batch(), eg.out_h(), eg.out_w(), eg.out_channels()])?;
                        let r = e
                            .as_conv2d()
                            .forward_into(input, &mut t, exec)
                            .and_then(|()| dw.forward_into(&t, &mut d, exec));
                        ws.give(t);
                        r?;
                    }
                    None => dw.forward_into(input, &mut d, exec)?,
                },
            }
            self.project_gated(se, &mut d, input, out, exec)
        })();
        ws.give(d);
        result
    }

    /// `out = project(D · gates) [+ input]` for the depthwise output `d`. When copying the
    /// weight costs less than scaling the image (a read and a write of `K·C_out` floats
    /// against a read and a write of `H·W·K`: `C_out < H·W`, early, large blocks), each
    /// image's gates are folded into a copy of the weight (row `k` times gate `k`, in a
    /// buffer kept between calls) and `D` is read once, by the GEMM; otherwise `D` is
    /// scaled in place first (bitwise the stage-by-stage path). Images split over the threads when there are at
    /// least as many, else each image's GEMM is: bitwise identical for any thread count.
    fn project_gated(
        &self,
        se: &SqueezeExcite,
        d: &mut Tensor,
        input: &Tensor,
        out: &mut Tensor,
        exec: &Executor,
    ) -> Result<()> {
        let [n, hidden, h, w] = d.logical_dims();
        let pw = self.project().as_conv2d();
        let pg = pw.geometry(d.logical_dims())?;
        let hw = h * w;
        let cout = pw.out_channels();
        let pk = match pw.pointwise_kernel(&pg) {
            Some(pk) if cout < hw => pk,
            _ => {
                se.forward_in_place(d, exec)?;
                return match self.residual {
                    true => self.project().forward_add_into(d, input, out, exec),
                    false => self.project().forward_into(d, out, exec),
                };
            }
        };
        let gates = se.gates(d, exec)?;
        let act = pw.activation();
        let residual = self.residual.then(|| input.data());
        let (x, img_in, img_out) = (d.data(), hw * hidden, hw * cout);
        let image = |b: usize, tasks: usize, dst: &mut [f32]| -> Result<()> {
            let gates = &gates[b * hidden..(b + 1) * hidden];
            pk.with_scaled_rows(gates, exec, tasks, |packed| {
                let a = &x[b * img_in..(b + 1) * img_in];
                let res = residual.map(|r| (&r[b * img_out..(b + 1) * img_out], cout));
                packed.run_parallel_add(exec, tasks, a, hidden, hw, dst, cout, act, res)
            })
        };
        let macs = crate::cost::conv_macs(&pg);
        let tasks = exec.tasks_for(macs);
        if n >= tasks {
            exec.try_for_each_rows(out.data_mut(), img_out, tasks, |first, chunk| {
                for (i, dst) in chunk.chunks_exact_mut(img_out).enumerate() {
                    image(first + i, 1, dst)?;
                }
                Ok(())
            })
        } else {
            let tasks = exec.tasks_for(macs / n.max(1) as u64);
            for (b, dst) in out.data_mut().chunks_exact_mut(img_out).enumerate() {
                image(b, tasks, dst)?;
            }
            Ok(())
        }
    }

    /// The banded part of `forward_into`, over `exec`'s threads by output rows.
    #[allow(clippy::too_many_arguments)]
    fn run_tail(
        &self,
        exec: &Executor,
        g: &ConvGeometry,
        kernels: &InvertedResidualKernels<'_>,
        input: &[f32],
        residual: Option<&[f32]>,
        out: &mut Tensor,
        macs: u64,
    ) -> Result<()> {
        let row_len = g.out_w() * kernels.project.map_or(g.out_channels(), |p| p.n());
        let isa = exec.tier();
        exec.try_rows_with_scratch(out.data_mut(), row_len, macs, |rows, chunk, scratch| {
            fused::inverted_residual_rows(isa, g, kernels, input, residual, rows, chunk, scratch)
        })
    }

    /// Forward pass with `exec`'s threads, stage after stage: expand, depthwise and
    /// project each materialise their whole output, then the input is added in a
    /// separate pass. Kept as the baseline the fused path is tested and measured against.
    pub fn forward_unfused_with(&self, input: &Tensor, exec: &Executor) -> Result<Tensor> {
        let expanded;
        let mid = match &self.expand {
            Some(e) => {
                expanded = e.forward_with(input, exec)?;
                &expanded
            }
            None => input,
        };
        let mut out = match &self.se {
            Some(se) => {
                let mut d = self.depthwise().forward_with(mid, exec)?;
                se.forward_in_place(&mut d, exec)?;
                self.project().forward_with(&d, exec)?
            }
            None => self.tail.forward_unfused_with(mid, exec)?,
        };
        if self.residual {
            // Same logical dims and layout (checked at construction: stride 1, C_in = C_out).
            for (o, x) in out.data_mut().iter_mut().zip(input.data()) {
                *o += x;
            }
        }
        Ok(out)
    }

    /// Forward pass on one thread.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        self.forward_with(input, &Executor::single())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Conv2dParams, Padding};
    use crate::layers::Conv2d;
    use crate::ops::{Activation, BatchNorm};
    use crate::rng::SplitMix64;

    fn bn(rng: &mut SplitMix64, c: usize) -> BatchNorm {
        BatchNorm::new(
            rng.vec(c, 0.5, 1.5),
            rng.vec(c, -0.2, 0.2),
            rng.vec(c, -0.2, 0.2),
            rng.vec(c, 0.5, 1.5),
            1e-3,
        )
        .unwrap()
    }

    /// The block against the f64 reference applied stage by stage to the folded weights.
    fn reference(block: &InvertedResidual, x: &Tensor) -> Tensor {
        let stage = |conv: &Conv2d, x: &Tensor| {
            let w = Tensor::from_nchw(conv.weight().to_vec(), conv.weight_dims()).unwrap();
            let mut y = crate::reference::conv2d(x, &w, conv.bias(), conv.params()).unwrap();
            crate::reference::batchnorm_activation(&mut y, None, conv.activation());
            y
        };
        let mut y = x.clone();
        if let Some(e) = block.expand() {
            y = stage(e.as_conv2d(), &y);
        }
        y = stage(block.depthwise().as_conv2d(), &y);
        if let Some(se) = block.squeeze_excite() {
            // Tested against its own f64 reference in tests/squeeze_excite.rs.
            se.forward_in_place(&mut y, &Executor::single()).unwrap();
        }
        y = stage(block.project().as_conv2d(), &y);
        if block.has_residual() {
            for (o, v) in y.data_mut().iter_mut().zip(x.data()) {
                *o += v;
            }
        }
        y
    }

    fn block(
        seed: u64,
        cin: usize,
        t: usize,
        cout: usize,
        k: usize,
        stride: usize,
    ) -> InvertedResidual {
        let mut rng = SplitMix64::new(seed);
        let hidden = cin * t;
        let expand = (t != 1).then(|| {
            let w =
                Tensor::from_nchw(rng.vec(hidden * cin, -0.5, 0.5), [hidden, cin, 1, 1]).unwrap();
            PointwiseConv2d::new(w, None)
                .unwrap()
                .with_batchnorm(&bn(&mut rng, hidden))
                .unwrap()
                .with_activation(Activation::Relu6)
        });
        let w = Tensor::from_nchw(rng.vec(hidden * k * k, -0.5, 0.5), [hidden, 1, k, k]).unwrap();
        let params = Conv2dParams::default()
            .with_padding(Padding::Same)
            .with_stride(stride);
        let dw = DepthwiseConv2d::new(w, None, params)
            .unwrap()
            .with_batchnorm(&bn(&mut rng, hidden))
            .unwrap()
            .with_activation(Activation::Relu6);
        let w = Tensor::from_nchw(rng.vec(cout * hidden, -0.5, 0.5), [cout, hidden, 1, 1]).unwrap();
        let project = PointwiseConv2d::new(w, None)
            .unwrap()
            .with_batchnorm(&bn(&mut rng, cout))
            .unwrap();
        let residual = stride == 1 && cin == cout;
        InvertedResidual::new(expand, dw, project, residual).unwrap()
    }

    #[test]
    fn matches_reference_with_and_without_expand_residual_and_stride_2_same_padding() {
        // (C_in, t, C_out, k, stride): MBConv shapes at small sizes, odd widths, 17 and 5
        // channels (around a vector width), asymmetric SAME padding at stride 2.
        for (i, &(cin, t, cout, k, s)) in [
            (16, 1, 8, 3, 1),
            (8, 6, 8, 3, 1),
            (8, 6, 17, 5, 2),
            (17, 6, 17, 5, 1),
            (5, 4, 7, 3, 2),
        ]
        .iter()
        .enumerate()
        {
            let b = block(i as u64, cin, t, cout, k, s);
            let mut rng = SplitMix64::new(100 + i as u64);
            let x = Tensor::from_nchw(rng.vec(2 * cin * 11 * 9, -1.0, 1.0), [2, cin, 11, 9])
                .unwrap()
                .to_layout(Layout::Nhwc);
            let want = reference(&b, &x);
            for threads in [1, 2] {
                let got = b
                    .forward_with(&x, &Executor::new(threads).unwrap())
                    .unwrap();
                assert_eq!(got.logical_dims(), want.logical_dims());
                let tol = 1e-5 * want.max_abs().max(1.0);
                let diff = got.max_abs_diff(&want).unwrap();
                assert!(diff <= tol, "case {i}: diff {diff} > {tol}");
            }
        }
    }

    /// The fused block (banded at several budgets, or expand-then-fused-tail) against the
    /// stage-by-stage path, bitwise, at every tier and 1 and 2 threads, and against the
    /// reference; outputs pre-filled with NaN.
    #[test]
    fn fused_is_bitwise_the_unfused_block_at_every_band_size() {
        // (C_in, t, C_out, k, stride, H, W): residual s1 3×3 and 5×5, stride 2 (even and
        // odd heights, asymmetric SAME padding), no expansion, 17 channels (vector tails),
        // maps of 3 output rows.
        for (i, &(cin, t, cout, k, s, h, w)) in [
            (8, 6, 8, 3, 1, 13, 9),
            (8, 6, 16, 3, 2, 12, 10),
            (17, 6, 17, 5, 1, 11, 7),
            (5, 4, 7, 5, 2, 9, 9),
            (16, 1, 16, 3, 1, 10, 6),
            (24, 6, 32, 3, 2, 15, 15),
            // Few output rows (2 images × 3): at two threads the whole-expansion tail
            // runs as depthwise then one GEMM (`SMALL_TAIL_ROWS`).
            (8, 6, 8, 3, 1, 3, 5),
            (16, 6, 24, 5, 2, 5, 7),
        ]
        .iter()
        .enumerate()
        {
            let base = block(10 + i as u64, cin, t, cout, k, s);
            let mut rng = SplitMix64::new(200 + i as u64);
            let x = Tensor::from_nchw(rng.vec(2 * cin * h * w, -1.0, 1.0), [2, cin, h, w])
                .unwrap()
                .to_layout(Layout::Nhwc);
            let want = reference(&base, &x);
            let tol = 1e-5 * want.max_abs().max(1.0);
            let hidden = cin * t;
            let row = 4 * w * hidden;
            // 1 byte: one output row per band; a few rows; whole images (no banding).
            for bytes in [1, 3 * row, 7 * row, usize::MAX] {
                let b = base.clone().with_band_bytes(bytes);
                for isa in crate::kernels::available_tiers() {
                    let one = Executor::single().with_isa(isa.isa()).unwrap();
                    let two = Executor::new(2).unwrap().with_isa(isa.isa()).unwrap();
                    let unfused = b.forward_unfused_with(&x, &one).unwrap();
                    let ws = Workspace::default();
                    for exec in [&one, &two] {
                        let dims = unfused.dims();
                        let mut out =
                            Tensor::from_nhwc(vec![f32::NAN; unfused.len()], dims).unwrap();
                        b.forward_into(&x, &mut out, exec, &ws).unwrap();
                        let what = format!("case {i} bytes {bytes} [{}]", isa.name());
                        assert_eq!(out.data(), unfused.data(), "{what}");
                        let diff = out.max_abs_diff(&want).unwrap();
                        assert!(diff <= tol, "{what}: diff {diff} > {tol}");
                    }
                }
            }
        }
    }

    /// `block` with squeeze-excitation on its depthwise output (SiLU inside, a sigmoid or
    /// clamped gate as in EfficientNet / MobileNetV3).
    fn block_se(
        seed: u64,
        cin: usize,
        t: usize,
        cout: usize,
        k: usize,
        s: usize,
    ) -> InvertedResidual {
        let b = block(seed, cin, t, cout, k, s);
        let c = cin * t;
        let r = (c / 4).max(1);
        let mut rng = SplitMix64::new(seed + 1000);
        let w1 = Tensor::from_nchw(rng.vec(r * c, -0.5, 0.5), [r, c, 1, 1]).unwrap();
        let w2 = Tensor::from_nchw(rng.vec(c * r, -0.5, 0.5), [c, r, 1, 1]).unwrap();
        let gate = if seed.is_multiple_of(2) {
            Activation::Sigmoid
        } else {
            Activation::Clamp { min: 0.0, max: 1.0 }
        };
        let se = SqueezeExcite::new(
            &w1,
            Some(rng.vec(r, -0.2, 0.2)),
            Activation::Silu,
            &w2,
            Some(rng.vec(c, -0.2, 0.2)),
            gate,
        )
        .unwrap();
        b.with_squeeze_excite(se).unwrap()
    }

    /// With squeeze-excitation: banded expand → depthwise (several budgets), the gates, the
    /// project with its skip, at every tier, bitwise the same on 1 and 2 threads and
    /// within 1e-5 of the reference; bitwise the stage-by-stage path where the gates scale
    /// the depthwise output (`C_out ≥ H·W`), within 1e-5 of it where they are folded into
    /// the project weight. Blocks without expansion too; at two and three threads the
    /// 2 × 13-row maps expand whole (`halo_heavy`), at one they run banded.
    #[test]
    fn squeeze_excite_block_matches_the_unfused_block_at_every_band_size() {
        // (C_in, t, C_out, k, stride, H, W); the last two have C_out ≥ out_H·out_W.
        for (i, &(cin, t, cout, k, s, h, w)) in [
            (8, 6, 8, 3, 1, 13, 9),
            (8, 4, 12, 5, 2, 12, 11),
            (17, 6, 17, 5, 1, 9, 7),
            (16, 1, 16, 3, 1, 10, 6),
            (12, 1, 8, 3, 2, 9, 9),
            (8, 4, 12, 3, 1, 2, 3),
            (6, 6, 40, 3, 2, 7, 5),
        ]
        .iter()
        .enumerate()
        {
            let base = block_se(40 + i as u64, cin, t, cout, k, s);
            assert_eq!(base.has_residual(), s == 1 && cin == cout);
            let mut rng = SplitMix64::new(300 + i as u64);
            let x = Tensor::from_nchw(rng.vec(2 * cin * h * w, -1.0, 1.0), [2, cin, h, w])
                .unwrap()
                .to_layout(Layout::Nhwc);
            let want = reference(&base, &x);
            let [_, _, oh, ow] = want.logical_dims();
            let scales_d = cout >= oh * ow;
            let tol = 1e-5 * want.max_abs().max(1.0);
            let row = 4 * w * cin * t;
            for bytes in [1, 3 * row, usize::MAX] {
                let b = base.clone().with_band_bytes(bytes);
                for isa in crate::kernels::available_tiers() {
                    let one = Executor::single().with_isa(isa.isa()).unwrap();
                    let unfused = b.forward_unfused_with(&x, &one).unwrap();
                    let ws = Workspace::default();
                    let mut first: Option<Tensor> = None;
                    for threads in [1, 2, 3] {
                        let exec = Executor::new(threads).unwrap().with_isa(isa.isa()).unwrap();
                        let mut out =
                            Tensor::from_nhwc(vec![f32::NAN; unfused.len()], unfused.dims())
                                .unwrap();
                        b.forward_into(&x, &mut out, &exec, &ws).unwrap();
                        let what = format!("SE case {i} bytes {bytes} [{}] {threads}", isa.name());
                        if scales_d {
                            assert_eq!(out.data(), unfused.data(), "{what}");
                        }
                        for (r, name) in [(&want, "reference"), (&unfused, "unfused")] {
                            let diff = out.max_abs_diff(r).unwrap();
                            assert!(diff <= tol, "{what}: {diff} > {tol} from the {name}");
                        }
                        match &first {
                            Some(f) => assert_eq!(out.data(), f.data(), "{what}"),
                            None => first = Some(out),
                        }
                    }
                }
            }
        }
    }

    /// Which depthwise geometries expand whole on several threads: EfficientNet-B0's
    /// 5×5 and 3×3 blocks at 14×14 and 28×28 at batch 1 on two threads, not its 56×56
    /// 3×3 ones, nothing at batch 8 or on one thread.
    #[test]
    fn halo_heavy_on_small_maps_for_the_threads() {
        let dw = |n: usize, c: usize, hw: usize, k: usize, s: usize| {
            let params = Conv2dParams {
                stride: [s, s],
                padding: Padding::Same,
                groups: c,
                ..Conv2dParams::default()
            };
            ConvGeometry::new([n, c, hw, hw], [c, 1, k, k], &params).unwrap()
        };
        assert!(halo_heavy(&dw(1, 672, 14, 5, 1), 2));
        assert!(halo_heavy(&dw(1, 480, 14, 3, 1), 2));
        assert!(halo_heavy(&dw(1, 240, 28, 5, 1), 2));
        assert!(halo_heavy(&dw(1, 672, 14, 5, 2), 2));
        assert!(!halo_heavy(&dw(1, 144, 56, 3, 1), 2));
        assert!(!halo_heavy(&dw(1, 144, 56, 3, 2), 2));
        assert!(!halo_heavy(&dw(8, 672, 14, 5, 1), 2));
        assert!(!halo_heavy(&dw(1, 672, 14, 5, 1), 1));
    }

    #[test]
    fn cost_counts_the_squeeze_excitation() {
        let b = block_se(7, 8, 4, 8, 3, 1);
        let plain = block(7, 8, 4, 8, 3, 1);
        let dims = [2, 8, 9, 9];
        let (with, without) = (b.cost(dims).unwrap(), plain.cost(dims).unwrap());
        let se = b.squeeze_excite().unwrap();
        assert_eq!(with.macs, without.macs + 2 * se.macs_per_image());
        // The pool and the scaling pass read the depthwise output twice and write it once.
        let d = 4 * (2 * 32 * 9 * 9) as u64;
        assert!(with.bytes_read >= without.bytes_read + 2 * d);
        assert!(with.bytes_written >= without.bytes_written + d);
    }

    #[test]
    fn squeeze_excite_must_match_the_depthwise_channels() {
        let b = block(5, 8, 6, 8, 3, 1);
        let other = block_se(6, 8, 4, 8, 3, 1);
        let se = other.squeeze_excite().unwrap().clone();
        assert!(matches!(
            b.with_squeeze_excite(se),
            Err(crate::Error::Shape { .. })
        ));
    }

    #[test]
    fn forward_into_rejects_wrong_output_dims() {
        let b = block(3, 8, 6, 8, 3, 1);
        let x = Tensor::from_nhwc(vec![0.5; 2 * 5 * 5 * 8], [2, 5, 5, 8]).unwrap();
        let mut out = Tensor::from_nhwc(vec![0.0; 2 * 5 * 4 * 8], [2, 5, 4, 8]).unwrap();
        let ws = Workspace::default();
        assert!(b
            .forward_into(&x, &mut out, &Executor::single(), &ws)
            .is_err());
    }

    #[test]
    fn residual_needs_stride_1_and_equal_channels() {
        let b = block(1, 8, 6, 16, 3, 1);
        assert!(!b.has_residual());
        let (e, d, p) = (
            b.expand().cloned(),
            b.depthwise().clone(),
            b.project().clone(),
        );
        assert!(matches!(
            InvertedResidual::new(e, d, p, true),
            Err(crate::Error::InvalidParam { .. })
        ));
    }
}
