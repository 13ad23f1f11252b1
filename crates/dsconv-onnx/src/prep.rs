//! Pass 1 of planning: shape inference and constant folding for a given input shape.
//! Every node whose inputs are all constant (initializers, `Constant`, `Shape` of a value
//! whose shape is now known, and whatever they feed) is evaluated here, once; the rest
//! become [`DNode`]s with every attribute resolved against concrete dims.

use crate::consts::{self, numel, Const, Data, PadMode, SliceSpec};
use crate::error::{Error, Result};
use crate::model::{Attr, Model, Node};
use dsconv::{Conv2dParams, ConvGeometry, Padding};
use std::collections::HashMap;

/// Elementwise functions of one input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Unary {
    Relu,
    Clip(f32, f32),
    Sigmoid,
    HardSigmoid(f32, f32),
    HardSwish,
    /// x · sigmoid(x) (matched from Sigmoid and Mul).
    Silu,
    LeakyRelu(f32),
    Sqrt,
    Tanh,
    Exp,
    Erf,
    Neg,
    Abs,
    Reciprocal,
    Floor,
    Ceil,
    Pow(f32),
}

impl Unary {
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Unary::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
            Unary::Clip(lo, hi) => {
                let y = if x < lo { lo } else { x };
                if y > hi {
                    hi
                } else {
                    y
                }
            }
            Unary::Sigmoid => sigmoid(x),
            Unary::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            Unary::HardSwish => x * (x * (1.0 / 6.0) + 0.5).clamp(0.0, 1.0),
            Unary::Silu => x * sigmoid(x),
            Unary::LeakyRelu(a) => {
                if x < 0.0 {
                    a * x
                } else {
                    x
                }
            }
            Unary::Sqrt => x.sqrt(),
            Unary::Tanh => x.tanh(),
            Unary::Exp => x.exp(),
            Unary::Erf => erf(x as f64) as f32,
            Unary::Neg => -x,
            Unary::Abs => x.abs(),
            Unary::Reciprocal => 1.0 / x,
            Unary::Floor => x.floor(),
            Unary::Ceil => x.ceil(),
            Unary::Pow(e) => {
                if e == 2.0 {
                    x * x
                } else if e == 1.0 {
                    x
                } else if e == 0.5 {
                    x.sqrt()
                } else {
                    x.powf(e)
                }
            }
        }
    }
}

fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// erf by Abramowitz–Stegun 7.1.26 refined (max error 1.2e-7 via the complementary
/// Chebyshev form of Numerical Recipes `erfcc`).
fn erf(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        1.0 - r
    } else {
        r - 1.0
    }
}

/// Elementwise functions of two inputs (numpy broadcasting).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
}

impl Bin {
    pub fn f(self, a: f32, b: f32) -> f32 {
        match self {
            Bin::Add => a + b,
            Bin::Sub => a - b,
            Bin::Mul => a * b,
            Bin::Div => a / b,
            Bin::Pow => a.powf(b),
            Bin::Max => {
                if a.is_nan() || b.is_nan() {
                    f32::NAN
                } else {
                    a.max(b)
                }
            }
            Bin::Min => {
                if a.is_nan() || b.is_nan() {
                    f32::NAN
                } else {
                    a.min(b)
                }
            }
        }
    }
    fn i(self, a: i64, b: i64) -> Option<i64> {
        match self {
            Bin::Add => a.checked_add(b),
            Bin::Sub => a.checked_sub(b),
            Bin::Mul => a.checked_mul(b),
            Bin::Div => a.checked_div(b),
            Bin::Pow => u32::try_from(b).ok().and_then(|e| a.checked_pow(e)),
            Bin::Max => Some(a.max(b)),
            Bin::Min => Some(a.min(b)),
        }
    }
}

/// An operand of a binary or concat step: a runtime value (index into the node's
/// `ins`) or a constant (f32, broadcast dims).
#[derive(Debug, Clone)]
pub(crate) enum Operand {
    Dyn(usize),
    Const(Vec<f32>, Vec<usize>),
}

/// Nearest-pixel rounding of `Resize`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Nearest {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// Coordinate transformation of `Resize`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Coord {
    HalfPixel,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfHalfPixelForNn,
}

/// 2-D pooling window.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PoolSpec {
    pub max: bool,
    pub k: [usize; 2],
    pub s: [usize; 2],
    pub d: [usize; 2],
    /// top, left, bottom, right
    pub pads: [usize; 4],
    pub count_include_pad: bool,
    pub out: [usize; 2],
}

/// A resolved runtime operation (all attributes checked against concrete dims).
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Conv {
        w: Vec<f32>,
        wdims: [usize; 4],
        bias: Option<Vec<f32>>,
        params: Conv2dParams,
    },
    ConvTranspose {
        w: Vec<f32>,
        wdims: [usize; 4],
        bias: Option<Vec<f32>>,
        s: [usize; 2],
        d: [usize; 2],
        pads: [usize; 4],
        group: usize,
    },
    /// Per-channel (axis 1) `x · scale + shift` (BatchNormalization), f64 for folding.
    Affine {
        scale: Vec<f64>,
        shift: Vec<f64>,
    },
    Unary(Unary),
    Binary {
        op: Bin,
        a: Operand,
        b: Operand,
    },
    GlobalPool {
        max: bool,
    },
    Pool(PoolSpec),
    Resize {
        linear: bool,
        nearest: Nearest,
        coord: Coord,
        scale: [f32; 2],
    },
    Concat {
        axis: usize,
        parts: Vec<Operand>,
    },
    Transpose(Vec<usize>),
    /// Same elements, new dims (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout, Cast to float).
    Alias,
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
        axis: usize,
        coerce: bool,
    },
    ReduceMean {
        axes: Vec<usize>,
    },
    /// `y = x · wᵀ + bias` over the last axis; `w` is `[N, K]`.
    Linear {
        w: Vec<f32>,
        n: usize,
        k: usize,
        bias: Option<Vec<f32>>,
    },
    MatMul,
}

/// A runtime node: its op, its runtime inputs (value ids) and its one output.
#[derive(Debug, Clone)]
pub(crate) struct DNode {
    pub name: String,
    pub op: Op,
    pub ins: Vec<usize>,
    pub out: usize,
}

/// The result of pass 1.
pub(crate) struct Prepared {
    /// Dims of each runtime value (value id = index).
    pub dims: Vec<Vec<usize>>,
    /// Graph inputs: (name, value id).
    pub inputs: Vec<(String, usize)>,
    pub nodes: Vec<DNode>,
    /// Graph outputs: name and a runtime value or a constant.
    pub outputs: Vec<(String, std::result::Result<usize, Const>)>,
}

#[derive(Clone)]
enum V {
    Dyn(usize),
    Const(Const),
}

/// The largest stride, dilation, kernel extent, group count or pad taken from an attribute
/// (`i32::MAX`): with dims bounded by `numel`, sums and products of these stay far from
/// `usize` overflow (a mutated model can carry `i64::MAX`; found by the fuzz target).
const MAX_ATTR: i64 = i32::MAX as i64;

struct Ctx<'a> {
    node: &'a Node,
    opset: i64,
}

