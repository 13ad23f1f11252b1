//! 64-byte aligned f32 buffers: packed weights and scratch start on a cache line, so a
//! vector load never straddles two lines (16-byte alignment cost the depthwise kernel up
//! to 1.8×; see `depthwise::channels` for the head tile that handles such inputs).

use std::fmt;

/// One cache line of f32.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// Floats per cache line.
const LINE_FLOATS: usize = 16;

/// A fixed-length f32 buffer whose first element is 64-byte aligned.
#[derive(Clone, Default)]
pub struct AlignedVec {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedVec {
    /// `len` zeros.
    pub fn zeros(len: usize) -> Self {
        AlignedVec {
            lines: vec![Line([0.0; LINE_FLOATS]); len.div_ceil(LINE_FLOATS)],
            len,
        }
    }

    /// `len` copies of `value`.
    #[cfg(test)]
    pub fn filled(len: usize, value: f32) -> Self {
        let mut v = Self::zeros(len);
        v.fill(value);
        v
    }

    /// Resizes to `len` elements (contents unspecified but initialised) when it is shorter.
    pub fn ensure_len(&mut self, len: usize) {
        if self.len < len {
            *self = Self::zeros(len);
        }
    }
}

thread_local! {
    /// Per-thread scratch reused across calls (the pool's threads are persistent), so
    /// steady-state forward passes do not allocate (or page-fault) their bands.
    static SCRATCH: std::cell::RefCell<AlignedVec> = std::cell::RefCell::new(AlignedVec::default());
}

/// Runs `f` with this thread's scratch buffer, at least `len` floats long (contents
/// unspecified). Re-entrant calls get a fresh buffer.
pub fn with_scratch<R>(len: usize, f: impl FnOnce(&mut AlignedVec) -> R) -> R {
    with_local(&SCRATCH, len, f)
}

/// Runs `f` with the thread-local buffer `key`, grown to at least `len` floats (contents
/// unspecified); a fresh buffer if it is borrowed (a re-entrant call).
pub(crate) fn with_local<R>(
    key: &'static std::thread::LocalKey<std::cell::RefCell<AlignedVec>>,
    len: usize,
    f: impl FnOnce(&mut AlignedVec) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.ensure_len(len);
            f(&mut buf)
        }
        Err(_) => f(&mut AlignedVec::zeros(len)),
    })
}

impl std::ops::Deref for AlignedVec {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        // SAFETY: `Line` is repr(C) around [f32; 16] with size 64 = 16·4, so the lines are
        // `lines.len()·16` contiguous initialised f32, and `len ≤ lines.len()·16`.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<f32>(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedVec {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `deref`, and `&mut self` gives exclusive access to the lines.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<f32>(), self.len) }
    }
}

impl fmt::Debug for AlignedVec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlignedVec(len {})", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_is_cache_line_aligned_and_length_exact() {
        for len in [0, 1, 15, 16, 17, 1000] {
            let v = AlignedVec::filled(len, 2.0);
            assert_eq!(v.len(), len);
            assert_eq!(v.as_ptr() as usize % 64, 0);
            assert!(v.iter().all(|&x| x == 2.0));
        }
    }
}
