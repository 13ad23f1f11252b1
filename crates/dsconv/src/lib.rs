//! # dsconv
//!
//! Depthwise separable convolution with PyTorch's semantics: standard, grouped,
//! depthwise and pointwise 2-D convolution in NCHW and NHWC, every padding form
//! (symmetric, asymmetric, TF-style `same` at any stride, `valid`) and mode (zeros,
//! reflect, replicate, circular), fused BatchNorm and activation, a cost model, and an
//! f64 reference implementation that every fast path is tested against.
//!
//! ```
//! use dsconv::{Conv2dParams, DepthwiseConv2d, DepthwiseSeparableConv2d, Padding,
//!              PointwiseConv2d, Tensor};
//! // The seed's example: a 7×7×3 input, 3 depthwise 3×3 filters, 128 pointwise filters.
//! let dw = DepthwiseConv2d::new(Tensor::from_nchw(vec![0.1; 3 * 9], [3, 1, 3, 3])?, None,
//!                               Conv2dParams::default())?;
//! let pw = PointwiseConv2d::new(Tensor::from_nchw(vec![0.01; 128 * 3], [128, 3, 1, 1])?, None)?;
//! let block = DepthwiseSeparableConv2d::new(dw, pw)?;
//! let x = Tensor::from_nchw(vec![1.0; 3 * 7 * 7], [1, 3, 7, 7])?;
//! assert_eq!(block.forward(&x)?.dims(), [1, 128, 5, 5]);
//! assert_eq!(block.cost([1, 3, 7, 7])?.macs, 675 + 9_600);
//! # Ok::<(), dsconv::Error>(())
//! ```

#![deny(missing_docs)]

pub mod blocks;
pub mod cost;
mod direct;
pub mod error;
pub mod exec;
pub mod geometry;
pub mod grad;
#[allow(unsafe_code)]
pub mod kernels;
pub mod layers;
pub mod machine;
pub mod models;
pub mod npy;
pub mod ops;
pub mod preprocess;
pub mod reference;
pub mod rng;
pub mod tensor;
pub mod train;
pub mod weights;
pub mod workspace;

pub use cost::Cost;
pub use error::{Error, Result};
pub use exec::Executor;
pub use geometry::{Conv2dParams, ConvGeometry, Padding, PaddingMode};
pub use layers::{Conv2d, DepthwiseConv2d, DepthwiseSeparableConv2d, PointwiseConv2d};
pub use ops::{Activation, BatchNorm};
pub use tensor::{Layout, Tensor};

/// The README's code blocks, compiled and run as doc tests so the quick start cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// docs/training.md's code block, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/training.md")]
pub struct TrainingDoctests;
