//! Element-wise pieces that follow a convolution: activations and inference BatchNorm,
//! and the folding of BatchNorm into convolution weights and bias.

use crate::error::{Error, Result};

/// An activation applied after a convolution (fused into the kernels' epilogue).
///
/// NaN and ±Inf behave as in PyTorch's CPU kernels (ATen `clamp_scalar_kernel_impl`,
/// `vec::clamp` and `hardswish_kernel` in `aten/src/ATen/native/cpu/`): a NaN input gives
/// NaN for every activation (`f32::max` would drop it: it is not used); ReLU(+Inf) = +Inf,
/// ReLU(−Inf) = 0, ReLU6(±Inf) = 6 / 0, hard-swish(+Inf) = +Inf and hard-swish(−Inf) = NaN
/// (`x · clamp(x + 3, 0, 6) / 6` = −Inf · 0; the documented piecewise form would say 0, the
/// kernel computes NaN). A `Clamp` with a NaN bound gives NaN everywhere (`clamp_out`
/// fills the result with NaN); `min > max` gives `max` everywhere. Sigmoid: NaN → NaN,
/// +Inf → 1, −Inf → 0; SiLU: NaN → NaN, +Inf → +Inf, −Inf → NaN (`x / (1 + e⁻ˣ)` =
/// −Inf / +Inf, as PyTorch's `silu` gives it), and an f32 SiLU of x ≲ −88.7 is −0 (e⁻ˣ
/// overflows), as in PyTorch. The kernels' vectorised `exp` is within 2 ulp of the
/// correctly rounded one; [`apply`](Self::apply) uses the standard library's.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Activation {
    /// Identity.
    #[default]
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `min(max(x, min), max)`.
    Clamp {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
    /// `x · relu6(x + 3) / 6` (MobileNetV3).
    HardSwish,
    /// `1 / (1 + e⁻ˣ)` (the gate of EfficientNet's squeeze-excitation).
    Sigmoid,
    /// SiLU / swish, `x · sigmoid(x)`, computed as PyTorch's CPU kernel does,
    /// `x / (1 + e⁻ˣ)` (EfficientNet).
    Silu,
}

/// `min(max(x, lo), hi)` keeping a NaN `x` (and a NaN bound is the caller's business):
/// the comparisons are those of the SIMD epilogue, `max(lo, x) = lo > x ? lo : x` then
/// `min(hi, y) = hi < y ? hi : y`, so that every tier agrees to the bit (signed zeros
/// included).
macro_rules! clamp_keep_nan {
    ($x:expr, $lo:expr, $hi:expr) => {{
        let (x, lo, hi) = ($x, $lo, $hi);
        let y = if lo > x { lo } else { x };
        if hi < y {
            hi
        } else {
            y
        }
    }};
}

impl Activation {
    /// Applies the activation to one f32 value (NaN and ±Inf as in PyTorch, see the type).
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => clamp_keep_nan!(x, 0.0, f32::INFINITY),
            Activation::Relu6 => clamp_keep_nan!(x, 0.0, 6.0),
            Activation::Clamp { min, max } if min.is_nan() || max.is_nan() => f32::NAN,
            Activation::Clamp { min, max } => clamp_keep_nan!(x, min, max),
            Activation::HardSwish => x * clamp_keep_nan!(x + 3.0, 0.0, 6.0) / 6.0,
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Silu => x / (1.0 + (-x).exp()),
        }
    }

    /// Applies the activation in f64 (for the reference), with the same NaN and ±Inf
    /// results as [`apply`](Self::apply).
    pub fn apply_f64(self, x: f64) -> f64 {
        match self {
            Activation::None => x,
            Activation::Relu => clamp_keep_nan!(x, 0.0, f64::INFINITY),
            Activation::Relu6 => clamp_keep_nan!(x, 0.0, 6.0),
            Activation::Clamp { min, max } if min.is_nan() || max.is_nan() => f64::NAN,
            Activation::Clamp { min, max } => clamp_keep_nan!(x, min as f64, max as f64),
            Activation::HardSwish => x * clamp_keep_nan!(x + 3.0, 0.0, 6.0) / 6.0,
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Silu => x / (1.0 + (-x).exp()),
        }
    }

    /// Applies the activation in place to every element of `data` with `exec`'s tier and
    /// threads: the kernels' vectorised code (the same bits as a fused epilogue at that
    /// tier), for an activation no convolution could take. Element-wise, so bitwise
    /// identical for every thread count.
    pub fn apply_slice(self, data: &mut [f32], exec: &crate::Executor) {
        if self == Activation::None || data.is_empty() {
            return;
        }
        // Weigh the transcendental ones like a few multiply-adds per element.
        let weight = match self {
            Activation::Sigmoid | Activation::Silu => 16,
            _ => 2,
        };
        let tasks = exec.tasks_for((data.len() as u64).saturating_mul(weight));
        let isa = exec.tier();
        exec.for_each_row_blocks(data, 1, 64, tasks, |_, chunk| {
            crate::kernels::act::activate_slice(isa, self, chunk)
        });
    }

    /// Name used in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Activation::None => "none",
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
            Activation::Clamp { .. } => "clamp",
            Activation::HardSwish => "hardswish",
            Activation::Sigmoid => "sigmoid",
            Activation::Silu => "silu",
        }
    }
}

/// Inference-time BatchNorm: `y = (x − mean) / sqrt(var + eps) · gamma + beta`, per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNorm {
    /// Scale (PyTorch `weight`).
    pub gamma: Vec<f32>,
    /// Shift (PyTorch `bias`).
    pub beta: Vec<f32>,
    /// Running mean.
    pub mean: Vec<f32>,
    /// Running variance.
    pub var: Vec<f32>,
    /// Epsilon (PyTorch default 1e-5; TF-ported EfficientNets use 1e-3).
    pub eps: f32,
}

