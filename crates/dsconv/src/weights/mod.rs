//! Checkpoint loading: PyTorch `.pth`/`.pt` files (zip and legacy containers, read by a
//! bounded pickle interpreter that executes nothing) and `.safetensors` files, into one
//! [`StateDict`] of named dense f32 tensors; and a [`Loader`] that maps names to a model's
//! parameters with shape checks, reporting every missing, unexpected and mismatched key
//! at once.
//!
//! No input, however corrupt, panics or makes the reader allocate much more than the
//! file's own size: every length is checked against the bytes present before anything is
//! allocated; the pickle machine's stack, memo, nesting depth and memo copies are bounded
//! (see [`pickle`]); materialised tensors total at most `4 · file bytes + 65536` elements
//! (so a stride-0 view of a huge size is refused); zip entries must be stored
//! uncompressed, as PyTorch writes them, and may not overlap.
//!
//! ```no_run
//! use dsconv::weights::StateDict;
//! let sd = StateDict::load("efficientnet-lite0.pth")?;
//! let stem = sd.get("_conv_stem.weight").unwrap();
//! assert_eq!(stem.dims, [32, 3, 3, 3]);
//! # Ok::<(), dsconv::Error>(())
//! ```

pub mod pickle;
mod pth;
mod source;

pub use pickle::DType;
pub use source::{ParamKind, ParamSource, RandomParams};

use crate::error::{Error, Result};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// One named tensor of a checkpoint, materialised dense and row-major as f32.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightTensor {
    /// The element type in the file (the data is converted to f32).
    pub dtype: DType,
    /// Dimensions (empty for a scalar).
    pub dims: Vec<usize>,
    /// Elements, row-major, `dims.iter().product()` of them.
    pub data: Vec<f32>,
}

/// Named tensors in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateDict {
    names: Vec<String>,
    tensors: HashMap<String, WeightTensor>,
}

impl StateDict {
    /// Reads a checkpoint, choosing the format from its first bytes: a zip archive or the
    /// legacy pickle stream (PyTorch), or a safetensors header.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses checkpoint bytes; `source` names them in errors.
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<Self> {
        if looks_like_pytorch(bytes) {
            Self::from_pth_bytes(bytes, source)
        } else {
            Self::from_safetensors_bytes(bytes, source)
        }
    }

    /// Parses a PyTorch checkpoint (zip or legacy container).
    pub fn from_pth_bytes(bytes: &[u8], source: &str) -> Result<Self> {
        pth::parse(bytes).map_err(|reason| Error::Format {
            path: source.to_string(),
            reason,
        })
    }

    /// Parses a safetensors file.
    pub fn from_safetensors_bytes(bytes: &[u8], source: &str) -> Result<Self> {
        let fmt = |reason: String| Error::Format {
            path: source.to_string(),
            reason,
        };
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| fmt(format!("not a readable safetensors file: {e}")))?;
        // The header's order is not preserved by the crate; keep the file's data order.
        let mut entries: Vec<_> = st.tensors();
        entries.sort_by_key(|(_, view)| view.data().as_ptr() as usize);
        let mut sd = StateDict::default();
        for (name, view) in entries {
            use safetensors::Dtype as S;
            let dtype = match view.dtype() {
                S::F32 => DType::F32,
                S::F64 => DType::F64,
                S::F16 => DType::F16,
                S::BF16 => DType::BF16,
                S::I64 => DType::I64,
                S::I32 => DType::I32,
                S::I16 => DType::I16,
                S::I8 => DType::I8,
                S::U8 => DType::U8,
                S::BOOL => DType::Bool,
                other => {
                    return Err(fmt(format!(
                        "tensor '{name}': dtype {other:?} is not supported"
                    )))
                }
            };
            let raw = view.data();
            let numel = raw.len() / dtype.size();
            let expected = view
                .shape()
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d));
            if expected != Some(numel) || raw.len() % dtype.size() != 0 {
                return Err(fmt(format!(
                    "tensor '{name}': {} bytes for shape {:?}",
                    raw.len(),
                    view.shape()
                )));
            }
            let data = (0..numel).map(|i| dtype.read_f32(raw, i)).collect();
            sd.insert(
                name,
                WeightTensor {
                    dtype,
                    dims: view.shape().to_vec(),
                    data,
                },
            );
        }
        Ok(sd)
    }

    /// Adds or replaces a tensor (a replaced name keeps its position).
    pub fn insert(&mut self, name: String, tensor: WeightTensor) {
        if self.tensors.insert(name.clone(), tensor).is_none() {
            self.names.push(name);
        }
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&WeightTensor> {
        self.tensors.get(name)
    }

    /// Names in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Writes the tensors as a safetensors file (f32), e.g. to convert a `.pth`.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let bytes: Vec<Vec<u8>> = self
            .names
            .iter()
            .map(|n| {
                self.tensors[n]
                    .data
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect()
            })
            .collect();
        let views = self
            .names
            .iter()
            .zip(&bytes)
            .map(|(name, raw)| {
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    self.tensors[name].dims.clone(),
                    raw,
                )
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Checkpoint(format!("tensor '{name}': {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        safetensors::serialize(views, None).map_err(|e| Error::Checkpoint(e.to_string()))
    }
}

/// A PyTorch file starts with a zip signature or a pickle `PROTO` opcode.
fn looks_like_pytorch(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
        || bytes.starts_with(b"PK\x05\x06")
        || bytes.first() == Some(&0x80)
}

/// A checkpoint key whose tensor does not have the shape the model expects.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapeMismatch {
    /// The key.
    pub name: String,
    /// What the model needs.
    pub expected: Vec<usize>,
    /// What the checkpoint holds.
    pub found: Vec<usize>,
}

/// Everything that keeps a checkpoint from fitting a model, collected in one pass.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KeyReport {
    /// Keys the model needs that the checkpoint lacks.
    pub missing: Vec<String>,
    /// Keys in the checkpoint that the model does not use.
    pub unexpected: Vec<String>,
    /// Keys present with the wrong shape.
    pub mismatched: Vec<ShapeMismatch>,
}

