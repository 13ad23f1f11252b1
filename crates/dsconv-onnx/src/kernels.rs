//! The generic runtime operations that are not convolutions: safe loops (NHWC where the
//! convolution path keeps its activations, row-major elsewhere). The hot ones (elementwise
//! chains and broadcasting, resize, concat, softmax, the transposed convolution's scatter)
//! split their output over the executor's threads, below; the rest run on one thread.
//! Every output element is computed whole by one thread, so results do not depend on the
//! split.

use crate::prep::{Coord, Nearest, PoolSpec};

/// NCHW (row-major ONNX order) → NHWC, over `exec`'s threads.
pub(crate) fn to_nhwc(x: &[f32], [n, c, h, w]: [usize; 4], out: &mut [f32], exec: &Executor) {
    transpose_images(x, n, c, h * w, out, exec);
}

/// NHWC → NCHW, over `exec`'s threads.
pub(crate) fn to_nchw(x: &[f32], [n, c, h, w]: [usize; 4], out: &mut [f32], exec: &Executor) {
    transpose_images(x, n, h * w, c, out, exec);
}

/// Each of `n` images, a row-major `rows × cols` matrix, transposed into `out`: the output
/// split by its rows (the source's columns) over the threads, each task writing whole
/// output rows, so the bits do not depend on the split.
fn transpose_images(
    x: &[f32],
    n: usize,
    rows: usize,
    cols: usize,
    out: &mut [f32],
    exec: &Executor,
) {
    let size = rows * cols;
    if size == 0 {
        return;
    }
    let t = tasks(exec, n * size);
    // Output row `q` is column `q % cols` of image `q / cols`.
    exec.for_each_rows(&mut out[..n * size], rows, t, |first, chunk| {
        let (mut q, mut o) = (first, 0);
        while o < chunk.len() {
            let (img, col) = (q / cols, q % cols);
            let end = (col + (chunk.len() - o) / rows).min(cols);
            let src = &x[img * size..(img + 1) * size];
            dsconv::tensor::transpose_cols(src, rows, cols, col..end, &mut chunk[o..]);
            o += (end - col) * rows;
            q += end - col;
        }
    });
}

/// Global average or max pool of an NHWC `[n, h·w, c]` tensor into `[n, c]`.
pub(crate) fn global_pool(x: &[f32], n: usize, hw: usize, c: usize, max: bool, out: &mut [f32]) {
    for b in 0..n {
        let img = &x[b * hw * c..(b + 1) * hw * c];
        let o = &mut out[b * c..(b + 1) * c];
        if max {
            o.copy_from_slice(&img[..c]);
            for px in img.chunks_exact(c).skip(1) {
                for (m, &v) in o.iter_mut().zip(px) {
                    if v > *m || v.is_nan() {
                        *m = v;
                    }
                }
            }
        } else {
            let mut acc = vec![0f64; c];
            for px in img.chunks_exact(c) {
                for (a, &v) in acc.iter_mut().zip(px) {
                    *a += v as f64;
                }
            }
            for (o, a) in o.iter_mut().zip(acc) {
                *o = (a / hw as f64) as f32;
            }
        }
    }
}

