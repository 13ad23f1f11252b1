//! The cost model: multiply-accumulates (MACs), FLOPs (= 2·MACs, always named as such),
//! parameters, bytes read and written, and arithmetic intensity, for one layer
//! ([`Cost`], [`LayerCost`]), for a network ([`NetworkCost`], one row per layer plus
//! totals) and for the seed's comparison of a standard convolution with its depthwise
//! separable factorisation ([`SeparableComparison`]).
//!
//! What is counted (see `docs/cost-model.md` for the full argument):
//! - **MACs**: one multiply and one add into an accumulator. A convolution costs
//!   `N · C_out · out_H · out_W · (C_in/groups) · kH · kW`; a fully connected layer
//!   `N · in · out`. Bias additions, BatchNorm, activations and pooling are not MACs and
//!   are not counted (the MobileNet paper's "mult-adds" count the same thing).
//! - **FLOPs** = 2 · MACs, nothing else.
//! - **Parameters**: weights and biases of convolutions and fully connected layers.
//!   BatchNorm's affine parameters (γ, β: two per channel) are kept apart in
//!   [`LayerCost::batchnorm_params`]; running statistics are not parameters.
//! - **Bytes** (f32): a layer reads its input activations and its parameters once and
//!   writes its output once: a lower bound on traffic, as if caches were perfect.
//! - **Arithmetic intensity** = FLOPs / (bytes read + bytes written).

use crate::error::{Error, Result};
use crate::geometry::{Conv2dParams, ConvGeometry};
use std::ops::{Add, AddAssign};

/// Multiply-accumulates of one convolution: `N · C_out · out_H · out_W · (C_in/g) · kH · kW`.
pub fn conv_macs(g: &ConvGeometry) -> u64 {
    [
        g.batch(),
        g.out_channels(),
        g.out_h(),
        g.out_w(),
        g.in_channels_per_group(),
        g.kernel_h(),
        g.kernel_w(),
    ]
    .iter()
    .fold(1u64, |acc, &d| acc.saturating_mul(d as u64))
}

/// Saturating product of sizes as `u64` (costs are reports: a saturated count beats a panic).
fn count(dims: &[usize]) -> u64 {
    dims.iter()
        .fold(1u64, |acc, &d| acc.saturating_mul(d as u64))
}

/// The cost of a layer or a sum of layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cost {
    /// Multiply-accumulates.
    pub macs: u64,
    /// Learned parameters: weights plus biases of convolutions and fully connected layers
    /// (BatchNorm's affine parameters are counted apart, in [`LayerCost`]).
    pub params: u64,
    /// Bytes read: input activations, weights and biases (f32), each once.
    pub bytes_read: u64,
    /// Bytes written: output activations (f32), once.
    pub bytes_written: u64,
}

/// Bytes per f32 element.
const F32_BYTES: u64 = 4;

impl Cost {
    /// Cost of one convolution with the given geometry, with or without a bias.
    pub fn conv(g: &ConvGeometry, bias: bool) -> Cost {
        let weights = count(&g.weight_dims());
        let params = weights.saturating_add(if bias { g.out_channels() as u64 } else { 0 });
        let input = count(&g.input_dims());
        let output = count(&g.output_dims());
        Cost {
            macs: conv_macs(g),
            params,
            bytes_read: input.saturating_add(params).saturating_mul(F32_BYTES),
            bytes_written: output.saturating_mul(F32_BYTES),
        }
    }

    /// Cost of a fully connected layer `in_features → out_features` over `batch` rows.
    pub fn linear(batch: usize, in_features: usize, out_features: usize, bias: bool) -> Cost {
        let weights = count(&[in_features, out_features]);
        let params = weights.saturating_add(if bias { out_features as u64 } else { 0 });
        Cost {
            macs: (batch as u64).saturating_mul(weights),
            params,
            bytes_read: count(&[batch, in_features])
                .saturating_add(params)
                .saturating_mul(F32_BYTES),
            bytes_written: count(&[batch, out_features]).saturating_mul(F32_BYTES),
        }
    }

