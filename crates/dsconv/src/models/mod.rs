//! Network definitions built from dsconv's layers.

mod build;
pub mod efficientnet_lite;
pub mod mobilenet_v1;
pub mod mobilenet_v2;
mod network;

pub use network::{Network, NAMES};
