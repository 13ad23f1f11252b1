//! Optimizers with `torch.optim`'s semantics (SGD, AdamW) and learning-rate schedules.

use super::{Layer, Param, ParamKind, Slot};
use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// `torch.optim.SGD`'s options (the learning rate comes from the schedule at each step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    /// Base learning rate.
    pub lr: f32,
    /// Momentum factor (0: none).
    pub momentum: f32,
    /// Dampening for momentum.
    pub dampening: f32,
    /// Nesterov momentum (needs `momentum > 0` and `dampening = 0`).
    pub nesterov: bool,
    /// L2 penalty added to the gradient (`grad + wd·p`).
    pub weight_decay: f32,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd {
            lr: 0.1,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

/// `torch.optim.AdamW`'s options; the default is PyTorch's (lr 1e-3, betas (0.9, 0.999),
/// eps 1e-8, weight decay 1e-2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    /// Base learning rate.
    pub lr: f32,
    /// β₁, β₂.
    pub betas: (f32, f32),
    /// Added to the denominator.
    pub eps: f32,
    /// Decoupled weight decay: `p ← p·(1 − lr·wd)` before the Adam step.
    pub weight_decay: f32,
}

impl Default for AdamW {
    fn default() -> Self {
        AdamW {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

/// Which algorithm.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Sgd(Sgd),
    AdamW(AdamW),
}

/// The per-parameter state (`optimizer.state[p]` in PyTorch).
#[derive(Debug, Clone, Default, PartialEq)]
struct State {
    momentum_buffer: Option<Vec<f32>>,
    exp_avg: Vec<f32>,
    exp_avg_sq: Vec<f32>,
    step: u64,
}

/// An optimizer over a model's trainable parameters, keyed by their PyTorch names.
#[derive(Debug, Clone)]
pub struct Optimizer {
    kind: Kind,
    decay_norm_and_bias: bool,
    state: BTreeMap<String, State>,
    steps: u64,
}

impl Optimizer {
    /// SGD.
    pub fn sgd(options: Sgd) -> Self {
        Self::with_kind(Kind::Sgd(options))
    }

    /// AdamW.
    pub fn adamw(options: AdamW) -> Self {
        Self::with_kind(Kind::AdamW(options))
    }

    fn with_kind(kind: Kind) -> Self {
        Optimizer {
            kind,
            decay_norm_and_bias: true,
            state: BTreeMap::new(),
            steps: 0,
        }
    }

    /// `false`: no weight decay on BatchNorm scales and shifts nor on biases (the default,
    /// `true`, decays every parameter as `torch.optim` does).
    pub fn with_decay_norm_and_bias(mut self, decay: bool) -> Self {
        self.decay_norm_and_bias = decay;
        self
    }

    /// The base learning rate.
    pub fn base_lr(&self) -> f32 {
        match self.kind {
            Kind::Sgd(o) => o.lr,
            Kind::AdamW(o) => o.lr,
        }
    }

    /// `"sgd"` or `"adamw"`.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Sgd(_) => "sgd",
            Kind::AdamW(_) => "adamw",
        }
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Checks the options (as `torch.optim` does at construction).
    pub fn validate(&self) -> Result<()> {
        let bad = |p: &'static str, v: f32| Error::param(p, format!("invalid value {v}"));
        match self.kind {
            Kind::Sgd(o) => {
                if !nonneg(o.lr) || !o.lr.is_finite() {
                    return Err(bad("lr", o.lr));
                }
                if !nonneg(o.momentum) {
                    return Err(bad("momentum", o.momentum));
                }
                if !nonneg(o.weight_decay) {
                    return Err(bad("weight_decay", o.weight_decay));
                }
                if o.nesterov && (o.momentum <= 0.0 || o.dampening != 0.0) {
                    return Err(Error::param(
                        "nesterov",
                        "Nesterov momentum requires a momentum and zero dampening",
                    ));
                }
            }
            Kind::AdamW(o) => {
                if !nonneg(o.lr) || !o.lr.is_finite() {
                    return Err(bad("lr", o.lr));
                }
                if !(0.0..1.0).contains(&o.betas.0) {
                    return Err(bad("beta1", o.betas.0));
                }
                if !(0.0..1.0).contains(&o.betas.1) {
                    return Err(bad("beta2", o.betas.1));
                }
                if !nonneg(o.eps) {
                    return Err(bad("eps", o.eps));
                }
                if !nonneg(o.weight_decay) {
                    return Err(bad("weight_decay", o.weight_decay));
                }
            }
        }
        Ok(())
    }

    /// One update of every trainable parameter of `model` with learning rate `lr`, from
    /// the gradients its `backward` accumulated (PyTorch's single-tensor algorithms).
    pub fn step(&mut self, model: &mut dyn Layer, lr: f32) -> Result<()> {
        self.validate()?;
        let (kind, decay_all) = (self.kind, self.decay_norm_and_bias);
        let state = &mut self.state;
        model.visit("", &mut |name, slot| {
            let Slot::Param(p) = slot else { return };
            if !p.trainable() {
                return;
            }
            let decays = decay_all || p.kind == ParamKind::Weight;
            let st = state.entry(name.to_string()).or_default();
            match kind {
                Kind::Sgd(o) => sgd_step(p, st, &o, lr, decays),
                Kind::AdamW(o) => adamw_step(p, st, &o, lr, decays),
            }
        });
        self.steps += 1;
        Ok(())
    }

    /// The state as named f32 tensors (`NAME.momentum_buffer`, `NAME.exp_avg`,
    /// `NAME.exp_avg_sq`, `NAME.step`) plus `steps`, for a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Vec<f32>)> {
        let mut out = vec![("steps".to_string(), vec![self.steps as f32])];
        for (name, st) in &self.state {
            if let Some(b) = &st.momentum_buffer {
                out.push((format!("{name}.momentum_buffer"), b.clone()));
            }
            if !st.exp_avg.is_empty() {
                out.push((format!("{name}.exp_avg"), st.exp_avg.clone()));
                out.push((format!("{name}.exp_avg_sq"), st.exp_avg_sq.clone()));
            }
            if st.step > 0 {
                out.push((format!("{name}.step"), vec![st.step as f32]));
            }
        }
        out
    }

