//! Dense 4-D f32 tensors in NCHW or NHWC memory order.
//!
//! A [`Tensor`] knows its logical shape `[N, C, H, W]` and its [`Layout`]; `dims()`
//! returns the dimensions in memory order (`[N, C, H, W]` for NCHW, `[N, H, W, C]` for
//! NHWC). Convolution weights are tensors too, always in PyTorch's `[C_out, C_in/groups,
//! kH, kW]` order (use [`Layout::Nchw`] for them).

use crate::error::{f32_elements, product, Error, Result};

/// Memory order of a 4-D activation tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// `[N, C, H, W]`, PyTorch's default.
    #[default]
    Nchw,
    /// `[N, H, W, C]`, channels last; dsconv's native execution layout.
    Nhwc,
}

impl Layout {
    /// Memory-order dimensions from logical `[N, C, H, W]`.
    pub fn dims_from_logical(self, [n, c, h, w]: [usize; 4]) -> [usize; 4] {
        match self {
            Layout::Nchw => [n, c, h, w],
            Layout::Nhwc => [n, h, w, c],
        }
    }
    /// Logical `[N, C, H, W]` from memory-order dimensions.
    pub fn logical_from_dims(self, dims: [usize; 4]) -> [usize; 4] {
        match self {
            Layout::Nchw => dims,
            Layout::Nhwc => [dims[0], dims[3], dims[1], dims[2]],
        }
    }
    /// Lower-case name (`nchw`, `nhwc`).
    pub fn name(self) -> &'static str {
        match self {
            Layout::Nchw => "nchw",
            Layout::Nhwc => "nhwc",
        }
    }
}

impl std::str::FromStr for Layout {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "nchw" => Ok(Layout::Nchw),
            "nhwc" => Ok(Layout::Nhwc),
            other => Err(Error::param(
                "layout",
                format!("'{other}' is not nchw or nhwc"),
            )),
        }
    }
}

/// An owned 4-D f32 tensor.
#[derive(Debug)]
pub struct Tensor {
    /// The elements are `data[start..end]`: a workspace tensor skips up to 15 floats so
    /// that its first element sits on a 64-byte boundary, and may end before its buffer
    /// does (see [`Tensor::aligned_in`]).
    data: Vec<f32>,
    start: usize,
    end: usize,
    /// Logical `[N, C, H, W]`.
    logical: [usize; 4],
    layout: Layout,
}

impl Tensor {
    /// Wraps `data` whose memory order is `layout` and whose dimensions in that order are `dims`.
    pub fn new(data: Vec<f32>, dims: [usize; 4], layout: Layout) -> Result<Self> {
        let expected = product(&dims, "tensor size")?;
        if data.len() != expected {
            return Err(Error::shape(
                "tensor data",
                format!("{expected} elements for dims {dims:?}"),
                format!("{} elements", data.len()),
            ));
        }
        Ok(Tensor {
            data,
            start: 0,
            end: expected,
            logical: layout.logical_from_dims(dims),
            layout,
        })
    }

