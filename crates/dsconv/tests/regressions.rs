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

/// Regression: `BatchNorm`'s fields are public, so one built without `BatchNorm::new` may
/// have short `beta`/`mean`/`var`; folding it indexed past their end and panicked.
#[test]
fn batchnorm_with_short_vectors_is_an_error_not_an_index_panic() {
    let bn = dsconv::BatchNorm {
        gamma: vec![1.0; 2],
        beta: vec![0.0; 2],
        mean: vec![0.0; 1],
        var: vec![1.0; 2],
        eps: 1e-5,
    };
    let w = Tensor::from_nchw(vec![1.0; 2], [2, 1, 1, 1]).unwrap();
    let conv = Conv2d::new(w, None, Conv2dParams::default()).unwrap();
    let got = conv.with_batchnorm(&bn);
    assert!(
        matches!(
            &got,
            Err(Error::Shape {
                what: "batchnorm",
                ..
            })
        ),
        "{got:?}"
    );
}

/// Regression: an empty depthwise weight `[0, 1, 3, 3]` was reported as "invalid groups:
/// must be at least 1" (its zero channels became zero groups), naming nothing the caller gave.
#[test]
fn empty_depthwise_weight_is_named_as_such() {
    let w = Tensor::from_nchw(vec![], [0, 1, 3, 3]).unwrap();
    let got = dsconv::DepthwiseConv2d::new(w, None, Conv2dParams::default());
    let message = got.unwrap_err().to_string();
    assert!(message.starts_with("depthwise weight"), "{message}");
    assert!(message.contains("[0, 1, 3, 3]"), "{message}");
}

/// Regression: a layer's `cost` saturated at u64::MAX MACs for an input far larger than
/// memory (the cost needs no tensor), returning a wrong count as if it were right.
#[test]
fn layer_cost_beyond_u64_is_an_overflow_error() {
    let w = Tensor::from_nchw(vec![0.0; 64 * 64 * 9], [64, 64, 3, 3]).unwrap();
    let conv = Conv2d::new(w, None, Conv2dParams::default()).unwrap();
    // Every tensor is addressable (2^60 elements), but 64 × (2^27 − 2)² × 576 MACs ≈ 2^69.
    let got = conv.cost([1, 64, 1 << 27, 1 << 27]);
    assert_eq!(got, Err(Error::Overflow("conv2d cost")));
    assert_eq!(conv.cost([1, 64, 7, 7]).unwrap().macs, 64 * 25 * 576);
}
