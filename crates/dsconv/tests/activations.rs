//! The kernels' vectorised sigmoid and SiLU (and the `exp` under them) against f64 over
//! the whole f32 range at every tier, their special values as PyTorch gives them, and
//! `Activation::apply_slice` equal to the scalar activation on every thread count.

use dsconv::kernels::{available_tiers, Tier};
use dsconv::{Activation, Executor};

/// Units in the last place between `got` and the f64 `want` rounded to f32 (0 when
/// both are the same special value).
fn ulps(got: f32, want: f64) -> u64 {
    let w = want as f32;
    if got.is_nan() || w.is_nan() {
        return if got.is_nan() && w.is_nan() {
            0
        } else {
            u64::MAX
        };
    }
    if got == w {
        return 0;
    }
    let key = |v: f32| {
        let b = v.to_bits() as i64;
        if b < 0 {
            i64::MIN - b
        } else {
            b
        }
    };
    (key(got) - key(w)).unsigned_abs()
}

fn tiers() -> Vec<Tier> {
    available_tiers().collect()
}

/// `act` over `data` on tier `tier` (one thread: the slice pass is element-wise).
fn activate_slice(tier: Tier, act: Activation, data: &mut [f32]) {
    let exec = Executor::single().with_isa(tier.isa()).unwrap();
    act.apply_slice(data, &exec);
}

/// The vectorised exp, through sigmoid and SiLU, against f64 over the whole f32 range at
/// every tier (sigmoid of x < −87 is exp(x) into the subnormals), with the special values.
#[test]
fn exp_sigmoid_silu_match_f64_everywhere() {
    const STEP: u32 = 331;
    let mut xs: Vec<f32> = Vec::new();
    // Every 331st f32 bit pattern from −110 to 110 (≈ 6.5 M values: a dense sweep,
    // subnormal results and both overflow edges included), plus special values.
    let (lo, hi) = (-110.0f32, 110.0f32);
    let mut b = hi.to_bits();
    while b > 0 {
        xs.push(f32::from_bits(b));
        b = b.saturating_sub(STEP);
    }
    let mut b = 0x8000_0000u32;
    while f32::from_bits(b) >= lo {
        xs.push(f32::from_bits(b));
        b += STEP;
    }
    xs.extend([
        0.0,
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE,
        88.72283,
        88.72284,
        -87.33654,
        -103.97208,
        -103.97209,
        f32::MAX,
        f32::MIN,
    ]);
    for tier in tiers() {
        for (act, f, name, tol) in [
            (
                Activation::Sigmoid,
                (|x: f64| 1.0 / (1.0 + (-x).exp())) as fn(f64) -> f64,
                "sigmoid",
                3,
            ),
            (Activation::Silu, |x: f64| x / (1.0 + (-x).exp()), "silu", 3),
        ] {
            let mut y = xs.clone();
            activate_slice(tier, act, &mut y);
            let mut worst = (0u64, 0f32);
            for (&x, &g) in xs.iter().zip(&y) {
                let want = f(x as f64);
                // As PyTorch's f32 kernel: once e⁻ˣ overflows f32 the result is
                // ±0 (sigmoid 0, SiLU −0), below the f64 value.
                let want = if (-x as f64).exp() > f32::MAX as f64 {
                    if name == "silu" && x.is_finite() {
                        -0.0
                    } else if name == "silu" {
                        f64::NAN
                    } else {
                        0.0
                    }
                } else {
                    want
                };
                let u = ulps(g, want);
                if u > worst.0 {
                    worst = (u, x);
                }
            }
            assert!(
                worst.0 <= tol,
                "{name} at {:?}: {} ulp at x = {}",
                tier.isa(),
                worst.0,
                worst.1
            );
        }
    }
}