    /// A tensor of memory-order dims `dims` in `buffer`, its first element on a 64-byte
    /// boundary (full-vector loads and stores then never straddle two cache lines:
    /// 64-byte-aligned activations ran MobileNetV1 4% faster than the 16-byte alignment
    /// large `Vec`s get). Reuses `buffer`'s memory when it has room; the contents are
    /// unspecified. `buffer` comes back from [`into_buffer`](Self::into_buffer).
    /// Elements the buffer did not hold before are set to `fill`.
    pub(crate) fn aligned_in(
        mut buffer: Vec<f32>,
        dims: [usize; 4],
        layout: Layout,
        fill: f32,
    ) -> Result<Self> {
        const SLACK: usize = 64 / std::mem::size_of::<f32>() - 1;
        let len = f32_elements(&dims, "tensor size")?;
        let need = len
            .checked_add(SLACK)
            .ok_or(Error::Overflow("tensor size"))?;
        if buffer.capacity() < need {
            buffer.clear();
            buffer
                .try_reserve_exact(need)
                .map_err(|_| Error::Allocation {
                    what: "workspace tensor",
                    bytes: need.saturating_mul(std::mem::size_of::<f32>()),
                })?;
        }
        // Floats from the buffer's start to the next 64-byte boundary (the allocation is
        // at least 4-byte aligned, so this is exact). No reallocation below: capacity ≥
        // start + len.
        let start = (buffer.as_ptr() as usize).wrapping_neg() % 64 / std::mem::size_of::<f32>();
        let total = start + len;
        // A buffer is never shortened: the initialised floats past `total` stay, so that a
        // workspace buffer used for a smaller tensor and then a larger one is not filled
        // again every pass (that refill was ~3% of an EfficientNet-B0 pass).
        if buffer.len() < total {
            buffer.resize(total, fill);
        }
        Ok(Tensor {
            data: buffer,
            start,
            end: total,
            logical: layout.logical_from_dims(dims),
            layout,
        })
    }

    /// The whole buffer behind this tensor (for reuse by [`aligned_in`](Self::aligned_in)).
    pub(crate) fn into_buffer(self) -> Vec<f32> {
        self.data
    }

    /// An NCHW tensor (also the form for convolution weights `[C_out, C_in/g, kH, kW]`).
    pub fn from_nchw(data: Vec<f32>, dims: [usize; 4]) -> Result<Self> {
        Tensor::new(data, dims, Layout::Nchw)
    }

    /// An NHWC tensor from `[N, H, W, C]` data.
    pub fn from_nhwc(data: Vec<f32>, dims: [usize; 4]) -> Result<Self> {
        Tensor::new(data, dims, Layout::Nhwc)
    }

    /// A tensor of zeros with the given memory-order dimensions; an error (never an abort)
    /// when the memory cannot be allocated. Its first element sits on a 64-byte boundary.
    pub fn zeros(dims: [usize; 4], layout: Layout) -> Result<Self> {
        Tensor::filled(dims, layout, 0.0)
    }

    /// A tensor with every element `value`, memory-order dims `dims`, its first element on
    /// a 64-byte boundary (vector loads and stores of 64-byte-aligned activations ran the
    /// depthwise kernel up to 1.9× faster than on the 16-byte alignment of a plain large
    /// `Vec`: 3×3 C=32@112² 85 → 162 GFLOP/s); an error when it cannot be allocated.
    pub fn filled(dims: [usize; 4], layout: Layout, value: f32) -> Result<Self> {
        Tensor::aligned_in(Vec::new(), dims, layout, value)
    }

    /// A tensor filled by `f(n, c, h, w)` over logical indices.
    pub fn from_fn(
        logical: [usize; 4],
        layout: Layout,
        mut f: impl FnMut(usize, usize, usize, usize) -> f32,
    ) -> Result<Self> {
        let mut t = Tensor::zeros(layout.dims_from_logical(logical), layout)?;
        let [nn, cc, hh, ww] = logical;
        for n in 0..nn {
            for c in 0..cc {
                for h in 0..hh {
                    for w in 0..ww {
                        let o = t.offset(n, c, h, w);
                        t.data_mut()[o] = f(n, c, h, w);
                    }
                }
            }
        }
        Ok(t)
    }

