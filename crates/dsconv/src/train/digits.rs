//! The UCI handwritten digits, embedded (the `digits` feature): 1,797 8×8 grey images of
//! the digits 0–9 as scikit-learn ships them (provenance and licence, CC BY 4.0, in
//! `crates/dsconv/data/digits/README.md`).

use super::data::Dataset;
use crate::error::{Error, Result};
use std::io::Read;

/// The file: one CSV row per image, 64 pixels 0–16 then the label.
const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits/digits.csv.gz");

/// Seed of the 80/20 split (fixed: `digits` and `digits-test` never overlap).
pub const DIGITS_SPLIT_SEED: u64 = 2026;

fn bad(reason: String) -> Error {
    Error::Format {
        path: "embedded digits".into(),
        reason,
    }
}

/// All 1,797 digits, pixels scaled by 1/16 to [0, 1], as `[N, 1, 8, 8]`, 10 classes.
pub fn digits() -> Result<Dataset> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("decompressing: {e}")))?;
    let mut images = Vec::with_capacity(1797 * 64);
    let mut labels = Vec::with_capacity(1797);
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let values: Vec<f64> = line
            .split(',')
            .map(|v| v.trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad(format!("row {i}: {e}")))?;
        if values.len() != 65 {
            return Err(bad(format!("row {i}: {} values", values.len())));
        }
        images.extend(values[..64].iter().map(|&v| (v / 16.0) as f32));
        labels.push(values[64] as i64);
    }
    let n = labels.len();
    Dataset::new(images, [n, 1, 8, 8], &labels, Some(10))
}

/// `(train, test)`: the digits split 80/20 by a permutation seeded with
/// [`DIGITS_SPLIT_SEED`] (1,438 and 359 images): `dsconv train --data digits` /
/// `digits-test`.
pub fn digits_split() -> Result<(Dataset, Dataset)> {
    digits()?.split(0.2, DIGITS_SPLIT_SEED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_complete_and_split_80_20() {
        let all = digits().unwrap();
        assert_eq!(all.len(), 1797);
        assert_eq!(all.classes(), 10);
        let (train, test) = digits_split().unwrap();
        assert_eq!((train.len(), test.len()), (1438, 359));
        let counts = (0..10)
            .map(|c| all.labels().iter().filter(|&&l| l == c).count())
            .collect::<Vec<_>>();
        assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    }
}
