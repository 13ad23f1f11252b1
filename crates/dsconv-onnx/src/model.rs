//! Reading and validating a model: protobuf → [`Model`] (nodes in dependency order,
//! decoded initializers, declared inputs and outputs).

use crate::consts::{Const, Data};
use crate::error::{Error, Result};
use crate::onnx;
use prost::Message;
use std::collections::{HashMap, HashSet};

/// Operators this crate implements (domain `ai.onnx`); anything else is refused at load
/// with the node's name.
pub(crate) const SUPPORTED: &[&str] = &[
    "Abs",
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Ceil",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvTranspose",
    "Div",
    "Dropout",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Floor",
    "Gather",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LeakyRelu",
    "MatMul",
    "Max",
    "MaxPool",
    "Min",
    "Mul",
    "Neg",
    "Pad",
    "Pow",
    "Range",
    "Reciprocal",
    "ReduceMean",
    "Relu",
    "Reshape",
    "Resize",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Tanh",
    "Transpose",
    "Unsqueeze",
    "Where",
];

/// A declared dimension of a graph input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Dim {
    Fixed(usize),
    /// Symbolic (`dim_param`) or absent: taken from the caller's shape.
    Free(String),
}

/// An attribute value.
#[derive(Debug, Clone)]
pub(crate) enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Str(String),
    Tensor(Const),
    /// A kind this crate never reads (graphs, sparse tensors, ...).
    Other(&'static str),
}

/// One node, inputs and outputs by value name (`""` = an omitted optional input).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub name: String,
    pub op: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attrs: HashMap<String, Attr>,
}

/// A graph input that is not an initializer.
#[derive(Debug, Clone)]
pub(crate) struct Input {
    pub name: String,
    pub dims: Option<Vec<Dim>>,
}

/// A loaded, validated ONNX model: [`plan`](Model::plan) it for an input shape, then run
/// the plan.
#[derive(Debug, Clone)]
pub struct Model {
    pub(crate) nodes: Vec<Node>,
    pub(crate) inits: HashMap<String, Const>,
    pub(crate) inputs: Vec<Input>,
    pub(crate) outputs: Vec<String>,
    pub(crate) opset: i64,
    producer: String,
}

impl Model {
    /// Reads and validates the model in `path`.
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Model> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Model::from_bytes(&bytes)
    }

    /// Decodes and validates a model from its protobuf bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model> {
        let proto = onnx::ModelProto::decode(bytes).map_err(|e| Error::Decode(e.to_string()))?;
        let producer = format!("{} {}", proto.producer_name(), proto.producer_version());
        let graph = proto
            .graph
            .ok_or_else(|| Error::Decode("the model has no graph".into()))?;
        let opset = proto
            .opset_import
            .iter()
            .filter(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
            .filter_map(|o| o.version)
            .max()
            .unwrap_or(1);
        let mut inits = HashMap::new();
        for t in &graph.initializer {
            let c = decode_tensor(t)?;
            inits.insert(t.name.clone().unwrap_or_default(), c);
        }
        if let Some(s) = graph.sparse_initializer.first() {
            let name = s
                .values
                .as_ref()
                .and_then(|v| v.name.clone())
                .unwrap_or_default();
            return Err(Error::unsupported(
                &name,
                "initializer",
                "a sparse initializer",
            ));
        }
        let inputs = graph
            .input
            .iter()
            .filter(|v| !inits.contains_key(v.name()))
            .map(|v| Input {
                name: v.name().to_string(),
                dims: declared_dims(v),
            })
            .collect::<Vec<_>>();
        let outputs: Vec<String> = graph.output.iter().map(|v| v.name().to_string()).collect();
        if outputs.is_empty() {
            return Err(Error::Decode("the graph declares no outputs".into()));
        }
        let mut nodes = Vec::with_capacity(graph.node.len());
        for (i, n) in graph.node.iter().enumerate() {
            nodes.push(decode_node(i, n)?);
        }
        let nodes = topo_sort(nodes, &inits, &inputs, &outputs)?;
        Ok(Model {
            nodes,
            inits,
            inputs,
            outputs,
            opset,
            producer,
        })
    }

    /// The graph inputs (initializers excluded) with their declared dims (`None` for a
    /// symbolic or unknown dimension).
    pub fn inputs(&self) -> Vec<(String, Option<Vec<Option<usize>>>)> {
        self.inputs
            .iter()
            .map(|i| {
                let dims = i.dims.as_ref().map(|d| {
                    d.iter()
                        .map(|d| match d {
                            Dim::Fixed(n) => Some(*n),
                            Dim::Free(_) => None,
                        })
                        .collect()
                });
                (i.name.clone(), dims)
            })
            .collect()
    }

    /// The graph output names, in order.
    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }

    /// The default ONNX opset the model imports.
    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// The producer name and version the file records.
    pub fn producer(&self) -> &str {
        &self.producer
    }

    /// Number of nodes in the graph.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The input shape the model declares for its first input, when every dimension is
    /// fixed, else with free dimensions (batch, height, width) given by `default`
    /// (`[1, 3, 224, 224]`-style, same rank), if any.
    pub fn declared_input_shape(&self, default: Option<&[usize]>) -> Option<Vec<usize>> {
        let first = self.inputs.first()?;
        let dims = first.dims.as_ref()?;
        dims.iter()
            .enumerate()
            .map(|(i, d)| match d {
                Dim::Fixed(n) => Some(*n),
                Dim::Free(_) => default.and_then(|v| v.get(i).copied()),
            })
            .collect()
    }
}

