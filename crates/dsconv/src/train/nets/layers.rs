//! The two layers the ImageNet networks add to [`super::super::layers`]: [`BnAct`]
//! (BatchNorm followed by an activation, keeping one tensor for both backward passes) and
//! [`DropPath`] (stochastic depth on a residual branch, lukemelas' `drop_connect`).

use super::super::{join, Layer, Mode, Param, ParamKind, Slot};
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::ops::Activation;
use crate::rng::SplitMix64;
use crate::tensor::{Layout, Tensor};

fn nhwc(x: &Tensor, what: &'static str) -> Result<[usize; 4]> {
    if x.layout() != Layout::Nhwc {
        return Err(Error::param(what, "trainable layers take NHWC activations"));
    }
    Ok(x.logical_dims())
}

fn missing_forward(what: &'static str) -> Error {
    Error::param(
        "backward",
        format!("{what}: backward without a training forward before it"),
    )
}

/// PyTorch's derivative of `act` at its input `x` (as [`crate::train::Act`]: ReLU where
/// `x > 0`, ReLU6 / clamp strictly inside the bounds, hard-swish piecewise).
fn derivative(act: Activation, x: f32) -> f32 {
    match act {
        Activation::None => 1.0,
        Activation::Relu => f32::from(u8::from(x > 0.0)),
        Activation::Relu6 => f32::from(u8::from(x > 0.0 && x < 6.0)),
        Activation::Clamp { min, max } => f32::from(u8::from(x > min && x < max)),
        Activation::HardSwish => {
            if x < -3.0 {
                0.0
            } else if x <= 3.0 {
                x / 3.0 + 0.5
            } else {
                1.0
            }
        }
    }
}

/// `nn.BatchNorm2d` followed by an activation (`nn.ReLU6(inplace=True)` and the like),
/// with the state_dict names of the BatchNorm alone (`weight`, `bias`, `running_mean`,
/// `running_var`, `num_batches_tracked`).
///
/// Bitwise the same numbers as [`BatchNorm2d`](crate::train::BatchNorm2d) then
/// [`Act`](crate::train::Act), forward and backward, but a training forward keeps only
/// its input (and the per-channel mean and `1/σ`): the backward recomputes the normalised
/// value and the activation's input from it with the forward's own operations. The pair
/// of layers keeps two tensors (`x̂` and the activation's input) besides what the
/// convolution before keeps; this keeps one, as PyTorch does with an in-place activation.
#[derive(Debug)]
pub struct BnAct {
    weight: Param,
    bias: Param,
    running_mean: Param,
    running_var: Param,
    num_batches_tracked: i64,
    eps: f32,
    momentum: f32,
    act: Activation,
    /// The training forward's input, mean and 1/σ.
    cache: Option<(Tensor, Vec<f32>, Vec<f32>)>,
}

impl BnAct {
    /// BatchNorm over `channels` with PyTorch's initial state (weight 1, bias 0, running
    /// mean 0, running variance 1), `eps` and `momentum`, then `act`.
    pub fn new(channels: usize, eps: f32, momentum: f32, act: Activation) -> Self {
        let p = |v: f32, kind| Param::new(vec![channels], vec![v; channels], kind);
        BnAct {
            weight: p(1.0, ParamKind::Norm),
            bias: p(0.0, ParamKind::Norm),
            running_mean: p(0.0, ParamKind::Buffer),
            running_var: p(1.0, ParamKind::Buffer),
            num_batches_tracked: 0,
            eps,
            momentum,
            act,
            cache: None,
        }
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.weight.value.len()
    }

    /// Per-channel mean and `1/σ` (f64, as [`crate::train::BatchNorm2d`] computes them)
    /// of a training batch, updating the running statistics.
    fn batch_stats(&mut self, x: &[f32], c: usize, m: usize) -> (Vec<f32>, Vec<f32>) {
        let mut sum = vec![0f64; c];
        for px in x.chunks_exact(c) {
            for (s, &v) in sum.iter_mut().zip(px) {
                *s += f64::from(v);
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / m as f64).collect();
        let mut sq = vec![0f64; c];
        for px in x.chunks_exact(c) {
            for ((s, &v), mu) in sq.iter_mut().zip(px).zip(&mean) {
                let d = f64::from(v) - mu;
                *s += d * d;
            }
        }
        let mom = f64::from(self.momentum);
        let mut invstd = Vec::with_capacity(c);
        for ch in 0..c {
            let var = sq[ch] / m as f64;
            let unbiased = sq[ch] / (m - 1) as f64;
            invstd.push((1.0 / (var + f64::from(self.eps)).sqrt()) as f32);
            let rm = &mut self.running_mean.value[ch];
            *rm = ((1.0 - mom) * f64::from(*rm) + mom * mean[ch]) as f32;
            let rv = &mut self.running_var.value[ch];
            *rv = ((1.0 - mom) * f64::from(*rv) + mom * unbiased) as f32;
        }
        self.num_batches_tracked += 1;
        (mean.iter().map(|&v| v as f32).collect(), invstd)
    }
}

impl Layer for BnAct {
    fn forward(&mut self, x: Tensor, mode: Mode, _exec: &Executor) -> Result<Tensor> {
        let [n, c, h, w] = nhwc(&x, "batchnorm input")?;
        if c != self.channels() {
            return Err(Error::shape(
                "batchnorm input",
                format!("{} channels", self.channels()),
                format!("{c} channels"),
            ));
        }
        let m = n * h * w;
        let (gamma, beta, act) = (&self.weight.value, &self.bias.value, self.act);
        match mode {
            Mode::Train => {
                if m < 2 {
                    return Err(Error::shape(
                        "batchnorm input",
                        "more than 1 value per channel when training",
                        format!("{m}"),
                    ));
                }
                let (mean, invstd) = self.batch_stats(x.data(), c, m);
                let (gamma, beta) = (&self.weight.value, &self.bias.value);
                let mut y = Tensor::zeros(x.dims(), Layout::Nhwc)?;
                for (px, ypx) in x
                    .data()
                    .chunks_exact(c)
                    .zip(y.data_mut().chunks_exact_mut(c))
                {
                    for ch in 0..c {
                        let xh = (px[ch] - mean[ch]) * invstd[ch];
                        ypx[ch] = act.apply(xh * gamma[ch] + beta[ch]);
                    }
                }
                self.cache = Some((x, mean, invstd));
                Ok(y)
            }
            Mode::Eval => {
                let mean: Vec<f32> = self.running_mean.value.clone();
                let invstd: Vec<f32> = self
                    .running_var
                    .value
                    .iter()
                    .map(|&v| (1.0 / (f64::from(v) + f64::from(self.eps)).sqrt()) as f32)
                    .collect();
                let mut x = x;
                for px in x.data_mut().chunks_exact_mut(c) {
                    for ch in 0..c {
                        px[ch] = act.apply((px[ch] - mean[ch]) * invstd[ch] * gamma[ch] + beta[ch]);
                    }
                }
                self.cache = None;
                Ok(x)
            }
        }
    }

