//! Photos to network inputs, exactly as torchvision does it on a PIL image: `Resize`
//! (the shorter side to N, the longer `floor(N·long/short)`; or an exact `(H, W)`),
//! `CenterCrop`, `ToTensor` (÷255), `Normalize(mean, std)`. One [`Preprocess`] value holds
//! the numbers; [`preprocess`] (one image) and [`preprocess_batch`] (several) turn decoded
//! 8-bit RGB pixels ([`Rgb8`]) into an NCHW [`Tensor`]. The built-in networks' specs are in
//! the registry ([`ModelSpec::preprocess`](crate::models::registry::ModelSpec::preprocess));
//! other networks (an ONNX classifier) build theirs from their own numbers. Decoding PNG or
//! JPEG is left to the caller (the CLI uses the `image` crate), so the library needs no
//! image dependency.
//!
//! The resize is a port of the algorithm of Pillow's `Resample.c` (convolution with the
//! filter — Keys cubic, a = −0.5, support 2 for `BICUBIC`; the triangle, support 1, for
//! `BILINEAR` — its support widened by the scale factor when shrinking, so it antialiases;
//! 22-bit fixed-point coefficients; a horizontal pass then a vertical pass, each rounded
//! and clamped to u8). It reproduces Pillow's output byte for byte for both filters, which
//! the tests against committed PIL crops check (`crates/dsconv/tests/fixtures/effnet/` for
//! bicubic, `…/mobilenetv2/` for bilinear); the `image` crate's filters differ (other
//! rounding, no u8 intermediate).
//!
//! ```
//! use dsconv::preprocess::{preprocess, Preprocess, Resampling, Resize, Rgb8};
//! // A 40×30 grey photo; torchvision: Resize(32), CenterCrop(24), ImageNet mean/std.
//! let img = Rgb8::new(40, 30, vec![128; 40 * 30 * 3])?;
//! let spec = Preprocess {
//!     resize: Resize::ShorterSide(32),
//!     crop: Some([24, 24]),
//!     ..Preprocess::TORCHVISION_IMAGENET
//! };
//! let x = preprocess(&img, &spec)?;
//! assert_eq!(x.dims(), [1, 3, 24, 24]);
//! assert!((x.data()[0] - (128.0 / 255.0 - 0.485) / 0.229).abs() < 1e-6);
//! // A crop larger than the resized image is refused, as is a zero std.
//! let too_big = Preprocess { crop: Some([40, 40]), ..spec };
//! assert!(preprocess(&img, &too_big).unwrap_err().is_bad_input());
//! assert!(Preprocess { std: [0.0, 1.0, 1.0], ..spec }.validate().is_err());
//! # Ok::<(), dsconv::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Fixed-point fraction bits of the coefficients (Pillow: `32 − 8 − 2`).
const PRECISION_BITS: u32 = 22;

/// The largest image a resize may produce, in pixels (2²⁸: 16384 × 16384): larger
/// targets are refused as absurd before anything is allocated.
pub const MAX_PIXELS: usize = 1 << 28;

/// The resampling filter of a resize, as Pillow implements it (torchvision resizes PIL
/// images with Pillow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resampling {
    /// Pillow `BICUBIC`: Keys' cubic, a = −0.5, support 2 (widened when shrinking).
    Bicubic,
    /// Pillow `BILINEAR`: the triangle filter, support 1 (widened when shrinking);
    /// torchvision's default for `Resize`.
    Bilinear,
}

impl std::str::FromStr for Resampling {
    type Err = Error;

    /// `bilinear` or `bicubic`, any letter case.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "bilinear" => Ok(Resampling::Bilinear),
            "bicubic" => Ok(Resampling::Bicubic),
            _ => Err(Error::param(
                "resampling",
                format!("'{s}' is not bilinear or bicubic"),
            )),
        }
    }
}

