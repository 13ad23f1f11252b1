//! The trainable layers and the sequential / residual containers.

use super::{join, par, pool, Layer, Mode, Param, ParamKind, Slot};
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::geometry::{Conv2dParams, ConvGeometry};
use crate::layers::Conv2d;
use crate::ops::Activation;
use crate::rng::SplitMix64;
use crate::tensor::{Layout, Tensor};

/// Logical dims of an NHWC tensor.
fn nhwc(x: &Tensor) -> Result<[usize; 4]> {
    if x.layout() != Layout::Nhwc {
        return Err(Error::param(
            "layout",
            "trainable layers take NHWC activations",
        ));
    }
    Ok(x.logical_dims())
}

fn missing_forward(what: &'static str) -> Error {
    Error::param(
        "backward",
        format!("{what}: backward without a training forward before it"),
    )
}

fn check_grad_dims(what: &'static str, dy: &Tensor, expected: [usize; 4]) -> Result<()> {
    if dy.logical_dims() != expected || dy.layout() != Layout::Nhwc {
        return Err(Error::shape(
            what,
            format!("NHWC grad_output of logical dims {expected:?}"),
            format!("{} {:?}", dy.layout().name(), dy.logical_dims()),
        ));
    }
    Ok(())
}

/// A 2-D convolution of any configuration (`nn.Conv2d`): `weight` and optional `bias`,
/// gradients through [`crate::grad`].
#[derive(Debug)]
pub struct ConvLayer {
    weight: Param,
    bias: Option<Param>,
    params: Conv2dParams,
    /// The training forward's input and convolution (its weight the forward's).
    cache: Option<(Tensor, Conv2d)>,
}

impl ConvLayer {
    /// A convolution with a PyTorch-order weight of `dims` (validated against `params`'
    /// groups when it first runs).
    pub fn new(
        dims: [usize; 4],
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
        params: Conv2dParams,
    ) -> Result<Self> {
        // Validates dims and lengths once, here.
        Conv2d::new(
            Tensor::from_nchw(weight.clone(), dims)?,
            bias.clone(),
            params,
        )?;
        Ok(ConvLayer {
            weight: Param::new(dims.to_vec(), weight, ParamKind::Weight),
            bias: bias.map(|b| Param::new(vec![b.len()], b, ParamKind::Bias)),
            params,
            cache: None,
        })
    }

    /// PyTorch's default initialisation (`kaiming_uniform_(a=√5)`: uniform
    /// `±1/√fan_in`, the bias too), drawn from `rng`.
    pub fn init(
        dims: [usize; 4],
        bias: bool,
        params: Conv2dParams,
        rng: &mut SplitMix64,
    ) -> Result<Self> {
        let n = crate::error::product(&dims, "conv weight")?;
        let fan_in = dims[1] * dims[2] * dims[3];
        let w = rng.weights(n, fan_in, 1.0 / 3f32.sqrt());
        let b = bias.then(|| rng.weights(dims[0], fan_in, 1.0 / 3f32.sqrt()));
        Self::new(dims, w, b, params)
    }

    /// The weight dims `[C_out, C_in/groups, kH, kW]`.
    pub fn weight_dims(&self) -> [usize; 4] {
        let d = &self.weight.dims;
        [d[0], d[1], d[2], d[3]]
    }

    /// The convolution's parameters.
    pub fn params(&self) -> &Conv2dParams {
        &self.params
    }

    fn geometry(&self, input: [usize; 4]) -> Result<ConvGeometry> {
        ConvGeometry::new(input, self.weight_dims(), &self.params)
    }
}

impl Layer for ConvLayer {
    fn forward(&mut self, x: Tensor, mode: Mode, exec: &Executor) -> Result<Tensor> {
        nhwc(&x)?;
        let conv = Conv2d::new(
            Tensor::from_nchw(self.weight.value.clone(), self.weight_dims())?,
            self.bias.as_ref().map(|b| b.value.clone()),
            self.params,
        )?;
        let g = conv.geometry(x.logical_dims())?;
        // The output in a reused buffer (the kernel writes every element).
        let dims = [g.batch(), g.out_h(), g.out_w(), g.out_channels()];
        let mut y = pool::tensor(dims, Layout::Nhwc)?;
        conv.forward_into(&x, &mut y, exec)?;
        if mode == Mode::Train {
            self.cache = Some((x, conv));
        } else {
            self.cache = None;
            pool::recycle(x);
        }
        Ok(y)
    }

    fn backward(
        &mut self,
        dy: Tensor,
        need_input_grad: bool,
        exec: &Executor,
    ) -> Result<Option<Tensor>> {
        let (x, conv) = self.cache.take().ok_or_else(|| missing_forward("conv"))?;
        let g = self.geometry(x.logical_dims())?;
        check_grad_dims("conv grad_output", &dy, g.output_dims())?;
        let dw = crate::grad::conv2d_weight(&x, self.weight_dims(), &dy, &self.params, exec)?;
        self.weight.accumulate(dw.data());
        if let Some(b) = &mut self.bias {
            b.accumulate(&crate::grad::conv2d_bias(&dy)?);
        }
        pool::recycle(x);
        if !need_input_grad {
            pool::recycle(dy);
            return Ok(None);
        }
        // Every element of dx is written (`grad::conv2d_input_nhwc_into`).
        let mut dx = pool::tensor(Layout::Nhwc.dims_from_logical(g.input_dims()), Layout::Nhwc)?;
        crate::grad::input_nhwc(&g, conv.weight(), dy.data(), dx.data_mut(), exec)?;
        pool::recycle(dy);
        Ok(Some(dx))
    }

    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, Slot<'_>)) {
        f(&join(prefix, "weight"), Slot::Param(&mut self.weight));
        if let Some(b) = &mut self.bias {
            f(&join(prefix, "bias"), Slot::Param(b));
        }
    }

    fn output_dims(&self, input: [usize; 4]) -> Result<[usize; 4]> {
        Ok(self.geometry(input)?.output_dims())
    }

    fn macs(&self, input: [usize; 4]) -> Result<u64> {
        let out = self.output_dims(input)?;
        let [_, cig, kh, kw] = self.weight_dims();
        Ok(out.iter().map(|&d| d as u64).product::<u64>() * (cig * kh * kw) as u64)
    }
}

