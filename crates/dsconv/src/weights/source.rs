//! Where a model builder gets its parameters: a checkpoint (through [`Loader`]) or a
//! seeded random initialisation (for benchmarks and cost tables without weights).
//! Builders name every parameter the way the original PyTorch module does, so the same
//! code path serves both.

use super::Loader;
use crate::rng::SplitMix64;

/// What a parameter is, so a random source can initialise it sensibly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A convolution or linear weight with `fan_in` inputs per output.
    Weight {
        /// Inputs per output: `C_in/groups · kH · kW`, or the linear layer's features.
        fan_in: usize,
    },
    /// A convolution or linear bias.
    Bias,
    /// BatchNorm `weight` (gamma).
    BnScale,
    /// BatchNorm `bias` (beta).
    BnShift,
    /// BatchNorm `running_mean`.
    BnMean,
    /// BatchNorm `running_var` (must be non-negative).
    BnVar,
}

/// A supplier of named parameters.
pub trait ParamSource {
    /// The row-major f32 data of parameter `name` with dims `shape`.
    fn param(&mut self, name: &str, shape: &[usize], kind: ParamKind) -> Vec<f32>;
}

impl ParamSource for Loader<'_> {
    fn param(&mut self, name: &str, shape: &[usize], _kind: ParamKind) -> Vec<f32> {
        self.take(name, shape)
    }
}

/// Seeded random parameters: weights from [`SplitMix64::weights`] with gain 1 (uniform in
/// `±sqrt(3 / fan_in)`: unit-variance outputs for unit-variance inputs), BatchNorm near
/// identity with some spread, small biases.
#[derive(Debug, Clone)]
pub struct RandomParams {
    rng: SplitMix64,
}

impl RandomParams {
    /// A source with the given seed.
    pub fn new(seed: u64) -> Self {
        RandomParams {
            rng: SplitMix64::new(seed),
        }
    }
}

impl ParamSource for RandomParams {
    fn param(&mut self, _name: &str, shape: &[usize], kind: ParamKind) -> Vec<f32> {
        let n = shape.iter().product();
        match kind {
            ParamKind::Weight { fan_in } => self.rng.weights(n, fan_in, 1.0),
            ParamKind::Bias | ParamKind::BnShift | ParamKind::BnMean => self.rng.vec(n, -0.1, 0.1),
            ParamKind::BnScale | ParamKind::BnVar => self.rng.vec(n, 0.5, 1.5),
        }
    }
}