impl Ctx<'_> {
    fn unsupported(&self, what: impl Into<String>) -> Error {
        Error::unsupported(&self.node.name, &self.node.op, what)
    }
    fn invalid(&self, what: impl Into<String>) -> Error {
        Error::invalid(&self.node.name, &self.node.op, what)
    }
    fn attr(&self, k: &str) -> Option<&Attr> {
        self.node.attrs.get(k)
    }
    fn int(&self, k: &str, default: i64) -> Result<i64> {
        match self.attr(k) {
            None => Ok(default),
            Some(Attr::Int(i)) => Ok(*i),
            Some(Attr::Other(kind)) => {
                Err(self.invalid(format!("attribute `{k}` is {kind}, not an integer")))
            }
            Some(_) => Err(self.invalid(format!("attribute `{k}` is not an integer"))),
        }
    }
    fn float(&self, k: &str, default: f32) -> Result<f32> {
        match self.attr(k) {
            None => Ok(default),
            Some(Attr::Float(f)) => Ok(*f),
            Some(Attr::Int(i)) => Ok(*i as f32),
            Some(_) => Err(self.invalid(format!("attribute `{k}` is not a float"))),
        }
    }
    fn ints(&self, k: &str) -> Result<Option<Vec<i64>>> {
        match self.attr(k) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v.clone())),
            Some(Attr::Int(i)) => Ok(Some(vec![*i])),
            Some(_) => Err(self.invalid(format!("attribute `{k}` is not a list of integers"))),
        }
    }
    fn string(&self, k: &str, default: &str) -> Result<String> {
        match self.attr(k) {
            None => Ok(default.to_string()),
            Some(Attr::Str(s)) => Ok(s.clone()),
            Some(_) => Err(self.invalid(format!("attribute `{k}` is not a string"))),
        }
    }
    /// Normalises a possibly negative axis for a tensor of rank `r`.
    fn axis(&self, a: i64, r: usize) -> Result<usize> {
        let v = if a < 0 { a + r as i64 } else { a };
        if v < 0 || v >= r as i64 {
            return Err(self.invalid(format!("axis {a} out of range for rank {r}")));
        }
        Ok(v as usize)
    }
    fn pos(&self, v: i64, what: &str) -> Result<usize> {
        if v > MAX_ATTR {
            return Err(self.invalid(format!("{what} {v} is out of range (> {MAX_ATTR})")));
        }
        usize::try_from(v)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| self.invalid(format!("{what} {v} is not positive")))
    }
    /// `N` pads (or output paddings), each in `0..=MAX_ATTR`.
    fn pads<const N: usize>(&self, p: &[i64], what: &str) -> Result<[usize; N]> {
        if p.len() != N {
            return Err(self.invalid(format!("{what} {p:?} (2-D: {N} values)")));
        }
        let mut o = [0; N];
        for (o, &v) in o.iter_mut().zip(p) {
            if !(0..=MAX_ATTR).contains(&v) {
                return Err(self.invalid(format!("{what} {p:?}: {v} is not in 0..={MAX_ATTR}")));
            }
            *o = v as usize;
        }
        Ok(o)
    }
    /// A convolution's weight dims: 4-D, none zero.
    fn weight_dims(&self, w: &Const) -> Result<[usize; 4]> {
        let d: [usize; 4] = w
            .dims
            .clone()
            .try_into()
            .map_err(|_| self.invalid(format!("W of dims {:?} is not 4-D", w.dims)))?;
        if d.contains(&0) {
            return Err(self.invalid(format!("W {d:?} is empty")));
        }
        Ok(d)
    }
}

/// Runs pass 1 for the given input shapes (one per graph input, in order).
pub(crate) fn prepare(model: &Model, shapes: &[&[usize]]) -> Result<Prepared> {
    if shapes.len() != model.inputs.len() {
        return Err(Error::Input {
            name: model
                .inputs
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            reason: format!(
                "the model has {} inputs, {} shapes given",
                model.inputs.len(),
                shapes.len()
            ),
        });
    }
    let mut vals: HashMap<String, V> = HashMap::new();
    for (k, c) in &model.inits {
        vals.insert(k.clone(), V::Const(c.clone()));
    }
    let mut p = Prepared {
        dims: Vec::new(),
        inputs: Vec::new(),
        nodes: Vec::new(),
        outputs: Vec::new(),
    };
    for (inp, &shape) in model.inputs.iter().zip(shapes) {
        let bad = |reason: String| Error::Input {
            name: inp.name.clone(),
            reason,
        };
        if shape.contains(&0) {
            return Err(bad(format!("shape {shape:?} has a zero dimension")));
        }
        numel(shape).map_err(|_| bad(format!("shape {shape:?} is too large")))?;
        if let Some(decl) = &inp.dims {
            if decl.len() != shape.len() {
                return Err(bad(format!(
                    "the model takes rank {} ({}), got shape {shape:?}",
                    decl.len(),
                    show_decl(decl)
                )));
            }
            for (i, (d, &s)) in decl.iter().zip(shape).enumerate() {
                if let crate::model::Dim::Fixed(n) = d {
                    if *n != s {
                        return Err(bad(format!(
                            "the model fixes dimension {i} at {n} ({}), got shape {shape:?}",
                            show_decl(decl)
                        )));
                    }
                }
            }
        }
        let id = p.dims.len();
        p.dims.push(shape.to_vec());
        p.inputs.push((inp.name.clone(), id));
        vals.insert(inp.name.clone(), V::Dyn(id));
    }
    // Uses per value (to fold a Pad into the Conv that alone reads it).
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for n in &model.nodes {
        for i in &n.inputs {
            *uses.entry(i.as_str()).or_default() += 1;
        }
    }
    for o in &model.outputs {
        *uses.entry(o.as_str()).or_default() += 1;
    }
    for node in &model.nodes {
        let cx = Ctx {
            node,
            opset: model.opset,
        };
        let ins: Vec<Option<V>> = node
            .inputs
            .iter()
            .map(|n| {
                if n.is_empty() {
                    None
                } else {
                    vals.get(n).cloned()
                }
            })
            .collect();
        let outs = step(&cx, &ins, &mut p, &uses)?;
        for (name, v) in node.outputs.iter().zip(outs) {
            if !name.is_empty() {
                if let Some(v) = v {
                    vals.insert(name.clone(), v);
                }
            }
        }
        for (i, name) in node.outputs.iter().enumerate().skip(1) {
            if !name.is_empty()
                && !vals.contains_key(name)
                && uses.get(name.as_str()).copied().unwrap_or(0) > 0
            {
                return Err(cx.unsupported(format!("output {i} (`{name}`)")));
            }
        }
    }
    for o in &model.outputs {
        let v = match vals.get(o) {
            Some(V::Dyn(id)) => Ok(*id),
            Some(V::Const(c)) => Err(c.clone()),
            None => {
                return Err(Error::Decode(format!(
                    "graph output `{o}` is never computed"
                )))
            }
        };
        p.outputs.push((o.clone(), v));
    }
    Ok(p)
}

fn show_decl(d: &[crate::model::Dim]) -> String {
    let parts: Vec<String> = d
        .iter()
        .map(|d| match d {
            crate::model::Dim::Fixed(n) => n.to_string(),
            crate::model::Dim::Free(s) if s.is_empty() => "?".into(),
            crate::model::Dim::Free(s) => s.clone(),
        })
        .collect();
    format!("declared [{}]", parts.join(", "))
}

fn dims_of(p: &Prepared, v: &V) -> Vec<usize> {
    match v {
        V::Dyn(id) => p.dims[*id].clone(),
        V::Const(c) => c.dims.clone(),
    }
}

/// Applies a shape-level op to a constant of either element type.
macro_rules! on_data {
    ($c:expr, $out_dims:expr, |$x:ident, $o:ident| $body:expr) => {{
        let n = numel(&$out_dims)?;
        match &$c.data {
            Data::F32($x) => {
                let mut $o = vec![0f32; n];
                $body;
                Const::f32($out_dims.clone(), $o)
            }
            Data::I64($x) => {
                let mut $o = vec![0i64; n];
                $body;
                Const::i64($out_dims.clone(), $o)
            }
        }
    }};
}

