//! Convolution geometry with checked arithmetic: padding resolution (explicit,
//! asymmetric, TF/ONNX `SAME_UPPER`, `valid`), output sizes, padding-mode index
//! mapping, and the ranges of output pixels for which a tap reads inside the input
//! (so inner loops never test for padding).
//!
//! Contract, per spatial axis (shown for the height):
//! `out_h = (in_h + pad_top + pad_bottom − dilation_h·(k_h − 1) − 1) / stride_h + 1`,
//! output row `oy` with kernel row `i` reads input row `oy·stride_h + i·dilation_h − pad_top`.

use crate::error::{Error, Result};

/// How much padding to add around the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// No padding (PyTorch `padding='valid'`, i.e. 0).
    #[default]
    Valid,
    /// Explicit padding per side; symmetric padding is the case top = bottom, left = right.
    Explicit {
        /// Rows added above.
        top: usize,
        /// Rows added below.
        bottom: usize,
        /// Columns added on the left.
        left: usize,
        /// Columns added on the right.
        right: usize,
    },
    /// TF/ONNX `SAME_UPPER` at any stride and dilation: output size `ceil(in / stride)`,
    /// total padding `max((ceil(in/s) − 1)·s + (k − 1)·d + 1 − in, 0)` split with the odd
    /// pixel on the bottom/right. At stride 1 this equals PyTorch's `padding='same'`.
    Same,
}

impl Padding {
    /// The same padding `p` on all four sides (PyTorch `padding=p`).
    pub fn symmetric(p: usize) -> Self {
        Padding::Explicit {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }

    /// `ph` rows above and below, `pw` columns left and right (PyTorch `padding=(ph, pw)`).
    pub fn per_axis(ph: usize, pw: usize) -> Self {
        Padding::Explicit {
            top: ph,
            bottom: ph,
            left: pw,
            right: pw,
        }
    }

    /// Fully asymmetric padding.
    pub fn asymmetric(top: usize, bottom: usize, left: usize, right: usize) -> Self {
        Padding::Explicit {
            top,
            bottom,
            left,
            right,
        }
    }
}

/// What the padded border contains (PyTorch `padding_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PaddingMode {
    /// Zeros.
    #[default]
    Zeros,
    /// Mirror without repeating the edge (`dcb|abcd|cba`); padding must be smaller than the input.
    Reflect,
    /// Repeat the edge (`aaa|abcd|ddd`).
    Replicate,
    /// Wrap around (`bcd|abcd|abc`); padding must not exceed the input.
    Circular,
}

impl PaddingMode {
    /// Maps a possibly out-of-range input coordinate `i` (in `[-pad_before, n + pad_after)`)
    /// to the input coordinate whose value it holds, or `None` for a zero.
    /// Meaningful when the geometry checks of [`ConvGeometry::new`] passed (reflect
    /// padding < `n`, circular ≤ `n`); never panics: an empty axis (`n = 0`) or a size
    /// beyond `isize` has no source, `None`.
    #[inline]
    pub fn source_index(self, i: isize, n: usize) -> Option<usize> {
        let n_signed = isize::try_from(n).ok().filter(|&n| n > 0)?;
        if (0..n_signed).contains(&i) {
            return Some(i as usize);
        }
        match self {
            PaddingMode::Zeros => None,
            PaddingMode::Reflect => Some(if i < 0 { -i } else { 2 * (n_signed - 1) - i } as usize),
            PaddingMode::Replicate => Some(i.clamp(0, n_signed - 1) as usize),
            PaddingMode::Circular => Some(i.rem_euclid(n_signed) as usize),
        }
    }

    /// The name PyTorch uses.
    pub fn name(self) -> &'static str {
        match self {
            PaddingMode::Zeros => "zeros",
            PaddingMode::Reflect => "reflect",
            PaddingMode::Replicate => "replicate",
            PaddingMode::Circular => "circular",
        }
    }
}

impl std::str::FromStr for PaddingMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "zeros" => Ok(PaddingMode::Zeros),
            "reflect" => Ok(PaddingMode::Reflect),
            "replicate" => Ok(PaddingMode::Replicate),
            "circular" => Ok(PaddingMode::Circular),
            other => Err(Error::param(
                "padding mode",
                format!("'{other}' is not one of zeros, reflect, replicate, circular"),
            )),
        }
    }
}