/// `nn.BatchNorm2d` with PyTorch's semantics: in training, the batch mean and biased
/// variance normalise, the running mean and the *unbiased* variance are blended in with
/// `momentum` and `num_batches_tracked` counts; in evaluation, the running statistics.
#[derive(Debug)]
pub struct BatchNorm2d {
    weight: Param,
    bias: Param,
    running_mean: Param,
    running_var: Param,
    num_batches_tracked: i64,
    eps: f32,
    momentum: f32,
    /// x̂ (NHWC), 1/σ per channel, and the mode of the forward that made them.
    cache: Option<(Tensor, Vec<f32>, Mode)>,
}

impl BatchNorm2d {
    /// PyTorch's defaults: weight 1, bias 0, running mean 0, running variance 1,
    /// `eps` 1e-5, `momentum` 0.1.
    pub fn new(channels: usize) -> Self {
        let p = |v: f32, kind| Param::new(vec![channels], vec![v; channels], kind);
        BatchNorm2d {
            weight: p(1.0, ParamKind::Norm),
            bias: p(0.0, ParamKind::Norm),
            running_mean: p(0.0, ParamKind::Buffer),
            running_var: p(1.0, ParamKind::Buffer),
            num_batches_tracked: 0,
            eps: 1e-5,
            momentum: 0.1,
            cache: None,
        }
    }

    /// With another `eps` and `momentum`.
    pub fn with_eps_momentum(mut self, eps: f32, momentum: f32) -> Self {
        self.eps = eps;
        self.momentum = momentum;
        self
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.weight.value.len()
    }

    /// `running_mean`, `running_var` and `num_batches_tracked`.
    pub fn running_stats(&self) -> (&[f32], &[f32], i64) {
        (
            &self.running_mean.value,
            &self.running_var.value,
            self.num_batches_tracked,
        )
    }

    fn check(&self, dims: [usize; 4]) -> Result<()> {
        if dims[1] != self.channels() {
            return Err(Error::shape(
                "batchnorm input",
                format!("{} channels", self.channels()),
                format!("{} channels", dims[1]),
            ));
        }
        Ok(())
    }
}

impl Layer for BatchNorm2d {
    fn forward(&mut self, mut x: Tensor, mode: Mode, exec: &Executor) -> Result<Tensor> {
        let dims = nhwc(&x)?;
        self.check(dims)?;
        let c = dims[1];
        let m = dims[0] * dims[2] * dims[3];
        let (mean, invstd): (Vec<f32>, Vec<f32>) = match mode {
            Mode::Train => {
                if m < 2 {
                    return Err(Error::shape(
                        "batchnorm input",
                        "more than 1 value per channel when training",
                        format!("{m}"),
                    ));
                }
                let (mean, invstd) = bn_train_stats(
                    exec,
                    x.data(),
                    c,
                    self.eps,
                    self.momentum,
                    &mut self.running_mean.value,
                    &mut self.running_var.value,
                );
                self.num_batches_tracked += 1;
                (mean, invstd)
            }
            Mode::Eval => (
                self.running_mean.value.clone(),
                self.running_var
                    .value
                    .iter()
                    .map(|&v| (1.0 / (f64::from(v) + f64::from(self.eps)).sqrt()) as f32)
                    .collect(),
            ),
        };
        let (gamma, beta) = (&self.weight.value, &self.bias.value);
        if mode == Mode::Train {
            // x becomes x̂ (kept for backward); y = x̂·γ + β (every element written).
            let mut y = pool::tensor(x.dims(), Layout::Nhwc)?;
            par::pair_mut(exec, x.data_mut(), y.data_mut(), c, |xs, ys| {
                for (px, ypx) in xs.chunks_exact_mut(c).zip(ys.chunks_exact_mut(c)) {
                    for ch in 0..c {
                        let xh = (px[ch] - mean[ch]) * invstd[ch];
                        px[ch] = xh;
                        ypx[ch] = xh * gamma[ch] + beta[ch];
                    }
                }
            });
            self.cache = Some((x, invstd, mode));
            Ok(y)
        } else {
            par::each_mut(exec, x.data_mut(), c, |xs| {
                for px in xs.chunks_exact_mut(c) {
                    for ch in 0..c {
                        px[ch] = (px[ch] - mean[ch]) * invstd[ch] * gamma[ch] + beta[ch];
                    }
                }
            });
            self.cache = None;
            Ok(x)
        }
    }

    fn backward(
        &mut self,
        mut dy: Tensor,
        need_input_grad: bool,
        exec: &Executor,
    ) -> Result<Option<Tensor>> {
        let (xhat, invstd, _) = self
            .cache
            .take()
            .ok_or_else(|| missing_forward("batchnorm"))?;
        check_grad_dims("batchnorm grad_output", &dy, xhat.logical_dims())?;
        let c = self.channels();
        let m = xhat.len() / c;
        let sums = bn_grad_sums(exec, dy.data(), xhat.data(), c);
        let (sum_dy, sum_dy_xhat) = sums.split_at(c);
        for ch in 0..c {
            self.weight.grad[ch] += sum_dy_xhat[ch] as f32;
            self.bias.grad[ch] += sum_dy[ch] as f32;
        }
        if !need_input_grad {
            return Ok(None);
        }
        let gamma = &self.weight.value;
        let scale: Vec<f32> = (0..c).map(|ch| gamma[ch] * invstd[ch]).collect();
        let mean_dy: Vec<f32> = sum_dy.iter().map(|s| (s / m as f64) as f32).collect();
        let mean_dy_xhat: Vec<f32> = sum_dy_xhat.iter().map(|s| (s / m as f64) as f32).collect();
        par::zip_mut(exec, dy.data_mut(), xhat.data(), c, |gs, xs| {
            for (g, xh) in gs.chunks_exact_mut(c).zip(xs.chunks_exact(c)) {
                for ch in 0..c {
                    g[ch] = scale[ch] * (g[ch] - mean_dy[ch] - xh[ch] * mean_dy_xhat[ch]);
                }
            }
        });
        pool::recycle(xhat);
        Ok(Some(dy))
    }

    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, Slot<'_>)) {
        f(&join(prefix, "weight"), Slot::Param(&mut self.weight));
        f(&join(prefix, "bias"), Slot::Param(&mut self.bias));
        f(
            &join(prefix, "running_mean"),
            Slot::Param(&mut self.running_mean),
        );
        f(
            &join(prefix, "running_var"),
            Slot::Param(&mut self.running_var),
        );
        f(
            &join(prefix, "num_batches_tracked"),
            Slot::Count(&mut self.num_batches_tracked),
        );
    }

    fn output_dims(&self, input: [usize; 4]) -> Result<[usize; 4]> {
        self.check(input)?;
        Ok(input)
    }

    fn macs(&self, _input: [usize; 4]) -> Result<u64> {
        Ok(0)
    }
}

