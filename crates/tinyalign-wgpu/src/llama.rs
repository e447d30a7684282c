//! The frozen Llama-family LLM (SmolLM2's llama, Qwen2.5's qwen2) on the GPU: weights kept in their GGUF
//! blocks, prefill and KV-cached decoding from any mix of token and projected-audio embeddings.

use tinyalign_llm::{
    Decoding, GenerateOptions, LlamaConfig, LlmWeights, SlotPrompt, StopReason, Tokenizer,
};
use tinyalign_weights::gguf::GgufFile;

use crate::ops::{self, Activation, AttentionShape};
use crate::{Gpu, GpuError, GpuMatrix, GpuTensor};

#[derive(Debug)]
pub struct GpuLlama {
    pub config: LlamaConfig,
    pub tokenizer: Tokenizer,
    /// The chat template's default system message (`tinyalign_llm::default_system_prompt`).
    pub system_prompt: Option<&'static str>,
    /// The weights as `tinyalign_llm::LlmWeights` describes them (the CPU model loads the same layout).
    weights: LlmWeights<GpuMatrix, GpuTensor>,
    /// [`ops::rope_table`] for every position the context holds.
    rope: GpuTensor,
    context: usize,
}

/// Keys and values of every layer, `capacity × kv_dim` each; rows `0..len` are filled.
#[derive(Debug)]
pub struct GpuKvCache {
    keys: Vec<GpuTensor>,
    values: Vec<GpuTensor>,
    len: usize,
}

impl GpuKvCache {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.keys.first().map_or(0, GpuTensor::rows)
    }

    /// Forgets positions from `len` on (keeps a shared prefix).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

fn vector(gpu: &Gpu, file: &GgufFile, name: &str, len: usize) -> Result<GpuTensor, GpuError> {
    let t = file.tensor(name)?;
    if t.data.len() != len {
        return Err(GpuError::Model(format!(
            "{}: `{name}` has {} values, expected {len}",
            file.source_name,
            t.data.len()
        )));
    }
    gpu.upload(&t.data, 1, len)
}

impl GpuLlama {
    pub fn from_gguf(gpu: &Gpu, file: &GgufFile) -> Result<Self, GpuError> {
        let model = |e: tinyalign_llm::LlmError| GpuError::Model(e.to_string());
        let config = LlamaConfig::from_gguf(file).map_err(model)?;
        config
            .require_architecture(
                &[
                    tinyalign_llm::Architecture::Llama,
                    tinyalign_llm::Architecture::Qwen2,
                ],
                "the GPU LLM path",
            )
            .map_err(model)?;
        let tokenizer = Tokenizer::from_gguf(file).map_err(model)?;
        let weights = LlmWeights::load_with(
            &config,
            |name, rows, cols| {
                let m = GpuMatrix::from_gguf(gpu, file, name)?;
                if (m.rows(), m.cols()) != (rows, cols) {
                    return Err(GpuError::Model(format!(
                        "{}: `{name}` is {}×{}, the config implies {rows}×{cols}",
                        file.source_name,
                        m.rows(),
                        m.cols()
                    )));
                }
                Ok(m)
            },
            |name, len| vector(gpu, file, name, len),
        )?;
        let context = config.max_position_embeddings.min(ops::MAX_KEYS);
        let rope = gpu.upload(
            &ops::rope_table(context, config.head_dim, config.rope_theta),
            context,
            config.head_dim,
        )?;
        Ok(Self {
            config,
            tokenizer,
            system_prompt: tinyalign_llm::default_system_prompt(
                file.meta_str("tokenizer.chat_template"),
            ),
            weights,
            rope,
            context,
        })
    }

    /// Positions a cache can hold here: the model's context, capped by the attention kernel.
    pub fn max_context(&self) -> usize {
        self.context
    }

    pub fn new_cache(&self, gpu: &Gpu, capacity: usize) -> GpuKvCache {
        let capacity = capacity.clamp(1, self.context);
        let kvd = self.config.kv_dim();
        GpuKvCache {
            keys: (0..self.weights.blocks.len())
                .map(|_| gpu.zeros(capacity, kvd))
                .collect(),
            values: (0..self.weights.blocks.len())
                .map(|_| gpu.zeros(capacity, kvd))
                .collect(),
            len: 0,
        }
    }

    /// Input embeddings of `ids` (`ids.len() × hidden_size`), dequantised from the table on the GPU.
    pub fn embed_tokens(&self, gpu: &Gpu, ids: &[u32]) -> Result<GpuTensor, GpuError> {
        ops::gather(gpu, &self.weights.embed, ids)
    }