/// One node: returns its outputs' values.
fn step(
    cx: &Ctx,
    ins: &[Option<V>],
    p: &mut Prepared,
    uses: &HashMap<&str, usize>,
) -> Result<Vec<Option<V>>> {
    let node = cx.node;
    let op = node.op.as_str();
    let input = |i: usize| -> Result<&V> {
        ins.get(i)
            .and_then(|v| v.as_ref())
            .ok_or_else(|| cx.invalid(format!("input {i} is missing")))
    };
    let opt_const = |i: usize| -> Result<Option<&Const>> {
        match ins.get(i) {
            None | Some(None) => Ok(None),
            Some(Some(V::Const(c))) => Ok(Some(c)),
            Some(Some(V::Dyn(_))) => {
                Err(cx.unsupported(format!("a runtime (non-constant) input {i}")))
            }
        }
    };
    let need_const = |i: usize, what: &str| -> Result<&Const> {
        opt_const(i)?.ok_or_else(|| cx.invalid(format!("{what} (input {i}) is missing")))
    };
    // A dyn result with its op; records the node.
    let emit = |p: &mut Prepared, op: Op, ins: Vec<usize>, dims: Vec<usize>| -> Result<V> {
        numel(&dims).map_err(|_| cx.invalid(format!("output dims {dims:?} overflow")))?;
        let out = p.dims.len();
        p.dims.push(dims);
        p.nodes.push(DNode {
            name: node.name.clone(),
            op,
            ins,
            out,
        });
        Ok(V::Dyn(out))
    };
    let one = |v: V| Ok(vec![Some(v)]);
    match op {
        "Constant" => {
            let c = if let Some(Attr::Tensor(t)) = cx.attr("value") {
                t.clone()
            } else if let Some(Attr::Float(f)) = cx.attr("value_float") {
                Const::f32(vec![], vec![*f])
            } else if let Some(Attr::Floats(f)) = cx.attr("value_floats") {
                Const::f32(vec![f.len()], f.clone())
            } else if let Some(Attr::Int(i)) = cx.attr("value_int") {
                Const::i64(vec![], vec![*i])
            } else if let Some(Attr::Ints(i)) = cx.attr("value_ints") {
                Const::i64(vec![i.len()], i.clone())
            } else {
                return Err(cx.unsupported("a Constant without a tensor, float or int value"));
            };
            one(V::Const(c))
        }
        "Shape" => {
            let d = dims_of(p, input(0)?);
            let r = d.len() as i64;
            let norm = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let start = norm(cx.int("start", 0)?);
            let end = norm(cx.int("end", r)?);
            let v: Vec<i64> = d[start..end.max(start)].iter().map(|&x| x as i64).collect();
            one(V::Const(Const::i64(vec![v.len()], v)))
        }
        "Identity" | "Dropout" => match input(0)? {
            V::Const(c) => one(V::Const(c.clone())),
            V::Dyn(id) => {
                let d = p.dims[*id].clone();
                one(emit(p, Op::Alias, vec![*id], d)?)
            }
        },
        "Cast" => {
            let to = cx.int("to", 1)?;
            let float = matches!(to, 1 | 10 | 11 | 16);
            let int = matches!(to, 2..=7 | 9 | 12 | 13);
            if !float && !int {
                return Err(cx.unsupported(format!("a cast to data type {to}")));
            }
            match input(0)? {
                V::Const(c) => {
                    let data = if float {
                        Data::F32(c.floats())
                    } else if to == 9 {
                        Data::I64(c.floats().iter().map(|&x| (x != 0.0) as i64).collect())
                    } else {
                        Data::I64(c.ints())
                    };
                    one(V::Const(Const {
                        dims: c.dims.clone(),
                        data,
                    }))
                }
                V::Dyn(id) if float => {
                    let d = p.dims[*id].clone();
                    one(emit(p, Op::Alias, vec![*id], d)?)
                }
                V::Dyn(_) => Err(cx.unsupported("a runtime cast to an integer type")),
            }
        }
        "ConstantOfShape" => {
            let shape = need_const(0, "shape")?.ints();
            let dims = shape
                .iter()
                .map(|&d| {
                    usize::try_from(d).map_err(|_| cx.invalid(format!("negative dimension {d}")))
                })
                .collect::<Result<Vec<_>>>()?;
            let n = numel(&dims)?;
            let c = match cx.attr("value") {
                Some(Attr::Tensor(t)) if t.len() == 1 => match &t.data {
                    Data::F32(v) => Const::f32(dims, vec![v[0]; n]),
                    Data::I64(v) => Const::i64(dims, vec![v[0]; n]),
                },
                None => Const::f32(dims, vec![0.0; n]),
                _ => return Err(cx.invalid("`value` must be a one-element tensor")),
            };
            one(V::Const(c))
        }
        "Range" => {
            let (s, l, d) = (
                need_const(0, "start")?,
                need_const(1, "limit")?,
                need_const(2, "delta")?,
            );
            match (&s.data, &l.data, &d.data) {
                (Data::I64(s), Data::I64(l), Data::I64(d))
                    if s.len() == 1 && l.len() == 1 && d.len() == 1 && d[0] != 0 =>
                {
                    let n = ((l[0] - s[0]) as f64 / d[0] as f64).ceil().max(0.0) as usize;
                    numel(&[n])?;
                    let v: Vec<i64> = (0..n as i64).map(|i| s[0] + i * d[0]).collect();
                    one(V::Const(Const::i64(vec![n], v)))
                }
                _ => {
                    let (s, l, d) = (s.floats()[0], l.floats()[0], d.floats()[0]);
                    if d == 0.0 || !(s.is_finite() && l.is_finite()) {
                        return Err(
                            cx.invalid("Range needs a finite start and limit and a non-zero delta")
                        );
                    }
                    let n = ((l - s) / d).ceil().max(0.0) as usize;
                    numel(&[n])?;
                    let v: Vec<f32> = (0..n).map(|i| s + i as f32 * d).collect();
                    one(V::Const(Const::f32(vec![n], v)))
                }
            }
        }
        "Equal" | "Where" => {
            if op == "Equal" {
                let (a, b) = (need_const(0, "A")?, need_const(1, "B")?);
                let od = consts::broadcast_dims(&a.dims, &b.dims)
                    .ok_or_else(|| cx.invalid("inputs do not broadcast"))?;
                let mut o = vec![0i64; numel(&od)?];
                match (&a.data, &b.data) {
                    (Data::I64(x), Data::I64(y)) => {
                        consts::binary(x, &a.dims, y, &b.dims, &od, &mut o, |x, y| (x == y) as i64)
                    }
                    _ => consts::binary(
                        &a.floats(),
                        &a.dims,
                        &b.floats(),
                        &b.dims,
                        &od,
                        &mut o,
                        |x, y| (x == y) as i64,
                    ),
                }
                return one(V::Const(Const::i64(od, o)));
            }
            let (c, x, y) = (
                need_const(0, "condition")?,
                need_const(1, "X")?,
                need_const(2, "Y")?,
            );
            let xy = consts::broadcast_dims(&x.dims, &y.dims)
                .ok_or_else(|| cx.invalid("inputs do not broadcast"))?;
            let od = consts::broadcast_dims(&c.dims, &xy)
                .ok_or_else(|| cx.invalid("inputs do not broadcast"))?;
            let n = numel(&od)?;
            let cond = expand_to(&c.ints(), &c.dims, &od, n);
            let pick = |a: Vec<f64>, b: Vec<f64>| -> Vec<f64> {
                cond.iter()
                    .zip(a.iter().zip(&b))
                    .map(|(&c, (&a, &b))| if c != 0 { a } else { b })
                    .collect()
            };
            let c = match (&x.data, &y.data) {
                (Data::I64(a), Data::I64(b)) => {
                    let a = expand_to(a, &x.dims, &od, n);
                    let b = expand_to(b, &y.dims, &od, n);
                    Const::i64(
                        od,
                        cond.iter()
                            .zip(a.iter().zip(&b))
                            .map(|(&c, (&a, &b))| if c != 0 { a } else { b })
                            .collect(),
                    )
                }
                _ => {
                    let a = expand_to(&x.floats(), &x.dims, &od, n)
                        .iter()
                        .map(|&v| v as f64)
                        .collect();
                    let b = expand_to(&y.floats(), &y.dims, &od, n)
                        .iter()
                        .map(|&v| v as f64)
                        .collect();
                    Const::f32(od, pick(a, b).iter().map(|&v| v as f32).collect())
                }
            };
            one(V::Const(c))
        }
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" => {
            let bin = match op {
                "Add" => Bin::Add,
                "Sub" => Bin::Sub,
                "Mul" => Bin::Mul,
                "Div" => Bin::Div,
                "Pow" => Bin::Pow,
                "Max" => Bin::Max,
                _ => Bin::Min,
            };
            if (op == "Max" || op == "Min") && node.inputs.len() != 2 {
                return Err(
                    cx.unsupported(format!("{op} of {} inputs (two only)", node.inputs.len()))
                );
            }
            let (a, b) = (input(0)?, input(1)?);
            let (ad, bd) = (dims_of(p, a), dims_of(p, b));
            let od = consts::broadcast_dims(&ad, &bd).ok_or_else(|| {
                cx.invalid(format!("input dims {ad:?} and {bd:?} do not broadcast"))
            })?;
            match (a, b) {
                (V::Const(x), V::Const(y)) => {
                    let n = numel(&od)?;
                    let c = match (&x.data, &y.data) {
                        (Data::I64(xv), Data::I64(yv)) => {
                            let mut o = vec![None; n];
                            consts::binary(xv, &ad, yv, &bd, &od, &mut o, |a, b| bin.i(a, b));
                            let v =
                                o.into_iter().collect::<Option<Vec<i64>>>().ok_or_else(|| {
                                    cx.invalid(
                                        "integer overflow or division by zero in shape arithmetic",
                                    )
                                })?;
                            Const::i64(od, v)
                        }
                        _ => {
                            let mut o = vec![0f32; n];
                            consts::binary(
                                &x.floats(),
                                &ad,
                                &y.floats(),
                                &bd,
                                &od,
                                &mut o,
                                |a, b| bin.f(a, b),
                            );
                            Const::f32(od, o)
                        }
                    };
                    one(V::Const(c))
                }
                (V::Const(c), V::Dyn(id)) | (V::Dyn(id), V::Const(c)) => {
                    let cst = Operand::Const(c.floats(), c.dims.clone());
                    // Pow with a scalar exponent is a unary function.
                    if bin == Bin::Pow
                        && matches!(b, V::Const(_))
                        && c.len() == 1
                        && od == p.dims[*id]
                    {
                        return one(emit(
                            p,
                            Op::Unary(Unary::Pow(c.floats()[0])),
                            vec![*id],
                            od,
                        )?);
                    }
                    let (a, b) = if matches!(a, V::Dyn(_)) {
                        (Operand::Dyn(0), cst)
                    } else {
                        (cst, Operand::Dyn(0))
                    };
                    one(emit(p, Op::Binary { op: bin, a, b }, vec![*id], od)?)
                }
                (V::Dyn(x), V::Dyn(y)) => one(emit(
                    p,
                    Op::Binary {
                        op: bin,
                        a: Operand::Dyn(0),
                        b: Operand::Dyn(1),
                    },
                    vec![*x, *y],
                    od,
                )?),
            }
        }
        "Relu" | "Sigmoid" | "HardSigmoid" | "HardSwish" | "Sqrt" | "Tanh" | "Exp" | "Erf"
        | "Neg" | "Abs" | "Reciprocal" | "Floor" | "Ceil" | "LeakyRelu" | "Clip" => {
            let u = match op {
                "Relu" => Unary::Relu,
                "Sigmoid" => Unary::Sigmoid,
                "HardSigmoid" => {
                    Unary::HardSigmoid(cx.float("alpha", 0.2)?, cx.float("beta", 0.5)?)
                }
                "HardSwish" => Unary::HardSwish,
                "Sqrt" => Unary::Sqrt,
                "Tanh" => Unary::Tanh,
                "Exp" => Unary::Exp,
                "Erf" => Unary::Erf,
                "Neg" => Unary::Neg,
                "Abs" => Unary::Abs,
                "Reciprocal" => Unary::Reciprocal,
                "Floor" => Unary::Floor,
                "Ceil" => Unary::Ceil,
                "LeakyRelu" => Unary::LeakyRelu(cx.float("alpha", 0.01)?),
                _ => {
                    let (lo, hi) = if cx.opset < 11 {
                        (
                            cx.float("min", f32::NEG_INFINITY)?,
                            cx.float("max", f32::INFINITY)?,
                        )
                    } else {
                        let get = |i: usize, d: f32| -> Result<f32> {
                            Ok(match opt_const(i)? {
                                None => d,
                                Some(c) if c.len() == 1 => c.floats()[0],
                                Some(_) => return Err(cx.invalid("Clip bounds must be scalars")),
                            })
                        };
                        (get(1, f32::NEG_INFINITY)?, get(2, f32::INFINITY)?)
                    };
                    Unary::Clip(lo, hi)
                }
            };
            match input(0)? {
                V::Const(c) => match (&c.data, u) {
                    (Data::I64(v), Unary::Neg) => one(V::Const(Const::i64(
                        c.dims.clone(),
                        v.iter().map(|x| x.wrapping_neg()).collect(),
                    ))),
                    (Data::I64(v), Unary::Abs) => one(V::Const(Const::i64(
                        c.dims.clone(),
                        v.iter().map(|x| x.wrapping_abs()).collect(),
                    ))),
                    (Data::I64(v), Unary::Relu) => one(V::Const(Const::i64(
                        c.dims.clone(),
                        v.iter().map(|&x| x.max(0)).collect(),
                    ))),
                    _ => one(V::Const(Const::f32(
                        c.dims.clone(),
                        c.floats().into_iter().map(|x| u.apply(x)).collect(),
                    ))),
                },
                V::Dyn(id) => {
                    let d = p.dims[*id].clone();
                    one(emit(p, Op::Unary(u), vec![*id], d)?)
                }
            }
        }
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => {
            let x = input(0)?;
            let d = dims_of(p, x);
            let od = match op {
                "Reshape" => {
                    let shape = need_const(1, "shape")?.ints();
                    let allowzero = cx.int("allowzero", 0)? != 0;
                    let total = numel(&d)?;
                    let mut out = Vec::with_capacity(shape.len());
                    let mut infer = None;
                    for (i, &s) in shape.iter().enumerate() {
                        out.push(match s {
                            0 if !allowzero => *d.get(i).ok_or_else(|| {
                                cx.invalid(format!(
                                    "shape {shape:?} copies dimension {i} of a rank-{} input",
                                    d.len()
                                ))
                            })?,
                            -1 if infer.is_none() => {
                                infer = Some(i);
                                1
                            }
                            s if s >= 0 => s as usize,
                            _ => return Err(cx.invalid(format!("bad target shape {shape:?}"))),
                        });
                    }
                    let known = numel(&out)?;
                    if let Some(i) = infer {
                        if known == 0 || total % known != 0 {
                            return Err(cx.invalid(format!("cannot reshape {d:?} to {shape:?}")));
                        }
                        out[i] = total / known;
                    }
                    if numel(&out)? != total {
                        return Err(cx.invalid(format!(
                            "cannot reshape {d:?} ({total} elements) to {shape:?}"
                        )));
                    }
                    out
                }
                "Flatten" => {
                    let r = d.len();
                    let a = cx.int("axis", 1)?;
                    let a = if a < 0 { a + r as i64 } else { a };
                    if a < 0 || a > r as i64 {
                        return Err(cx.invalid(format!("axis {a} out of range for rank {r}")));
                    }
                    let a = a as usize;
                    vec![d[..a].iter().product(), d[a..].iter().product()]
                }
                "Squeeze" => {
                    let axes = if cx.opset < 13 {
                        cx.ints("axes")?
                    } else {
                        opt_const(1)?.map(|c| c.ints())
                    };
                    match axes {
                        None => d.iter().copied().filter(|&x| x != 1).collect(),
                        Some(axes) => {
                            let axes = axes
                                .iter()
                                .map(|&a| cx.axis(a, d.len()))
                                .collect::<Result<Vec<_>>>()?;
                            if let Some(&a) = axes.iter().find(|&&a| d[a] != 1) {
                                return Err(
                                    cx.invalid(format!("cannot squeeze axis {a} of size {}", d[a]))
                                );
                            }
                            d.iter()
                                .enumerate()
                                .filter(|(i, _)| !axes.contains(i))
                                .map(|(_, &x)| x)
                                .collect()
                        }
                    }
                }
                _ => {
                    let axes = if cx.opset < 13 {
                        cx.ints("axes")?
                    } else {
                        opt_const(1)?.map(|c| c.ints())
                    };
                    let axes = axes.ok_or_else(|| cx.invalid("Unsqueeze needs axes"))?;
                    let r = d.len() + axes.len();
                    let axes = axes
                        .iter()
                        .map(|&a| cx.axis(a, r))
                        .collect::<Result<Vec<_>>>()?;
                    let mut it = d.iter();
                    (0..r)
                        .map(|i| {
                            if axes.contains(&i) {
                                1
                            } else {
                                it.next().copied().unwrap_or(1)
                            }
                        })
                        .collect()
                }
            };
            match x {
                V::Const(c) => one(V::Const(Const {
                    dims: od,
                    data: c.data.clone(),
                })),
                V::Dyn(id) => one(emit(p, Op::Alias, vec![*id], od)?),
            }
        }
        "Transpose" => {
            let x = input(0)?;
            let d = dims_of(p, x);
            let perm: Vec<usize> = match cx.ints("perm")? {
                Some(v) => v
                    .iter()
                    .map(|&a| cx.axis(a, d.len()))
                    .collect::<Result<_>>()?,
                None => (0..d.len()).rev().collect(),
            };
            let mut seen = perm.clone();
            seen.sort_unstable();
            if seen != (0..d.len()).collect::<Vec<_>>() {
                return Err(cx.invalid(format!(
                    "perm {perm:?} is not a permutation of rank {}",
                    d.len()
                )));
            }
            let od: Vec<usize> = perm.iter().map(|&i| d[i]).collect();
            match x {
                V::Const(c) => one(V::Const(on_data!(c, od, |x, o| consts::transpose(
                    x, &d, &perm, &mut o
                )))),
                V::Dyn(id) => one(emit(p, Op::Transpose(perm), vec![*id], od)?),
            }
        }
        "Slice" => {
            let x = input(0)?;
            let d = dims_of(p, x);
            let (starts, ends, axes, steps) = if cx.opset < 10 {
                (
                    cx.ints("starts")?.unwrap_or_default(),
                    cx.ints("ends")?.unwrap_or_default(),
                    cx.ints("axes")?,
                    None,
                )
            } else {
                (
                    need_const(1, "starts")?.ints(),
                    need_const(2, "ends")?.ints(),
                    opt_const(3)?.map(|c| c.ints()),
                    opt_const(4)?.map(|c| c.ints()),
                )
            };
            let axes = match axes {
                Some(a) => a
                    .iter()
                    .map(|&a| cx.axis(a, d.len()))
                    .collect::<Result<Vec<_>>>()?,
                None => (0..starts.len()).collect(),
            };
            let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
            if ends.len() != starts.len()
                || axes.len() != starts.len()
                || steps.len() != starts.len()
            {
                return Err(cx.invalid("starts, ends, axes and steps differ in length"));
            }
            let mut spec = SliceSpec {
                starts: vec![0; d.len()],
                steps: vec![1; d.len()],
                out_dims: d.clone(),
            };
            for i in 0..starts.len() {
                let (a, n, st) = (axes[i], d[axes[i]] as i64, steps[i]);
                if st == 0 {
                    return Err(cx.invalid("a slice step of 0"));
                }
                let norm = |v: i64| if v < 0 { v.saturating_add(n) } else { v };
                let (s, count) = if st > 0 {
                    let s = norm(starts[i]).clamp(0, n);
                    let e = norm(ends[i]).clamp(0, n);
                    (
                        s,
                        ((e as i128 - s as i128).max(0) + st as i128 - 1) / st as i128,
                    )
                } else {
                    let s = norm(starts[i]).clamp(0, n - 1);
                    let e = norm(ends[i]).clamp(-1, n - 1);
                    (
                        s,
                        ((s as i128 - e as i128).max(0) - st as i128 - 1) / -(st as i128),
                    )
                };
                spec.starts[a] = s.max(0) as usize;
                spec.steps[a] = st as isize;
                spec.out_dims[a] = count as usize;
            }
            let od = spec.out_dims.clone();
            match x {
                V::Const(c) => one(V::Const(on_data!(c, od, |x, o| consts::slice(
                    x, &d, &spec, &mut o
                )))),
                V::Dyn(id) => one(emit(p, Op::Slice(spec), vec![*id], od)?),
            }
        }
        "Gather" => {
            let x = input(0)?;
            let d = dims_of(p, x);
            let ic = need_const(1, "indices")?;
            let axis = cx.axis(cx.int("axis", 0)?, d.len())?;
            let n = d[axis] as i64;
            let idx = ic
                .ints()
                .iter()
                .map(|&i| {
                    let j = if i < 0 { i + n } else { i };
                    if j < 0 || j >= n {
                        Err(cx.invalid(format!("index {i} out of range for an axis of {n}")))
                    } else {
                        Ok(j as usize)
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            let od: Vec<usize> = d[..axis]
                .iter()
                .chain(&ic.dims)
                .chain(&d[axis + 1..])
                .copied()
                .collect();
            match x {
                V::Const(c) => one(V::Const(on_data!(c, od, |x, o| consts::gather(
                    x, &d, axis, &idx, &mut o
                )))),
                V::Dyn(id) => one(emit(p, Op::Gather { axis, idx }, vec![*id], od)?),
            }
        }
        "Concat" => {
            let xs: Vec<&V> = (0..node.inputs.len()).map(input).collect::<Result<_>>()?;
            let ds: Vec<Vec<usize>> = xs.iter().map(|v| dims_of(p, v)).collect();
            let r = ds[0].len();
            let axis = cx.axis(cx.int("axis", 0)?, r.max(1))?;
            let mut od = ds[0].clone();
            if r == 0 {
                return Err(cx.invalid("Concat of scalars"));
            }
            od[axis] = 0;
            for d in &ds {
                if d.len() != r
                    || d.iter()
                        .enumerate()
                        .any(|(i, &x)| i != axis && x != ds[0][i])
                {
                    return Err(cx.invalid(format!(
                        "inputs of dims {ds:?} do not concatenate on axis {axis}"
                    )));
                }
                od[axis] += d[axis];
            }
            if xs.iter().all(|v| matches!(v, V::Const(_))) {
                let cs: Vec<&Const> = xs
                    .iter()
                    .filter_map(|v| if let V::Const(c) = v { Some(c) } else { None })
                    .collect();
                let c = if cs.iter().all(|c| matches!(c.data, Data::I64(_))) {
                    let parts: Vec<Vec<i64>> = cs.iter().map(|c| c.ints()).collect();
                    let refs: Vec<(&[i64], &[usize])> = parts
                        .iter()
                        .zip(&ds)
                        .map(|(p, d)| (&p[..], &d[..]))
                        .collect();
                    let mut o = vec![0i64; numel(&od)?];
                    consts::concat(&refs, axis, &mut o);
                    Const::i64(od, o)
                } else {
                    let parts: Vec<Vec<f32>> = cs.iter().map(|c| c.floats()).collect();
                    let refs: Vec<(&[f32], &[usize])> = parts
                        .iter()
                        .zip(&ds)
                        .map(|(p, d)| (&p[..], &d[..]))
                        .collect();
                    let mut o = vec![0f32; numel(&od)?];
                    consts::concat(&refs, axis, &mut o);
                    Const::f32(od, o)
                };
                return one(V::Const(c));
            }
            let mut ids = Vec::new();
            let parts = xs
                .iter()
                .zip(&ds)
                .map(|(v, d)| match v {
                    V::Dyn(id) => {
                        ids.push(*id);
                        Operand::Dyn(ids.len() - 1)
                    }
                    V::Const(c) => Operand::Const(c.floats(), d.clone()),
                })
                .collect();
            one(emit(p, Op::Concat { axis, parts }, ids, od)?)
        }
        "Expand" => {
            let x = input(0)?;
            let d = dims_of(p, x);
            let shape: Vec<usize> = need_const(1, "shape")?
                .ints()
                .iter()
                .map(|&v| v.max(0) as usize)
                .collect();
            let od = consts::broadcast_dims(&d, &shape)
                .ok_or_else(|| cx.invalid(format!("{d:?} does not expand to {shape:?}")))?;
            match x {
                V::Const(c) => {
                    let n = numel(&od)?;
                    let c = match &c.data {
                        Data::I64(v) => Const::i64(od.clone(), expand_to(v, &d, &od, n)),
                        Data::F32(v) => Const::f32(od.clone(), expand_to(v, &d, &od, n)),
                    };
                    one(V::Const(c))
                }
                V::Dyn(id) => one(emit(p, Op::Expand, vec![*id], od)?),
            }
        }
        "Pad" => {
            let x = input(0)?;
            let d = dims_of(p, x);
            let r = d.len();
            let mode = match cx.string("mode", "constant")?.as_str() {
                "constant" => PadMode::Constant,
                "reflect" => PadMode::Reflect,
                "edge" => PadMode::Edge,
                m => return Err(cx.unsupported(format!("mode `{m}`"))),
            };
            let (pads, value) = if cx.opset < 11 {
                (
                    cx.ints("pads")?
                        .ok_or_else(|| cx.invalid("Pad needs pads"))?,
                    cx.float("value", 0.0)?,
                )
            } else {
                let pads = need_const(1, "pads")?.ints();
                let value = match opt_const(2)? {
                    Some(c) if c.len() == 1 => c.floats()[0],
                    Some(_) => return Err(cx.invalid("constant_value must be a scalar")),
                    None => 0.0,
                };
                let pads = match opt_const(3)? {
                    None => pads,
                    Some(axes) => {
                        let axes = axes
                            .ints()
                            .iter()
                            .map(|&a| cx.axis(a, r))
                            .collect::<Result<Vec<_>>>()?;
                        if pads.len() != 2 * axes.len() {
                            return Err(cx.invalid("pads must hold two values per axis"));
                        }
                        let mut full = vec![0i64; 2 * r];
                        for (i, &a) in axes.iter().enumerate() {
                            full[a] = pads[i];
                            full[a + r] = pads[i + axes.len()];
                        }
                        full
                    }
                };
                (pads, value)
            };
            if pads.len() != 2 * r {
                return Err(cx.invalid(format!("{} pads for a rank-{r} input", pads.len())));
            }
            if let Some(v) = pads.iter().find(|v| v.unsigned_abs() > MAX_ATTR as u64) {
                return Err(cx.invalid(format!("pad {v} is out of range (|pad| > {MAX_ATTR})")));
            }
            let begin: Vec<isize> = pads[..r].iter().map(|&v| v as isize).collect();
            let mut od = Vec::with_capacity(r);
            for i in 0..r {
                let n = d[i] as i64 + pads[i] + pads[i + r];
                if n < 1 {
                    return Err(cx.invalid(format!("pads {pads:?} leave nothing of dims {d:?}")));
                }
                if mode == PadMode::Reflect
                    && (pads[i] >= d[i] as i64 || pads[i + r] >= d[i] as i64)
                {
                    return Err(cx.invalid(format!(
                        "reflect pads {pads:?} must be smaller than dims {d:?}"
                    )));
                }
                od.push(n as usize);
            }
            match x {
                V::Const(c) => {
                    let c = match &c.data {
                        Data::F32(v) => {
                            let mut o = vec![0f32; numel(&od)?];
                            consts::pad(v, &d, &begin, &od, mode, value, &mut o);
                            Const::f32(od, o)
                        }
                        Data::I64(v) => {
                            let mut o = vec![0i64; numel(&od)?];
                            consts::pad(v, &d, &begin, &od, mode, value as i64, &mut o);
                            Const::i64(od, o)
                        }
                    };
                    one(V::Const(c))
                }
                V::Dyn(id) => one(emit(p, Op::Pad { begin, mode, value }, vec![*id], od)?),
            }
        }
        "Conv" => {
            let mut id = dyn_input(cx, input(0)?)?;
            let mut d = p.dims[id].clone();
            if d.len() != 4 {
                return Err(cx.unsupported(format!(
                    "a rank-{} input (2-D convolution only: rank 4)",
                    d.len()
                )));
            }
            let w = need_const(1, "W")?;
            let wdims = cx.weight_dims(w)?;
            let bias = opt_const(2)?.map(|b| b.floats());
            let group = cx.pos(cx.int("group", 1)?, "group")?;
            let (s, dil) = (pair(cx, "strides")?, pair(cx, "dilations")?);
            if let Some(ks) = cx.ints("kernel_shape")? {
                if ks != [wdims[2] as i64, wdims[3] as i64] {
                    return Err(cx.invalid(format!(
                        "kernel_shape {ks:?} differs from W's {:?}",
                        &wdims[2..]
                    )));
                }
            }
            // A zero Pad on H and W alone that only this Conv reads becomes its padding.
            let mut extra = [0usize; 4];
            if let Some(pi) = p.nodes.iter().position(|n| n.out == id) {
                let pn = &p.nodes[pi];
                if let Op::Pad {
                    begin,
                    mode: PadMode::Constant,
                    value,
                } = &pn.op
                {
                    let pd = &p.dims[pn.ins[0]];
                    let end: Vec<isize> = (0..4)
                        .map(|i| d[i] as isize - pd[i] as isize - begin[i])
                        .collect();
                    let spatial = begin[..2] == [0, 0]
                        && end[..2] == [0, 0]
                        && begin.iter().chain(&end).all(|&v| v >= 0);
                    if *value == 0.0 && spatial && uses.get(node.inputs[0].as_str()) == Some(&1) {
                        extra = [
                            begin[2] as usize,
                            begin[3] as usize,
                            end[2] as usize,
                            end[3] as usize,
                        ];
                        id = pn.ins[0];
                        d = pd.clone();
                        p.nodes.remove(pi);
                    }
                }
            }
            let pads = conv_pads(cx, &d, [wdims[2], wdims[3]], s, dil)?;
            let pads = [
                pads[0] + extra[0],
                pads[1] + extra[1],
                pads[2] + extra[2],
                pads[3] + extra[3],
            ];
            let params = Conv2dParams {
                stride: s,
                dilation: dil,
                padding: Padding::asymmetric(pads[0], pads[2], pads[1], pads[3]),
                groups: group,
                ..Conv2dParams::default()
            };
            if wdims[1].checked_mul(group) != Some(d[1]) {
                return Err(cx.invalid(format!(
                    "an input of {} channels does not fit W {wdims:?} with group {group}",
                    d[1]
                )));
            }
            if bias.as_ref().is_some_and(|b| b.len() != wdims[0]) {
                return Err(cx.invalid(format!("B has not {} elements", wdims[0])));
            }
            let g = ConvGeometry::new([d[0], d[1], d[2], d[3]], wdims, &params)
                .map_err(|e| cx.invalid(format!("input dims {d:?}: {e}")))?;
            let od = g.output_dims().to_vec();
            one(emit(
                p,
                Op::Conv {
                    w: w.floats(),
                    wdims,
                    bias,
                    params,
                },
                vec![id],
                od,
            )?)
        }
        "ConvTranspose" => {
            let id = dyn_input(cx, input(0)?)?;
            let d = p.dims[id].clone();
            if d.len() != 4 {
                return Err(cx.unsupported(format!("a rank-{} input (2-D only)", d.len())));
            }
            let w = need_const(1, "W")?;
            let wdims = cx.weight_dims(w)?;
            let group = cx.pos(cx.int("group", 1)?, "group")?;
            if d[1] != wdims[0] || !wdims[0].is_multiple_of(group) {
                return Err(cx.invalid(format!(
                    "an input of {} channels does not fit W {wdims:?} with group {group}",
                    d[1]
                )));
            }
            let (s, dil) = (pair(cx, "strides")?, pair(cx, "dilations")?);
            if cx.ints("output_shape")?.is_some() {
                return Err(cx.unsupported("attribute output_shape"));
            }
            let op_pad = cx.ints("output_padding")?.unwrap_or(vec![0, 0]);
            if cx.string("auto_pad", "NOTSET")? != "NOTSET" {
                return Err(cx.unsupported("auto_pad other than NOTSET"));
            }
            let pads: [usize; 4] = cx.pads(&cx.ints("pads")?.unwrap_or(vec![0; 4]), "pads")?;
            let op_pad: [usize; 2] = cx.pads(&op_pad, "output_padding")?;
            let cout = wdims[1]
                .checked_mul(group)
                .ok_or_else(|| cx.invalid(format!("W {wdims:?} with group {group} overflows")))?;
            let mut od = vec![d[0], cout, 0, 0];
            for a in 0..2 {
                let full = (d[2 + a] - 1)
                    .checked_mul(s[a])
                    .and_then(|v| v.checked_add(op_pad[a]))
                    .and_then(|v| v.checked_add((wdims[2 + a] - 1).checked_mul(dil[a])? + 1))
                    .ok_or_else(|| {
                        cx.invalid(format!("the output of input dims {d:?} overflows"))
                    })?;
                od[2 + a] = full
                    .checked_sub(pads[a] + pads[a + 2])
                    .filter(|&v| v > 0)
                    .ok_or_else(|| cx.invalid("pads exceed the output"))?;
            }
            let bias = opt_const(2)?.map(|b| b.floats());
            if bias.as_ref().is_some_and(|b| b.len() != cout) {
                return Err(cx.invalid(format!("B has not {cout} elements")));
            }
            one(emit(
                p,
                Op::ConvTranspose {
                    w: w.floats(),
                    wdims,
                    bias,
                    s,
                    d: dil,
                    pads,
                    group,
                },
                vec![id],
                od,
            )?)
        }
        "BatchNormalization" => {
            let id = dyn_input(cx, input(0)?)?;
            let d = p.dims[id].clone();
            if cx.int("training_mode", 0)? != 0 {
                return Err(cx.unsupported("training_mode = 1"));
            }
            let c = *d.get(1).ok_or_else(|| cx.invalid("input of rank < 2"))?;
            let eps = cx.float("epsilon", 1e-5)? as f64;
            let get = |i, what| -> Result<Vec<f32>> {
                let v = need_const(i, what)?.floats();
                if v.len() != c {
                    return Err(
                        cx.invalid(format!("{what} has {} elements for {c} channels", v.len()))
                    );
                }
                Ok(v)
            };
            let (g, b, m, v) = (
                get(1, "scale")?,
                get(2, "B")?,
                get(3, "mean")?,
                get(4, "var")?,
            );
            let scale: Vec<f64> = (0..c)
                .map(|i| g[i] as f64 / (v[i] as f64 + eps).sqrt())
                .collect();
            let shift: Vec<f64> = (0..c)
                .map(|i| b[i] as f64 - m[i] as f64 * scale[i])
                .collect();
            one(emit(p, Op::Affine { scale, shift }, vec![id], d)?)
        }
        "GlobalAveragePool" | "GlobalMaxPool" => {
            let id = dyn_input(cx, input(0)?)?;
            let d = p.dims[id].clone();
            if d.len() != 4 {
                return Err(cx.unsupported(format!("a rank-{} input (rank 4 only)", d.len())));
            }
            one(emit(
                p,
                Op::GlobalPool {
                    max: op == "GlobalMaxPool",
                },
                vec![id],
                vec![d[0], d[1], 1, 1],
            )?)
        }
        "MaxPool" | "AveragePool" => {
            let id = dyn_input(cx, input(0)?)?;
            let d = p.dims[id].clone();
            if d.len() != 4 {
                return Err(cx.unsupported(format!("a rank-{} input (2-D pooling only)", d.len())));
            }
            if node.outputs.len() > 1 && !node.outputs[1].is_empty() {
                return Err(cx.unsupported("the Indices output"));
            }
            if cx.int("storage_order", 0)? != 0 {
                return Err(cx.unsupported("storage_order = 1"));
            }
            let k = cx
                .ints("kernel_shape")?
                .ok_or_else(|| cx.invalid("kernel_shape is required"))?;
            if k.len() != 2 {
                return Err(cx.unsupported("a kernel_shape of rank other than 2"));
            }
            let k = [cx.pos(k[0], "kernel")?, cx.pos(k[1], "kernel")?];
            let (s, dil) = (pair(cx, "strides")?, pair(cx, "dilations")?);
            let ceil = cx.int("ceil_mode", 0)? != 0;
            let pads = conv_pads(cx, &d, k, s, dil)?;
            let mut out = [0usize; 2];
            for a in 0..2 {
                let span = (k[a] - 1) * dil[a] + 1;
                let padded = d[2 + a] + pads[a] + pads[a + 2];
                if padded < span {
                    return Err(cx.invalid(format!(
                        "a {span}-pixel window does not fit input dims {d:?} with pads {pads:?}"
                    )));
                }
                let num = padded - span;
                let mut o = if ceil { num.div_ceil(s[a]) } else { num / s[a] } + 1;
                if ceil && (o - 1) * s[a] >= d[2 + a] + pads[a] {
                    o -= 1;
                }
                out[a] = o;
            }
            let spec = PoolSpec {
                max: op == "MaxPool",
                k,
                s,
                d: dil,
                pads,
                count_include_pad: cx.int("count_include_pad", 0)? != 0,
                out,
            };
            one(emit(
                p,
                Op::Pool(spec),
                vec![id],
                vec![d[0], d[1], out[0], out[1]],
            )?)
        }
        "Resize" => {
            let id = dyn_input(cx, input(0)?)?;
            let d = p.dims[id].clone();
            if d.len() != 4 {
                return Err(cx.unsupported(format!("a rank-{} input (rank 4 only)", d.len())));
            }
            let mode = cx.string("mode", "nearest")?;
            let linear = match mode.as_str() {
                "nearest" => false,
                "linear" | "bilinear" => true,
                m => return Err(cx.unsupported(format!("mode `{m}`"))),
            };
            if cx.int("antialias", 0)? != 0 || cx.ints("axes")?.is_some() {
                return Err(cx.unsupported("antialias or axes"));
            }
            if cx.string("keep_aspect_ratio_policy", "stretch")? != "stretch" {
                return Err(cx.unsupported("keep_aspect_ratio_policy other than stretch"));
            }
            let default_coord = if cx.opset < 11 {
                "asymmetric"
            } else {
                "half_pixel"
            };
            let coord = match cx
                .string("coordinate_transformation_mode", default_coord)?
                .as_str()
            {
                "half_pixel" => Coord::HalfPixel,
                "pytorch_half_pixel" => Coord::PytorchHalfPixel,
                "align_corners" => Coord::AlignCorners,
                "asymmetric" => Coord::Asymmetric,
                "tf_half_pixel_for_nn" => Coord::TfHalfPixelForNn,
                m => return Err(cx.unsupported(format!("coordinate_transformation_mode `{m}`"))),
            };
            let default_near = if cx.opset < 11 {
                "floor"
            } else {
                "round_prefer_floor"
            };
            let nearest = match cx.string("nearest_mode", default_near)?.as_str() {
                "round_prefer_floor" => Nearest::RoundPreferFloor,
                "round_prefer_ceil" => Nearest::RoundPreferCeil,
                "floor" => Nearest::Floor,
                "ceil" => Nearest::Ceil,
                m => return Err(cx.unsupported(format!("nearest_mode `{m}`"))),
            };
            let (scales, sizes) = if cx.opset < 11 {
                (opt_const(1)?.map(|c| c.floats()), None)
            } else {
                (
                    opt_const(2)?.map(|c| c.floats()).filter(|v| !v.is_empty()),
                    opt_const(3)?.map(|c| c.ints()).filter(|v| !v.is_empty()),
                )
            };
            let (out, scale) = match (scales, sizes) {
                (Some(sc), None) if sc.len() == 4 => {
                    if sc[0] != 1.0 || sc[1] != 1.0 || !(sc[2] > 0.0 && sc[3] > 0.0) {
                        return Err(
                            cx.unsupported(format!("scales {sc:?} (only H and W may scale)"))
                        );
                    }
                    let o = [
                        (d[2] as f64 * sc[2] as f64).floor() as usize,
                        (d[3] as f64 * sc[3] as f64).floor() as usize,
                    ];
                    (o, [sc[2], sc[3]])
                }
                (None, Some(sz)) if sz.len() == 4 => {
                    if sz[0] as usize != d[0] || sz[1] as usize != d[1] || sz[2] < 1 || sz[3] < 1 {
                        return Err(
                            cx.unsupported(format!("sizes {sz:?} (only H and W may change)"))
                        );
                    }
                    let o = [sz[2] as usize, sz[3] as usize];
                    (o, [o[0] as f32 / d[2] as f32, o[1] as f32 / d[3] as f32])
                }
                _ => {
                    return Err(cx.invalid("Resize needs exactly one of scales or sizes, 4 values"))
                }
            };
            if out[0] == 0 || out[1] == 0 || out[0] > 1 << 20 || out[1] > 1 << 20 {
                return Err(cx.invalid(format!("output size {out:?}")));
            }
            one(emit(
                p,
                Op::Resize {
                    linear,
                    nearest,
                    coord,
                    scale,
                },
                vec![id],
                vec![d[0], d[1], out[0], out[1]],
            )?)
        }
        "Softmax" => {
            let id = dyn_input(cx, input(0)?)?;
            let d = p.dims[id].clone();
            let coerce = cx.opset < 13;
            let axis = cx.axis(cx.int("axis", if coerce { 1 } else { -1 })?, d.len())?;
            one(emit(p, Op::Softmax { axis, coerce }, vec![id], d)?)
        }
        "ReduceMean" => {
            let id = dyn_input(cx, input(0)?)?;
            let d = p.dims[id].clone();
            let axes = if cx.opset < 18 {
                cx.ints("axes")?
            } else {
                opt_const(1)?.map(|c| c.ints())
            };
            let mut axes = match axes {
                Some(a) if !a.is_empty() => a
                    .iter()
                    .map(|&a| cx.axis(a, d.len()))
                    .collect::<Result<Vec<_>>>()?,
                _ if cx.int("noop_with_empty_axes", 0)? != 0 => {
                    return one(emit(p, Op::Alias, vec![id], d)?);
                }
                _ => (0..d.len()).collect(),
            };
            axes.sort_unstable();
            axes.dedup();
            if axes.windows(2).any(|w| w[1] != w[0] + 1) {
                return Err(cx.unsupported(format!("reducing non-adjacent axes {axes:?}")));
            }
            let keep = cx.int("keepdims", 1)? != 0;
            let od: Vec<usize> = d
                .iter()
                .enumerate()
                .filter_map(|(i, &x)| {
                    if axes.contains(&i) {
                        keep.then_some(1)
                    } else {
                        Some(x)
                    }
                })
                .collect();
            one(emit(p, Op::ReduceMean { axes }, vec![id], od)?)
        }
        "MatMul" | "Gemm" => {
            let a = input(0)?;
            let b = input(1)?;
            let (ad, bd) = (dims_of(p, a), dims_of(p, b));
            let a_id = dyn_input(cx, a)?;
            if op == "Gemm" {
                let (ta, tb) = (cx.int("transA", 0)? != 0, cx.int("transB", 0)? != 0);
                let (alpha, beta) = (cx.float("alpha", 1.0)?, cx.float("beta", 1.0)?);
                let V::Const(bc) = b else {
                    return Err(cx.unsupported("a runtime B"));
                };
                if ta || ad.len() != 2 || bd.len() != 2 {
                    return Err(cx.unsupported("transA = 1 or inputs of rank other than 2"));
                }
                let (k, n) = if tb { (bd[1], bd[0]) } else { (bd[0], bd[1]) };
                if ad[1] != k {
                    return Err(cx.invalid(format!("A {ad:?} and B {bd:?} do not multiply")));
                }
                let bv = bc.floats();
                let w: Vec<f32> = (0..n * k)
                    .map(|i| {
                        let (j, kk) = (i / k, i % k);
                        alpha * if tb { bv[j * k + kk] } else { bv[kk * n + j] }
                    })
                    .collect();
                let bias = match opt_const(2)? {
                    None => None,
                    Some(c) if c.len() == n || c.len() == 1 => {
                        let v = c.floats();
                        Some(
                            (0..n)
                                .map(|j| beta * v[if v.len() == 1 { 0 } else { j }])
                                .collect(),
                        )
                    }
                    Some(c) => {
                        return Err(cx.unsupported(format!(
                            "a bias C of dims {:?} (only [N] or scalar)",
                            c.dims
                        )))
                    }
                };
                return one(emit(
                    p,
                    Op::Linear { w, n, k, bias },
                    vec![a_id],
                    vec![ad[0], n],
                )?);
            }
            if ad.is_empty() || bd.is_empty() {
                return Err(cx.invalid("MatMul of a scalar"));
            }
            let k = ad[ad.len() - 1];
            let kb = if bd.len() == 1 {
                bd[0]
            } else {
                bd[bd.len() - 2]
            };
            if k != kb {
                return Err(cx.invalid(format!("A {ad:?} and B {bd:?} do not multiply")));
            }
            if let (V::Const(bc), 2) = (b, bd.len()) {
                let n = bd[1];
                let bv = bc.floats();
                let w: Vec<f32> = (0..n * k).map(|i| bv[(i % k) * n + i / k]).collect();
                let mut od = ad.clone();
                *od.last_mut().unwrap_or(&mut 0) = n;
                return one(emit(
                    p,
                    Op::Linear {
                        w,
                        n,
                        k,
                        bias: None,
                    },
                    vec![a_id],
                    od,
                )?);
            }
            let b_id = dyn_input(cx, b)?;
            if ad.len() < 2 || bd.len() < 2 {
                return Err(cx.unsupported("a runtime 1-D MatMul operand"));
            }
            let (m, n) = (ad[ad.len() - 2], bd[bd.len() - 1]);
            let batch = consts::broadcast_dims(&ad[..ad.len() - 2], &bd[..bd.len() - 2])
                .ok_or_else(|| {
                    cx.invalid(format!("batch dims of {ad:?} and {bd:?} do not broadcast"))
                })?;
            let mut od = batch;
            od.push(m);
            od.push(n);
            one(emit(p, Op::MatMul, vec![a_id, b_id], od)?)
        }
        other => Err(cx.unsupported(format!("operator {other}"))),
    }
}

fn dyn_input(cx: &Ctx, v: &V) -> Result<usize> {
    match v {
        V::Dyn(id) => Ok(*id),
        V::Const(_) => Err(cx.unsupported("a constant data input (nothing to run at inference)")),
    }
}

fn pair(cx: &Ctx, k: &str) -> Result<[usize; 2]> {
    match cx.ints(k)? {
        None => Ok([1, 1]),
        Some(v) if v.len() == 2 => Ok([cx.pos(v[0], k)?, cx.pos(v[1], k)?]),
        Some(v) => Err(cx.unsupported(format!("{k} {v:?} (2-D only)"))),
    }
}

/// `[top, left, bottom, right]` from `pads` or `auto_pad` for an input `d` (NCHW).
fn conv_pads(
    cx: &Ctx,
    d: &[usize],
    k: [usize; 2],
    s: [usize; 2],
    dil: [usize; 2],
) -> Result<[usize; 4]> {
    let auto = cx.string("auto_pad", "NOTSET")?;
    match auto.as_str() {
        "NOTSET" => match cx.ints("pads")? {
            None => Ok([0; 4]),
            Some(p) => cx.pads(&p, "pads"),
        },
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut pads = [0; 4];
            for a in 0..2 {
                let n = d[2 + a];
                let out = n.div_ceil(s[a]);
                let total = ((out - 1) * s[a] + (k[a] - 1) * dil[a] + 1).saturating_sub(n);
                let small = total / 2;
                let (b, e) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                pads[a] = b;
                pads[a + 2] = e;
            }
            Ok(pads)
        }
        m => Err(cx.invalid(format!("auto_pad `{m}`"))),
    }
}

/// `v` of dims `d` broadcast to `od` (`n` elements).
fn expand_to<T: Copy + Default>(v: &[T], d: &[usize], od: &[usize], n: usize) -> Vec<T> {
    let mut o = vec![T::default(); n];
    consts::binary(v, d, v, d, od, &mut o, |x, _| x);
    o
}