/// BatchNorm's training statistics of NHWC `x` (`c` channels, at least 2 pixels): the
/// per-channel mean and `1/σ` (biased variance), rounded to f32, with `running_mean` and
/// `running_var` (unbiased) blended in with `momentum`. One threaded pass of sums of
/// `d = x − shift` and `d²` (shift: the first pixel's value, so the difference of sums
/// does not cancel catastrophically) over fixed pixel blocks: thread-count independent.
/// Shared by [`BatchNorm2d`] and the networks' fused `BnAct`, so both give the same bits.
pub(crate) fn bn_train_stats(
    exec: &Executor,
    x: &[f32],
    c: usize,
    eps: f32,
    momentum: f32,
    running_mean: &mut [f32],
    running_var: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let m = x.len() / c;
    let shift: Vec<f32> = x[..c].to_vec();
    let sums = par::channel_sums(exec, x, &[], c, 2, |xs, _, s| {
        stat_groups(xs, None, c, s, &shift);
    });
    let (s1, s2) = sums.split_at(c);
    let mom = f64::from(momentum);
    let mut mean = Vec::with_capacity(c);
    let mut invstd = Vec::with_capacity(c);
    for ch in 0..c {
        let md = s1[ch] / m as f64;
        let sq = (s2[ch] - s1[ch] * md).max(0.0);
        let mu = f64::from(shift[ch]) + md;
        let var = sq / m as f64;
        let unbiased = sq / (m - 1) as f64;
        mean.push(mu as f32);
        invstd.push((1.0 / (var + f64::from(eps)).sqrt()) as f32);
        let rm = &mut running_mean[ch];
        *rm = ((1.0 - mom) * f64::from(*rm) + mom * mu) as f32;
        let rv = &mut running_var[ch];
        *rv = ((1.0 - mom) * f64::from(*rv) + mom * unbiased) as f32;
    }
    (mean, invstd)
}

/// BatchNorm's backward sums per channel: `Σ dy` into `[..c]` and `Σ dy·x̂` into `[c..]`,
/// threaded over fixed pixel blocks (`x` is x̂).
pub(crate) fn bn_grad_sums(exec: &Executor, dy: &[f32], x: &[f32], c: usize) -> Vec<f64> {
    par::channel_sums(exec, dy, x, c, 2, |g, xs, s| {
        stat_groups(g, Some(xs), c, s, &[])
    })
}

/// The first half of a fused BatchNorm + activation backward, in one read-only pass: the
/// BatchNorm sums of [`bn_grad_sums`] (`Σ g`, `Σ g·x̂`) of the gradient at the activation's
/// input, `g = act_grad(dy, x̂·γ + β)` with x̂ = `(x − mean)·1/σ` recomputed from the input
/// `x` as the forward computed it, over the same blocks and groups in the same order: the
/// same bits as the activation pass followed by [`bn_grad_sums`] on x̂. `dy` is left as it
/// is; [`bn_act_input_grad`] recomputes `g` by the same operations (writing it back here
/// cost a pass of stores over the whole tensor).
pub(crate) fn bn_act_grad_sums(
    exec: &Executor,
    dy: &[f32],
    x: &[f32],
    c: usize,
    (mean, invstd): (&[f32], &[f32]),
    (gamma, beta): (&[f32], &[f32]),
    act: Activation,
) -> Vec<f64> {
    let run = |f: &BlockSums<'_>| par::channel_sums(exec, dy, x, c, 2, f);
    let stats = (mean, invstd, gamma, beta);
    // One monomorphised loop per activation kind (the match leaves the inner loop).
    match act {
        Activation::Relu => run(&|g, xs, s| {
            act_stat_groups(g, xs, c, s, stats, |g, v| act_grad(Activation::Relu, g, v))
        }),
        Activation::Relu6 => run(&|g, xs, s| {
            act_stat_groups(g, xs, c, s, stats, |g, v| act_grad(Activation::Relu6, g, v))
        }),
        Activation::None => run(&|g, xs, s| act_stat_groups(g, xs, c, s, stats, |g, _| g)),
        Activation::Silu => run(&|g, xs, s| {
            act_stat_groups(g, xs, c, s, stats, |g, v| act_grad(Activation::Silu, g, v))
        }),
        _ => run(&|g, xs, s| act_stat_groups(g, xs, c, s, stats, |g, v| act_grad(act, g, v))),
    }
}

/// A per-block accumulator of [`par::channel_sums`] (`block_a`, `block_b`, sums).
type BlockSums<'a> = dyn Fn(&[f32], &[f32], &mut [f64]) + Sync + 'a;