    /// Dimensions in memory order.
    pub fn dims(&self) -> [usize; 4] {
        self.layout.dims_from_logical(self.logical)
    }
    /// Logical dimensions `[N, C, H, W]`, whatever the layout.
    pub fn logical_dims(&self) -> [usize; 4] {
        self.logical
    }
    /// Memory layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }
    /// The elements in memory order.
    pub fn data(&self) -> &[f32] {
        &self.data[self.start..self.end]
    }
    /// The elements in memory order, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data[self.start..self.end]
    }
    /// Consumes the tensor, returning its elements in memory order.
    pub fn into_data(mut self) -> Vec<f32> {
        self.data.truncate(self.end);
        self.data.drain(..self.start);
        self.data
    }
    /// Reinterprets the elements in memory order as `dims` in `layout` (same element
    /// count), keeping the buffer: no copy, no allocation. For graph runtimes that keep
    /// one buffer under several views (`dsconv-onnx`).
    ///
    /// ```
    /// use dsconv::{Layout, Tensor};
    /// let mut t = Tensor::zeros([1, 1, 1, 24], Layout::Nhwc)?;
    /// t.reshape([1, 2, 3, 4], Layout::Nhwc)?;
    /// assert_eq!((t.dims(), t.logical_dims()), ([1, 2, 3, 4], [1, 4, 2, 3]));
    /// assert!(t.reshape([1, 1, 1, 25], Layout::Nhwc).is_err());
    /// # Ok::<(), dsconv::Error>(())
    /// ```
    pub fn reshape(&mut self, dims: [usize; 4], layout: Layout) -> Result<()> {
        let expected = product(&dims, "tensor size")?;
        if expected != self.len() {
            return Err(Error::shape(
                "tensor reshape",
                format!("dims with {} elements", self.len()),
                format!("{dims:?} ({expected} elements)"),
            ));
        }
        self.logical = layout.logical_from_dims(dims);
        self.layout = layout;
        Ok(())
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    /// True when the tensor has no elements (never, for a validly built tensor).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Offset of logical element `(n, c, h, w)` in memory (not checked against the
    /// dimensions: indexing `data()` with it panics when an index is out of range).
    #[inline]
    pub fn offset(&self, n: usize, c: usize, h: usize, w: usize) -> usize {
        let [_, cc, hh, ww] = self.logical;
        match self.layout {
            Layout::Nchw => ((n * cc + c) * hh + h) * ww + w,
            Layout::Nhwc => ((n * hh + h) * ww + w) * cc + c,
        }
    }

    /// Logical element `(n, c, h, w)`.
    ///
    /// # Panics
    /// If an index is outside the logical dimensions, like slice indexing.
    #[inline]
    pub fn at(&self, n: usize, c: usize, h: usize, w: usize) -> f32 {
        self.data()[self.offset(n, c, h, w)]
    }

    /// This tensor in NHWC: borrowed when it already is, else converted (a copy).
    pub fn as_nhwc(&self) -> std::borrow::Cow<'_, Tensor> {
        match self.layout {
            Layout::Nhwc => std::borrow::Cow::Borrowed(self),
            Layout::Nchw => std::borrow::Cow::Owned(self.to_layout(Layout::Nhwc)),
        }
    }

    /// The same values in another layout (a copy; a clone if the layout is unchanged).
    pub fn to_layout(&self, layout: Layout) -> Tensor {
        if layout == self.layout {
            return self.clone();
        }
        let [nn, cc, hh, ww] = self.logical;
        // The sizes are this tensor's, so only the allocation can fail: abort as `vec!`
        // would.
        let mut out = Tensor::filled(layout.dims_from_logical(self.logical), layout, 0.0)
            .unwrap_or_else(|_| {
                std::alloc::handle_alloc_error(std::alloc::Layout::new::<[f32; 16]>())
            });
        let data = out.data_mut();
        let plane = hh * ww;
        for n in 0..nn {
            let src = &self.data()[n * cc * plane..(n + 1) * cc * plane];
            let dst = &mut data[n * cc * plane..(n + 1) * cc * plane];
            match layout {
                Layout::Nhwc => transpose(src, cc, plane, dst),
                Layout::Nchw => transpose(src, plane, cc, dst),
            }
        }
        out
    }

    /// Largest absolute difference to `other` (same logical shape, any layouts).
    pub fn max_abs_diff(&self, other: &Tensor) -> Result<f32> {
        if self.logical != other.logical {
            return Err(Error::shape(
                "comparison",
                format!("{:?}", self.logical),
                format!("{:?}", other.logical),
            ));
        }
        let other = other.to_layout(self.layout);
        Ok(self
            .data()
            .iter()
            .zip(other.data())
            .map(|(a, b)| {
                if a.is_nan() || b.is_nan() {
                    f32::INFINITY
                } else {
                    (a - b).abs()
                }
            })
            .fold(0.0, f32::max))
    }

    /// Largest absolute value.
    pub fn max_abs(&self) -> f32 {
        self.data().iter().fold(0.0, |m, v| m.max(v.abs()))
    }
}

