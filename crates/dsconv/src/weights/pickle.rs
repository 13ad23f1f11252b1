//! A bounded interpreter for the subset of Python's pickle format that `torch.save` writes.
//!
//! It never executes anything: `GLOBAL` only names a callable, and `REDUCE` is evaluated
//! for the handful of callables a state_dict needs (`collections.OrderedDict`,
//! `torch._utils._rebuild_tensor_v2`, `torch._utils._rebuild_parameter`); any other call
//! becomes an opaque [`Value::Object`]. Persistent ids (`BINPERSID`) of the form
//! `('storage', torch.<Type>Storage, key, location, numel, ...)` become
//! [`Value::Storage`] references; the caller resolves them to bytes.
//!
//! Bounds, so that no input can crash the process or allocate without limit:
//! - every length is checked against the bytes that remain before anything is read;
//! - the stack, the mark stack and the memo have fixed maximum sizes;
//! - containers nest at most [`MAX_DEPTH`] deep (so dropping and cloning never overflow the
//!   call stack);
//! - `BINGET` copies a memoised value (a snapshot, see below) and every copied node is
//!   charged to a budget proportional to the input size, so repeated copies cannot blow up.
//!
//! Semantics differ from Python in one way that state dicts never notice: the memo holds
//! a snapshot of a container at the time of `BINPUT`, so items added to a container after
//! it was memoised are not seen through a later `BINGET`.

use std::collections::HashMap;

/// Containers nest at most this deep (a state_dict needs 4: dict → tuple → tuple → int).
pub const MAX_DEPTH: u32 = 64;
/// Most values on the stack at once.
const MAX_STACK: usize = 1 << 20;
/// Most open marks at once.
const MAX_MARKS: usize = 1 << 12;
/// Most memo entries.
const MAX_MEMO: usize = 1 << 20;
/// Longest `GLOBAL` module or name line.
const MAX_GLOBAL_LINE: usize = 256;

/// A tensor's element type, as named by its storage class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float (`torch.FloatStorage`).
    F32,
    /// 64-bit float (`torch.DoubleStorage`).
    F64,
    /// IEEE half (`torch.HalfStorage`).
    F16,
    /// bfloat16 (`torch.BFloat16Storage`).
    BF16,
    /// 64-bit signed integer (`torch.LongStorage`).
    I64,
    /// 32-bit signed integer (`torch.IntStorage`).
    I32,
    /// 16-bit signed integer (`torch.ShortStorage`).
    I16,
    /// 8-bit signed integer (`torch.CharStorage`).
    I8,
    /// 8-bit unsigned integer (`torch.ByteStorage`).
    U8,
    /// Boolean, one byte (`torch.BoolStorage`).
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// The dtype of a `torch.<Name>Storage` class name.
    pub fn from_storage_name(name: &str) -> Option<DType> {
        Some(match name {
            "FloatStorage" => DType::F32,
            "DoubleStorage" => DType::F64,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }

    /// Lower-case name as PyTorch prints it (`float32`, `int64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    /// Decodes element `i` of a little-endian byte buffer as f32 (integers convert exactly
    /// up to 2^24; larger ones round). The caller guarantees `(i + 1)·size ≤ bytes.len()`.
    pub fn read_f32(self, bytes: &[u8], i: usize) -> f32 {
        let b = &bytes[i * self.size()..(i + 1) * self.size()];
        match self {
            DType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            DType::F64 => {
                f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }
            DType::F16 => f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
            DType::BF16 => f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16),
            DType::I64 => {
                i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }
            DType::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            DType::I16 => i16::from_le_bytes([b[0], b[1]]) as f32,
            DType::I8 => b[0] as i8 as f32,
            DType::U8 => b[0] as f32,
            DType::Bool => (b[0] != 0) as u8 as f32,
        }
    }
}

/// IEEE 754 binary16 → binary32, exact (every half is representable as a float).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        // Subnormal half: value = man · 2^-24, normalise into a float.
        (0, _) => {
            let shift = man.leading_zeros() - 21; // bring the top set bit to position 10
            let man = (man << shift) & 0x3ff;
            let exp = 127 - 15 + 1 - shift;
            sign | (exp << 23) | (man << 13)
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, _) => sign | 0x7fc0_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// A reference to a raw storage, from a persistent id.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// Element type.
    pub dtype: DType,
    /// The storage's key (`archive/data/<key>` in a zip checkpoint).
    pub key: String,
    /// Number of elements the storage holds, as declared.
    pub numel: u64,
}