/// [`stat_groups`] of `g(a)` with `b` = x̂: per pixel and channel, `x̂ = (x − mean)·invstd`,
/// `g = grad(a, x̂·γ + β)`, then `Σ g`, `Σ g·x̂` as [`stat_groups`] sums them (groups of
/// [`STAT_GROUP`] pixels in f32, added in f64).
fn act_stat_groups(
    a: &[f32],
    x: &[f32],
    c: usize,
    sums: &mut [f64],
    (mean, invstd, gamma, beta): (&[f32], &[f32], &[f32], &[f32]),
    grad: impl Fn(f32, f32) -> f32,
) {
    let (s1, s2) = sums.split_at_mut(c);
    let mut t1 = vec![0f32; c];
    let mut t2 = vec![0f32; c];
    // Every slice exactly `c` long, so the channel loop runs without bounds checks.
    let (mean, invstd, gamma, beta) = (&mean[..c], &invstd[..c], &gamma[..c], &beta[..c]);
    let group = STAT_GROUP * c;
    for (ga, gx) in a.chunks(group).zip(x.chunks(group)) {
        t1.fill(0.0);
        t2.fill(0.0);
        for (pa, px) in ga.chunks_exact(c).zip(gx.chunks_exact(c)) {
            let (t1, t2) = (&mut t1[..c], &mut t2[..c]);
            for ch in 0..c {
                let xh = (px[ch] - mean[ch]) * invstd[ch];
                let g = grad(pa[ch], xh * gamma[ch] + beta[ch]);
                t1[ch] += g;
                t2[ch] += g * xh;
            }
        }
        for (((x1, x2), &u), &w) in s1.iter_mut().zip(s2.iter_mut()).zip(&t1).zip(&t2) {
            *x1 += f64::from(u);
            *x2 += f64::from(w);
        }
    }
}

/// The second half of a fused BatchNorm + activation backward: `dy` becomes the gradient
/// at BatchNorm's input, `scale·(g − mean_g − x̂·mean_gx̂)` with `g = act_grad(dy, x̂·γ + β)`
/// recomputed exactly as [`bn_act_grad_sums`] formed it (x̂ from the input `x`).
/// `stats` = (mean, 1/σ, γ, β), `coef` = (γ/σ, mean of g, mean of g·x̂), per channel.
pub(crate) fn bn_act_input_grad(
    exec: &Executor,
    dy: &mut [f32],
    x: &[f32],
    c: usize,
    stats: (&[f32], &[f32], &[f32], &[f32]),
    coef: (&[f32], &[f32], &[f32]),
    act: Activation,
) {
    let mut run = |f: &(dyn Fn(&mut [f32], &[f32]) + Sync)| par::zip_mut(exec, dy, x, c, f);
    // One monomorphised loop per activation kind, as in `bn_act_grad_sums`.
    match act {
        Activation::Relu => run(&|gs, xs| {
            input_grad_pixels(gs, xs, c, stats, coef, |g, v| {
                act_grad(Activation::Relu, g, v)
            })
        }),
        Activation::Relu6 => run(&|gs, xs| {
            input_grad_pixels(gs, xs, c, stats, coef, |g, v| {
                act_grad(Activation::Relu6, g, v)
            })
        }),
        Activation::None => run(&|gs, xs| input_grad_pixels(gs, xs, c, stats, coef, |g, _| g)),
        Activation::Silu => run(&|gs, xs| {
            input_grad_pixels(gs, xs, c, stats, coef, |g, v| {
                act_grad(Activation::Silu, g, v)
            })
        }),
        _ => run(&|gs, xs| input_grad_pixels(gs, xs, c, stats, coef, |g, v| act_grad(act, g, v))),
    }
}

/// [`bn_act_input_grad`] over whole pixels, every slice cut to `c` (no bounds checks in
/// the channel loop).
fn input_grad_pixels(
    gs: &mut [f32],
    xs: &[f32],
    c: usize,
    (mean, invstd, gamma, beta): (&[f32], &[f32], &[f32], &[f32]),
    (scale, mean_dy, mean_dy_xhat): (&[f32], &[f32], &[f32]),
    grad: impl Fn(f32, f32) -> f32,
) {
    let (mean, invstd, gamma, beta) = (&mean[..c], &invstd[..c], &gamma[..c], &beta[..c]);
    let (scale, mean_dy, mean_dy_xhat) = (&scale[..c], &mean_dy[..c], &mean_dy_xhat[..c]);
    for (g, px) in gs.chunks_exact_mut(c).zip(xs.chunks_exact(c)) {
        for ch in 0..c {
            let xh = (px[ch] - mean[ch]) * invstd[ch];
            let ga = grad(g[ch], xh * gamma[ch] + beta[ch]);
            g[ch] = scale[ch] * (ga - mean_dy[ch] - xh * mean_dy_xhat[ch]);
        }
    }
}

/// The gradient through activation `act` at its input `v`: PyTorch's
/// `threshold_backward` / `hardtanh_backward` for the piecewise-linear kinds (`g` where
/// the input is strictly inside, ReLU: `> 0`; else 0, NaN included), `g` times the
/// derivative for hard-swish, sigmoid (`s(1 − s)`) and SiLU (`s(1 + x(1 − s))`). Shared
/// by [`Act`] and the networks' fused `BnAct`.
pub(crate) fn act_grad(act: Activation, g: f32, v: f32) -> f32 {
    match act {
        Activation::Sigmoid => {
            let s = 1.0 / (1.0 + (-v).exp());
            g * (s * (1.0 - s))
        }
        Activation::Silu => {
            let s = 1.0 / (1.0 + (-v).exp());
            g * (s * (1.0 + v * (1.0 - s)))
        }
        Activation::HardSwish => {
            g * if v < -3.0 {
                0.0
            } else if v <= 3.0 {
                v / 3.0 + 0.5
            } else {
                1.0
            }
        }
        Activation::None | Activation::Relu | Activation::Relu6 | Activation::Clamp { .. } => {
            if act_passes(act, v) {
                g
            } else {
                0.0
            }
        }
    }
}

/// Whether `act`'s gradient is a pass/block mask of its input (ReLU, ReLU6, clamp, none),
/// so a training forward can keep a byte per element instead of the input.
fn kind_is_piecewise_linear(act: Activation) -> bool {
    match act {
        Activation::None | Activation::Relu | Activation::Relu6 | Activation::Clamp { .. } => true,
        Activation::HardSwish | Activation::Sigmoid | Activation::Silu => false,
    }
}

/// Whether the gradient of a piecewise-linear activation passes at input `v`.
fn act_passes(act: Activation, v: f32) -> bool {
    match act {
        Activation::Relu => v > 0.0,
        Activation::Relu6 => v > 0.0 && v < 6.0,
        Activation::Clamp { min, max } => v > min && v < max,
        Activation::None | Activation::HardSwish | Activation::Sigmoid | Activation::Silu => true,
    }
}

