//! Encoder + decoder + tokenizer: audio in, text out.

use std::path::Path;

use tinyalign_mel::LogMel;

use crate::decoder::{WhisperDecoder, find_vocabulary};
use crate::files::read_model_dir;
use crate::tokenizer::WhisperTokenizer;
use crate::{WhisperEncoder, WhisperError};

/// A complete Whisper for transcription (and the cascade baseline).
#[derive(Debug, Clone)]
pub struct WhisperModel {
    pub encoder: WhisperEncoder,
    pub decoder: WhisperDecoder,
    pub tokenizer: WhisperTokenizer,
}

impl WhisperModel {
    /// Loads `dir/config.json`, `dir/model.safetensors` and the vocabulary (`dir/vocabulary.txt` or `dir/..`).
    pub fn load_dir(dir: &Path) -> Result<Self, WhisperError> {
        let (config, map) = read_model_dir(dir)?;
        let vocab = find_vocabulary(dir).ok_or_else(|| WhisperError::Config {
            path: dir.display().to_string(),
            message: "no vocabulary.txt here or in the folder above".into(),
        })?;
        let tokenizer = WhisperTokenizer::from_file(&vocab)?;
        if tokenizer.vocab_size() != config.vocab_size {
            return Err(WhisperError::Config {
                path: vocab.display().to_string(),
                message: format!(
                    "{} tokens, but the model has vocab_size {}",
                    tokenizer.vocab_size(),
                    config.vocab_size
                ),
            });
        }
        Ok(Self {
            encoder: WhisperEncoder::load(config.clone(), &map)?,
            decoder: WhisperDecoder::load(config, &map)?,
            tokenizer,
        })
    }

    /// Greedy transcription of one log-mel input (at most 30 s).
    pub fn transcribe(&self, mel: &LogMel, max_tokens: usize) -> Result<String, WhisperError> {
        let audio = self.encoder.forward(mel)?;
        let context = self.decoder.audio_context(&audio);
        let ids = self.decoder.greedy(&self.tokenizer, &context, max_tokens);
        Ok(self.tokenizer.decode(&ids).trim().to_string())
    }
}
