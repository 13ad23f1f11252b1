//! The general 2-D convolution layer.

use crate::cost::Cost;
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::geometry::{Conv2dParams, ConvGeometry};
use crate::ops::{Activation, BatchNorm};
use crate::tensor::{Layout, Tensor};

/// A 2-D convolution with PyTorch's `conv2d` semantics, plus fused BatchNorm and activation:
///
/// `out[n, co, y, x] = act(bias[co] + Σ_{ci, i, j} in[n, g·Cin_g + ci, y·sH + i·dH − pad_top,
/// x·sW + j·dW − pad_left] · w[co, ci, i, j])`, `g = co / Cout_g`.
///
/// ```
/// use dsconv::{Conv2d, Conv2dParams, Padding, Tensor};
/// let weight = Tensor::from_nchw(vec![1.0; 2 * 3 * 3 * 3], [2, 3, 3, 3])?;
/// let conv = Conv2d::new(weight, None, Conv2dParams::default().with_padding(Padding::symmetric(1)))?;
/// let x = Tensor::from_nchw(vec![1.0; 3 * 4 * 4], [1, 3, 4, 4])?;
/// let y = conv.forward(&x)?;
/// assert_eq!(y.dims(), [1, 2, 4, 4]);
/// assert_eq!(y.at(0, 0, 1, 1), 27.0);
/// # Ok::<(), dsconv::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Conv2d {
    params: Conv2dParams,
    /// `[C_out, C_in/groups, kH, kW]`.
    weight_dims: [usize; 4],
    /// The weight in PyTorch order, after any BatchNorm folding.
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    activation: Activation,
    /// The weight packed for the direct NHWC path.
    packed: Vec<f32>,
}

impl Conv2d {
    /// Builds a convolution from a PyTorch-order weight `[C_out, C_in/groups, kH, kW]`
    /// (its `dims()`) and an optional bias of `C_out` elements.
    pub fn new(weight: Tensor, bias: Option<Vec<f32>>, params: Conv2dParams) -> Result<Self> {
        params.validate()?;
        let weight_dims = weight.dims();
        if weight_dims.contains(&0) {
            return Err(Error::shape(
                "conv2d weight",
                "all dimensions at least 1",
                format!("{weight_dims:?}"),
            ));
        }
        let [cout, ..] = weight_dims;
        if cout % params.groups != 0 {
            return Err(Error::param(
                "groups",
                format!(
                    "{} does not divide the {cout} output channels",
                    params.groups
                ),
            ));
        }
        if let Some(b) = &bias {
            if b.len() != cout {
                return Err(Error::shape(
                    "conv2d bias",
                    format!("{cout} elements (C_out)"),
                    format!("{} elements", b.len()),
                ));
            }
        }
        let weight = weight.into_data();
        let packed = crate::direct::pack_weights(&weight, weight_dims, params.groups);
        Ok(Conv2d {
            params,
            weight_dims,
            weight,
            bias,
            activation: Activation::None,
            packed,
        })
    }

    /// Folds an inference BatchNorm over the output channels into weight and bias.
    pub fn with_batchnorm(mut self, bn: &BatchNorm) -> Result<Self> {
        if bn.channels() != self.weight_dims[0] {
            return Err(Error::shape(
                "batchnorm",
                format!("{} channels (C_out)", self.weight_dims[0]),
                format!("{} channels", bn.channels()),
            ));
        }
        bn.fold_into(&mut self.weight, &mut self.bias)?;
        self.packed =
            crate::direct::pack_weights(&self.weight, self.weight_dims, self.params.groups);
        Ok(self)
    }

    /// Applies `activation` to every output (fused into the kernel's epilogue).
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// The convolution's hyper-parameters.
    pub fn params(&self) -> &Conv2dParams {
        &self.params
    }
    /// `[C_out, C_in/groups, kH, kW]`.
    pub fn weight_dims(&self) -> [usize; 4] {
        self.weight_dims
    }
    /// The weight in PyTorch order (after BatchNorm folding).
    pub fn weight(&self) -> &[f32] {
        &self.weight
    }
    /// The bias, if any (after BatchNorm folding).
    pub fn bias(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }
    /// The fused activation.
    pub fn activation(&self) -> Activation {
        self.activation
    }
    /// Input channels expected.
    pub fn in_channels(&self) -> usize {
        self.weight_dims[1] * self.params.groups
    }
    /// Output channels produced.
    pub fn out_channels(&self) -> usize {
        self.weight_dims[0]
    }

    /// The geometry for an input of logical dims `[N, C_in, H, W]`.
    pub fn geometry(&self, input: [usize; 4]) -> Result<ConvGeometry> {
        if input[1] != self.in_channels() {
            return Err(Error::shape(
                "conv2d input",
                format!(
                    "{} channels ({} groups × {} per group)",
                    self.in_channels(),
                    self.params.groups,
                    self.weight_dims[1]
                ),
                format!("{} channels in logical dims {input:?}", input[1]),
            ));
        }
        ConvGeometry::new(input, self.weight_dims, &self.params)
    }

    /// The cost of this layer on an input of logical dims `[N, C_in, H, W]`.
    pub fn cost(&self, input: [usize; 4]) -> Result<Cost> {
        Ok(Cost::conv(&self.geometry(input)?, self.bias.is_some()))
    }

    /// Forward pass on one thread; the output has the input's layout.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        self.forward_with(input, &Executor::single())
    }

    /// Forward pass using `exec`'s threads; the output has the input's layout and is
    /// bitwise identical for every thread count.
    pub fn forward_with(&self, input: &Tensor, exec: &Executor) -> Result<Tensor> {
        let g = self.geometry(input.logical_dims())?;
        let nhwc_in;
        let x = match input.layout() {
            Layout::Nhwc => input.data(),
            Layout::Nchw => {
                nhwc_in = input.to_layout(Layout::Nhwc);
                nhwc_in.data()
            }
        };
        // Sizes checked by the geometry; the allocation itself may still fail.
        let len = g.batch * g.out_h * g.out_w * g.out_channels;
        let mut out = crate::error::try_zeroed(len, "conv2d output")?;
        self.run_nhwc(&g, x, &mut out, exec);
        let y = Tensor::from_nhwc(out, [g.batch, g.out_h, g.out_w, g.out_channels])?;
        Ok(match input.layout() {
            Layout::Nhwc => y,
            Layout::Nchw => y.to_layout(Layout::Nchw),
        })
    }

    /// Runs on NHWC slices whose sizes match `g` (checked by the caller).
    pub(crate) fn run_nhwc(&self, g: &ConvGeometry, x: &[f32], out: &mut [f32], exec: &Executor) {
        crate::direct::conv2d_nhwc(
            g,
            x,
            &self.packed,
            self.bias.as_deref(),
            self.activation,
            out,
            exec,
        );
    }
}
