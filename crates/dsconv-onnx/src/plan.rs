//! Pass 2 of planning: fusion and layout, then running. Convolutions absorb the
//! BatchNormalization and the activation after them; depthwise → pointwise and expand →
//! depthwise → project chains (with the residual Add) become dsconv's fused blocks; every
//! 4-D value a convolution touches stays NHWC, converted only where an operator needs
//! ONNX's row-major order (graph inputs and outputs, reshapes, ...).

use crate::consts::{self, numel, Const, PadMode, SliceSpec};
use crate::error::{Error, Result};
use crate::kernels::{self, MapOp};
use crate::model::Model;
use crate::prep::{self, Bin, DNode, Op, Operand, PoolSpec, Prepared, Unary};
use dsconv::blocks::{InvertedResidual, SqueezeExcite};
use dsconv::cost::{LayerCost, NetworkCost};
use dsconv::workspace::Workspace;
use dsconv::{
    Activation, Conv2d, Conv2dParams, DepthwiseConv2d, DepthwiseSeparableConv2d, Executor, Layout,
    PointwiseConv2d, Tensor,
};
use std::collections::HashMap;

/// One output of [`Plan::run`]: ONNX (row-major, NCHW for images) order.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The graph output's name.
    pub name: String,
    /// Its dims.
    pub dims: Vec<usize>,
    /// Its elements, row-major.
    pub data: Vec<f32>,
}

/// How many of each fused form the plan runs (for tests and `dsconv cost`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fusion {
    /// Convolutions run alone (BatchNorm and activation folded in where present).
    pub convs: usize,
    /// Depthwise → pointwise pairs on the fused separable kernel.
    pub separable: usize,
    /// Expand → depthwise → project (or depthwise → project + skip) inverted residual blocks.
    pub inverted_residual: usize,
    /// Of those, with the residual Add fused.
    pub residual_adds: usize,
    /// BatchNormalizations folded into the convolution before them.
    pub batchnorms_folded: usize,
    /// Activations fused into a convolution's epilogue.
    pub activations_fused: usize,
    /// Layout conversions NCHW ↔ NHWC that copy.
    pub conversions: usize,
    /// Squeeze-excitation blocks (pool → FC → act → FC → gate → Mul) run as one step.
    pub squeeze_excite: usize,
    /// Residual Adds fused into a lone pointwise convolution's GEMM epilogue.
    pub pointwise_adds: usize,
    /// Steps in all.
    pub steps: usize,
}

#[derive(Debug, Clone)]
struct PV {
    dims: Vec<usize>,
    nhwc: bool,
    slot: usize,
}

#[derive(Debug)]
enum POperand {
    In(usize),
    Const(Vec<f32>),
}

#[derive(Debug)]
enum POp {
    Conv(Box<Conv2d>),
    Sep(Box<DepthwiseSeparableConv2d>),
    Ir(Box<InvertedResidual>),
    Linear(Box<PointwiseConv2d>),
    /// A pointwise convolution with a residual (`ins[1]`) added in its epilogue.
    PwAdd(Box<PointwiseConv2d>),
    Se(Box<SqueezeExcite>),
    /// An activation no convolution took, on the kernels' vectorised code.
    Act(Activation),
    ToNhwc,
    ToRows,
    /// An elementwise chain (unary functions, constants broadcast along one axis).
    Map(Vec<MapOp>),
    Binary {
        op: Bin,
        a: POperand,
        b: POperand,
        ad: Vec<usize>,
        bd: Vec<usize>,
        od: Vec<usize>,
    },
    GlobalPool {
        max: bool,
    },
    Pool(PoolSpec),
    Resize {
        ty: Vec<(usize, usize, f32)>,
        tx: Vec<(usize, usize, f32)>,
    },
    Concat {
        axis: usize,
        parts: Vec<(POperand, Vec<usize>)>,
    },
    Transpose(Vec<usize>),
    Slice(SliceSpec),
    Gather {
        axis: usize,
        idx: Vec<usize>,
    },
    Pad {
        begin: Vec<isize>,
        mode: PadMode,
        value: f32,
    },
    Expand,
    Softmax {
        outer: usize,
        n: usize,
        inner: usize,
    },
    ReduceMean {
        outer: usize,
        n: usize,
        inner: usize,
    },
    MatMul,
    ConvTranspose {
        w: Vec<f32>,
        wdims: [usize; 4],
        bias: Option<Vec<f32>>,
        s: [usize; 2],
        d: [usize; 2],
        pads: [usize; 4],
        group: usize,
    },
    /// Transposed convolution (one group) as a GEMM on dsconv's pointwise kernel (every
    /// input pixel times the weights as `[kh, kw, co]`) and a scatter, NHWC in and out.
    ConvTransposeGemm {
        gemm: Box<PointwiseConv2d>,
        co: usize,
        k: [usize; 2],
        s: [usize; 2],
        d: [usize; 2],
        pads: [usize; 2],
        bias: Option<Vec<f32>>,
        /// Applied after the bias, once the taps are summed.
        act: Activation,
    },
    /// Transposed convolution with stride = kernel and no padding (one group), NHWC in
    /// and out: output row `y·kH + i` is input row `y` times `rows[i]` (`[C_in, kW·C_out]`,
    /// bias and activation in its epilogue), written in place.
    ConvTransposeRows {
        rows: Vec<dsconv::kernels::PackedGemm>,
        act: Activation,
    },
}

#[derive(Debug)]
struct Step {
    name: String,
    op: POp,
    ins: Vec<usize>,
    out: usize,
    /// Elementwise steps merged into this one, applied in place to its output.
    post: Vec<MapOp>,
}

/// A model compiled for one input shape: run it many times with [`Plan::run`].
#[derive(Debug)]
pub struct Plan {
    steps: Vec<Step>,
    vals: Vec<PV>,
    nslots: usize,
    inputs: Vec<(String, usize)>,
    outputs: Vec<(String, std::result::Result<usize, Const>)>,
    /// Slots to give back to the workspace after each step.
    frees: Vec<Vec<usize>>,
    /// `(step, input)`: graph inputs read by one layout step alone, which then reads the
    /// caller's slice (no copy into the workspace first).
    direct: Vec<(usize, usize)>,
    costs: Vec<LayerCost>,
    fusion: Fusion,
    ws: Workspace,
}

impl Model {
    /// Compiles the model for the given input shapes (one per graph input, ONNX order:
    /// `[N, C, H, W]` for an image). Symbolic dimensions take the given sizes; fixed
    /// ones must match.
    pub fn plan(&self, shapes: &[&[usize]]) -> Result<Plan> {
        let pre = prep::prepare(self, shapes)?;
        Builder::new(&pre).build()
    }
}

struct Unit {
    name: String,
    w: Vec<f32>,
    wdims: [usize; 4],
    bias: Option<Vec<f32>>,
    params: Conv2dParams,
    act: Activation,
    input: usize,
    out: usize,
    nodes: Vec<usize>,
    bn: bool,
}

/// What [`Builder::tail`] found after a convolution: the nodes it absorbs, the value they
/// end in, the activation and whether a BatchNormalization was among them.
struct Tail {
    nodes: Vec<usize>,
    out: usize,
    act: Activation,
    bn: bool,
}

/// A squeeze-excitation found by `match_se` on value `x`, its nodes not yet taken.
struct SeMatch {
    x: usize,
    pool: usize,
    mul: usize,
    f1: Unit,
    f2: Unit,
    gate: Activation,
    /// A HardSigmoid gate node and its `alpha`, `beta`, folded into FC₂.
    hard: Option<(usize, f32, f32)>,
    /// An `Add(x, Mul(x, gate))` after the Mul (PP-OCR det's residual SE), folded into
    /// the gate as `x · (1 + gate)`.
    plus: Option<usize>,
    /// The Mul's output, or the Add's.
    out: usize,
}

impl Unit {
    fn is_pointwise(&self) -> bool {
        let zero = dsconv::Padding::asymmetric(0, 0, 0, 0);
        self.wdims[2..] == [1, 1]
            && self.params.stride == [1, 1]
            && self.params.groups == 1
            && self.params.padding == zero
    }
    fn is_depthwise(&self) -> bool {
        self.params.groups > 1 && self.wdims[1] == 1 && self.wdims[0] == self.params.groups
    }
    fn tensor(&self) -> Result<Tensor> {
        Ok(Tensor::from_nchw(self.w.clone(), self.wdims)?)
    }
}

struct Builder<'a> {
    pre: &'a Prepared,
    nodes: Vec<Option<DNode>>,
    uses: Vec<usize>,
    cons: Vec<Vec<usize>>,
    vals: Vec<PV>,
    nslots: usize,
    steps: Vec<Step>,
    rows: HashMap<usize, usize>,
    nhwc: HashMap<usize, usize>,
    costs: Vec<LayerCost>,
    fusion: Fusion,
}

