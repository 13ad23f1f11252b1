//! Network definitions built from dsconv's layers.

pub mod mobilenet_v1;