/// Equal logical dims, layout and elements (wherever in its buffer each tensor starts).
impl Clone for Tensor {
    /// A copy of the elements alone (not the rest of a workspace buffer).
    fn clone(&self) -> Self {
        Tensor {
            data: self.data().to_vec(),
            start: 0,
            end: self.len(),
            logical: self.logical,
            layout: self.layout,
        }
    }
}

impl PartialEq for Tensor {
    fn eq(&self, other: &Self) -> bool {
        self.logical == other.logical && self.layout == other.layout && self.data() == other.data()
    }
}

/// An NHWC activation whose pixels lie `pixel_stride ≥ C` floats apart: logical dims
/// `[N, C, H, W]`, pixel `(n, y, x)` at `data[((n·H + y)·W + x)·pixel_stride ..][..C]`.
/// The floats between pixels are padding that nothing reads. A network lays out its own
/// activations this way when C floats per pixel would crowd the L1 sets (see
/// [`Workspace::pixel_stride`](crate::workspace::Workspace::pixel_stride)); with
/// `pixel_stride = C` it is a plain NHWC tensor. Owned: the buffer comes from a
/// [`Workspace`](crate::workspace::Workspace) and goes back to it.
#[derive(Debug, Clone)]
pub struct StridedNhwc {
    /// Memory dims `[N, H, W, pixel_stride]`.
    buffer: Tensor,
    channels: usize,
}

impl StridedNhwc {
    /// Wraps an NHWC `buffer` of memory dims `[N, H, W, P]` as an activation of
    /// `channels ≤ P` channels per pixel.
    pub fn new(buffer: Tensor, channels: usize) -> Result<Self> {
        let [_, _, _, px] = buffer.dims();
        if buffer.layout() != Layout::Nhwc || channels == 0 || channels > px {
            return Err(Error::shape(
                "strided NHWC buffer",
                format!("an NHWC tensor of at least {channels} ≥ 1 floats per pixel"),
                format!("{} dims {:?}", buffer.layout().name(), buffer.dims()),
            ));
        }
        Ok(StridedNhwc { buffer, channels })
    }

    /// A plain tensor as an activation of pixel stride C (an NCHW one is converted;
    /// an NHWC one is moved, not copied).
    pub fn from_tensor(t: Tensor) -> Result<Self> {
        let c = t.logical_dims()[1];
        let t = match t.layout() {
            Layout::Nhwc => t,
            Layout::Nchw => t.to_layout(Layout::Nhwc),
        };
        StridedNhwc::new(t, c)
    }

    /// Logical `[N, C, H, W]`.
    pub fn logical_dims(&self) -> [usize; 4] {
        let [n, h, w, _] = self.buffer.dims();
        [n, self.channels, h, w]
    }

    /// Floats from one pixel to the next.
    pub fn pixel_stride(&self) -> usize {
        self.buffer.dims()[3]
    }

    /// Read access.
    pub fn view(&self) -> NhwcView<'_> {
        NhwcView {
            data: self.buffer.data(),
            logical: self.logical_dims(),
            px: self.pixel_stride(),
        }
    }

    /// Write access (every pixel's C floats; a kernel writing it leaves the padding alone).
    pub fn view_mut(&mut self) -> NhwcViewMut<'_> {
        let (logical, px) = (self.logical_dims(), self.pixel_stride());
        NhwcViewMut {
            data: self.buffer.data_mut(),
            logical,
            px,
        }
    }

    /// The plain NHWC tensor when the pixel stride is C, else `None`.
    pub fn as_tensor(&self) -> Option<&Tensor> {
        (self.pixel_stride() == self.channels).then_some(&self.buffer)
    }

    /// The buffer, memory dims `[N, H, W, pixel_stride]` (for a workspace to reuse).
    pub fn into_buffer(self) -> Tensor {
        self.buffer
    }
}