    /// Runs `embeds` (`n × hidden_size`) after what `cache` holds, appends their keys and values, and
    /// returns the last position's logits (`1 × vocab`), on the GPU.
    pub fn forward(
        &self,
        gpu: &Gpu,
        embeds: &GpuTensor,
        cache: &mut GpuKvCache,
    ) -> Result<GpuTensor, GpuError> {
        let c = &self.config;
        let (d, n) = (c.hidden_size, embeds.rows());
        if embeds.cols() != d || n == 0 {
            return Err(GpuError::Shape(format!(
                "LLM input is {n}×{}; it takes n × {d} with n ≥ 1",
                embeds.cols()
            )));
        }
        if cache.keys.len() != self.weights.blocks.len() || cache.keys[0].cols() != c.kv_dim() {
            return Err(GpuError::Shape(
                "the KV cache was made for another model".into(),
            ));
        }
        let start = cache.len;
        if start + n > cache.capacity() {
            return Err(GpuError::Shape(format!(
                "the prompt needs {} positions but the cache holds {}",
                start + n,
                cache.capacity()
            )));
        }
        let eps = c.rms_norm_eps;
        let shape = AttentionShape {
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            valid_keys: start + n,
            causal_start: Some(start),
        };
        let rope_style = c.architecture.rope_style();
        let mut hidden = None;
        for (li, layer) in self.weights.blocks.iter().enumerate() {
            let h = hidden.as_ref().unwrap_or(embeds);
            let x = ops::rms_norm(gpu, h, &layer.attn_norm, eps, 1.0)?;
            let bias = layer.qkv_bias.as_ref();
            let q = ops::linear(gpu, &x, &layer.q, bias.map(|b| &b.q), Activation::None)?;
            let k = ops::linear(gpu, &x, &layer.k, bias.map(|b| &b.k), Activation::None)?;
            let v = ops::linear(gpu, &x, &layer.v, bias.map(|b| &b.v), Activation::None)?;
            ops::rope(gpu, &q, &self.rope, c.head_dim, start, rope_style)?;
            ops::rope(gpu, &k, &self.rope, c.head_dim, start, rope_style)?;
            gpu.copy_rows(&k, 0, &cache.keys[li], start, n)?;
            gpu.copy_rows(&v, 0, &cache.values[li], start, n)?;
            let attended = ops::attention(gpu, &q, &cache.keys[li], &cache.values[li], shape)?;
            let o = ops::linear(gpu, &attended, &layer.o, None, Activation::None)?;
            let h = ops::add(gpu, h, &o)?;
            let x = ops::rms_norm(gpu, &h, &layer.ffn_norm, eps, 1.0)?;
            let gate = ops::linear(gpu, &x, &layer.gate, None, Activation::None)?;
            let up = ops::linear(gpu, &x, &layer.up, None, Activation::None)?;
            let mixed = ops::silu_mul(gpu, &gate, &up)?;
            let down = ops::linear(gpu, &mixed, &layer.down, None, Activation::None)?;
            hidden = Some(ops::add(gpu, &h, &down)?);
        }
        cache.len += n;
        let hidden = hidden.expect("a model has at least one layer");
        let last = gpu.output(1, d);
        gpu.copy_rows(&hidden, n - 1, &last, 0, 1)?;
        let normed = ops::rms_norm(gpu, &last, &self.weights.output_norm, eps, 1.0)?;
        ops::linear(gpu, &normed, self.weights.head(), None, Activation::None)
    }

    /// The chat prompt around `slot` (`t × hidden_size`: the audio; `None` for none) as `prompt` lays it out
    /// (system message, worked examples, instruction, answer prefix): the CPU assistant's layout
    /// (`tinyalign_llm::slot_prompt_ids_with_examples`). Returns the embeddings and the prompt's token ids
    /// (for the repetition penalty). The prompt's stop texts are the caller's to add to its options.
    pub fn slot_prompt(
        &self,
        gpu: &Gpu,
        slot: Option<&GpuTensor>,
        prompt: &SlotPrompt,
    ) -> Result<(GpuTensor, Vec<u32>), GpuError> {
        let (before, after) = tinyalign_llm::slot_prompt_ids_with_examples(
            &self.tokenizer,
            self.system_prompt,
            prompt.instruction.as_deref(),
            prompt.answer_prefix.as_deref(),
            &prompt.examples,
        );
        let t = slot.map_or(0, GpuTensor::rows);
        let before_embeds = self.embed_tokens(gpu, &before)?;
        let after_embeds = self.embed_tokens(gpu, &after)?;
        let embeds = gpu.output(before.len() + t + after.len(), self.config.hidden_size);
        gpu.copy_rows(&before_embeds, 0, &embeds, 0, before.len())?;
        if let Some(slot) = slot {
            gpu.copy_rows(slot, 0, &embeds, before.len(), t)?;
        }
        gpu.copy_rows(&after_embeds, 0, &embeds, before.len() + t, after.len())?;
        Ok((embeds, before.into_iter().chain(after).collect()))
    }

    /// Generates after `prompt` as `LlamaModel::generate` does (same sampler, stop tokens and streaming):
    /// `on_text` gets each completed piece of text and returns false to stop.
    pub async fn generate(
        &self,
        gpu: &Gpu,
        prompt: &GpuTensor,
        history: &[u32],
        options: &GenerateOptions,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<(Vec<u32>, String, StopReason), GpuError> {
        if prompt.rows() + options.max_tokens.min(1) > self.context {
            return Err(GpuError::Shape(format!(
                "the prompt has {} positions; this GPU path holds {}",
                prompt.rows(),
                self.context
            )));
        }
        let mut cache = self.new_cache(gpu, prompt.rows() + options.max_tokens);
        let logits = gpu.read(&self.forward(gpu, prompt, &mut cache)?).await?;
        self.generate_from(gpu, logits, &mut cache, history, options, on_text)
            .await
    }

    /// [`GpuLlama::generate`] continuing from a prompt already run into `cache`, whose last position gave
    /// `logits`.
    pub async fn generate_from(
        &self,
        gpu: &Gpu,
        mut logits: Vec<f32>,
        cache: &mut GpuKvCache,
        history: &[u32],
        options: &GenerateOptions,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<(Vec<u32>, String, StopReason), GpuError> {
        let mut decoding = Decoding::new(&self.tokenizer, history, options);
        let reason = loop {
            let cache_full = cache.len() >= cache.capacity();
            match decoding.step(&self.tokenizer, &mut logits, cache_full, &mut on_text) {
                Ok(next) => {
                    let embed = self.embed_tokens(gpu, &[next])?;
                    logits = gpu.read(&self.forward(gpu, &embed, cache)?).await?;
                }
                Err(reason) => break reason,
            }
        };
        let (tokens, text) = decoding.finish(&mut on_text);
        Ok((tokens, text, reason))
    }
}
