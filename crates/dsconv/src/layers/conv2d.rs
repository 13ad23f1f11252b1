//! The general 2-D convolution layer.

use crate::cost::Cost;
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::geometry::PaddingMode;
use crate::geometry::{Conv2dParams, ConvGeometry};
use crate::kernels::{self, PackedDepthwise, PackedGemm};
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
    /// The weight packed for a fast kernel, when the layer's shape has one.
    fast: Fast,
}

/// Initial value of output buffers before a kernel fills them: NaN in debug builds, so a
/// kernel that leaves an element unwritten fails every test that compares values.
pub(crate) const UNWRITTEN: f32 = if cfg!(debug_assertions) {
    f32::NAN
} else {
    0.0
};

/// The fast kernel a layer's weights are packed for at construction.
#[derive(Debug, Clone)]
enum Fast {
    /// groups = 1: pointwise GEMM, or im2col + GEMM for k×k.
    Gemm(PackedGemm),
    /// groups = C_in = C_out (depthwise, multiplier 1).
    Depthwise(PackedDepthwise),
    /// Only the direct path.
    None,
}

impl Fast {
    fn pack(weight: &[f32], dims: [usize; 4], groups: usize, bias: Option<&[f32]>) -> Result<Self> {
        let [cout, cin_g, ..] = dims;
        Ok(if groups == 1 {
            Fast::Gemm(kernels::dense::pack(weight, dims, bias)?)
        } else if cin_g == 1 && cout == groups {
            Fast::Depthwise(PackedDepthwise::new(weight, dims, bias)?)
        } else {
            Fast::None
        })
    }
}

