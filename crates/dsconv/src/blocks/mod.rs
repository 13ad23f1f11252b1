//! Network blocks built from the layers: the inverted residual (MobileNetV2 /
//! EfficientNet MBConv) and the classifier head (global average pool + fully connected).

mod classifier;
mod inverted_residual;

pub use classifier::Classifier;
pub use inverted_residual::InvertedResidual;
