//! The slow, obvious oracle: a direct 2-D convolution accumulating in f64, written
//! straight from the definition. Every fast path is tested against it. It is the spec:
//!
//! `out[n, co, y, x] = bias[co] + Σ_{ci, i, j} in[n, g·Cin_g + ci, y·sH + i·dH − pad_top,
//! x·sW + j·dW − pad_left] · w[co, ci, i, j]`, with `g = co / Cout_g`, and an
//! out-of-range input coordinate mapped by the padding mode (zeros: the term is 0).

use crate::error::{Error, Result};
use crate::geometry::{Conv2dParams, ConvGeometry};
use crate::ops::{Activation, BatchNorm};
use crate::tensor::Tensor;

/// Reference convolution; the output has the input's layout. The weight tensor is read
/// in PyTorch order `[C_out, C_in/groups, kH, kW]` (its `dims()`), whatever its layout tag.
pub fn conv2d(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&[f32]>,
    params: &Conv2dParams,
) -> Result<Tensor> {
    let g = ConvGeometry::new(input.logical_dims(), weight.dims(), params)?;
    if let Some(b) = bias {
        if b.len() != g.out_channels() {
            return Err(Error::shape(
                "conv2d bias",
                format!("{} elements (C_out)", g.out_channels()),
                format!("{} elements", b.len()),
            ));
        }
    }
    let w = weight.data();
    let (cin_g, cout_g) = (g.in_channels_per_group(), g.out_channels_per_group());
    let (kh, kw) = (g.kernel_h(), g.kernel_w());
    Tensor::from_fn(g.output_dims(), input.layout(), |n, co, y, x| {
        let group = co / cout_g;
        let mut acc = bias.map_or(0.0, |b| b[co] as f64);
        for ci in 0..cin_g {
            for i in 0..kh {
                let Some(iy) = g.padding_mode().source_index(g.input_row(y, i), g.in_h()) else {
                    continue;
                };
                for j in 0..kw {
                    let Some(ix) = g.padding_mode().source_index(g.input_col(x, j), g.in_w())
                    else {
                        continue;
                    };
                    let v = input.at(n, group * cin_g + ci, iy, ix) as f64;
                    let k = w[((co * cin_g + ci) * kh + i) * kw + j] as f64;
                    acc += v * k;
                }
            }
        }
        acc as f32
    })
}

/// Applies inference BatchNorm (per channel) and then an activation, in f64, in place.
/// NaN and ±Inf follow PyTorch ([`Activation::apply_f64`]): a NaN stays NaN through every
/// activation, ReLU(−Inf) = 0, ReLU6(+Inf) = 6, hard-swish(−Inf) = NaN.
pub fn batchnorm_activation(t: &mut Tensor, bn: Option<&BatchNorm>, act: Activation) {
    let [nn, cc, hh, ww] = t.logical_dims();
    for n in 0..nn {
        for c in 0..cc {
            for h in 0..hh {
                for w in 0..ww {
                    let o = t.offset(n, c, h, w);
                    let mut v = t.data()[o] as f64;
                    if let Some(bn) = bn {
                        v = bn.apply_f64(c, v);
                    }
                    t.data_mut()[o] = act.apply_f64(v) as f32;
                }
            }
        }
    }
}
