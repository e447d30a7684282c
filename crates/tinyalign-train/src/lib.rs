//! EmbedLink training (Tiny-Align §3.2): the projector learns to map frozen Whisper features onto the frozen
//! LLM's own input embeddings of the transcript, so the LLM never runs during training.
//!
//! `train` runs in two stages: `run_setup` reads the manifest, loads the frozen models, computes (or reuses)
//! encoder features and builds targets; `train_loop` trains, validates and checkpoints. Everything goes into
//! a `run_folder`: `config.toml`, `metrics.jsonl` (typed [`MetricsLine`]s), `loss.svg`, `checkpoint/` (exact
//! resume), the best `projector.safetensors` + `projector.json` and `summary.json`.

mod batch;
mod config;
pub mod ctc;
mod ctc_objective;
mod device;
mod feature_shards;
mod feature_store;
mod features;
mod in_the_loop;
mod objective;
pub mod plot;
mod prepare;
mod run_files;
mod run_folder;
mod run_setup;
mod targets;
mod train_loop;
mod trainer;
mod users;

pub use config::{
    DataConfig, LlmConfig, LossConfig, Objective, OptimConfig, ProjectorSizes, TrainConfig,
};
/// The CTC objective's batch loss, public for the criterion bench of a CTC training step.
pub use ctc_objective::batch_loss as ctc_batch_loss;
pub use device::ComputeDevice;
pub use feature_shards::SHARD_BYTES;
pub use feature_store::{FeatureFile, FeatureStore, PackReport};
pub use features::{FRONTEND_VERSION, FeatureCache, Features, sha256_hex};
pub use in_the_loop::LoopContext;
pub use prepare::{FeatureReport, Shard, cache_features};
pub use run_folder::{MetricsLine, read_metrics, read_summary};
pub use targets::{Target, TargetBuilder, TargetTable};
pub use tinyalign_data::peak_rss_bytes;
pub use trainer::{Alignment, StopReason, TrainOptions, TrainSummary, projector_alignment, train};
pub use users::{PersonalisationResult, UserInfo, UserStore};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("config: {0}")]
    Config(String),
    #[error("{0}")]
    Io(String),
    #[error("data: {0}")]
    Data(String),
    #[error("model: {0}")]
    Model(String),
    #[error("training diverged: {0}")]
    Diverged(String),
    #[error(transparent)]
    Audio(#[from] tinyalign_mel::AudioError),
    /// A run or cache file written atomically (the message names the file).
    #[error(transparent)]
    File(#[from] tinyalign_data::DataError),
    /// A safetensors or GGUF file that does not read or write (the message names it).
    #[error(transparent)]
    Weights(#[from] tinyalign_weights::WeightsError),
    /// The frozen LLM (loading it, or its embedding table).
    #[error("model: {0}")]
    Llm(#[from] tinyalign_llm::LlmError),
    /// The frozen Whisper encoder.
    #[error("model: {0}")]
    Whisper(#[from] tinyalign_whisper::WhisperError),
    /// The projector: its shapes, weights or a batch it cannot take.
    #[error("model: {0}")]
    Projector(#[from] tinyalign_projector::ProjectorError),
    /// A run folder's `projector.json`.
    #[error("{0}")]
    Manifest(#[from] tinyalign_projector::ManifestError),
    /// Optimiser moments that do not fit the projector.
    #[error("model: {0}")]
    Nn(#[from] tinyalign_nn::NnError),
}