    /// Restores what [`state_tensors`](Self::state_tensors) gave, checking each buffer's
    /// size against `model`'s parameter of that name.
    pub fn load_state_tensors(
        &mut self,
        model: &mut dyn Layer,
        tensors: &[(String, Vec<f32>)],
    ) -> Result<()> {
        let mut sizes = BTreeMap::new();
        model.visit("", &mut |name, slot| {
            if let Slot::Param(p) = slot {
                if p.trainable() {
                    sizes.insert(name.to_string(), p.value.len());
                }
            }
        });
        let mut state: BTreeMap<String, State> = BTreeMap::new();
        let mut steps = None;
        for (key, data) in tensors {
            if key == "steps" {
                steps = data.first().map(|&s| s as u64);
                continue;
            }
            let bad =
                || Error::Checkpoint(format!("optimizer state '{key}' does not fit the model"));
            let (param, field) = key.rsplit_once('.').ok_or_else(bad)?;
            let &size = sizes.get(param).ok_or_else(bad)?;
            let st = state.entry(param.to_string()).or_default();
            match field {
                "step" if data.len() == 1 => st.step = data[0] as u64,
                "momentum_buffer" if data.len() == size => st.momentum_buffer = Some(data.clone()),
                "exp_avg" if data.len() == size => st.exp_avg = data.clone(),
                "exp_avg_sq" if data.len() == size => st.exp_avg_sq = data.clone(),
                _ => return Err(bad()),
            }
        }
        for (name, st) in &state {
            if st.exp_avg.len() != st.exp_avg_sq.len() {
                return Err(Error::Checkpoint(format!(
                    "optimizer state of '{name}' is incomplete"
                )));
            }
        }
        self.state = state;
        self.steps = steps.unwrap_or(0);
        Ok(())
    }
}

/// `v ≥ 0` (false for NaN).
fn nonneg(v: f32) -> bool {
    v.partial_cmp(&0.0)
        .is_some_and(|o| o != std::cmp::Ordering::Less)
}

