//! Cross-entropy (`nn.CrossEntropyLoss`, mean reduction, label smoothing).

use crate::error::{Error, Result};

/// `nn.CrossEntropyLoss(label_smoothing=…)` with mean reduction.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CrossEntropy {
    /// ε in `[0, 1]`: the target is `(1−ε)·onehot + ε/K`.
    pub label_smoothing: f32,
}

/// The mean cross-entropy of `logits` (`[N, classes]`, row-major) against `labels`, with
/// label smoothing `eps`, and its gradient `∂L/∂logits` (`(softmax − target)/N`). The
/// log-softmax is computed in f64 (max-shifted), so the loss is the exact value of the
/// f32 logits to f64 rounding.
pub fn cross_entropy(
    logits: &[f32],
    classes: usize,
    labels: &[usize],
    eps: f32,
) -> Result<(f64, Vec<f32>)> {
    let n = labels.len();
    if classes == 0 || n == 0 || logits.len() != n * classes {
        return Err(Error::shape(
            "cross-entropy logits",
            format!("{n} × {classes} values (one row per label)"),
            format!("{}", logits.len()),
        ));
    }
    if !(0.0..=1.0).contains(&eps) {
        return Err(Error::param(
            "label_smoothing",
            format!("must be in [0, 1], got {eps}"),
        ));
    }
    if let Some(&bad) = labels.iter().find(|&&l| l >= classes) {
        return Err(Error::param(
            "label",
            format!("{bad} is out of range for {classes} classes"),
        ));
    }
    let eps = f64::from(eps);
    let k = classes as f64;
    let mut loss = 0f64;
    let mut grad = vec![0f32; logits.len()];
    for ((row, g), &y) in logits
        .chunks_exact(classes)
        .zip(grad.chunks_exact_mut(classes))
        .zip(labels)
    {
        let max = row
            .iter()
            .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
        let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
        let lse = max + sum.ln();
        let mut sum_logp = 0f64;
        for (j, &v) in row.iter().enumerate() {
            let logp = f64::from(v) - lse;
            sum_logp += logp;
            let target = if j == y { 1.0 - eps } else { 0.0 } + eps / k;
            g[j] = ((logp.exp() - target) / n as f64) as f32;
        }
        let logp_y = f64::from(row[y]) - lse;
        loss += -(1.0 - eps) * logp_y - eps / k * sum_logp;
    }
    Ok((loss / n as f64, grad))
}

impl CrossEntropy {
    /// [`cross_entropy`] with this smoothing.
    pub fn compute(
        &self,
        logits: &[f32],
        classes: usize,
        labels: &[usize],
    ) -> Result<(f64, Vec<f32>)> {
        cross_entropy(logits, classes, labels, self.label_smoothing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_logits_give_ln_k() {
        let (l, g) = cross_entropy(&[0.0; 8], 4, &[1, 3], 0.0).unwrap();
        assert!((l - 4f64.ln()).abs() < 1e-12);
        assert!((g[1] - (0.25 - 1.0) / 2.0).abs() < 1e-7);
        assert!((g[0] - 0.25 / 2.0).abs() < 1e-7);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let logits = [0.3f32, -1.2, 2.0, 0.1, 0.7, -0.4];
        let labels = [2, 0];
        for eps in [0.0f32, 0.1, 0.5] {
            let (_, g) = cross_entropy(&logits, 3, &labels, eps).unwrap();
            for i in 0..logits.len() {
                let h = 1e-3f32;
                let mut p = logits;
                p[i] += h;
                let mut m = logits;
                m[i] -= h;
                let lp = cross_entropy(&p, 3, &labels, eps).unwrap().0;
                let lm = cross_entropy(&m, 3, &labels, eps).unwrap().0;
                let fd = (lp - lm) / (2.0 * f64::from(h));
                assert!(
                    (fd - f64::from(g[i])).abs() < 1e-4,
                    "eps {eps} i {i}: {fd} vs {}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn bad_input() {
        assert!(cross_entropy(&[0.0; 6], 3, &[0, 3], 0.0).is_err());
        assert!(cross_entropy(&[0.0; 5], 3, &[0, 1], 0.0).is_err());
        assert!(cross_entropy(&[0.0; 6], 3, &[0, 1], 1.5).is_err());
    }
}
