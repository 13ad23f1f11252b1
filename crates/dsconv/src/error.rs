//! The one error type of the library: every fallible public operation returns
//! [`Result<T>`](Result), and every variant says which operation failed, what it
//! expected and what arrived.

use thiserror::Error;

/// Result alias used throughout dsconv.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in dsconv, as data.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A tensor had the wrong number of elements or dimensions for its declared shape.
    #[error("{what}: expected {expected}, got {got}")]
    Shape {
        /// The operand, e.g. "conv2d input".
        what: &'static str,
        /// What was expected, in words and numbers.
        expected: String,
        /// What arrived.
        got: String,
    },
    /// A convolution parameter is invalid on its own (zero stride, zero groups, ...).
    #[error("invalid {param}: {reason}")]
    InvalidParam {
        /// The parameter's name.
        param: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// The geometry does not work out: kernel larger than the padded input,
    /// reflect padding not smaller than the input, output of size zero.
    #[error("invalid geometry: {0}")]
    Geometry(String),
    /// Arithmetic on sizes overflowed `usize` (absurd sizes).
    #[error("size overflow while computing {0}")]
    Overflow(&'static str),
    /// A file (npy, checkpoint) is malformed, truncated or unsupported.
    #[error("{path}: {reason}")]
    Format {
        /// The file or source name.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An I/O failure, with the path it concerned.
    #[error("{path}: {reason}")]
    Io {
        /// The file's path.
        path: String,
        /// The operating system's message.
        reason: String,
    },
    /// Memory for a tensor could not be allocated: the size is absurd (more than the
    /// address space) or the machine is out of memory.
    #[error("cannot allocate {bytes} bytes for {what}")]
    Allocation {
        /// The tensor, e.g. "conv2d output".
        what: &'static str,
        /// The bytes requested.
        bytes: usize,
    },
    /// Weights loaded from a checkpoint do not fit the model.
    #[error("checkpoint does not fit the model: {0}")]
    Checkpoint(String),
    /// A checkpoint's keys do not match the model: every missing, unexpected and
    /// wrongly shaped key at once.
    #[error("checkpoint does not fit the model: {0}")]
    StateDict(Box<crate::weights::KeyReport>),
    /// The thread pool could not be created.
    #[error("thread pool: {0}")]
    Threads(String),
}

impl Error {
    /// Shorthand for [`Error::Shape`].
    pub fn shape(what: &'static str, expected: impl Into<String>, got: impl Into<String>) -> Self {
        Error::Shape {
            what,
            expected: expected.into(),
            got: got.into(),
        }
    }

    /// Whether the error is about what the caller gave: arguments, shapes, sizes, files or
    /// checkpoints ([`Shape`](Error::Shape), [`InvalidParam`](Error::InvalidParam),
    /// [`Geometry`](Error::Geometry), [`Overflow`](Error::Overflow) of absurd sizes,
    /// [`Format`](Error::Format), [`Io`](Error::Io) on a path the caller named,
    /// [`Checkpoint`](Error::Checkpoint), [`StateDict`](Error::StateDict)). `false` for
    /// failures of the machine, not of the input: [`Allocation`](Error::Allocation) (out
    /// of memory for sizes that passed every check) and [`Threads`](Error::Threads) (the
    /// system refused threads). The `dsconv` command exits with 2 for the first kind and 1
    /// for the second.
    ///
    /// ```
    /// use dsconv::Error;
    /// assert!(Error::param("stride", "must be at least 1").is_bad_input());
    /// assert!(!Error::Threads("resource temporarily unavailable".into()).is_bad_input());
    /// ```
    pub fn is_bad_input(&self) -> bool {
        // Exhaustive on purpose: a new variant must be classified here.
        match self {
            Error::Shape { .. }
            | Error::InvalidParam { .. }
            | Error::Geometry(_)
            | Error::Overflow(_)
            | Error::Format { .. }
            | Error::Io { .. }
            | Error::Checkpoint(_)
            | Error::StateDict(_) => true,
            Error::Allocation { .. } | Error::Threads(_) => false,
        }
    }

    /// Shorthand for [`Error::InvalidParam`].
    pub fn param(param: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidParam {
            param,
            reason: reason.into(),
        }
    }
}

/// Checked multiplication of sizes, naming what was being computed on overflow.
pub(crate) fn mul(a: usize, b: usize, what: &'static str) -> Result<usize> {
    a.checked_mul(b).ok_or(Error::Overflow(what))
}

/// Checked product of many sizes.
pub(crate) fn product(dims: &[usize], what: &'static str) -> Result<usize> {
    dims.iter().try_fold(1usize, |acc, &d| mul(acc, d, what))
}

/// Checked element count of an f32 tensor with dimensions `dims`: the product must fit
/// `usize` and its size in bytes must fit `isize` (the most any Rust allocation may hold).
pub(crate) fn f32_elements(dims: &[usize], what: &'static str) -> Result<usize> {
    let elements = product(dims, what)?;
    match elements.checked_mul(std::mem::size_of::<f32>()) {
        Some(bytes) if bytes <= isize::MAX as usize => Ok(elements),
        _ => Err(Error::Overflow(what)),
    }
}

/// A buffer of `len` copies of `value`, or [`Error::Allocation`] instead of aborting.
pub(crate) fn try_filled(len: usize, value: f32, what: &'static str) -> Result<Vec<f32>> {
    let bytes = mul(len, std::mem::size_of::<f32>(), what)?;
    let mut buffer = Vec::new();
    buffer
        .try_reserve_exact(len)
        .map_err(|_| Error::Allocation { what, bytes })?;
    buffer.resize(len, value);
    Ok(buffer)
}
