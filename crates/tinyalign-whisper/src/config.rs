//! Hugging Face `WhisperConfig` (config.json) fields the encoder needs; unknown fields are ignored because
//! the file is upstream's.

use std::path::Path;

use serde::Deserialize;
use tinyalign_mel::{Frontend, FrontendConfig, MelBands};

use crate::WhisperError;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WhisperConfig {
    pub d_model: usize,
    pub num_mel_bins: usize,
    pub encoder_layers: usize,
    pub encoder_attention_heads: usize,
    pub encoder_ffn_dim: usize,
    /// Encoder positions: 1500 (30 s after the stride-2 conv).
    pub max_source_positions: usize,
    #[serde(default)]
    pub decoder_layers: usize,
    #[serde(default)]
    pub decoder_attention_heads: usize,
    #[serde(default)]
    pub decoder_ffn_dim: usize,
    /// Decoder positions: 448 tokens.
    #[serde(default)]
    pub max_target_positions: usize,
    #[serde(default)]
    pub vocab_size: usize,
    /// Token ids never generated (punctuation-like symbols and special tokens).
    #[serde(default)]
    pub suppress_tokens: Vec<i64>,
    /// Token ids not allowed as the first generated token (a bare space, end of text).
    #[serde(default)]
    pub begin_suppress_tokens: Vec<i64>,
}

impl WhisperConfig {
    /// The log-mel frontend this model's encoder reads: its band count, and the audio padded to Whisper's
    /// 30 s window (what the decoder was trained on) or left at its length (features for a projector).
    pub fn frontend(&self, pad_to_30s: bool) -> Result<Frontend, WhisperError> {
        let bands =
            MelBands::from_count(self.num_mel_bins).ok_or_else(|| WhisperError::Config {
                path: "config.json".into(),
                message: format!(
                    "num_mel_bins is {}; the frontend makes 80 or 128 bands",
                    self.num_mel_bins
                ),
            })?;
        Ok(Frontend::new(FrontendConfig { bands, pad_to_30s }))
    }

    pub fn from_file(path: &Path) -> Result<Self, WhisperError> {
        let err = |message: String| WhisperError::Config {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let cfg: Self = serde_json::from_str(&text)
            .map_err(|e| err(format!("not a Whisper config.json: {e}")))?;
        if cfg.d_model == 0
            || cfg.encoder_attention_heads == 0
            || !cfg.d_model.is_multiple_of(cfg.encoder_attention_heads)
        {
            return Err(err(format!(
                "d_model {} does not split into {} heads",
                cfg.d_model, cfg.encoder_attention_heads
            )));
        }
        Ok(cfg)
    }

    /// Longest input in mel frames (the stride-2 conv halves it into the positions).
    pub fn max_mel_frames(&self) -> usize {
        2 * self.max_source_positions
    }
}
