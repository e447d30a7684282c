//! Whisper on the CPU: the audio encoder (openai-whisper `model.py`, `AudioEncoder`) and the text decoder
//! (`TextDecoder`, with a KV cache), frozen, on tinyalign-kernels' host layers (no dfdx), plus the
//! tokenizer and greedy transcription used for `tinyalign transcribe` and the cascade baseline.
//! The encoder:
//!
//! ```text
//! log-mel (n_mels, frames) ─► conv1 (k3 s1 p1) ─► GELU ─► conv2 (k3 s2 p1) ─► GELU      (frames/2, d)
//!   ─► + sinusoidal positions[..frames/2] ─► N × [x + attn(LN(x)); x + fc2(GELU(fc1(LN(x))))] ─► LN
//! ```
//!
//! It runs on any number of frames up to 3000 (30 s): Whisper always pads to 30 s, tinyalign only where exact
//! parity with Whisper's own pipeline is wanted, since attention cost grows with the square of the length.
//!
//! Without the default `cpu` feature only the configuration, the model-folder reader and the tokenizer
//! remain (what `tinyalign-wgpu` and the browser build need).

mod config;
#[cfg(feature = "cpu")]
mod decoder;
#[cfg(feature = "cpu")]
mod encoder;
mod features;
mod files;
#[cfg(feature = "cpu")]
mod host_loader;
mod layout;
mod tokenizer;
#[cfg(feature = "cpu")]
mod transcribe;

pub use config::WhisperConfig;
#[cfg(feature = "cpu")]
pub use decoder::{AudioContext, DecoderCache, WhisperDecoder};
#[cfg(feature = "cpu")]
pub use encoder::{WhisperEncoder, load_encoder_dir, load_encoder_dir_with_sha256};
pub use features::Features;
pub use files::read_model_dir;
pub use layout::{ConvShape, EncoderLayout, EncoderPartLoaders};
pub use tokenizer::{SpecialTokens, WhisperTokenizer};
#[cfg(feature = "cpu")]
pub use transcribe::WhisperModel;

/// Errors of the Whisper model crate.
#[derive(Debug, thiserror::Error)]
pub enum WhisperError {
    #[error(transparent)]
    Weights(#[from] tinyalign_weights::WeightsError),
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    #[error("input has {found} mel bands, the model expects {expected}")]
    MelBands { expected: usize, found: usize },
    #[error(
        "input of {frames} mel frames is longer than the encoder's {max} frames ({seconds} s): split the audio",
        seconds = max / 100
    )]
    TooLong { frames: usize, max: usize },
    #[error("input of {frames} mel frames is too short for the encoder (needs at least 1)")]
    TooShort { frames: usize },
}
