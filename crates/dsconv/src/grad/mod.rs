//! Gradients of the 2-D convolution, for training: the input, weight and bias gradients
//! of `y = conv2d(x, w, b)` for an upstream gradient `dy = ∂L/∂y`, with the semantics of
//! `torch.nn.grad.conv2d_input` / `conv2d_weight` and of PyTorch's autograd through every
//! configuration the forward accepts (stride, dilation, groups, depth multiplier, every
//! padding form and mode: the gradient reaching a reflected, replicated or wrapped copy
//! accumulates into the pixel it copied).
//!
//! ```
//! use dsconv::{grad, Conv2dParams, Executor, Layout, Padding, Tensor};
//! let params = Conv2dParams::default().with_padding(Padding::symmetric(1));
//! let w = Tensor::from_nchw(vec![1.0; 2 * 3 * 3 * 3], [2, 3, 3, 3])?;
//! let x = Tensor::from_nchw(vec![1.0; 3 * 4 * 4], [1, 3, 4, 4])?;
//! let dy = Tensor::from_nchw(vec![1.0; 2 * 4 * 4], [1, 2, 4, 4])?;
//! let exec = Executor::single();
//! let dx = grad::conv2d_input(x.logical_dims(), &w, &dy, &params, Layout::Nchw, &exec)?;
//! assert_eq!(dx.at(0, 0, 1, 1), 18.0); // an interior pixel: 9 taps × 2 filters
//! let dw = grad::conv2d_weight(&x, w.dims(), &dy, &params, &exec)?;
//! assert_eq!(dw.at(0, 0, 1, 1), 16.0); // the centre tap sees all 16 pixels
//! assert_eq!(grad::conv2d_bias(&dy)?, vec![16.0, 16.0]);
//! # Ok::<(), dsconv::Error>(())
//! ```
//!
//! # Determinism
//! Every gradient is bitwise identical for every thread count: the input gradient is split
//! by input rows (each element summed by one thread, in a fixed order of taps and output
//! channels), the weight gradient by output channels (each element summed over the batch
//! and the output pixels in a fixed order, image row by image row), the bias gradient on
//! one thread. Nothing is reduced across threads.
//!
//! # Accuracy
//! The weight gradient sums `N·out_H·out_W` products: each output row's sum is formed
//! alone and then added to the total (blocked summation), so the rounding error grows with
//! `out_W + N·out_H` terms, not their product; the bias gradient sums in f64.
//!
//! The reference these are tested against is
//! [`reference::conv2d_backward`](crate::reference::conv2d_backward).

mod conv;

pub(crate) use conv::{bias_nhwc, input_nhwc, weight_nhwc};

use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::geometry::{Conv2dParams, ConvGeometry};
use crate::tensor::{Layout, Tensor};

/// The gradients of one convolution: what [`Conv2d::backward`](crate::Conv2d::backward)
/// and [`reference::conv2d_backward`](crate::reference::conv2d_backward) return.
#[derive(Debug, Clone)]
pub struct Conv2dGrads {
    /// `∂L/∂x`, the input's logical dims, in the input's layout.
    pub input: Tensor,
    /// `∂L/∂w`, `[C_out, C_in/groups, kH, kW]` (PyTorch order, NCHW tag).
    pub weight: Tensor,
    /// `∂L/∂b` (`C_out` elements), when the convolution has a bias.
    pub bias: Option<Vec<f32>>,
}

/// Checks that `grad_output` has the logical dims of the forward's output under `g`.
pub(crate) fn check_grad_output(g: &ConvGeometry, grad_output: &Tensor) -> Result<()> {
    if grad_output.logical_dims() != g.output_dims() {
        return Err(Error::shape(
            "conv2d grad_output",
            format!("logical dims {:?} (the forward's output)", g.output_dims()),
            format!("{:?}", grad_output.logical_dims()),
        ));
    }
    Ok(())
}