fn to_act(u: Unary) -> Option<Activation> {
    Some(match u {
        Unary::Relu => Activation::Relu,
        Unary::HardSwish => Activation::HardSwish,
        Unary::Sigmoid => Activation::Sigmoid,
        Unary::Silu => Activation::Silu,
        Unary::Clip(lo, hi) if lo == 0.0 && hi == 6.0 => Activation::Relu6,
        Unary::Clip(lo, hi) if lo == 0.0 && hi == f32::INFINITY => Activation::Relu,
        Unary::Clip(lo, hi) if lo <= hi => Activation::Clamp { min: lo, max: hi },
        _ => return None,
    })
}

/// `x op c` (or `c op x` for Add and Mul) with `c` a scalar or one value per channel of a
/// 4-D NCHW value with `co` channels, as a per-channel `x · s + t`.
fn const_affine(op: Bin, a: &Operand, b: &Operand, co: usize) -> Option<(Vec<f64>, Vec<f64>)> {
    let (c, d, rev) = match (a, b) {
        (Operand::Dyn(0), Operand::Const(c, d)) => (c, d, false),
        (Operand::Const(c, d), Operand::Dyn(0)) => (c, d, true),
        _ => return None,
    };
    let per_channel = c.len() == co
        && d.len() >= 3
        && d.len() <= 4
        && d[d.len() - 2..] == [1, 1]
        && d[d.len() - 3] == co;
    if (c.len() != 1 && !per_channel) || d.len() > 4 {
        return None;
    }
    let v = |o: usize| c[if c.len() == 1 { 0 } else { o }] as f64;
    let (s, t): (Vec<f64>, Vec<f64>) = match (op, rev) {
        (Bin::Mul, _) => ((0..co).map(v).collect(), vec![0.0; co]),
        (Bin::Add, _) => (vec![1.0; co], (0..co).map(v).collect()),
        (Bin::Sub, false) => (vec![1.0; co], (0..co).map(|o| -v(o)).collect()),
        (Bin::Div, false) if (0..co).all(|o| v(o) != 0.0) => {
            ((0..co).map(|o| 1.0 / v(o)).collect(), vec![0.0; co])
        }
        _ => return None,
    };
    Some((s, t))
}

/// A binary step with one constant operand as an in-place map: the constant must be a
/// scalar or vary along one axis of the output `od` (its dims `cd`, right-aligned).
fn const_map(op: Bin, c: &[f32], cd: &[usize], od: &[usize], rev: bool) -> Option<MapOp> {
    if cd.len() > od.len() {
        return None;
    }
    let mut ext = vec![1; od.len() - cd.len()];
    ext.extend_from_slice(cd);
    let varying: Vec<usize> = (0..od.len()).filter(|&i| ext[i] != 1).collect();
    let inner = match varying[..] {
        [] if c.len() == 1 => 1,
        [ax] if ext[ax] == od[ax] && c.len() == od[ax] => od[ax + 1..].iter().product(),
        _ => return None,
    };
    Some(MapOp::Bin {
        op,
        c: c.to_vec(),
        inner,
        rev,
    })
}

fn nhwc_dims(d: &[usize]) -> [usize; 4] {
    [d[0], d[2], d[3], d[1]]
}

fn d4(d: &[usize]) -> [usize; 4] {
    [d[0], d[1], d[2], d[3]]
}

impl<'a> Builder<'a> {
    fn new(pre: &'a Prepared) -> Self {
        let mut b = Builder {
            pre,
            nodes: pre.nodes.iter().cloned().map(Some).collect(),
            uses: Vec::new(),
            cons: Vec::new(),
            vals: Vec::new(),
            nslots: 0,
            steps: Vec::new(),
            rows: HashMap::new(),
            nhwc: HashMap::new(),
            costs: Vec::new(),
            fusion: Fusion::default(),
        };
        b.count();
        b.rewrite_swish();
        b.count();
        b
    }

