//! Regression tests, each named after the bug it pins down.

use dsconv::{reference, Conv2d, Conv2dParams, Error, Layout, Padding, Tensor};

/// A 1×1 convolution of a 1×1 image whose only padding is `top` rows above it: the output
/// has `top + 1` rows, each of one value.
fn tall_output(top: usize) -> (Conv2d, Tensor, Tensor) {
    let w = Tensor::from_nchw(vec![1.0], [1, 1, 1, 1]).unwrap();
    let params = Conv2dParams::default().with_padding(Padding::asymmetric(top, 0, 0, 0));
    let layer = Conv2d::new(w.clone(), None, params).unwrap();
    (
        layer,
        Tensor::from_nchw(vec![1.0], [1, 1, 1, 1]).unwrap(),
        w,
    )
}

/// Regression: an output of 2⁶² + 1 elements fits `usize` but its 2⁶⁴ + 4 bytes do not;
/// `vec!` then panicked with "capacity overflow" instead of returning an error.
#[test]
fn output_bytes_beyond_isize_max_is_an_error_not_a_capacity_overflow_panic() {
    let (layer, x, w) = tall_output(1 << 62);
    for layout in [Layout::Nchw, Layout::Nhwc] {
        let got = layer.forward(&x.to_layout(layout));
        assert!(matches!(got, Err(Error::Overflow(_))), "{got:?}");
    }
    let got = reference::conv2d(&x, &w, None, layer.params());
    assert!(matches!(got, Err(Error::Overflow(_))), "{got:?}");
    let got = Tensor::zeros([1 << 62, 1, 1, 1], Layout::Nchw);
    assert!(matches!(got, Err(Error::Overflow(_))), "{got:?}");
}

/// Regression: an output of 2⁵⁸ + 1 elements (2⁶⁰ bytes, more than any address space)
/// passed every size check; the allocation then failed and aborted the whole process.
#[test]
fn unallocatable_output_is_an_error_not_an_abort() {
    let (layer, x, w) = tall_output(1 << 58);
    for layout in [Layout::Nchw, Layout::Nhwc] {
        let got = layer.forward(&x.to_layout(layout));
        assert!(matches!(got, Err(Error::Allocation { .. })), "{got:?}");
    }
    let got = reference::conv2d(&x, &w, None, layer.params());
    assert!(matches!(got, Err(Error::Allocation { .. })), "{got:?}");
    let got = Tensor::zeros([1 << 58, 1, 1, 1], Layout::Nhwc);
    assert!(matches!(got, Err(Error::Allocation { .. })), "{got:?}");
}