/// The gradient of a convolution's input (`torch.nn.grad.conv2d_input`): for an input of
/// logical dims `input_dims` (`[N, C_in, H, W]`), a PyTorch-order `weight` (its `dims()`,
/// whatever its layout tag) and `grad_output` of the forward output's logical dims (any
/// layout), `∂L/∂x` in `layout`. Bitwise identical for every thread count of `exec`.
pub fn conv2d_input(
    input_dims: [usize; 4],
    weight: &Tensor,
    grad_output: &Tensor,
    params: &Conv2dParams,
    layout: Layout,
    exec: &Executor,
) -> Result<Tensor> {
    let g = ConvGeometry::new(input_dims, weight.dims(), params)?;
    check_grad_output(&g, grad_output)?;
    let dy = grad_output.as_nhwc();
    let mut dx = Tensor::zeros(Layout::Nhwc.dims_from_logical(input_dims), Layout::Nhwc)?;
    input_nhwc(&g, weight.data(), dy.data(), dx.data_mut(), exec)?;
    Ok(in_layout(dx, layout))
}

/// The gradient of a convolution's weight (`torch.nn.grad.conv2d_weight`): for `input`
/// (any layout), a weight of dims `weight_dims` (`[C_out, C_in/groups, kH, kW]`) and
/// `grad_output` of the forward output's logical dims, `∂L/∂w` in PyTorch order (NCHW
/// tag). Bitwise identical for every thread count of `exec`.
pub fn conv2d_weight(
    input: &Tensor,
    weight_dims: [usize; 4],
    grad_output: &Tensor,
    params: &Conv2dParams,
    exec: &Executor,
) -> Result<Tensor> {
    let g = ConvGeometry::new(input.logical_dims(), weight_dims, params)?;
    check_grad_output(&g, grad_output)?;
    let x = input.as_nhwc();
    let dy = grad_output.as_nhwc();
    let mut dw = Tensor::zeros(weight_dims, Layout::Nchw)?;
    weight_nhwc(&g, x.data(), dy.data(), dw.data_mut(), exec)?;
    Ok(dw)
}

/// The gradient of a convolution's bias: `∂L/∂b[c] = Σ_{n, y, x} grad_output[n, c, y, x]`
/// (any layout), summed in f64 and rounded once.
pub fn conv2d_bias(grad_output: &Tensor) -> Result<Vec<f32>> {
    let dy = grad_output.as_nhwc();
    bias_nhwc(dy.data(), grad_output.logical_dims()[1])
}

/// The input gradient of the convolution `g` into a caller's buffer, NHWC throughout:
/// `weight` in PyTorch order (`g.weight_dims()`), `grad_output` NHWC
/// (`[N, out_H, out_W, C_out]`), `grad_input` NHWC (`[N, H, W, C_in]`, every element
/// overwritten: no need to zero it). The fast entry for training layers that keep NHWC
/// activations and reuse their gradient buffers; bitwise the same as [`conv2d_input`].
/// Wrong slice lengths are an [`Error::Shape`].
pub fn conv2d_input_nhwc_into(
    g: &ConvGeometry,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    exec: &Executor,
) -> Result<()> {
    input_nhwc(g, weight, grad_output, grad_input, exec)
}

/// The weight gradient of the convolution `g` into a caller's buffer: `input` and
/// `grad_output` NHWC, `grad_weight` in PyTorch order (`g.weight_dims()`, every element
/// overwritten). Bitwise the same as [`conv2d_weight`]. Wrong slice lengths are an
/// [`Error::Shape`].
pub fn conv2d_weight_nhwc_into(
    g: &ConvGeometry,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
    exec: &Executor,
) -> Result<()> {
    weight_nhwc(g, input, grad_output, grad_weight, exec)
}

/// `t` (NHWC) in `layout`, without a copy when it already is.
pub(crate) fn in_layout(t: Tensor, layout: Layout) -> Tensor {
    match layout {
        Layout::Nhwc => t,
        Layout::Nchw => t.to_layout(Layout::Nchw),
    }
}
