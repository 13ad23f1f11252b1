//! Network definitions built from dsconv's layers, and the registry that names them.

mod build;
pub mod efficientnet_lite;
pub mod mobilenet_v1;
pub mod mobilenet_v2;
mod network;
pub mod registry;

pub use network::{Network, MOBILENET_V1_RESOLUTION, NAMES};
pub use registry::{lookup, ModelSpec, MODELS};
