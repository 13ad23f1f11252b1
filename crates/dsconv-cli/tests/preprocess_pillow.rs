//! `dsconv::preprocess` against Pillow and torchvision on the two test photos: the resize
//! and centre crop of each built-in pipeline reproduce PIL's bytes (bicubic:
//! EfficientNet-Lite0's crops from `scripts/effnet_reference.py`; bilinear: torchvision's
//! `Resize(256)` + `CenterCrop(224)` crops from `scripts/mobilenetv2_reference.py`), and the
//! whole pipeline's tensor equals torchvision's `ToTensor` + `Normalize` output. Here and
//! not in the library's tests because decoding the PNGs needs `image`, a CLI dependency.

use dsconv::models::registry::{EFFICIENTNET_LITE0_IMAGENET, TORCHVISION_IMAGENET};
use dsconv::preprocess::{preprocess, resize_and_crop, Preprocess, Resize, Rgb8};
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn decode(name: &str) -> Rgb8 {
    let img = image::open(repo().join("tests/data/images").join(format!("{name}.png")))
        .unwrap()
        .to_rgb8();
    Rgb8::new(img.width() as usize, img.height() as usize, img.into_raw()).unwrap()
}

fn fixture(dir: &str, name: &str) -> Vec<u8> {
    std::fs::read(
        repo()
            .join("crates/dsconv/tests/fixtures")
            .join(dir)
            .join(name),
    )
    .unwrap()
}

#[test]
fn crops_match_pillow_byte_for_byte_bicubic_and_bilinear() {
    for (dir, spec) in [
        ("effnet", EFFICIENTNET_LITE0_IMAGENET),
        ("mobilenetv2", TORCHVISION_IMAGENET),
    ] {
        for name in ["chelsea", "coffee"] {
            let crop = resize_and_crop(&decode(name), &spec).unwrap();
            assert_eq!((crop.width(), crop.height()), (224, 224));
            let pil = fixture(dir, &format!("{name}_224.u8"));
            let differing = crop.data().iter().zip(&pil).filter(|(a, b)| a != b).count();
            let max = crop
                .data()
                .iter()
                .zip(&pil)
                .map(|(&a, &b)| a.abs_diff(b))
                .max()
                .unwrap();
            eprintln!("{dir}/{name}: {differing} bytes differ from Pillow (max {max})");
            assert_eq!(
                differing, 0,
                "{dir}/{name}: {differing} bytes differ (max {max})"
            );
        }
    }
}

/// The photo → tensor function as the CLI and the ONNX path call it, against the
/// statistics and probe values of torchvision's float32 tensor (`reference.json`).
#[test]
fn photo_to_tensor_equals_torchvisions_transform() {
    let reference: serde_json::Value =
        serde_json::from_slice(&fixture("mobilenetv2", "reference.json")).unwrap();
    for name in ["chelsea", "coffee"] {
        let img = decode(name);
        let x = preprocess(&img, &TORCHVISION_IMAGENET).unwrap();
        assert_eq!(x.dims(), [1, 3, 224, 224]);
        // torchvision's tensor is (crop/255 − mean)/std in f32 (the reference script
        // asserts it), so rebuilt from PIL's crop it is torchvision's exactly.
        let pil = fixture("mobilenetv2", &format!("{name}_224.u8"));
        let normalise_only = Preprocess {
            resize: Resize::Keep,
            crop: None,
            ..TORCHVISION_IMAGENET
        };
        let want = preprocess(&Rgb8::new(224, 224, pil).unwrap(), &normalise_only).unwrap();
        let max_diff = x
            .data()
            .iter()
            .zip(want.data())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!("{name}: max |dsconv − torchvision| over the input tensor = {max_diff:e}");
        assert_eq!(max_diff, 0.0);
        let stats = &reference["input"][name];
        assert_eq!(
            stats["size"],
            serde_json::json!([img.width(), img.height()])
        );
        for c in 0..3 {
            let plane = &x.data()[c * 224 * 224..(c + 1) * 224 * 224];
            let sum: f64 = plane.iter().map(|&v| v as f64).sum();
            let want = stats["sum"][c].as_f64().unwrap();
            assert!(
                (sum - want).abs() < 1e-6,
                "{name} channel {c}: {sum} vs {want}"
            );
        }
    }
}