impl KeyReport {
    /// True when the checkpoint fits.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
}

impl std::fmt::Display for KeyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOW: usize = 8;
        let mut parts = Vec::new();
        let list = |names: &[String]| {
            let mut s = names
                .iter()
                .take(SHOW)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if names.len() > SHOW {
                s += &format!(", … ({} more)", names.len() - SHOW);
            }
            s
        };
        if !self.missing.is_empty() {
            parts.push(format!(
                "{} missing: {}",
                self.missing.len(),
                list(&self.missing)
            ));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!(
                "{} unexpected: {}",
                self.unexpected.len(),
                list(&self.unexpected)
            ));
        }
        if !self.mismatched.is_empty() {
            let shown: Vec<String> = self
                .mismatched
                .iter()
                .take(SHOW)
                .map(|m| format!("{} (model {:?}, file {:?})", m.name, m.expected, m.found))
                .collect();
            let more = if self.mismatched.len() > SHOW {
                format!(", … ({} more)", self.mismatched.len() - SHOW)
            } else {
                String::new()
            };
            parts.push(format!(
                "{} with the wrong shape: {}{more}",
                self.mismatched.len(),
                shown.join(", ")
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

/// Hands a model builder its parameters by name, checking shapes, and remembers every
/// problem so that [`Loader::finish`] reports them all at once. A missing or mismatched
/// tensor is handed out as zeros of the expected shape so that building can go on.
#[derive(Debug)]
pub struct Loader<'a> {
    sd: &'a StateDict,
    prefix: String,
    taken: BTreeSet<String>,
    report: KeyReport,
    ignored_suffixes: Vec<&'static str>,
}

impl<'a> Loader<'a> {
    /// A loader over `sd`. Keys ending in `num_batches_tracked` are never unexpected.
    pub fn new(sd: &'a StateDict) -> Self {
        Loader {
            sd,
            prefix: String::new(),
            taken: BTreeSet::new(),
            report: KeyReport::default(),
            ignored_suffixes: vec!["num_batches_tracked"],
        }
    }

    /// Looks names up under `prefix` (e.g. `module.` for DataParallel checkpoints).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The f32 data of `name`, which must have exactly the dims `shape`.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Vec<f32> {
        let key = format!("{}{name}", self.prefix);
        let zeros = || vec![0.0; shape.iter().product()];
        match self.sd.get(&key) {
            None => {
                self.report.missing.push(key);
                zeros()
            }
            Some(t) => {
                self.taken.insert(key.clone());
                if t.dims != shape {
                    self.report.mismatched.push(ShapeMismatch {
                        name: key,
                        expected: shape.to_vec(),
                        found: t.dims.clone(),
                    });
                    zeros()
                } else {
                    t.data.clone()
                }
            }
        }
    }

    /// True if the checkpoint has `name` (under the prefix).
    pub fn contains(&self, name: &str) -> bool {
        self.sd.get(&format!("{}{name}", self.prefix)).is_some()
    }

    /// Ends loading: an [`Error::StateDict`] listing every missing, unexpected and
    /// mismatched key, or `Ok` when the checkpoint fits exactly.
    pub fn finish(mut self) -> Result<()> {
        for name in self.sd.names() {
            if !self.taken.contains(name)
                && !self.ignored_suffixes.iter().any(|s| name.ends_with(s))
            {
                self.report.unexpected.push(name.to_string());
            }
        }
        if self.report.is_empty() {
            Ok(())
        } else {
            Err(Error::StateDict(Box::new(self.report)))
        }
    }
}
