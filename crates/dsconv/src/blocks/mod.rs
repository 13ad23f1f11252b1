//! Network blocks built from the layers: the inverted residual (MobileNetV2 /
//! EfficientNet MBConv), squeeze-excitation and the classifier head (global average pool +
//! fully connected).

mod classifier;
mod inverted_residual;
mod squeeze_excite;

pub use classifier::Classifier;
pub use inverted_residual::InvertedResidual;
pub use squeeze_excite::SqueezeExcite;