fn declared_dims(v: &onnx::ValueInfoProto) -> Option<Vec<Dim>> {
    use onnx::tensor_shape_proto::dimension::Value;
    use onnx::type_proto::Value as T;
    let Some(T::TensorType(t)) = v.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    let shape = t.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .map(|d| match &d.value {
                Some(Value::DimValue(n)) if *n > 0 => Dim::Fixed(*n as usize),
                Some(Value::DimParam(p)) => Dim::Free(p.clone()),
                _ => Dim::Free(String::new()),
            })
            .collect(),
    )
}

fn decode_node(i: usize, n: &onnx::NodeProto) -> Result<Node> {
    let op = n.op_type().to_string();
    let name = match n.name() {
        "" => format!("#{i} {op}"),
        s => s.to_string(),
    };
    let domain = n.domain();
    if !(domain.is_empty() || domain == "ai.onnx") {
        return Err(Error::unsupported(
            &name,
            &op,
            format!("operator domain `{domain}`"),
        ));
    }
    if !SUPPORTED.contains(&op.as_str()) {
        return Err(Error::unsupported(&name, &op, "the operator"));
    }
    let mut attrs = HashMap::new();
    for a in &n.attribute {
        let v = decode_attr(a).map_err(|e| match e {
            Error::Decode(m) => {
                Error::invalid(&name, &op, format!("attribute `{}`: {m}", a.name()))
            }
            e => e,
        })?;
        attrs.insert(a.name().to_string(), v);
    }
    Ok(Node {
        name,
        op,
        inputs: n.input.clone(),
        outputs: n.output.clone(),
        attrs,
    })
}

fn decode_attr(a: &onnx::AttributeProto) -> Result<Attr> {
    use onnx::attribute_proto::AttributeType as T;
    let ty = a.r#type.and_then(|t| T::try_from(t).ok());
    Ok(match ty {
        Some(T::Int) => Attr::Int(a.i()),
        Some(T::Float) => Attr::Float(a.f()),
        Some(T::Ints) => Attr::Ints(a.ints.clone()),
        Some(T::Floats) => Attr::Floats(a.floats.clone()),
        Some(T::String) => Attr::Str(String::from_utf8_lossy(a.s()).into_owned()),
        Some(T::Tensor) => match &a.t {
            Some(t) => Attr::Tensor(decode_tensor(t)?),
            None => {
                return Err(Error::Decode(
                    "a tensor attribute without its tensor".into(),
                ))
            }
        },
        Some(T::Graph) | Some(T::Graphs) => Attr::Other("a graph"),
        Some(T::SparseTensor) | Some(T::SparseTensors) => Attr::Other("a sparse tensor"),
        _ => {
            // IR < 2 files leave the type out: infer it from the field present.
            if a.i.is_some() {
                Attr::Int(a.i())
            } else if a.f.is_some() {
                Attr::Float(a.f())
            } else if !a.ints.is_empty() {
                Attr::Ints(a.ints.clone())
            } else if !a.floats.is_empty() {
                Attr::Floats(a.floats.clone())
            } else if let Some(s) = &a.s {
                Attr::Str(String::from_utf8_lossy(s).into_owned())
            } else if let Some(t) = &a.t {
                Attr::Tensor(decode_tensor(t)?)
            } else {
                Attr::Other("an attribute of unknown type")
            }
        }
    })
}