/// `torch.optim.SGD`'s `_single_tensor_sgd` for one parameter.
fn sgd_step(p: &mut Param, st: &mut State, o: &Sgd, lr: f32, decays: bool) {
    let wd = if decays { o.weight_decay } else { 0.0 };
    let mut d: Vec<f32> = if wd != 0.0 {
        p.grad
            .iter()
            .zip(&p.value)
            .map(|(g, v)| g + wd * v)
            .collect()
    } else {
        p.grad.clone()
    };
    if o.momentum != 0.0 {
        match &mut st.momentum_buffer {
            None => st.momentum_buffer = Some(d.clone()),
            Some(buf) => {
                for (b, g) in buf.iter_mut().zip(&d) {
                    *b = o.momentum * *b + (1.0 - o.dampening) * g;
                }
            }
        }
        if let Some(buf) = &st.momentum_buffer {
            if o.nesterov {
                for (g, b) in d.iter_mut().zip(buf) {
                    *g += o.momentum * b;
                }
            } else {
                d.clone_from(buf);
            }
        }
    }
    for (v, g) in p.value.iter_mut().zip(&d) {
        *v -= lr * g;
    }
}

/// `torch.optim.AdamW`'s `_single_tensor_adam` (decoupled decay, no amsgrad) for one
/// parameter; bias corrections in f64 as Python computes them.
fn adamw_step(p: &mut Param, st: &mut State, o: &AdamW, lr: f32, decays: bool) {
    if st.exp_avg.is_empty() {
        st.exp_avg = vec![0.0; p.value.len()];
        st.exp_avg_sq = vec![0.0; p.value.len()];
    }
    st.step += 1;
    let wd = if decays { o.weight_decay } else { 0.0 };
    if wd != 0.0 {
        let f = 1.0 - lr * wd;
        for v in &mut p.value {
            *v *= f;
        }
    }
    let (b1, b2) = o.betas;
    let step = st.step as i32;
    let bc1 = 1.0 - f64::from(b1).powi(step);
    let bc2 = 1.0 - f64::from(b2).powi(step);
    let step_size = (f64::from(lr) / bc1) as f32;
    let bc2_sqrt = bc2.sqrt() as f32;
    for i in 0..p.value.len() {
        let g = p.grad[i];
        let m = &mut st.exp_avg[i];
        *m += (1.0 - b1) * (g - *m);
        let v = &mut st.exp_avg_sq[i];
        *v = *v * b2 + (1.0 - b2) * g * g;
        let denom = v.sqrt() / bc2_sqrt + o.eps;
        p.value[i] -= step_size * (*m / denom);
    }
}

/// How the learning rate changes over training (after any warm-up).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Schedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// `StepLR`: multiplied by `gamma` every `every` epochs.
    Step {
        /// Epochs between decays.
        every: u64,
        /// Factor.
        gamma: f32,
    },
    /// `CosineAnnealingLR` per step from the base rate to `min_lr` at the last step.
    Cosine {
        /// The final rate.
        min_lr: f32,
    },
}

/// A learning rate for every optimizer step: a linear warm-up over `warmup` steps
/// (factor `(t+1)/(warmup+1)` at step `t`), then `schedule`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    /// Base rate.
    pub base: f32,
    /// The schedule after warm-up.
    pub schedule: Schedule,
    /// Warm-up steps.
    pub warmup: u64,
    /// Total steps of the run (for cosine).
    pub total_steps: u64,
    /// Steps per epoch (for step decay).
    pub steps_per_epoch: u64,
}

impl LrSchedule {
    /// The rate at optimizer step `t` (0-based).
    pub fn lr_at(&self, t: u64) -> f32 {
        let base = f64::from(self.base);
        let lr = match self.schedule {
            Schedule::Constant => base,
            Schedule::Step { every, gamma } => {
                let epoch = t / self.steps_per_epoch.max(1);
                base * f64::from(gamma).powi((epoch / every.max(1)) as i32)
            }
            Schedule::Cosine { min_lr } => {
                let span = self.total_steps.saturating_sub(self.warmup).max(1);
                let done = t.saturating_sub(self.warmup).min(span);
                let min = f64::from(min_lr);
                min + (base - min)
                    * (1.0 + (std::f64::consts::PI * done as f64 / span as f64).cos())
                    / 2.0
            }
        };
        let lr = if t < self.warmup {
            lr * (t + 1) as f64 / (self.warmup + 1) as f64
        } else {
            lr
        };
        lr as f32
    }
}
