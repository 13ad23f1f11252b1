//! Element-wise pieces that follow a convolution: activations and inference BatchNorm,
//! and the folding of BatchNorm into convolution weights and bias.

use crate::error::{Error, Result};

/// An activation applied after a convolution (fused into the kernels' epilogue).
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
}

impl Activation {
    /// Applies the activation to one f32 value.
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Relu6 => x.clamp(0.0, 6.0),
            Activation::Clamp { min, max } => x.max(min).min(max),
            Activation::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        }
    }

    /// Applies the activation in f64 (for the reference).
    pub fn apply_f64(self, x: f64) -> f64 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Relu6 => x.clamp(0.0, 6.0),
            Activation::Clamp { min, max } => x.max(min as f64).min(max as f64),
            Activation::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        }
    }

    /// Name used in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Activation::None => "none",
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
            Activation::Clamp { .. } => "clamp",
            Activation::HardSwish => "hardswish",
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
