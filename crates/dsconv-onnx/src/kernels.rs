//! The generic runtime operations that are not convolutions: safe, single-threaded,
//! simple loops (NHWC where the convolution path keeps its activations, row-major
//! elsewhere). Sums accumulate in f64, so results do not depend on any split.

use crate::prep::{Coord, Nearest, PoolSpec};

/// NCHW (row-major ONNX order) → NHWC.
pub(crate) fn to_nhwc(x: &[f32], [n, c, h, w]: [usize; 4], out: &mut [f32]) {
    let hw = h * w;
    for b in 0..n {
        let (src, dst) = (
            &x[b * c * hw..(b + 1) * c * hw],
            &mut out[b * c * hw..(b + 1) * c * hw],
        );
        for ch in 0..c {
            for p in 0..hw {
                dst[p * c + ch] = src[ch * hw + p];
            }
        }
    }
}

/// NHWC → NCHW.
pub(crate) fn to_nchw(x: &[f32], [n, c, h, w]: [usize; 4], out: &mut [f32]) {
    let hw = h * w;
    for b in 0..n {
        let (src, dst) = (
            &x[b * c * hw..(b + 1) * c * hw],
            &mut out[b * c * hw..(b + 1) * c * hw],
        );
        for p in 0..hw {
            for ch in 0..c {
                dst[ch * hw + p] = src[p * c + ch];
            }
        }
    }
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

/// Resize an NHWC tensor with separable per-axis taps.
pub(crate) fn resize(
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    ty: &[(usize, usize, f32)],
    tx: &[(usize, usize, f32)],
    out: &mut [f32],
) {
    let (oh, ow) = (ty.len(), tx.len());
    for b in 0..n {
        for (oy, &(y0, y1, fy)) in ty.iter().enumerate() {
            for (ox, &(x0, x1, fx)) in tx.iter().enumerate() {
                let o = &mut out[((b * oh + oy) * ow + ox) * c..][..c];
                let px = |y: usize, xx: usize| &x[((b * h + y) * w + xx) * c..][..c];
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
    }
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