    /// Cost of a transposed convolution (`ConvTranspose`) from an input of logical dims
    /// `input = [N, C_in, H, W]` to `output = [N, C_out, out_H, out_W]` with a `kernel` and
    /// `groups`: every input value times the `(C_out/g)·kH·kW` weights of its channel,
    /// `N·C_in·H·W·(C_out/g)·kH·kW` MACs (taps that land in the cropped padding included:
    /// the kernels compute them).
    pub fn conv_transpose(
        input: [usize; 4],
        output: [usize; 4],
        kernel: [usize; 2],
        groups: usize,
        bias: bool,
    ) -> Cost {
        let per_input = count(&[output[1] / groups.max(1), kernel[0], kernel[1]]);
        let weights = (input[1] as u64).saturating_mul(per_input);
        let params = weights.saturating_add(if bias { output[1] as u64 } else { 0 });
        Cost {
            macs: count(&input).saturating_mul(per_input),
            params,
            bytes_read: count(&input)
                .saturating_add(params)
                .saturating_mul(F32_BYTES),
            bytes_written: count(&output).saturating_mul(F32_BYTES),
        }
    }

    /// Cost of a global average pool over an input of logical dims `[N, C, H, W]`: no
    /// MACs and no parameters (its `H·W − 1` additions and one scaling per channel are
    /// not multiply-accumulates), the input read and `N·C` values written.
    pub fn global_avg_pool(input: [usize; 4]) -> Cost {
        Cost {
            macs: 0,
            params: 0,
            bytes_read: count(&input).saturating_mul(F32_BYTES),
            bytes_written: count(&input[..2]).saturating_mul(F32_BYTES),
        }
    }

    /// Floating-point operations: 2 per multiply-accumulate.
    pub fn flops(&self) -> u64 {
        self.macs.saturating_mul(2)
    }

    /// Total bytes moved (read + written).
    pub fn bytes(&self) -> u64 {
        self.bytes_read.saturating_add(self.bytes_written)
    }

    /// True when a count did not fit `u64`. Counts saturate rather than panic, so a
    /// saturated field (`u64::MAX`) or a sum that cannot be formed (FLOPs, total bytes)
    /// marks an overflow; checked by [`SeparableComparison::new`] and the model tables,
    /// which refuse such sizes with [`Error::Overflow`] instead of printing a wrong count.
    pub fn overflowed(&self) -> bool {
        [self.macs, self.params, self.bytes_read, self.bytes_written].contains(&u64::MAX)
            || self.macs.checked_mul(2).is_none()
            || self.bytes_read.checked_add(self.bytes_written).is_none()
    }

    /// `Ok(self)`, or [`Error::Overflow`] naming `what` when [`overflowed`](Self::overflowed).
    pub fn checked(self, what: &'static str) -> Result<Cost> {
        if self.overflowed() {
            Err(Error::Overflow(what))
        } else {
            Ok(self)
        }
    }

    /// Arithmetic intensity in FLOPs per byte moved (0 when nothing moves).
    pub fn intensity(&self) -> f64 {
        if self.bytes() == 0 {
            0.0
        } else {
            self.flops() as f64 / self.bytes() as f64
        }
    }
}

impl Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost {
            macs: self.macs.saturating_add(o.macs),
            params: self.params.saturating_add(o.params),
            bytes_read: self.bytes_read.saturating_add(o.bytes_read),
            bytes_written: self.bytes_written.saturating_add(o.bytes_written),
        }
    }
}

impl AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        *self = *self + o;
    }
}

impl std::iter::Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(iter: I) -> Cost {
        iter.fold(Cost::default(), Add::add)
    }
}

