//! Data sets for `dsconv train` / `eval` / `demo`: the embedded UCI digits, NumPy pairs and
//! image folders (torchvision's ImageFolder: one subfolder of PNG/JPEG images per class).

use super::user_error;
use anyhow::{Context, Result};
use dsconv::train::Dataset;
use std::path::{Path, PathBuf};

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

/// `(train, test)`: the digits split 80/20 by a seeded permutation.
pub fn digits_split() -> Result<(Dataset, Dataset)> {
    Ok(dsconv::train::digits_split()?)
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