/// A tensor rebuilt by `torch._utils._rebuild_tensor_v2`: a strided view of a storage.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// The storage it views.
    pub storage: StorageRef,
    /// Offset of element 0, in elements.
    pub offset: u64,
    /// Sizes.
    pub size: Vec<u64>,
    /// Strides, in elements.
    pub stride: Vec<u64>,
}

/// A pickled value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// A boolean.
    Bool(bool),
    /// An integer that fits in i64.
    Int(i64),
    /// An integer too large for i64 (little-endian two's complement bytes).
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// A text string.
    Str(String),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A callable or class named by `GLOBAL`.
    Global(String, String),
    /// A tuple.
    Tuple(Seq),
    /// A list.
    List(Seq),
    /// A dict (or OrderedDict), items in insertion order; keys may repeat (the last wins).
    Dict(Seq),
    /// A storage reference from a persistent id.
    Storage(StorageRef),
    /// A tensor.
    Tensor(TensorRef),
    /// The result of calling something this interpreter does not model.
    Object(String),
}

/// The items of a container and its nesting depth (1 + the deepest item's).
/// A dict stores keys and values alternately.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Seq {
    /// Nesting depth of this container.
    pub depth: u32,
    /// Items (for a dict: key, value, key, value, ...).
    pub items: Vec<Value>,
}

impl Value {
    fn depth(&self) -> u32 {
        match self {
            Value::Tuple(s) | Value::List(s) | Value::Dict(s) => s.depth,
            _ => 0,
        }
    }

    /// Number of nodes a deep copy creates (bounded by `MAX_DEPTH` recursion).
    fn nodes(&self) -> u64 {
        match self {
            Value::Tuple(s) | Value::List(s) | Value::Dict(s) => {
                1 + s.items.iter().map(Value::nodes).sum::<u64>()
            }
            Value::Str(s) => 1 + s.len() as u64 / 16,
            Value::Bytes(b) | Value::BigInt(b) => 1 + b.len() as u64 / 16,
            Value::Tensor(t) => 1 + (t.size.len() + t.stride.len()) as u64,
            _ => 1,
        }
    }

    /// The integer, if this is a small integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// The key/value pairs, if this is a dict.
    pub fn as_dict(&self) -> Option<impl Iterator<Item = (&Value, &Value)>> {
        match self {
            Value::Dict(s) => Some(s.items.chunks_exact(2).map(|kv| (&kv[0], &kv[1]))),
            _ => None,
        }
    }
}

/// Why a pickle stream was rejected.
pub type PickleError = String;

type PResult<T> = std::result::Result<T, PickleError>;

/// Builds a container, checking the depth bound.
fn container(make: fn(Seq) -> Value, items: Vec<Value>) -> PResult<Value> {
    let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
    if depth > MAX_DEPTH {
        return Err(format!("containers nested deeper than {MAX_DEPTH}"));
    }
    Ok(make(Seq { depth, items }))
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    /// Nodes that `BINGET`/`DUP` may still copy.
    copy_budget: u64,
}

/// Runs one pickle program starting at `data[0]`; returns the value left by `STOP` and the
/// number of bytes consumed.
pub fn unpickle(data: &[u8]) -> PResult<(Value, usize)> {
    let mut m = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        copy_budget: 4 * data.len() as u64 + 4096,
    };
    let value = m.run()?;
    Ok((value, m.pos))
}

