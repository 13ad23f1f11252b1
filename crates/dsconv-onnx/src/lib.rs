//! # dsconv-onnx
//!
//! ONNX import for [dsconv]: read a model ([`Model::load`]), validate it, infer every
//! shape for a given input shape and fold the shape arithmetic
//! (Shape/Gather/Slice/Concat/... feeding a Reshape or a convolution's padding) into
//! constants ([`Model::plan`]), and run it ([`Plan::run`]) on dsconv's layers and fused
//! kernels: BatchNormalization folded into the convolution before it, Relu/Clip/HardSwish
//! (and HardSigmoid·x) fused into its epilogue, depthwise → pointwise and expand →
//! depthwise → project chains on the fused separable and inverted-residual kernels,
//! activations NHWC in a reused workspace, the same [`dsconv::Executor`] thread team,
//! results bitwise identical for every thread count.
//!
//! ```no_run
//! let model = dsconv_onnx::Model::load("mobilenet_v3_small.onnx")?;
//! let plan = model.plan(&[&[1, 3, 224, 224]])?;
//! let exec = dsconv::Executor::new(2)?;
//! let x = vec![0.5f32; 3 * 224 * 224];
//! let outputs = plan.run(&[&x], &exec)?;
//! println!("{:?}: {} logits", outputs[0].dims, outputs[0].data.len());
//! # Ok::<(), dsconv_onnx::Error>(())
//! ```
//!
//! The protobuf code (`onnx.rs`) is generated once by `gen/` from the official
//! `onnx.proto` and committed; building this crate needs no `protoc`.

#![deny(missing_docs)]

mod consts;
mod error;
mod kernels;
mod model;
#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod onnx;
mod plan;
mod prep;

pub use error::{Error, Result};
pub use model::Model;
pub use plan::{Output, Plan};

/// docs/onnx.md's code block, compiled as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/onnx.md")]
pub struct OnnxDoctests;
