//! Layer types: weights validated and packed once at construction, `forward` many times.
//!
//! - [`Conv2d`]: any 2-D convolution (standard, grouped, depthwise, pointwise).
//! - [`DepthwiseConv2d`]: `groups = C_in`, optional depth multiplier.
//! - [`PointwiseConv2d`]: 1×1, stride 1, no padding.
//! - [`DepthwiseSeparableConv2d`]: depthwise k×k then pointwise 1×1, each with optional
//!   bias, BatchNorm (folded at construction) and activation: the MobileNet block.
//! - [`GlobalAvgPool`]: the mean of each channel, before a classifier.

mod conv2d;
mod depthwise;
mod pointwise;
mod pool;
mod separable;

pub use conv2d::Conv2d;
pub use depthwise::DepthwiseConv2d;
pub use pointwise::PointwiseConv2d;
pub use pool::GlobalAvgPool;
pub use separable::DepthwiseSeparableConv2d;