impl Machine<'_> {
    fn take(&mut self, n: usize) -> PResult<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                format!(
                    "truncated: {n} bytes needed at offset {}, {} left",
                    self.pos,
                    self.data.len() - self.pos
                )
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> PResult<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> PResult<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> PResult<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> PResult<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    /// A length-prefixed byte run whose length was just read.
    fn bytes(&mut self, len: u64) -> PResult<Vec<u8>> {
        let len = usize::try_from(len).map_err(|_| "length does not fit in memory".to_string())?;
        Ok(self.take(len)?.to_vec())
    }

    fn string(&mut self, len: u64) -> PResult<Value> {
        let b = self.bytes(len)?;
        String::from_utf8(b)
            .map(Value::Str)
            .map_err(|_| "string is not UTF-8".to_string())
    }

    fn line(&mut self) -> PResult<String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .take(MAX_GLOBAL_LINE + 1)
            .position(|&b| b == b'\n')
            .ok_or_else(|| {
                format!("GLOBAL line longer than {MAX_GLOBAL_LINE} bytes or unterminated")
            })?;
        let s = std::str::from_utf8(&rest[..n])
            .map_err(|_| "GLOBAL line is not UTF-8".to_string())?
            .to_string();
        self.pos += n + 1;
        Ok(s)
    }

    fn push(&mut self, v: Value) -> PResult<()> {
        if self.stack.len() >= MAX_STACK {
            return Err(format!("more than {MAX_STACK} values on the stack"));
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> PResult<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err("stack underflow".into());
        }
        Ok(self.stack.pop().expect("checked non-empty"))
    }

    fn top(&mut self) -> PResult<&mut Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err("stack underflow".into());
        }
        Ok(self.stack.last_mut().expect("checked non-empty"))
    }

    /// Pops everything above the last mark, and the mark.
    fn pop_mark(&mut self) -> PResult<Vec<Value>> {
        let mark = self.marks.pop().ok_or("no MARK on the stack")?;
        Ok(self.stack.split_off(mark))
    }

    fn pop_n(&mut self, n: usize) -> PResult<Vec<Value>> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() < floor + n {
            return Err("stack underflow".into());
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    fn copy(&mut self, v: &Value) -> PResult<Value> {
        let nodes = v.nodes();
        if nodes > self.copy_budget {
            return Err("memo copies exceed the budget for this input size".into());
        }
        self.copy_budget -= nodes;
        Ok(v.clone())
    }

    fn memo_put(&mut self, key: u32) -> PResult<()> {
        let v = self.top()?.clone();
        let nodes = v.nodes();
        if nodes > self.copy_budget {
            return Err("memo copies exceed the budget for this input size".into());
        }
        self.copy_budget -= nodes;
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return Err(format!("more than {MAX_MEMO} memo entries"));
        }
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> PResult<()> {
        let v = self
            .memo
            .get(&key)
            .ok_or_else(|| format!("memo key {key} not defined"))?
            .clone();
        let v = self.copy(&v)?;
        self.push(v)
    }

    /// Appends items to the list on top of the stack.
    fn extend_list(&mut self, items: Vec<Value>) -> PResult<()> {
        let top = self.top()?;
        let Value::List(seq) = top else {
            return Err("APPEND to something that is not a list".into());
        };
        let depth = items.iter().map(|v| v.depth() + 1).max().unwrap_or(0);
        seq.depth = seq.depth.max(depth);
        if seq.depth > MAX_DEPTH {
            return Err(format!("containers nested deeper than {MAX_DEPTH}"));
        }
        seq.items.extend(items);
        Ok(())
    }

    /// Adds key/value pairs to the dict on top of the stack.
    fn extend_dict(&mut self, items: Vec<Value>) -> PResult<()> {
        if !items.len().is_multiple_of(2) {
            return Err("SETITEMS with an odd number of items".into());
        }
        let top = self.top()?;
        let Value::Dict(seq) = top else {
            return Err("SETITEM on something that is not a dict".into());
        };
        let depth = items.iter().map(|v| v.depth() + 1).max().unwrap_or(0);
        seq.depth = seq.depth.max(depth);
        if seq.depth > MAX_DEPTH {
            return Err(format!("containers nested deeper than {MAX_DEPTH}"));
        }
        seq.items.extend(items);
        Ok(())
    }

    fn run(&mut self) -> PResult<Value> {
        loop {
            let op = self.u8()?;
            match op {
                // PROTO
                0x80 => {
                    let v = self.u8()?;
                    if v > 5 {
                        return Err(format!("pickle protocol {v} is not supported"));
                    }
                }
                // FRAME (protocol 4): a length hint only.
                0x95 => {
                    self.u64()?;
                }
                // STOP
                b'.' => {
                    let v = self.pop()?;
                    return Ok(v);
                }
                b'(' => {
                    if self.marks.len() >= MAX_MARKS {
                        return Err(format!("more than {MAX_MARKS} open MARKs"));
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    let v = self.copy(&v)?;
                    self.push(v)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(v as i64))?
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64))?
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v as i64))?
                }
                // LONG1 / LONG4: little-endian two's complement of n bytes.
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.u8()? as u64
                    } else {
                        self.u32()? as i32 as i64 as u64
                    };
                    if op == 0x8b && n > i32::MAX as u64 {
                        return Err("negative LONG4 length".into());
                    }
                    let b = self.bytes(n)?;
                    let v = if b.is_empty() {
                        Value::Int(0)
                    } else if b.len() <= 8 {
                        let negative = b[b.len() - 1] & 0x80 != 0;
                        let mut full = [if negative { 0xff } else { 0 }; 8];
                        full[..b.len()].copy_from_slice(&b);
                        Value::Int(i64::from_le_bytes(full))
                    } else {
                        Value::BigInt(b)
                    };
                    self.push(v)?
                }
                b'G' => {
                    let b = self.take(8)?;
                    let v = f64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                    self.push(Value::Float(v))?
                }
                // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
                b'X' => {
                    let n = self.u32()? as u64;
                    let v = self.string(n)?;
                    self.push(v)?
                }
                0x8c => {
                    let n = self.u8()? as u64;
                    let v = self.string(n)?;
                    self.push(v)?
                }
                0x8d => {
                    let n = self.u64()?;
                    let v = self.string(n)?;
                    self.push(v)?
                }
                // BINSTRING, SHORT_BINSTRING (Python 2 str): taken as text if UTF-8.
                b'T' | b'U' => {
                    let n = if op == b'T' {
                        self.u32()? as u64
                    } else {
                        self.u8()? as u64
                    };
                    let b = self.bytes(n)?;
                    let v = match String::from_utf8(b) {
                        Ok(s) => Value::Str(s),
                        Err(e) => Value::Bytes(e.into_bytes()),
                    };
                    self.push(v)?
                }
                // BINBYTES, SHORT_BINBYTES, BINBYTES8
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => self.u32()? as u64,
                        b'C' => self.u8()? as u64,
                        _ => self.u64()?,
                    };
                    let b = self.bytes(n)?;
                    self.push(Value::Bytes(b))?
                }
                b')' => self.push(container(Value::Tuple, Vec::new())?)?,
                b']' => self.push(container(Value::List, Vec::new())?)?,
                b'}' => self.push(container(Value::Dict, Vec::new())?)?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(container(Value::Tuple, items)?)?
                }
                0x85..=0x87 => {
                    let items = self.pop_n((op - 0x84) as usize)?;
                    self.push(container(Value::Tuple, items)?)?
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(container(Value::List, items)?)?
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    if !items.len().is_multiple_of(2) {
                        return Err("DICT with an odd number of items".into());
                    }
                    self.push(container(Value::Dict, items)?)?
                }
                b'a' => {
                    let v = self.pop()?;
                    self.extend_list(vec![v])?
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.extend_list(items)?
                }
                b's' => {
                    let items = self.pop_n(2)?;
                    self.extend_dict(items)?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.extend_dict(items)?
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    self.memo_put(k)?
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = u32::try_from(self.memo.len()).map_err(|_| "memo too large")?;
                    self.memo_put(k)?
                }
                b'h' => {
                    let k = self.u8()? as u32;
                    self.memo_get(k)?
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(k)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global(module, name))?
                }
                0x93 => {
                    let items = self.pop_n(2)?;
                    let mut it = items.into_iter();
                    match (it.next(), it.next()) {
                        (Some(Value::Str(module)), Some(Value::Str(name))) => {
                            self.push(Value::Global(module, name))?
                        }
                        _ => return Err("STACK_GLOBAL needs two strings".into()),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = persistent_load(pid)?;
                    self.push(v)?
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = reduce(callable, args)?;
                    self.push(v)?
                }
                b'b' => {
                    // BUILD: set an object's state. State dicts carry `_metadata` this way;
                    // it is not needed, so the state is dropped and the object kept.
                    self.pop()?;
                    self.top()?;
                }
                other => {
                    return Err(format!(
                        "unsupported pickle opcode 0x{other:02x} at offset {}",
                        self.pos - 1
                    ))
                }
            }
        }
    }
}