/// Checks `len` floats against logical dims `[N, C, H, W]` at pixel stride `px`.
fn check_strided(what: &'static str, len: usize, logical: [usize; 4], px: usize) -> Result<()> {
    let [n, c, h, w] = logical;
    let need = product(&[n, h, w, px], what)?;
    if logical.contains(&0) || px < c || len != need {
        return Err(Error::shape(
            what,
            format!("{n}·{h}·{w} pixels of {c} channels at a stride {px} ≥ {c}, all dims ≥ 1"),
            format!("{len} elements"),
        ));
    }
    Ok(())
}

/// A borrowed [`StridedNhwc`] (or plain NHWC data, `pixel_stride = C`).
#[derive(Debug, Clone, Copy)]
pub struct NhwcView<'a> {
    data: &'a [f32],
    logical: [usize; 4],
    px: usize,
}

impl<'a> NhwcView<'a> {
    /// `data` as logical dims `[N, C, H, W]` with pixels `pixel_stride ≥ C` floats apart;
    /// an error unless `data` holds exactly `N·H·W` pixels.
    pub fn new(data: &'a [f32], logical: [usize; 4], pixel_stride: usize) -> Result<Self> {
        check_strided("strided NHWC data", data.len(), logical, pixel_stride)?;
        Ok(NhwcView {
            data,
            logical,
            px: pixel_stride,
        })
    }

    /// A plain tensor in NHWC layout (an error for NCHW).
    pub fn of(t: &'a Tensor) -> Result<Self> {
        if t.layout() != Layout::Nhwc {
            return Err(Error::shape("strided NHWC view", "an NHWC tensor", "NCHW"));
        }
        let logical = t.logical_dims();
        NhwcView::new(t.data(), logical, logical[1])
    }

    /// Logical `[N, C, H, W]`.
    pub fn logical_dims(&self) -> [usize; 4] {
        self.logical
    }
    /// Floats from one pixel to the next.
    pub fn pixel_stride(&self) -> usize {
        self.px
    }
    /// The floats, padding included.
    pub fn data(&self) -> &'a [f32] {
        self.data
    }
}

/// A mutable [`NhwcView`].
#[derive(Debug)]
pub struct NhwcViewMut<'a> {
    data: &'a mut [f32],
    logical: [usize; 4],
    px: usize,
}

impl<'a> NhwcViewMut<'a> {
    /// As [`NhwcView::new`].
    pub fn new(data: &'a mut [f32], logical: [usize; 4], pixel_stride: usize) -> Result<Self> {
        check_strided("strided NHWC output", data.len(), logical, pixel_stride)?;
        Ok(NhwcViewMut {
            data,
            logical,
            px: pixel_stride,
        })
    }

    /// A plain tensor in NHWC layout (an error for NCHW).
    pub fn of(t: &'a mut Tensor) -> Result<Self> {
        if t.layout() != Layout::Nhwc {
            return Err(Error::shape("strided NHWC view", "an NHWC tensor", "NCHW"));
        }
        let logical = t.logical_dims();
        NhwcViewMut::new(t.data_mut(), logical, logical[1])
    }

    /// Logical `[N, C, H, W]`.
    pub fn logical_dims(&self) -> [usize; 4] {
        self.logical
    }
    /// Floats from one pixel to the next.
    pub fn pixel_stride(&self) -> usize {
        self.px
    }
    /// The floats, padding included.
    pub fn data_mut(&mut self) -> &mut [f32] {
        self.data
    }
}