    fn count(&mut self) {
        let n = self.pre.dims.len();
        self.uses = vec![0; n];
        self.cons = vec![Vec::new(); n];
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(node) = node {
                for &v in &node.ins {
                    self.uses[v] += 1;
                    if self.cons[v].last() != Some(&i) {
                        self.cons[v].push(i);
                    }
                }
            }
        }
        for (_, o) in &self.pre.outputs {
            if let Ok(v) = o {
                self.uses[*v] += 1;
            }
        }
    }

    /// The one node that reads `v` (once), when nothing else (not a graph output) does.
    fn sole(&self, v: usize) -> Option<usize> {
        (self.uses[v] == 1 && self.cons[v].len() == 1).then(|| self.cons[v][0])
    }

    /// `x · sigmoid(x)` → SiLU and `x · hardsigmoid(x)` (α = 1/6, β = ½) → HardSwish.
    fn rewrite_swish(&mut self) {
        let producer: HashMap<usize, usize> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (n.out, i)))
            .collect();
        for m in 0..self.nodes.len() {
            let Some(node) = &self.nodes[m] else { continue };
            let Op::Binary {
                op: Bin::Mul,
                a: Operand::Dyn(_),
                b: Operand::Dyn(_),
            } = &node.op
            else {
                continue;
            };
            let (x, y) = (node.ins[0], node.ins[1]);
            for (x, y) in [(x, y), (y, x)] {
                let Some(&s) = producer.get(&y) else { continue };
                let Some(sn) = &self.nodes[s] else { continue };
                let unary = match sn.op {
                    Op::Unary(Unary::Sigmoid) => Unary::Silu,
                    Op::Unary(Unary::HardSigmoid(a, b))
                        if (a - 1.0 / 6.0).abs() < 1e-6 && b == 0.5 =>
                    {
                        Unary::HardSwish
                    }
                    _ => continue,
                };
                if sn.ins[0] != x || self.uses[y] != 1 {
                    continue;
                }
                if let Some(n) = &mut self.nodes[m] {
                    n.op = Op::Unary(unary);
                    n.ins = vec![x];
                }
                self.nodes[s] = None;
                break;
            }
        }
        // Paddle's hard-swish: Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6).
        let scalar =
            |o: &Operand, v: f32| matches!(o, Operand::Const(c, _) if c.len() == 1 && c[0] == v);
        for d in 0..self.nodes.len() {
            let Some(dn) = &self.nodes[d] else { continue };
            let Op::Binary {
                op: Bin::Div,
                a: Operand::Dyn(0),
                b,
            } = &dn.op
            else {
                continue;
            };
            if !scalar(b, 6.0) {
                continue;
            }
            let Some(&m) = producer.get(&dn.ins[0]) else {
                continue;
            };
            let Some(mn) = &self.nodes[m] else { continue };
            if !matches!(
                mn.op,
                Op::Binary {
                    op: Bin::Mul,
                    a: Operand::Dyn(_),
                    b: Operand::Dyn(_)
                }
            ) || self.uses[mn.out] != 1
            {
                continue;
            }
            let mut found = None;
            for (x, c) in [(mn.ins[0], mn.ins[1]), (mn.ins[1], mn.ins[0])] {
                let Some(&ci) = producer.get(&c) else {
                    continue;
                };
                let Some(cn) = &self.nodes[ci] else { continue };
                if !matches!(cn.op, Op::Unary(Unary::Clip(lo, hi)) if lo == 0.0 && hi == 6.0)
                    || self.uses[c] != 1
                {
                    continue;
                }
                let Some(&ai) = producer.get(&cn.ins[0]) else {
                    continue;
                };
                let Some(an) = &self.nodes[ai] else { continue };
                let three = match &an.op {
                    Op::Binary {
                        op: Bin::Add,
                        a: Operand::Dyn(_),
                        b,
                    }
                    | Op::Binary {
                        op: Bin::Add,
                        a: b,
                        b: Operand::Dyn(_),
                    } => scalar(b, 3.0),
                    _ => false,
                };
                if three
                    && an.ins == [x]
                    && self.uses[an.out] == 1
                    && self.pre.dims[x] == self.pre.dims[dn.out]
                {
                    found = Some((x, m, ci, ai));
                    break;
                }
            }
            if let Some((x, m, ci, ai)) = found {
                if let Some(n) = &mut self.nodes[d] {
                    n.op = Op::Unary(Unary::HardSwish);
                    n.ins = vec![x];
                }
                for i in [m, ci, ai] {
                    self.nodes[i] = None;
                }
            }
        }
    }

    fn new_val(&mut self, dims: Vec<usize>, nhwc: bool) -> usize {
        self.vals.push(PV {
            dims,
            nhwc,
            slot: self.nslots,
        });
        self.nslots += 1;
        self.vals.len() - 1
    }

    fn alias(&mut self, of: usize, dims: Vec<usize>, nhwc: bool) -> usize {
        let slot = self.vals[of].slot;
        self.vals.push(PV { dims, nhwc, slot });
        self.vals.len() - 1
    }

    fn push(&mut self, name: &str, op: POp, ins: Vec<usize>, out: usize) {
        self.steps.push(Step {
            name: name.to_string(),
            op,
            ins,
            out,
            post: Vec::new(),
        });
    }

    fn define(&mut self, id: usize, pv: usize) {
        if self.vals[pv].nhwc {
            self.nhwc.insert(id, pv);
        } else {
            self.rows.insert(id, pv);
        }
    }

    /// The value in row-major order (converting from NHWC once if needed).
    fn rows_of(&mut self, id: usize) -> usize {
        if let Some(&v) = self.rows.get(&id) {
            return v;
        }
        let src = self.nhwc[&id];
        let d = self.vals[src].dims.clone();
        let v = if d[2] * d[3] == 1 || d[1] == 1 {
            self.alias(src, d, false)
        } else {
            let v = self.new_val(d, false);
            self.fusion.conversions += 1;
            self.push("to NCHW", POp::ToRows, vec![src], v);
            v
        };
        self.rows.insert(id, v);
        v
    }

    /// The 4-D value in NHWC (converting once if needed).
    fn nhwc_of(&mut self, id: usize) -> usize {
        if let Some(&v) = self.nhwc.get(&id) {
            return v;
        }
        let src = self.rows[&id];
        let d = self.vals[src].dims.clone();
        let v = if d[2] * d[3] == 1 || d[1] == 1 {
            self.alias(src, d, true)
        } else {
            let v = self.new_val(d, true);
            self.fusion.conversions += 1;
            self.push("to NHWC", POp::ToNhwc, vec![src], v);
            v
        };
        self.nhwc.insert(id, v);
        v
    }

    fn any_of(&mut self, id: usize) -> usize {
        self.nhwc
            .get(&id)
            .or_else(|| self.rows.get(&id))
            .copied()
            .unwrap_or(0)
    }

    fn unit(&self, i: usize) -> Option<Unit> {
        let n = self.nodes[i].as_ref()?;
        let Op::Conv {
            w,
            wdims,
            bias,
            params,
        } = &n.op
        else {
            return None;
        };
        let (mut w, mut bias) = (w.clone(), bias.clone());
        let co = wdims[0];
        let per = w.len() / co.max(1);
        let t = self.tail(n.out, co, |s, sh| {
            let b = bias.get_or_insert_with(|| vec![0.0; co]);
            for o in 0..co {
                for v in &mut w[o * per..(o + 1) * per] {
                    *v = (*v as f64 * s[o]) as f32;
                }
                b[o] = (b[o] as f64 * s[o] + sh[o]) as f32;
            }
        });
        let mut nodes = vec![i];
        nodes.extend(t.nodes);
        Some(Unit {
            name: n.name.clone(),
            w,
            wdims: *wdims,
            bias,
            params: *params,
            act: t.act,
            input: n.ins[0],
            out: t.out,
            nodes,
            bn: t.bn,
        })
    }

    /// The nodes after value `out` (of `co` channels, NCHW dims) that fold into the
    /// convolution producing it, each reading the last one's output alone: per-channel
    /// affines (a BatchNormalization, an Add / Sub / Mul / Div of a per-channel or scalar
    /// constant), each handed to `fold(scale, shift)` to fold into the weights and bias,
    /// then one activation. Takes nothing.
    fn tail(&self, out: usize, co: usize, mut fold: impl FnMut(&[f64], &[f64])) -> Tail {
        let mut t = Tail {
            nodes: Vec::new(),
            out,
            act: Activation::None,
            bn: false,
        };
        while let Some(j) = self.sole(t.out) {
            let Some(m) = &self.nodes[j] else { break };
            match &m.op {
                Op::Affine { scale, shift } if !t.bn && t.act == Activation::None => {
                    fold(scale, shift);
                    t.bn = true;
                }
                Op::Binary { op, a, b } if t.act == Activation::None => {
                    let Some((s, sh)) = const_affine(*op, a, b, co) else {
                        break;
                    };
                    fold(&s, &sh);
                }
                Op::Unary(un) if t.act == Activation::None => match to_act(*un) {
                    Some(a) => t.act = a,
                    None => break,
                },
                _ => break,
            }
            t.nodes.push(j);
            t.out = m.out;
        }
        t
    }

    fn take(&mut self, u: &Unit) {
        for &i in &u.nodes {
            self.nodes[i] = None;
        }
        self.fusion.batchnorms_folded += u.bn as usize;
        self.fusion.activations_fused += (u.act != Activation::None) as usize;
    }

    fn conv_cost(&mut self, u: &Unit, input: &[usize]) -> Result<()> {
        let g = dsconv::ConvGeometry::new(d4(input), u.wdims, &u.params)?;
        let mut row = LayerCost::conv(u.name.clone(), &g, u.bias.is_some());
        if u.bn {
            row = row.with_batchnorm();
        }
        self.costs.push(row);
        Ok(())
    }

    fn dims(&self, id: usize) -> Vec<usize> {
        self.pre.dims[id].clone()
    }

    /// An `Add(out, other)` of two values of `out`'s dims that alone reads `out`: its node
    /// and `other`.
    fn sole_add(&self, out: usize) -> Option<(usize, usize)> {
        let j = self.sole(out)?;
        let n = self.nodes[j].as_ref()?;
        let Op::Binary {
            op: Bin::Add,
            a: Operand::Dyn(_),
            b: Operand::Dyn(_),
        } = n.op
        else {
            return None;
        };
        let other = if n.ins[0] == out { n.ins[1] } else { n.ins[0] };
        (n.ins.contains(&out)
            && other != out
            && self.pre.dims[other] == self.pre.dims[out]
            && self.pre.dims[n.out] == self.pre.dims[out])
            .then_some((j, other))
    }

    /// A residual `Add(out, skip)` that alone reads `out`: its node.
    fn residual_add(&self, out: usize, skip: usize) -> Option<usize> {
        self.sole_add(out)
            .filter(|&(_, other)| other == skip)
            .map(|(j, _)| j)
    }

    /// The pointwise convolution reading `v`, alone, through per-channel or scalar
    /// constant affines (BatchNormalization, `Mul` / `Add` / `Sub` / `Div` by a constant:
    /// Paddle's learnable affine blocks after an activation), those folded into its weights
    /// and bias: `W·(s ⊙ y + t) + b = (W·diag s)·y + (W·t + b)`, exact for a 1×1
    /// convolution (no padding). Takes nothing.
    fn pointwise_after(&self, v: usize) -> Option<Unit> {
        let d = self.dims(v);
        let c = *d.get(1).filter(|_| d.len() == 4)?;
        let (mut s, mut t) = (vec![1f64; c], vec![0f64; c]);
        let mut nodes = Vec::new();
        let mut cur = v;
        loop {
            let j = self.sole(cur)?;
            let n = self.nodes[j].as_ref()?;
            let (s2, t2) = match &n.op {
                Op::Conv { .. } => break,
                Op::Affine { scale, shift } if scale.len() == c => (scale.clone(), shift.clone()),
                Op::Binary { op, a, b } => const_affine(*op, a, b, c)?,
                _ => return None,
            };
            if self.pre.dims[n.out] != d {
                return None;
            }
            for k in 0..c {
                (s[k], t[k]) = (s[k] * s2[k], t[k] * s2[k] + t2[k]);
            }
            nodes.push(j);
            cur = n.out;
        }
        let mut u = self.unit(self.sole(cur)?)?;
        if !u.is_pointwise() || u.wdims[1] != c {
            return None;
        }
        if !nodes.is_empty() {
            let co = u.wdims[0];
            let b = u.bias.get_or_insert_with(|| vec![0.0; co]);
            for o in 0..co {
                let row = &mut u.w[o * c..(o + 1) * c];
                let shift: f64 = row.iter().zip(&t).map(|(&w, &tk)| w as f64 * tk).sum();
                b[o] = (b[o] as f64 + shift) as f32;
                for (w, &sk) in row.iter_mut().zip(&s) {
                    *w = (*w as f64 * sk) as f32;
                }
            }
            nodes.extend(u.nodes);
            u.nodes = nodes;
        }
        Some(u)
    }

    fn conv_chain(&mut self, i: usize) -> Result<()> {
        let Some(u) = self.unit(i) else { return Ok(()) };
        let next_conv = |b: &Self, v: usize| b.sole(v).and_then(|j| b.unit(j));
        // depthwise → [squeeze-excitation] → project, the project through affines
        let tail = |b: &Self, dw: &Unit| -> Option<(Option<SeMatch>, Unit)> {
            if let Some(pr) = b.pointwise_after(dw.out) {
                return Some((None, pr));
            }
            let se = b.match_se(dw.out)?;
            let pr = b.pointwise_after(se.out)?;
            Some((Some(se), pr))
        };
        // expand → depthwise → [squeeze-excitation] → project
        if u.is_pointwise() {
            if let Some(dw) = next_conv(self, u.out).filter(|d| d.is_depthwise()) {
                if let Some((se, pr)) = tail(self, &dw) {
                    return self.emit_ir(Some(u), dw, se, pr);
                }
            }
        }
        if u.is_depthwise() {
            if let Some((se, pr)) = tail(self, &u) {
                return self.emit_ir(None, u, se, pr);
            }
        }
        self.take(&u);
        let input = self.nhwc_of(u.input);
        let in_dims = self.dims(u.input);
        self.conv_cost(&u, &in_dims)?;
        if u.is_pointwise() {
            if let Some((j, skip)) = self.lone_residual(u.out) {
                let layer =
                    PointwiseConv2d::new(u.tensor()?, u.bias.clone())?.with_activation(u.act);
                let skip = self.nhwc_of(skip);
                let out_id = self.nodes[j].as_ref().map_or(u.out, |n| n.out);
                self.nodes[j] = None;
                let out = self.new_val(self.dims(out_id), true);
                self.push(
                    &format!("{} + add", u.name),
                    POp::PwAdd(Box::new(layer)),
                    vec![input, skip],
                    out,
                );
                self.fusion.convs += 1;
                self.fusion.pointwise_adds += 1;
                self.define(out_id, out);
                return Ok(());
            }
        }
        let conv = Conv2d::new(u.tensor()?, u.bias.clone(), u.params)?.with_activation(u.act);
        let out = self.new_val(self.dims(u.out), true);
        self.push(&u.name, POp::Conv(Box::new(conv)), vec![input], out);
        self.fusion.convs += 1;
        self.define(u.out, out);
        self.squeeze_excite(u.out)
    }

    /// `Add(out, skip)` reading `out` alone, with `skip` of the same dims already
    /// computed (so the Add can run in the epilogue of what makes `out`): its node and
    /// `skip`.
    fn lone_residual(&self, out: usize) -> Option<(usize, usize)> {
        self.sole_add(out)
            .filter(|&(_, skip)| self.nhwc.contains_key(&skip) || self.rows.contains_key(&skip))
    }

    /// Squeeze-excitation on `x` run as one step, if `x` feeds one (see [`Self::match_se`]).
    fn squeeze_excite(&mut self, x: usize) -> Result<()> {
        let Some(m) = self.match_se(x) else {
            return Ok(());
        };
        let (se, name, out_id) = self.take_se(m)?;
        let input = self.nhwc_of(x);
        let out = self.new_val(self.dims(out_id), true);
        self.push(&name, POp::Se(Box::new(se)), vec![input], out);
        self.define(out_id, out);
        Ok(())
    }

    /// Squeeze-excitation on `x`: `Mul(x, gate(FC₂(act(FC₁(GlobalAveragePool(x))))))`
    /// with the pool and the Mul the only readers of `x`, the FCs 1×1 convolutions (their
    /// activation folded as usual) and the gate a Sigmoid (in FC₂'s epilogue) or a
    /// HardSigmoid (folded into FC₂'s weights, then a clamp to [0, 1]). With a clamping
    /// gate, `x` may have a third reader, `Add(x, Mul(x, gate))` (the Mul's only reader):
    /// it becomes `x · (1 + gate)`, one added to FC₂'s bias and to the clamp's bounds.
    /// Takes nothing.
    fn match_se(&self, x: usize) -> Option<SeMatch> {
        let d = self.dims(x);
        let readers = self.cons[x].len();
        if d.len() != 4 || self.uses[x] != readers || !(2..=3).contains(&readers) {
            return None;
        }
        let (mut pool, mut mul, mut add) = (None, None, None);
        for &j in &self.cons[x] {
            match &self.nodes[j].as_ref()?.op {
                Op::GlobalPool { max: false } => pool = Some(j),
                Op::ReduceMean { axes }
                    if axes[..] == [2, 3]
                        && self.pre.dims[self.nodes[j].as_ref()?.out].len() == 4 =>
                {
                    pool = Some(j)
                }
                Op::Binary {
                    op: Bin::Mul,
                    a: Operand::Dyn(_),
                    b: Operand::Dyn(_),
                } => mul = Some(j),
                Op::Binary {
                    op: Bin::Add,
                    a: Operand::Dyn(_),
                    b: Operand::Dyn(_),
                } if readers == 3 => add = Some(j),
                _ => return None,
            }
        }
        let (pool, mul) = (pool?, mul?);
        if readers == 3 && add.is_none() {
            return None;
        }
        let p_out = self.nodes[pool].as_ref()?.out;
        let f1 = self.sole(p_out).and_then(|j| self.unit(j))?;
        let f2 = self.sole(f1.out).and_then(|j| self.unit(j))?;
        let c = d[1];
        if !f1.is_pointwise()
            || !f2.is_pointwise()
            || f1.input != p_out
            || f1.bn
            || f2.bn
            || f1.wdims[1] != c
            || f2.wdims[0] != c
            || f2.wdims[1] != f1.wdims[0]
        {
            return None;
        }
        let (gate, gate_val, hard) = if f2.act != Activation::None {
            (f2.act, f2.out, None)
        } else {
            let j = self.sole(f2.out)?;
            match self.nodes[j].as_ref().map(|n| (&n.op, n.out)) {
                Some((Op::Unary(Unary::HardSigmoid(a, b)), o)) => (
                    Activation::Clamp { min: 0.0, max: 1.0 },
                    o,
                    Some((j, *a, *b)),
                ),
                _ => return None,
            }
        };
        let mn = self.nodes[mul].as_ref()?;
        if self.sole(gate_val) != Some(mul)
            || !mn.ins.contains(&x)
            || !mn.ins.contains(&gate_val)
            || self.pre.dims[mn.out] != d
        {
            return None;
        }
        let mut out = mn.out;
        if let Some(j) = add {
            let an = self.nodes[j].as_ref()?;
            if !matches!(gate, Activation::Clamp { .. })
                || self.sole(mn.out) != Some(j)
                || !an.ins.contains(&x)
                || !an.ins.contains(&mn.out)
                || self.pre.dims[an.out] != d
            {
                return None;
            }
            out = an.out;
        }
        Some(SeMatch {
            x,
            pool,
            mul,
            f1,
            f2,
            gate,
            hard,
            plus: add,
            out,
        })
    }

    /// Takes the nodes of a matched squeeze-excitation and pushes its cost rows: the
    /// block, its step name and the value it defines.
    fn take_se(&mut self, m: SeMatch) -> Result<(SqueezeExcite, String, usize)> {
        let d = self.dims(m.x);
        let (f1, f2, c) = (&m.f1, &m.f2, d[1]);
        let (mut w2, mut b2) = (f2.w.clone(), f2.bias.clone());
        if let Some((_, a, b)) = m.hard {
            for w in &mut w2 {
                *w *= a;
            }
            let bv = b2.get_or_insert_with(|| vec![0.0; c]);
            for v in bv.iter_mut() {
                *v = *v * a + b;
            }
        }
        let mut gate = m.gate;
        if let (Some(_), Activation::Clamp { min, max }) = (m.plus, gate) {
            // x + x · clamp(v, lo, hi) = x · clamp(v + 1, lo + 1, hi + 1).
            for v in b2.get_or_insert_with(|| vec![0.0; c]).iter_mut() {
                *v += 1.0;
            }
            gate = Activation::Clamp {
                min: min + 1.0,
                max: max + 1.0,
            };
        }
        let se = SqueezeExcite::new(
            &f1.tensor()?,
            f1.bias.clone(),
            f1.act,
            &Tensor::from_nchw(w2, f2.wdims)?,
            b2,
            gate,
        )?;
        let n = d[0];
        self.costs
            .push(LayerCost::global_avg_pool(self.pre_name(m.pool), d4(&d)));
        let r = f1.wdims[0];
        self.costs.push(LayerCost::linear(
            f1.name.clone(),
            n,
            c,
            r,
            f1.bias.is_some(),
        ));
        self.costs.push(LayerCost::linear(
            f2.name.clone(),
            n,
            r,
            c,
            f2.bias.is_some(),
        ));
        let mut name = format!(
            "{} + {} + {} + {}",
            self.pre_name(m.pool),
            f1.name,
            f2.name,
            self.pre_name(m.mul)
        );
        if let Some(j) = m.plus {
            name = format!("{name} + {}", self.pre_name(j));
        }
        self.take(&m.f1);
        self.take(&m.f2);
        for j in [Some(m.pool), Some(m.mul), m.hard.map(|h| h.0), m.plus]
            .into_iter()
            .flatten()
        {
            self.nodes[j] = None;
        }
        self.fusion.squeeze_excite += 1;
        Ok((se, name, m.out))
    }

    fn pre_name(&self, node: usize) -> String {
        self.nodes[node]
            .as_ref()
            .map_or_else(String::new, |n| n.name.clone())
    }

    fn emit_ir(
        &mut self,
        expand: Option<Unit>,
        dw: Unit,
        se: Option<SeMatch>,
        pr: Unit,
    ) -> Result<()> {
        let block_in = expand.as_ref().map_or(dw.input, |e| e.input);
        let mut in_dims = self.dims(block_in);
        let mut name = String::new();
        let expand_layer = match &expand {
            Some(e) => {
                self.take(e);
                self.conv_cost(e, &in_dims.clone())?;
                name = format!("{} + ", e.name);
                in_dims = self.dims(e.out);
                Some(PointwiseConv2d::new(e.tensor()?, e.bias.clone())?.with_activation(e.act))
            }
            None => None,
        };
        self.take(&dw);
        self.take(&pr);
        self.conv_cost(&dw, &in_dims)?;
        let dw_dims = self.dims(dw.out);
        name.push_str(&dw.name);
        let se = match se {
            Some(m) => {
                let (se, se_name, _) = self.take_se(m)?;
                name.push_str(&format!(" + {se_name}"));
                Some(se)
            }
            None => None,
        };
        self.conv_cost(&pr, &dw_dims)?;
        name.push_str(&format!(" + {}", pr.name));
        let dwl =
            DepthwiseConv2d::new(dw.tensor()?, dw.bias.clone(), dw.params)?.with_activation(dw.act);
        let pwl = PointwiseConv2d::new(pr.tensor()?, pr.bias.clone())?.with_activation(pr.act);
        let residual = self
            .residual_add(pr.out, block_in)
            .filter(|_| dw.params.stride == [1, 1]);
        let input = self.nhwc_of(block_in);
        let (op, out_id) = if expand_layer.is_some() || residual.is_some() || se.is_some() {
            let mut out_id = pr.out;
            if let Some(j) = residual {
                out_id = self.nodes[j].as_ref().map_or(out_id, |n| n.out);
                self.nodes[j] = None;
                self.fusion.residual_adds += 1;
                name.push_str(" + add");
            }
            self.fusion.inverted_residual += 1;
            let mut block = InvertedResidual::new(expand_layer, dwl, pwl, residual.is_some())?;
            if let Some(se) = se {
                block = block.with_squeeze_excite(se)?;
            }
            (POp::Ir(Box::new(block)), out_id)
        } else {
            self.fusion.separable += 1;
            (
                POp::Sep(Box::new(DepthwiseSeparableConv2d::new(dwl, pwl)?)),
                pr.out,
            )
        };
        let out = self.new_val(self.dims(out_id), true);
        self.push(&name, op, vec![input], out);
        self.define(out_id, out);
        Ok(())
    }

    fn operand(
        &mut self,
        o: &Operand,
        ins: &[usize],
        nhwc: bool,
        rank: usize,
        step_ins: &mut Vec<usize>,
    ) -> (POperand, Vec<usize>) {
        match o {
            Operand::Dyn(k) => {
                let id = ins[*k];
                let pv = if nhwc {
                    self.nhwc_of(id)
                } else {
                    self.rows_of(id)
                };
                step_ins.push(pv);
                let d = self.dims(id);
                (
                    POperand::In(step_ins.len() - 1),
                    if nhwc { nhwc_dims(&d).to_vec() } else { d },
                )
            }
            Operand::Const(v, d) if nhwc => {
                let mut ext = vec![1; rank - d.len()];
                ext.extend_from_slice(d);
                let mut t = vec![0f32; v.len()];
                consts::transpose(v, &ext, &[0, 2, 3, 1], &mut t);
                (POperand::Const(t), nhwc_dims(&ext).to_vec())
            }
            Operand::Const(v, d) => (POperand::Const(v.clone()), d.clone()),
        }
    }

    fn node(&mut self, i: usize) -> Result<()> {
        let Some(n) = self.nodes[i].clone() else {
            return Ok(());
        };
        if matches!(n.op, Op::Conv { .. }) {
            return self.conv_chain(i);
        }
        self.nodes[i] = None;
        let od = self.dims(n.out);
        let name = n.name.as_str();
        let x = n.ins.first().copied().unwrap_or(0);
        let out = match n.op {
            // Convolutions went to conv_chain above.
            Op::Conv { .. } => return Ok(()),
            Op::Alias => {
                let src = if self.nhwc.contains_key(&x)
                    && self.dims(x) == od
                    && !self.rows.contains_key(&x)
                {
                    let s = self.nhwc[&x];
                    let o = self.alias(s, od, true);
                    self.define(n.out, o);
                    return Ok(());
                } else {
                    self.rows_of(x)
                };
                let o = self.alias(src, od, false);
                self.define(n.out, o);
                return Ok(());
            }
            Op::Unary(u) => {
                let inp = self.any_of(x);
                let o = self.new_val(od, self.vals[inp].nhwc);
                let op = match to_act(u) {
                    Some(a) => POp::Act(a),
                    None => POp::Map(vec![MapOp::Unary(u)]),
                };
                self.push(name, op, vec![inp], o);
                o
            }
            Op::Affine { scale, shift } => {
                let inp = self.any_of(x);
                let inner = if self.vals[inp].nhwc {
                    1
                } else {
                    od[2..].iter().product()
                };
                let o = self.new_val(od, self.vals[inp].nhwc);
                let scale: Vec<f32> = scale.iter().map(|&v| v as f32).collect();
                let shift: Vec<f32> = shift.iter().map(|&v| v as f32).collect();
                // x · scale + shift, per channel (two roundings, as before).
                let ops = vec![
                    MapOp::Bin {
                        op: Bin::Mul,
                        c: scale,
                        inner,
                        rev: false,
                    },
                    MapOp::Bin {
                        op: Bin::Add,
                        c: shift,
                        inner,
                        rev: false,
                    },
                ];
                self.push(name, POp::Map(ops), vec![inp], o);
                o
            }
            Op::Binary { op, a, b } => {
                let dyn_ids: Vec<usize> = n.ins.clone();
                let nhwc = od.len() == 4
                    && dyn_ids.iter().all(|&v| self.pre.dims[v].len() == 4)
                    && dyn_ids.iter().any(|v| self.nhwc.contains_key(v));
                let mut ins = Vec::new();
                let (pa, ad) = self.operand(&a, &n.ins, nhwc, 4, &mut ins);
                let (pb, bd) = self.operand(&b, &n.ins, nhwc, 4, &mut ins);
                let pod = if nhwc {
                    nhwc_dims(&od).to_vec()
                } else {
                    od.clone()
                };
                let o = self.new_val(od, nhwc);
                let map = match (&pa, &pb) {
                    (POperand::In(_), POperand::Const(c)) if ad == pod => {
                        const_map(op, c, &bd, &pod, false)
                    }
                    (POperand::Const(c), POperand::In(_)) if bd == pod => {
                        const_map(op, c, &ad, &pod, true)
                    }
                    _ => None,
                };
                let pop = match map {
                    Some(m) => POp::Map(vec![m]),
                    None => POp::Binary {
                        op,
                        a: pa,
                        b: pb,
                        ad,
                        bd,
                        od: pod,
                    },
                };
                self.push(name, pop, ins, o);
                o
            }
            Op::GlobalPool { max } => {
                let inp = self.nhwc_of(x);
                if !max {
                    self.costs
                        .push(LayerCost::global_avg_pool(name, d4(&self.dims(x))));
                }
                let o = self.new_val(od, true);
                self.push(name, POp::GlobalPool { max }, vec![inp], o);
                o
            }
            Op::ReduceMean { axes } => {
                let d = self.dims(x);
                if d.len() == 4 && axes == [2, 3] && self.nhwc.contains_key(&x) {
                    let inp = self.nhwc_of(x);
                    self.costs.push(LayerCost::global_avg_pool(name, d4(&d)));
                    let keep = od.len() == 4;
                    let o = self.new_val(od, keep);
                    self.push(name, POp::GlobalPool { max: false }, vec![inp], o);
                    o
                } else {
                    let inp = self.rows_of(x);
                    let (a0, a1) = (axes[0], axes[axes.len() - 1]);
                    let outer = d[..a0].iter().product();
                    let nn = d[a0..=a1].iter().product();
                    let inner = d[a1 + 1..].iter().product();
                    let o = self.new_val(od, false);
                    self.push(
                        name,
                        POp::ReduceMean {
                            outer,
                            n: nn,
                            inner,
                        },
                        vec![inp],
                        o,
                    );
                    o
                }
            }
            Op::Pool(spec) => {
                let inp = self.nhwc_of(x);
                let o = self.new_val(od, true);
                self.push(name, POp::Pool(spec), vec![inp], o);
                o
            }
            Op::Resize {
                linear,
                nearest,
                coord,
                scale,
            } => {
                let d = self.dims(x);
                let ty = kernels::resize_taps(linear, nearest, coord, scale[0], d[2], od[2]);
                let tx = kernels::resize_taps(linear, nearest, coord, scale[1], d[3], od[3]);
                let inp = self.nhwc_of(x);
                let o = self.new_val(od, true);
                self.push(name, POp::Resize { ty, tx }, vec![inp], o);
                o
            }
            Op::Concat { axis, parts } => {
                let nhwc =
                    od.len() == 4 && axis == 1 && n.ins.iter().any(|v| self.nhwc.contains_key(v));
                let mut ins = Vec::new();
                let mut ps = Vec::new();
                for p in &parts {
                    ps.push(self.operand(p, &n.ins, nhwc, 4, &mut ins));
                }
                let o = self.new_val(od, nhwc);
                self.push(
                    name,
                    POp::Concat {
                        axis: if nhwc { 3 } else { axis },
                        parts: ps,
                    },
                    ins,
                    o,
                );
                o
            }
            Op::Softmax { axis, coerce } => {
                let d = self.dims(x);
                let inp = self.rows_of(x);
                let outer = d[..axis].iter().product();
                let (nn, inner) = if coerce {
                    (d[axis..].iter().product(), 1)
                } else {
                    (d[axis], d[axis + 1..].iter().product())
                };
                let o = self.new_val(od, false);
                self.push(
                    name,
                    POp::Softmax {
                        outer,
                        n: nn,
                        inner,
                    },
                    vec![inp],
                    o,
                );
                o
            }
            Op::Linear {
                w,
                n: nout,
                k,
                mut bias,
            } => {
                // A following Add of a constant along the last axis is the bias.
                let mut out_id = n.out;
                if let Some(j) = self.sole(n.out) {
                    if let Some(Op::Binary { op: Bin::Add, a, b }) =
                        self.nodes[j].as_ref().map(|m| &m.op)
                    {
                        let c = match (a, b) {
                            (Operand::Const(v, d), _) | (_, Operand::Const(v, d))
                                if v.len() == nout && d.last() == Some(&nout) =>
                            {
                                Some(v.clone())
                            }
                            _ => None,
                        };
                        if let Some(c) = c.filter(|_| {
                            self.pre.dims[self.nodes[j].as_ref().map_or(0, |m| m.out)] == od
                        }) {
                            let bv = bias.get_or_insert_with(|| vec![0.0; nout]);
                            for (b, v) in bv.iter_mut().zip(c) {
                                *b += v;
                            }
                            out_id = self.nodes[j].as_ref().map_or(out_id, |m| m.out);
                            self.nodes[j] = None;
                        }
                    }
                }
                let inp = self.rows_of(x);
                let m = numel(&od)? / nout;
                self.costs
                    .push(LayerCost::linear(name, m, k, nout, bias.is_some()));
                let layer = PointwiseConv2d::new(Tensor::from_nchw(w, [nout, k, 1, 1])?, bias)?;
                let o = self.new_val(od, false);
                self.push(name, POp::Linear(Box::new(layer)), vec![inp], o);
                self.define(out_id, o);
                return Ok(());
            }
            Op::ConvTranspose {
                mut w,
                wdims,
                mut bias,
                s,
                d,
                pads,
                group,
            } => {
                let [ci, cog, kh, kw] = wdims;
                let co = cog * group;
                let xd = self.dims(x);
                let mut act = Activation::None;
                let mut out_id = n.out;
                let mut bn = false;
                if group == 1 {
                    // BatchNorm, a constant bias Add and the activation after it fold in, as
                    // after a convolution (PP-OCR's detection head: ConvTranspose → Add →
                    // BatchNormalization → Relu).
                    let kk = kh * kw;
                    let t = self.tail(n.out, co, |sc, sh| {
                        let b = bias.get_or_insert_with(|| vec![0.0; co]);
                        for (e, v) in w.iter_mut().enumerate() {
                            let oc = (e / kk) % co;
                            *v = (*v as f64 * sc[oc]) as f32;
                        }
                        for oc in 0..co {
                            b[oc] = (b[oc] as f64 * sc[oc] + sh[oc]) as f32;
                        }
                    });
                    for &j in &t.nodes {
                        self.nodes[j] = None;
                    }
                    self.fusion.batchnorms_folded += t.bn as usize;
                    self.fusion.activations_fused += (t.act != Activation::None) as usize;
                    (act, out_id, bn) = (t.act, t.out, t.bn);
                }
                let od = self.dims(out_id);
                let mut row = dsconv::cost::LayerCost::conv_transpose(
                    name,
                    d4(&xd),
                    d4(&od),
                    [kh, kw],
                    s,
                    group,
                    bias.is_some(),
                );
                if bn {
                    row = row.with_batchnorm();
                }
                self.costs.push(row);
                let op = if group != 1 {
                    POp::ConvTranspose {
                        w,
                        wdims,
                        bias,
                        s,
                        d,
                        pads,
                        group,
                    }
                } else if s == [kh, kw]
                    && d == [1, 1]
                    && pads == [0; 4]
                    && od[2] == xd[2] * kh
                    && od[3] == xd[3] * kw
                {
                    // Stride = kernel, no padding: each output row is one kernel row's
                    // taps over one input row, a GEMM written in place (the output pixels
                    // 2x, 2x + 1, … of a 2×2 kernel are adjacent in NHWC).
                    let tiled: Option<Vec<f32>> = bias
                        .as_ref()
                        .map(|b| (0..kw).flat_map(|_| b.iter().copied()).collect());
                    let rows = (0..kh)
                        .map(|i| {
                            dsconv::kernels::PackedGemm::from_fn(
                                ci,
                                kw * co,
                                tiled.as_deref(),
                                |ic, col| w[((ic * co + col % co) * kh + i) * kw + col / co],
                            )
                        })
                        .collect::<dsconv::Result<Vec<_>>>()?;
                    POp::ConvTransposeRows { rows, act }
                } else {
                    // W [ci, co, kh, kw] → GEMM weights [(kh, kw, co), ci].
                    let mut wg = vec![0f32; w.len()];
                    for ic in 0..ci {
                        for oc in 0..co {
                            for t in 0..kh * kw {
                                wg[(t * co + oc) * ci + ic] = w[(ic * co + oc) * kh * kw + t];
                            }
                        }
                    }
                    let gemm = PointwiseConv2d::new(
                        Tensor::from_nchw(wg, [kh * kw * co, ci, 1, 1])?,
                        None,
                    )?;
                    POp::ConvTransposeGemm {
                        gemm: Box::new(gemm),
                        co,
                        k: [kh, kw],
                        s,
                        d,
                        pads: [pads[0], pads[1]],
                        bias,
                        act,
                    }
                };
                let nhwc = group == 1;
                let inp = if nhwc {
                    self.nhwc_of(x)
                } else {
                    self.rows_of(x)
                };
                let o = self.new_val(od, nhwc);
                self.push(name, op, vec![inp], o);
                self.define(out_id, o);
                return Ok(());
            }
            Op::MatMul => {
                let a = self.rows_of(n.ins[0]);
                let b = self.rows_of(n.ins[1]);
                let o = self.new_val(od, false);
                self.push(name, POp::MatMul, vec![a, b], o);
                o
            }
            op => {
                let inp = self.rows_of(x);
                let o = self.new_val(od, false);
                let p = match op {
                    Op::Transpose(p) => POp::Transpose(p),
                    Op::Slice(s) => POp::Slice(s),
                    Op::Gather { axis, idx } => POp::Gather { axis, idx },
                    Op::Pad { begin, mode, value } => POp::Pad { begin, mode, value },
                    _ => POp::Expand,
                };
                self.push(name, p, vec![inp], o);
                o
            }
        };
        self.define(n.out, out);
        Ok(())
    }

    fn build(mut self) -> Result<Plan> {
        let mut inputs = Vec::new();
        for (name, id) in &self.pre.inputs {
            let pv = self.new_val(self.dims(*id), false);
            self.rows.insert(*id, pv);
            inputs.push((name.clone(), pv));
        }
        for i in 0..self.nodes.len() {
            self.node(i)?;
        }
        let mut outputs = Vec::new();
        for (name, o) in &self.pre.outputs {
            outputs.push((
                name.clone(),
                match o {
                    Ok(id) => Ok(self.rows_of(*id)),
                    Err(c) => Err(c.clone()),
                },
            ));
        }
        merge_maps(&mut self.steps, &self.vals, &outputs);
        // Last step reading (or writing) each slot; outputs are kept to the end.
        let mut last = vec![0usize; self.nslots];
        for (s, st) in self.steps.iter().enumerate() {
            for &v in st.ins.iter().chain(std::iter::once(&st.out)) {
                last[self.vals[v].slot] = s;
            }
        }
        let keep: Vec<usize> = outputs
            .iter()
            .filter_map(|(_, o)| o.as_ref().ok().map(|&v| self.vals[v].slot))
            .collect();
        let mut frees = vec![Vec::new(); self.steps.len()];
        for (slot, &s) in last.iter().enumerate() {
            if !keep.contains(&slot) && s < frees.len() {
                frees[s].push(slot);
            }
        }
        // A graph input read (through its slot) by one step, a layout conversion, only.
        let mut direct = Vec::new();
        for (k, (_, v)) in inputs.iter().enumerate() {
            let slot = self.vals[*v].slot;
            let touching: Vec<usize> = (0..self.steps.len())
                .filter(|&s| {
                    let st = &self.steps[s];
                    st.ins
                        .iter()
                        .chain(std::iter::once(&st.out))
                        .any(|&u| self.vals[u].slot == slot)
                })
                .collect();
            if let [s] = touching[..] {
                let st = &self.steps[s];
                if matches!(st.op, POp::ToNhwc) && st.ins[..] == [*v] && !keep.contains(&slot) {
                    direct.push((s, k));
                }
            }
        }
        self.fusion.steps = self.steps.len();
        Ok(Plan {
            steps: self.steps,
            vals: self.vals,
            nslots: self.nslots,
            inputs,
            outputs,
            frees,
            direct,
            costs: self.costs,
            fusion: self.fusion,
            ws: Workspace::default(),
        })
    }
}

