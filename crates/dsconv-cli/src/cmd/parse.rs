//! The option parsers of every subcommand (one of each): numbers, counts and positive
//! sizes, sizes given once or per axis (`--stride 2`, `--stride 2,1`, `--kernel 3x5`),
//! `HxWxC` shapes, padding in every form PyTorch and TF/ONNX use (`1`, `1,2`,
//! `top,bottom,left,right`, `same`, `valid`), padding modes and layouts. Each error is one line naming the option, as a [`UserError`](super::UserError)
//! (exit code 2). Zero strides or dilations parse here and are refused by the library,
//! which owns those rules.

use super::user_error;
use dsconv::preprocess::{Resampling, Resize};
use dsconv::{Layout, Padding, PaddingMode};

/// A non-negative integer, with messages that say what is wrong with it.
fn size(option: &str, text: &str) -> anyhow::Result<usize> {
    let t = text.trim();
    if t.is_empty() {
        return Err(user_error(format!("{option}: empty value in '{text}'")));
    }
    if let Some(rest) = t.strip_prefix('-') {
        if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(user_error(format!(
                "{option}: '{t}' is negative; values must be 0 or more"
            )));
        }
    }
    if !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(user_error(format!(
            "{option}: '{t}' is not a non-negative integer"
        )));
    }
    t.parse()
        .map_err(|_| user_error(format!("{option}: '{t}' is too large")))
}

/// A count such as `--groups 4` or `--threads 2`.
pub fn count(option: &str, text: &str) -> anyhow::Result<usize> {
    size(option, text)
}

/// An integer of at least 1, such as `--batch 8` or `--out-channels 128`.
pub fn positive(option: &str, text: &str) -> anyhow::Result<usize> {
    match size(option, text) {
        Ok(0) => Err(user_error(format!("{option}: must be at least 1"))),
        Ok(v) => Ok(v),
        Err(_) => Err(user_error(format!(
            "{option}: '{text}' is not a positive integer"
        ))),
    }
}

/// A number of type `T` (`--width 0.5`).
pub fn number<T: std::str::FromStr>(option: &str, text: &str) -> anyhow::Result<T> {
    text.trim()
        .parse::<T>()
        .map_err(|_| user_error(format!("{option}: '{text}' is not a number")))
}

/// One value for both axes or `H<sep>W`, each parsed by `value`.
fn two(
    option: &str,
    text: &str,
    separators: &[char],
    value: fn(&str, &str) -> anyhow::Result<usize>,
) -> anyhow::Result<[usize; 2]> {
    let parts: Vec<&str> = text.split(separators).collect();
    match parts.as_slice() {
        [s] => {
            let s = value(option, s)?;
            Ok([s, s])
        }
        [h, w] => Ok([value(option, h)?, value(option, w)?]),
        _ => Err(user_error(format!(
            "{option}: '{text}' has {} values; give one (both axes) or two (height,width)",
            parts.len()
        ))),
    }
}

/// `S` (both axes) or `SH,SW` (height, width), as for `--stride` and `--dilation`; zeros
/// parse (the library refuses them with its own message).
pub fn pair(option: &str, text: &str) -> anyhow::Result<[usize; 2]> {
    two(option, text, &[','], size)
}

/// Like [`pair`], each value at least 1, the two separated by any of `separators`
/// (`--kernel 3x5` takes `x` too).
pub fn positive_pair(option: &str, text: &str, separators: &[char]) -> anyhow::Result<[usize; 2]> {
    two(option, text, separators, positive)
}

/// `HxWxC` (height x width x channels, e.g. `7x7x3`; `X` and `×` also separate).
pub fn hwc(option: &str, text: &str) -> anyhow::Result<[usize; 3]> {
    let parts: Vec<&str> = text.split(['x', 'X', '×']).collect();
    let [h, w, c] = parts.as_slice() else {
        return Err(user_error(format!(
            "{option}: '{text}' is not HxWxC (height x width x channels, e.g. 7x7x3)"
        )));
    };
    Ok([
        positive(&format!("{option} height"), h)?,
        positive(&format!("{option} width"), w)?,
        positive(&format!("{option} channels"), c)?,
    ])
}

/// `--padding`: `P` (all sides), `PH,PW` (per axis, as PyTorch's `padding=(ph, pw)`),
/// `T,B,L,R` (top, bottom, left, right), `same` (TF/ONNX SAME_UPPER at any stride) or
/// `valid` (none).
pub fn padding(option: &str, text: &str) -> anyhow::Result<Padding> {
    match text.trim().to_ascii_lowercase().as_str() {
        "same" => return Ok(Padding::Same),
        "valid" => return Ok(Padding::Valid),
        _ => {}
    }
    let parts: Vec<&str> = text.split(',').collect();
    let values = parts
        .iter()
        .map(|p| size(option, p))
        .collect::<anyhow::Result<Vec<_>>>();
    match (parts.len(), values) {
        (1 | 2 | 4, Err(e)) => Err(e),
        (1, Ok(v)) => Ok(Padding::symmetric(v[0])),
        (2, Ok(v)) => Ok(Padding::per_axis(v[0], v[1])),
        (4, Ok(v)) => Ok(Padding::asymmetric(v[0], v[1], v[2], v[3])),
        (n, _) => Err(user_error(format!(
            "{option}: '{text}' has {n} values; give P, PH,PW, T,B,L,R, same or valid"
        ))),
    }
}

