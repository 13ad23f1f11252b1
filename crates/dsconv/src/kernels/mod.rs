//! The only module allowed `unsafe`: SIMD code behind runtime CPU detection.
//!
//! - [`fma_peak`]: a register-resident FMA loop that measures the machine's f32 FMA peak, the
//!   roofline that benchmarks report their speed against.

pub mod fma_peak;