/// The resize step of a [`Preprocess`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// torchvision `Resize(n)`: the shorter side becomes `n`, the longer
    /// `floor(n · long / short)`.
    ShorterSide(usize),
    /// torchvision `Resize((height, width))`: exactly this size, aspect ratio not kept.
    Exact {
        /// Rows of the result.
        height: usize,
        /// Columns of the result.
        width: usize,
    },
    /// No resize.
    Keep,
}

/// How a network expects a photo, torchvision style: `Resize`, `CenterCrop`, `ToTensor`
/// (÷255), `Normalize(mean, std)`, channels RGB.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocess {
    /// The resize.
    pub resize: Resize,
    /// Then the centre `[height, width]` pixels are kept (`None`: no crop).
    pub crop: Option<[usize; 2]>,
    /// The filter of the resize.
    pub resampling: Resampling,
    /// Subtracted from each RGB channel after scaling to [0, 1].
    pub mean: [f32; 3],
    /// Then each RGB channel is divided by this.
    pub std: [f32; 3],
}

/// ImageNet's channel means (torchvision's `Normalize`).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's channel standard deviations (torchvision's `Normalize`).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl Preprocess {
    /// torchvision's ImageNet evaluation transform (`ImageClassification(crop_size=224)`,
    /// as for its MobileNetV2 weights, and the classic PyTorch MobileNetV1 scripts):
    /// bilinear resize to 256, centre crop 224, ImageNet mean and std.
    pub const TORCHVISION_IMAGENET: Preprocess = Preprocess {
        resize: Resize::ShorterSide(256),
        crop: Some([224, 224]),
        resampling: Resampling::Bilinear,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
    };

    /// Checks the numbers on their own: sizes at least 1, means finite, standard
    /// deviations finite and non-zero.
    pub fn validate(&self) -> Result<()> {
        match self.resize {
            Resize::ShorterSide(0) => return Err(Error::param("resize", "must be at least 1")),
            Resize::Exact { height, width } if height == 0 || width == 0 => {
                return Err(Error::param(
                    "resize",
                    "height and width must be at least 1",
                ))
            }
            _ => {}
        }
        if let Some([h, w]) = self.crop {
            if h == 0 || w == 0 {
                return Err(Error::param("crop", "height and width must be at least 1"));
            }
        }
        if let Some(m) = self.mean.iter().find(|m| !m.is_finite()) {
            return Err(Error::param("mean", format!("{m} is not a finite number")));
        }
        if let Some(s) = self.std.iter().find(|s| !s.is_finite() || **s == 0.0) {
            return Err(Error::param(
                "std",
                format!("{s} is not a finite non-zero number"),
            ));
        }
        Ok(())
    }

    /// `[height, width]` after the resize of an image `width`×`height`, checked against
    /// [`MAX_PIXELS`].
    pub fn resized_size(&self, width: usize, height: usize) -> Result<[usize; 2]> {
        if width == 0 || height == 0 {
            return Err(Error::shape(
                "image",
                "at least 1×1 pixels",
                format!("{width}×{height}"),
            ));
        }
        let [h, w] = match self.resize {
            Resize::Keep => [height, width],
            Resize::Exact { height, width } => [height, width],
            Resize::ShorterSide(short) => {
                // floor(short · long / short_side), in u128 so no size overflows.
                let long = |l: usize, s: usize| (short as u128 * l as u128 / s as u128) as usize;
                if width <= height {
                    [long(height, width), short]
                } else {
                    [short, long(width, height)]
                }
            }
        };
        if h == 0 || w == 0 || h.saturating_mul(w) > MAX_PIXELS {
            return Err(Error::param(
                "resize",
                format!(
                    "a {width}×{height} image would become {w}×{h}, outside 1 to {MAX_PIXELS} pixels"
                ),
            ));
        }
        Ok([h, w])
    }

    /// `[height, width]` of the tensor this spec makes from an image `width`×`height`: an
    /// error when the crop is larger than the resized image.
    pub fn output_size(&self, width: usize, height: usize) -> Result<[usize; 2]> {
        self.validate()?;
        let [h, w] = self.resized_size(width, height)?;
        match self.crop {
            None => Ok([h, w]),
            Some([ch, cw]) if ch <= h && cw <= w => Ok([ch, cw]),
            Some([ch, cw]) => Err(Error::param(
                "crop",
                format!(
                    "{cw}×{ch} (width×height) is larger than the {w}×{h} image after the resize"
                ),
            )),
        }
    }
}