/// Hyper-parameters of a 2-D convolution, independent of the input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Stride `[height, width]`, each ≥ 1.
    pub stride: [usize; 2],
    /// Dilation `[height, width]`, each ≥ 1.
    pub dilation: [usize; 2],
    /// Padding.
    pub padding: Padding,
    /// Padding mode.
    pub padding_mode: PaddingMode,
    /// Groups: 1 (standard), `C_in` (depthwise) or any common divisor of `C_in` and `C_out`.
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams {
            stride: [1, 1],
            dilation: [1, 1],
            padding: Padding::Valid,
            padding_mode: PaddingMode::Zeros,
            groups: 1,
        }
    }
}

impl Conv2dParams {
    /// Sets the same stride on both axes.
    pub fn with_stride(mut self, s: usize) -> Self {
        self.stride = [s, s];
        self
    }
    /// Sets the same dilation on both axes.
    pub fn with_dilation(mut self, d: usize) -> Self {
        self.dilation = [d, d];
        self
    }
    /// Sets the padding.
    pub fn with_padding(mut self, p: Padding) -> Self {
        self.padding = p;
        self
    }
    /// Sets the padding mode.
    pub fn with_padding_mode(mut self, m: PaddingMode) -> Self {
        self.padding_mode = m;
        self
    }
    /// Sets the number of groups.
    pub fn with_groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }

    /// Checks the parameters that do not depend on any shape.
    pub fn validate(&self) -> Result<()> {
        if self.stride.contains(&0) {
            return Err(Error::param("stride", "must be at least 1"));
        }
        if self.dilation.contains(&0) {
            return Err(Error::param("dilation", "must be at least 1"));
        }
        if self.groups == 0 {
            return Err(Error::param("groups", "must be at least 1"));
        }
        Ok(())
    }
}

/// Everything about one convolution once input and weight shapes are known:
/// sizes, resolved padding and output size. Built only through [`ConvGeometry::new`],
/// which checks every constraint with checked arithmetic, so a geometry that exists is
/// consistent: its fields are private and read through accessors, and the kernels that
/// take one trust its sizes (they still check the buffers they are given against it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Batch size N.
    batch: usize,
    /// Input channels C_in.
    in_channels: usize,
    /// Input height.
    in_h: usize,
    /// Input width.
    in_w: usize,
    /// Output channels C_out.
    out_channels: usize,
    /// Kernel height.
    kernel_h: usize,
    /// Kernel width.
    kernel_w: usize,
    /// Vertical stride.
    stride_h: usize,
    /// Horizontal stride.
    stride_w: usize,
    /// Vertical dilation.
    dilation_h: usize,
    /// Horizontal dilation.
    dilation_w: usize,
    /// Groups.
    groups: usize,
    /// Resolved padding above.
    pad_top: usize,
    /// Resolved padding below.
    pad_bottom: usize,
    /// Resolved padding on the left.
    pad_left: usize,
    /// Resolved padding on the right.
    pad_right: usize,
    /// Padding mode.
    padding_mode: PaddingMode,
    /// Output height.
    out_h: usize,
    /// Output width.
    out_w: usize,
}

/// Resolves one axis: returns (pad_before, pad_after, out).
fn resolve_axis(
    axis: &'static str,
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    padding: Option<(usize, usize)>,
) -> Result<(usize, usize, usize)> {
    // Effective kernel extent: (k − 1)·d + 1.
    let extent = (kernel - 1)
        .checked_mul(dilation)
        .and_then(|v| v.checked_add(1))
        .ok_or(Error::Overflow("dilated kernel extent"))?;
    let (before, after) = match padding {
        Some(p) => p,
        None => {
            // SAME_UPPER: out = ceil(in / s); total = max((out − 1)·s + extent − in, 0).
            let out = input.div_ceil(stride);
            let needed = (out.max(1) - 1)
                .checked_mul(stride)
                .and_then(|v| v.checked_add(extent))
                .ok_or(Error::Overflow("same padding"))?;
            let total = needed.saturating_sub(input);
            (total / 2, total - total / 2)
        }
    };
    let padded = input
        .checked_add(before)
        .and_then(|v| v.checked_add(after))
        .ok_or(Error::Overflow("padded input size"))?;
    // Input coordinates are `isize` (they go negative in the padding): the padded extent
    // must fit, or `input_row`/`input_col` would overflow.
    if padded > isize::MAX as usize {
        return Err(Error::Overflow("padded input size"));
    }
    if padded < extent {
        return Err(Error::Geometry(format!(
            "kernel {axis} extent {extent} (kernel {kernel}, dilation {dilation}) is larger than \
             the padded input {axis} {padded} ({input} + {before} + {after})"
        )));
    }
    Ok((before, after, (padded - extent) / stride + 1))
}

