//! Squeeze-excitation (MobileNetV3, EfficientNet) as one block: the mean of each channel
//! over the pixels, a reducing fully connected layer and its activation, an expanding
//! one and the gate, then every pixel scaled by its channel's gate.

use crate::cost::Cost;
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::kernels::PackedGemm;
use crate::ops::Activation;
use crate::tensor::{Layout, Tensor};

/// `out[n, y, x, c] = in[n, y, x, c] · gate(b₂ + W₂ · act(b₁ + W₁ · mean_{y,x} in[n, ·, ·, ·]))[c]`
/// on NHWC tensors: torchvision's `SqueezeExcitation` (ReLU inside, hard-sigmoid gate in
/// MobileNetV3: give the gate as `Clamp {0, 1}` with the hard sigmoid's `x/6 + ½` folded
/// into `W₂` and `b₂`; SiLU inside and a sigmoid gate in EfficientNet).
///
/// The means are f32 sums in pixel order divided once (as
/// [`GlobalAvgPool`](crate::layers::GlobalAvgPool)), split over the threads by channels;
/// the two small layers are the packed GEMM (all images' rows at once, the activation and
/// the gate in its epilogue), split by columns; the scale is split by pixel rows. Every value
/// is computed by the same operations whatever the split: bitwise identical for every
/// thread count.
#[derive(Debug, Clone)]
pub struct SqueezeExcite {
    c: usize,
    r: usize,
    /// `[C → R]`: W₁ transposed, with b₁.
    reduce: PackedGemm,
    act: Activation,
    /// `[R → C]`: W₂ transposed, with b₂.
    expand: PackedGemm,
    gate: Activation,
}

impl SqueezeExcite {
    /// The block from the reducing 1×1 convolution's weight `[R, C, 1, 1]` (NCHW, PyTorch
    /// order) and bias, its activation, the expanding one's weight `[C, R, 1, 1]` and bias,
    /// and the gate (`Sigmoid`, or `Clamp {0, 1}` for a folded hard sigmoid).
    pub fn new(
        reduce: &Tensor,
        reduce_bias: Option<Vec<f32>>,
        act: Activation,
        expand: &Tensor,
        expand_bias: Option<Vec<f32>>,
        gate: Activation,
    ) -> Result<Self> {
        let [r, c, kh, kw] = reduce.logical_dims();
        let [c2, r2, kh2, kw2] = expand.logical_dims();
        if [kh, kw, kh2, kw2] != [1, 1, 1, 1] || c2 != c || r2 != r || c == 0 || r == 0 {
            return Err(Error::shape(
                "squeeze-excitation weights",
                "[R, C, 1, 1] and [C, R, 1, 1]".to_string(),
                format!(
                    "{:?} and {:?}",
                    reduce.logical_dims(),
                    expand.logical_dims()
                ),
            ));
        }
        for (name, b, n) in [("reduce", &reduce_bias, r), ("expand", &expand_bias, c)] {
            if b.as_ref().is_some_and(|b| b.len() != n) {
                return Err(Error::shape(
                    "squeeze-excitation bias",
                    format!("{n} values for the {name} layer"),
                    format!("{}", b.as_ref().map_or(0, Vec::len)),
                ));
            }
        }
        let w1 = reduce.to_layout(Layout::Nchw);
        let w2 = expand.to_layout(Layout::Nchw);
        let (w1, w2) = (w1.data(), w2.data());
        Ok(SqueezeExcite {
            c,
            r,
            reduce: PackedGemm::from_fn(c, r, reduce_bias.as_deref(), |i, j| w1[j * c + i])?,
            act,
            expand: PackedGemm::from_fn(r, c, expand_bias.as_deref(), |j, i| w2[i * r + j])?,
            gate,
        })
    }

    /// Channels C (in and out).
    pub fn channels(&self) -> usize {
        self.c
    }

    /// Channels of the squeezed vector R.
    pub fn squeezed(&self) -> usize {
        self.r
    }

    /// Multiply-accumulates of the two small layers per image (`2·C·R`).
    pub fn macs_per_image(&self) -> u64 {
        2 * self.c as u64 * self.r as u64
    }

    /// Cost for an input of logical dims `[N, C, H, W]`: the channel means, the two small
    /// layers (with their biases) and the scaling pass (the input read, the output written).
    pub fn cost(&self, input: [usize; 4]) -> Cost {
        let n = input[0];
        let mut cost = Cost::global_avg_pool(input);
        let bytes = cost.bytes_read;
        cost += Cost::linear(n, self.c, self.r, true);
        cost += Cost::linear(n, self.r, self.c, true);
        cost.bytes_read = cost.bytes_read.saturating_add(bytes);
        cost.bytes_written = cost.bytes_written.saturating_add(bytes);
        cost
    }

