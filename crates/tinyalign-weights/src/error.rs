//! Errors of the weight readers; every message names the file (or buffer) and, where one is involved, the
//! tensor and the shapes.

/// A weight file or tensor that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {kind}")]
pub struct WeightsError {
    pub source_name: String,
    pub kind: WeightsErrorKind,
}

impl WeightsError {
    pub fn new(source_name: impl Into<String>, kind: WeightsErrorKind) -> Self {
        Self {
            source_name: source_name.into(),
            kind,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WeightsErrorKind {
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a {format} file (bad magic bytes)")]
    BadMagic { format: &'static str },
    #[error("unsupported {format} version {version}")]
    UnsupportedVersion { format: &'static str, version: u64 },
    #[error("truncated: {what} at byte {offset} needs {needed} bytes, {available} remain")]
    Truncated {
        what: String,
        offset: usize,
        needed: u64,
        available: usize,
    },
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("tensor {name}: unsupported data type {dtype}")]
    UnsupportedDtype { name: String, dtype: String },
    #[error("tensor {name} is missing")]
    Missing { name: String },
    #[error("tensor {name}: expected shape {expected:?}, found {found:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("safetensors: {0}")]
    Safetensors(String),
}
