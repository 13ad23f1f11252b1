//! NumPy `.npy` files (format versions 1.0, 2.0 and 3.0) for f32 arrays: the exchange
//! format of `dsconv conv2d` and of test fixtures, hand-written so the library needs no
//! dependency for it.
//!
//! A file is `\x93NUMPY`, a major and minor version byte, the header length (`u16` LE for
//! version 1, `u32` LE for 2 and 3), then an ASCII Python dict literal such as
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` padded with spaces and a
//! `\n`, then the elements in C order.
//!
//! Reading is strict and allocation-safe: magic, version and header length are checked
//! first; the header length is bounded by [`MAX_HEADER_LEN`]; the dict must have exactly
//! the keys `descr`, `fortran_order` and `shape`; the element count and byte count are
//! computed with checked arithmetic and must equal the bytes that follow the header, so a
//! truncated file, trailing bytes or an absurd shape are errors *before* any buffer for the
//! data is allocated. Supported element types: little-endian `<f4` (read as is) and `<f8`
//! (converted to f32). Big-endian, Fortran-ordered, object and structured arrays are
//! rejected with an [`Error::Format`] that says why.
//!
//! Writing ([`write_npy`]) emits `<f4`, C order, version 1.0 (2.0 if the header needs it),
//! through a temporary file in the destination directory renamed into place, so a failed
//! write never leaves a partial file behind.

use crate::error::{Error, Result};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The magic string every `.npy` file starts with.
const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Largest header accepted, in bytes. NumPy's own writer produces 118-byte headers for
/// ordinary arrays, and its reader refuses headers over 10,000 bytes by default; 64 KiB is
/// the largest a version 1.0 header can be and far above anything a real f32 array needs.
pub const MAX_HEADER_LEN: usize = 65_536;

/// An n-dimensional f32 array read from a `.npy` file, elements in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// The dimensions; empty for a 0-d (scalar) array.
    pub shape: Vec<usize>,
    /// The elements in C order; `data.len()` is the product of `shape`.
    pub data: Vec<f32>,
}

/// Element types this module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dtype {
    /// `<f4`: little-endian IEEE binary32.
    F32,
    /// `<f8`: little-endian IEEE binary64, converted to f32 on reading.
    F64,
    /// `|u1`: bytes (images), read by [`read_npy_typed`] only.
    U8,
    /// `<i4`: little-endian int32 (labels), read by [`read_npy_typed`] only.
    I32,
    /// `<i8`: little-endian int64 (labels), read by [`read_npy_typed`] only.
    I64,
}

impl Dtype {
    fn item_bytes(self) -> usize {
        match self {
            Dtype::U8 => 1,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F64 | Dtype::I64 => 8,
        }
    }
}

/// What the header says about the data that follows it.
#[derive(Debug)]
struct Header {
    dtype: Dtype,
    shape: Vec<usize>,
    /// Number of elements (product of `shape`).
    elements: usize,
    /// Number of data bytes (`elements · item size`).
    data_bytes: usize,
}

fn format_error(name: &str, reason: impl Into<String>) -> Error {
    Error::Format {
        path: name.to_string(),
        reason: reason.into(),
    }
}

fn io_error(path: &Path, err: &std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        reason: err.to_string(),
    }
}

/// Length of the fixed part before the header for version `major`: magic, two version
/// bytes and a 2- or 4-byte header length.
fn preamble_len(major: u8) -> usize {
    if major == 1 {
        10
    } else {
        12
    }
}

/// Parses the preamble from the first bytes of a file (at least 12 of them when the file
/// is that long) and returns `(header_start, header_len)`.
fn parse_preamble(prefix: &[u8], name: &str) -> Result<(usize, usize)> {
    if prefix.len() < MAGIC.len() || &prefix[..MAGIC.len()] != MAGIC {
        return Err(format_error(
            name,
            "not a NumPy .npy file (missing the \\x93NUMPY magic)",
        ));
    }
    if prefix.len() < 8 {
        return Err(format_error(name, "truncated .npy preamble (no version)"));
    }
    let (major, minor) = (prefix[6], prefix[7]);
    if !matches!((major, minor), (1, 0) | (2, 0) | (3, 0)) {
        return Err(format_error(
            name,
            format!("unsupported .npy format version {major}.{minor} (1.0, 2.0 and 3.0 are read)"),
        ));
    }
    let start = preamble_len(major);
    if prefix.len() < start {
        return Err(format_error(
            name,
            "truncated .npy preamble (no header length)",
        ));
    }
    let header_len = if major == 1 {
        u16::from_le_bytes([prefix[8], prefix[9]]) as usize
    } else {
        let len = u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]);
        usize::try_from(len).unwrap_or(usize::MAX)
    };
    if header_len > MAX_HEADER_LEN {
        return Err(format_error(
            name,
            format!("header length {header_len} exceeds the {MAX_HEADER_LEN}-byte limit"),
        ));
    }
    Ok((start, header_len))
}

/// A strict parser for the Python dict literal of a `.npy` header.
struct Literal<'a> {
    text: &'a [u8],
    pos: usize,
}

/// A value in the header dict.
#[derive(Debug)]
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

impl<'a> Literal<'a> {
    fn skip_space(&mut self) {
        while self.pos < self.text.len() && matches!(self.text[self.pos], b' ' | b'\t' | b'\n') {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    /// Describes what is at the cursor, for error messages.
    fn here(&self) -> String {
        match self.peek() {
            None => "the end of the header".to_string(),
            Some(c) if c.is_ascii_graphic() => format!("'{}' at byte {}", c as char, self.pos),
            Some(c) => format!("byte 0x{c:02x} at byte {}", self.pos),
        }
    }

    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        self.skip_space();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected '{}', found {}", c as char, self.here()))
        }
    }

    /// Consumes `c` if it is next (after spaces).
    fn accept(&mut self, c: u8) -> bool {
        self.skip_space();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        self.skip_space();
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a quoted string, found {}", self.here())),
        };
        self.pos += 1;
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == quote {
                let s = &self.text[start..self.pos];
                self.pos += 1;
                // The header was checked to be ASCII, so this cannot fail.
                return Ok(String::from_utf8_lossy(s).into_owned());
            }
            // Control characters would end up in error messages (a newline splits the
            // one-line message, an escape sequence drives the terminal): refused.
            if c == b'\\' || c.is_ascii_control() {
                return Err(format!(
                    "unsupported character in a string at byte {}",
                    self.pos
                ));
            }
            self.pos += 1;
        }
        Err("unterminated string".to_string())
    }

    fn word(&mut self) -> &'a [u8] {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'+')
        {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    fn dimension(&mut self) -> std::result::Result<usize, String> {
        self.skip_space();
        let at = self.pos;
        let word = self.word();
        let text = String::from_utf8_lossy(word);
        if word.is_empty() {
            return Err(format!("expected a dimension, found {}", self.here()));
        }
        if word[0] == b'-' {
            return Err(format!("negative dimension {text} in the shape"));
        }
        if !word.iter().all(u8::is_ascii_digit) {
            return Err(format!("'{text}' at byte {at} is not a dimension"));
        }
        text.parse::<usize>()
            .map_err(|_| format!("dimension {text} is too large"))
    }

    /// `()`, `(n,)`, `(n, m)`, `(n, m,)`, ...; a one-element tuple needs its comma, as
    /// in Python (`(3)` is an integer, not a shape).
    fn tuple(&mut self) -> std::result::Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        if self.accept(b')') {
            return Ok(dims);
        }
        loop {
            dims.push(self.dimension()?);
            if dims.len() > 32 {
                return Err("more than 32 dimensions".to_string());
            }
            if self.accept(b',') {
                if self.accept(b')') {
                    return Ok(dims);
                }
                continue;
            }
            if dims.len() > 1 && self.accept(b')') {
                return Ok(dims);
            }
            return Err(format!(
                "expected ',' or ')' in the shape, found {}",
                self.here()
            ));
        }
    }

    fn value(&mut self) -> std::result::Result<Value, String> {
        self.skip_space();
        match self.peek() {
            Some(b'\'' | b'"') => self.string().map(Value::Str),
            Some(b'(') => self.tuple().map(Value::Tuple),
            Some(c) if c.is_ascii_alphabetic() => match self.word() {
                b"True" => Ok(Value::Bool(true)),
                b"False" => Ok(Value::Bool(false)),
                other => Err(format!(
                    "unexpected value '{}'",
                    String::from_utf8_lossy(other)
                )),
            },
            _ => Err(format!("expected a value, found {}", self.here())),
        }
    }

    /// The whole header: one dict, then only padding.
    fn dict(&mut self) -> std::result::Result<Vec<(String, Value)>, String> {
        self.expect(b'{')?;
        let mut entries = Vec::new();
        loop {
            if self.accept(b'}') {
                break;
            }
            let key = self.string()?;
            self.expect(b':')?;
            let value = self.value()?;
            entries.push((key, value));
            if self.accept(b',') {
                continue;
            }
            self.expect(b'}')?;
            break;
        }
        self.skip_space();
        if self.pos != self.text.len() {
            return Err(format!("unexpected {} after the header dict", self.here()));
        }
        Ok(entries)
    }
}

/// Parses the header text (the bytes after the preamble) into dtype and shape, and
/// computes element and byte counts with checked arithmetic.
fn parse_header(text: &[u8], name: &str) -> Result<Header> {
    if let Some(pos) = text.iter().position(|c| !c.is_ascii()) {
        return Err(format_error(
            name,
            format!("header is not ASCII (byte {pos})"),
        ));
    }
    let bad = |reason: String| format_error(name, format!("bad .npy header: {reason}"));
    let entries = Literal { text, pos: 0 }.dict().map_err(bad)?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (key, value) in entries {
        let slot_taken = match (key.as_str(), value) {
            ("descr", Value::Str(s)) => descr.replace(s).is_some(),
            ("fortran_order", Value::Bool(b)) => fortran.replace(b).is_some(),
            ("shape", Value::Tuple(t)) => shape.replace(t).is_some(),
            ("descr" | "fortran_order" | "shape", v) => {
                return Err(bad(format!("key '{key}' has an unexpected value {v:?}")))
            }
            (other, _) => return Err(bad(format!("unexpected key '{other}'"))),
        };
        if slot_taken {
            return Err(bad(format!("key '{key}' appears twice")));
        }
    }
    let descr = descr.ok_or_else(|| bad("missing key 'descr'".to_string()))?;
    let fortran = fortran.ok_or_else(|| bad("missing key 'fortran_order'".to_string()))?;
    let shape = shape.ok_or_else(|| bad("missing key 'shape'".to_string()))?;
    let dtype = match descr.as_str() {
        "<f4" => Dtype::F32,
        "<f8" => Dtype::F64,
        "|u1" | "<u1" => Dtype::U8,
        "<i4" => Dtype::I32,
        "<i8" => Dtype::I64,
        ">f4" | ">f8" => {
            return Err(format_error(
                name,
                format!("big-endian arrays ('{descr}') are not supported; save as '<f4'"),
            ))
        }
        d if d.contains('O') => {
            return Err(format_error(
                name,
                format!("object arrays ('{d}') are not supported; save float32 data"),
            ))
        }
        other => {
            return Err(format_error(
                name,
                format!(
                    "unsupported dtype '{other}': dsconv reads float32 ('<f4') and float64 ('<f8')"
                ),
            ))
        }
    };
    if fortran {
        return Err(format_error(
            name,
            "Fortran-ordered arrays are not supported; save a C-ordered array \
             (numpy.ascontiguousarray)",
        ));
    }
    let elements = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format_error(name, format!("shape {shape:?} has too many elements")))?;
    let data_bytes = elements
        .checked_mul(dtype.item_bytes())
        .ok_or_else(|| format_error(name, format!("shape {shape:?} has too many bytes")))?;
    Ok(Header {
        dtype,
        shape,
        elements,
        data_bytes,
    })
}

/// Checks that the bytes after the header are exactly the data the header announces.
fn check_data_len(header: &Header, available: u64, name: &str) -> Result<()> {
    let expected = header.data_bytes as u64;
    if available < expected {
        return Err(format_error(
            name,
            format!(
                "truncated data: shape {:?} needs {expected} bytes, the file has {available}",
                header.shape
            ),
        ));
    }
    if available > expected {
        return Err(format_error(
            name,
            format!(
                "{} unexpected bytes after the data of shape {:?}",
                available - expected,
                header.shape
            ),
        ));
    }
    Ok(())
}

/// An empty buffer with room for `len` items, or [`Error::Allocation`] (not an abort)
/// when the memory cannot be had: a file can be as large as its header says and still
/// not fit in memory.
fn try_buffer<T>(len: usize, what: &'static str) -> Result<Vec<T>> {
    let mut buffer = Vec::new();
    buffer
        .try_reserve_exact(len)
        .map_err(|_| Error::Allocation {
            what,
            bytes: len.saturating_mul(std::mem::size_of::<T>()),
        })?;
    Ok(buffer)
}

/// Decodes `bytes` (exactly `header.data_bytes` of them) into f32.
fn decode(header: &Header, bytes: &[u8], name: &str) -> Result<Vec<f32>> {
    debug_assert_eq!(bytes.len(), header.data_bytes);
    let unsupported = |d: &str| {
        format_error(
            name,
            format!("unsupported dtype '{d}': dsconv reads float32 ('<f4') and float64 ('<f8')"),
        )
    };
    let mut data = try_buffer(header.elements, "npy data")?;
    match header.dtype {
        Dtype::U8 => return Err(unsupported("|u1")),
        Dtype::I32 => return Err(unsupported("<i4")),
        Dtype::I64 => return Err(unsupported("<i8")),
        Dtype::F32 => data.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        Dtype::F64 => {
            data.extend(bytes.chunks_exact(8).map(|c| {
                f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
            }))
        }
    }
    Ok(data)
}

/// Reads a `.npy` held in memory; `name` labels errors (e.g. the file it came from).
pub fn read_npy_bytes(bytes: &[u8], name: &str) -> Result<NpyArray> {
    let (start, header_len) = parse_preamble(&bytes[..bytes.len().min(12)], name)?;
    let data_start = start + header_len;
    if bytes.len() < data_start {
        return Err(format_error(
            name,
            format!(
                "truncated header: {header_len} header bytes announced, {} present",
                bytes.len() - start.min(bytes.len())
            ),
        ));
    }
    let header = parse_header(&bytes[start..data_start], name)?;
    check_data_len(&header, (bytes.len() - data_start) as u64, name)?;
    let data = decode(&header, &bytes[data_start..], name)?;
    debug_assert_eq!(data.len(), header.elements);
    Ok(NpyArray {
        shape: header.shape,
        data,
    })
}

/// Reads a `.npy` file. The file's length is checked against the header before the data
/// is read, so no buffer larger than the file is ever allocated.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let name = path.display().to_string();
    let (header, bytes) = read_raw(path)?;
    let data = decode(&header, &bytes, &name)?;
    Ok(NpyArray {
        shape: header.shape,
        data,
    })
}

/// The values of a `.npy` file read by [`read_npy_typed`], by element type.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyValues {
    /// `<f4`, or `<f8` converted to f32.
    F32(Vec<f32>),
    /// `|u1` (e.g. images 0–255).
    U8(Vec<u8>),
    /// `<i4` or `<i8` (e.g. class labels), widened to i64.
    I64(Vec<i64>),
}

/// A `.npy` array of float or integer elements: what data sets are stored as.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyTyped {
    /// The dimensions; empty for a 0-d (scalar) array.
    pub shape: Vec<usize>,
    /// The elements in C order.
    pub values: NpyValues,
}

/// Reads a `.npy` file of `<f4`, `<f8`, `|u1`, `<i4` or `<i8` elements, with the same
/// checks as [`read_npy`] (which accepts only the float types).
pub fn read_npy_typed(path: &Path) -> Result<NpyTyped> {
    let name = path.display().to_string();
    let (header, bytes) = read_raw(path)?;
    let values = match header.dtype {
        Dtype::U8 => NpyValues::U8(bytes),
        Dtype::I32 => NpyValues::I64(
            bytes
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        ),
        Dtype::I64 => NpyValues::I64(
            bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        ),
        Dtype::F32 | Dtype::F64 => NpyValues::F32(decode(&header, &bytes, &name)?),
    };
    Ok(NpyTyped {
        shape: header.shape,
        values,
    })
}

/// The header and the data bytes of a `.npy` file, every size checked against the file.
fn read_raw(path: &Path) -> Result<(Header, Vec<u8>)> {
    let name = path.display().to_string();
    let mut file = std::fs::File::open(path).map_err(|e| io_error(path, &e))?;
    let meta = file.metadata().map_err(|e| io_error(path, &e))?;
    if !meta.is_file() {
        return Err(format_error(&name, "not a regular file"));
    }
    let file_len = meta.len();
    // The preamble is at most 12 bytes; read what there is of it.
    let mut prefix = Vec::with_capacity(12);
    (&mut file)
        .take(12)
        .read_to_end(&mut prefix)
        .map_err(|e| io_error(path, &e))?;
    let (start, header_len) = parse_preamble(&prefix, &name)?;
    let data_start = start + header_len;
    if file_len < data_start as u64 {
        return Err(format_error(
            &name,
            format!(
                "truncated header: {header_len} header bytes announced, {} present",
                file_len.saturating_sub(start as u64)
            ),
        ));
    }
    // header_len ≤ MAX_HEADER_LEN and the file holds it: this allocation is bounded.
    let mut head = vec![0u8; header_len];
    file.seek(SeekFrom::Start(start as u64))
        .and_then(|_| file.read_exact(&mut head))
        .map_err(|e| io_error(path, &e))?;
    let header = parse_header(&head, &name)?;
    check_data_len(&header, file_len - data_start as u64, &name)?;
    // The size was checked against the file's length just above; the file may still be
    // larger than memory.
    let mut bytes = try_buffer::<u8>(header.data_bytes, "npy file data")?;
    (&mut file)
        .take(header.data_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, &e))?;
    if bytes.len() != header.data_bytes {
        return Err(format_error(
            &name,
            "file changed size while being read".to_string(),
        ));
    }
    Ok((header, bytes))
}

/// The complete header (preamble included) for an f32 C-order array of `shape`, padded
/// with spaces so the data starts at a multiple of 64 bytes, as NumPy does.
fn encode_header(shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // Version 1.0 unless the header does not fit a u16 length (thousands of dimensions).
    let major: u8 = if dict.len() + 1 + 10 + 63 <= u16::MAX as usize {
        1
    } else {
        2
    };
    let start = preamble_len(major);
    let unpadded = start + dict.len() + 1; // + '\n'
    let total = unpadded.div_ceil(64) * 64;
    let header_len = total - start;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[major, 0]);
    if major == 1 {
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header_len as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

/// Removes the temporary file unless it was renamed into place.
struct TempFile<'a> {
    path: &'a Path,
    keep: bool,
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(self.path);
        }
    }
}

/// The bytes of the `.npy` file, header and data, written to `out` and flushed.
fn write_npy_to(
    out: &mut std::io::BufWriter<std::fs::File>,
    shape: &[usize],
    data: &[f32],
) -> std::io::Result<()> {
    out.write_all(&encode_header(shape))?;
    for chunk in data.chunks(4096) {
        let mut bytes = [0u8; 4 * 4096];
        for (dst, v) in bytes.chunks_exact_mut(4).zip(chunk) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
        out.write_all(&bytes[..4 * chunk.len()])?;
    }
    out.flush()
}

/// Writes `data` (C order, `shape`) as a little-endian f32 `.npy` file.
///
/// Atomic: the bytes go to a temporary file in the destination's directory, which is then
/// renamed over `path`; on any failure the temporary file is removed and `path` is left
/// as it was (absent or with its previous contents). An existing `path` that is not a
/// regular file (`/dev/null`, `/dev/stdout`, a pipe) is written in place instead: renaming
/// over it would replace the device or pipe with a file.
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let elements = crate::error::product(shape, "npy element count")?;
    if elements != data.len() {
        return Err(Error::shape(
            "npy data",
            format!("{elements} elements for shape {shape:?}"),
            format!("{} elements", data.len()),
        ));
    }
    // An existing path is resolved through symbolic links first: renaming over a link
    // would replace the link (`/dev/stdout` redirected to a file, as root, is one).
    let resolved;
    let path = match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => match std::fs::canonicalize(path) {
            Ok(p) => {
                resolved = p;
                resolved.as_path()
            }
            Err(_) => path,
        },
        _ => path,
    };
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_dir() {
            return Err(Error::Io {
                path: path.display().to_string(),
                reason: "is a directory".into(),
            });
        }
        if !meta.is_file() {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| io_error(path, &e))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
            return write_npy_to(&mut out, shape, data).map_err(|e| io_error(path, &e));
        }
    }
    let file_name = path
        .file_name()
        .ok_or_else(|| format_error(&path.display().to_string(), "not a file path"))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    // Unique per process and per call, so concurrent writers never share a temporary file.
    static WRITES: AtomicUsize = AtomicUsize::new(0);
    let serial = WRITES.fetch_add(1, Ordering::Relaxed);
    temp_name.push(format!(".{}-{serial}.tmp", std::process::id()));
    let temp_path = dir.join(temp_name);
    // Errors name the destination the user gave (the temporary file's name means nothing
    // to them) and what was being done.
    let failed = |doing: &str, e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        reason: format!("{doing} {}: {e}", temp_path.display()),
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp_path)
        .map_err(|e| failed("cannot create the temporary file", e))?;
    let mut guard = TempFile {
        path: &temp_path,
        keep: false,
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
    write_npy_to(&mut out, shape, data)
        .and_then(|()| out.get_ref().sync_all())
        .map_err(|e| failed("cannot write the temporary file", e))?;
    drop(out);
    std::fs::rename(&temp_path, path).map_err(|e| io_error(path, &e))?;
    guard.keep = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with the given version, header text (padded to NumPy's alignment) and data.
    fn npy(major: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let start = preamble_len(major);
        let total = (start + header.len() + 1).div_ceil(64) * 64;
        let header_len = total - start;
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[major, 0]);
        if major == 1 {
            out.extend_from_slice(&(header_len as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(header_len as u32).to_le_bytes());
        }
        out.extend_from_slice(header.as_bytes());
        out.resize(total - 1, b' ');
        out.push(b'\n');
        out.extend_from_slice(data);
        out
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn reason(r: Result<NpyArray>) -> String {
        match r {
            Err(Error::Format { reason, .. }) => reason,
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    const F4_2X3: &str = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";

    #[test]
    fn reads_versions_1_2_and_3() {
        let values = [1.0, -2.5, 3.25, 0.0, f32::MAX, -0.0];
        for major in 1..=3 {
            let a = read_npy_bytes(&npy(major, F4_2X3, &f32_bytes(&values)), "x").unwrap();
            assert_eq!(a.shape, [2, 3]);
            assert_eq!(a.data, values);
        }
    }

    #[test]
    fn reads_f64_as_f32() {
        let bytes: Vec<u8> = [1.5f64, -1e-3, 1e10]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let a = read_npy_bytes(
            &npy(
                1,
                "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
                &bytes,
            ),
            "x",
        )
        .unwrap();
        assert_eq!(a.shape, [3]);
        assert_eq!(a.data, [1.5, -1e-3, 1e10]);
    }

    #[test]
    fn reads_0d_1d_and_empty_arrays() {
        let a = read_npy_bytes(
            &npy(
                1,
                "{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
                &f32_bytes(&[7.0]),
            ),
            "x",
        )
        .unwrap();
        assert_eq!(
            (a.shape.as_slice(), a.data.as_slice()),
            (&[][..], &[7.0][..])
        );
        let a = read_npy_bytes(
            &npy(
                1,
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
                &f32_bytes(&[7.0, 8.0]),
            ),
            "x",
        )
        .unwrap();
        assert_eq!(a.shape, [2]);
        let a = read_npy_bytes(
            &npy(
                1,
                "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 5), }",
                &[],
            ),
            "x",
        )
        .unwrap();
        assert_eq!((a.shape, a.data.len()), (vec![0, 5], 0));
    }

    #[test]
    fn accepts_key_order_quotes_and_spacing_variants() {
        let h = "{\"shape\":(2,3),\"fortran_order\":False,\"descr\":\"<f4\"}";
        let a = read_npy_bytes(&npy(1, h, &f32_bytes(&[0.0; 6])), "x").unwrap();
        assert_eq!(a.shape, [2, 3]);
    }

    #[test]
    fn round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&[usize], usize); 5] = [
            (&[], 1),
            (&[5], 5),
            (&[2, 3], 6),
            (&[1, 3, 4, 5], 60),
            (&[2, 0, 3], 0),
        ];
        for (shape, n) in cases {
            let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let path = dir.path().join("a.npy");
            write_npy(&path, shape, &data).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!((bytes.len() - 4 * n) % 64, 0, "data is 64-byte aligned");
            let a = read_npy(&path).unwrap();
            assert_eq!(a.shape, shape);
            assert_eq!(a.data, data);
        }
        // Only the output is left in the directory: no temporary files.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn write_rejects_mismatched_data_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        assert!(matches!(
            write_npy(&path, &[2, 3], &[0.0; 5]),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            write_npy(&path, &[usize::MAX, 2], &[]),
            Err(Error::Overflow(_))
        ));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn failed_write_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        // The destination is an existing directory.
        let target = dir.path().join("occupied");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep"), b"x").unwrap();
        assert!(matches!(
            write_npy(&target, &[1], &[1.0]),
            Err(Error::Io { .. })
        ));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["occupied"]);
        // A missing directory is an I/O error, not a panic.
        assert!(matches!(
            write_npy(&dir.path().join("no/such/dir/a.npy"), &[1], &[1.0]),
            Err(Error::Io { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn write_to_a_device_writes_in_place_and_keeps_the_device() {
        // Renaming a temporary file over /dev/null would replace the device with a file
        // (as root; a permission error otherwise). Found with `dsconv conv2d --output
        // /dev/full`, which left a regular file there.
        use std::os::unix::fs::FileTypeExt;
        let null = Path::new("/dev/null");
        write_npy(null, &[2], &[1.0, 2.0]).unwrap();
        assert!(std::fs::metadata(null)
            .unwrap()
            .file_type()
            .is_char_device());
        let full = Path::new("/dev/full");
        if full.exists() {
            let e = write_npy(full, &[2], &[1.0, 2.0]).unwrap_err();
            assert!(matches!(e, Error::Io { .. }), "{e}");
            assert!(std::fs::metadata(full)
                .unwrap()
                .file_type()
                .is_char_device());
        }
    }

    #[cfg(unix)]
    #[test]
    fn write_through_a_symlink_keeps_the_link() {
        // `--output /dev/stdout` with stdout redirected to a file is such a link: renaming
        // over it replaced /dev/stdout itself with a regular file.
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.npy");
        let link = dir.path().join("link.npy");
        std::fs::write(&target, b"old").unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_npy(&link, &[2], &[1.0, 2.0]).unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(read_npy(&target).unwrap().data, [1.0, 2.0]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn file_larger_than_memory_is_an_allocation_error_not_an_abort() {
        // A 1 TiB sparse file whose header announces exactly its size passes every size
        // check; reading it grew a Vec until the process was killed for memory. Only where
        // the kernel refuses such an allocation outright (overcommit mode 0 or 2): with
        // mode 1 the reservation would succeed and the test would really read 1 TiB.
        let mode = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default();
        if mode.trim() == "1" || mode.is_empty() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse.npy");
        let elements = 1usize << 38; // 1 TiB of f32
        let header = encode_header(&[elements]);
        std::fs::write(&path, &header).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        if file.set_len((header.len() + 4 * elements) as u64).is_err() {
            return; // a file system without sparse files of that size
        }
        drop(file);
        let got = read_npy(&path);
        assert!(
            matches!(got, Err(Error::Allocation { .. })),
            "{:?}",
            got.map(|a| a.shape)
        );
    }

    #[test]
    fn write_failure_names_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/a.npy");
        let e = write_npy(&path, &[1], &[1.0]).unwrap_err().to_string();
        assert!(e.starts_with(&path.display().to_string()), "{e}");
        assert!(e.contains("cannot create the temporary file"), "{e}");
    }

    #[test]
    fn bad_magic() {
        let mut b = npy(1, F4_2X3, &f32_bytes(&[0.0; 6]));
        b[1] = b'X';
        assert!(reason(read_npy_bytes(&b, "x")).contains("magic"));
        assert!(reason(read_npy_bytes(b"", "x")).contains("magic"));
        assert!(reason(read_npy_bytes(b"PK\x03\x04", "x")).contains("magic"));
    }

    #[test]
    fn bad_version() {
        let mut b = npy(1, F4_2X3, &f32_bytes(&[0.0; 6]));
        b[6] = 4;
        assert!(reason(read_npy_bytes(&b, "x")).contains("version 4.0"));
        b[6] = 1;
        b[7] = 1;
        assert!(reason(read_npy_bytes(&b, "x")).contains("version 1.1"));
    }

    #[test]
    fn truncated_preamble_and_header() {
        let b = npy(1, F4_2X3, &f32_bytes(&[0.0; 6]));
        assert!(reason(read_npy_bytes(&b[..7], "x")).contains("truncated"));
        assert!(reason(read_npy_bytes(&b[..9], "x")).contains("truncated"));
        assert!(reason(read_npy_bytes(&b[..40], "x")).contains("truncated header"));
    }

    #[test]
    fn header_length_beyond_file_or_limit() {
        let mut b = npy(2, F4_2X3, &f32_bytes(&[0.0; 6]));
        b[8..12].copy_from_slice(&60_000u32.to_le_bytes());
        assert!(reason(read_npy_bytes(&b, "x")).contains("truncated header"));
        b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(reason(read_npy_bytes(&b, "x")).contains("limit"));
    }

    #[test]
    fn unparsable_dicts() {
        let cases = [
            ("", "expected '{'"),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), ",
                "expected a quoted string",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} x",
                "after the header",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False}",
                "missing key 'shape'",
            ),
            (
                "{'descr': '<f4', 'shape': (1,)}",
                "missing key 'fortran_order'",
            ),
            (
                "{'fortran_order': False, 'shape': (1,)}",
                "missing key 'descr'",
            ),
            (
                "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}",
                "twice",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 'y'}",
                "unexpected key 'x'",
            ),
            // Control characters in strings would reach the one-line error message.
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x\ry': 1}",
                "unsupported character",
            ),
            (
                "{'descr': '<f\x1b[2J4', 'fortran_order': False, 'shape': (1,)}",
                "unsupported character",
            ),
            (
                "{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}",
                "expected a value",
            ),
            (
                "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,)}",
                "'Maybe'",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': [1]}",
                "expected a value",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (3)}",
                "expected ','",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1,,)}",
                "expected a dimension",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2L,)}",
                "not a dimension",
            ),
            (
                "{'descr': '<f4, 'fortran_order': False, 'shape': (1,)}",
                "expected '}'",
            ),
            (
                "{'descr' '<f4', 'fortran_order': False, 'shape': (1,)}",
                "expected ':'",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)",
                "expected '}'",
            ),
            (
                "{'descr': 'a\\'b', 'fortran_order': False, 'shape': (1,)}",
                "unsupported character",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': ('1',)}",
                "expected a dimension",
            ),
        ];
        for (header, want) in cases {
            let got = reason(read_npy_bytes(&npy(1, header, &[0; 4]), "x"));
            assert!(got.contains(want), "{header:?}: {got:?} lacks {want:?}");
        }
        let mut b = npy(1, F4_2X3, &f32_bytes(&[0.0; 6]));
        b[20] = 0xe9;
        assert!(reason(read_npy_bytes(&b, "x")).contains("not ASCII"));
    }

    #[test]
    fn negative_huge_and_overflowing_dims() {
        let h =
            |shape: &str| format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}}}");
        let got = reason(read_npy_bytes(&npy(1, &h("(2, -3)"), &[0; 24]), "x"));
        assert!(got.contains("negative dimension -3"), "{got}");
        let got = reason(read_npy_bytes(
            &npy(1, &h("(99999999999999999999999,)"), &[]),
            "x",
        ));
        assert!(got.contains("too large"), "{got}");
        // Each dimension fits usize, the product does not.
        let got = reason(read_npy_bytes(
            &npy(1, &h("(4294967296, 4294967296, 4294967296)"), &[]),
            "x",
        ));
        assert!(got.contains("too many elements"), "{got}");
        // The element count fits, the byte count does not.
        let got = reason(read_npy_bytes(
            &npy(1, &h("(4611686018427387904,)"), &[]),
            "x",
        ));
        assert!(got.contains("too many bytes"), "{got}");
        // Absurd but representable: rejected against the file size, nothing allocated.
        let got = reason(read_npy_bytes(
            &npy(1, &h("(1000000, 1000000, 1000)"), &[0; 8]),
            "x",
        ));
        assert!(got.contains("truncated data"), "{got}");
    }

    #[test]
    fn unsupported_dtypes_and_orders() {
        let h = |descr: &str, fortran: &str| {
            format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': (1,)}}")
        };
        let got = reason(read_npy_bytes(&npy(1, &h(">f4", "False"), &[0; 4]), "x"));
        assert!(got.contains("big-endian"), "{got}");
        let got = reason(read_npy_bytes(&npy(1, &h("|O", "False"), &[0; 8]), "x"));
        assert!(got.contains("object"), "{got}");
        let got = reason(read_npy_bytes(&npy(1, &h("<i4", "False"), &[0; 4]), "x"));
        assert!(got.contains("unsupported dtype '<i4'"), "{got}");
        let got = reason(read_npy_bytes(&npy(1, &h("<f4", "True"), &[0; 4]), "x"));
        assert!(got.contains("Fortran"), "{got}");
    }

    #[test]
    fn truncated_and_trailing_data() {
        let b = npy(1, F4_2X3, &f32_bytes(&[0.0; 6]));
        let got = reason(read_npy_bytes(&b[..b.len() - 1], "x"));
        assert!(got.contains("truncated data"), "{got}");
        let mut long = b.clone();
        long.push(0);
        let got = reason(read_npy_bytes(&long, "x"));
        assert!(got.contains("1 unexpected bytes"), "{got}");
        // The same checks on files.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.npy");
        std::fs::write(&path, &b[..b.len() - 3]).unwrap();
        assert!(reason(read_npy(&path)).contains("truncated data"));
        std::fs::write(&path, &long).unwrap();
        assert!(reason(read_npy(&path)).contains("unexpected bytes"));
        std::fs::write(&path, &b[..11]).unwrap();
        assert!(reason(read_npy(&path)).contains("truncated header"));
        std::fs::write(&path, &b[..5]).unwrap();
        assert!(reason(read_npy(&path)).contains("magic"));
    }

    #[test]
    fn missing_file_and_directory_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_npy(&dir.path().join("missing.npy")),
            Err(Error::Io { .. })
        ));
        assert!(read_npy(dir.path()).is_err());
    }
}