/// Pixels summed in f32 before their sum joins the f64 total (short enough that the f32
/// rounding stays at a few ulps; long enough to leave the f64 work off the inner loop).
const STAT_GROUP: usize = 8;

/// Per channel, over the pixels of `a`: without `b`, `Σ d` into `sums[..c]` and `Σ d²`
/// into `sums[c..]` for `d = a − shift`; with `b`, `Σ a` and `Σ a·b`. Groups of
/// [`STAT_GROUP`] pixels are summed in f32, the groups' sums added in f64.
fn stat_groups(a: &[f32], b: Option<&[f32]>, c: usize, sums: &mut [f64], shift: &[f32]) {
    let (s1, s2) = sums.split_at_mut(c);
    let mut t1 = vec![0f32; c];
    let mut t2 = vec![0f32; c];
    let group = STAT_GROUP * c;
    for (gi, ga) in a.chunks(group).enumerate() {
        t1.fill(0.0);
        t2.fill(0.0);
        match b {
            None => {
                for pa in ga.chunks_exact(c) {
                    for (((u, w), &v), &sh) in t1.iter_mut().zip(t2.iter_mut()).zip(pa).zip(shift) {
                        let d = v - sh;
                        *u += d;
                        *w += d * d;
                    }
                }
            }
            Some(b) => {
                let gb = &b[gi * group..(gi * group + ga.len())];
                for (pa, pb) in ga.chunks_exact(c).zip(gb.chunks_exact(c)) {
                    for (((u, w), &v), &bv) in t1.iter_mut().zip(t2.iter_mut()).zip(pa).zip(pb) {
                        *u += v;
                        *w += v * bv;
                    }
                }
            }
        }
        for (((x1, x2), &u), &w) in s1.iter_mut().zip(s2.iter_mut()).zip(&t1).zip(&t2) {
            *x1 += f64::from(u);
            *x2 += f64::from(w);
        }
    }
}

/// An element-wise activation (`nn.ReLU`, `nn.ReLU6`, `nn.Hardswish`, a clamp) with
/// PyTorch's derivative: ReLU passes the gradient where the input is > 0; ReLU6 and clamp
/// (`hardtanh`) strictly inside the bounds; hard-swish `0` below −3, `x/3 + ½` up to 3,
/// `1` above; sigmoid `s(1 − s)`, SiLU `s(1 + x(1 − s))` with `s = sigmoid(x)`.
#[derive(Debug)]
pub struct Act {
    kind: Activation,
    cache: Option<ActCache>,
}

/// What an activation's backward needs.
#[derive(Debug)]
enum ActCache {
    /// ReLU, ReLU6, clamp, none (derivative 0 or 1): one byte per element, whether the
    /// gradient passes, and the logical dims.
    Mask(Vec<u8>, [usize; 4]),
    /// Hard-swish: the input.
    Input(Tensor),
}

/// `x ← f(x).1` and `mask ← f(x).0` element by element (monomorphised per kind so the
/// loop vectorises).
fn masked_pass(xs: &mut [f32], ms: &mut [u8], f: impl Fn(f32) -> (bool, f32)) {
    for (v, m) in xs.iter_mut().zip(ms.iter_mut()) {
        let (pass, y) = f(*v);
        *m = u8::from(pass);
        *v = y;
    }
}

impl Act {
    /// The activation `kind`.
    pub fn new(kind: Activation) -> Self {
        Act { kind, cache: None }
    }
}

impl Layer for Act {
    fn forward(&mut self, mut x: Tensor, mode: Mode, exec: &Executor) -> Result<Tensor> {
        nhwc(&x)?;
        let kind = self.kind;
        if mode == Mode::Eval || !kind_is_piecewise_linear(kind) {
            let kept = (mode == Mode::Train).then(|| ActCache::Input(x.clone()));
            par::each_mut(exec, x.data_mut(), 1, |xs| {
                for v in xs {
                    *v = kind.apply(*v);
                }
            });
            self.cache = kept;
            return Ok(x);
        }
        // The piecewise-linear kinds keep a byte per element (a quarter of the input).
        let mut mask = vec![0u8; x.len()];
        par::pair_mask(exec, x.data_mut(), &mut mask, |xs, ms| match kind {
            Activation::Relu => masked_pass(xs, ms, |v| {
                (act_passes(Activation::Relu, v), Activation::Relu.apply(v))
            }),
            Activation::Relu6 => masked_pass(xs, ms, |v| {
                (act_passes(Activation::Relu6, v), Activation::Relu6.apply(v))
            }),
            Activation::Clamp { .. } => {
                masked_pass(xs, ms, |v| (act_passes(kind, v), kind.apply(v)))
            }
            _ => masked_pass(xs, ms, |v| (true, v)),
        });
        self.cache = Some(ActCache::Mask(mask, x.logical_dims()));
        Ok(x)
    }

    fn backward(
        &mut self,
        mut dy: Tensor,
        need_input_grad: bool,
        exec: &Executor,
    ) -> Result<Option<Tensor>> {
        let cache = self
            .cache
            .take()
            .ok_or_else(|| missing_forward("activation"))?;
        match &cache {
            ActCache::Input(x) => check_grad_dims("activation grad_output", &dy, x.logical_dims())?,
            ActCache::Mask(_, dims) => check_grad_dims("activation grad_output", &dy, *dims)?,
        }
        if !need_input_grad {
            return Ok(None);
        }
        match cache {
            ActCache::Input(x) => {
                let kind = self.kind;
                par::zip_mut(exec, dy.data_mut(), x.data(), 1, |gs, xs| {
                    for (g, &v) in gs.iter_mut().zip(xs) {
                        *g = act_grad(kind, *g, v);
                    }
                });
            }
            ActCache::Mask(mut mask, _) => {
                // PyTorch's threshold/hardtanh backward: 0 where the input did not pass.
                par::pair_mask(exec, dy.data_mut(), &mut mask, |gs, ms| {
                    for (g, &m) in gs.iter_mut().zip(ms.iter()) {
                        *g = if m != 0 { *g } else { 0.0 };
                    }
                });
            }
        }
        Ok(Some(dy))
    }