/// Merges each elementwise-chain step into the step before it when that step's output is
/// read by it alone (not by another step, not a graph output, through no alias), so the
/// chain runs in place on the producer's output instead of as a pass of its own.
fn merge_maps(
    steps: &mut Vec<Step>,
    vals: &[PV],
    outputs: &[(String, std::result::Result<usize, Const>)],
) {
    let nslots = vals.iter().map(|v| v.slot + 1).max().unwrap_or(0);
    let mut reads = vec![0usize; nslots];
    for st in steps.iter() {
        for &v in &st.ins {
            reads[vals[v].slot] += 1;
        }
    }
    for (_, o) in outputs {
        if let Ok(v) = o {
            reads[vals[*v].slot] += 1;
        }
    }
    let mut merged: Vec<Step> = Vec::with_capacity(steps.len());
    for st in steps.drain(..) {
        if let (POp::Map(ops), Some(prev)) = (&st.op, merged.last_mut()) {
            let (i, o, p) = (&vals[st.ins[0]], &vals[st.out], &vals[prev.out]);
            if st.ins.len() == 1
                && i.slot == p.slot
                && reads[i.slot] == 1
                && i.dims == o.dims
                && i.nhwc == o.nhwc
                && p.dims == o.dims
                && p.nhwc == o.nhwc
            {
                prev.post.extend(ops.iter().cloned());
                prev.out = st.out;
                continue;
            }
        }
        merged.push(st);
    }
    *steps = merged;
}

