//! ImageNet preprocessing exactly as torchvision does it on a PIL image, with the numbers
//! of the model's registry entry ([`dsconv::models::registry::Preprocess`]):
//! `Resize(resize, filter)` (shorter side to `resize`, the longer
//! `floor(resize·long/short)`), `CenterCrop(crop)`, `ToTensor` (÷255),
//! `Normalize(mean, std)`.
//!
//! The resize is a port of the algorithm of Pillow's `Resample.c` (convolution with the
//! filter — Keys cubic, a = −0.5, support 2 for `BICUBIC`; the triangle, support 1, for
//! `BILINEAR` — its support widened by the scale factor when shrinking, so it antialiases;
//! 22-bit fixed-point coefficients; a horizontal pass then a vertical pass, each rounded
//! and clamped to u8). For bicubic it reproduces Pillow's output byte for byte, which the
//! test against the committed PIL crops checks (bilinear runs the same code with the other
//! filter; no PIL fixture checks it); `image`'s CatmullRom filter differs (other rounding,
//! no u8 intermediate).

use dsconv::models::registry::{Preprocess, Resampling};

/// Fixed-point fraction bits of the coefficients (Pillow: `32 − 8 − 2`).
const PRECISION_BITS: u32 = 22;

/// An 8-bit RGB image, rows top to bottom, pixels `[r, g, b]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb8 {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height · width · 3` bytes.
    pub data: Vec<u8>,
}

/// Keys' cubic convolution kernel with a = −0.5 (Pillow's BICUBIC), support 2.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output pixel: first input index and fixed-point weights.
struct Taps {
    first: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

/// Pillow's triangle filter (`BILINEAR`), support 1.
fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// The filter function and its support (in input pixels at scale 1).
fn filter(resampling: Resampling) -> (fn(f64) -> f64, f64) {
    match resampling {
        Resampling::Bicubic => (bicubic, 2.0),
        Resampling::Bilinear => (bilinear, 1.0),
    }
}

fn taps(in_size: usize, out_size: usize, resampling: Resampling) -> Taps {
    let (kernel, kernel_support) = filter(resampling);
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = kernel_support * filter_scale;
    let mut first = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) cast truncates toward zero; negatives clamp to 0 either way.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let w: Vec<f64> = (xmin..xmax)
            .map(|x| kernel((x as f64 - center + 0.5) / filter_scale))
            .collect();
        let total: f64 = w.iter().sum();
        let fixed = w
            .iter()
            .map(|&v| {
                let v = if total != 0.0 { v / total } else { v };
                let scaled = v * (1u32 << PRECISION_BITS) as f64;
                if v < 0.0 {
                    (scaled - 0.5) as i32
                } else {
                    (scaled + 0.5) as i32
                }
            })
            .collect();
        first.push(xmin);
        weights.push(fixed);
    }
    Taps { first, weights }
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes with Pillow's filter `resampling` (each pass only when its size changes).
pub fn resize(img: &Rgb8, width: usize, height: usize, resampling: Resampling) -> Rgb8 {
    let mut cur = img.clone();
    if width != img.width {
        let t = taps(img.width, width, resampling);
        let mut out = vec![0u8; img.height * width * 3];
        for y in 0..img.height {
            let row = &cur.data[y * img.width * 3..(y + 1) * img.width * 3];
            for x in 0..width {
                for c in 0..3 {
                    let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                    for (k, &w) in t.weights[x].iter().enumerate() {
                        acc += row[(t.first[x] + k) * 3 + c] as i64 * w as i64;
                    }
                    out[(y * width + x) * 3 + c] = clip8(acc);
                }
            }
        }
        cur = Rgb8 {
            width,
            height: img.height,
            data: out,
        };
    }
    if height != img.height {
        let t = taps(img.height, height, resampling);
        let mut out = vec![0u8; height * width * 3];
        for y in 0..height {
            for x in 0..width {
                for c in 0..3 {
                    let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                    for (k, &w) in t.weights[y].iter().enumerate() {
                        acc += cur.data[((t.first[y] + k) * width + x) * 3 + c] as i64 * w as i64;
                    }
                    out[(y * width + x) * 3 + c] = clip8(acc);
                }
            }
        }
        cur = Rgb8 {
            width,
            height,
            data: out,
        };
    }
    cur
}

/// torchvision `Resize(short)`: the shorter side becomes `short`, the longer
/// `floor(short · long / short_side)`.
pub fn resize_shorter_side(img: &Rgb8, short: usize, resampling: Resampling) -> Rgb8 {
    let (w, h) = (img.width, img.height);
    let (nw, nh) = if w <= h {
        (short, short * h / w)
    } else {
        (short * w / h, short)
    };
    resize(img, nw, nh, resampling)
}