    fn visit(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, Slot<'_>)) {}

    fn output_dims(&self, input: [usize; 4]) -> Result<[usize; 4]> {
        Ok(input)
    }

    fn macs(&self, _input: [usize; 4]) -> Result<u64> {
        Ok(0)
    }
}

/// Global average pooling to `[N, C, 1, 1]` (`x.mean((2, 3), keepdim=True)`), summed in
/// f64 pixel by pixel.
#[derive(Debug, Default)]
pub struct GlobalAvgPool {
    input: Option<[usize; 4]>,
}

impl GlobalAvgPool {
    /// The pool.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Layer for GlobalAvgPool {
    fn forward(&mut self, x: Tensor, mode: Mode, _exec: &Executor) -> Result<Tensor> {
        let [n, c, h, w] = nhwc(&x)?;
        let hw = h * w;
        let mut y = Tensor::zeros([n, 1, 1, c], Layout::Nhwc)?;
        for (img, out) in x
            .data()
            .chunks_exact(hw * c)
            .zip(y.data_mut().chunks_exact_mut(c))
        {
            let mut sum = vec![0f64; c];
            for px in img.chunks_exact(c) {
                for (s, &v) in sum.iter_mut().zip(px) {
                    *s += f64::from(v);
                }
            }
            for (o, s) in out.iter_mut().zip(&sum) {
                *o = (s / hw as f64) as f32;
            }
        }
        self.input = (mode == Mode::Train).then_some([n, c, h, w]);
        Ok(y)
    }

    fn backward(
        &mut self,
        dy: Tensor,
        need_input_grad: bool,
        _exec: &Executor,
    ) -> Result<Option<Tensor>> {
        let [n, c, h, w] = self.input.take().ok_or_else(|| missing_forward("pool"))?;
        check_grad_dims("pool grad_output", &dy, [n, c, 1, 1])?;
        if !need_input_grad {
            return Ok(None);
        }
        let inv = 1.0 / (h * w) as f32;
        // Every element written below.
        let mut dx = pool::tensor([n, h, w, c], Layout::Nhwc)?;
        for (img, g) in dx
            .data_mut()
            .chunks_exact_mut(h * w * c)
            .zip(dy.data().chunks_exact(c))
        {
            for px in img.chunks_exact_mut(c) {
                for (d, &v) in px.iter_mut().zip(g) {
                    *d = v * inv;
                }
            }
        }
        Ok(Some(dx))
    }

    fn visit(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, Slot<'_>)) {}

    fn output_dims(&self, [n, c, _, _]: [usize; 4]) -> Result<[usize; 4]> {
        Ok([n, c, 1, 1])
    }

    fn macs(&self, _input: [usize; 4]) -> Result<u64> {
        Ok(0)
    }
}

/// `nn.Linear` on `[N, F, 1, 1]` activations (after global pooling): `weight [out, F]`,
/// `bias [out]`, output `[N, out, 1, 1]`.
#[derive(Debug)]
pub struct Linear {
    weight: Param,
    bias: Param,
    cache: Option<Tensor>,
}

impl Linear {
    /// A linear layer from its PyTorch tensors.
    pub fn new(out_features: usize, weight: Vec<f32>, bias: Vec<f32>) -> Result<Self> {
        if out_features == 0 || weight.is_empty() || !weight.len().is_multiple_of(out_features) {
            return Err(Error::shape(
                "linear weight",
                format!("a positive multiple of {out_features} elements"),
                format!("{}", weight.len()),
            ));
        }
        if bias.len() != out_features {
            return Err(Error::shape(
                "linear bias",
                format!("{out_features} elements"),
                format!("{}", bias.len()),
            ));
        }
        let inf = weight.len() / out_features;
        Ok(Linear {
            weight: Param::new(vec![out_features, inf], weight, ParamKind::Weight),
            bias: Param::new(vec![out_features], bias, ParamKind::Bias),
            cache: None,
        })
    }

    /// PyTorch's default initialisation: weight and bias uniform `±1/√in`.
    pub fn init(in_features: usize, out_features: usize, rng: &mut SplitMix64) -> Result<Self> {
        let n = crate::error::mul(in_features, out_features, "linear weight")?;
        let g = 1.0 / 3f32.sqrt();
        let w = rng.weights(n, in_features, g);
        let b = rng.weights(out_features, in_features, g);
        Self::new(out_features, w, b)
    }

    /// `(in_features, out_features)`.
    pub fn features(&self) -> (usize, usize) {
        (self.weight.dims[1], self.weight.dims[0])
    }

    fn check(&self, [_, c, h, w]: [usize; 4]) -> Result<()> {
        if h != 1 || w != 1 || c != self.features().0 {
            return Err(Error::shape(
                "linear input",
                format!("[N, {}, 1, 1]", self.features().0),
                format!("[N, {c}, {h}, {w}]"),
            ));
        }
        Ok(())
    }
}

impl Layer for Linear {
    fn forward(&mut self, x: Tensor, mode: Mode, _exec: &Executor) -> Result<Tensor> {
        let dims = nhwc(&x)?;
        self.check(dims)?;
        let (fin, fout) = self.features();
        let n = dims[0];
        let mut y = Tensor::zeros([n, 1, 1, fout], Layout::Nhwc)?;
        linear_forward(
            x.data(),
            &self.weight.value,
            &self.bias.value,
            n,
            fin,
            y.data_mut(),
        );
        self.cache = (mode == Mode::Train).then_some(x);
        Ok(y)
    }