/// The exponential's two scalings give the same bits: a vector whose lanes are all within
/// ±86 is scaled by adding to the exponent field, one with any lane beyond by the two
/// `pow2i` factors. Each value is run once among in-range neighbours and once in a vector
/// that one out-of-range lane (every 8th element, so in every vector at 8 and 16 lanes)
/// sends down the other path.
#[test]
fn exp_fast_and_guarded_scalings_agree_bitwise() {
    let mut xs: Vec<f32> = Vec::new();
    let mut b = 86.0f32.to_bits();
    while b > 0 {
        xs.push(f32::from_bits(b));
        xs.push(-f32::from_bits(b));
        b = b.saturating_sub(997);
    }
    xs.extend([85.99999, -85.99999, 0.0, -0.0, 1e-30, -1e-30]);
    for tier in tiers() {
        for act in [Activation::Sigmoid, Activation::Silu] {
            let plain: Vec<f32> = xs.iter().copied().filter(|x| x.abs() < 86.0).collect();
            let mut fast = plain.clone();
            activate_slice(tier, act, &mut fast);
            let mut guarded: Vec<f32> = Vec::new();
            for chunk in plain.chunks(7) {
                guarded.extend_from_slice(chunk);
                guarded.extend(std::iter::repeat_n(100.0, 8 - chunk.len()));
            }
            activate_slice(tier, act, &mut guarded);
            let slow: Vec<f32> = guarded
                .chunks(8)
                .zip(plain.chunks(7))
                .flat_map(|(g, p)| g[..p.len()].to_vec())
                .collect();
            for ((x, f), s) in plain.iter().zip(&fast).zip(&slow) {
                assert_eq!(
                    f.to_bits(),
                    s.to_bits(),
                    "{act:?} at {:?}, x = {x}",
                    tier.isa()
                );
            }
        }
    }
}

/// Special values as PyTorch's CPU kernels give them.
#[test]
fn specials_as_pytorch() {
    let inf = f32::INFINITY;
    for tier in tiers() {
        let mut y = [f32::NAN, inf, -inf, 0.0, -100.0, 100.0];
        activate_slice(tier, Activation::Sigmoid, &mut y);
        assert!(y[0].is_nan());
        assert_eq!(&y[1..], &[1.0, 0.0, 0.5, 0.0, 1.0]);
        let mut y = [f32::NAN, inf, -inf, 0.0, -100.0, 100.0, -0.0];
        activate_slice(tier, Activation::Silu, &mut y);
        assert!(y[0].is_nan() && y[2].is_nan());
        assert_eq!(y[1], inf);
        assert_eq!((y[3], y[4], y[5]), (0.0, -0.0, 100.0));
        assert!(y[4].is_sign_negative() && y[6].is_sign_negative());
    }
}

/// `apply_slice` at 1, 2 and 3 threads gives the same bits, and within 2 ulp of
/// `Activation::apply` (the standard library's exp) for every activation.
#[test]
fn apply_slice_is_thread_independent_and_close_to_apply() {
    let xs: Vec<f32> = (0..100_003).map(|i| (i as f32 - 50_000.0) * 1e-3).collect();
    for tier in tiers() {
        for act in [
            Activation::Relu,
            Activation::Relu6,
            Activation::HardSwish,
            Activation::Sigmoid,
            Activation::Silu,
            Activation::Clamp {
                min: -0.5,
                max: 2.0,
            },
        ] {
            let mut first: Option<Vec<u32>> = None;
            for threads in [1, 2, 3] {
                let exec = Executor::new(threads)
                    .unwrap()
                    .with_isa(tier.isa())
                    .unwrap();
                let mut y = xs.clone();
                act.apply_slice(&mut y, &exec);
                for (&x, &g) in xs.iter().zip(&y) {
                    let u = ulps(g, act.apply_f64(x as f64));
                    assert!(
                        u <= 3 || (g - act.apply(x)).abs() <= 1e-6,
                        "{act:?}({x}) = {g}"
                    );
                }
                let b: Vec<u32> = y.iter().map(|v| v.to_bits()).collect();
                match &first {
                    None => first = Some(b),
                    Some(f) => assert_eq!(f, &b, "{act:?}: {threads} threads differ"),
                }
            }
        }
    }
}
