//! Model hyper-parameters, read from GGUF `{architecture}.*` metadata (`llama` for SmolLM2, `qwen2` for
//! Qwen2.5).

use serde::{Deserialize, Serialize};
use tinyalign_weights::gguf::GgufFile;

use crate::LlmError;

/// The decoder families implemented: one block shape (RMSNorm, GQA with RoPE, SwiGLU) with these
/// differences.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Llama (SmolLM2): no attention biases; llama.cpp stores Q/K rows permuted so RoPE rotates adjacent
    /// pairs.
    #[default]
    Llama,
    /// Qwen2 (Qwen2.5): Q/K/V biases; Q/K rows as in Hugging Face, so RoPE rotates the two halves of each
    /// head (NEOX style), per llama.cpp's `LLM_ARCH_QWEN2` → `LLAMA_ROPE_TYPE_NEOX`.
    Qwen2,
}

impl Architecture {
    /// The GGUF `general.architecture` value, also the prefix of its hyper-parameter keys.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
        }
    }

    /// How RoPE pairs the dimensions of a head in this family's GGUF tensors.
    pub fn rope_style(self) -> RopeStyle {
        match self {
            Architecture::Llama => RopeStyle::AdjacentPairs,
            Architecture::Qwen2 => RopeStyle::HalfSplit,
        }
    }

    /// Whether Q, K and V projections carry biases (`blk.N.attn_{q,k,v}.bias`).
    pub fn attention_bias(self) -> bool {
        self == Architecture::Qwen2
    }
}

/// Which dimensions RoPE rotates together within a head of size `hd`, by frequency index i < hd/2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// (x₂ᵢ, x₂ᵢ₊₁): llama.cpp's layout of permuted Llama Q/K.
    AdjacentPairs,
    /// (xᵢ, xᵢ₊hd/2): Hugging Face's rotate_half, llama.cpp's NEOX.
    HalfSplit,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    #[serde(default)]
    pub architecture: Architecture,
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
        let architecture = match arch {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            other => {
                return Err(LlmError::Unsupported(format!(
                    "{}: architecture `{other}` (implemented: `llama`, e.g. SmolLM2, and `qwen2`, e.g. \
                     Qwen2.5)",
                    file.source_name
                )));
            }
        };
        let key = |name: &str| format!("{arch}.{name}");
        let need = |name: &str| {
            file.meta_u64(&key(name))
                .map(|v| v as usize)
                .ok_or_else(|| {
                    LlmError::Model(format!(
                        "{}: metadata `{}` is missing",
                        file.source_name,
                        key(name)
                    ))
                })
        };
        let hidden_size = need("embedding_length")?;
        let num_attention_heads = need("attention.head_count")?;
        let num_key_value_heads = file
            .meta_u64(&key("attention.head_count_kv"))
            .map_or(num_attention_heads, |v| v as usize);
        let vocab_size = match file.meta_u64(&key("vocab_size")) {
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
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size: need("feed_forward_length")?,
            num_hidden_layers: need("block_count")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim: file
                .meta_u64(&key("rope.dimension_count"))
                .map_or(hidden_size / num_attention_heads.max(1), |v| v as usize),
            rms_norm_eps: file
                .meta_f64(&key("attention.layer_norm_rms_epsilon"))
                .unwrap_or(1e-5) as f32,
            rope_theta: file.meta_f64(&key("rope.freq_base")).unwrap_or(10_000.0) as f32,
            max_position_embeddings: need("context_length")?,
            tie_word_embeddings: file.info("output.weight").is_err(),
        };
        config.validate(&file.source_name)?;
        Ok(config)
    }

    pub(crate) fn validate(&self, source: &str) -> Result<(), LlmError> {
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

    /// Refuses an architecture a backend does not implement, naming both.
    pub fn require_architecture(
        &self,
        supported: &[Architecture],
        backend: &str,
    ) -> Result<(), LlmError> {
        if supported.contains(&self.architecture) {
            return Ok(());
        }
        Err(LlmError::Unsupported(format!(
            "{backend} implements {} models, not `{}`",
            supported
                .iter()
                .map(|a| format!("`{}`", a.gguf_name()))
                .collect::<Vec<_>>()
                .join(" and "),
            self.architecture.gguf_name()
        )))
    }

    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }
}