impl ConvGeometry {
    /// Resolves the geometry of a convolution of an input `[N, C_in, H, W]` (logical
    /// dimensions, whatever the memory layout) with a weight `[C_out, C_in/groups, kH, kW]`.
    pub fn new(input: [usize; 4], weight: [usize; 4], params: &Conv2dParams) -> Result<Self> {
        params.validate()?;
        let [batch, in_channels, in_h, in_w] = input;
        let [out_channels, channels_per_group, kernel_h, kernel_w] = weight;
        if input.contains(&0) {
            return Err(Error::shape(
                "conv2d input",
                "all dimensions at least 1",
                format!("[N={batch}, C={in_channels}, H={in_h}, W={in_w}]"),
            ));
        }
        if weight.contains(&0) {
            return Err(Error::shape(
                "conv2d weight",
                "all dimensions at least 1",
                format!("{weight:?}"),
            ));
        }
        let groups = params.groups;
        if in_channels % groups != 0 {
            return Err(Error::param(
                "groups",
                format!("{groups} does not divide the {in_channels} input channels"),
            ));
        }
        if out_channels % groups != 0 {
            return Err(Error::param(
                "groups",
                format!("{groups} does not divide the {out_channels} output channels"),
            ));
        }
        if channels_per_group != in_channels / groups {
            return Err(Error::shape(
                "conv2d weight",
                format!(
                    "[C_out, C_in/groups = {}, kH, kW] for {in_channels} input channels and {groups} groups",
                    in_channels / groups
                ),
                format!("{weight:?}"),
            ));
        }
        let (pads_h, pads_w) = match params.padding {
            Padding::Valid => (Some((0, 0)), Some((0, 0))),
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            } => (Some((top, bottom)), Some((left, right))),
            Padding::Same => (None, None),
        };
        let [stride_h, stride_w] = params.stride;
        let [dilation_h, dilation_w] = params.dilation;
        let (pad_top, pad_bottom, out_h) =
            resolve_axis("height", in_h, kernel_h, stride_h, dilation_h, pads_h)?;
        let (pad_left, pad_right, out_w) =
            resolve_axis("width", in_w, kernel_w, stride_w, dilation_w, pads_w)?;
        let mode = params.padding_mode;
        let max_pad_h = pad_top.max(pad_bottom);
        let max_pad_w = pad_left.max(pad_right);
        match mode {
            PaddingMode::Reflect if max_pad_h >= in_h || max_pad_w >= in_w => {
                return Err(Error::Geometry(format!(
                    "reflect padding ({pad_top}, {pad_bottom}, {pad_left}, {pad_right}) must be \
                     smaller than the input size {in_h}x{in_w}"
                )))
            }
            PaddingMode::Circular if max_pad_h > in_h || max_pad_w > in_w => {
                return Err(Error::Geometry(format!(
                    "circular padding ({pad_top}, {pad_bottom}, {pad_left}, {pad_right}) must not \
                     exceed the input size {in_h}x{in_w}"
                )))
            }
            _ => {}
        }
        let geometry = ConvGeometry {
            batch,
            in_channels,
            in_h,
            in_w,
            out_channels,
            kernel_h,
            kernel_w,
            stride_h,
            stride_w,
            dilation_h,
            dilation_w,
            groups,
            pad_top,
            pad_bottom,
            pad_left,
            pad_right,
            padding_mode: mode,
            out_h,
            out_w,
        };
        // Every tensor this geometry describes must be addressable, in elements and bytes.
        crate::error::f32_elements(&geometry.input_dims(), "input size")?;
        crate::error::f32_elements(&geometry.output_dims(), "output size")?;
        crate::error::f32_elements(&geometry.weight_dims(), "weight size")?;
        Ok(geometry)
    }

    /// Batch size N.
    #[inline]
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// Input channels C_in.
    #[inline]
    pub fn in_channels(&self) -> usize {
        self.in_channels
    }
    /// Input height.
    #[inline]
    pub fn in_h(&self) -> usize {
        self.in_h
    }
    /// Input width.
    #[inline]
    pub fn in_w(&self) -> usize {
        self.in_w
    }
    /// Output channels C_out.
    #[inline]
    pub fn out_channels(&self) -> usize {
        self.out_channels
    }
    /// Kernel height.
    #[inline]
    pub fn kernel_h(&self) -> usize {
        self.kernel_h
    }
    /// Kernel width.
    #[inline]
    pub fn kernel_w(&self) -> usize {
        self.kernel_w
    }
    /// Vertical stride.
    #[inline]
    pub fn stride_h(&self) -> usize {
        self.stride_h
    }
    /// Horizontal stride.
    #[inline]
    pub fn stride_w(&self) -> usize {
        self.stride_w
    }
    /// Vertical dilation.
    #[inline]
    pub fn dilation_h(&self) -> usize {
        self.dilation_h
    }
    /// Horizontal dilation.
    #[inline]
    pub fn dilation_w(&self) -> usize {
        self.dilation_w
    }
    /// Groups.
    #[inline]
    pub fn groups(&self) -> usize {
        self.groups
    }
    /// Resolved padding above.
    #[inline]
    pub fn pad_top(&self) -> usize {
        self.pad_top
    }
    /// Resolved padding below.
    #[inline]
    pub fn pad_bottom(&self) -> usize {
        self.pad_bottom
    }
    /// Resolved padding on the left.
    #[inline]
    pub fn pad_left(&self) -> usize {
        self.pad_left
    }
    /// Resolved padding on the right.
    #[inline]
    pub fn pad_right(&self) -> usize {
        self.pad_right
    }
    /// Padding mode.
    #[inline]
    pub fn padding_mode(&self) -> PaddingMode {
        self.padding_mode
    }
    /// Output height.
    #[inline]
    pub fn out_h(&self) -> usize {
        self.out_h
    }
    /// Output width.
    #[inline]
    pub fn out_w(&self) -> usize {
        self.out_w
    }
    /// The input rows `[top, bottom)` that output rows `y0..y1` of one image read (kernel
    /// extent included), before clipping to the image: `top` is negative and `bottom`
    /// beyond `in_h` where the window reaches into the padding. Requires `y0 < y1`.
    pub(crate) fn input_window(&self, y0: usize, y1: usize) -> (isize, isize) {
        let extent = ((self.kernel_h - 1) * self.dilation_h + 1) as isize;
        let top = (y0 * self.stride_h) as isize - self.pad_top as isize;
        let bottom = ((y1 - 1) * self.stride_h) as isize - self.pad_top as isize + extent;
        (top, bottom)
    }

    /// Output rows `y0..y0 + count` of one image as a convolution of their own: the input
    /// rows `r0..r1` they read (clipped to the image) and the geometry of batch 1 whose
    /// input is those rows and whose vertical padding is the part of the window outside
    /// the image. Built through [`ConvGeometry::new`], so the band is as consistent as any
    /// geometry; an error if the rows are not inside the output or read no input row.
    pub(crate) fn row_band(
        &self,
        y0: usize,
        count: usize,
    ) -> Result<(std::ops::Range<usize>, ConvGeometry)> {
        let y1 = y0
            .checked_add(count)
            .filter(|&y1| count > 0 && y1 <= self.out_h);
        let Some(y1) = y1 else {
            return Err(Error::Geometry(format!(
                "row band {y0}..{y0}+{count} is not inside the {} output rows",
                self.out_h
            )));
        };
        let (top, bottom) = self.input_window(y0, y1);
        let in_h = self.in_h as isize;
        let r0 = top.clamp(0, in_h);
        let r1 = bottom.clamp(r0, in_h);
        let params = Conv2dParams {
            stride: [self.stride_h, self.stride_w],
            dilation: [self.dilation_h, self.dilation_w],
            padding: Padding::asymmetric(
                (r0 - top) as usize,
                (bottom - r1) as usize,
                self.pad_left,
                self.pad_right,
            ),
            padding_mode: self.padding_mode,
            groups: self.groups,
        };
        let input = [1, self.in_channels, (r1 - r0) as usize, self.in_w];
        let band = ConvGeometry::new(input, self.weight_dims(), &params)?;
        if band.out_h != count {
            return Err(Error::Geometry(format!(
                "row band {y0}..{y1} cut to input rows {r0}..{r1} gives {} output rows",
                band.out_h
            )));
        }
        Ok((r0 as usize..r1 as usize, band))
    }
    /// Input channels per group.
    pub fn in_channels_per_group(&self) -> usize {
        self.in_channels / self.groups
    }
    /// Output channels per group.
    pub fn out_channels_per_group(&self) -> usize {
        self.out_channels / self.groups
    }
    /// True when each group sees exactly one input channel (depthwise, any multiplier).
    pub fn is_depthwise(&self) -> bool {
        self.groups == self.in_channels
    }
    /// True for a 1×1, stride-1, unpadded, ungrouped convolution (a plain GEMM).
    pub fn is_pointwise(&self) -> bool {
        self.kernel_h == 1
            && self.kernel_w == 1
            && self.stride_h == 1
            && self.stride_w == 1
            && self.groups == 1
            && self.pad_top + self.pad_bottom + self.pad_left + self.pad_right == 0
    }
    /// Logical input dimensions `[N, C_in, H, W]`.
    pub fn input_dims(&self) -> [usize; 4] {
        [self.batch, self.in_channels, self.in_h, self.in_w]
    }
    /// Logical output dimensions `[N, C_out, out_H, out_W]`.
    pub fn output_dims(&self) -> [usize; 4] {
        [self.batch, self.out_channels, self.out_h, self.out_w]
    }
    /// Weight dimensions `[C_out, C_in/groups, kH, kW]`.
    pub fn weight_dims(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels_per_group(),
            self.kernel_h,
            self.kernel_w,
        ]
    }
    /// Input row read by output row `oy` and kernel row `i` (may be outside `[0, in_h)`).
    #[inline]
    pub fn input_row(&self, oy: usize, i: usize) -> isize {
        (oy * self.stride_h + i * self.dilation_h) as isize - self.pad_top as isize
    }
    /// Input column read by output column `ox` and kernel column `j` (may be outside `[0, in_w)`).
    #[inline]
    pub fn input_col(&self, ox: usize, j: usize) -> isize {
        (ox * self.stride_w + j * self.dilation_w) as isize - self.pad_left as isize
    }
    /// The output columns `ox` for which kernel column `j` reads inside the input:
    /// `0 ≤ ox·s + j·d − pad_left < in_w`. Possibly empty.
    pub fn valid_cols(&self, j: usize) -> std::ops::Range<usize> {
        valid_range(
            j * self.dilation_w,
            self.pad_left,
            self.stride_w,
            self.in_w,
            self.out_w,
        )
    }
    /// The output rows `oy` for which kernel row `i` reads inside the input. Possibly empty.
    pub fn valid_rows(&self, i: usize) -> std::ops::Range<usize> {
        valid_range(
            i * self.dilation_h,
            self.pad_top,
            self.stride_h,
            self.in_h,
            self.out_h,
        )
    }
    /// The output rows for which every kernel row reads inside the input (the interior).
    pub fn interior_rows(&self) -> std::ops::Range<usize> {
        intersect((0..self.kernel_h).map(|i| self.valid_rows(i)), self.out_h)
    }
    /// The output columns for which every kernel column reads inside the input.
    pub fn interior_cols(&self) -> std::ops::Range<usize> {
        intersect((0..self.kernel_w).map(|j| self.valid_cols(j)), self.out_w)
    }
}

