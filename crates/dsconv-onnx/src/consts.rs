//! Constant tensors (initializers and folded values) and the shape-generic kernels shared
//! by constant folding and the plan's generic steps: broadcasting binary operations,
//! transpose, slice, gather, concat, pad. All row-major over arbitrary rank.

use crate::error::{Error, Result};

/// Element storage of a constant: floats or integers (every integer type and bool widen to
/// i64, every float type narrows to f32).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Data {
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }
}

/// A constant tensor of any rank (rank 0 = scalar).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Const {
    pub dims: Vec<usize>,
    pub data: Data,
}

impl Const {
    pub fn f32(dims: Vec<usize>, v: Vec<f32>) -> Const {
        Const {
            dims,
            data: Data::F32(v),
        }
    }
    pub fn i64(dims: Vec<usize>, v: Vec<i64>) -> Const {
        Const {
            dims,
            data: Data::I64(v),
        }
    }
    /// The elements as f32 (integers converted).
    pub fn floats(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
    /// The elements as i64 (floats truncated toward zero).
    pub fn ints(&self) -> Vec<i64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I64(v) => v.clone(),
        }
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
}

/// Number of elements of `dims`, checked.
pub(crate) fn numel(dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n.checked_mul(8).is_some_and(|b| b <= isize::MAX as usize))
        .ok_or_else(|| Error::Overflow(format!("a tensor of dims {dims:?}")))
}

