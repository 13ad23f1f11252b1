//! The classifier head of MobileNet/EfficientNet: global average pooling, then a fully
//! connected layer (run as a 1×1 convolution on the pooled `[N, C, 1, 1]` tensor).

use crate::cost::{Cost, LayerCost};
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::layers::PointwiseConv2d;
use crate::tensor::{Layout, Tensor};

/// `logits[n, k] = bias[k] + Σ_c w[k, c] · mean_{y, x} in[n, c, y, x]`.
#[derive(Debug, Clone)]
pub struct Classifier {
    fc: PointwiseConv2d,
}

impl Classifier {
    /// From a PyTorch `Linear` weight `[classes, features]` (row-major) and bias.
    pub fn new(weight: Vec<f32>, bias: Vec<f32>, classes: usize, features: usize) -> Result<Self> {
        let w = Tensor::from_nchw(weight, [classes, features, 1, 1])?;
        Ok(Classifier {
            fc: PointwiseConv2d::new(w, Some(bias))?,
        })
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.fc.out_channels()
    }
    /// Number of input features (channels).
    pub fn features(&self) -> usize {
        self.fc.in_channels()
    }

    /// Cost on an input of logical dims `[N, C, H, W]` (the pool's additions not counted).
    pub fn cost(&self, input: [usize; 4]) -> Result<Cost> {
        self.fc.cost([input[0], input[1], 1, 1])
    }

    /// Cost-table rows: the pool (named `pool`) and the linear layer `fc`, for an input of
    /// logical dims `[N, C, H, W]`.
    pub fn layer_costs(&self, pool: &str, fc: &str, input: [usize; 4]) -> [LayerCost; 2] {
        [
            LayerCost::global_avg_pool(pool, input),
            LayerCost::linear(fc, input[0], self.features(), self.classes(), true),
        ]
    }

    /// Pools and classifies; returns logits as an NCHW tensor `[N, classes, 1, 1]` (that is,
    /// `[N, classes]` row-major).
    pub fn forward_with(&self, input: &Tensor, exec: &Executor) -> Result<Tensor> {
        let pooled = global_avg_pool(input)?;
        let logits = self.fc.forward_with(&pooled, exec)?;
        Ok(logits.to_layout(Layout::Nchw))
    }
}

/// Mean over all pixels of each channel, summed in f64; output `[N, C, 1, 1]` in the
/// input's layout.
fn global_avg_pool(input: &Tensor) -> Result<Tensor> {
    let [n, c, h, w] = input.logical_dims();
    if input.is_empty() {
        return Err(Error::shape(
            "global average pool input",
            "all dimensions at least 1",
            format!("{:?}", input.logical_dims()),
        ));
    }
    let pixels = h * w;
    let mut sums = vec![0.0f64; n * c];
    let x = input.to_layout(Layout::Nhwc);
    for (image, s) in x
        .data()
        .chunks_exact(pixels * c)
        .zip(sums.chunks_exact_mut(c))
    {
        for px in image.chunks_exact(c) {
            for (acc, v) in s.iter_mut().zip(px) {
                *acc += *v as f64;
            }
        }
    }
    let out = sums.iter().map(|s| (s / pixels as f64) as f32).collect();
    Tensor::new(
        out,
        input.layout().dims_from_logical([n, c, 1, 1]),
        input.layout(),
    )
}