    fn backward(
        &mut self,
        dy: Tensor,
        need_input_grad: bool,
        _exec: &Executor,
    ) -> Result<Option<Tensor>> {
        let x = self.cache.take().ok_or_else(|| missing_forward("linear"))?;
        let (fin, fout) = self.features();
        let n = x.logical_dims()[0];
        check_grad_dims("linear grad_output", &dy, [n, fout, 1, 1])?;
        // Output by output: each gradient element still sums the images in order (the
        // weight row stays in L1 instead of the whole weight streaming once per image).
        let (xd, g) = (x.data(), dy.data());
        for o in 0..fout {
            let wg = &mut self.weight.grad[o * fin..(o + 1) * fin];
            let bg = &mut self.bias.grad[o];
            for (xr, gr) in xd.chunks_exact(fin).zip(g.chunks_exact(fout)) {
                let go = gr[o];
                for (d, &v) in wg.iter_mut().zip(xr) {
                    *d += go * v;
                }
                *bg += go;
            }
        }
        if !need_input_grad {
            return Ok(None);
        }
        // dx[i, :] = Σ_o dy[i, o] · W[o, :], the outputs in order for every element.
        let mut dx = Tensor::zeros([n, 1, 1, fin], Layout::Nhwc)?;
        for o in 0..fout {
            let wr = &self.weight.value[o * fin..(o + 1) * fin];
            for (dr, gr) in dx
                .data_mut()
                .chunks_exact_mut(fin)
                .zip(g.chunks_exact(fout))
            {
                let go = gr[o];
                for (d, &w) in dr.iter_mut().zip(wr) {
                    *d += go * w;
                }
            }
        }
        Ok(Some(dx))
    }

    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, Slot<'_>)) {
        f(&join(prefix, "weight"), Slot::Param(&mut self.weight));
        f(&join(prefix, "bias"), Slot::Param(&mut self.bias));
    }

    fn output_dims(&self, input: [usize; 4]) -> Result<[usize; 4]> {
        self.check(input)?;
        Ok([input[0], self.features().1, 1, 1])
    }

    fn macs(&self, input: [usize; 4]) -> Result<u64> {
        let (fin, fout) = self.features();
        Ok((input[0] * fin * fout) as u64)
    }
}

/// Images per pass of [`linear_forward`]: their sums for one output stay in L1.
const LINEAR_IMAGES: usize = 64;

/// `y[i, o] = (Σ_f x[i, f] · w[o, f]) + bias[o]` for `n` images, each sum in f32 over the
/// features in order from zero (`acc += x·w`), as a plain dot product forms it: the
/// images of a pass go in vectors (`x` transposed once, `[F, N]`), so the sequential
/// chains of neighbouring images run side by side instead of one at a time.
fn linear_forward(x: &[f32], w: &[f32], bias: &[f32], n: usize, fin: usize, y: &mut [f32]) {
    let fout = bias.len();
    let mut xt = vec![0f32; fin * n];
    for (i, xr) in x.chunks_exact(fin).enumerate() {
        for (f, &v) in xr.iter().enumerate() {
            xt[f * n + i] = v;
        }
    }
    let mut acc = [0f32; LINEAR_IMAGES];
    for i0 in (0..n).step_by(LINEAR_IMAGES) {
        let cn = LINEAR_IMAGES.min(n - i0);
        let acc = &mut acc[..cn];
        for (o, wr) in w.chunks_exact(fin).enumerate() {
            acc.fill(0.0);
            for (f, &wv) in wr.iter().enumerate() {
                let xs = &xt[f * n + i0..][..cn];
                for (a, &xv) in acc.iter_mut().zip(xs) {
                    *a += xv * wv;
                }
            }
            for (i, &a) in acc.iter().enumerate() {
                y[(i0 + i) * fout + o] = a + bias[o];
            }
        }
    }
}

/// `nn.Dropout(p)`: in training, zeroes each element with probability `p` (seeded,
/// reproducible) and scales the rest by `1/(1−p)`; identity in evaluation.
#[derive(Debug)]
pub struct Dropout {
    p: f32,
    rng: SplitMix64,
    mask: Option<Vec<f32>>,
}

impl Dropout {
    /// Dropout with probability `p` in `[0, 1)`, its masks drawn from `seed`.
    pub fn new(p: f32, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::param(
                "dropout",
                format!("p must be in [0, 1), got {p}"),
            ));
        }
        Ok(Dropout {
            p,
            rng: SplitMix64::new(seed),
            mask: None,
        })
    }
}

impl Layer for Dropout {
    fn forward(&mut self, mut x: Tensor, mode: Mode, _exec: &Executor) -> Result<Tensor> {
        nhwc(&x)?;
        if mode == Mode::Eval || self.p == 0.0 {
            self.mask = (mode == Mode::Train).then(|| vec![1.0; x.len()]);
            return Ok(x);
        }
        let scale = 1.0 / (1.0 - self.p);
        let mask: Vec<f32> = (0..x.len())
            .map(|_| {
                if self.rng.next_f32() < self.p {
                    0.0
                } else {
                    scale
                }
            })
            .collect();
        for (v, m) in x.data_mut().iter_mut().zip(&mask) {
            *v *= m;
        }
        self.mask = Some(mask);
        Ok(x)
    }

    fn backward(
        &mut self,
        mut dy: Tensor,
        need_input_grad: bool,
        _exec: &Executor,
    ) -> Result<Option<Tensor>> {
        let mask = self.mask.take().ok_or_else(|| missing_forward("dropout"))?;
        if dy.len() != mask.len() {
            return Err(Error::shape(
                "dropout grad_output",
                format!("{} elements", mask.len()),
                format!("{}", dy.len()),
            ));
        }
        if !need_input_grad {
            return Ok(None);
        }
        for (g, m) in dy.data_mut().iter_mut().zip(&mask) {
            *g *= m;
        }
        Ok(Some(dy))
    }

    fn visit(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, Slot<'_>)) {}

    fn output_dims(&self, input: [usize; 4]) -> Result<[usize; 4]> {
        Ok(input)
    }

    fn macs(&self, _input: [usize; 4]) -> Result<u64> {
        Ok(0)
    }
}

/// Layers applied in order, named `0`, `1`, ... or by the names given (`nn.Sequential`).
#[derive(Debug, Default)]
pub struct Sequential {
    layers: Vec<(String, Box<dyn Layer>)>,
}

impl Sequential {
    /// An empty container.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `layer` named by its index.
    pub fn push(&mut self, layer: impl Layer + 'static) {
        let name = self.layers.len().to_string();
        self.layers.push((name, Box::new(layer)));
    }