/// What a row of a cost table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerKind {
    /// A standard convolution (`groups = 1`, kernel larger than 1×1 or strided/padded).
    Standard,
    /// A grouped convolution that is neither standard nor depthwise.
    Grouped,
    /// A depthwise convolution (`groups = C_in`).
    Depthwise,
    /// A 1×1, stride-1, unpadded, ungrouped convolution.
    Pointwise,
    /// A fully connected layer.
    FullyConnected,
    /// A pooling layer.
    Pool,
}

impl LayerKind {
    /// The kind of a convolution with geometry `g`. A 1×1 depthwise convolution is
    /// depthwise; a 1×1 ungrouped one is pointwise.
    pub fn of(g: &ConvGeometry) -> LayerKind {
        if g.is_pointwise() {
            LayerKind::Pointwise
        } else if g.is_depthwise() && g.groups() > 1 {
            LayerKind::Depthwise
        } else if g.groups() == 1 {
            LayerKind::Standard
        } else {
            LayerKind::Grouped
        }
    }

    /// Lower-case name used in tables and JSON: `standard`, `grouped`, `depthwise`,
    /// `pointwise`, `fc`, `pool`.
    pub fn name(self) -> &'static str {
        match self {
            LayerKind::Standard => "standard",
            LayerKind::Grouped => "grouped",
            LayerKind::Depthwise => "depthwise",
            LayerKind::Pointwise => "pointwise",
            LayerKind::FullyConnected => "fc",
            LayerKind::Pool => "pool",
        }
    }
}

/// One row of a cost table: a named layer, its shapes and its [`Cost`].
#[derive(Debug, Clone, PartialEq)]
pub struct LayerCost {
    /// Layer name, e.g. `block3.dw`.
    pub name: String,
    /// What kind of layer it is.
    pub kind: LayerKind,
    /// Logical input dims `[N, C, H, W]` (`[N, features, 1, 1]` for a fully connected layer).
    pub input: [usize; 4],
    /// Logical output dims `[N, C, H, W]`.
    pub output: [usize; 4],
    /// Kernel `[kH, kW]` (`[1, 1]` for a fully connected layer, `[H, W]` for a global pool).
    pub kernel: [usize; 2],
    /// Stride `[sH, sW]`.
    pub stride: [usize; 2],
    /// MACs, parameters (weights + biases) and bytes.
    pub cost: Cost,
    /// BatchNorm affine parameters (γ and β, two per channel) of a BatchNorm that follows
    /// this layer, counted apart from `cost.params`. Zero when none follows.
    pub batchnorm_params: u64,
}

impl LayerCost {
    /// A convolution with geometry `g`, with or without a bias.
    pub fn conv(name: impl Into<String>, g: &ConvGeometry, bias: bool) -> LayerCost {
        LayerCost {
            name: name.into(),
            kind: LayerKind::of(g),
            input: g.input_dims(),
            output: g.output_dims(),
            kernel: [g.kernel_h(), g.kernel_w()],
            stride: [g.stride_h(), g.stride_w()],
            cost: Cost::conv(g, bias),
            batchnorm_params: 0,
        }
    }

    /// A fully connected layer `in_features → out_features` over `batch` rows.
    pub fn linear(
        name: impl Into<String>,
        batch: usize,
        in_features: usize,
        out_features: usize,
        bias: bool,
    ) -> LayerCost {
        LayerCost {
            name: name.into(),
            kind: LayerKind::FullyConnected,
            input: [batch, in_features, 1, 1],
            output: [batch, out_features, 1, 1],
            kernel: [1, 1],
            stride: [1, 1],
            cost: Cost::linear(batch, in_features, out_features, bias),
            batchnorm_params: 0,
        }
    }

    /// A transposed convolution (see [`Cost::conv_transpose`]); its kind is that of the
    /// convolution it transposes (standard for one group, grouped otherwise).
    pub fn conv_transpose(
        name: impl Into<String>,
        input: [usize; 4],
        output: [usize; 4],
        kernel: [usize; 2],
        stride: [usize; 2],
        groups: usize,
        bias: bool,
    ) -> LayerCost {
        LayerCost {
            name: name.into(),
            kind: if groups == 1 {
                LayerKind::Standard
            } else {
                LayerKind::Grouped
            },
            input,
            output,
            kernel,
            stride,
            cost: Cost::conv_transpose(input, output, kernel, groups, bias),
            batchnorm_params: 0,
        }
    }

