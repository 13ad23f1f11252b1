//! PyTorch checkpoints written by `torch.save`, in both container formats:
//!
//! - **zip** (PyTorch ≥ 1.6): `<dir>/data.pkl` (the pickled object), `<dir>/data/<key>` (one
//!   raw little-endian storage per key), `<dir>/byteorder` (`little` or `big`, optional) and
//!   `<dir>/version`; `<dir>` is the archive's name and varies. PyTorch stores the entries
//!   uncompressed; compressed entries are rejected.
//! - **legacy** (before 1.6, still written with `_use_new_zipfile_serialization=False`):
//!   five pickles in a row (magic number, protocol version, system info, the object, the
//!   list of storage keys), then for each key in that list an i64 element count followed
//!   by the raw elements.
//!
//! Tensors are materialised by their strides into dense row-major f32, with every index
//! checked against the storage's bytes. Total materialised elements are capped at
//! `4 · file bytes + 65536`, so a corrupt file cannot make the loader allocate much more
//! than its own size.

use super::pickle::{unpickle, DType, StorageRef, TensorRef, Value};
use super::{StateDict, WeightTensor};
use std::collections::HashMap;
use std::io::Read;

/// Most dimensions a tensor may have.
const MAX_DIMS: usize = 16;
/// The legacy format's magic number, the first pickle of the stream (LONG1, 10 bytes LE).
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// Reads a checkpoint from its bytes (either container format).
pub(super) fn parse(bytes: &[u8]) -> Result<StateDict, String> {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        parse_zip(bytes)
    } else {
        parse_legacy(bytes)
    }
}

fn parse_zip(bytes: &[u8]) -> Result<StateDict, String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not a readable zip archive: {e}"))?;
    let names: Vec<String> = archive.file_names().map(str::to_string).collect();
    let pkl = names
        .iter()
        .filter(|n| {
            n.ends_with("/data.pkl") && n.matches('/').count() == 1 || n.as_str() == "data.pkl"
        })
        .min()
        .ok_or("zip archive has no <dir>/data.pkl: not a PyTorch checkpoint")?
        .clone();
    let prefix = &pkl[..pkl.len() - "data.pkl".len()];
    let big_endian = match read_entry(&mut archive, &format!("{prefix}byteorder"), bytes.len()) {
        Ok(b) => match b.trim_ascii() {
            b"little" => false,
            b"big" => true,
            other => {
                return Err(format!(
                    "byteorder is '{}', not little or big",
                    String::from_utf8_lossy(other)
                ))
            }
        },
        // Absent in files from before PyTorch 1.10: those are little-endian.
        Err(_) => false,
    };
    let program = read_entry(&mut archive, &pkl, bytes.len())?;
    let (root, _) = unpickle(&program).map_err(|e| format!("{pkl}: {e}"))?;
    let dict = tensor_dict(&root)?;
    // Read every referenced storage once. Entries may overlap in a crafted archive, so
    // the bytes read in total are capped at the archive's size.
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut refs = Vec::new();
    collect_storages(dict, &mut |s| refs.push((s.key.clone(), s.dtype)));
    let mut total = 0usize;
    for (key, dtype) in refs {
        if storages.contains_key(&key) {
            continue;
        }
        let name = format!("{prefix}data/{key}");
        let mut raw = read_entry(&mut archive, &name, bytes.len())?;
        total = total.saturating_add(raw.len());
        if total > bytes.len() {
            return Err("storage entries overlap: more bytes than the archive holds".into());
        }
        if big_endian {
            swap_bytes(&mut raw, dtype.size());
        }
        storages.insert(key, raw);
    }
    build(dict, bytes.len(), |key| {
        storages.get(key).map(Vec::as_slice)
    })
}

