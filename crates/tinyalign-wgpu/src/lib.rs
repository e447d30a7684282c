//! The aligned model on the GPU through wgpu: natively on Vulkan / Metal / DX12 (Mesa's software Vulkan in
//! CI), and in the browser on WebGPU. Nothing here knows dfdx; weights come from the same safetensors and
//! GGUF files as the CPU path, through `tinyalign-weights`.
//!
//! - [`Gpu`]: device, queue, a pipeline cache, a pool of reusable buffers, and one pending command encoder
//!   that every op records into; nothing is submitted until a result is read back.
//! - [`ops`]: the WGSL kernels (`src/kernels/*.wgsl`), one launcher per op; [`reference`] holds their
//!   plain-Rust counterparts, which the tests compare against.
//! - [`GpuWhisperEncoder`], [`GpuProjector`], [`GpuLlama`]: the forward passes; [`GpuAssistant`] chains
//!   them from the model files' bytes (the browser demo and `tinyalign ask --gpu`).
//!
//! Shapes are checked on the host before anything is dispatched; a mismatch is a [`GpuError`], never a
//! GPU validation failure.

mod assistant;
mod context;
mod layers;
mod llama;
mod matrix;
pub mod ops;
mod projector;
pub mod reference;
mod whisper;

pub use assistant::{GpuAnswer, GpuAssistant, ModelFiles, StageTimes};
pub use context::{Gpu, GpuTensor};
pub use llama::{GpuKvCache, GpuLlama};
pub use matrix::{GpuMatrix, WeightFormat};
pub use projector::GpuProjector;
pub use whisper::GpuWhisperEncoder;

/// Runs one of this crate's async calls to completion (native only; the browser awaits them).
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    pollster::block_on(future)
}

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter: {0} (natively: a Vulkan, Metal or DX12 driver; on Linux without a GPU, Mesa's software \
         Vulkan from the `mesa-vulkan-drivers` package; in a browser: WebGPU, e.g. Chromium with WebGPU enabled)"
    )]
    NoAdapter(String),
    #[error("GPU device: {0}")]
    Device(String),
    #[error("reading a result back from the GPU: {0}")]
    Readback(String),
    #[error("wrong shape: {0}")]
    Shape(String),
    #[error("model: {0}")]
    Model(String),
    #[error(transparent)]
    Weights(#[from] tinyalign_weights::WeightsError),
    #[error(transparent)]
    Whisper(#[from] tinyalign_whisper::WhisperError),
    /// A projector config the GPU layers cannot build.
    #[error("model: {0}")]
    Projector(#[from] tinyalign_projector::ProjectorError),
    /// A projector folder's `projector.json`: unreadable, or made for other models.
    #[error(transparent)]
    Manifest(#[from] tinyalign_projector::ManifestError),
    /// Audio the encoder cannot take (longer than Whisper's window, no samples).
    #[error(transparent)]
    Audio(#[from] tinyalign_mel::AudioError),
}