impl Plan {
    /// The input names and dims this plan was made for.
    pub fn inputs(&self) -> Vec<(String, Vec<usize>)> {
        self.inputs
            .iter()
            .map(|(n, v)| (n.clone(), self.vals[*v].dims.clone()))
            .collect()
    }

    /// The output names and dims.
    pub fn outputs(&self) -> Vec<(String, Vec<usize>)> {
        self.outputs
            .iter()
            .map(|(n, o)| {
                (
                    n.clone(),
                    match o {
                        Ok(v) => self.vals[*v].dims.clone(),
                        Err(c) => c.dims.clone(),
                    },
                )
            })
            .collect()
    }

    /// What was fused.
    pub fn fusion(&self) -> Fusion {
        self.fusion
    }

    /// Elements of the largest value the plan computes (saturating): how much memory one
    /// step may need before running it (each value is `4·` this many bytes at most).
    pub fn max_value_elements(&self) -> usize {
        self.vals
            .iter()
            .map(|v| v.dims.iter().fold(1usize, |a, &d| a.saturating_mul(d)))
            .max()
            .unwrap_or(0)
    }

    /// The per-layer cost table (convolutions, fully connected layers, global pools), in
    /// execution order, named after the ONNX nodes.
    pub fn cost_table(&self, name: &str) -> NetworkCost {
        NetworkCost {
            name: name.to_string(),
            layers: self.costs.clone(),
        }
    }