    /// Appends `layer` under `name`.
    pub fn push_named(&mut self, name: &str, layer: impl Layer + 'static) {
        self.layers.push((name.to_string(), Box::new(layer)));
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether it has no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Layer for Sequential {
    fn forward(&mut self, mut x: Tensor, mode: Mode, exec: &Executor) -> Result<Tensor> {
        for (_, layer) in &mut self.layers {
            x = layer.forward(x, mode, exec)?;
        }
        Ok(x)
    }

    fn backward(
        &mut self,
        mut dy: Tensor,
        need_input_grad: bool,
        exec: &Executor,
    ) -> Result<Option<Tensor>> {
        for (i, (_, layer)) in self.layers.iter_mut().enumerate().rev() {
            let need = i > 0 || need_input_grad;
            match layer.backward(dy, need, exec)? {
                Some(d) => dy = d,
                None => return Ok(None),
            }
        }
        Ok(Some(dy))
    }

    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, Slot<'_>)) {
        for (name, layer) in &mut self.layers {
            layer.visit(&join(prefix, name), f);
        }
    }

    fn output_dims(&self, mut input: [usize; 4]) -> Result<[usize; 4]> {
        for (_, layer) in &self.layers {
            input = layer.output_dims(input)?;
        }
        Ok(input)
    }

    fn macs(&self, mut input: [usize; 4]) -> Result<u64> {
        let mut total = 0;
        for (_, layer) in &self.layers {
            total += layer.macs(input)?;
            input = layer.output_dims(input)?;
        }
        Ok(total)
    }
}

/// `y = body(x) + x` (the residual add of an inverted residual block); the gradient
/// reaches `x` through both.
#[derive(Debug)]
pub struct Residual {
    body: Sequential,
}

impl Residual {
    /// A residual around `body`, whose output must have its input's dims.
    pub fn new(body: Sequential) -> Self {
        Residual { body }
    }
}

impl Layer for Residual {
    fn forward(&mut self, x: Tensor, mode: Mode, exec: &Executor) -> Result<Tensor> {
        let mut y = self.body.forward(pool::copy(&x)?, mode, exec)?;
        if y.dims() != x.dims() {
            return Err(Error::shape(
                "residual add",
                format!("the block's input dims {:?}", x.logical_dims()),
                format!("{:?}", y.logical_dims()),
            ));
        }
        par::zip_mut(exec, y.data_mut(), x.data(), 1, |ys, xs| {
            for (a, b) in ys.iter_mut().zip(xs) {
                *a += b;
            }
        });
        pool::recycle(x);
        Ok(y)
    }

    fn backward(
        &mut self,
        dy: Tensor,
        need_input_grad: bool,
        exec: &Executor,
    ) -> Result<Option<Tensor>> {
        let through = self
            .body
            .backward(pool::copy(&dy)?, need_input_grad, exec)?;
        let dx = through.map(|mut d| {
            par::zip_mut(exec, d.data_mut(), dy.data(), 1, |ds, gs| {
                for (a, b) in ds.iter_mut().zip(gs) {
                    *a += b;
                }
            });
            d
        });
        pool::recycle(dy);
        Ok(dx)
    }

    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, Slot<'_>)) {
        self.body.visit(prefix, f);
    }

    fn output_dims(&self, input: [usize; 4]) -> Result<[usize; 4]> {
        let out = self.body.output_dims(input)?;
        if out != input {
            return Err(Error::shape(
                "residual add",
                format!("the block's input dims {input:?}"),
                format!("{out:?}"),
            ));
        }
        Ok(out)
    }

    fn macs(&self, input: [usize; 4]) -> Result<u64> {
        self.body.macs(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batched linear forward and the reordered backward loops give the bits of the
    /// plain per-image loops they replaced (each sum in the same order), across the
    /// 64-image passes and odd sizes.
    #[test]
    fn linear_matches_the_per_image_loops_bitwise() {
        let mut rng = SplitMix64::new(5);
        let exec = Executor::single();
        for (n, fin, fout) in [(1, 1, 1), (3, 7, 5), (32, 40, 17), (70, 13, 9)] {
            let mut layer = Linear::init(fin, fout, &mut rng).unwrap();
            let x = rng.vec(n * fin, -2.0, 2.0);
            let dy = rng.vec(n * fout, -1.0, 1.0);
            let xt = Tensor::from_nchw(x.clone(), [n, fin, 1, 1])
                .unwrap()
                .to_layout(Layout::Nhwc);
            let y = layer.forward(xt, Mode::Train, &exec).unwrap();
            let dyt = Tensor::from_nchw(dy.clone(), [n, fout, 1, 1])
                .unwrap()
                .to_layout(Layout::Nhwc);
            let dx = layer.backward(dyt, true, &exec).unwrap().unwrap();
            let (w, b) = (&layer.weight.value, &layer.bias.value);
            let (mut want_y, mut want_dx) = (vec![0f32; n * fout], vec![0f32; n * fin]);
            let (mut want_wg, mut want_bg) = (vec![0f32; fout * fin], vec![0f32; fout]);
            for i in 0..n {
                let (xr, g) = (&x[i * fin..][..fin], &dy[i * fout..][..fout]);
                for o in 0..fout {
                    let mut acc = 0f32;
                    for (a, c) in xr.iter().zip(&w[o * fin..][..fin]) {
                        acc += a * c;
                    }
                    want_y[i * fout + o] = acc + b[o];
                    for (d, &v) in want_wg[o * fin..][..fin].iter_mut().zip(xr) {
                        *d += g[o] * v;
                    }
                    want_bg[o] += g[o];
                    for (d, &v) in want_dx[i * fin..][..fin]
                        .iter_mut()
                        .zip(&w[o * fin..][..fin])
                    {
                        *d += g[o] * v;
                    }
                }
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(y.data()), bits(&want_y), "forward {n} {fin} {fout}");
            assert_eq!(
                bits(dx.data()),
                bits(&want_dx),
                "input grad {n} {fin} {fout}"
            );
            assert_eq!(bits(&layer.weight.grad), bits(&want_wg), "weight grad");
            assert_eq!(bits(&layer.bias.grad), bits(&want_bg), "bias grad");
        }
    }
}
