//! Corrupt checkpoints give errors, never panics: thousands of seeded mutants (byte
//! flips, truncations, planted huge lengths, spliced chunks) of the three tiny fixtures,
//! plus crafted hostile files and every crash input the fuzzer found
//! (`tests/fixtures/weights/adversarial/`).

mod common;

use dsconv::rng::SplitMix64;
use dsconv::weights::StateDict;
use std::path::PathBuf;

fn fixture_dir() -> PathBuf {
    common::fixture_dir("weights")
}

/// Parses and, on success, checks that every tensor is internally consistent.
fn parse_ok_or_error(bytes: &[u8]) {
    if let Ok(sd) = StateDict::from_bytes(bytes, "mutant") {
        let mut total = 0usize;
        for name in sd.names() {
            let t = sd.get(name).unwrap();
            assert_eq!(t.data.len(), t.dims.iter().product::<usize>());
            total += t.data.len();
        }
        assert!(
            total <= 4 * bytes.len() + 65_536,
            "{total} elements from {} bytes",
            bytes.len()
        );
    }
}

fn mutate(rng: &mut SplitMix64, original: &[u8]) -> Vec<u8> {
    let mut b = original.to_vec();
    let pick = |rng: &mut SplitMix64, n: usize| (rng.next_u64() % n.max(1) as u64) as usize;
    match rng.next_u64() % 5 {
        // Flip 1–8 random bytes.
        0 => {
            for _ in 0..1 + pick(rng, 8) {
                let i = pick(rng, b.len());
                b[i] = rng.next_u64() as u8;
            }
        }
        // Truncate.
        1 => b.truncate(pick(rng, b.len())),
        // Plant a huge or negative little-endian length.
        2 => {
            let i = pick(rng, b.len().saturating_sub(8));
            let v: u64 = match rng.next_u64() % 4 {
                0 => u64::MAX,
                1 => u32::MAX as u64,
                2 => 1 << 40,
                _ => 0x7fff_ffff,
            };
            let bytes = v.to_le_bytes();
            let n = 1 + pick(rng, 8);
            for (k, byte) in bytes.iter().take(n).enumerate() {
                if let Some(x) = b.get_mut(i + k) {
                    *x = *byte;
                }
            }
        }
        // Duplicate a chunk somewhere else (opcode soup).
        3 => {
            let start = pick(rng, b.len());
            let len = pick(rng, 64).min(b.len() - start);
            let chunk = b[start..start + len].to_vec();
            let at = pick(rng, b.len());
            b.splice(at..at, chunk);
        }
        // Delete a chunk.
        _ => {
            let start = pick(rng, b.len());
            let len = pick(rng, 32).min(b.len() - start);
            b.drain(start..start + len);
        }
    }
    b
}

fn mutants_of(file: &str, seed: u64, count: usize) {
    let original = std::fs::read(fixture_dir().join(file)).unwrap();
    StateDict::from_bytes(&original, file).unwrap();
    let mut rng = SplitMix64::new(seed);
    for _ in 0..count {
        let m = mutate(&mut rng, &original);
        parse_ok_or_error(&m);
        // Mutate twice, too, to get past the first check that fails.
        let m2 = mutate(&mut rng, &m);
        parse_ok_or_error(&m2);
    }
}

#[test]
fn mutated_zip_checkpoints_never_panic() {
    mutants_of("tiny_zip.pth", 1, 3000);
}

#[test]
fn mutated_legacy_checkpoints_never_panic() {
    mutants_of("tiny_legacy.pth", 2, 3000);
}

#[test]
fn mutated_safetensors_never_panic() {
    mutants_of("tiny.safetensors", 3, 3000);
}

/// Crafted hostile files (`gen_adversarial.py`) and any crash input the fuzzer finds
/// (`fuzz/README.md`) live in `adversarial/`; each must be refused with a format error.
#[test]
fn adversarial_inputs_are_refused_with_the_reason() {
    let expected = [
        ("expanded_1e9.pth", "exceed what the file can describe"),
        ("legacy_huge_numel.pth", "do not fit"),
        ("memo_bomb.pth", "budget"),
        ("deep_nesting.pth", "nested deeper"),
        ("deflated.pth", "ompression"),
    ];
    let dir = fixture_dir().join("adversarial");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(&path).unwrap();
        let err = StateDict::from_bytes(&bytes, &name).expect_err(&name);
        assert!(
            matches!(err, dsconv::Error::Format { .. }),
            "{name}: {err:?}"
        );
        if let Some((_, reason)) = expected.iter().find(|(n, _)| *n == name) {
            assert!(err.to_string().contains(reason), "{name}: {err}");
            seen += 1;
        }
    }
    assert_eq!(seen, expected.len());
}
