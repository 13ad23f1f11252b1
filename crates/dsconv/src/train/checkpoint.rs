//! `.safetensors` checkpoints with PyTorch's `state_dict` names, and the optimizer state
//! beside them, written atomically.

use super::model::{Model, StateValue};
use super::optim::Optimizer;
use crate::error::{Error, Result};
use crate::weights::StateDict;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

fn io(path: &Path, e: &std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed,
/// then renamed over `path`. On failure the temporary file is removed and `path` is as it
/// was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.is_dir() {
        return Err(Error::Io {
            path: path.display().to_string(),
            reason: "is a directory".into(),
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path.file_name().ok_or_else(|| Error::Io {
        path: path.display().to_string(),
        reason: "not a file name".into(),
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, &e))?;
        f.write_all(bytes).map_err(|e| io(&tmp, &e))?;
        f.sync_all().map_err(|e| io(&tmp, &e))?;
        std::fs::rename(&tmp, path).map_err(|e| io(path, &e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn serialize(
    tensors: Vec<(String, Vec<usize>, safetensors::Dtype, Vec<u8>)>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|(name, dims, dtype, raw)| {
            safetensors::tensor::TensorView::new(*dtype, dims.clone(), raw)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Checkpoint(format!("tensor '{name}': {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| Error::Checkpoint(e.to_string()))
}

/// Saves `model`'s state dict as `.safetensors` (f32 tensors; `num_batches_tracked` as an
/// int64 scalar), so that `model.load_state_dict(safetensors.torch.load_file(path))`
/// works in PyTorch. `metadata` is stored in the header beside `format: pt` and the
/// architecture's name (`dsconv.model`).
pub fn save_checkpoint(path: &Path, model: &mut Model, metadata: &[(&str, String)]) -> Result<()> {
    let tensors = model
        .state_dict()
        .into_iter()
        .map(|(name, dims, value)| match value {
            StateValue::F32(v) => (
                name,
                dims,
                safetensors::Dtype::F32,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            StateValue::I64(c) => (
                name,
                dims,
                safetensors::Dtype::I64,
                c.to_le_bytes().to_vec(),
            ),
        })
        .collect();
    let mut meta: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    meta.insert("format".into(), "pt".into());
    meta.insert("dsconv.model".into(), model.arch().name().into());
    write_atomic(path, &serialize(tensors, meta)?)
}

/// Saves the optimizer's state (`NAME.momentum_buffer`, `NAME.exp_avg`, ... and `steps`)
/// as `.safetensors`, atomically.
pub fn save_optimizer(path: &Path, optimizer: &Optimizer) -> Result<()> {
    let tensors = optimizer
        .state_tensors()
        .into_iter()
        .map(|(name, v)| {
            let dims = vec![v.len()];
            let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (name, dims, safetensors::Dtype::F32, raw)
        })
        .collect();
    let meta = HashMap::from([("dsconv.optimizer".to_string(), optimizer.name().to_string())]);
    write_atomic(path, &serialize(tensors, meta)?)
}

/// Restores an optimizer state [`save_optimizer`] wrote into `optimizer` (which must be of
/// the same kind) for `model`.
pub fn load_optimizer(path: &Path, optimizer: &mut Optimizer, model: &mut Model) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| io(path, &e))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| Error::Format {
        path: path.display().to_string(),
        reason: format!("not a readable safetensors file: {e}"),
    })?;
    let kind = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("dsconv.optimizer").cloned())
        .unwrap_or_default();
    if kind != optimizer.name() {
        return Err(Error::Checkpoint(format!(
            "{}: optimizer state of '{kind}', not of {}",
            path.display(),
            optimizer.name()
        )));
    }
    let sd = StateDict::from_safetensors_bytes(&bytes, &path.display().to_string())?;
    let tensors: Vec<(String, Vec<f32>)> = sd
        .names()
        .map(|n| {
            (
                n.to_string(),
                sd.get(n).map(|t| t.data.clone()).unwrap_or_default(),
            )
        })
        .collect();
    optimizer.load_state_tensors(model.net(), &tensors)
}