fn to_u64(v: &Value, what: &str) -> PResult<u64> {
    v.as_int()
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| format!("{what} is not a non-negative integer"))
}

fn int_tuple(v: &Value, what: &str) -> PResult<Vec<u64>> {
    match v {
        Value::Tuple(s) => s.items.iter().map(|x| to_u64(x, what)).collect(),
        _ => Err(format!("{what} is not a tuple")),
    }
}

/// Resolves a persistent id `('storage', torch.<Type>Storage, key, location, numel, ...)`.
fn persistent_load(pid: Value) -> PResult<Value> {
    let Value::Tuple(seq) = pid else {
        return Err("persistent id is not a tuple".into());
    };
    let items = &seq.items;
    if items.len() < 5 || items[0] != Value::Str("storage".into()) {
        return Err("persistent id is not a ('storage', ...) tuple".into());
    }
    let dtype = match &items[1] {
        Value::Global(module, name) if module == "torch" => DType::from_storage_name(name)
            .ok_or_else(|| format!("unsupported storage type torch.{name}"))?,
        other => return Err(format!("unsupported storage type {other:?}")),
    };
    let key = match &items[2] {
        Value::Str(s) => s.clone(),
        _ => return Err("storage key is not a string".into()),
    };
    let numel = to_u64(&items[4], "storage size")?;
    // Legacy files may carry view metadata (a view of a larger storage); only the plain
    // form (None) is supported.
    if items.len() > 5 && items[5] != Value::None {
        return Err("storage views (legacy view metadata) are not supported".into());
    }
    Ok(Value::Storage(StorageRef { dtype, key, numel }))
}

