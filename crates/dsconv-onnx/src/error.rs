//! The crate's one error type.

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong reading, planning or running an ONNX model. Every
/// variant but [`Error::Dsconv`] of a non-input kind is the input's fault
/// ([`Error::is_bad_input`]).
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        reason: String,
    },
    /// Not a decodable ONNX protobuf (truncated, corrupt, not ONNX).
    #[error("not a valid ONNX model: {0}")]
    Decode(String),
    /// A tensor whose bytes live in a separate file.
    #[error(
        "tensor `{name}` keeps its data in an external file ({location}); dsconv reads \
         self-contained models only: re-save it with \
         onnx.save_model(onnx.load(path), out, save_as_external_data=False)"
    )]
    ExternalData {
        /// The tensor's name.
        name: String,
        /// The file it refers to.
        location: String,
    },
    /// A dimension or size that does not fit in memory arithmetic.
    #[error("size overflow: {0}")]
    Overflow(String),
    /// The graph's nodes depend on each other in a cycle.
    #[error("the graph has a cycle through node `{0}`")]
    Cycle(String),
    /// A node input that nothing provides (no node, initializer or graph input).
    #[error(
        "node `{node}` ({op}) reads `{input}`, which no node, initializer or graph input provides"
    )]
    MissingInput {
        /// The node's name.
        node: String,
        /// Its operator.
        op: String,
        /// The missing value.
        input: String,
    },
    /// An operator, attribute or form this crate does not implement.
    #[error("node `{node}` ({op}): {what} is not supported")]
    Unsupported {
        /// The node's name.
        node: String,
        /// Its operator.
        op: String,
        /// What is unsupported.
        what: String,
    },
    /// A node whose inputs or attributes contradict each other or the ONNX spec.
    #[error("node `{node}` ({op}): {reason}")]
    Invalid {
        /// The node's name.
        node: String,
        /// Its operator.
        op: String,
        /// What is wrong.
        reason: String,
    },
    /// An input shape or input data that the graph cannot take.
    #[error("input `{name}`: {reason}")]
    Input {
        /// The graph input.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// An error from dsconv's layers.
    #[error(transparent)]
    Dsconv(#[from] dsconv::Error),
}

impl Error {
    /// True when the error is the model's or the caller's fault (the CLI exits 2), false for
    /// resource failures (memory, threads).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Dsconv(e) => e.is_bad_input(),
            _ => true,
        }
    }

    pub(crate) fn unsupported(node: &str, op: &str, what: impl Into<String>) -> Self {
        Error::Unsupported {
            node: node.into(),
            op: op.into(),
            what: what.into(),
        }
    }

    pub(crate) fn invalid(node: &str, op: &str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            node: node.into(),
            op: op.into(),
            reason: reason.into(),
        }
    }
}