    /// The steps as text, one line each (`name: kind`).
    pub fn describe(&self) -> Vec<String> {
        self.steps
            .iter()
            .map(|s| {
                let kind = match &s.op {
                    POp::Conv(_) => "conv",
                    POp::Sep(_) => "fused depthwise separable",
                    POp::Ir(b) if b.has_residual() => "fused inverted residual + skip",
                    POp::Ir(_) => "fused inverted residual",
                    POp::Linear(_) => "linear (GEMM)",
                    POp::PwAdd(_) => "conv + add",
                    POp::Se(_) => "fused squeeze-excitation",
                    POp::Act(_) => "activation",
                    POp::ToNhwc => "layout NCHW -> NHWC",
                    POp::ToRows => "layout NHWC -> NCHW",
                    POp::Map(_) => "elementwise",
                    POp::Binary { .. } => "binary elementwise",
                    POp::GlobalPool { .. } => "global pool",
                    POp::Pool(_) => "pool",
                    POp::Resize { .. } => "resize",
                    POp::Concat { .. } => "concat",
                    POp::Transpose(_) => "transpose",
                    POp::Slice(_) => "slice",
                    POp::Gather { .. } => "gather",
                    POp::Pad { .. } => "pad",
                    POp::Expand => "expand",
                    POp::Softmax { .. } => "softmax",
                    POp::ReduceMean { .. } => "reduce mean",
                    POp::MatMul => "matmul",
                    POp::ConvTranspose { .. } => "conv transpose",
                    POp::ConvTransposeGemm { .. } => "conv transpose (GEMM + scatter)",
                    POp::ConvTransposeRows { .. } => "conv transpose (GEMM per output row)",
                };
                format!("{}: {kind}", s.name)
            })
            .collect()
    }