/// Decodes a tensor (initializer or attribute): element count checked against the dims
/// and the bytes present, so nothing is allocated beyond what the file holds.
pub(crate) fn decode_tensor(t: &onnx::TensorProto) -> Result<Const> {
    use onnx::tensor_proto::DataType as D;
    let name = t.name().to_string();
    if t.data_location == Some(onnx::tensor_proto::DataLocation::External as i32)
        || !t.external_data.is_empty()
    {
        let location = t
            .external_data
            .iter()
            .find(|e| e.key() == "location")
            .map(|e| e.value().to_string())
            .unwrap_or_else(|| "location not given".into());
        return Err(Error::ExternalData { name, location });
    }
    let mut dims = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        if d < 0 {
            return Err(Error::Decode(format!(
                "tensor `{name}` has a negative dimension {d}"
            )));
        }
        dims.push(
            usize::try_from(d).map_err(|_| Error::Overflow(format!("tensor `{name}` dims")))?,
        );
    }
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::Overflow(format!("tensor `{name}` of dims {:?}", t.dims)))?;
    let raw = t.raw_data.as_deref();
    let bad_len = |got: usize, width: usize| {
        Error::Decode(format!(
            "tensor `{name}` of dims {dims:?} needs {count} elements, the file holds {}",
            got / width.max(1)
        ))
    };
    let ty = D::try_from(t.data_type()).unwrap_or(D::Undefined);
    let width = match ty {
        D::Float | D::Int32 | D::Uint32 => 4,
        D::Double | D::Int64 | D::Uint64 => 8,
        D::Float16 | D::Int16 | D::Uint16 | D::Bfloat16 => 2,
        D::Int8 | D::Uint8 | D::Bool => 1,
        _ => {
            return Err(Error::unsupported(
                &name,
                "tensor",
                format!("data type {:?}", t.data_type()),
            ))
        }
    };
    if let Some(raw) = raw {
        if count.checked_mul(width) != Some(raw.len()) {
            return Err(bad_len(raw.len(), width));
        }
        let chunks = raw.chunks_exact(width);
        let data = match ty {
            D::Float => Data::F32(
                chunks
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            ),
            D::Double => Data::F32(
                chunks
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()) as f32)
                    .collect(),
            ),
            D::Float16 => Data::F32(
                chunks
                    .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
            ),
            D::Bfloat16 => Data::F32(
                chunks
                    .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                    .collect(),
            ),
            D::Int64 => Data::I64(
                chunks
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            ),
            D::Uint64 => Data::I64(
                chunks
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()) as i64)
                    .collect(),
            ),
            D::Int32 => Data::I64(
                chunks
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap_or_default()) as i64)
                    .collect(),
            ),
            D::Uint32 => Data::I64(
                chunks
                    .map(|c| u32::from_le_bytes(c.try_into().unwrap_or_default()) as i64)
                    .collect(),
            ),
            D::Int16 => Data::I64(
                chunks
                    .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                    .collect(),
            ),
            D::Uint16 => Data::I64(
                chunks
                    .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64)
                    .collect(),
            ),
            D::Int8 => Data::I64(chunks.map(|c| c[0] as i8 as i64).collect()),
            _ => Data::I64(chunks.map(|c| c[0] as i64).collect()),
        };
        return Ok(Const { dims, data });
    }
    let data = match ty {
        D::Float => Data::F32(t.float_data.clone()),
        D::Double => Data::F32(t.double_data.iter().map(|&v| v as f32).collect()),
        D::Int64 => Data::I64(t.int64_data.clone()),
        D::Uint64 => Data::I64(t.uint64_data.iter().map(|&v| v as i64).collect()),
        D::Float16 => Data::F32(t.int32_data.iter().map(|&v| f16_to_f32(v as u16)).collect()),
        D::Bfloat16 => Data::F32(
            t.int32_data
                .iter()
                .map(|&v| f32::from_bits((v as u32 & 0xffff) << 16))
                .collect(),
        ),
        _ => Data::I64(t.int32_data.iter().map(|&v| v as i64).collect()),
    };
    if data.len() != count {
        return Err(bad_len(data.len() * width, width));
    }
    Ok(Const { dims, data })
}

/// IEEE half → single (exact).
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value m · 2^-24.
            let v = m as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Orders the nodes so every input is produced before it is read (Kahn's algorithm,
/// keeping the file's order among ready nodes); a cycle or a value nothing provides is
/// an error naming the node.
fn topo_sort(
    nodes: Vec<Node>,
    inits: &HashMap<String, Const>,
    inputs: &[Input],
    outputs: &[String],
) -> Result<Vec<Node>> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.outputs.iter().filter(|o| !o.is_empty()) {
            if producer.insert(o, i).is_some() || inits.contains_key(o.as_str()) {
                return Err(Error::invalid(
                    &n.name,
                    &n.op,
                    format!("output `{o}` is produced twice"),
                ));
            }
        }
    }
    let given: HashSet<&str> = inputs
        .iter()
        .map(|i| i.name.as_str())
        .chain(inits.keys().map(|k| k.as_str()))
        .collect();
    let mut pending = vec![0usize; nodes.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for inp in n.inputs.iter().filter(|s| !s.is_empty()) {
            if let Some(&p) = producer.get(inp.as_str()) {
                pending[i] += 1;
                users[p].push(i);
            } else if !given.contains(inp.as_str()) {
                return Err(Error::MissingInput {
                    node: n.name.clone(),
                    op: n.op.clone(),
                    input: inp.clone(),
                });
            }
        }
    }
    for o in outputs {
        if !producer.contains_key(o.as_str()) && !given.contains(o.as_str()) {
            return Err(Error::Decode(format!(
                "graph output `{o}` is produced by no node"
            )));
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..nodes.len()).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &u in &users[i] {
            pending[u] -= 1;
            if pending[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() != nodes.len() {
        let stuck = (0..nodes.len()).find(|&i| pending[i] > 0).unwrap_or(0);
        return Err(Error::Cycle(nodes[stuck].name.clone()));
    }
    let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}