/// An 8-bit RGB image, rows top to bottom, pixels `[r, g, b]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb8 {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl Rgb8 {
    /// An image from `height · width · 3` bytes (an error for any other length or a zero
    /// side).
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self> {
        let want = width
            .checked_mul(height)
            .and_then(|p| p.checked_mul(3))
            .ok_or(Error::Overflow("image size"))?;
        if width == 0 || height == 0 || data.len() != want {
            return Err(Error::shape(
                "RGB image",
                format!("{width}×{height}×3 = {want} bytes, at least 1×1"),
                format!("{} bytes", data.len()),
            ));
        }
        Ok(Rgb8 {
            width,
            height,
            data,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The pixels, `height · width · 3` bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
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

/// Pillow's triangle filter (`BILINEAR`), support 1.
fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Per output pixel: first input index and fixed-point weights.
struct Taps {
    first: Vec<usize>,
    weights: Vec<Vec<i32>>,
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

/// Resizes to `width`×`height` with Pillow's filter `resampling` (each pass only when its
/// size changes). An error for a zero size or more than [`MAX_PIXELS`].
pub fn resize(img: &Rgb8, width: usize, height: usize, resampling: Resampling) -> Result<Rgb8> {
    if width == 0 || height == 0 || width.saturating_mul(height) > MAX_PIXELS {
        return Err(Error::param(
            "resize",
            format!("{width}×{height} is outside 1 to {MAX_PIXELS} pixels"),
        ));
    }
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
    Ok(cur)
}

/// torchvision `CenterCrop([height, width])` for an image at least that size on both
/// sides: offsets `round((H − height)/2)` and `round((W − width)/2)`, halves rounded to
/// even like Python. An error when the image is smaller.
pub fn center_crop(img: &Rgb8, [height, width]: [usize; 2]) -> Result<Rgb8> {
    if img.width < width || img.height < height || width == 0 || height == 0 {
        return Err(Error::param(
            "crop",
            format!(
                "{width}×{height} (width×height) does not fit inside the {}×{} image",
                img.width, img.height
            ),
        ));
    }
    let offset = |extent: usize, size: usize| {
        let d = extent - size;
        // round-half-to-even of d / 2
        if d % 4 == 1 {
            d / 2
        } else {
            d.div_ceil(2)
        }
    };
    let (top, left) = (offset(img.height, height), offset(img.width, width));
    let mut data = Vec::with_capacity(width * height * 3);
    for y in top..top + height {
        data.extend_from_slice(
            &img.data[(y * img.width + left) * 3..(y * img.width + left + width) * 3],
        );
    }
    Ok(Rgb8 {
        width,
        height,
        data,
    })
}

/// The resize and crop of `spec`: the 8-bit image the normalisation then scales (what
/// torchvision's `ToTensor` receives).
pub fn resize_and_crop(img: &Rgb8, spec: &Preprocess) -> Result<Rgb8> {
    spec.output_size(img.width, img.height)?;
    let [h, w] = spec.resized_size(img.width, img.height)?;
    let resized = resize(img, w, h, spec.resampling)?;
    match spec.crop {
        Some(crop) => center_crop(&resized, crop),
        None => Ok(resized),
    }
}

/// `(x/255 − mean)/std` in f32 (as torchvision's `ToTensor` then `Normalize`), written as
/// one NCHW image `[3, H, W]` into `out`.
fn normalise_into(crop: &Rgb8, spec: &Preprocess, out: &mut [f32]) {
    let plane = crop.width * crop.height;
    for (p, px) in crop.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + p] = (px[c] as f32 / 255.0 - spec.mean[c]) / spec.std[c];
        }
    }
}

/// One photo as the network input `spec` describes: resize, centre crop, ÷255,
/// `(x − mean)/std`, as an NCHW tensor `[1, 3, H, W]`. Errors ([`Error::InvalidParam`],
/// bad input): a zero size, a zero or non-finite std, a non-finite mean, a crop larger
/// than the resized image, a resize to more than [`MAX_PIXELS`].
pub fn preprocess(img: &Rgb8, spec: &Preprocess) -> Result<Tensor> {
    preprocess_batch(std::slice::from_ref(img), spec)
}

/// Several photos as one NCHW batch `[N, 3, H, W]` (see [`preprocess`]); every image must
/// come out the same size (always true with a crop or an exact resize), else
/// [`Error::Shape`] naming the first that differs.
pub fn preprocess_batch(images: &[Rgb8], spec: &Preprocess) -> Result<Tensor> {
    let Some(first) = images.first() else {
        return Err(Error::shape("image batch", "at least 1 image", "0"));
    };
    let [h, w] = spec.output_size(first.width, first.height)?;
    let per_image = 3 * h * w;
    let mut data = Vec::new();
    data.try_reserve_exact(images.len() * per_image)
        .map_err(|_| Error::Allocation {
            what: "preprocessed images",
            bytes: images.len() * per_image * 4,
        })?;
    data.resize(images.len() * per_image, 0.0);
    for (i, (img, out)) in images
        .iter()
        .zip(data.chunks_exact_mut(per_image))
        .enumerate()
    {
        let crop = resize_and_crop(img, spec)?;
        if [crop.height, crop.width] != [h, w] {
            return Err(Error::shape(
                "image batch",
                format!("every image {w}×{h} after preprocessing (as image 0)"),
                format!("image {i}: {}×{}", crop.width, crop.height),
            ));
        }
        normalise_into(&crop, spec, out);
    }
    Tensor::from_nchw(data, [images.len(), 3, h, w])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(width: usize, height: usize, value: u8) -> Rgb8 {
        Rgb8::new(width, height, vec![value; width * height * 3]).unwrap()
    }

    #[test]
    fn center_crop_rounds_half_to_even_like_python() {
        let img = Rgb8::new(7, 5, (0..105).map(|v| v as u8).collect()).unwrap();
        // (7 − 4)/2 = 1.5 → 2; (5 − 4)/2 = 0.5 → 0.
        let c = center_crop(&img, [4, 4]).unwrap();
        assert_eq!(&c.data[..3], &img.data[2 * 3..3 * 3]);
        assert!(center_crop(&img, [6, 6]).is_err());
        // Non-square: 3 rows of 5 from a 5×7 (rows×cols) image: top (5−3)/2 = 1, left 1.
        let c = center_crop(&img, [3, 5]).unwrap();
        assert_eq!((c.width, c.height), (5, 3));
        assert_eq!(&c.data[..3], &img.data[(7 + 1) * 3..(7 + 2) * 3]);
    }

    #[test]
    fn identity_size_is_a_copy_and_upscale_of_flat_is_flat() {
        let img = flat(3, 2, 77);
        for filter in [Resampling::Bicubic, Resampling::Bilinear] {
            assert_eq!(resize(&img, 3, 2, filter).unwrap(), img);
            let up = resize(&img, 9, 5, filter).unwrap();
            assert!(up.data.iter().all(|&v| v == 77));
            let down = resize(&up, 2, 1, filter).unwrap();
            assert!(down.data.iter().all(|&v| v == 77));
        }
    }

    #[test]
    fn bilinear_halving_follows_pillows_coefficients() {
        // Worked by hand from Resample.c (not from a PIL run): a 4x1 row 0, 100, 200, 250
        // to 2x1. Scale 2 widens the triangle to support 2; output 0 (centre 1.0) takes
        // inputs 0..3 with weights 0.75, 0.75, 0.25 → 3/7, 3/7, 1/7 → 71.4 → 71; output 1
        // (centre 3.0) inputs 1..4, weights 1/7, 3/7, 3/7 → 207.1 → 207.
        let img = Rgb8::new(
            4,
            1,
            [0u8, 100, 200, 250].iter().flat_map(|&v| [v; 3]).collect(),
        )
        .unwrap();
        let out = resize(&img, 2, 1, Resampling::Bilinear).unwrap();
        assert_eq!(out.data, vec![71, 71, 71, 207, 207, 207]);
    }

    #[test]
    fn shorter_side_sizes_follow_torchvision() {
        let spec = Preprocess::TORCHVISION_IMAGENET;
        // 451×300 → 384×256 (floor(256·451/300) = 384); portrait the other way round.
        assert_eq!(spec.resized_size(451, 300).unwrap(), [256, 384]);
        assert_eq!(spec.resized_size(300, 451).unwrap(), [384, 256]);
        assert_eq!(spec.resized_size(600, 400).unwrap(), [256, 384]);
        assert_eq!(spec.output_size(600, 400).unwrap(), [224, 224]);
        let exact = Preprocess {
            resize: Resize::Exact {
                height: 48,
                width: 192,
            },
            crop: None,
            ..spec
        };
        assert_eq!(exact.output_size(600, 400).unwrap(), [48, 192]);
        let keep = Preprocess {
            resize: Resize::Keep,
            ..exact
        };
        assert_eq!(keep.output_size(600, 400).unwrap(), [400, 600]);
    }

    #[test]
    fn bad_specs_and_images_are_typed_errors() {
        let spec = Preprocess::TORCHVISION_IMAGENET;
        let bad = |p: Preprocess| p.output_size(100, 100).unwrap_err();
        for e in [
            bad(Preprocess {
                resize: Resize::ShorterSide(0),
                ..spec
            }),
            bad(Preprocess {
                crop: Some([0, 3]),
                ..spec
            }),
            bad(Preprocess {
                std: [1.0, 0.0, 1.0],
                ..spec
            }),
            bad(Preprocess {
                mean: [f32::NAN, 0.0, 1.0],
                ..spec
            }),
            bad(Preprocess {
                crop: Some([257, 224]),
                ..spec
            }),
            // 100×100 → 10⁶×10⁶: refused before any allocation.
            bad(Preprocess {
                resize: Resize::ShorterSide(1_000_000),
                ..spec
            }),
        ] {
            assert!(matches!(e, Error::InvalidParam { .. }), "{e}");
        }
        // The shorter side at 1 pixel: the longer one in proportion, never 0.
        let thin = Preprocess {
            resize: Resize::ShorterSide(1),
            crop: None,
            ..spec
        };
        assert!(thin.output_size(1, 3).is_ok());
        assert!(Rgb8::new(2, 2, vec![0; 11]).is_err());
        assert!(Rgb8::new(0, 2, vec![]).is_err());
        assert!(Rgb8::new(usize::MAX, 2, vec![]).is_err());
        assert!(preprocess_batch(&[], &spec).is_err());
        assert!(resize(&flat(2, 2, 0), 0, 2, Resampling::Bilinear).is_err());
    }

    #[test]
    fn batch_stacks_images_and_refuses_mixed_sizes() {
        let spec = Preprocess {
            resize: Resize::ShorterSide(8),
            crop: Some([6, 6]),
            ..Preprocess::TORCHVISION_IMAGENET
        };
        let a = flat(10, 12, 0);
        let b = flat(9, 9, 255);
        let x = preprocess_batch(&[a.clone(), b.clone()], &spec).unwrap();
        assert_eq!(x.dims(), [2, 3, 6, 6]);
        let per = 3 * 36;
        assert_eq!(&x.data()[..per], preprocess(&a, &spec).unwrap().data());
        assert_eq!(&x.data()[per..], preprocess(&b, &spec).unwrap().data());
        // Channel 2 of the white image: (1 − 0.406) / 0.225.
        assert!((x.data()[per + 2 * 36] - (1.0 - 0.406) / 0.225).abs() < 1e-6);
        let no_crop = Preprocess { crop: None, ..spec };
        let e = preprocess_batch(&[a, b], &no_crop).unwrap_err();
        assert!(e.to_string().contains("image 1"), "{e}");
    }
}
