//! MobileNetV1 (Howard et al., 2017) as data: the layer list for a width multiplier α and
//! an input resolution, from which the cost model and the runnable network are built.
//!
//! Body (Table 1 of the paper): a standard 3×3 stride-2 convolution to 32 channels, then
//! thirteen depthwise separable blocks (depthwise 3×3 + BatchNorm + ReLU, pointwise 1×1 +
//! BatchNorm + ReLU), global average pooling and a 1024 → 1000 fully connected layer.
//! Channel counts scale with α (`floor(c·α)`); every 3×3 convolution pads by 1.

use crate::error::{Error, Result};

/// Output channels and stride of the thirteen depthwise separable blocks at α = 1.
pub const BLOCKS: [(usize, usize); 13] = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
];

/// Output channels of the first (standard) convolution at α = 1.
pub const STEM_CHANNELS: usize = 32;
/// ImageNet classes.
pub const CLASSES: usize = 1000;

/// One convolutional stage of MobileNetV1 at a given α and resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    /// `true` for the stem (a standard 3×3 convolution), `false` for a separable block.
    pub is_stem: bool,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels (of the pointwise, for a block).
    pub out_channels: usize,
    /// Stride of the 3×3 convolution (stem or depthwise).
    pub stride: usize,
    /// Input height = width.
    pub in_size: usize,
    /// Output height = width (`ceil(in / stride)` with padding 1).
    pub out_size: usize,
}

/// Scales a channel count by α the way the paper does (`floor(c·α)`, at least 1).
pub fn scale_channels(channels: usize, alpha: f64) -> usize {
    ((channels as f64 * alpha).floor() as usize).max(1)
}

/// Checks α ∈ (0, 4] and a resolution in [32, 4096].
pub fn validate(alpha: f64, resolution: usize) -> Result<()> {
    if !(alpha > 0.0 && alpha <= 4.0) {
        return Err(Error::param(
            "width multiplier",
            format!("{alpha} is not in (0, 4]"),
        ));
    }
    if !(32..=4096).contains(&resolution) {
        return Err(Error::param(
            "resolution",
            format!("{resolution} is not in [32, 4096]"),
        ));
    }
    Ok(())
}

/// The fourteen convolutional stages (stem + 13 blocks) for width α and input resolution.
pub fn stages(alpha: f64, resolution: usize) -> Result<Vec<Stage>> {
    validate(alpha, resolution)?;
    let out_of = |size: usize, stride: usize| (size + 2 - 3) / stride + 1;
    let mut stages = Vec::with_capacity(14);
    let stem_out = scale_channels(STEM_CHANNELS, alpha);
    let mut size = out_of(resolution, 2);
    stages.push(Stage {
        is_stem: true,
        in_channels: 3,
        out_channels: stem_out,
        stride: 2,
        in_size: resolution,
        out_size: size,
    });
    let mut channels = stem_out;
    for (c, stride) in BLOCKS {
        let out = scale_channels(c, alpha);
        let next = out_of(size, stride);
        stages.push(Stage {
            is_stem: false,
            in_channels: channels,
            out_channels: out,
            stride,
            in_size: size,
            out_size: next,
        });
        channels = out;
        size = next;
    }
    Ok(stages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_1_224_shapes_follow_table_1() {
        let s = stages(1.0, 224).unwrap();
        assert_eq!(s.len(), 14);
        assert_eq!((s[0].out_channels, s[0].out_size), (32, 112));
        assert_eq!(
            (s[1].in_channels, s[1].out_channels, s[1].out_size),
            (32, 64, 112)
        );
        assert_eq!(
            (s[13].in_channels, s[13].out_channels, s[13].out_size),
            (1024, 1024, 7)
        );
        assert_eq!(s[12].in_size, 14);
    }

    #[test]
    fn bad_alpha_and_resolution_rejected() {
        assert!(stages(0.0, 224).is_err());
        assert!(stages(f64::NAN, 224).is_err());
        assert!(stages(1.0, 16).is_err());
    }
}
