//! The two layers the ImageNet networks add to [`super::super::layers`]: [`BnAct`]
//! (BatchNorm followed by an activation, keeping one tensor for both backward passes) and
//! [`DropPath`] (stochastic depth on a residual branch, lukemelas' `drop_connect`).

use super::super::layers::{bn_act_grad_sums, bn_act_input_grad, bn_train_stats};
use super::super::{join, par, pool, Layer, Mode, Param, ParamKind, Slot};
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

    /// Per-channel mean and `1/σ` of a training batch (threaded, as
    /// [`crate::train::BatchNorm2d`] computes them), updating the running statistics.
    fn batch_stats(&mut self, x: &[f32], c: usize, exec: &Executor) -> (Vec<f32>, Vec<f32>) {
        let stats = bn_train_stats(
            exec,
            x,
            c,
            self.eps,
            self.momentum,
            &mut self.running_mean.value,
            &mut self.running_var.value,
        );
        self.num_batches_tracked += 1;
        stats
    }
}

impl Layer for BnAct {
    fn forward(&mut self, x: Tensor, mode: Mode, exec: &Executor) -> Result<Tensor> {
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
                let (mean, invstd) = self.batch_stats(x.data(), c, exec);
                let (gamma, beta) = (&self.weight.value, &self.bias.value);
                // Every element written below.
                let mut y = pool::tensor(x.dims(), Layout::Nhwc)?;
                let p = (&mean[..], &invstd[..], &gamma[..], &beta[..]);
                // One loop per activation kind (the match outside it, so it vectorises).
                match act {
                    Activation::Relu6 => par::zip_mut(exec, y.data_mut(), x.data(), c, |ys, xs| {
                        normalise(ys, xs, c, p, |v| Activation::Relu6.apply(v))
                    }),
                    Activation::Relu => par::zip_mut(exec, y.data_mut(), x.data(), c, |ys, xs| {
                        normalise(ys, xs, c, p, |v| Activation::Relu.apply(v))
                    }),
                    Activation::None => par::zip_mut(exec, y.data_mut(), x.data(), c, |ys, xs| {
                        normalise(ys, xs, c, p, |v| Activation::None.apply(v))
                    }),
                    _ => par::zip_mut(exec, y.data_mut(), x.data(), c, |ys, xs| {
                        normalise(ys, xs, c, p, |v| act.apply(v))
                    }),
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
                par::each_mut(exec, x.data_mut(), c, |xs| {
                    for px in xs.chunks_exact_mut(c) {
                        for ch in 0..c {
                            px[ch] =
                                act.apply((px[ch] - mean[ch]) * invstd[ch] * gamma[ch] + beta[ch]);
                        }
                    }
                });
                self.cache = None;
                Ok(x)
            }
        }
    }

    fn backward(
        &mut self,
        mut dy: Tensor,
        need_input_grad: bool,
        exec: &Executor,
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
        // Through the activation (its input recomputed exactly as the forward made it)
        // and BatchNorm's sums, as BatchNorm2d sums them (x̂ recomputed the same way), in
        // one pass.
        let sums = bn_act_grad_sums(
            exec,
            dy.data(),
            x.data(),
            c,
            (&mean, &invstd),
            (gamma, beta),
            act,
        );
        let (sum_dy, sum_dy_xhat) = sums.split_at(c);
        for ch in 0..c {
            self.weight.grad[ch] += sum_dy_xhat[ch] as f32;
            self.bias.grad[ch] += sum_dy[ch] as f32;
        }
        if !need_input_grad {
            pool::recycle(x);
            pool::recycle(dy);
            return Ok(None);
        }
        let gamma = &self.weight.value;
        let scale: Vec<f32> = (0..c).map(|ch| gamma[ch] * invstd[ch]).collect();
        let mean_dy: Vec<f32> = sum_dy.iter().map(|s| (s / m as f64) as f32).collect();
        let mean_dy_xhat: Vec<f32> = sum_dy_xhat.iter().map(|s| (s / m as f64) as f32).collect();
        // The activation's gradient again (the same operations as in the sums' pass), and
        // BatchNorm's input gradient from it, in one pass.
        bn_act_input_grad(
            exec,
            dy.data_mut(),
            x.data(),
            c,
            (&mean, &invstd, gamma, beta),
            (&scale, &mean_dy, &mean_dy_xhat),
            act,
        );
        pool::recycle(x);
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

/// `y = f((x − mean)·invstd·γ + β)` over whole pixels of `c` channels (BnAct's training
/// forward), every slice cut to `c` so the channel loop runs without bounds checks.
fn normalise(
    ys: &mut [f32],
    xs: &[f32],
    c: usize,
    (mean, invstd, gamma, beta): (&[f32], &[f32], &[f32], &[f32]),
    f: impl Fn(f32) -> f32,
) {
    let (mean, invstd, gamma, beta) = (&mean[..c], &invstd[..c], &gamma[..c], &beta[..c]);
    for (px, ypx) in xs.chunks_exact(c).zip(ys.chunks_exact_mut(c)) {
        for ch in 0..c {
            let xh = (px[ch] - mean[ch]) * invstd[ch];
            ypx[ch] = f(xh * gamma[ch] + beta[ch]);
        }
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