impl BatchNorm {
    /// Builds a BatchNorm, checking that all four vectors have `channels` elements and
    /// that variances are non-negative and `eps` is positive.
    pub fn new(
        gamma: Vec<f32>,
        beta: Vec<f32>,
        mean: Vec<f32>,
        var: Vec<f32>,
        eps: f32,
    ) -> Result<Self> {
        let c = gamma.len();
        for (name, v) in [("beta", &beta), ("mean", &mean), ("var", &var)] {
            if v.len() != c {
                return Err(Error::shape(
                    "batchnorm",
                    format!("{name} with {c} elements like gamma"),
                    format!("{} elements", v.len()),
                ));
            }
        }
        if eps.is_nan() || eps <= 0.0 {
            return Err(Error::param(
                "batchnorm eps",
                format!("{eps} is not positive"),
            ));
        }
        if var.iter().any(|v| v.is_nan() || *v < 0.0) {
            return Err(Error::param(
                "batchnorm var",
                "variances must be non-negative",
            ));
        }
        Ok(BatchNorm {
            gamma,
            beta,
            mean,
            var,
            eps,
        })
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.gamma.len()
    }

    /// Per-channel scale `gamma / sqrt(var + eps)`, computed in f64.
    fn scale(&self, c: usize) -> f64 {
        self.gamma[c] as f64 / (self.var[c] as f64 + self.eps as f64).sqrt()
    }

    /// Applies to one value of channel `c`, in f64.
    ///
    /// # Panics
    /// If `c` is not below [`channels`](Self::channels).
    pub fn apply_f64(&self, c: usize, x: f64) -> f64 {
        (x - self.mean[c] as f64) * self.scale(c) + self.beta[c] as f64
    }

    /// Folds this BatchNorm into a convolution's weight (`[C_out, ...]`, `per_out` values per
    /// output channel) and bias (created if absent): `w' = w·s`, `b' = (b − mean)·s + beta`.
    pub fn fold_into(&self, weight: &mut [f32], bias: &mut Option<Vec<f32>>) -> Result<()> {
        let c = self.channels();
        // The fields are public, so a BatchNorm may not have come through `new`: check
        // again that every vector has one value per channel before indexing them.
        for (name, v) in [
            ("beta", &self.beta),
            ("mean", &self.mean),
            ("var", &self.var),
        ] {
            if v.len() != c {
                return Err(Error::shape(
                    "batchnorm",
                    format!("{name} with {c} elements like gamma"),
                    format!("{} elements", v.len()),
                ));
            }
        }
        if c == 0 || !weight.len().is_multiple_of(c) {
            return Err(Error::shape(
                "batchnorm fold",
                format!("a weight whose size is a multiple of {c} output channels"),
                format!("{} elements", weight.len()),
            ));
        }
        let per_out = weight.len() / c;
        let b = bias.get_or_insert_with(|| vec![0.0; c]);
        if b.len() != c {
            return Err(Error::shape(
                "batchnorm fold bias",
                format!("{c} elements"),
                format!("{} elements", b.len()),
            ));
        }
        for co in 0..c {
            let s = self.scale(co);
            for w in &mut weight[co * per_out..(co + 1) * per_out] {
                *w = (*w as f64 * s) as f32;
            }
            b[co] = ((b[co] as f64 - self.mean[co] as f64) * s + self.beta[co] as f64) as f32;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Activation as A;

    /// PyTorch's CPU results (see [`A`]) for NaN, ±Inf and the bounds, f32 and f64 alike.
    #[test]
    fn nan_and_inf_as_pytorch() {
        let (inf, nan) = (f32::INFINITY, f32::NAN);
        let clamp = A::Clamp {
            min: -1.0,
            max: 2.0,
        };
        let reversed = A::Clamp {
            min: 2.0,
            max: -1.0,
        };
        #[rustfmt::skip]
        let table: [(A, [f32; 6]); 6] = [
            // input:     NaN   +Inf  -Inf   -4    -1    4
            (A::None,      [nan, inf, -inf, -4.0, -1.0, 4.0]),
            (A::Relu,      [nan, inf, 0.0, 0.0, 0.0, 4.0]),
            (A::Relu6,     [nan, 6.0, 0.0, 0.0, 0.0, 4.0]),
            (clamp,        [nan, 2.0, -1.0, -1.0, -1.0, 2.0]),
            (reversed,     [nan, -1.0, -1.0, -1.0, -1.0, -1.0]),
            (A::HardSwish, [nan, inf, nan, 0.0, -1.0 / 3.0, 4.0]),
        ];
        let inputs = [nan, inf, -inf, -4.0, -1.0, 4.0];
        for (act, want) in table {
            for (x, w) in inputs.into_iter().zip(want) {
                let (got, got64) = (act.apply(x), act.apply_f64(x as f64));
                let same = |g: f64| {
                    (g.is_nan() && w.is_nan()) || g == w as f64 || (g - w as f64).abs() < 1e-6
                };
                assert!(same(got as f64), "{act:?}({x}) = {got}, want {w}");
                assert!(same(got64), "{act:?} f64 ({x}) = {got64}, want {w}");
            }
        }
        for bad in [
            A::Clamp { min: nan, max: 1.0 },
            A::Clamp { min: 0.0, max: nan },
        ] {
            for x in inputs {
                assert!(bad.apply(x).is_nan() && bad.apply_f64(x as f64).is_nan());
            }
        }
        // ReLU keeps the sign of a negative zero, as std::max(-0.0, 0) does.
        assert!(A::Relu.apply(-0.0).is_sign_negative());
    }
}
