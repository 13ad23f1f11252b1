//! Threading for the training layers' element-wise passes and per-channel sums, bitwise
//! identical for every thread count: element-wise work does not depend on how it is split,
//! and a per-channel sum is formed over fixed blocks of pixels (the same blocks for any
//! thread count), each block summed by one thread in pixel order and the blocks' sums added
//! in block order.

use crate::exec::Executor;
use std::sync::Mutex;

/// Below this many elements an element-wise pass stays on the calling thread.
const MIN_PARALLEL: usize = 1 << 15;

/// Pixels per block of a per-channel sum (fixed: the blocks, and so the bits, do not
/// depend on the thread count).
pub(crate) const SUM_BLOCK: usize = 1024;

/// How many pieces a pass over `len` elements is cut into.
fn pieces_for(exec: &Executor, len: usize) -> usize {
    if len < MIN_PARALLEL {
        1
    } else {
        exec.threads().clamp(1, len / (MIN_PARALLEL / 2))
    }
}

/// Runs `f` on every piece, the pieces spread over `exec`'s threads.
pub(crate) fn run_pieces<T: Send>(exec: &Executor, pieces: Vec<T>, f: impl Fn(T) + Sync) {
    if pieces.len() <= 1 || exec.threads() == 1 {
        pieces.into_iter().for_each(f);
        return;
    }
    let slots: Vec<Mutex<Option<T>>> = pieces.into_iter().map(|p| Mutex::new(Some(p))).collect();
    exec.run_tasks(slots.len(), |i| {
        let piece = slots[i].lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(p) = piece {
            f(p);
        }
    });
}

/// Elements per piece when `len` elements of `unit`-element records are cut for `exec`
/// (a multiple of `unit`).
fn piece_len(exec: &Executor, len: usize, unit: usize) -> usize {
    let unit = unit.max(1);
    let units = len.div_ceil(unit).max(1);
    units.div_ceil(pieces_for(exec, len)).max(1) * unit
}

/// `f(a_chunk, b_chunk)` over matching chunks of `a` (mutable) and `b` (same length),
/// cut at multiples of `unit` elements.
pub(crate) fn zip_mut(
    exec: &Executor,
    a: &mut [f32],
    b: &[f32],
    unit: usize,
    f: impl Fn(&mut [f32], &[f32]) + Sync,
) {
    debug_assert_eq!(a.len(), b.len());
    let step = piece_len(exec, a.len(), unit);
    let pieces: Vec<_> = a.chunks_mut(step).zip(b.chunks(step)).collect();
    run_pieces(exec, pieces, |(x, y)| f(x, y));
}

/// `f(a_chunk, b_chunk)` over matching chunks of `a` and `b` (both written, one length),
/// cut at multiples of `unit` elements.
pub(crate) fn pair_mut(
    exec: &Executor,
    a: &mut [f32],
    b: &mut [f32],
    unit: usize,
    f: impl Fn(&mut [f32], &mut [f32]) + Sync,
) {
    debug_assert_eq!(a.len(), b.len());
    let step = piece_len(exec, a.len(), unit);
    let pieces: Vec<_> = a.chunks_mut(step).zip(b.chunks_mut(step)).collect();
    run_pieces(exec, pieces, |(x, y)| f(x, y));
}

/// `f(a_chunk, mask_chunk)` over matching chunks of `a` and a byte per element of it.
pub(crate) fn pair_mask(
    exec: &Executor,
    a: &mut [f32],
    mask: &mut [u8],
    f: impl Fn(&mut [f32], &mut [u8]) + Sync,
) {
    debug_assert_eq!(a.len(), mask.len());
    let step = piece_len(exec, a.len(), 64);
    let pieces: Vec<_> = a.chunks_mut(step).zip(mask.chunks_mut(step)).collect();
    run_pieces(exec, pieces, |(x, m)| f(x, m));
}

/// `f(chunk)` over chunks of `a` cut at multiples of `unit` elements.
pub(crate) fn each_mut(exec: &Executor, a: &mut [f32], unit: usize, f: impl Fn(&mut [f32]) + Sync) {
    let step = piece_len(exec, a.len(), unit);
    let pieces: Vec<_> = a.chunks_mut(step).collect();
    run_pieces(exec, pieces, f);
}

/// Per-channel sums over the pixels of NHWC data of `c` channels: `acc(block_a, block_b,
/// sums)` adds a block of whole pixels of `a` and the same pixels of `b` (`b` may be empty:
/// then `block_b` is empty) into `sums` (`width · c` f64 values, laid out as the caller
/// wants). Blocks of [`SUM_BLOCK`] pixels are summed alone, each on one thread, then added
/// in block order: the same bits for every thread count.
pub(crate) fn channel_sums(
    exec: &Executor,
    a: &[f32],
    b: &[f32],
    c: usize,
    width: usize,
    acc: impl Fn(&[f32], &[f32], &mut [f64]) + Sync,
) -> Vec<f64> {
    let size = width * c;
    let pixels = a.len() / c.max(1);
    let blocks = pixels.div_ceil(SUM_BLOCK).max(1);
    let mut partials = vec![0f64; blocks * size];
    let per = blocks.div_ceil(pieces_for(exec, a.len()));
    let block_elems = SUM_BLOCK * c;
    let pieces: Vec<_> = partials
        .chunks_mut(per * size)
        .enumerate()
        .map(|(i, p)| (i * per, p))
        .collect();
    run_pieces(exec, pieces, |(first, part)| {
        for (k, sums) in part.chunks_exact_mut(size).enumerate() {
            let lo = ((first + k) * block_elems).min(a.len());
            let hi = (lo + block_elems).min(a.len());
            let xb = if b.is_empty() { &[][..] } else { &b[lo..hi] };
            acc(&a[lo..hi], xb, sums);
        }
    });
    let mut total = vec![0f64; size];
    for part in partials.chunks_exact(size) {
        for (t, &p) in total.iter_mut().zip(part) {
            *t += p;
        }
    }
    total
}
