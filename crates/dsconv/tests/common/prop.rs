//! What the property tests share: a seeded configuration, one two-thread pool, and the
//! strategies for every padding form and mode.

use dsconv::{Executor, Padding, PaddingMode};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use std::sync::OnceLock;

/// `cases` cases from the fixed seed `seed` (every run checks the same cases), nothing
/// persisted.
pub fn config(cases: u32, seed: u64) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    }
}

/// One shared two-thread pool (a pool per case would spawn threads per case).
pub fn two_threads() -> &'static Executor {
    static POOL: OnceLock<Executor> = OnceLock::new();
    POOL.get_or_init(|| Executor::new(2).expect("two-thread pool"))
}

/// Valid, TF same, symmetric, per-axis and asymmetric padding of 0–4 pixels.
pub fn padding_strategy() -> impl Strategy<Value = Padding> {
    prop_oneof![
        Just(Padding::Valid),
        Just(Padding::Same),
        (0usize..4).prop_map(Padding::symmetric),
        (0usize..4, 0usize..4).prop_map(|(h, w)| Padding::per_axis(h, w)),
        (0usize..5, 0usize..5, 0usize..5, 0usize..5)
            .prop_map(|(t, b, l, r)| Padding::asymmetric(t, b, l, r)),
    ]
}

/// Every padding mode.
pub fn mode_strategy() -> impl Strategy<Value = PaddingMode> {
    prop_oneof![
        Just(PaddingMode::Zeros),
        Just(PaddingMode::Reflect),
        Just(PaddingMode::Replicate),
        Just(PaddingMode::Circular),
    ]
}
