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

/// Reference gradients of `y = conv2d(input, weight, bias, params)` for an upstream
/// gradient `grad_output` (same logical dims as `y`), from the definition, in f64:
///
/// `dx[n, g·Cin_g + ci, src(iy), src(ix)] += dy[n, co, y, x] · w[co, ci, i, j]`,
/// `dw[co, ci, i, j] += dy[n, co, y, x] · x[n, g·Cin_g + ci, src(iy), src(ix)]`,
/// `db[co] = Σ_{n, y, x} dy[n, co, y, x]`,
///
/// summed over every term of the forward's sum, where `iy = y·sH + i·dH − pad_top` (and
/// `ix` likewise) and `src` is the padding mode's mapping: a term that reads a zero of the
/// padding contributes nothing, a term that reads a reflected, replicated or wrapped copy
/// sends its gradient to the input pixel it copied — what PyTorch's autograd through
/// `F.pad(mode=…)` followed by an unpadded `conv2d` computes. The input gradient has the
/// input's layout, the weight gradient is `[C_out, C_in/groups, kH, kW]` (NCHW tag), the
/// bias gradient is always computed (`Some`).
pub fn conv2d_backward(
    input: &Tensor,
    weight: &Tensor,
    grad_output: &Tensor,
    params: &Conv2dParams,
) -> Result<crate::grad::Conv2dGrads> {
    let g = ConvGeometry::new(input.logical_dims(), weight.dims(), params)?;
    crate::grad::check_grad_output(&g, grad_output)?;
    let x = logical_f64(input);
    let dy = logical_f64(grad_output);
    let w: Vec<f64> = weight.data().iter().map(|&v| v as f64).collect();
    let (dx, dw, db) = conv2d_backward_f64(&g, &x, &w, &dy);
    let [_, c, h, wd] = g.input_dims();
    let input_grad = Tensor::from_fn(g.input_dims(), input.layout(), |n, ci, y, xx| {
        dx[((n * c + ci) * h + y) * wd + xx] as f32
    })?;
    let weight_grad = Tensor::from_nchw(dw.iter().map(|&v| v as f32).collect(), g.weight_dims())?;
    Ok(crate::grad::Conv2dGrads {
        input: input_grad,
        weight: weight_grad,
        bias: Some(db.iter().map(|&v| v as f32).collect()),
    })
}

/// The elements of `t` in logical `[N, C, H, W]` order, as f64.
fn logical_f64(t: &Tensor) -> Vec<f64> {
    let [nn, cc, hh, ww] = t.logical_dims();
    let mut out = Vec::with_capacity(t.len());
    for n in 0..nn {
        for c in 0..cc {
            for h in 0..hh {
                for w in 0..ww {
                    out.push(t.at(n, c, h, w) as f64);
                }
            }
        }
    }
    out
}

