//! Model hyper-parameters, read from GGUF `llama.*` metadata.

use serde::{Deserialize, Serialize};
use tinyalign_weights::gguf::GgufFile;

use crate::LlmError;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
}

impl LlamaConfig {
    pub fn from_gguf(file: &GgufFile) -> Result<Self, LlmError> {
        let arch = file.meta_str("general.architecture").unwrap_or("(missing)");
        if arch != "llama" {
            return Err(LlmError::Unsupported(format!(
                "{}: architecture `{arch}` (only `llama`, e.g. SmolLM2, is implemented)",
                file.source_name
            )));
        }
        let need = |key: &str| {
            file.meta_u64(&format!("llama.{key}"))
                .map(|v| v as usize)
                .ok_or_else(|| {
                    LlmError::Model(format!(
                        "{}: metadata `llama.{key}` is missing",
                        file.source_name
                    ))
                })
        };
        let hidden_size = need("embedding_length")?;
        let num_attention_heads = need("attention.head_count")?;
        let num_key_value_heads = file
            .meta_u64("llama.attention.head_count_kv")
            .map_or(num_attention_heads, |v| v as usize);
        let vocab_size = match file.meta_u64("llama.vocab_size") {
            Some(v) => v as usize,
            None => file
                .metadata
                .get("tokenizer.ggml.tokens")
                .and_then(|v| v.as_array())
                .map(<[_]>::len)
                .ok_or_else(|| {
                    LlmError::Model(format!("{}: vocabulary size unknown", file.source_name))
                })?,
        };
        let config = Self {
            vocab_size,
            hidden_size,
            intermediate_size: need("feed_forward_length")?,
            num_hidden_layers: need("block_count")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim: file
                .meta_u64("llama.rope.dimension_count")
                .map_or(hidden_size / num_attention_heads.max(1), |v| v as usize),
            rms_norm_eps: file
                .meta_f64("llama.attention.layer_norm_rms_epsilon")
                .unwrap_or(1e-5) as f32,
            rope_theta: file.meta_f64("llama.rope.freq_base").unwrap_or(10_000.0) as f32,
            max_position_embeddings: need("context_length")?,
            tie_word_embeddings: file.info("output.weight").is_err(),
        };
        config.validate(&file.source_name)?;
        Ok(config)
    }

    fn validate(&self, source: &str) -> Result<(), LlmError> {
        let bad = |what: String| Err(LlmError::Model(format!("{source}: {what}")));
        if self.num_attention_heads == 0 || self.num_key_value_heads == 0 || self.head_dim == 0 {
            return bad("zero heads or head size".into());
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return bad(format!(
                "{} query heads do not share {} key/value heads evenly",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if self.num_attention_heads * self.head_dim != self.hidden_size
            || !self.head_dim.is_multiple_of(2)
        {
            return bad(format!(
                "{} heads × {} ≠ hidden size {} (or odd head size)",
                self.num_attention_heads, self.head_dim, self.hidden_size
            ));
        }
        Ok(())
    }

    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }
}