    /// A global average pool over an input of logical dims `[N, C, H, W]`.
    pub fn global_avg_pool(name: impl Into<String>, input: [usize; 4]) -> LayerCost {
        let [n, c, h, w] = input;
        LayerCost {
            name: name.into(),
            kind: LayerKind::Pool,
            input,
            output: [n, c, 1, 1],
            kernel: [h, w],
            stride: [h, w],
            cost: Cost::global_avg_pool(input),
            batchnorm_params: 0,
        }
    }

    /// Records that a BatchNorm over the output channels follows (γ and β per channel).
    pub fn with_batchnorm(mut self) -> LayerCost {
        self.batchnorm_params = (self.output[1] as u64).saturating_mul(2);
        self
    }
}

/// A network's cost table: one [`LayerCost`] per layer, in execution order.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkCost {
    /// The network's name, e.g. `mobilenet-v1 (α = 1, 224×224)`.
    pub name: String,
    /// The layers in execution order.
    pub layers: Vec<LayerCost>,
}

impl NetworkCost {
    /// The sum over all layers.
    pub fn total(&self) -> Cost {
        self.layers.iter().map(|l| l.cost).sum()
    }

    /// BatchNorm affine parameters over all layers (not included in `total().params`).
    pub fn batchnorm_params(&self) -> u64 {
        self.layers
            .iter()
            .fold(0u64, |acc, l| acc.saturating_add(l.batchnorm_params))
    }

    /// The sum over the layers of one kind.
    pub fn total_of(&self, kind: LayerKind) -> Cost {
        self.layers
            .iter()
            .filter(|l| l.kind == kind)
            .map(|l| l.cost)
            .sum()
    }
}

/// The seed's comparison: a standard k×k convolution `C_in → C_out` against the depthwise
/// separable pair that produces the same output shape (a depthwise k×k convolution with
/// the same stride, dilation and padding, then a pointwise 1×1 `C_in → C_out`).
///
/// ```
/// use dsconv::cost::SeparableComparison;
/// use dsconv::Conv2dParams;
/// // 7×7×3 input, 128 filters of 3×3, no padding: the seed's example.
/// let c = SeparableComparison::new([1, 3, 7, 7], 128, [3, 3], &Conv2dParams::default(), false)?;
/// assert_eq!(c.standard.cost.macs, 86_400);
/// assert_eq!((c.depthwise.cost.macs, c.pointwise.cost.macs), (675, 9_600));
/// assert_eq!(c.separable().macs, 10_275);
/// assert!((c.ratio() - 0.1189).abs() < 1e-4);
/// # Ok::<(), dsconv::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SeparableComparison {
    /// The standard convolution, weight `[C_out, C_in, kH, kW]`.
    pub standard: LayerCost,
    /// The depthwise stage, weight `[C_in, 1, kH, kW]`.
    pub depthwise: LayerCost,
    /// The pointwise stage, weight `[C_out, C_in, 1, 1]`.
    pub pointwise: LayerCost,
}