/// `--padding-mode`: zeros, reflect, replicate or circular.
pub fn padding_mode(option: &str, text: &str) -> anyhow::Result<PaddingMode> {
    text.trim().to_ascii_lowercase().parse().map_err(|_| {
        user_error(format!(
            "{option}: '{text}' is not one of zeros, reflect, replicate, circular"
        ))
    })
}

/// `--layout`: nchw or nhwc.
pub fn layout(option: &str, text: &str) -> anyhow::Result<Layout> {
    text.trim()
        .parse()
        .map_err(|_| user_error(format!("{option}: '{text}' is not nchw or nhwc")))
}

/// `N` or `HxW` (height x width; `X`, `×` and `,` also separate), each at least 1.
fn size_or_hw(option: &str, text: &str) -> anyhow::Result<[usize; 2]> {
    positive_pair(option, text, &['x', 'X', '×', ','])
}

/// `--resize`: `N` (the shorter side to N, torchvision's `Resize(N)`), `HxW` (exactly,
/// `Resize((H, W))`) or `none`.
pub fn resize(option: &str, text: &str) -> anyhow::Result<Resize> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(Resize::Keep);
    }
    let one = !text.contains(['x', 'X', '×', ',']);
    let [height, width] = size_or_hw(option, text)?;
    Ok(if one {
        Resize::ShorterSide(height)
    } else {
        Resize::Exact { height, width }
    })
}

/// `--crop`: `N` (square), `HxW` or `none`.
pub fn crop(option: &str, text: &str) -> anyhow::Result<Option<[usize; 2]>> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    size_or_hw(option, text).map(Some)
}

/// `--resample`: bilinear or bicubic (Pillow's filters).
pub fn resampling(option: &str, text: &str) -> anyhow::Result<Resampling> {
    text.parse()
        .map_err(|_| user_error(format!("{option}: '{text}' is not bilinear or bicubic")))
}

