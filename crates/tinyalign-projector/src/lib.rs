//! The trained bridge: encoder features `(frames, d_audio)` → `T` audio tokens `(T, d_llm)` in the LLM's
//! input-embedding space.
//!
//! - **BridgeFormer** (Tiny-Align §3): k stacked frames → input MLP → pre-norm transformer encoder layers
//!   with *no positional encoding* (Whisper's features already carry position; the layers only mix) →
//!   masked adaptive pooling to T → output MLP. Stacking (k = 4 by default) is our addition: it keeps
//!   attention affordable on a CPU for utterances up to Whisper's 30 s.
//! - **Baselines** (SLAM-ASR): k stacked frames → Linear (→ ReLU → Linear) → the same pooling.
//!
//! Every kind ends with an RMS normalisation scaled to the LLM embeddings' RMS, with a learned per-channel
//! gain. Batches are padded to a common frame count; padding frames are zeroed on entry, masked out of
//! attention and never pooled, so they cannot change any output.

mod config;
mod ctc_head;
mod layout;
mod manifest;
#[cfg(feature = "dfdx")]
mod model;
mod pooling;

pub use config::{ProjectorConfig, ProjectorKind, ProjectorOutput, TokenCount};
pub use ctc_head::{Readout, Segment, greedy_segments, segment_posterior, softmax_rows};
pub use layout::{BodyLayout, PartLoaders, ProjectorLayout};
pub use manifest::{
    LoadedModels, MANIFEST_FILE, MANIFEST_FORMAT, ManifestError, ProjectorManifest,
};
#[cfg(feature = "dfdx")]
pub use model::{CtcTable, Projector};
pub use pooling::adaptive_pool_weights;

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error("projector config: {0}")]
    Config(String),
    #[error("projector weights: {0}")]
    Weights(String),
    #[error("projector input: {0}")]
    Input(String),
}

#[cfg(feature = "dfdx")]
impl From<tinyalign_nn::NnError> for ProjectorError {
    fn from(e: tinyalign_nn::NnError) -> Self {
        ProjectorError::Weights(e.to_string())
    }
}

/// Where each utterance sits in a padded batch and how many tokens it becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchLayout {
    pub lengths: Vec<usize>,
    /// Frames per item after padding (a multiple of the stack size).
    pub frames: usize,
    pub tokens: Vec<usize>,
    pub max_tokens: usize,
}

impl BatchLayout {
    pub fn batch(&self) -> usize {
        self.lengths.len()
    }
}