impl SeparableComparison {
    /// Compares the two for an input of logical dims `[N, C_in, H, W]`, `out_channels`
    /// filters of `kernel = [kH, kW]`, and `params` (stride, dilation, padding; `groups`
    /// must be 1: it is the standard convolution's). With `bias`, every convolution has one.
    pub fn new(
        input: [usize; 4],
        out_channels: usize,
        kernel: [usize; 2],
        params: &Conv2dParams,
        bias: bool,
    ) -> Result<SeparableComparison> {
        if params.groups != 1 {
            return Err(Error::param(
                "groups",
                format!(
                    "the compared standard convolution has groups = 1, not {}",
                    params.groups
                ),
            ));
        }
        let channels = input[1];
        let [kh, kw] = kernel;
        let standard = ConvGeometry::new(input, [out_channels, channels, kh, kw], params)?;
        let depthwise = ConvGeometry::new(
            input,
            [channels, 1, kh, kw],
            &params.with_groups(channels.max(1)),
        )?;
        let pointwise = ConvGeometry::new(
            depthwise.output_dims(),
            [out_channels, channels, 1, 1],
            &Conv2dParams::default(),
        )?;
        let comparison = SeparableComparison {
            standard: LayerCost::conv("standard", &standard, bias),
            depthwise: LayerCost {
                // A 1-channel depthwise convolution is also "standard" by its groups;
                // here it is the depthwise stage whatever C_in is.
                kind: LayerKind::Depthwise,
                ..LayerCost::conv("depthwise", &depthwise, bias)
            },
            pointwise: LayerCost::conv("pointwise", &pointwise, bias),
        };
        // Saturated counts would print as numbers (and a 100% ratio): refuse them.
        comparison
            .standard
            .cost
            .checked("standard convolution cost")?;
        comparison.separable().checked("depthwise separable cost")?;
        Ok(comparison)
    }

    /// The depthwise separable total: depthwise + pointwise.
    pub fn separable(&self) -> Cost {
        self.depthwise.cost + self.pointwise.cost
    }

    /// Separable MACs over standard MACs.
    pub fn ratio(&self) -> f64 {
        ratio(self.separable().macs, self.standard.cost.macs)
    }

    /// The paper's closed form of [`ratio`](Self::ratio), `1/C_out + 1/(kH·kW)`; equal to it
    /// because both convolutions have the same output size.
    pub fn formula_ratio(&self) -> f64 {
        separable_ratio(self.standard.output[1], self.standard.kernel)
    }
}

/// `1/C_out + 1/(kH·kW)`: the fraction of a standard convolution's MACs that its depthwise
/// separable factorisation needs (Howard et al. 2017, eq. 5).
pub fn separable_ratio(out_channels: usize, kernel: [usize; 2]) -> f64 {
    1.0 / out_channels as f64 + 1.0 / (kernel[0] as f64 * kernel[1] as f64)
}

