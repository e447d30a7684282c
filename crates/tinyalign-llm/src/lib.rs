//! The frozen LLM of the bridge: a Llama-family model (SmolLM2-135M-Instruct, Qwen2.5) read from GGUF or a
//! Hugging Face folder (converted to the same GGUF bytes in memory),
//! its byte-level BPE tokenizer, the input-embedding table EmbedLink trains against, and KV-cached
//! generation from any mix of token and projected-audio embeddings.
//!
//! Inference keeps the weights in their GGUF block formats and multiplies with `tinyalign-quant`'s kernels;
//! `Precision::F32` dequantises once instead (the baseline, and what gradient-based callers need).

mod chat;
mod config;
mod generate;
#[cfg(feature = "dfdx")]
mod graph;
mod hf_folder;
mod hf_tokenizer;
mod kv_cache;
mod layout;
mod model;
mod readout;
mod tokenizer;

pub use chat::{
    ChatMessage, DEFAULT_SYSTEM_PROMPT, QWEN_SYSTEM_PROMPT, RESPOND_INSTRUCTION, SlotPrompt,
    TRANSCRIBE_ANSWER_PREFIX, TRANSCRIBE_INSTRUCTION, chatml_prompt, default_system_prompt,
    slot_prompt_ids, slot_prompt_ids_with_examples,
};
pub use config::{Architecture, LlamaConfig, RopeStyle};
pub use generate::{Decoding, GenerateOptions, Generation, Sampler, StopReason};
#[cfg(feature = "dfdx")]
pub use graph::LlamaGraph;
pub use hf_folder::{gguf_from_hf_folder, hf_choice, read_llm_bytes};
pub use kv_cache::KvCache;
pub use layout::{BlockWeights, LlmWeights, QkvBias};
pub use model::{LlamaModel, Precision};
pub use tinyalign_quant::Activations;
pub use tokenizer::{PreTokenizer, StreamDecoder, Tokenizer};

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error(transparent)]
    Weights(#[from] tinyalign_weights::WeightsError),
    #[error("{0}")]
    Io(String),
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("model file: {0}")]
    Model(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("the prompt needs {needed} positions but the context holds {context}")]
    ContextFull { needed: usize, context: usize },
    #[error("wrong shape: {0}")]
    Shape(String),
}

impl From<tinyalign_quant::QuantError> for LlmError {
    fn from(e: tinyalign_quant::QuantError) -> Self {
        LlmError::Model(e.to_string())
    }
}
