//! Labelled image data sets in memory, seeded shuffling and augmentation.

use crate::error::{Error, Result};
use crate::npy::{read_npy_typed, NpyValues};
use crate::rng::SplitMix64;
use crate::tensor::Tensor;
use std::path::Path;

/// Images `[N, C, H, W]` (f32, NCHW) with a class label each.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    images: Vec<f32>,
    dims: [usize; 3],
    labels: Vec<usize>,
    classes: usize,
}

/// Random crop with zero padding and horizontal flip, per image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// Zero padding on every side before a random crop back to the image size (0: none).
    pub pad: usize,
    /// Flip horizontally with probability ½.
    pub flip: bool,
}

impl Dataset {
    /// A data set from `images` (`dims` = `[N, C, H, W]`, NCHW) and integer `labels`; the
    /// class count is `classes` or, when `None`, the largest label + 1. Errors: the wrong
    /// number of labels or image values, a negative label or one `≥ classes`, no images.
    pub fn new(
        images: Vec<f32>,
        dims: [usize; 4],
        labels: &[i64],
        classes: Option<usize>,
    ) -> Result<Self> {
        let [n, c, h, w] = dims;
        if n == 0 || c == 0 || h == 0 || w == 0 {
            return Err(Error::shape(
                "images",
                "[N, C, H, W] with every dimension at least 1",
                format!("{dims:?}"),
            ));
        }
        let len = crate::error::product(&dims, "images")?;
        if images.len() != len {
            return Err(Error::shape(
                "images",
                format!("{len} values for {dims:?}"),
                format!("{}", images.len()),
            ));
        }
        if labels.len() != n {
            return Err(Error::shape(
                "labels",
                format!("{n} labels (one per image)"),
                format!("{}", labels.len()),
            ));
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l < 0) {
            return Err(Error::param(
                "labels",
                format!("label {l} of image {i} is negative"),
            ));
        }
        let max = labels.iter().copied().max().unwrap_or(0) as usize;
        let classes = classes.unwrap_or(max + 1);
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= classes)
        {
            return Err(Error::param(
                "labels",
                format!("label {l} of image {i} is out of range for {classes} classes"),
            ));
        }
        Ok(Dataset {
            images,
            dims: [c, h, w],
            labels: labels.iter().map(|&l| l as usize).collect(),
            classes,
        })
    }

    /// A NumPy pair: `x` `[N, C, H, W]` of float32/float64 (taken as they are) or uint8
    /// (scaled to [0, 1]), `y` `[N]` of int64 or int32.
    pub fn from_npy(x: &Path, y: &Path, classes: Option<usize>) -> Result<Self> {
        let xs = read_npy_typed(x)?;
        let name = |p: &Path| p.display().to_string();
        let dims: [usize; 4] = xs.shape.clone().try_into().map_err(|_| Error::Format {
            path: name(x),
            reason: format!("images must be [N, C, H, W], got shape {:?}", xs.shape),
        })?;
        let images = match xs.values {
            NpyValues::F32(v) => v,
            NpyValues::U8(v) => v.iter().map(|&b| f32::from(b) / 255.0).collect(),
            NpyValues::I64(_) => {
                return Err(Error::Format {
                    path: name(x),
                    reason: "images must be float32, float64 or uint8, not integers".into(),
                })
            }
        };
        let ys = read_npy_typed(y)?;
        if ys.shape.len() != 1 {
            return Err(Error::Format {
                path: name(y),
                reason: format!(
                    "labels must be one-dimensional [N], got shape {:?}",
                    ys.shape
                ),
            });
        }
        let NpyValues::I64(labels) = ys.values else {
            return Err(Error::Format {
                path: name(y),
                reason: "labels must be int64 or int32".into(),
            });
        };
        Self::new(images, dims, &labels, classes)
    }

    /// Images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images (never, for a data set `new` accepted).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `[C, H, W]`.
    pub fn image_dims(&self) -> [usize; 3] {
        self.dims
    }

    /// Classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The labels.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// The same data with `classes` classes (labels checked against it).
    pub fn with_classes(mut self, classes: usize) -> Result<Self> {
        if let Some((i, &l)) = self.labels.iter().enumerate().find(|(_, &l)| l >= classes) {
            return Err(Error::param(
                "labels",
                format!("label {l} of image {i} is out of range for {classes} classes"),
            ));
        }
        self.classes = classes;
        Ok(self)
    }

    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let size = self.dims.iter().product::<usize>();
        let mut images = Vec::with_capacity(indices.len() * size);
        for &i in indices {
            images.extend_from_slice(&self.images[i * size..(i + 1) * size]);
        }
        Dataset {
            images,
            dims: self.dims,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes,
        }
    }

    /// A seeded split: `(train, test)` with `round(test_fraction · N)` images in `test`,
    /// drawn by a seeded permutation.
    pub fn split(&self, test_fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        let n = self.len();
        let test = (test_fraction * n as f64).round() as usize;
        if !(0.0..1.0).contains(&test_fraction) || test == 0 || test >= n {
            return Err(Error::param(
                "split",
                format!("test fraction {test_fraction} of {n} images leaves a side empty"),
            ));
        }
        let order = epoch_order(n, true, seed, 0);
        Ok((self.subset(&order[test..]), self.subset(&order[..test])))
    }

    /// A batch: the images at `indices` as an NCHW tensor and their labels; with
    /// `augment`, each image randomly cropped / flipped from a generator seeded by `seed`.
    pub fn batch(
        &self,
        indices: &[usize],
        augment: Option<&Augment>,
        seed: u64,
    ) -> Result<(Tensor, Vec<usize>)> {
        let [c, h, w] = self.dims;
        let size = c * h * w;
        let mut data = Vec::with_capacity(indices.len() * size);
        let mut rng = SplitMix64::new(seed);
        for &i in indices {
            let img = self.images.get(i * size..(i + 1) * size).ok_or_else(|| {
                Error::param(
                    "batch",
                    format!("image {i} of {} does not exist", self.len()),
                )
            })?;
            match augment {
                None => data.extend_from_slice(img),
                Some(a) => {
                    let range = 2 * a.pad + 1;
                    let dy = (rng.next_u64() % range as u64) as isize - a.pad as isize;
                    let dx = (rng.next_u64() % range as u64) as isize - a.pad as isize;
                    let flip = a.flip && rng.next_u64() & 1 == 1;
                    for ch in 0..c {
                        for y in 0..h {
                            for x in 0..w {
                                let sy = y as isize + dy;
                                let sx0 = if flip { w - 1 - x } else { x };
                                let sx = sx0 as isize + dx;
                                let v = if sy < 0 || sx < 0 || sy >= h as isize || sx >= w as isize
                                {
                                    0.0
                                } else {
                                    img[(ch * h + sy as usize) * w + sx as usize]
                                };
                                data.push(v);
                            }
                        }
                    }
                }
            }
        }
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        Ok((Tensor::from_nchw(data, [indices.len(), c, h, w])?, labels))
    }
}

/// The order of the `n` samples in `epoch`: `0..n` without `shuffle`, else a
/// Fisher–Yates permutation seeded by `seed` and `epoch`.
pub fn epoch_order(n: usize, shuffle: bool, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        let mut rng =
            SplitMix64::new(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17));
        for i in (1..n).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
    }
    order
}