/// torchvision `CenterCrop(size)` for an image at least `size` on both sides: offsets
/// `round((H − size)/2)` and `round((W − size)/2)`, halves rounded to even like Python.
pub fn center_crop(img: &Rgb8, size: usize) -> Option<Rgb8> {
    if img.width < size || img.height < size {
        return None;
    }
    let offset = |extent: usize| {
        let d = extent - size;
        // round-half-to-even of d / 2
        if d % 4 == 1 {
            d / 2
        } else {
            d.div_ceil(2)
        }
    };
    let (top, left) = (offset(img.height), offset(img.width));
    let mut data = Vec::with_capacity(size * size * 3);
    for y in top..top + size {
        data.extend_from_slice(
            &img.data[(y * img.width + left) * 3..(y * img.width + left + size) * 3],
        );
    }
    Some(Rgb8 {
        width: size,
        height: size,
        data,
    })
}

/// The whole pipeline of `spec`: resize, centre crop, then `(x/255 − mean)/std` in f32,
/// as NCHW `[3, crop, crop]` values (one image of a batch), with the crop. `None` when the
/// crop is larger than the resized image (a registry entry with `crop > resize`).
pub fn preprocess(img: &Rgb8, spec: &Preprocess) -> Option<(Rgb8, Vec<f32>)> {
    let resized = resize_shorter_side(img, spec.resize, spec.resampling);
    let crop = center_crop(&resized, spec.crop)?;
    let plane = spec.crop * spec.crop;
    let mut chw = vec![0.0f32; 3 * plane];
    for (p, px) in crop.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            chw[c * plane + p] = (px[c] as f32 / 255.0 - spec.mean[c]) / spec.std[c];
        }
    }
    Some((crop, chw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn decode(name: &str) -> Rgb8 {
        let img = image::open(repo().join("tests/data/images").join(name))
            .unwrap()
            .to_rgb8();
        Rgb8 {
            width: img.width() as usize,
            height: img.height() as usize,
            data: img.into_raw(),
        }
    }

    #[test]
    fn crops_match_pillow_byte_for_byte() {
        for name in ["chelsea", "coffee"] {
            let img = decode(&format!("{name}.png"));
            let lite0 = dsconv::models::lookup("efficientnet-lite0").unwrap();
            let (crop, _) = preprocess(&img, &lite0.preprocess.unwrap()).unwrap();
            let pil = std::fs::read(
                repo().join(format!("crates/dsconv/tests/fixtures/effnet/{name}_224.u8")),
            )
            .unwrap();
            let differing = crop.data.iter().zip(&pil).filter(|(a, b)| a != b).count();
            assert_eq!(differing, 0, "{name}: {differing} bytes differ from Pillow");
        }
    }

    #[test]
    fn center_crop_rounds_half_to_even_like_python() {
        let img = Rgb8 {
            width: 7,
            height: 5,
            data: (0..105).map(|v| v as u8).collect(),
        };
        // (7 − 4)/2 = 1.5 → 2; (5 − 4)/2 = 0.5 → 0.
        let c = center_crop(&img, 4).unwrap();
        assert_eq!(&c.data[..3], &img.data[2 * 3..3 * 3]);
        assert!(center_crop(&img, 6).is_none());
    }

    #[test]
    fn identity_size_is_a_copy_and_upscale_of_flat_is_flat() {
        let img = Rgb8 {
            width: 3,
            height: 2,
            data: vec![77; 18],
        };
        for filter in [Resampling::Bicubic, Resampling::Bilinear] {
            assert_eq!(resize(&img, 3, 2, filter), img);
            let up = resize(&img, 9, 5, filter);
            assert!(up.data.iter().all(|&v| v == 77));
            let down = resize(&up, 2, 1, filter);
            assert!(down.data.iter().all(|&v| v == 77));
        }
    }

    #[test]
    fn bilinear_halving_follows_pillows_coefficients() {
        // Worked by hand from Resample.c (not from a PIL run): a 4x1 row 0, 100, 200, 250
        // to 2x1. Scale 2 widens the triangle to support 2; output 0 (centre 1.0) takes
        // inputs 0..3 with weights 0.75, 0.75, 0.25 → 3/7, 3/7, 1/7 → 71.4 → 71; output 1
        // (centre 3.0) inputs 1..4, weights 1/7, 3/7, 3/7 → 207.1 → 207.
        let img = Rgb8 {
            width: 4,
            height: 1,
            data: [0u8, 100, 200, 250].iter().flat_map(|&v| [v; 3]).collect(),
        };
        let out = resize(&img, 2, 1, Resampling::Bilinear);
        assert_eq!(out.data, vec![71, 71, 71, 207, 207, 207]);
    }
}
