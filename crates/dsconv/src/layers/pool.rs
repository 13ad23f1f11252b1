//! Global average pooling: the mean over all pixels of each channel.

use crate::cost::Cost;
use crate::error::{Error, Result};
use crate::tensor::{Layout, NhwcView, Tensor};

/// `out[n, c, 0, 0] = (Σ_{y, x} in[n, c, y, x]) / (H·W)`, summed in f32 in row-major pixel
/// order, then divided once (as PyTorch's `adaptive_avg_pool2d(x, 1)` does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GlobalAvgPool;

impl GlobalAvgPool {
    /// Cost on an input of logical dims `[N, C, H, W]` (no MACs; see [`Cost::global_avg_pool`]).
    pub fn cost(&self, input: [usize; 4]) -> Cost {
        Cost::global_avg_pool(input)
    }

    /// Pools `input` to logical dims `[N, C, 1, 1]`, in the input's layout.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        let [n, c, h, w] = input.logical_dims();
        if input.is_empty() {
            return Err(Error::shape(
                "global average pool input",
                "all dimensions at least 1",
                format!("logical dims {:?}", input.logical_dims()),
            ));
        }
        let pixels = h * w;
        let out = match input.layout() {
            Layout::Nhwc => return self.forward_view(NhwcView::of(input)?),
            Layout::Nchw => {
                let mut out = vec![0.0f32; n * c];
                for (plane, s) in input.data().chunks_exact(pixels).zip(out.iter_mut()) {
                    *s = plane.iter().fold(0.0f32, |acc, v| acc + v);
                }
                out
            }
        };
        mean_tensor(out, [n, c], pixels, Layout::Nchw)
    }
}

impl GlobalAvgPool {
    /// [`forward`](Self::forward) on an NHWC activation whose pixels may lie further apart
    /// than C (a network's padded activations): an NHWC `[N, 1, 1, C]` tensor, the same
    /// sums in the same order.
    pub fn forward_view(&self, input: NhwcView) -> Result<Tensor> {
        let [n, c, h, w] = input.logical_dims();
        let (pixels, px) = (h * w, input.pixel_stride());
        let mut out = vec![0.0f32; n * c];
        for (image, sums) in input
            .data()
            .chunks_exact(pixels * px)
            .zip(out.chunks_exact_mut(c))
        {
            for p in image.chunks_exact(px) {
                for (s, v) in sums.iter_mut().zip(&p[..c]) {
                    *s += v;
                }
            }
        }
        mean_tensor(out, [n, c], pixels, Layout::Nhwc)
    }
}

/// `sums / pixels` as a `[N, C, 1, 1]` tensor in `layout` (with H = W = 1 both layouts
/// store `[N, C]` identically).
fn mean_tensor(
    mut sums: Vec<f32>,
    [n, c]: [usize; 2],
    pixels: usize,
    layout: Layout,
) -> Result<Tensor> {
    let scale = pixels as f32;
    for s in &mut sums {
        *s /= scale;
    }
    Tensor::new(sums, layout.dims_from_logical([n, c, 1, 1]), layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts_give_the_f64_mean() {
        let x = Tensor::from_fn([2, 5, 3, 4], Layout::Nchw, |n, c, y, x| {
            (n * 100 + c * 10 + y * 4 + x) as f32 * 0.37 - 3.0
        })
        .unwrap();
        for layout in [Layout::Nchw, Layout::Nhwc] {
            let y = GlobalAvgPool.forward(&x.to_layout(layout)).unwrap();
            assert_eq!(y.logical_dims(), [2, 5, 1, 1]);
            assert_eq!(y.layout(), layout);
            for n in 0..2 {
                for c in 0..5 {
                    let mut sum = 0.0f64;
                    for yy in 0..3 {
                        for xx in 0..4 {
                            sum += x.at(n, c, yy, xx) as f64;
                        }
                    }
                    let want = sum / 12.0;
                    assert!((y.at(n, c, 0, 0) as f64 - want).abs() < 1e-5, "{layout:?}");
                }
            }
        }
    }
}