/// Max or average pooling, NHWC, `dims` logical `[n, c, h, w]`.
pub(crate) fn pool(x: &[f32], [n, c, h, w]: [usize; 4], s: &PoolSpec, out: &mut [f32]) {
    let [oh, ow] = s.out;
    let mut acc = vec![0f64; c];
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let y0 = (oy * s.s[0]) as isize - s.pads[0] as isize;
                let x0 = (ox * s.s[1]) as isize - s.pads[1] as isize;
                let o = &mut out[((b * oh + oy) * ow + ox) * c..][..c];
                if s.max {
                    o.fill(f32::NEG_INFINITY);
                } else {
                    acc.fill(0.0);
                }
                let mut count = 0usize;
                for i in 0..s.k[0] {
                    let y = y0 + (i * s.d[0]) as isize;
                    if y < 0 || y >= h as isize {
                        continue;
                    }
                    for j in 0..s.k[1] {
                        let xx = x0 + (j * s.d[1]) as isize;
                        if xx < 0 || xx >= w as isize {
                            continue;
                        }
                        count += 1;
                        let px = &x[((b * h + y as usize) * w + xx as usize) * c..][..c];
                        if s.max {
                            for (m, &v) in o.iter_mut().zip(px) {
                                if v > *m || v.is_nan() {
                                    *m = v;
                                }
                            }
                        } else {
                            for (a, &v) in acc.iter_mut().zip(px) {
                                *a += v as f64;
                            }
                        }
                    }
                }
                if !s.max {
                    let div = if s.count_include_pad {
                        // The window clipped to the padded input (ONNX Runtime's rule).
                        let ye = (y0 + s.k[0] as isize).min((h + s.pads[2]) as isize);
                        let xe = (x0 + s.k[1] as isize).min((w + s.pads[3]) as isize);
                        ((ye - y0) * (xe - x0)).max(1) as f64
                    } else {
                        count.max(1) as f64
                    };
                    for (o, a) in o.iter_mut().zip(&acc) {
                        *o = (a / div) as f32;
                    }
                }
            }
        }
    }
}

/// Source coordinate of output index `x` along an axis (`Resize`).
fn source(coord: Coord, x: usize, scale: f32, n_in: usize, n_out: usize) -> f32 {
    let (x, scale) = (x as f32, scale);
    match coord {
        Coord::HalfPixel => (x + 0.5) / scale - 0.5,
        Coord::PytorchHalfPixel => {
            if n_out > 1 {
                (x + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        Coord::AlignCorners => {
            if n_out == 1 {
                0.0
            } else {
                x * (n_in - 1) as f32 / (n_out - 1) as f32
            }
        }
        Coord::Asymmetric => x / scale,
        Coord::TfHalfPixelForNn => (x + 0.5) / scale,
    }
}

fn nearest_index(mode: Nearest, v: f32, n: usize) -> usize {
    let i = match mode {
        Nearest::RoundPreferFloor => {
            if v.fract() == 0.5 {
                v.floor()
            } else {
                v.round()
            }
        }
        Nearest::RoundPreferCeil => (v + 0.5).floor(),
        Nearest::Floor => v.floor(),
        Nearest::Ceil => v.ceil(),
    };
    (i.max(0.0) as usize).min(n - 1)
}

/// Per output index along one axis: (i0, i1, weight of i1) for linear, (i, i, 0) for nearest.
pub(crate) fn resize_taps(
    linear: bool,
    nearest: Nearest,
    coord: Coord,
    scale: f32,
    n_in: usize,
    n_out: usize,
) -> Vec<(usize, usize, f32)> {
    (0..n_out)
        .map(|o| {
            let v = source(coord, o, scale, n_in, n_out);
            if linear {
                let v = v.clamp(0.0, (n_in - 1) as f32);
                let i0 = v.floor() as usize;
                let i1 = (i0 + 1).min(n_in - 1);
                (i0, i1, v - i0 as f32)
            } else {
                let i = nearest_index(nearest, v, n_in);
                (i, i, 0.0)
            }
        })
        .collect()
}

/// Softmax over the middle axis of `[outer, n, inner]`.
pub(crate) fn softmax(x: &[f32], outer: usize, n: usize, inner: usize, out: &mut [f32]) {
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * n + k) * inner + i;
            let m = (0..n).map(|k| x[at(k)]).fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f64;
            for k in 0..n {
                let e = (x[at(k)] - m).exp();
                out[at(k)] = e;
                sum += e as f64;
            }
            for k in 0..n {
                out[at(k)] = (out[at(k)] as f64 / sum) as f32;
            }
        }
    }
}

