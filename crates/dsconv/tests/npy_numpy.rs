//! Compatibility of `dsconv::npy` with files written by NumPy 2.4 (fixtures and their
//! generator in `tests/fixtures/npy/`): every supported file reads back the values the
//! generator wrote, every unsupported one is refused with a format error naming the
//! reason, and `write_npy` produces NumPy's own bytes.

mod common;

use dsconv::npy::{read_npy, read_npy_bytes, write_npy};
use dsconv::Error;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    common::fixture("npy", name)
}

/// What the generator stores: `arange(n) * 0.25 - 1`.
fn expected(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32 * 0.25 - 1.0).collect()
}

#[test]
fn reads_what_numpy_writes() {
    let cases: [(&str, &[usize]); 8] = [
        ("f32_2x3.npy", &[2, 3]),
        ("f32_1x3x4x5.npy", &[1, 3, 4, 5]),
        ("f32_7.npy", &[7]),
        ("f32_scalar.npy", &[]),
        ("f32_0x4.npy", &[0, 4]),
        ("f64_2x2.npy", &[2, 2]),
        ("f32_v2_3x2.npy", &[3, 2]),
        ("f32_v3_3x2.npy", &[3, 2]),
    ];
    for (name, shape) in cases {
        let a = read_npy(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(a.shape, shape, "{name}");
        assert_eq!(a.data, expected(shape.iter().product()), "{name}");
        let bytes = std::fs::read(fixture(name)).unwrap();
        assert_eq!(read_npy_bytes(&bytes, name).unwrap(), a, "{name}");
    }
}

#[test]
fn refuses_what_it_does_not_support() {
    let cases = [
        ("reject_fortran_3x2.npy", "Fortran"),
        ("reject_bigendian_4.npy", "big-endian"),
        ("reject_int32_4.npy", "unsupported dtype '<i4'"),
        ("reject_object_2.npy", "object"),
    ];
    for (name, want) in cases {
        match read_npy(&fixture(name)) {
            Err(Error::Format { path, reason }) => {
                assert!(reason.contains(want), "{name}: {reason}");
                assert!(path.ends_with(name), "{path}");
            }
            other => panic!("{name}: expected a format error, got {other:?}"),
        }
    }
}

#[test]
fn writes_numpys_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[usize]); 5] = [
        ("f32_2x3.npy", &[2, 3]),
        ("f32_1x3x4x5.npy", &[1, 3, 4, 5]),
        ("f32_7.npy", &[7]),
        ("f32_scalar.npy", &[]),
        ("f32_0x4.npy", &[0, 4]),
    ];
    for (name, shape) in cases {
        let out = dir.path().join(name);
        write_npy(&out, shape, &expected(shape.iter().product())).unwrap();
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(fixture(name)).unwrap(),
            "{name}"
        );
    }
}