/// Row-major strides.
pub(crate) fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// numpy broadcasting of two shapes; `None` when they do not broadcast.
pub(crate) fn broadcast_dims(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Strides of `dims` seen through broadcasting to `out` (0 on broadcast axes).
pub(crate) fn broadcast_strides(dims: &[usize], out: &[usize]) -> Vec<usize> {
    let s = strides(dims);
    let off = out.len() - dims.len();
    (0..out.len())
        .map(|i| {
            if i < off || dims[i - off] == 1 {
                0
            } else {
                s[i - off]
            }
        })
        .collect()
}

/// `out[i] = f(a[ia], b[ib])` with numpy broadcasting; `out` has `out_dims` elements.
pub(crate) fn binary<T: Copy, U>(
    a: &[T],
    ad: &[usize],
    b: &[T],
    bd: &[usize],
    out_dims: &[usize],
    out: &mut [U],
    f: impl Fn(T, T) -> U,
) {
    if ad == bd && ad == out_dims {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = f(x, y);
        }
        return;
    }
    let sa = broadcast_strides(ad, out_dims);
    let sb = broadcast_strides(bd, out_dims);
    let r = out_dims.len();
    if r == 0 {
        out[0] = f(a[0], b[0]);
        return;
    }
    let inner = out_dims[r - 1];
    let (ia, ib) = (sa[r - 1], sb[r - 1]);
    let mut idx = vec![0usize; r - 1];
    for row in out.chunks_mut(inner.max(1)) {
        let oa: usize = idx.iter().zip(&sa).map(|(i, s)| i * s).sum();
        let ob: usize = idx.iter().zip(&sb).map(|(i, s)| i * s).sum();
        for (j, o) in row.iter_mut().enumerate() {
            *o = f(a[oa + j * ia], b[ob + j * ib]);
        }
        for k in (0..r - 1).rev() {
            idx[k] += 1;
            if idx[k] < out_dims[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// Generic gather by an index map: `out[i] = x[src(i)]` where the source offset is
/// `base + Σ idx_k · step_k` over the output's multi-index (used by transpose and slice).
fn strided_copy<T: Copy>(x: &[T], out_dims: &[usize], base: usize, step: &[isize], out: &mut [T]) {
    let r = out_dims.len();
    if r == 0 {
        out[0] = x[base];
        return;
    }
    let inner = out_dims[r - 1];
    let istep = step[r - 1];
    let mut idx = vec![0usize; r - 1];
    for row in out.chunks_mut(inner.max(1)) {
        let off = base as isize
            + idx
                .iter()
                .zip(step)
                .map(|(&i, &s)| i as isize * s)
                .sum::<isize>();
        for (j, o) in row.iter_mut().enumerate() {
            *o = x[(off + j as isize * istep) as usize];
        }
        for k in (0..r - 1).rev() {
            idx[k] += 1;
            if idx[k] < out_dims[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// Transpose by `perm` (output axis i = input axis perm[i]).
pub(crate) fn transpose<T: Copy>(x: &[T], dims: &[usize], perm: &[usize], out: &mut [T]) {
    let s = strides(dims);
    let od: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let step: Vec<isize> = perm.iter().map(|&p| s[p] as isize).collect();
    strided_copy(x, &od, 0, &step, out);
}

/// A resolved slice: per axis a start and a (possibly negative) step; `out_dims` counts.
#[derive(Debug, Clone)]
pub(crate) struct SliceSpec {
    pub starts: Vec<usize>,
    pub steps: Vec<isize>,
    pub out_dims: Vec<usize>,
}

pub(crate) fn slice<T: Copy>(x: &[T], dims: &[usize], s: &SliceSpec, out: &mut [T]) {
    let st = strides(dims);
    let base: usize = s.starts.iter().zip(&st).map(|(a, b)| a * b).sum();
    let step: Vec<isize> = s
        .steps
        .iter()
        .zip(&st)
        .map(|(&a, &b)| a * b as isize)
        .collect();
    strided_copy(x, &s.out_dims, base, &step, out);
}

/// Gather along `axis` with non-negative, in-range `idx` (shape `idx_dims`).
pub(crate) fn gather<T: Copy>(x: &[T], dims: &[usize], axis: usize, idx: &[usize], out: &mut [T]) {
    let outer: usize = dims[..axis].iter().product();
    let inner: usize = dims[axis + 1..].iter().product();
    let n = dims[axis];
    let mut o = 0;
    for b in 0..outer {
        for &i in idx {
            let src = (b * n + i) * inner;
            out[o..o + inner].copy_from_slice(&x[src..src + inner]);
            o += inner;
        }
    }
}

/// Concatenation along `axis` of inputs with equal dims elsewhere.
pub(crate) fn concat<T: Copy>(inputs: &[(&[T], &[usize])], axis: usize, out: &mut [T]) {
    let Some((_, d0)) = inputs.first() else {
        return;
    };
    let outer: usize = d0[..axis].iter().product();
    let mut o = 0;
    for b in 0..outer {
        for (x, d) in inputs {
            let chunk: usize = d[axis..].iter().product();
            out[o..o + chunk].copy_from_slice(&x[b * chunk..(b + 1) * chunk]);
            o += chunk;
        }
    }
}

/// Pad modes of ONNX `Pad`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PadMode {
    Constant,
    Reflect,
    Edge,
}

/// Pads (or crops, for negative pads) every axis: `begin[i]` before, `out_dims` total.
pub(crate) fn pad<T: Copy>(
    x: &[T],
    dims: &[usize],
    begin: &[isize],
    out_dims: &[usize],
    mode: PadMode,
    value: T,
    out: &mut [T],
) {
    let r = dims.len();
    let st = strides(dims);
    let mut idx = vec![0usize; r];
    for o in out.iter_mut() {
        let mut off = 0usize;
        let mut inside = true;
        for k in 0..r {
            let mut i = idx[k] as isize - begin[k];
            let n = dims[k] as isize;
            if i < 0 || i >= n {
                match mode {
                    PadMode::Constant => {
                        inside = false;
                        break;
                    }
                    PadMode::Edge => i = i.clamp(0, n - 1),
                    PadMode::Reflect => {
                        if n == 1 {
                            i = 0;
                        } else {
                            let p = 2 * (n - 1);
                            i = i.rem_euclid(p);
                            if i >= n {
                                i = p - i;
                            }
                        }
                    }
                }
            }
            off += i as usize * st[k];
        }
        *o = if inside { x[off] } else { value };
        for k in (0..r).rev() {
            idx[k] += 1;
            if idx[k] < out_dims[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_and_strided_copies() {
        assert_eq!(broadcast_dims(&[2, 1, 3], &[4, 1]), Some(vec![2, 4, 3]));
        assert_eq!(broadcast_dims(&[2, 3], &[4]), None);
        let a = [1, 2, 3, 4, 5, 6]; // [2, 3]
        let b = [10, 20]; // [2, 1]
        let mut out = [0; 6];
        binary(&a, &[2, 3], &b, &[2, 1], &[2, 3], &mut out, |x, y| x + y);
        assert_eq!(out, [11, 12, 13, 24, 25, 26]);
        let mut t = [0; 6];
        transpose(&a, &[2, 3], &[1, 0], &mut t);
        assert_eq!(t, [1, 4, 2, 5, 3, 6]);
        let spec = SliceSpec {
            starts: vec![1, 2],
            steps: vec![1, -2],
            out_dims: vec![1, 2],
        };
        let mut s = [0; 2];
        slice(&a, &[2, 3], &spec, &mut s);
        assert_eq!(s, [6, 4]);
        let mut g = [0; 4];
        gather(&a, &[2, 3], 1, &[2, 0], &mut g);
        assert_eq!(g, [3, 1, 6, 4]);
        let mut c = [0; 8];
        concat(
            &[(&a[..], &[2, 3][..]), (&[7, 8][..], &[2, 1][..])],
            1,
            &mut c,
        );
        assert_eq!(c, [1, 2, 3, 7, 4, 5, 6, 8]);
        let mut p = [0; 7];
        pad(&[1, 2, 3], &[3], &[2], &[7], PadMode::Reflect, 0, &mut p);
        assert_eq!(p, [3, 2, 1, 2, 3, 2, 1]);
        pad(&[1, 2, 3], &[3], &[2], &[7], PadMode::Edge, 0, &mut p);
        assert_eq!(p, [1, 1, 1, 2, 3, 3, 3]);
        let mut q = [9; 2];
        pad(&[1, 2, 3], &[3], &[-1], &[2], PadMode::Constant, 0, &mut q);
        assert_eq!(q, [2, 3]);
    }
}