    fn backward(
        &mut self,
        mut dy: Tensor,
        need_input_grad: bool,
        _exec: &Executor,
    ) -> Result<Option<Tensor>> {
        let (x, mean, invstd) = self
            .cache
            .take()
            .ok_or_else(|| missing_forward("batchnorm"))?;
        if dy.logical_dims() != x.logical_dims() || dy.layout() != Layout::Nhwc {
            return Err(Error::shape(
                "batchnorm grad_output",
                format!("NHWC of logical dims {:?}", x.logical_dims()),
                format!("{} {:?}", dy.layout().name(), dy.logical_dims()),
            ));
        }
        let c = self.channels();
        let m = x.len() / c;
        let (gamma, beta, act) = (&self.weight.value, &self.bias.value, self.act);
        // Through the activation (its input recomputed exactly as the forward made it),
        // then BatchNorm's sums, in the order BatchNorm2d sums them.
        let mut sum_dy = vec![0f64; c];
        let mut sum_dy_xhat = vec![0f64; c];
        for (g, px) in dy
            .data_mut()
            .chunks_exact_mut(c)
            .zip(x.data().chunks_exact(c))
        {
            for ch in 0..c {
                let xh = (px[ch] - mean[ch]) * invstd[ch];
                let d = g[ch] * derivative(act, xh * gamma[ch] + beta[ch]);
                g[ch] = d;
                sum_dy[ch] += f64::from(d);
                sum_dy_xhat[ch] += f64::from(d) * f64::from(xh);
            }
        }
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
        for (g, px) in dy
            .data_mut()
            .chunks_exact_mut(c)
            .zip(x.data().chunks_exact(c))
        {
            for ch in 0..c {
                let xh = (px[ch] - mean[ch]) * invstd[ch];
                g[ch] = scale[ch] * (g[ch] - mean_dy[ch] - xh * mean_dy_xhat[ch]);
            }
        }
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
        if input[1] != self.channels() {
            return Err(Error::shape(
                "batchnorm input",
                format!("{} channels", self.channels()),
                format!("{} channels", input[1]),
            ));
        }
        Ok(input)
    }

    fn macs(&self, _input: [usize; 4]) -> Result<u64> {
        Ok(0)
    }
}

/// Stochastic depth on a residual branch (lukemelas' `drop_connect`, torchvision's
/// `StochasticDepth(p, "row")`): in training, each image's branch output is zeroed with
/// probability `p` and the others scaled by `1/(1−p)`; identity in evaluation. Seeded.
#[derive(Debug)]
pub struct DropPath {
    p: f32,
    rng: SplitMix64,
    mask: Option<Vec<f32>>,
}

impl DropPath {
    /// Drop probability `p` in `[0, 1)`, the masks drawn from `seed`.
    pub fn new(p: f32, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::param(
                "drop path",
                format!("p must be in [0, 1), got {p}"),
            ));
        }
        Ok(DropPath {
            p,
            rng: SplitMix64::new(seed),
            mask: None,
        })
    }
}

impl Layer for DropPath {
    fn forward(&mut self, mut x: Tensor, mode: Mode, _exec: &Executor) -> Result<Tensor> {
        let [n, ..] = nhwc(&x, "drop path input")?;
        if mode == Mode::Eval {
            self.mask = None;
            return Ok(x);
        }
        let keep = 1.0 - self.p;
        let mask: Vec<f32> = (0..n)
            .map(|_| {
                if self.p > 0.0 && self.rng.next_f32() < self.p {
                    0.0
                } else {
                    1.0 / keep
                }
            })
            .collect();
        let per = x.len() / n.max(1);
        for (img, &m) in x.data_mut().chunks_exact_mut(per.max(1)).zip(&mask) {
            if m != 1.0 {
                img.iter_mut().for_each(|v| *v *= m);
            }
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
        let mask = self
            .mask
            .take()
            .ok_or_else(|| missing_forward("drop path"))?;
        if dy.logical_dims()[0] != mask.len() {
            return Err(Error::shape(
                "drop path grad_output",
                format!("{} images", mask.len()),
                format!("{}", dy.logical_dims()[0]),
            ));
        }
        if !need_input_grad {
            return Ok(None);
        }
        let per = dy.len() / mask.len().max(1);
        for (img, &m) in dy.data_mut().chunks_exact_mut(per.max(1)).zip(&mask) {
            if m != 1.0 {
                img.iter_mut().for_each(|v| *v *= m);
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