/// Mean over the middle axis of `[outer, n, inner]`.
pub(crate) fn reduce_mean(x: &[f32], outer: usize, n: usize, inner: usize, out: &mut [f32]) {
    for o in 0..outer {
        for i in 0..inner {
            let s: f64 = (0..n).map(|k| x[(o * n + k) * inner + i] as f64).sum();
            out[o * inner + i] = (s / n as f64) as f32;
        }
    }
}

/// Batched matrix product with broadcast batch dims: `a` `[.., m, k]`, `b` `[.., k, n]`.
pub(crate) fn matmul(
    a: &[f32],
    ad: &[usize],
    b: &[f32],
    bd: &[usize],
    od: &[usize],
    out: &mut [f32],
) {
    let (m, k, n) = (ad[ad.len() - 2], ad[ad.len() - 1], bd[bd.len() - 1]);
    let batch = &od[..od.len() - 2];
    let nb: usize = batch.iter().product();
    // Offsets of each batch's matrices through broadcasting.
    let a_off = batch_offsets(&ad[..ad.len() - 2], batch, m * k);
    let b_off = batch_offsets(&bd[..bd.len() - 2], batch, k * n);
    let mut acc = vec![0f64; n];
    for t in 0..nb {
        let (am, bm) = (&a[a_off[t]..][..m * k], &b[b_off[t]..][..k * n]);
        for i in 0..m {
            acc.fill(0.0);
            for kk in 0..k {
                let av = am[i * k + kk] as f64;
                for (s, &bv) in acc.iter_mut().zip(&bm[kk * n..(kk + 1) * n]) {
                    *s += av * bv as f64;
                }
            }
            for (o, s) in out[(t * m + i) * n..][..n].iter_mut().zip(&acc) {
                *o = *s as f32;
            }
        }
    }
}

fn batch_offsets(d: &[usize], batch: &[usize], size: usize) -> Vec<usize> {
    let nb: usize = batch.iter().product();
    let idx: Vec<usize> = (0..d.iter().product::<usize>().max(1))
        .map(|i| i * size)
        .collect();
    let mut o = vec![0usize; nb];
    crate::consts::binary(&idx, d, &idx, d, batch, &mut o, |x, _| x);
    if batch.is_empty() {
        o = vec![0];
    }
    o
}