/// `--mean` / `--std`: three comma-separated numbers for R, G, B, or one for all three;
/// each finite (and, with `nonzero`, not 0: a standard deviation).
pub fn rgb(option: &str, text: &str, nonzero: bool) -> anyhow::Result<[f32; 3]> {
    let parts: Vec<&str> = text.split(',').collect();
    let values = parts
        .iter()
        .map(|p| {
            let v: f32 = number(option, p)?;
            if !v.is_finite() || (nonzero && v == 0.0) {
                let what = if nonzero { "finite non-zero" } else { "finite" };
                return Err(user_error(format!(
                    "{option}: '{}' is not a {what} number",
                    p.trim()
                )));
            }
            Ok(v)
        })
        .collect::<anyhow::Result<Vec<f32>>>()?;
    match values.as_slice() {
        [v] => Ok([*v; 3]),
        [r, g, b] => Ok([*r, *g, *b]),
        _ => Err(user_error(format!(
            "{option}: '{text}' has {} values; give 3 (R,G,B) or 1 (all channels)",
            values.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: anyhow::Result<impl std::fmt::Debug>) -> String {
        let e = r.expect_err("expected an error");
        assert!(e.is::<super::super::UserError>());
        e.to_string()
    }

    #[test]
    fn pairs() {
        assert_eq!(pair("--stride", "2").unwrap(), [2, 2]);
        assert_eq!(pair("--stride", "2,1").unwrap(), [2, 1]);
        assert_eq!(pair("--stride", " 3 , 4 ").unwrap(), [3, 4]);
        assert_eq!(pair("--stride", "0").unwrap(), [0, 0]); // refused later by the library
        assert!(message(pair("--stride", "1,2,3")).contains("has 3 values"));
        assert!(message(pair("--stride", "")).contains("empty value"));
        assert!(message(pair("--stride", "2,")).contains("empty value"));
        assert!(message(pair("--dilation", "-1")).contains("'-1' is negative"));
        assert!(message(pair("--dilation", "x")).contains("'x' is not a non-negative integer"));
        assert!(message(pair("--dilation", "1.5")).contains("not a non-negative integer"));
        assert!(message(pair("--dilation", "+1")).contains("not a non-negative integer"));
        assert!(message(pair("--dilation", "99999999999999999999999")).contains("too large"));
    }

    #[test]
    fn paddings() {
        assert_eq!(padding("--padding", "1").unwrap(), Padding::symmetric(1));
        assert_eq!(
            padding("--padding", "1,2").unwrap(),
            Padding::per_axis(1, 2)
        );
        assert_eq!(
            padding("--padding", "1,2,3,4").unwrap(),
            Padding::asymmetric(1, 2, 3, 4)
        );
        assert_eq!(padding("--padding", "same").unwrap(), Padding::Same);
        assert_eq!(padding("--padding", "SAME").unwrap(), Padding::Same);
        assert_eq!(padding("--padding", "valid").unwrap(), Padding::Valid);
        assert_eq!(padding("--padding", "0").unwrap(), Padding::symmetric(0));
        assert!(message(padding("--padding", "1,2,3")).contains("has 3 values"));
        assert!(message(padding("--padding", "1,2,3,4,5")).contains("has 5 values"));
        assert!(message(padding("--padding", "-1")).contains("'-1' is negative"));
        assert!(message(padding("--padding", "1,-2")).contains("'-2' is negative"));
        assert!(message(padding("--padding", "full")).contains("'full' is not"));
        assert!(message(padding("--padding", "")).contains("empty value"));
    }

    #[test]
    fn positives_numbers_and_shapes() {
        assert_eq!(positive("--batch", " 8 ").unwrap(), 8);
        assert!(message(positive("--batch", "0")).contains("--batch: must be at least 1"));
        assert!(message(positive("--batch", "x")).contains("'x' is not a positive integer"));
        assert!(message(positive("--batch", "-2")).contains("not a positive integer"));
        assert_eq!(number::<f64>("--width", "0.5").unwrap(), 0.5);
        assert!(message(number::<f64>("--width", "abc")).contains("--width: 'abc' is not a number"));
        assert_eq!(
            positive_pair("--kernel", "3x5", &['x', ',']).unwrap(),
            [3, 5]
        );
        assert_eq!(positive_pair("--kernel", "3", &['x']).unwrap(), [3, 3]);
        assert!(message(positive_pair("--stride", "0", &[','])).contains("at least 1"));
        assert!(message(positive_pair("--stride", "1,2,3", &[','])).contains("has 3 values"));
        assert_eq!(hwc("--input", "7x7x3").unwrap(), [7, 7, 3]);
        assert_eq!(hwc("--input", "7×5X3").unwrap(), [7, 5, 3]);
        assert!(message(hwc("--input", "7x7")).contains("is not HxWxC"));
        assert!(message(hwc("--input", "7x0x3")).contains("--input width: must be at least 1"));
    }

    #[test]
    fn counts_modes_layouts() {
        assert_eq!(count("--groups", "4").unwrap(), 4);
        assert!(message(count("--groups", "-4")).contains("negative"));
        assert_eq!(
            padding_mode("--padding-mode", "Reflect").unwrap(),
            PaddingMode::Reflect
        );
        assert_eq!(
            padding_mode("--padding-mode", "circular").unwrap(),
            PaddingMode::Circular
        );
        assert!(message(padding_mode("--padding-mode", "mirror")).contains("'mirror' is not"));
        assert_eq!(layout("--layout", "NHWC").unwrap(), Layout::Nhwc);
        assert_eq!(layout("--layout", "nchw").unwrap(), Layout::Nchw);
        assert!(message(layout("--layout", "chw")).contains("'chw' is not"));
    }

    #[test]
    fn preprocessing_options() {
        assert_eq!(resize("--resize", "256").unwrap(), Resize::ShorterSide(256));
        assert_eq!(
            resize("--resize", "48x192").unwrap(),
            Resize::Exact {
                height: 48,
                width: 192
            }
        );
        assert_eq!(resize("--resize", "None").unwrap(), Resize::Keep);
        assert!(message(resize("--resize", "0")).contains("--resize: must be at least 1"));
        assert!(message(resize("--resize", "2x3x4")).contains("has 3 values"));
        assert_eq!(crop("--crop", "224").unwrap(), Some([224, 224]));
        assert_eq!(crop("--crop", "48,192").unwrap(), Some([48, 192]));
        assert_eq!(crop("--crop", "none").unwrap(), None);
        assert!(message(crop("--crop", "big")).contains("not a positive integer"));
        assert_eq!(
            resampling("--resample", "BICUBIC").unwrap(),
            Resampling::Bicubic
        );
        assert!(message(resampling("--resample", "lanczos")).contains("'lanczos' is not"));
        assert_eq!(
            rgb("--mean", "0.485, 0.456,0.406", false).unwrap(),
            [0.485, 0.456, 0.406]
        );
        assert_eq!(rgb("--std", "0.5", true).unwrap(), [0.5; 3]);
        assert!(message(rgb("--mean", "1,2", false)).contains("has 2 values; give 3"));
        assert!(message(rgb("--mean", "1,2,3,4", false)).contains("has 4 values"));
        assert!(message(rgb("--std", "1,0,1", true)).contains("'0' is not a finite non-zero"));
        assert!(message(rgb("--mean", "nan", false)).contains("not a finite number"));
        assert!(message(rgb("--mean", "1,x,3", false)).contains("'x' is not a number"));
        assert_eq!(rgb("--mean", "0", false).unwrap(), [0.0; 3]);
    }
}
