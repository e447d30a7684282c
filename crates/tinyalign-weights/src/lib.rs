//! Weight files into named host tensors, with no ML dependency (builds for wasm32):
//! - safetensors (read F32/F16/BF16, write F32/F16/BF16),
//! - CTranslate2 `model.bin` (the packaged Whisper models), mapped to Hugging Face keys,
//! - GGUF v2/v3 (the packaged SmolLM2), metadata plus tensors dequantised or as raw quantised blocks,
//!   and written back ([`gguf_write`], with llama.cpp's reference quantisers in [`quantize`]).
//!
//! Every reader bounds-checks sizes and offsets against the file before slicing or allocating, so a
//! truncated or corrupted file is an error naming the file, never a panic or an absurd allocation.

pub mod blocks;
pub mod ct2;
mod error;
mod floats;
pub mod gguf;
pub mod gguf_write;
pub mod quantize;
mod reader;
pub mod st;
mod tensor;

pub use error::{WeightsError, WeightsErrorKind};
pub use floats::{FloatKind, le_floats};
pub use tensor::{Tensor, TensorMap};

/// Reads a whole file, naming it in the error.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>, WeightsError> {
    std::fs::read(path)
        .map_err(|e| WeightsError::new(path.display().to_string(), WeightsErrorKind::Io(e)))
}

/// Lower-case hex sha256 of `bytes`: how models are identified in projector manifests and caches.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