/// `dst[j·rows + i] = src[i·cols + j]`: the transpose of a row-major `rows × cols` matrix
/// (NCHW → NHWC of one image is `transpose(x, C, H·W, y)`, NHWC → NCHW
/// `transpose(x, H·W, C, y)`), in 16 × 16 tiles so that both sides touch whole cache
/// lines: a plain double loop writes at a stride of `rows` floats and re-reads each output
/// line `rows` times (~1 ns per element for a batch of RGB images, against ~0.2 tiled).
///
/// # Panics
/// If `src` or `dst` is shorter than `rows · cols`.
pub fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    transpose_cols(src, rows, cols, 0..cols, dst);
}

/// Columns `cols_range` of [`transpose`]: `dst[(j − start)·rows + i] = src[i·cols + j]` for
/// `j` in the range, i.e. that range's rows of the transposed matrix, so that threads can
/// each write a disjoint part of the output.
///
/// # Panics
/// If `src` is shorter than `rows · cols`, the range ends past `cols`, or `dst` is shorter
/// than `rows · range.len()`.
pub fn transpose_cols(
    src: &[f32],
    rows: usize,
    cols: usize,
    cols_range: std::ops::Range<usize>,
    dst: &mut [f32],
) {
    const T: usize = 16;
    let (start, end) = (cols_range.start, cols_range.end);
    assert!(
        start <= end && end <= cols,
        "columns {start}..{end} of {cols}"
    );
    let (src, dst) = (&src[..rows * cols], &mut dst[..rows * (end - start)]);
    for r0 in (0..rows).step_by(T) {
        let r1 = (r0 + T).min(rows);
        for c0 in (start..end).step_by(T) {
            let c1 = (c0 + T).min(end);
            for c in c0..c1 {
                let o = (c - start) * rows;
                let out = &mut dst[o + r0..o + r1];
                for (k, y) in out.iter_mut().enumerate() {
                    *y = src[(r0 + k) * cols + c];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiled_transpose_matches_the_double_loop_across_tile_edges() {
        for (rows, cols) in [
            (1, 1),
            (3, 50176 / 64),
            (3, 17),
            (16, 16),
            (17, 33),
            (40, 5),
            (0, 7),
        ] {
            let src: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5 - 3.0).collect();
            let mut dst = vec![f32::NAN; rows * cols];
            transpose(&src, rows, cols, &mut dst);
            for i in 0..rows {
                for j in 0..cols {
                    assert_eq!(
                        dst[j * rows + i],
                        src[i * cols + j],
                        "{rows}x{cols} at {i},{j}"
                    );
                }
            }
        }
    }

    #[test]
    fn column_ranges_assemble_the_whole_transpose() {
        let (rows, cols) = (19, 37);
        let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let mut whole = vec![0.0; rows * cols];
        transpose(&src, rows, cols, &mut whole);
        for cuts in [
            &[0, 37][..],
            &[0, 1, 17, 36, 37],
            &[0, 16, 32, 37],
            &[0, 0, 5, 37],
        ] {
            let mut parts = vec![f32::NAN; rows * cols];
            for w in cuts.windows(2) {
                transpose_cols(&src, rows, cols, w[0]..w[1], &mut parts[w[0] * rows..]);
            }
            assert_eq!(parts, whole, "{cuts:?}");
        }
    }

    #[test]
    fn layout_round_trip_preserves_values() {
        let t = Tensor::from_fn([2, 3, 4, 5], Layout::Nchw, |n, c, h, w| {
            (n * 1000 + c * 100 + h * 10 + w) as f32
        })
        .unwrap();
        let u = t.to_layout(Layout::Nhwc);
        assert_eq!(u.dims(), [2, 4, 5, 3]);
        assert_eq!(u.at(1, 2, 3, 4), 1234.0);
        assert_eq!(u.data()[..4], [0.0, 100.0, 200.0, 1.0]);
        assert_eq!(u.to_layout(Layout::Nchw), t);
    }

    #[test]
    fn wrong_length_is_a_shape_error() {
        assert!(matches!(
            Tensor::from_nchw(vec![0.0; 5], [1, 1, 2, 3]),
            Err(Error::Shape { .. })
        ));
    }
}