/// Transposed convolution, NCHW in and out: `w` `[C_in, C_out/g, kH, kW]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_transpose(
    x: &[f32],
    [n, ci, h, w]: [usize; 4],
    wt: &[f32],
    wdims: [usize; 4],
    bias: Option<&[f32]>,
    s: [usize; 2],
    d: [usize; 2],
    pads: [usize; 4],
    group: usize,
    [oh, ow]: [usize; 2],
    out: &mut [f32],
) {
    let [_, cog, kh, kw] = wdims;
    let cig = ci / group;
    let co = cog * group;
    let mut acc = vec![0f64; n * co * oh * ow];
    for b in 0..n {
        for ic in 0..ci {
            let g = ic / cig;
            for y in 0..h {
                for xx in 0..w {
                    let v = x[((b * ci + ic) * h + y) * w + xx] as f64;
                    for oc in 0..cog {
                        let wbase = ((ic * cog + oc) * kh) * kw;
                        let o_c = g * cog + oc;
                        for i in 0..kh {
                            let oy = (y * s[0] + i * d[0]) as isize - pads[0] as isize;
                            if oy < 0 || oy >= oh as isize {
                                continue;
                            }
                            for j in 0..kw {
                                let ox = (xx * s[1] + j * d[1]) as isize - pads[1] as isize;
                                if ox < 0 || ox >= ow as isize {
                                    continue;
                                }
                                acc[((b * co + o_c) * oh + oy as usize) * ow + ox as usize] +=
                                    v * wt[wbase + i * kw + j] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    for (idx, (o, a)) in out.iter_mut().zip(&acc).enumerate() {
        let c = (idx / (oh * ow)) % co;
        *o = (*a + bias.map_or(0.0, |b| b[c] as f64)) as f32;
    }
}

// ---------------------------------------------------------------------------------------
// Threaded forms. Every output element is computed by the same arithmetic whichever thread
// computes it, and the threads split the output only (by rows, pixels or elements), never a
// sum: results are bitwise identical for any thread count.

use crate::prep::{Bin, Unary};
use dsconv::Executor;

/// Elements below which an elementwise pass stays on one thread.
const PAR_MIN: usize = 1 << 14;
/// Elements an elementwise chain applies each of its steps to at a time (stays in L1).
const MAP_BLOCK: usize = 1024;

fn tasks(exec: &Executor, work: usize) -> usize {
    if work < PAR_MIN {
        1
    } else {
        exec.threads().min(work / (PAR_MIN / 2)).max(1)
    }
}

/// One step of an elementwise chain applied in place: a unary function, or a binary
/// function with a constant that is a scalar or varies along one axis (`c[(i / inner) %
/// c.len()]` for flat index `i`); `rev` puts the constant on the left.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MapOp {
    Unary(Unary),
    Bin {
        op: Bin,
        c: Vec<f32>,
        inner: usize,
        rev: bool,
    },
}

/// `u` over a block, its variant chosen once (each arm a loop LLVM vectorises where the
/// function allows), the same arithmetic as [`Unary::apply`].
fn unary_block(u: Unary, y: &mut [f32]) {
    macro_rules! each {
        ($u:expr) => {
            for v in y.iter_mut() {
                *v = $u.apply(*v);
            }
        };
    }
    match u {
        Unary::Relu => each!(Unary::Relu),
        Unary::Clip(lo, hi) => each!(Unary::Clip(lo, hi)),
        Unary::HardSwish => each!(Unary::HardSwish),
        Unary::HardSigmoid(a, b) => each!(Unary::HardSigmoid(a, b)),
        _ => each!(u),
    }
}

fn bin_block(op: Bin, y: &mut [f32], c: &[f32], inner: usize, first: usize, rev: bool) {
    let f = |x: f32, k: f32| if rev { op.f(k, x) } else { op.f(x, k) };
    if c.len() == 1 {
        let k = c[0];
        match (op, rev) {
            (Bin::Add, _) => y.iter_mut().for_each(|v| *v += k),
            (Bin::Mul, _) => y.iter_mut().for_each(|v| *v *= k),
            (Bin::Sub, false) => y.iter_mut().for_each(|v| *v -= k),
            (Bin::Div, false) => y.iter_mut().for_each(|v| *v /= k),
            _ => y.iter_mut().for_each(|v| *v = f(*v, k)),
        }
        return;
    }
    let n = c.len();
    if inner == 1 {
        // Innermost axis (NHWC channels): whole runs of `n` from `first % n`.
        let mut ci = first % n;
        let mut rest = y;
        while !rest.is_empty() {
            let run = (n - ci).min(rest.len());
            let (head, tail) = rest.split_at_mut(run);
            for (v, &k) in head.iter_mut().zip(&c[ci..ci + run]) {
                *v = f(*v, k);
            }
            ci = 0;
            rest = tail;
        }
        return;
    }
    for (j, v) in y.iter_mut().enumerate() {
        *v = f(*v, c[((first + j) / inner) % n]);
    }
}

fn map_chunk(ops: &[MapOp], y: &mut [f32], first: usize) {
    for (b, blk) in y.chunks_mut(MAP_BLOCK).enumerate() {
        let at = first + b * MAP_BLOCK;
        for op in ops {
            match op {
                MapOp::Unary(u) => unary_block(*u, blk),
                MapOp::Bin { op, c, inner, rev } => bin_block(*op, blk, c, *inner, at, *rev),
            }
        }
    }
}

/// Applies the chain `ops` to `y` in place, split over `exec`'s threads.
pub(crate) fn map_inplace(ops: &[MapOp], y: &mut [f32], exec: &Executor) {
    if ops.is_empty() {
        return;
    }
    let t = tasks(exec, y.len() * ops.len());
    exec.for_each_rows(y, 1, t, |first, chunk| map_chunk(ops, chunk, first));
}

/// `out = ops(x)`.
pub(crate) fn map(ops: &[MapOp], x: &[f32], out: &mut [f32], exec: &Executor) {
    let t = tasks(exec, x.len() * ops.len().max(1));
    exec.for_each_rows(out, 1, t, |first, chunk| {
        chunk.copy_from_slice(&x[first..first + chunk.len()]);
        map_chunk(ops, chunk, first);
    });
}

/// [`crate::consts::binary`] split over `exec`'s threads by whole rows of the output's last
/// axis (or by elements when the shapes are equal).
#[allow(clippy::too_many_arguments)]
pub(crate) fn binary_par(
    op: Bin,
    a: &[f32],
    ad: &[usize],
    b: &[f32],
    bd: &[usize],
    od: &[usize],
    out: &mut [f32],
    exec: &Executor,
) {
    let t = tasks(exec, out.len());
    if ad == bd && ad == od {
        exec.for_each_rows(out, 1, t, |first, chunk| {
            let (x, y) = (&a[first..][..chunk.len()], &b[first..][..chunk.len()]);
            match op {
                Bin::Add => {
                    for ((o, &p), &q) in chunk.iter_mut().zip(x).zip(y) {
                        *o = p + q;
                    }
                }
                Bin::Mul => {
                    for ((o, &p), &q) in chunk.iter_mut().zip(x).zip(y) {
                        *o = p * q;
                    }
                }
                _ => {
                    for ((o, &p), &q) in chunk.iter_mut().zip(x).zip(y) {
                        *o = op.f(p, q);
                    }
                }
            }
        });
        return;
    }
    let r = od.len();
    if r == 0 || t == 1 {
        crate::consts::binary(a, ad, b, bd, od, out, |x, y| op.f(x, y));
        return;
    }
    let inner = od[r - 1].max(1);
    let sa = crate::consts::broadcast_strides(ad, od);
    let sb = crate::consts::broadcast_strides(bd, od);
    exec.for_each_rows(out, inner, t, |first_row, chunk| {
        for (k, row) in chunk.chunks_mut(inner).enumerate() {
            // The row's multi-index over the leading axes.
            let mut rem = first_row + k;
            let (mut oa, mut ob) = (0usize, 0usize);
            for ax in (0..r - 1).rev() {
                let i = rem % od[ax];
                rem /= od[ax];
                oa += i * sa[ax];
                ob += i * sb[ax];
            }
            let (ia, ib) = (sa[r - 1], sb[r - 1]);
            match (ia, ib) {
                (1, 1) => {
                    for ((o, &p), &q) in row.iter_mut().zip(&a[oa..]).zip(&b[ob..]) {
                        *o = op.f(p, q);
                    }
                }
                (1, 0) => {
                    let q = b[ob];
                    for (o, &p) in row.iter_mut().zip(&a[oa..]) {
                        *o = op.f(p, q);
                    }
                }
                (0, 1) => {
                    let p = a[oa];
                    for (o, &q) in row.iter_mut().zip(&b[ob..]) {
                        *o = op.f(p, q);
                    }
                }
                _ => {
                    for (j, o) in row.iter_mut().enumerate() {
                        *o = op.f(a[oa + j * ia], b[ob + j * ib]);
                    }
                }
            }
        }
    });
}

/// Resizes an NHWC tensor with separable per-axis taps ([`resize_taps`]), split over
/// `exec`'s threads by output rows.
pub(crate) fn resize_par(
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    ty: &[(usize, usize, f32)],
    tx: &[(usize, usize, f32)],
    out: &mut [f32],
    exec: &Executor,
) {
    let (oh, ow) = (ty.len(), tx.len());
    let row = ow * c;
    if row == 0 || n * oh == 0 {
        return;
    }
    let t = tasks(exec, out.len());
    exec.for_each_rows(out, row, t, |first, chunk| {
        for (k, orow) in chunk.chunks_mut(row).enumerate() {
            let r = first + k;
            let (b, oy) = (r / oh, r % oh);
            let (y0, y1, fy) = ty[oy];
            let px = |y: usize, xx: usize| &x[((b * h + y) * w + xx) * c..][..c];
            for (o, &(x0, x1, fx)) in orow.chunks_exact_mut(c).zip(tx) {
                if fy == 0.0 && fx == 0.0 {
                    o.copy_from_slice(px(y0, x0));
                    continue;
                }
                let (a, bb, cc, d) = (px(y0, x0), px(y0, x1), px(y1, x0), px(y1, x1));
                for i in 0..c {
                    let top = a[i] + (bb[i] - a[i]) * fx;
                    let bot = cc[i] + (d[i] - cc[i]) * fx;
                    o[i] = top + (bot - top) * fy;
                }
            }
        }
    });
}

/// Transposed convolution's scatter, NHWC: `cols` holds per input pixel the GEMM row
/// `[kh, kw, co]` (the input pixel times the weights); every output pixel sums, in tap order
/// (i, j) ascending, the taps that land on it, plus the bias, then applies `act` (what the
/// planner folded after the transposed convolution). Split by output rows.
#[allow(clippy::too_many_arguments)]
pub(crate) fn col2im_nhwc(
    cols: &[f32],
    [n, h, w]: [usize; 3],
    co: usize,
    [kh, kw]: [usize; 2],
    s: [usize; 2],
    d: [usize; 2],
    pads: [usize; 2],
    [oh, ow]: [usize; 2],
    bias: Option<&[f32]>,
    act: dsconv::Activation,
    out: &mut [f32],
    exec: &Executor,
) {
    let row = ow * co;
    if row == 0 || n * oh == 0 {
        return;
    }
    let kk = kh * kw * co;
    let t = tasks(exec, out.len() * kh * kw);
    // Input index along one axis whose tap `i` lands on output `o`, if any.
    let src = |o: usize, i: usize, s: usize, d: usize, p: usize, n_in: usize| {
        let v = (o + p).checked_sub(i * d)?;
        (v % s == 0 && v / s < n_in).then_some(v / s)
    };
    // Per output column, the (column offset into a cols row) of each tap landing on it, in
    // tap order; `xs[ox]..xs[ox + 1]` indexes `xt`.
    let mut xt: Vec<(usize, usize)> = Vec::new();
    let mut xs = vec![0usize];
    for ox in 0..ow {
        for j in 0..kw {
            if let Some(xx) = src(ox, j, s[1], d[1], pads[1], w) {
                xt.push((j, xx));
            }
        }
        xs.push(xt.len());
    }
    exec.for_each_rows(out, row, t, |first, chunk| {
        let mut yt: Vec<(usize, usize)> = Vec::with_capacity(kh);
        for (k, orow) in chunk.chunks_mut(row).enumerate() {
            let r = first + k;
            let (b, oy) = (r / oh, r % oh);
            yt.clear();
            yt.extend((0..kh).filter_map(|i| src(oy, i, s[0], d[0], pads[0], h).map(|y| (i, y))));
            for (ox, o) in orow.chunks_exact_mut(co).enumerate() {
                match bias {
                    Some(bv) => o.copy_from_slice(bv),
                    None => o.fill(0.0),
                }
                for &(i, y) in &yt {
                    let base = (b * h + y) * w;
                    for &(j, xx) in &xt[xs[ox]..xs[ox + 1]] {
                        let g = &cols[(base + xx) * kk + (i * kw + j) * co..][..co];
                        for (v, &gv) in o.iter_mut().zip(g) {
                            *v += gv;
                        }
                    }
                }
                if act != dsconv::Activation::None {
                    o.iter_mut().for_each(|v| *v = act.apply(*v));
                }
            }
        }
    });
}

/// [`crate::consts::concat`] split over `exec`'s threads by the leading axes.
pub(crate) fn concat_par(
    inputs: &[(&[f32], &[usize])],
    axis: usize,
    out: &mut [f32],
    exec: &Executor,
) {
    let Some((_, d0)) = inputs.first() else {
        return;
    };
    let outer: usize = d0[..axis].iter().product();
    let chunks: Vec<usize> = inputs
        .iter()
        .map(|(_, d)| d[axis..].iter().product())
        .collect();
    let row: usize = chunks.iter().sum();
    if row == 0 || outer == 0 {
        return;
    }
    let t = tasks(exec, out.len());
    exec.for_each_rows(out, row, t, |first, chunk| {
        for (k, orow) in chunk.chunks_mut(row).enumerate() {
            let b = first + k;
            let mut o = 0;
            for ((x, _), &n) in inputs.iter().zip(&chunks) {
                orow[o..o + n].copy_from_slice(&x[b * n..(b + 1) * n]);
                o += n;
            }
        }
    });
}

/// [`softmax`] split over `exec`'s threads by `outer` (each slice's max and f64 sum stay on
/// one thread, in index order: the same bits for any split). The last-axis case
/// (`inner == 1`) runs on contiguous rows.
pub(crate) fn softmax_par(
    x: &[f32],
    outer: usize,
    n: usize,
    inner: usize,
    out: &mut [f32],
    exec: &Executor,
) {
    let row = n * inner;
    if row == 0 || outer == 0 {
        return;
    }
    let t = tasks(exec, out.len() * 4);
    exec.for_each_rows(out, row, t, |first, chunk| {
        let rows = chunk.len() / row;
        let xs = &x[first * row..(first + rows) * row];
        if inner > 1 {
            softmax(xs, rows, n, inner, chunk);
            return;
        }
        for (o, xr) in chunk.chunks_exact_mut(n).zip(xs.chunks_exact(n)) {
            let m = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f64;
            for (y, &v) in o.iter_mut().zip(xr) {
                let e = (v - m).exp();
                *y = e;
                sum += e as f64;
            }
            for y in o.iter_mut() {
                *y = (*y as f64 / sum) as f32;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The threaded layout conversions equal the plain per-image loop at 1–4 threads,
    /// with chunks that start and end inside an image and span image boundaries.
    #[test]
    fn threaded_layout_conversions_match_the_plain_loop() {
        for [n, c, h, w] in [
            [3, 3, 5, 7],
            [3, 5, 37, 41],
            [5, 16, 15, 17],
            [2, 7, 64, 64],
            [1, 1, 200, 100],
        ] {
            let len = n * c * h * w;
            let x: Vec<f32> = (0..len).map(|i| i as f32 * 0.25 - 7.0).collect();
            let mut want = vec![0.0; len];
            for b in 0..n {
                for ch in 0..c {
                    for p in 0..h * w {
                        want[b * c * h * w + p * c + ch] = x[b * c * h * w + ch * h * w + p];
                    }
                }
            }
            for threads in 1..=4 {
                let exec = Executor::new(threads).unwrap();
                let mut got = vec![f32::NAN; len];
                to_nhwc(&x, [n, c, h, w], &mut got, &exec);
                assert_eq!(got, want, "to_nhwc {:?} {threads} threads", [n, c, h, w]);
                let mut back = vec![f32::NAN; len];
                to_nchw(&got, [n, c, h, w], &mut back, &exec);
                assert_eq!(back, x, "to_nchw {:?} {threads} threads", [n, c, h, w]);
            }
        }
    }
}
