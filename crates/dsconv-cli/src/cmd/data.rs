//! Data sets for `dsconv train` / `eval` / `demo`: the embedded UCI digits, NumPy pairs and
//! image folders (torchvision's ImageFolder: one subfolder of PNG/JPEG images per class).

use super::user_error;
use anyhow::{Context, Result};
use dsconv::train::Dataset;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The UCI handwritten digits as scikit-learn ships them (`data/digits/README.md`).
const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits/digits.csv.gz");

/// Seed of the digits' 80/20 split (fixed: `digits` and `digits-test` never overlap).
pub const DIGITS_SPLIT_SEED: u64 = 2026;

/// How `--data` / `--val` name a data set.
pub const DATA_HELP: &str = "digits, digits-test (embedded UCI digits, 80/20 split),\n\
X.npy,Y.npy (images [N,C,H,W] float32 or uint8; labels int64/int32),\n\
or a folder with one subfolder of PNG/JPEG images per class";

/// What kind of source a data set came from (folders are augmented by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Embedded digits.
    Digits,
    /// A NumPy pair.
    Npy,
    /// An image folder.
    Folder,
}

/// All 1,797 digits, pixels scaled by 1/16 to [0, 1], as `[N, 1, 8, 8]`.
pub fn digits_all() -> Result<Dataset> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .context("decompressing the embedded digits")?;
    let mut images = Vec::with_capacity(1797 * 64);
    let mut labels = Vec::with_capacity(1797);
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let values: Vec<f64> = line
            .split(',')
            .map(|v| v.trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .with_context(|| format!("embedded digits, row {i}"))?;
        anyhow::ensure!(
            values.len() == 65,
            "embedded digits, row {i}: {} values",
            values.len()
        );
        images.extend(values[..64].iter().map(|&v| (v / 16.0) as f32));
        labels.push(values[64] as i64);
    }
    let n = labels.len();
    Ok(Dataset::new(images, [n, 1, 8, 8], &labels, Some(10))?)
}

/// `(train, test)`: the digits split 80/20 by a seeded permutation.
pub fn digits_split() -> Result<(Dataset, Dataset)> {
    Ok(digits_all()?.split(0.2, DIGITS_SPLIT_SEED)?)
}

/// Loads `spec` (see [`DATA_HELP`]); `classes` fixes the class count (labels checked).
pub fn load(spec: &str, classes: Option<usize>) -> Result<(Dataset, Source)> {
    let (data, source) = match spec {
        "digits" => (digits_split()?.0, Source::Digits),
        "digits-test" => (digits_split()?.1, Source::Digits),
        _ if spec.contains(',') => {
            let (x, y) = spec.split_once(',').unwrap_or((spec, ""));
            let data = Dataset::from_npy(Path::new(x.trim()), Path::new(y.trim()), classes)?;
            return Ok((data, Source::Npy));
        }
        _ => {
            let path = Path::new(spec);
            if !path.is_dir() {
                return Err(user_error(format!(
                    "--data {spec}: not digits, digits-test, a folder, nor X.npy,Y.npy"
                )));
            }
            (image_folder(path)?, Source::Folder)
        }
    };
    Ok(match classes {
        Some(k) => (data.with_classes(k)?, source),
        None => (data, source),
    })
}

/// Class subfolders (sorted by name, as torchvision does) of PNG/JPEG images, decoded to
/// RGB and scaled to [0, 1]; every image must have the first one's size.
pub fn image_folder(root: &Path) -> Result<Dataset> {
    let read_dir = |p: &Path| -> Result<Vec<PathBuf>> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .with_context(|| format!("{}", p.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("{}", p.display()))?;
        entries.sort();
        Ok(entries)
    };
    let classes: Vec<PathBuf> = read_dir(root)?.into_iter().filter(|p| p.is_dir()).collect();
    if classes.is_empty() {
        return Err(user_error(format!(
            "{}: no class subfolders (expected one folder of images per class)",
            root.display()
        )));
    }
    let mut images = Vec::new();
    let mut labels = Vec::new();
    let mut size: Option<(u32, u32)> = None;
    for (label, dir) in classes.iter().enumerate() {
        for file in read_dir(dir)? {
            let ext = file
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            if !matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) {
                continue;
            }
            let img = image::open(&file)
                .map_err(|e| user_error(format!("{}: cannot decode image: {e}", file.display())))?
                .to_rgb8();
            let dims = img.dimensions();
            match size {
                None => size = Some(dims),
                Some(s) if s != dims => {
                    return Err(user_error(format!(
                        "{}: {}x{} pixels, but the first image is {}x{} (all images must \
                         have one size)",
                        file.display(),
                        dims.0,
                        dims.1,
                        s.0,
                        s.1
                    )))
                }
                Some(_) => {}
            }
            let (w, h) = (dims.0 as usize, dims.1 as usize);
            let raw = img.into_raw();
            for c in 0..3 {
                for p in 0..h * w {
                    images.push(f32::from(raw[p * 3 + c]) / 255.0);
                }
            }
            labels.push(label as i64);
        }
    }
    let Some((w, h)) = size else {
        return Err(user_error(format!(
            "{}: no PNG or JPEG images in its class subfolders",
            root.display()
        )));
    };
    let n = labels.len();
    Ok(Dataset::new(
        images,
        [n, 3, h as usize, w as usize],
        &labels,
        Some(classes.len()),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_complete_and_split_80_20() {
        let all = digits_all().unwrap();
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