/// Calls `term(y, x, w)` for every product `x[x] · w[w]` summed into output `y[y]` by the
/// forward definition (indices into logical NCHW input and output and the PyTorch-order
/// weight), a padded coordinate already mapped to its source pixel (zeros: no term).
fn for_each_term(g: &ConvGeometry, mut term: impl FnMut(usize, usize, usize)) {
    let [nn, cin, in_h, in_w] = g.input_dims();
    let [_, cout, out_h, out_w] = g.output_dims();
    let (cin_g, cout_g) = (g.in_channels_per_group(), g.out_channels_per_group());
    let (kh, kw) = (g.kernel_h(), g.kernel_w());
    let mode = g.padding_mode();
    for n in 0..nn {
        for co in 0..cout {
            let group = co / cout_g;
            for y in 0..out_h {
                for x in 0..out_w {
                    let yi = ((n * cout + co) * out_h + y) * out_w + x;
                    for ci in 0..cin_g {
                        let c = group * cin_g + ci;
                        for i in 0..kh {
                            let Some(iy) = mode.source_index(g.input_row(y, i), in_h) else {
                                continue;
                            };
                            for j in 0..kw {
                                let Some(ix) = mode.source_index(g.input_col(x, j), in_w) else {
                                    continue;
                                };
                                let xi = ((n * cin + c) * in_h + iy) * in_w + ix;
                                let wi = ((co * cin_g + ci) * kh + i) * kw + j;
                                term(yi, xi, wi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The forward in f64 on logical NCHW slices (sizes those of `g`), each output started at
/// its bias and summed in [`conv2d`]'s order: for the gradient checks, where f32 outputs
/// would drown a finite difference in rounding.
#[cfg(test)]
pub(crate) fn conv2d_f64(g: &ConvGeometry, x: &[f64], w: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    let [nn, cout, out_h, out_w] = g.output_dims();
    let mut y = vec![0.0f64; nn * cout * out_h * out_w];
    if let Some(b) = bias {
        for (k, v) in y.iter_mut().enumerate() {
            *v = b[k / (out_h * out_w) % cout];
        }
    }
    for_each_term(g, |yi, xi, wi| y[yi] += x[xi] * w[wi]);
    y
}

/// The gradients `(dx, dw, db)` of [`conv2d_backward`] on logical NCHW f64 slices: every
/// term `y += x·w` of the forward sends `dy·w` to `x` and `dy·x` to `w`.
pub(crate) fn conv2d_backward_f64(
    g: &ConvGeometry,
    x: &[f64],
    w: &[f64],
    dy: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0f64; x.len()];
    let mut dw = vec![0.0f64; w.len()];
    for_each_term(g, |yi, xi, wi| {
        dx[xi] += dy[yi] * w[wi];
        dw[wi] += dy[yi] * x[xi];
    });
    let [_, cout, out_h, out_w] = g.output_dims();
    let mut db = vec![0.0f64; cout];
    for (k, v) in dy.iter().enumerate() {
        db[k / (out_h * out_w) % cout] += v;
    }
    (dx, dw, db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Padding, PaddingMode};
    use crate::rng::SplitMix64;

    fn random(rng: &mut SplitMix64, n: usize) -> Vec<f64> {
        rng.vec(n, -1.0, 1.0).into_iter().map(f64::from).collect()
    }

    /// `L = Σ dy · conv2d(x, w, b)` in f64.
    fn loss(g: &ConvGeometry, x: &[f64], w: &[f64], b: &[f64], dy: &[f64]) -> f64 {
        let y = conv2d_f64(g, x, w, Some(b));
        y.iter().zip(dy).map(|(a, d)| a * d).sum()
    }

    /// Largest `|fd − analytic|` over the largest `|analytic|`, every coordinate of `v`
    /// perturbed by ±h in turn (central differences).
    fn fd_error(analytic: &[f64], v: &mut [f64], h: f64, l: impl Fn(&[f64]) -> f64) -> f64 {
        let scale = analytic
            .iter()
            .fold(0.0f64, |m, a| m.max(a.abs()))
            .max(1e-300);
        let mut worst = 0.0f64;
        for k in 0..v.len() {
            let keep = v[k];
            v[k] = keep + h;
            let plus = l(v);
            v[k] = keep - h;
            let minus = l(v);
            v[k] = keep;
            worst = worst.max(((plus - minus) / (2.0 * h) - analytic[k]).abs());
        }
        worst / scale
    }

    /// The reference gradients against central finite differences of the f64 forward,
    /// for every kind of grouping, stride, dilation, padding form and mode.
    #[test]
    fn backward_matches_finite_differences() {
        let mut rng = SplitMix64::new(12);
        let paddings = [
            Padding::Valid,
            Padding::Same,
            Padding::symmetric(1),
            Padding::asymmetric(2, 0, 1, 2),
        ];
        let modes = [
            PaddingMode::Zeros,
            PaddingMode::Reflect,
            PaddingMode::Replicate,
            PaddingMode::Circular,
        ];
        // (C_in, C_out, groups): standard, grouped, depthwise, depthwise × 2.
        let groupings = [(3, 2, 1), (4, 6, 2), (3, 3, 3), (2, 4, 2)];
        let mut checked = 0;
        let mut worst = 0.0f64;
        for (case, &(cin, cout, groups)) in groupings.iter().cycle().take(32).enumerate() {
            let padding = paddings[case % 4];
            let mode = modes[(case / 4) % 4];
            let stride = [1 + case % 2, 1 + (case / 2) % 3];
            let dilation = [1 + (case / 3) % 2, 1 + (case / 5) % 2];
            let params = Conv2dParams {
                stride,
                dilation,
                padding,
                padding_mode: mode,
                groups,
            };
            let kernel = [2 + case % 2, 3 - case % 2];
            let input = [2, cin, 5 + case % 3, 6];
            let wdims = [cout, cin / groups, kernel[0], kernel[1]];
            let g = ConvGeometry::new(input, wdims, &params).unwrap();
            let mut x = random(&mut rng, input.iter().product());
            let mut w = random(&mut rng, wdims.iter().product());
            let mut b = random(&mut rng, cout);
            let dy = random(&mut rng, g.output_dims().iter().product());
            let (dx, dw, db) = conv2d_backward_f64(&g, &x, &w, &dy);
            let h = 1e-3;
            let (w0, b0) = (w.clone(), b.clone());
            let ex = fd_error(&dx, &mut x, h, |x| loss(&g, x, &w0, &b0, &dy));
            let x0 = x.clone();
            let ew = fd_error(&dw, &mut w, h, |w| loss(&g, &x0, w, &b0, &dy));
            let eb = fd_error(&db, &mut b, h, |b| loss(&g, &x0, &w0, b, &dy));
            for (what, e) in [("input", ex), ("weight", ew), ("bias", eb)] {
                assert!(
                    e < 1e-7,
                    "case {case} {params:?}: {what} relative error {e:e}"
                );
                worst = worst.max(e);
            }
            checked += 1;
        }
        assert_eq!(checked, 32);
        eprintln!("finite differences: worst relative error {worst:e}");
    }

    /// The f64 forward the finite differences use is the oracle's, bit for bit.
    #[test]
    fn f64_forward_is_the_reference_forward() {
        let mut rng = SplitMix64::new(5);
        let params = Conv2dParams::default()
            .with_stride(2)
            .with_padding(Padding::asymmetric(1, 2, 2, 0))
            .with_padding_mode(PaddingMode::Reflect)
            .with_groups(2);
        let x = Tensor::from_nchw(rng.vec(2 * 4 * 7 * 6, -1.0, 1.0), [2, 4, 7, 6]).unwrap();
        let w = Tensor::from_nchw(rng.vec(6 * 2 * 3 * 3, -1.0, 1.0), [6, 2, 3, 3]).unwrap();
        let b = rng.vec(6, -1.0, 1.0);
        let y = conv2d(&x, &w, Some(&b), &params).unwrap();
        let g = ConvGeometry::new(x.dims(), w.dims(), &params).unwrap();
        let to64 = |v: &[f32]| v.iter().map(|&v| v as f64).collect::<Vec<_>>();
        let y64 = conv2d_f64(&g, &to64(x.data()), &to64(w.data()), Some(&to64(&b)));
        let y32: Vec<f32> = y64.iter().map(|&v| v as f32).collect();
        assert_eq!(y.data(), &y32[..]);
    }

    /// Hand-computed gradients of a 1×3 all-ones kernel over `[a b c]` with an all-ones
    /// upstream gradient, as PyTorch's autograd through `F.pad` gives them.
    #[test]
    fn padding_mode_gradients_by_hand() {
        let x = Tensor::from_nchw(vec![1.0, 2.0, 3.0], [1, 1, 1, 3]).unwrap();
        let cases = [
            // reflect 1: [b a b c b] → outputs (b a b), (a b c), (b c b).
            (PaddingMode::Reflect, 1, [1, 1, 3], vec![2.0, 5.0, 2.0]),
            // replicate 2, 1×1 kernel: [a a a b c c c] → 7 outputs.
            (PaddingMode::Replicate, 2, [1, 1, 1], vec![3.0, 1.0, 3.0]),
            // circular 1: [c a b c a] → (c a b), (a b c), (b c a).
            (PaddingMode::Circular, 1, [1, 1, 3], vec![3.0, 3.0, 3.0]),
            // zeros 1: [0 a b c 0] → (0 a b), (a b c), (b c 0).
            (PaddingMode::Zeros, 1, [1, 1, 3], vec![2.0, 3.0, 2.0]),
        ];
        for (mode, pad, [co, kh, kw], want) in cases {
            let params = Conv2dParams::default()
                .with_padding(Padding::asymmetric(0, 0, pad, pad))
                .with_padding_mode(mode);
            let w = Tensor::from_nchw(vec![1.0; kw], [co, 1, kh, kw]).unwrap();
            let g = ConvGeometry::new(x.dims(), w.dims(), &params).unwrap();
            let dy = Tensor::from_nchw(vec![1.0; g.out_w()], g.output_dims()).unwrap();
            let grads = conv2d_backward(&x, &w, &dy, &params).unwrap();
            assert_eq!(grads.input.data(), &want[..], "{mode:?}");
            assert_eq!(grads.bias.unwrap(), vec![g.out_w() as f32]);
            // The weight gradient: each tap sums the padded values it read.
            let padded_sum = |j: usize| -> f32 {
                (0..g.out_w())
                    .filter_map(|ox| mode.source_index(g.input_col(ox, j), 3))
                    .map(|ix| x.data()[ix])
                    .sum()
            };
            let want_w: Vec<f32> = (0..kw).map(padded_sum).collect();
            assert_eq!(grads.weight.data(), &want_w[..], "{mode:?} weight");
        }
        // Reflect by hand: taps read (b a b), (a b c), (b c b) = (2 1 2), (1 2 3), (2 3 2).
        let params = Conv2dParams::default()
            .with_padding(Padding::asymmetric(0, 0, 1, 1))
            .with_padding_mode(PaddingMode::Reflect);
        let w = Tensor::from_nchw(vec![1.0; 3], [1, 1, 1, 3]).unwrap();
        let dy = Tensor::from_nchw(vec![1.0; 3], [1, 1, 1, 3]).unwrap();
        let grads = conv2d_backward(&x, &w, &dy, &params).unwrap();
        assert_eq!(grads.weight.data(), &[5.0, 6.0, 7.0]);
    }

    #[test]
    fn backward_rejects_a_grad_output_of_the_wrong_shape() {
        let x = Tensor::from_nchw(vec![0.0; 2 * 5 * 5], [1, 2, 5, 5]).unwrap();
        let w = Tensor::from_nchw(vec![0.0; 3 * 2 * 9], [3, 2, 3, 3]).unwrap();
        let dy = Tensor::from_nchw(vec![0.0; 3 * 5 * 5], [1, 3, 5, 5]).unwrap();
        let e = conv2d_backward(&x, &w, &dy, &Conv2dParams::default()).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Shape {
                    what: "conv2d grad_output",
                    ..
                }
            ),
            "{e}"
        );
    }
}
