//! The one error type of the Rust API. The C ABI maps each variant to a fixed status code.

use thiserror::Error;

/// Everything that can go wrong inside gradtau.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// Two shapes that must agree do not.
    #[error("shape mismatch in {op}: {detail}")]
    Shape { op: &'static str, detail: String },

    /// An argument is outside what the call accepts (empty set, label out of range, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A value is NaN or infinite where finite numbers are required.
    #[error("non-finite value: {0}")]
    NonFinite(String),

    /// The model specification is malformed; names the node and the field when known.
    #[error("model spec: {0}")]
    Spec(String),

    /// A parameter of the model has no bound buffer, or a binding names no parameter.
    #[error("binding: {0}")]
    Binding(String),

    /// The requested device cannot be used (CUDA compiled out, no driver, no GPU).
    #[error("device unavailable: {0}")]
    DeviceUnavailable(String),

    /// An operation has no implementation on the device its inputs live on.
    #[error("op `{op}` is not implemented on {device}")]
    Unsupported { op: &'static str, device: String },

    /// The caller's progress callback asked to stop.
    #[error("cancelled by the progress callback")]
    Cancelled,

    /// Reading or writing a file failed, or its contents are malformed.
    #[error("io: {0}")]
    Io(String),

    /// A CUDA driver, NVRTC or cuBLAS call failed.
    #[error("cuda: {0}")]
    Cuda(String),

    /// The model is being changed by another call (a run, a bind) that does not wait for this
    /// one; nothing was done.
    #[error("busy: {0}")]
    Busy(String),

    /// The run would need more memory than its budget allows (or than the address space
    /// holds), or an allocation could not be made; names the node and the bytes.
    #[error("resource limit: {0}")]
    ResourceLimit(String),

    /// An internal invariant broke: a bug in gradtau (or in a caller's own `BackwardOp`),
    /// not a problem with the caller's arguments.
    #[error("internal error (a bug; please report it): {0}")]
    Internal(String),
}

impl Error {
    /// A `Shape` error.
    pub fn shape(op: &'static str, detail: impl Into<String>) -> Self {
        Error::Shape {
            op,
            detail: detail.into(),
        }
    }
    /// An `InvalidArgument` error.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Error::InvalidArgument(detail.into())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;