    /// The gates `[N][C]` of an NHWC input.
    pub fn gates(&self, input: &Tensor, exec: &Executor) -> Result<Vec<f32>> {
        let [n, c, h, w] = self.check(input)?;
        let hw = h * w;
        let x = input.data();
        // Sums as [C][N]: split by channels, each summed over the pixels in order.
        let mut sums = vec![0f32; c * n];
        let tasks = exec.tasks_for_pass(x.len()).min(c.div_ceil(16));
        // Each task sums its channels `c0..c0 + k` over the pixels in order, reading each
        // pixel's run of k channels once (one sequential pass over the image, vectorised
        // across the channels); every channel's sum is the same pixel-order sum for any split.
        exec.for_each_row_blocks(&mut sums, n, 16, tasks, |c0, chunk| {
            let k = chunk.len() / n;
            let mut acc = vec![0f32; k];
            for b in 0..n {
                let img = &x[b * hw * c..(b + 1) * hw * c];
                acc.fill(0.0);
                for px in img.chunks_exact(c) {
                    for (a, v) in acc.iter_mut().zip(&px[c0..c0 + k]) {
                        *a += v;
                    }
                }
                for (j, a) in acc.iter().enumerate() {
                    chunk[j * n + b] = *a;
                }
            }
        });
        let scale = hw as f32;
        let mut means = vec![0f32; n * c];
        for (b, m) in means.chunks_exact_mut(c).enumerate() {
            for (i, m) in m.iter_mut().enumerate() {
                *m = sums[i * n + b] / scale;
            }
        }
        // Each layer reads its whole weight for a few rows: bound by that read (0.9 MiB
        // at 960 ↔ 240, MobileNetV3-Large; from DRAM, as the network's weights do not
        // stay cached), so split by columns as soon as the weight is a pass worth
        // splitting, each thread reading its share.
        let tasks = exec
            .tasks_for_pass(c * self.r)
            .max(exec.tasks_for(self.macs_per_image() / 2 * n as u64));
        let r = self.r;
        let mut hidden = vec![0f32; n * r];
        self.reduce
            .run_parallel(exec, tasks, &means, c, n, &mut hidden, r, self.act)?;
        let mut gates = vec![0f32; n * c];
        self.expand
            .run_parallel(exec, tasks, &hidden, r, n, &mut gates, c, self.gate)?;
        Ok(gates)
    }

    /// The block on an NHWC input into an NHWC output of the same dims.
    pub fn forward_into(&self, input: &Tensor, out: &mut Tensor, exec: &Executor) -> Result<()> {
        let dims = self.check(input)?;
        if out.layout() != Layout::Nhwc || out.logical_dims() != dims {
            return Err(Error::shape(
                "squeeze-excitation output",
                format!("NHWC with logical dims {dims:?}"),
                format!(
                    "{} with logical dims {:?}",
                    out.layout().name(),
                    out.logical_dims()
                ),
            ));
        }
        let gates = self.gates(input, exec)?;
        self.scale(&gates, dims, Some(input.data()), out.data_mut(), exec);
        Ok(())
    }

    /// The block in place on an NHWC tensor: bitwise [`forward_into`](Self::forward_into).
    pub fn forward_in_place(&self, x: &mut Tensor, exec: &Executor) -> Result<()> {
        let dims = self.check(x)?;
        let gates = self.gates(x, exec)?;
        self.scale(&gates, dims, None, x.data_mut(), exec);
        Ok(())
    }

    /// `out[p, c] = src[p, c] · gates[image of p, c]` (`src` = `out` itself when `None`),
    /// split by pixel rows.
    fn scale(
        &self,
        gates: &[f32],
        [_, c, h, w]: [usize; 4],
        src: Option<&[f32]>,
        out: &mut [f32],
        exec: &Executor,
    ) {
        let hw = h * w;
        let tasks = exec.tasks_for_pass(out.len());
        exec.for_each_rows(out, c, tasks, |p0, chunk| {
            for (i, o) in chunk.chunks_exact_mut(c).enumerate() {
                let b = (p0 + i) / hw;
                let g = &gates[b * c..(b + 1) * c];
                match src {
                    Some(x) => {
                        let xi = &x[(p0 + i) * c..(p0 + i + 1) * c];
                        for ((o, &v), &g) in o.iter_mut().zip(xi).zip(g) {
                            *o = v * g;
                        }
                    }
                    None => {
                        for (o, &g) in o.iter_mut().zip(g) {
                            *o *= g;
                        }
                    }
                }
            }
        });
    }

    /// [`forward_into`](Self::forward_into) into a new tensor.
    pub fn forward_with(&self, input: &Tensor, exec: &Executor) -> Result<Tensor> {
        let mut out = Tensor::zeros(input.dims(), Layout::Nhwc)?;
        self.forward_into(input, &mut out, exec)?;
        Ok(out)
    }

    fn check(&self, input: &Tensor) -> Result<[usize; 4]> {
        let dims = input.logical_dims();
        if input.layout() != Layout::Nhwc || dims[1] != self.c || input.is_empty() {
            return Err(Error::shape(
                "squeeze-excitation input",
                format!("a non-empty NHWC tensor of {} channels", self.c),
                format!("{} with logical dims {dims:?}", input.layout().name()),
            ));
        }
        Ok(dims)
    }
}
