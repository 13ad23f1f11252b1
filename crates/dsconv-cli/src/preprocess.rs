//! ImageNet preprocessing exactly as torchvision does it on a PIL image:
//! `Resize(256, BICUBIC)` (shorter side to 256, the longer `floor(256·long/short)`),
//! `CenterCrop(224)`, `ToTensor` (÷255), `Normalize(mean, std)`.
//!
//! The resize is a port of the algorithm of Pillow's `Resample.c` (convolution with the
//! Keys cubic, a = −0.5, its support widened by the scale factor when shrinking, so it
//! antialiases; 22-bit fixed-point coefficients; a horizontal pass then a vertical pass,
//! each rounded and clamped to u8). It reproduces Pillow's output byte for byte, which the
//! test against the committed PIL crops checks; `image`'s CatmullRom filter differs
//! (other rounding, no u8 intermediate).

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

fn taps(in_size: usize, out_size: usize) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = 2.0 * filter_scale;
    let mut first = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) cast truncates toward zero; negatives clamp to 0 either way.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let w: Vec<f64> = (xmin..xmax)
            .map(|x| bicubic((x as f64 - center + 0.5) / filter_scale))
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

/// Resizes with Pillow's bicubic filter (both passes only when the size changes).
pub fn resize_bicubic(img: &Rgb8, width: usize, height: usize) -> Rgb8 {
    let mut cur = img.clone();
    if width != img.width {
        let t = taps(img.width, width);
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
        let t = taps(img.height, height);
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
pub fn resize_shorter_side(img: &Rgb8, short: usize) -> Rgb8 {
    let (w, h) = (img.width, img.height);
    let (nw, nh) = if w <= h {
        (short, short * h / w)
    } else {
        (short * w / h, short)
    };
    resize_bicubic(img, nw, nh)
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

/// The full ImageNet pipeline for EfficientNet-Lite: resize 256, crop 224, then
/// `(x/255 − 0.5)/0.5` in f32, as NCHW `[3, 224, 224]` values (one image of a batch).
/// Images smaller than the crop after resizing cannot happen (the shorter side is 256).
pub fn imagenet_224(img: &Rgb8, mean: [f32; 3], std: [f32; 3]) -> (Rgb8, Vec<f32>) {
    let resized = resize_shorter_side(img, 256);
    let crop = center_crop(&resized, 224).expect("shorter side is 256 ≥ 224");
    let mut chw = vec![0.0f32; 3 * 224 * 224];
    for (p, px) in crop.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            chw[c * 224 * 224 + p] = (px[c] as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    (crop, chw)
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
            let (crop, _) = imagenet_224(&img, [0.5; 3], [0.5; 3]);
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
        assert_eq!(resize_bicubic(&img, 3, 2), img);
        let up = resize_bicubic(&img, 9, 5);
        assert!(up.data.iter().all(|&v| v == 77));
    }
}