/// Reads one stored zip entry, checking its declared size against the archive's.
fn read_entry(
    archive: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
    name: &str,
    archive_len: usize,
) -> Result<Vec<u8>, String> {
    let entry = archive.by_name(name).map_err(|e| format!("{name}: {e}"))?;
    let size = entry.size();
    if size > archive_len as u64 || entry.compressed_size() > archive_len as u64 {
        return Err(format!(
            "{name}: declares {size} bytes in an archive of {archive_len}"
        ));
    }
    let mut out = Vec::with_capacity(size as usize);
    entry
        .take(size)
        .read_to_end(&mut out)
        .map_err(|e| format!("{name}: {e}"))?;
    if out.len() as u64 != size {
        return Err(format!("{name}: {} of {size} bytes present", out.len()));
    }
    Ok(out)
}

fn swap_bytes(raw: &mut [u8], size: usize) {
    if size > 1 {
        for chunk in raw.chunks_exact_mut(size) {
            chunk.reverse();
        }
    }
}

fn element_budget(file_len: usize) -> u64 {
    4 * file_len as u64 + 65_536
}

fn parse_legacy(bytes: &[u8]) -> Result<StateDict, String> {
    let mut pos = 0;
    let mut next = |what: &str| -> Result<Value, String> {
        let (v, used) = unpickle(&bytes[pos..]).map_err(|e| format!("{what}: {e}"))?;
        pos += used;
        Ok(v)
    };
    match next("magic number") {
        Ok(Value::BigInt(b)) if b == LEGACY_MAGIC => {}
        Ok(_) | Err(_) => {
            return Err(
                "not a PyTorch checkpoint (neither a zip archive nor the legacy format)".into(),
            )
        }
    }
    match next("protocol version")? {
        Value::Int(1001) => {}
        other => return Err(format!("legacy protocol version {other:?} is not 1001")),
    }
    let sys_info = next("system info")?;
    if let Some(items) = sys_info.as_dict() {
        for (k, v) in items {
            if k == &Value::Str("little_endian".into()) && v == &Value::Bool(false) {
                return Err("big-endian legacy checkpoints are not supported".into());
            }
        }
    }
    let root = next("object")?;
    let keys = match next("storage keys")? {
        Value::List(s) => s
            .items
            .into_iter()
            .map(|k| match k {
                Value::Str(s) => Ok(s),
                _ => Err("storage key is not a string".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err("storage key list is not a list".into()),
    };
    // Storages follow in key order: i64 element count, then the elements. Their element
    // sizes come from the object's storage references.
    let mut sizes: HashMap<String, DType> = HashMap::new();
    collect_storages(&root, &mut |s| {
        sizes.insert(s.key.clone(), s.dtype);
    });
    let mut ranges: HashMap<String, (usize, usize)> = HashMap::new();
    for key in keys {
        let dtype = *sizes
            .get(&key)
            .ok_or_else(|| format!("storage '{key}' is listed but never used"))?;
        let head = bytes
            .get(pos..pos + 8)
            .ok_or_else(|| format!("storage '{key}': truncated before its size"))?;
        let numel = u64::from_le_bytes(head.try_into().expect("8 bytes"));
        pos += 8;
        let len = numel
            .checked_mul(dtype.size() as u64)
            .filter(|&l| l <= (bytes.len() - pos) as u64)
            .ok_or_else(|| {
                format!(
                    "storage '{key}': {numel} elements of {} bytes do not fit in the {} bytes left",
                    dtype.size(),
                    bytes.len() - pos
                )
            })? as usize;
        ranges.insert(key, (pos, len));
        pos += len;
    }
    let dict = tensor_dict(&root)?;
    build(dict, bytes.len(), |key| {
        ranges
            .get(key)
            .map(|&(start, len)| &bytes[start..start + len])
    })
}

fn collect_storages(v: &Value, f: &mut impl FnMut(&StorageRef)) {
    match v {
        Value::Storage(s) => f(s),
        Value::Tensor(t) => f(&t.storage),
        Value::Tuple(s) | Value::List(s) | Value::Dict(s) => {
            for item in &s.items {
                collect_storages(item, f);
            }
        }
        _ => {}
    }
}

/// Finds the dict of tensors: the root, or the dict under a `state_dict` / `model` /
/// `model_state_dict` key when the root holds no tensors itself (training checkpoints).
fn tensor_dict(root: &Value) -> Result<&Value, String> {
    let has_tensors = |v: &Value| {
        v.as_dict()
            .is_some_and(|mut items| items.any(|(_, v)| matches!(v, Value::Tensor(_))))
    };
    if has_tensors(root) {
        return Ok(root);
    }
    let items = root
        .as_dict()
        .ok_or("the checkpoint holds no dict of tensors (a whole pickled model is not supported; save its state_dict())")?;
    for (k, v) in items {
        if let Value::Str(name) = k {
            if matches!(name.as_str(), "state_dict" | "model" | "model_state_dict")
                && has_tensors(v)
            {
                return Ok(v);
            }
        }
    }
    if root.as_dict().is_some_and(|mut i| i.next().is_none()) {
        return Ok(root);
    }
    Err("the checkpoint's dict holds no tensors".into())
}

fn build<'a>(
    dict: &Value,
    file_len: usize,
    storage_bytes: impl Fn(&str) -> Option<&'a [u8]>,
) -> Result<StateDict, String> {
    let mut budget = element_budget(file_len);
    let mut sd = StateDict::default();
    for (k, v) in dict.as_dict().ok_or("not a dict")? {
        let (Value::Str(name), Value::Tensor(t)) = (k, v) else {
            continue;
        };
        let raw = storage_bytes(&t.storage.key)
            .ok_or_else(|| format!("tensor '{name}': storage '{}' has no data", t.storage.key))?;
        let tensor = materialise(name, t, raw, &mut budget)?;
        sd.insert(name.clone(), tensor);
    }
    Ok(sd)
}

/// Copies a strided view of a storage into a dense row-major f32 tensor.
fn materialise(
    name: &str,
    t: &TensorRef,
    raw: &[u8],
    budget: &mut u64,
) -> Result<WeightTensor, String> {
    let dtype = t.storage.dtype;
    let err = |msg: String| format!("tensor '{name}': {msg}");
    if t.size.len() > MAX_DIMS {
        return Err(err(format!(
            "{} dimensions (at most {MAX_DIMS})",
            t.size.len()
        )));
    }
    let available = (raw.len() / dtype.size()) as u64;
    if t.storage.numel > available {
        return Err(err(format!(
            "storage '{}' declares {} elements but holds {available}",
            t.storage.key, t.storage.numel
        )));
    }
    let numel = t
        .size
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| err("element count overflows".into()))?;
    if numel > *budget {
        return Err(err(format!(
            "{numel} elements exceed what the file can describe"
        )));
    }
    *budget -= numel;
    if numel > 0 {
        // Largest index touched: offset + Σ (size − 1)·stride.
        let last = t
            .size
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |acc, (&d, &s)| {
                (d - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
            })
            .ok_or_else(|| err("strides overflow".into()))?;
        if last >= t.storage.numel {
            return Err(err(format!(
                "view reaches element {last} of a storage of {}",
                t.storage.numel
            )));
        }
    }
    let dims: Vec<usize> = t.size.iter().map(|&d| d as usize).collect();
    let strides: Vec<usize> = t.stride.iter().map(|&s| s as usize).collect();
    let numel = numel as usize;
    let mut data = Vec::with_capacity(numel);
    if numel > 0 {
        // Walk the indices in row-major order with an odometer. No overflow: `at` never
        // exceeds `last`, and a stride added to it is either ≤ `last` (its dimension has
        // ≥ 2 elements, checked above) or < 2^63 (it came from a non-negative i64).
        let mut index = vec![0usize; dims.len()];
        let mut at = t.offset as usize;
        for _ in 0..numel {
            data.push(dtype.read_f32(raw, at));
            for d in (0..dims.len()).rev() {
                index[d] += 1;
                at += strides[d];
                if index[d] < dims[d] {
                    break;
                }
                at -= strides[d] * dims[d];
                index[d] = 0;
            }
        }
    }
    Ok(WeightTensor { dtype, dims, data })
}