    /// Runs the plan on row-major inputs (one slice per graph input, of the planned dims)
    /// with `exec`'s threads. Results are bitwise identical for every thread count.
    pub fn run(&self, inputs: &[&[f32]], exec: &Executor) -> Result<Vec<Output>> {
        self.run_timed(inputs, exec, None)
    }

    /// [`run`](Self::run), also timing each step: `step_ms` is resized to the number of
    /// steps and gets each one's wall time in milliseconds, in the order of
    /// [`describe`](Self::describe) (the per-step profile of `dsconv bench --profile`).
    pub fn run_profiled(
        &self,
        inputs: &[&[f32]],
        exec: &Executor,
        step_ms: &mut Vec<f64>,
    ) -> Result<Vec<Output>> {
        step_ms.clear();
        step_ms.resize(self.steps.len(), 0.0);
        self.run_timed(inputs, exec, Some(step_ms))
    }

    fn run_timed(
        &self,
        inputs: &[&[f32]],
        exec: &Executor,
        mut step_ms: Option<&mut Vec<f64>>,
    ) -> Result<Vec<Output>> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Input {
                name: self
                    .inputs
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                reason: format!(
                    "the plan takes {} inputs, {} given",
                    self.inputs.len(),
                    inputs.len()
                ),
            });
        }
        let mut slots: Vec<Option<Tensor>> = (0..self.nslots).map(|_| None).collect();
        for ((name, v), x) in self.inputs.iter().zip(inputs) {
            let pv = &self.vals[*v];
            let n = numel(&pv.dims)?;
            if x.len() != n {
                return Err(Error::Input {
                    name: name.clone(),
                    reason: format!("{} values for dims {:?} ({n} values)", x.len(), pv.dims),
                });
            }
            if self.direct.iter().any(|&(_, k)| self.inputs[k].1 == *v) {
                continue;
            }
            let mut t = self.ws.take([1, 1, 1, n])?;
            t.data_mut().copy_from_slice(x);
            slots[pv.slot] = Some(t);
        }
        for (s, st) in self.steps.iter().enumerate() {
            let start = step_ms.is_some().then(std::time::Instant::now);
            let mut t = match self.direct.iter().find(|&&(d, _)| d == s) {
                Some(&(_, k)) => {
                    let dims = d4(&self.vals[self.inputs[k].1].dims);
                    let mut out = self.ws.take(nhwc_dims(&self.vals[st.out].dims))?;
                    kernels::to_nhwc(inputs[k], dims, out.data_mut(), exec);
                    out
                }
                None => self.step(st, &mut slots, exec)?,
            };
            if !st.post.is_empty() {
                let n = numel(&self.vals[st.out].dims)?;
                kernels::map_inplace(&st.post, &mut t.data_mut()[..n], exec);
            }
            if let (Some(ms), Some(start)) = (step_ms.as_deref_mut(), start) {
                ms[s] = start.elapsed().as_secs_f64() * 1e3;
            }
            slots[self.vals[st.out].slot] = Some(t);
            for &f in &self.frees[s] {
                if let Some(t) = slots[f].take() {
                    self.ws.give(t);
                }
            }
        }
        let mut outs = Vec::with_capacity(self.outputs.len());
        for (name, o) in &self.outputs {
            outs.push(match o {
                Ok(v) => {
                    let pv = &self.vals[*v];
                    let n = numel(&pv.dims)?;
                    let data = slots[pv.slot]
                        .as_ref()
                        .map(|t| t.data()[..n].to_vec())
                        .unwrap_or_default();
                    Output {
                        name: name.clone(),
                        dims: pv.dims.clone(),
                        data,
                    }
                }
                Err(c) => Output {
                    name: name.clone(),
                    dims: c.dims.clone(),
                    data: c.floats(),
                },
            });
        }
        for t in slots.into_iter().flatten() {
            self.ws.give(t);
        }
        Ok(outs)
    }

    fn step(&self, st: &Step, slots: &mut [Option<Tensor>], exec: &Executor) -> Result<Tensor> {
        let out_pv = &self.vals[st.out];
        let on = numel(&out_pv.dims)?;
        let conv_ins = match st.op {
            POp::Conv(_) | POp::Sep(_) | POp::Ir(_) | POp::Se(_) => 1,
            POp::PwAdd(_) => 2,
            _ => 0,
        };
        for &v in &st.ins[..conv_ins] {
            let pv = &self.vals[v];
            if let Some(t) = slots[pv.slot].as_mut() {
                t.reshape(nhwc_dims(&pv.dims), Layout::Nhwc)?;
            }
        }
        let linear = match &st.op {
            POp::Linear(l) => Some(&**l),
            POp::ConvTransposeGemm { gemm, .. } => Some(&**gemm),
            _ => None,
        };
        if let Some(l) = linear {
            let pv = &self.vals[st.ins[0]];
            let k = l.in_channels();
            let m = numel(&pv.dims)? / k;
            if let Some(t) = slots[pv.slot].as_mut() {
                t.reshape([1, 1, m, k], Layout::Nhwc)?;
            }
        }
        let mut out = if out_pv.nhwc && out_pv.dims.len() == 4 {
            self.ws.take(nhwc_dims(&out_pv.dims))?
        } else {
            self.ws.take([1, 1, 1, on])?
        };
        let get = |k: usize| -> Result<(&Tensor, &[usize])> {
            let pv = &self.vals[st.ins[k]];
            let t = slots[pv.slot].as_ref().ok_or_else(|| {
                Error::Decode(format!("internal: value for `{}` missing", st.name))
            })?;
            Ok((t, &pv.dims))
        };
        let data = |k: usize| -> Result<&[f32]> {
            let (t, d) = get(k)?;
            Ok(&t.data()[..numel(d)?])
        };
        let o = out.data_mut();
        match &st.op {
            POp::Conv(c) => {
                let (x, _) = get(0)?;
                c.forward_into(x, &mut out, exec)?;
            }
            POp::Sep(b) => {
                let (x, _) = get(0)?;
                b.forward_into(x, &mut out, exec)?;
            }
            POp::Ir(b) => {
                let (x, _) = get(0)?;
                b.forward_into(x, &mut out, exec, &self.ws)?;
            }
            POp::PwAdd(l) => {
                let ((x, _), (r, _)) = (get(0)?, get(1)?);
                l.forward_add_into(x, r, &mut out, exec)?;
            }
            POp::Se(b) => {
                let (x, _) = get(0)?;
                b.forward_into(x, &mut out, exec)?;
            }
            POp::Act(a) => {
                let x = data(0)?;
                o[..x.len()].copy_from_slice(x);
                a.apply_slice(&mut o[..x.len()], exec);
            }
            POp::Linear(l) => {
                let (x, _) = get(0)?;
                let m = x.len() / l.in_channels();
                out.reshape([1, 1, m, l.out_channels()], Layout::Nhwc)?;
                l.forward_into(x, &mut out, exec)?;
            }
            POp::ToNhwc => kernels::to_nhwc(data(0)?, d4(get(0)?.1), o, exec),
            POp::ToRows => kernels::to_nchw(data(0)?, d4(get(0)?.1), o, exec),
            POp::Map(ops) => kernels::map(ops, data(0)?, &mut o[..on], exec),
            POp::Binary {
                op,
                a,
                b,
                ad,
                bd,
                od,
            } => {
                let x = match a {
                    POperand::In(k) => data(*k)?,
                    POperand::Const(c) => c,
                };
                let y = match b {
                    POperand::In(k) => data(*k)?,
                    POperand::Const(c) => c,
                };
                kernels::binary_par(*op, x, ad, y, bd, od, &mut o[..on], exec);
            }
            POp::GlobalPool { max } => {
                let d = get(0)?.1;
                kernels::global_pool(data(0)?, d[0], d[2] * d[3], d[1], *max, o);
            }
            POp::Pool(spec) => kernels::pool(data(0)?, d4(get(0)?.1), spec, o),
            POp::Resize { ty, tx } => kernels::resize_par(data(0)?, d4(get(0)?.1), ty, tx, o, exec),
            POp::Concat { axis, parts } => {
                let mut refs: Vec<(&[f32], &[usize])> = Vec::with_capacity(parts.len());
                for (p, d) in parts {
                    refs.push((
                        match p {
                            POperand::In(k) => data(*k)?,
                            POperand::Const(c) => c,
                        },
                        d,
                    ));
                }
                kernels::concat_par(&refs, *axis, &mut o[..on], exec);
            }
            POp::Transpose(perm) => consts::transpose(data(0)?, get(0)?.1, perm, o),
            POp::Slice(spec) => consts::slice(data(0)?, get(0)?.1, spec, o),
            POp::Gather { axis, idx } => consts::gather(data(0)?, get(0)?.1, *axis, idx, o),
            POp::Pad { begin, mode, value } => {
                consts::pad(data(0)?, get(0)?.1, begin, &out_pv.dims, *mode, *value, o)
            }
            POp::Expand => {
                let (x, d) = (data(0)?, get(0)?.1);
                consts::binary(x, d, x, d, &out_pv.dims, o, |v, _| v);
            }
            POp::Softmax { outer, n, inner } => {
                kernels::softmax_par(data(0)?, *outer, *n, *inner, &mut o[..on], exec)
            }
            POp::ReduceMean { outer, n, inner } => {
                kernels::reduce_mean(data(0)?, *outer, *n, *inner, o)
            }
            POp::MatMul => {
                kernels::matmul(data(0)?, get(0)?.1, data(1)?, get(1)?.1, &out_pv.dims, o)
            }
            POp::ConvTranspose {
                w,
                wdims,
                bias,
                s,
                d,
                pads,
                group,
            } => {
                let od = &out_pv.dims;
                kernels::conv_transpose(
                    data(0)?,
                    d4(get(0)?.1),
                    w,
                    *wdims,
                    bias.as_deref(),
                    *s,
                    *d,
                    *pads,
                    *group,
                    [od[2], od[3]],
                    o,
                )
            }
            POp::ConvTransposeGemm {
                gemm,
                co,
                k,
                s,
                d,
                pads,
                bias,
                act,
            } => {
                let (x, xd) = get(0)?;
                let m = xd[0] * xd[2] * xd[3];
                let mut cols = self.ws.take([1, 1, m, gemm.out_channels()])?;
                cols.reshape([1, 1, m, gemm.out_channels()], Layout::Nhwc)?;
                gemm.forward_into(x, &mut cols, exec)?;
                let od = &out_pv.dims;
                kernels::col2im_nhwc(
                    cols.data(),
                    [xd[0], xd[2], xd[3]],
                    *co,
                    *k,
                    *s,
                    *d,
                    *pads,
                    [od[2], od[3]],
                    bias.as_deref(),
                    *act,
                    &mut o[..on],
                    exec,
                );
                self.ws.give(cols);
            }
            POp::ConvTransposeRows { rows, act } => {
                let (x, xd) = get(0)?;
                let [n, ci, h, w] = d4(xd);
                let od = &out_pv.dims;
                let (kh, row_len) = (rows.len(), od[3] * od[1]);
                let ldc = row_len / w.max(1);
                let macs = (numel(xd)? as u64).saturating_mul((kh * ldc) as u64);
                let (xs, tier) = (x.data(), exec.tier());
                exec.try_for_each_rows(
                    &mut o[..on],
                    row_len,
                    exec.tasks_for(macs),
                    |first, chunk| {
                        for (r, orow) in (first..).zip(chunk.chunks_mut(row_len)) {
                            let (b, oy) = (r / od[2], r % od[2]);
                            let a = &xs[(b * h + oy / kh) * w * ci..][..w * ci];
                            rows[oy % kh].run(tier, a, ci, w, orow, ldc, *act)?;
                        }
                        Ok(())
                    },
                )?;
                debug_assert_eq!(n * od[2] * row_len, on);
            }
        }
        Ok(out)
    }
}