/// Evaluates `callable(*args)` for the callables a state_dict uses.
fn reduce(callable: Value, args: Value) -> PResult<Value> {
    let Value::Global(module, name) = &callable else {
        return Err("REDUCE of something that is not a GLOBAL".into());
    };
    let Value::Tuple(args) = args else {
        return Err("REDUCE arguments are not a tuple".into());
    };
    let args = args.items;
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") | ("builtins", "dict") | ("__builtin__", "dict")
            if args.is_empty() =>
        {
            container(Value::Dict, Vec::new())
        }
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            if args.len() < 4 {
                return Err(format!("{name} needs at least 4 arguments"));
            }
            let Value::Storage(storage) = &args[0] else {
                return Err(format!("{name}: first argument is not a storage"));
            };
            let offset = to_u64(&args[1], "storage offset")?;
            let size = int_tuple(&args[2], "tensor size")?;
            let stride = int_tuple(&args[3], "tensor stride")?;
            if size.len() != stride.len() {
                return Err(format!(
                    "tensor size has {} dimensions, stride {}",
                    size.len(),
                    stride.len()
                ));
            }
            Ok(Value::Tensor(TensorRef {
                storage: storage.clone(),
                offset,
                size,
                stride,
            }))
        }
        ("torch._utils", "_rebuild_parameter")
        | ("torch._utils", "_rebuild_parameter_with_state") => match args.into_iter().next() {
            Some(t @ Value::Tensor(_)) => Ok(t),
            _ => Err(format!("{name}: first argument is not a tensor")),
        },
        _ => Ok(Value::Object(format!("{module}.{name}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_covers_every_class() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x0400), 2f32.powi(-14));
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn small_program_with_memo_and_long() {
        // PROTO 2, LONG1 of 10 bytes (the legacy magic), STOP
        let magic = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";
        let (v, used) = unpickle(magic).unwrap();
        assert!(matches!(v, Value::BigInt(ref b) if b.len() == 10));
        assert_eq!(used, magic.len());
        // {'a': (1, -1)} with memo round trip: } q0 ( X'a' K1 J-1 t q1 h1 ...
        let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01J\xff\xff\xff\xff\x86q\x01u.";
        let (v, _) = unpickle(p).unwrap();
        let pairs: Vec<_> = v.as_dict().unwrap().collect();
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].0, &Value::Str("a".into()));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut p = vec![0x80, 2, b')'];
        p.extend(std::iter::repeat_n(0x85u8, 100_000));
        p.push(b'.');
        assert!(unpickle(&p).unwrap_err().contains("nested deeper"));
    }

    #[test]
    fn exponential_memo_copies_hit_the_budget() {
        // ] q0 then repeatedly: h0 h0 t2 q0 — doubles the memoised value each round.
        let mut p = vec![0x80, 2, b']', b'q', 0];
        for _ in 0..60 {
            p.extend_from_slice(&[b'h', 0, b'h', 0, 0x86, b'q', 0, b'0']);
        }
        p.extend_from_slice(b"h\x00.");
        let err = unpickle(&p).unwrap_err();
        assert!(
            err.contains("budget") || err.contains("nested"),
            "unexpected error {err}"
        );
    }
}