/// `a / b` as f64, 0 when `b` is 0.
pub fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_beyond_u64_are_an_overflow_error_not_a_saturated_number() {
        // 100000×100000×100000 input, 100000 filters of 3×3: ~9e20 MACs > u64::MAX. Found
        // through `dsconv cost`, which printed 18,446,744,073,709,551,615 MACs and "100%".
        let r = SeparableComparison::new(
            [1, 100_000, 100_000, 100_000],
            100_000,
            [3, 3],
            &Conv2dParams::default(),
            false,
        );
        assert_eq!(r, Err(Error::Overflow("standard convolution cost")));
        let mut c = Cost {
            macs: u64::MAX / 2 + 1,
            ..Cost::default()
        };
        assert!(c.overflowed()); // its FLOPs do not fit
        c.macs = u64::MAX / 2;
        assert_eq!(c.checked("x"), Ok(c));
    }
    use crate::geometry::Padding;

    fn seed() -> SeparableComparison {
        SeparableComparison::new([1, 3, 7, 7], 128, [3, 3], &Conv2dParams::default(), false)
            .unwrap()
    }

    #[test]
    fn seed_example_counts_match_the_text() {
        let c = seed();
        assert_eq!(c.standard.output, [1, 128, 5, 5]);
        assert_eq!(c.depthwise.output, [1, 3, 5, 5]);
        assert_eq!(c.pointwise.output, [1, 128, 5, 5]);
        // 128·3·3·3·5·5, as the seed computes it.
        assert_eq!(c.standard.cost.macs, 86_400);
        // 3·3·3·1·5·5 and 128·1·1·3·5·5: the seed's two terms.
        assert_eq!(c.depthwise.cost.macs, 675);
        assert_eq!(c.pointwise.cost.macs, 9_600);
        // The seed writes "= 9600" for the sum; the sum is 10,275.
        assert_eq!(c.separable().macs, 10_275);
        assert_eq!(format!("{:.1}%", 100.0 * c.ratio()), "11.9%");
        assert_eq!(
            (
                c.standard.cost.params,
                c.depthwise.cost.params,
                c.pointwise.cost.params
            ),
            (3_456, 27, 384)
        );
        assert_eq!(c.standard.kind, LayerKind::Standard);
        assert_eq!(c.depthwise.kind, LayerKind::Depthwise);
        assert_eq!(c.pointwise.kind, LayerKind::Pointwise);
    }

    #[test]
    fn formula_equals_counted_ratio_for_any_padding_and_stride() {
        for (c_in, c_out, k, stride, padding) in [
            (3, 128, 3, 1, Padding::Valid),
            (32, 64, 3, 2, Padding::symmetric(1)),
            (16, 24, 5, 1, Padding::Same),
            (7, 9, 3, 3, Padding::Same),
        ] {
            let p = Conv2dParams::default()
                .with_stride(stride)
                .with_padding(padding);
            let c = SeparableComparison::new([2, c_in, 19, 17], c_out, [k, k], &p, false).unwrap();
            let expected = 1.0 / c_out as f64 + 1.0 / (k * k) as f64;
            assert!((c.ratio() - expected).abs() < 1e-12, "{c_in} {c_out} {k}");
            assert!((c.formula_ratio() - expected).abs() < 1e-15);
            assert_eq!(c.standard.output, c.pointwise.output);
        }
    }

    /// A transposed convolution's MACs are the input's values times each one's taps: the
    /// MACs of the convolution it transposes (stride 2, 3×3, pads 1 from 10×12 to 5×6).
    #[test]
    fn conv_transpose_costs_what_the_convolution_it_transposes_costs() {
        let p = Conv2dParams::default()
            .with_stride(2)
            .with_padding(Padding::symmetric(1))
            .with_groups(2);
        let g = ConvGeometry::new([2, 6, 10, 12], [4, 3, 3, 3], &p).unwrap();
        assert_eq!(g.output_dims(), [2, 4, 5, 6]);
        let t =
            LayerCost::conv_transpose("up", [2, 4, 5, 6], [2, 6, 10, 12], [3, 3], [2, 2], 2, true);
        assert_eq!(t.cost.macs, conv_macs(&g));
        assert_eq!(t.cost.params, 4 * 3 * 9 + 6);
        assert_eq!(t.kind, LayerKind::Grouped);
        assert_eq!(t.cost.bytes_read, (2 * 4 * 5 * 6 + 4 * 3 * 9 + 6) * 4);
        assert_eq!(t.cost.bytes_written, 2 * 6 * 10 * 12 * 4);
        let one = Cost::conv_transpose([1, 24, 160, 160], [1, 24, 320, 320], [2, 2], 1, false);
        assert_eq!(one.macs, 160 * 160 * 24 * 24 * 4);
    }

    #[test]
    fn bias_adds_one_param_per_output_channel() {
        let p = Conv2dParams::default();
        let c = SeparableComparison::new([1, 3, 7, 7], 128, [3, 3], &p, true).unwrap();
        assert_eq!(c.standard.cost.params, 3_456 + 128);
        assert_eq!(c.depthwise.cost.params, 27 + 3);
        assert_eq!(c.pointwise.cost.params, 384 + 128);
        assert_eq!(c.standard.cost.macs, 86_400);
    }

    #[test]
    fn bytes_and_intensity_follow_the_model() {
        let c = seed();
        // Standard: reads 7·7·3 inputs + 3,456 weights, writes 5·5·128 outputs.
        assert_eq!(c.standard.cost.bytes_read, (147 + 3_456) * 4);
        assert_eq!(c.standard.cost.bytes_written, 3_200 * 4);
        let i = c.standard.cost.intensity();
        assert!((i - 172_800.0 / ((3_603 + 3_200) * 4) as f64).abs() < 1e-12);
        assert_eq!(c.standard.cost.flops(), 2 * 86_400);
    }

    #[test]
    fn bad_comparisons_are_errors() {
        let p = Conv2dParams::default();
        assert!(SeparableComparison::new([1, 3, 2, 2], 8, [3, 3], &p, false).is_err());
        assert!(SeparableComparison::new([1, 0, 7, 7], 8, [3, 3], &p, false).is_err());
        assert!(SeparableComparison::new([1, 3, 7, 7], 0, [3, 3], &p, false).is_err());
        assert!(
            SeparableComparison::new([1, 4, 7, 7], 8, [3, 3], &p.with_groups(2), false).is_err()
        );
        let huge = usize::MAX / 2;
        assert!(SeparableComparison::new([huge, huge, 7, 7], 8, [3, 3], &p, false).is_err());
    }

    #[test]
    fn network_totals_sum_rows_and_keep_batchnorm_apart() {
        let g = ConvGeometry::new(
            [1, 3, 8, 8],
            [4, 3, 3, 3],
            &Conv2dParams::default().with_padding(Padding::symmetric(1)),
        )
        .unwrap();
        let net = NetworkCost {
            name: "tiny".into(),
            layers: vec![
                LayerCost::conv("conv", &g, false).with_batchnorm(),
                LayerCost::global_avg_pool("pool", [1, 4, 8, 8]),
                LayerCost::linear("fc", 1, 4, 10, true),
            ],
        };
        let t = net.total();
        assert_eq!(t.macs, 8 * 8 * 4 * 27 + 40);
        assert_eq!(t.params, 108 + 50);
        assert_eq!(net.batchnorm_params(), 8);
        assert_eq!(net.total_of(LayerKind::Pool).macs, 0);
        assert_eq!(net.total_of(LayerKind::FullyConnected).params, 50);
        assert_eq!(net.layers[1].output, [1, 4, 1, 1]);
    }

    proptest::proptest! {
        /// For every geometry the counted ratio is the closed form, the separable output has
        /// the standard shape, and the counts agree with the layer types' own `cost`.
        #[test]
        fn ratio_is_the_formula_and_layers_agree(
            c_in in 1usize..20, c_out in 1usize..40, k in 1usize..6, stride in 1usize..4,
            pad in 0usize..3, same in proptest::bool::ANY, h in 6usize..20, w in 6usize..20,
            batch in 1usize..3,
        ) {
            let padding = if same { Padding::Same } else { Padding::symmetric(pad) };
            let p = Conv2dParams::default().with_stride(stride).with_padding(padding);
            let c = SeparableComparison::new([batch, c_in, h, w], c_out, [k, k], &p, false)
                .unwrap();
            let expected = 1.0 / c_out as f64 + 1.0 / (k * k) as f64;
            proptest::prop_assert!((c.ratio() - expected).abs() < 1e-12);
            proptest::prop_assert_eq!(c.standard.output, c.pointwise.output);
            let weight = |dims: [usize; 4]| {
                crate::Tensor::from_nchw(vec![0.5; dims.iter().product()], dims).unwrap()
            };
            let conv = crate::Conv2d::new(weight([c_out, c_in, k, k]), None, p).unwrap();
            proptest::prop_assert_eq!(conv.cost([batch, c_in, h, w]).unwrap(), c.standard.cost);
            let dw = crate::DepthwiseConv2d::new(weight([c_in, 1, k, k]), None, p).unwrap();
            let pw = crate::PointwiseConv2d::new(weight([c_out, c_in, 1, 1]), None).unwrap();
            let block = crate::DepthwiseSeparableConv2d::new(dw, pw).unwrap();
            proptest::prop_assert_eq!(block.cost([batch, c_in, h, w]).unwrap(), c.separable());
        }
    }
}
