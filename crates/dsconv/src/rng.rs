//! A tiny seeded generator (SplitMix64) for reproducible random weights and inputs in
//! demos, benchmarks and tests. Not for cryptography; a dependency-free few lines instead of
//! pulling `rand` into the library for initialisation alone.

/// SplitMix64 (Steele, Lea, Flood 2014): 64-bit state, full period, good enough mixing
/// for initialising weights.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator with the given seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 24 random bits.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[low, high)`.
    pub fn uniform(&mut self, low: f32, high: f32) -> f32 {
        low + (high - low) * self.next_f32()
    }

    /// A vector of `n` values uniform in `[low, high)`.
    pub fn vec(&mut self, n: usize, low: f32, high: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(low, high)).collect()
    }

    /// The crate's one random-weight initialiser: `n` weights of a convolution or linear
    /// layer with `fan_in` inputs per output (`C_in/groups · kH · kW`, or the features),
    /// uniform in `±gain · sqrt(3 / fan_in)`, so their standard deviation is
    /// `gain / sqrt(fan_in)`. `gain = 1` keeps unit-variance inputs at unit variance
    /// (what [`RandomParams`](crate::weights::RandomParams) uses); `gain = √2` is He /
    /// Kaiming uniform for ReLU networks; `gain = 1/√3` gives PyTorch's default `Conv2d` /
    /// `Linear` bound `1/sqrt(fan_in)`. A `fan_in` of 0 counts as 1. The values are drawn
    /// in order from this generator, so a seed fixes them.
    pub fn weights(&mut self, n: usize, fan_in: usize, gain: f32) -> Vec<f32> {
        let bound = gain * (3.0 / fan_in.max(1) as f32).sqrt();
        self.vec(n, -bound, bound)
    }

    /// [`weights`](Self::weights) as a convolution weight tensor of PyTorch dims
    /// `[C_out, C_in/groups, kH, kW]` (fan-in `C_in/groups · kH · kW`).
    pub fn weight_tensor(
        &mut self,
        dims: [usize; 4],
        gain: f32,
    ) -> crate::Result<crate::tensor::Tensor> {
        let n = crate::error::product(&dims, "weight size")?;
        let fan_in = dims[1].saturating_mul(dims[2]).saturating_mul(dims[3]);
        crate::tensor::Tensor::from_nchw(self.weights(n, fan_in, gain), dims)
    }

    /// A random activation of logical dims `[N, C, H, W]` in `layout`, uniform in
    /// `[−1, 1)`, its first element on a 64-byte boundary like a network's activations.
    pub fn input_tensor(
        &mut self,
        logical: [usize; 4],
        layout: crate::tensor::Layout,
    ) -> crate::Result<crate::tensor::Tensor> {
        let mut t = crate::tensor::Tensor::zeros(layout.dims_from_logical(logical), layout)?;
        for v in t.data_mut() {
            *v = self.uniform(-1.0, 1.0);
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_tensors_are_the_random_params_ones_and_inputs_are_aligned() {
        use crate::weights::{ParamKind, ParamSource, RandomParams};
        let mut a = SplitMix64::new(3);
        let want =
            RandomParams::new(3).param("w", &[64, 32, 3, 3], ParamKind::Weight { fan_in: 288 });
        let got = a.weight_tensor([64, 32, 3, 3], 1.0).unwrap();
        assert_eq!(got.data(), &want[..]);
        let bound = (3.0f32 / 288.0).sqrt();
        assert!(got.data().iter().all(|v| v.abs() <= bound));
        let x = a.input_tensor([2, 3, 5, 7], crate::Layout::Nhwc).unwrap();
        assert_eq!(x.logical_dims(), [2, 3, 5, 7]);
        assert_eq!(x.data().as_ptr() as usize % 64, 0);
        assert!(x.data().iter().all(|v| (-1.0..1.0).contains(v)));
    }

    #[test]
    fn same_seed_same_stream_and_range() {
        let a = SplitMix64::new(7).vec(1000, -1.0, 1.0);
        let b = SplitMix64::new(7).vec(1000, -1.0, 1.0);
        assert_eq!(a, b);
        assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
        let mean: f32 = a.iter().sum::<f32>() / 1000.0;
        assert!(mean.abs() < 0.1, "mean {mean}");
        assert_ne!(a, SplitMix64::new(8).vec(1000, -1.0, 1.0));
    }

    #[test]
    fn weights_have_the_fan_in_scaled_bound_and_variance() {
        for (fan_in, gain) in [(1, 1.0), (27, 1.0), (1152, std::f32::consts::SQRT_2)] {
            let w = SplitMix64::new(3).weights(20_000, fan_in, gain);
            let bound = gain * (3.0 / fan_in as f32).sqrt();
            assert!(w.iter().all(|v| v.abs() <= bound), "fan_in {fan_in}");
            let var = w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / w.len() as f64;
            let want = (gain * gain) as f64 / fan_in as f64;
            assert!(
                (var / want - 1.0).abs() < 0.05,
                "fan_in {fan_in}: {var} vs {want}"
            );
        }
        // The same stream as `vec` with the bound spelled out; fan_in 0 counts as 1.
        assert_eq!(
            SplitMix64::new(4).weights(100, 0, 1.0),
            SplitMix64::new(4).vec(100, -3f32.sqrt(), 3f32.sqrt())
        );
    }
}
