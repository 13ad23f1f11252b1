//! Portable direct convolution in NHWC, in safe Rust: the general path that handles
//! every geometry (any groups, stride, dilation, padding side and mode). Fast kernels in
//! `kernels/` take the common shapes; this takes the rest.
//!
//! `out[n, y, x, g·Cout_g + co] = bias + Σ_{i, j, ci} in[n, iy(y, i), ix(x, j), g·Cin_g + ci]
//! · packed[g, i, j, ci, co]`, accumulated in f32 in the order i, j, ci for every output.

use crate::exec::Executor;
use crate::geometry::ConvGeometry;
use crate::ops::Activation;

/// Packs a PyTorch weight `[C_out, C_in/g, kH, kW]` into `[g, kH, kW, C_in/g, C_out/g]`,
/// so the innermost loop runs over contiguous output channels.
pub fn pack_weights(weight: &[f32], dims: [usize; 4], groups: usize) -> Vec<f32> {
    let [cout, cin_g, kh, kw] = dims;
    let cout_g = cout / groups;
    let mut packed = vec![0.0f32; weight.len()];
    for co in 0..cout {
        let (g, co_g) = (co / cout_g, co % cout_g);
        for ci in 0..cin_g {
            for i in 0..kh {
                for j in 0..kw {
                    let src = ((co * cin_g + ci) * kh + i) * kw + j;
                    let dst = ((((g * kh + i) * kw + j) * cin_g + ci) * cout_g) + co_g;
                    packed[dst] = weight[src];
                }
            }
        }
    }
    packed
}

/// Direct convolution of an NHWC input into an NHWC output (`out` fully overwritten).
/// Splits output rows across `exec`'s threads.
pub fn conv2d_nhwc(
    g: &ConvGeometry,
    input: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    out: &mut [f32],
    exec: &Executor,
) {
    let row_len = g.out_w() * g.out_channels();
    debug_assert_eq!(out.len(), g.batch() * g.out_h() * row_len);
    debug_assert_eq!(
        input.len(),
        g.batch() * g.in_h() * g.in_w() * g.in_channels()
    );
    let macs = crate::cost::conv_macs(g);
    exec.for_each_rows(out, row_len, exec.tasks_for(macs), |first_row, chunk| {
        for (r, out_row) in chunk.chunks_exact_mut(row_len).enumerate() {
            let row = first_row + r;
            let (n, oy) = (row / g.out_h(), row % g.out_h());
            conv_row(g, input, packed, bias, activation, n, oy, out_row);
        }
    });
}

fn conv_row(
    g: &ConvGeometry,
    input: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    n: usize,
    oy: usize,
    out_row: &mut [f32],
) {
    let (cin, cout) = (g.in_channels(), g.out_channels());
    let (cin_g, cout_g) = (g.in_channels_per_group(), g.out_channels_per_group());
    let image = &input[n * g.in_h() * g.in_w() * cin..(n + 1) * g.in_h() * g.in_w() * cin];
    for (ox, out_px) in out_row.chunks_exact_mut(cout).enumerate() {
        match bias {
            Some(b) => out_px.copy_from_slice(b),
            None => out_px.fill(0.0),
        }
        for i in 0..g.kernel_h() {
            let Some(iy) = g.padding_mode().source_index(g.input_row(oy, i), g.in_h()) else {
                continue;
            };
            for j in 0..g.kernel_w() {
                let Some(ix) = g.padding_mode().source_index(g.input_col(ox, j), g.in_w()) else {
                    continue;
                };
                let px = &image[(iy * g.in_w() + ix) * cin..(iy * g.in_w() + ix + 1) * cin];
                for grp in 0..g.groups() {
                    let acc = &mut out_px[grp * cout_g..(grp + 1) * cout_g];
                    let taps = &packed
                        [((grp * g.kernel_h() + i) * g.kernel_w() + j) * cin_g * cout_g..]
                        [..cin_g * cout_g];
                    for (ci, w_row) in taps.chunks_exact(cout_g).enumerate() {
                        let x = px[grp * cin_g + ci];
                        for (a, w) in acc.iter_mut().zip(w_row) {
                            *a += x * w;
                        }
                    }
                }
            }
        }
        if activation != Activation::None {
            for v in out_px.iter_mut() {
                *v = activation.apply(*v);
            }
        }
    }
}