/// The weight packed for the direct loop, or nothing when no geometry of this layer can
/// reach it: a layer with a fast kernel and zero padding mode always takes the kernel
/// (saves a second copy of every weight, 17 MB for MobileNetV1).
fn direct_packing(
    weight: &[f32],
    dims: [usize; 4],
    params: &Conv2dParams,
    fast: &Fast,
) -> Vec<f32> {
    match fast {
        Fast::None => crate::direct::pack_weights(weight, dims, params.groups),
        _ if params.padding_mode != PaddingMode::Zeros => {
            crate::direct::pack_weights(weight, dims, params.groups)
        }
        _ => Vec::new(),
    }
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
        let fast = Fast::pack(&weight, weight_dims, params.groups, bias.as_deref())?;
        let packed = direct_packing(&weight, weight_dims, &params, &fast);
        Ok(Conv2d {
            params,
            weight_dims,
            weight,
            bias,
            activation: Activation::None,
            packed,
            fast,
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
        self.fast = Fast::pack(
            &self.weight,
            self.weight_dims,
            self.params.groups,
            self.bias.as_deref(),
        )?;
        self.packed = direct_packing(&self.weight, self.weight_dims, &self.params, &self.fast);
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
    /// [`Error::Overflow`] when a count does not fit `u64` (no tensor is built, so the
    /// input may be far larger than memory).
    pub fn cost(&self, input: [usize; 4]) -> Result<Cost> {
        Cost::conv(&self.geometry(input)?, self.bias.is_some()).checked("conv2d cost")
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
        let dims = [g.batch(), g.out_h(), g.out_w(), g.out_channels()];
        let mut y = Tensor::filled(dims, Layout::Nhwc, UNWRITTEN)?;
        self.run_nhwc(&g, x, y.data_mut(), exec)?;
        Ok(match input.layout() {
            Layout::Nhwc => y,
            Layout::Nchw => y.to_layout(Layout::Nchw),
        })
    }

    /// Forward pass of NHWC data the caller only lends (a NumPy array's buffer, a memory
    /// map): `input` holds logical dims `logical` (`[N, C_in, H, W]`) in NHWC order and is
    /// read in place, never copied. The output is a new NHWC tensor, bitwise equal to
    /// [`forward_with`](Self::forward_with) on the same values.
    ///
    /// ```
    /// use dsconv::{Conv2d, Conv2dParams, Executor, Tensor};
    /// let conv = Conv2d::new(Tensor::from_nchw(vec![1.0; 2 * 3], [2, 3, 1, 1])?, None,
    ///                        Conv2dParams::default())?;
    /// let pixels = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 pixels × 3 channels
    /// let y = conv.forward_nhwc_slice(&pixels, [1, 3, 1, 2], &Executor::single())?;
    /// assert_eq!(y.data(), [6.0, 6.0, 15.0, 15.0]);
    /// # Ok::<(), dsconv::Error>(())
    /// ```
    pub fn forward_nhwc_slice(
        &self,
        input: &[f32],
        logical: [usize; 4],
        exec: &Executor,
    ) -> Result<Tensor> {
        let g = self.geometry(logical)?;
        let expected = crate::error::product(&logical, "conv2d input size")?;
        if input.len() != expected {
            return Err(Error::shape(
                "conv2d input",
                format!("{expected} elements for logical dims {logical:?}"),
                format!("{} elements", input.len()),
            ));
        }
        let dims = [g.batch(), g.out_h(), g.out_w(), g.out_channels()];
        let mut y = Tensor::filled(dims, Layout::Nhwc, UNWRITTEN)?;
        self.run_nhwc(&g, input, y.data_mut(), exec)?;
        Ok(y)
    }

    /// Forward pass of an NHWC `input` into an NHWC `out` the caller owns (dims
    /// `[N, out_H, out_W, C_out]`), so steady-state calls allocate nothing for the output.
    pub fn forward_into(&self, input: &Tensor, out: &mut Tensor, exec: &Executor) -> Result<()> {
        let g = self.geometry(input.logical_dims())?;
        check_nhwc_pair(&g, input, out)?;
        self.run_nhwc(&g, input.data(), out.data_mut(), exec)
    }

    /// The gradients of this layer's convolution for an upstream gradient `grad_output`
    /// (`∂L/∂y`, the logical dims of `forward(input)`'s output, any layout): `∂L/∂x` in
    /// `input`'s layout, `∂L/∂w` of [`weight`](Self::weight) (after any BatchNorm folding)
    /// in PyTorch order, and `∂L/∂b` when the layer has a bias. Bitwise identical for
    /// every thread count of `exec`; see [`crate::grad`].
    ///
    /// This is the backward of the linear convolution: a layer with a fused activation is
    /// refused ([`Error::InvalidParam`]) rather than given a gradient that ignores it — run
    /// the activation's derivative on `grad_output` first and call `backward` on the layer
    /// without the activation.
    pub fn backward(
        &self,
        input: &Tensor,
        grad_output: &Tensor,
        exec: &Executor,
    ) -> Result<crate::grad::Conv2dGrads> {
        if self.activation != Activation::None {
            return Err(Error::param(
                "activation",
                format!(
                    "backward of a layer with a fused {:?} is not supported: apply the \
                     activation's derivative to grad_output and call backward on the \
                     layer without it",
                    self.activation
                ),
            ));
        }
        let g = self.geometry(input.logical_dims())?;
        crate::grad::check_grad_output(&g, grad_output)?;
        let x = input.as_nhwc();
        let dy = grad_output.as_nhwc();
        let mut dx = Tensor::zeros(Layout::Nhwc.dims_from_logical(g.input_dims()), Layout::Nhwc)?;
        crate::grad::input_nhwc(&g, &self.weight, dy.data(), dx.data_mut(), exec)?;
        let mut dw = Tensor::zeros(self.weight_dims, Layout::Nchw)?;
        crate::grad::weight_nhwc(&g, x.data(), dy.data(), dw.data_mut(), exec)?;
        let bias = match self.bias {
            Some(_) => Some(crate::grad::bias_nhwc(dy.data(), g.out_channels())?),
            None => None,
        };
        Ok(crate::grad::Conv2dGrads {
            input: crate::grad::in_layout(dx, input.layout()),
            weight: dw,
            bias,
        })
    }

    /// The packed depthwise kernel, when this layer runs on it for geometry `g`.
    pub(crate) fn depthwise_kernel(&self, g: &ConvGeometry) -> Option<&PackedDepthwise> {
        match &self.fast {
            Fast::Depthwise(p) if zero_padding(g) => Some(p),
            _ => None,
        }
    }

    /// The packed GEMM, when this layer is a pointwise GEMM for geometry `g`.
    pub(crate) fn pointwise_kernel(&self, g: &ConvGeometry) -> Option<&PackedGemm> {
        match &self.fast {
            Fast::Gemm(p) if g.is_pointwise() => Some(p),
            _ => None,
        }
    }

    /// Runs on NHWC slices whose sizes match `g` (checked by the caller): pointwise →
    /// GEMM, depthwise (multiplier 1, zero padding) → depthwise kernel, dense with zero
    /// padding → im2col + GEMM, anything else → the direct loop.
    pub(crate) fn run_nhwc(
        &self,
        g: &ConvGeometry,
        x: &[f32],
        out: &mut [f32],
        exec: &Executor,
    ) -> Result<()> {
        let isa = exec.tier();
        let act = self.activation;
        let tasks = exec.tasks_for(crate::cost::conv_macs(g));
        match &self.fast {
            Fast::Gemm(p) if g.is_pointwise() => {
                let (cin, cout) = (g.in_channels(), g.out_channels());
                let m = g.batch() * g.out_h() * g.out_w();
                p.run_parallel(exec, tasks, x, cin, m, out, cout, act)
            }
            Fast::Gemm(p) if zero_padding(g) => {
                let cout = g.out_channels();
                // Split in whole register tiles, not whole bands: with bands of 4,844
                // pixels the stem's 12,544 split 9,688 / 2,856 over two threads.
                let block = kernels::gemm::tile_rows(isa.isa());
                exec.try_for_each_row_blocks(out, cout, block, tasks, |first, chunk| {
                    let pixels = first..first + chunk.len() / cout;
                    kernels::with_scratch(0, |scratch| {
                        kernels::dense::conv_pixels(isa, g, p, x, pixels, chunk, act, scratch)
                    })
                })
            }
            Fast::Depthwise(p) if zero_padding(g) => {
                let row_len = g.out_w() * g.out_channels();
                exec.try_for_each_rows(out, row_len, tasks, |first, chunk| {
                    let rows = first..first + chunk.len() / row_len;
                    let (cin, cout) = (g.in_channels(), g.out_channels());
                    p.run_rows(isa, g, x, cin, rows, chunk, cout, act)
                })
            }
            _ => {
                crate::direct::conv2d_nhwc(
                    g,
                    x,
                    &self.packed,
                    self.bias.as_deref(),
                    self.activation,
                    out,
                    exec,
                );
                Ok(())
            }
        }
    }
}

/// Checks that `input` and `out` are NHWC with the dims of geometry `g`.
pub(crate) fn check_nhwc_pair(g: &ConvGeometry, input: &Tensor, out: &Tensor) -> Result<()> {
    if input.layout() != Layout::Nhwc || out.layout() != Layout::Nhwc {
        return Err(Error::shape(
            "forward_into tensors",
            "NHWC input and output",
            format!(
                "{} input, {} output",
                input.layout().name(),
                out.layout().name()
            ),
        ));
    }
    if out.logical_dims() != g.output_dims() {
        return Err(Error::shape(
            "forward_into output",
            format!("logical dims {:?}", g.output_dims()),
            format!("{:?}", out.logical_dims()),
        ));
    }
    Ok(())
}

/// True when the padded border reads as zeros (zero mode, or no padding at all).
fn zero_padding(g: &ConvGeometry) -> bool {
    g.padding_mode() == PaddingMode::Zeros
        || g.pad_top() + g.pad_bottom() + g.pad_left() + g.pad_right() == 0
}
