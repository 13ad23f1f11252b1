//! Helpers shared by the integration tests (each test file says `mod common;`): fixture
//! paths and raw little-endian fixture readers, seeded random tensors, the reference
//! output of one convolution, executors per instruction-set tier, and the tolerance
//! checks. Every comparison here counts a NaN as an infinite difference (`f64::max`
//! alone would skip it).

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod prop;

use dsconv::kernels::Isa;
use dsconv::rng::SplitMix64;
use dsconv::{reference, Activation, Conv2dParams, Executor, Layout, Tensor};
use std::path::PathBuf;

/// `tests/fixtures/<dir>`.
pub fn fixture_dir(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
}

/// `tests/fixtures/<dir>/<name>`.
pub fn fixture(dir: &str, name: &str) -> PathBuf {
    fixture_dir(dir).join(name)
}

/// A raw file of little-endian values of `N` bytes each, decoded by `f`.
pub fn read_le<const N: usize, T>(
    path: impl AsRef<std::path::Path>,
    f: fn([u8; N]) -> T,
) -> Vec<T> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.len().is_multiple_of(N),
        "{}: {} bytes is not a whole number of {N}-byte values",
        path.display(),
        bytes.len()
    );
    bytes
        .chunks_exact(N)
        .map(|b| f(b.try_into().unwrap()))
        .collect()
}

/// A raw little-endian f32 file.
pub fn read_f32_le(path: impl AsRef<std::path::Path>) -> Vec<f32> {
    read_le(path, f32::from_le_bytes)
}

/// A raw little-endian f64 file.
pub fn read_f64_le(path: impl AsRef<std::path::Path>) -> Vec<f64> {
    read_le(path, f64::from_le_bytes)
}

/// `n` values uniform in `[-scale, scale)` from seed `seed`.
pub fn random_vec(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    SplitMix64::new(seed).vec(n, -scale, scale)
}

/// A tensor of memory-order dims `dims` in `layout` (as [`Tensor::new`]), values uniform
/// in `[-scale, scale)` from seed `seed`, in memory order.
pub fn random_tensor(dims: [usize; 4], layout: Layout, seed: u64, scale: f32) -> Tensor {
    let n = dims.iter().product();
    Tensor::new(random_vec(seed, n, scale), dims, layout).unwrap()
}

/// The f64 reference convolution followed by the activation (no BatchNorm), in the
/// input's layout.
pub fn reference_output(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&[f32]>,
    params: &Conv2dParams,
    act: Activation,
) -> Tensor {
    let mut r = reference::conv2d(x, w, bias, params).unwrap();
    reference::batchnorm_activation(&mut r, None, act);
    r
}

/// One-thread and two-thread executors on tier `isa`.
pub fn executors(isa: Isa) -> (Executor, Executor) {
    (
        Executor::single().with_isa(isa).unwrap(),
        Executor::new(2).unwrap().with_isa(isa).unwrap(),
    )
}

/// Largest absolute value, in f64 (NaN ignored).
pub fn max_abs(values: impl IntoIterator<Item = f64>) -> f64 {
    values.into_iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// Largest `|got − want|` over pairs, NaN on either side counting as infinite.
pub fn max_abs_diff(pairs: impl IntoIterator<Item = (f64, f64)>) -> f64 {
    pairs
        .into_iter()
        .map(|(g, w)| {
            if g.is_nan() || w.is_nan() {
                f64::INFINITY
            } else {
                (g - w).abs()
            }
        })
        .fold(0.0f64, f64::max)
}

/// [`max_abs_diff`] of f32 results against f64 reference values (e.g. PyTorch logits).
pub fn max_abs_diff_f64(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "result length");
    max_abs_diff(got.iter().map(|&g| g as f64).zip(want.iter().copied()))
}

/// Largest `|got − want|` over `max(max|want|, scale_floor)`, NaN counting as infinite;
/// `got` may be in either layout.
pub fn relative_error(got: &Tensor, want: &Tensor, scale_floor: f64) -> f64 {
    assert_eq!(got.logical_dims(), want.logical_dims(), "output shape");
    let got = got.to_layout(want.layout());
    let scale = max_abs(want.data().iter().map(|&v| v as f64)).max(scale_floor);
    let worst = max_abs_diff(
        got.data()
            .iter()
            .zip(want.data())
            .map(|(&g, &w)| (g as f64, w as f64)),
    );
    if worst == 0.0 {
        0.0
    } else {
        worst / scale.max(f64::MIN_POSITIVE)
    }
}

/// Asserts `got` within `1e-5 · max|want|` of `want` (NaN never within).
pub fn assert_close(got: &Tensor, want: &Tensor, what: &str) {
    let tol = 1e-5 * want.max_abs().max(1e-6);
    let diff = got.max_abs_diff(want).unwrap();
    assert!(diff <= tol, "{what}: max diff {diff} > {tol}");
}