/// Output positions `o < out` with `0 ≤ o·stride + offset − pad < n`.
fn valid_range(
    offset: usize,
    pad: usize,
    stride: usize,
    n: usize,
    out: usize,
) -> std::ops::Range<usize> {
    // o·s ≥ pad − offset  ⇒ o ≥ ceil((pad − offset) / s)
    let start = pad.saturating_sub(offset).div_ceil(stride);
    // o·s + offset − pad ≤ n − 1  ⇒ o ≤ (n − 1 + pad − offset) / s
    let end = match (n - 1 + pad).checked_sub(offset) {
        Some(limit) => (limit / stride + 1).min(out),
        None => 0,
    };
    start.min(end)..end
}

fn intersect(
    ranges: impl Iterator<Item = std::ops::Range<usize>>,
    out: usize,
) -> std::ops::Range<usize> {
    let (mut lo, mut hi) = (0, out);
    for r in ranges {
        lo = lo.max(r.start);
        hi = hi.min(r.end);
    }
    lo.min(hi)..hi
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(input: [usize; 4], weight: [usize; 4], params: Conv2dParams) -> ConvGeometry {
        ConvGeometry::new(input, weight, &params).unwrap()
    }

    #[test]
    fn seed_example_valid_3x3_on_7x7() {
        let g = geometry([1, 3, 7, 7], [128, 3, 3, 3], Conv2dParams::default());
        assert_eq!((g.out_h, g.out_w), (5, 5));
    }

    #[test]
    fn same_padding_matches_tf_at_stride_2_even_input() {
        // TF: in 224, k 3, s 2 → out 112, total pad max((112−1)·2 + 3 − 224, 0) = 1 → (0, 1).
        let p = Conv2dParams::default()
            .with_stride(2)
            .with_padding(Padding::Same);
        let g = geometry([1, 1, 224, 224], [1, 1, 3, 3], p);
        assert_eq!((g.out_h, g.pad_top, g.pad_bottom), (112, 0, 1));
        // odd input 225 → out 113, total = 112·2 + 3 − 225 = 2 → (1, 1).
        let g = geometry([1, 1, 225, 225], [1, 1, 3, 3], p);
        assert_eq!((g.out_h, g.pad_top, g.pad_bottom), (113, 1, 1));
        // 5×5 stride 2 on 112: total = 55·2 + 5 − 112 = 3 → (1, 2).
        let p5 = p;
        let g = geometry([1, 1, 112, 112], [1, 1, 5, 5], p5);
        assert_eq!((g.out_h, g.pad_left, g.pad_right), (56, 1, 2));
    }

    #[test]
    fn same_padding_with_dilation_stride_1_keeps_size() {
        let p = Conv2dParams::default()
            .with_dilation(3)
            .with_padding(Padding::Same);
        let g = geometry([1, 1, 10, 9], [1, 1, 3, 2], p);
        assert_eq!((g.out_h, g.out_w), (10, 9));
        assert_eq!((g.pad_top, g.pad_bottom), (3, 3));
        assert_eq!((g.pad_left, g.pad_right), (1, 2));
    }

    #[test]
    fn kernel_larger_than_padded_input_is_an_error() {
        let e = ConvGeometry::new([1, 1, 2, 2], [1, 1, 3, 3], &Conv2dParams::default());
        assert!(matches!(e, Err(Error::Geometry(_))));
    }

    #[test]
    fn reflect_padding_must_be_smaller_than_input() {
        let p = Conv2dParams::default()
            .with_padding(Padding::symmetric(3))
            .with_padding_mode(PaddingMode::Reflect);
        assert!(ConvGeometry::new([1, 1, 3, 8], [1, 1, 3, 3], &p).is_err());
        assert!(ConvGeometry::new([1, 1, 4, 8], [1, 1, 3, 3], &p).is_ok());
    }

    #[test]
    fn groups_must_divide_channels() {
        let p = Conv2dParams::default().with_groups(4);
        assert!(ConvGeometry::new([1, 6, 5, 5], [8, 1, 1, 1], &p).is_err());
        assert!(ConvGeometry::new([1, 8, 5, 5], [6, 2, 1, 1], &p).is_err());
        assert!(ConvGeometry::new([1, 8, 5, 5], [8, 3, 1, 1], &p).is_err());
        assert!(ConvGeometry::new([1, 8, 5, 5], [8, 2, 1, 1], &p).is_ok());
    }

    #[test]
    fn zero_stride_dilation_groups_rejected() {
        for p in [
            Conv2dParams::default().with_stride(0),
            Conv2dParams::default().with_dilation(0),
            Conv2dParams::default().with_groups(0),
        ] {
            assert!(matches!(
                ConvGeometry::new([1, 1, 5, 5], [1, 1, 1, 1], &p),
                Err(Error::InvalidParam { .. })
            ));
        }
    }

    #[test]
    fn absurd_sizes_overflow_cleanly() {
        let big = usize::MAX / 2;
        let r = ConvGeometry::new([big, big, 4, 4], [1, big, 1, 1], &Conv2dParams::default());
        assert!(matches!(r, Err(Error::Overflow(_))));
    }

    #[test]
    fn padded_size_beyond_isize_is_an_overflow_error() {
        // Fits usize but not isize: input coordinates would wrap (a panic with overflow
        // checks). Found through `dsconv conv2d --padding 2^63,0,0,0 --stride 2^63`.
        let top = 1usize << 63;
        let p = Conv2dParams::default()
            .with_stride(top)
            .with_padding(Padding::asymmetric(top, 0, 0, 0));
        assert_eq!(
            ConvGeometry::new([1, 1, 7, 7], [1, 1, 3, 3], &p),
            Err(Error::Overflow("padded input size"))
        );
        // The largest padded size that fits is accepted, and its coordinates are exact.
        let top = isize::MAX as usize - 7;
        let p = Conv2dParams::default()
            .with_stride(top)
            .with_padding(Padding::asymmetric(top, 0, 0, 0));
        let g = ConvGeometry::new([1, 1, 7, 7], [1, 1, 3, 3], &p).unwrap();
        assert_eq!(g.out_h, 2);
        assert_eq!(g.input_row(0, 0), -(top as isize));
        assert_eq!(g.input_row(1, 2), 2);
    }

    #[test]
    fn valid_ranges_agree_with_brute_force() {
        for stride in 1..4 {
            for dilation in 1..3 {
                for pad in 0..4 {
                    for n in 1..9 {
                        let p = Conv2dParams::default()
                            .with_stride(stride)
                            .with_dilation(dilation)
                            .with_padding(Padding::asymmetric(pad, pad + 1, pad + 1, pad));
                        let Ok(g) = ConvGeometry::new([1, 1, n, n], [1, 1, 3, 3], &p) else {
                            continue;
                        };
                        for j in 0..3 {
                            let brute: Vec<usize> = (0..g.out_w)
                                .filter(|&ox| (0..n as isize).contains(&g.input_col(ox, j)))
                                .collect();
                            let range: Vec<usize> = g.valid_cols(j).collect();
                            assert_eq!(
                                brute, range,
                                "stride {stride} dil {dilation} pad {pad} n {n} j {j}"
                            );
                            let brute: Vec<usize> = (0..g.out_h)
                                .filter(|&oy| (0..n as isize).contains(&g.input_row(oy, j)))
                                .collect();
                            assert_eq!(brute, g.valid_rows(j).collect::<Vec<_>>());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn padding_modes_map_like_pytorch() {
        let n = 4; // abcd
        let reflect: Vec<_> = (-3..7)
            .map(|i| PaddingMode::Reflect.source_index(i, n).unwrap())
            .collect();
        assert_eq!(reflect, [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
        let replicate: Vec<_> = (-2..6)
            .map(|i| PaddingMode::Replicate.source_index(i, n).unwrap())
            .collect();
        assert_eq!(replicate, [0, 0, 0, 1, 2, 3, 3, 3]);
        let circular: Vec<_> = (-4..8)
            .map(|i| PaddingMode::Circular.source_index(i, n).unwrap())
            .collect();
        assert_eq!(circular, [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]);
        assert_eq!(PaddingMode::Zeros.source_index(-1, n), None);
        // An empty axis panicked: `clamp(0, -1)` (replicate), `rem_euclid(0)` (circular).
        for mode in [
            PaddingMode::Zeros,
            PaddingMode::Reflect,
            PaddingMode::Replicate,
            PaddingMode::Circular,
        ] {
            assert_eq!(mode.source_index(-1, 0), None);
            assert_eq!(mode.source_index(0, 0), None);
        }
        assert_eq!(PaddingMode::Zeros.source_index(4, n), None);
    }
}
