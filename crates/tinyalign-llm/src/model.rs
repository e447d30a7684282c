//! The Llama-family forward pass for inference (Llama and Qwen2 blocks): RMSNorm, RoPE (adjacent pairs or
//! half-split), grouped-query attention with optional Q/K/V biases and a KV cache, SwiGLU, tied or separate
//! output head. Plain Rust over `tinyalign-quant` matrices; one code path serves the
//! quantised weights and their f32 dequantisation.

use std::path::Path;

use rayon::prelude::*;
use tinyalign_quant::{Activations, Format, Product, QMatrix};
use tinyalign_weights::gguf::{GgmlType, GgufFile};

use crate::{KvCache, LlamaConfig, LlmError, LlmWeights, RopeStyle, Tokenizer};

/// (query, head) pairs per attention task at the least: a decoding step's 9–14 pairs make 3–4 tasks, each
/// a few microseconds of work over a short context, not one task per pair.
const ATTENTION_PAIRS_PER_TASK: usize = 4;

/// How the weight matrices are held in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// As stored in the file (Q4_1 / Q8_0 for the default model): least memory traffic, fastest decode.
    #[default]
    Native,
    /// Dequantised once to f32: the baseline, and exactly the weights a numpy/PyTorch reference sees.
    F32,
}

#[derive(Debug)]
pub struct LlamaModel {
    pub config: LlamaConfig,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<String>,
    /// The system message of every prompt built here: the chat template's default
    /// (`default_system_prompt`) unless replaced; `None` writes no system turn.
    pub system_prompt: Option<String>,
    /// Embedding table (the input embeddings, and the output head when tied), blocks and head.
    pub(crate) weights: LlmWeights<QMatrix, Vec<f32>>,
    /// Euclidean norm of every input-embedding row, computed on first use by [`Self::nearest_tokens`].
    pub(crate) embed_norms: std::sync::OnceLock<Vec<f32>>,
    /// RoPE inverse frequencies θ^(−2i/head_dim), i < head_dim / 2.
    inv_freq: Vec<f32>,
    pub(crate) product: Product,
}

fn matrix(file: &GgufFile, name: &str, precision: Precision) -> Result<QMatrix, LlmError> {
    let (info, raw) = file.raw(name)?;
    let [rows, cols] = info.shape[..] else {
        return Err(LlmError::Model(format!(
            "{}: `{name}` has shape {:?}, expected a matrix",
            file.source_name, info.shape
        )));
    };
    let m = match Format::from_ggml(info.ggml_type) {
        Some(format) => QMatrix::from_gguf_bytes(format, rows, cols, raw)
            .map_err(|e| LlmError::Model(format!("{}: `{name}`: {e}", file.source_name)))?,
        // BF16 and friends: readable, but without a kernel; hold them as f32.
        None => match tinyalign_weights::gguf::dequantize(info.ggml_type, raw) {
            Some(values) if info.ggml_type == GgmlType::Bf16 => {
                QMatrix::from_f32(rows, cols, values)?
            }
            _ => {
                return Err(LlmError::Unsupported(format!(
                    "{}: `{name}` is {} (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q6_K)",
                    file.source_name,
                    info.ggml_type.name()
                )));
            }
        },
    };
    Ok(match precision {
        Precision::F32 if m.format() != Format::F32 => m.to_f32(),
        _ => m,
    })
}

fn vector(file: &GgufFile, name: &str, len: usize) -> Result<Vec<f32>, LlmError> {
    let tensor = file.tensor(name)?;
    if tensor.data.len() != len {
        return Err(LlmError::Model(format!(
            "{}: `{name}` has {} values, expected {len}",
            file.source_name,
            tensor.data.len()
        )));
    }
    Ok(tensor.data)
}

fn expect_shape(
    file: &GgufFile,
    name: &str,
    m: &QMatrix,
    rows: usize,
    cols: usize,
) -> Result<(), LlmError> {
    if (m.rows(), m.cols()) != (rows, cols) {
        return Err(LlmError::Model(format!(
            "{}: `{name}` is {}×{}, the config implies {rows}×{cols}",
            file.source_name,
            m.rows(),
            m.cols()
        )));
    }
    Ok(())
}

impl LlamaModel {
    /// Loads the model without hashing its bytes: sha256 of a 0.5B model's GGUF is ~6% of a long `ask`,
    /// wasted where nothing checks it (text `ask`, the cascade and oracle rows).
    pub fn load_gguf(path: &Path, precision: Precision) -> Result<Self, LlmError> {
        let bytes = crate::read_llm_bytes(path)?;
        Self::from_gguf(
            &GgufFile::parse(&bytes, &path.display().to_string())?,
            precision,
        )
    }

    /// Loads the model and returns the sha256 of its GGUF bytes too, reading the file once (projector
    /// manifests identify the LLM by it). `path` may also be a Hugging Face folder (`DIR` or `DIR@q8_0`,
    /// see [`crate::read_llm_bytes`]); its sha256 is that of the GGUF it converts to.
    pub fn load_gguf_with_sha256(
        path: &Path,
        precision: Precision,
    ) -> Result<(Self, String), LlmError> {
        let bytes = crate::read_llm_bytes(path)?;
        let file = GgufFile::parse(&bytes, &path.display().to_string())?;
        Ok((
            Self::from_gguf(&file, precision)?,
            tinyalign_weights::sha256_hex(&bytes),
        ))
    }

    pub fn from_gguf(file: &GgufFile, precision: Precision) -> Result<Self, LlmError> {
        let config = LlamaConfig::from_gguf(file)?;
        let tokenizer = Tokenizer::from_gguf(file)?;
        let weights = LlmWeights::load_with(
            &config,
            |name, rows, cols| {
                let m = matrix(file, name, precision)?;
                expect_shape(file, name, &m, rows, cols)?;
                Ok(m)
            },
            |name, len| vector(file, name, len),
        )?;
        if tokenizer.vocab_size() != config.vocab_size {
            return Err(LlmError::Model(format!(
                "{}: tokenizer has {} tokens, the embedding table {}",
                file.source_name,
                tokenizer.vocab_size(),
                config.vocab_size
            )));
        }
        let half = config.head_dim / 2;
        let inv_freq = (0..half)
            .map(|i| {
                config
                    .rope_theta
                    .powf(-(2.0 * i as f32) / config.head_dim as f32)
            })
            .collect();
        Ok(Self {
            chat_template: file.meta_str("tokenizer.chat_template").map(str::to_owned),
            system_prompt: crate::default_system_prompt(file.meta_str("tokenizer.chat_template"))
                .map(str::to_owned),
            config,
            tokenizer,
            weights,
            embed_norms: std::sync::OnceLock::new(),
            inv_freq,
            // llama.cpp's trade-off by default: 8-bit activations make decoding ~1.5× faster here (the README's
            // LLM section has the measured speed and fidelity of both).
            product: Product {
                activations: Activations::Q8,
                ..Product::default()
            },
        })
    }

    /// How quantised products treat activations: rounded to 8 bits per block (default, llama.cpp's choice)
    /// or kept in f32 (slower, and exact up to summation order: see the README's LLM section).
    pub fn set_activations(&mut self, activations: Activations) {
        self.product.activations = activations;
    }

    pub fn activations(&self) -> Activations {
        self.product.activations
    }

    /// Token ids around an embedding slot in this model's chat prompt (see [`crate::slot_prompt_ids`]).
    pub fn slot_prompt_ids(&self, prompt: &crate::SlotPrompt) -> (Vec<u32>, Vec<u32>) {
        crate::slot_prompt_ids_with_examples(
            &self.tokenizer,
            self.system_prompt.as_deref(),
            prompt.instruction.as_deref(),
            prompt.answer_prefix.as_deref(),
            &prompt.examples,
        )
    }

    /// Bytes of weight data one decoding step reads (every matrix once, the output head included).
    pub fn weight_bytes(&self) -> usize {
        let layers: usize = self
            .weights
            .blocks
            .iter()
            .map(|l| {
                [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down]
                    .iter()
                    .map(|m| m.weight_bytes())
                    .sum::<usize>()
            })
            .sum();
        layers + self.weights.head().weight_bytes()
    }

    /// Input embeddings of `ids`: `ids.len() × hidden_size`, row-major. These are the EmbedLink targets.
    pub fn embed_tokens(&self, ids: &[u32]) -> Result<Vec<f32>, LlmError> {
        let mut out = Vec::with_capacity(ids.len() * self.config.hidden_size);
        for &id in ids {
            if id as usize >= self.config.vocab_size {
                return Err(LlmError::Shape(format!(
                    "token id {id} ≥ vocabulary size {}",
                    self.config.vocab_size
                )));
            }
            out.extend(self.weights.embed.row_f32(id as usize));
        }
        Ok(out)
    }

    /// Runs `n` input embeddings (`n × hidden_size`: any mix of token and projected audio embeddings)
    /// after what `cache` holds, appends their keys/values, and returns the logits of the last position
    /// (`vocab`), or of every position (`n × vocab`) with `all_logits`.
    pub fn forward_embeds(
        &self,
        embeds: &[f32],
        n: usize,
        cache: &mut KvCache,
        all_logits: bool,
    ) -> Result<Vec<f32>, LlmError> {
        let c = &self.config;
        let d = c.hidden_size;
        if n == 0 || embeds.len() != n * d {
            return Err(LlmError::Shape(format!(
                "forward_embeds wants n × {d} values with n ≥ 1, got {} values for n = {n}",
                embeds.len()
            )));
        }
        if cache.kv_dim != c.kv_dim() || cache.keys.len() != self.weights.blocks.len() {
            return Err(LlmError::Shape(
                "the KV cache was made for another model".into(),
            ));
        }
        if cache.len + n > cache.capacity {
            return Err(LlmError::ContextFull {
                needed: cache.len + n,
                context: cache.capacity,
            });
        }
        // Run the pass on a rayon worker: the ~200 row-parallel products inside then fork from a worker's own
        // queue instead of waking the pool from outside each time (a quarter of decode time went to that).
        rayon::scope(|_| self.forward_layers(embeds, n, cache, all_logits))
    }

    fn forward_layers(
        &self,
        embeds: &[f32],
        n: usize,
        cache: &mut KvCache,
        all_logits: bool,
    ) -> Result<Vec<f32>, LlmError> {
        let c = &self.config;
        let d = c.hidden_size;
        let start = cache.len;
        let mut hidden = embeds.to_vec();
        let mut normed = vec![0.0; n * d];
        // (sin, cos) of pos·θᵢ for the new positions (`n × hd/2`): the same in every layer and head, so
        // made once per pass (a SmolLM2 token took ~11,500 `sin_cos` calls for 32 distinct values).
        let half = self.inv_freq.len();
        let rotations: Vec<(f32, f32)> = (start..start + n)
            .flat_map(|pos| {
                self.inv_freq
                    .iter()
                    .map(move |&freq| (pos as f32 * freq).sin_cos())
            })
            .collect();
        for (li, layer) in self.weights.blocks.iter().enumerate() {
            rms_norm(&hidden, &layer.attn_norm, c.rms_norm_eps, &mut normed);
            let mut q = vec![0.0; n * d];
            let mut k = vec![0.0; n * c.kv_dim()];
            let mut v = vec![0.0; n * c.kv_dim()];
            QMatrix::matmul_group(
                self.product,
                &normed,
                n,
                &mut [(&layer.q, &mut q), (&layer.k, &mut k), (&layer.v, &mut v)],
            )?;
            if let Some(bias) = &layer.qkv_bias {
                add_row_bias(&mut q, &bias.q);
                add_row_bias(&mut k, &bias.k);
                add_row_bias(&mut v, &bias.v);
            }
            for (t, turns) in rotations.chunks_exact(half.max(1)).enumerate() {
                self.rope(&mut q[t * d..(t + 1) * d], turns);
                self.rope(&mut k[t * c.kv_dim()..(t + 1) * c.kv_dim()], turns);
            }
            cache.keys[li].extend_from_slice(&k);
            cache.values[li].extend_from_slice(&v);
            let attended = self.attention(&q, n, start, &cache.keys[li], &cache.values[li]);
            let mut projected = vec![0.0; n * d];
            layer
                .o
                .matmul_with(self.product, &attended, n, &mut projected)?;
            hidden.iter_mut().zip(&projected).for_each(|(h, p)| *h += p);

            rms_norm(&hidden, &layer.ffn_norm, c.rms_norm_eps, &mut normed);
            let mut gate = vec![0.0; n * c.intermediate_size];
            let mut up = vec![0.0; n * c.intermediate_size];
            QMatrix::matmul_group(
                self.product,
                &normed,
                n,
                &mut [(&layer.gate, &mut gate), (&layer.up, &mut up)],
            )?;
            // SwiGLU: silu(gate) · up.
            gate.iter_mut()
                .zip(&up)
                .for_each(|(g, u)| *g = *g / (1.0 + (-*g).exp()) * u);
            layer
                .down
                .matmul_with(self.product, &gate, n, &mut projected)?;
            hidden.iter_mut().zip(&projected).for_each(|(h, p)| *h += p);
        }
        cache.len += n;
        let rows = if all_logits { 0..n } else { n - 1..n };
        let m = rows.len();
        rms_norm(
            &hidden[rows.start * d..],
            &self.weights.output_norm,
            c.rms_norm_eps,
            &mut normed[..m * d],
        );
        let mut logits = vec![0.0; m * c.vocab_size];
        self.weights
            .head()
            .matmul_with(self.product, &normed[..m * d], m, &mut logits)?;
        Ok(logits)
    }

    /// Rotates every head's dimension pairs by pos·θᵢ, `turns[i]` = (sin, cos) of pos·θᵢ. Llama: adjacent
    /// pairs (x₂ᵢ, x₂ᵢ₊₁), since llama.cpp's converter permuted the Q/K rows of the Hugging Face checkpoint
    /// so that this pairing equals HF's rotate-half on the original weights. Qwen2: the unpermuted rows, so
    /// (xᵢ, xᵢ₊hd/2) as in HF.
    fn rope(&self, x: &mut [f32], turns: &[(f32, f32)]) {
        let hd = self.config.head_dim;
        let half = hd / 2;
        let style = self.config.architecture.rope_style();
        for head in x.chunks_exact_mut(hd) {
            for (i, &(sin, cos)) in turns.iter().enumerate() {
                let (ia, ib) = match style {
                    RopeStyle::AdjacentPairs => (2 * i, 2 * i + 1),
                    RopeStyle::HalfSplit => (i, i + half),
                };
                let (a, b) = (head[ia], head[ib]);
                head[ia] = a * cos - b * sin;
                head[ib] = a * sin + b * cos;
            }
        }
    }

    /// Causal grouped-query attention of `n` new queries (`n × d`) over the cached keys/values
    /// (`(start + n) × kv_dim`); returns `n × d`.
    fn attention(
        &self,
        q: &[f32],
        n: usize,
        start: usize,
        keys: &[f32],
        values: &[f32],
    ) -> Vec<f32> {
        let c = &self.config;
        let (d, hd, kvd) = (c.hidden_size, c.head_dim, c.kv_dim());
        let group = c.num_attention_heads / c.num_key_value_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let heads = c.num_attention_heads;
        let mut out = vec![0.0; n * d];
        // One task per (query, head) pair, split over the pool: each pair's arithmetic is what the serial
        // loop did, in the same order, so the answers are unchanged bit for bit. Serial, this was a tenth of
        // a 383-token Qwen2.5-0.5B prefill on one core while the other idled.
        out.par_chunks_mut(hd)
            .enumerate()
            .with_min_len(ATTENTION_PAIRS_PER_TASK)
            .for_each_init(
                || Vec::with_capacity(start + n),
                |scores: &mut Vec<f32>, (pair, oh)| {
                    // Compiled for AVX2 where the CPU has it: the dot products and the weighted sum of
                    // values run 8 lanes wide instead of SSE's 4 (a fifth of a long SmolLM2 answer's
                    // decode time ran here), with the same operations in the same order.
                    tinyalign_quant::vectorized(
                        #[inline(always)]
                        || {
                            let (t, h) = (pair / heads, pair % heads);
                            let visible = start + t + 1;
                            let kvh = h / group;
                            let qh = &q[t * d + h * hd..t * d + (h + 1) * hd];
                            // A plain loop: `extend` over a mapped range is compiled out of line,
                            // without the features.
                            scores.resize(visible, 0.0);
                            for (j, s) in scores.iter_mut().enumerate() {
                                let kj = &keys[j * kvd + kvh * hd..j * kvd + (kvh + 1) * hd];
                                *s = tinyalign_quant::dot(qh, kj) * scale;
                            }
                            let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
                            let mut total = 0.0;
                            for s in scores.iter_mut() {
                                *s = (*s - max).exp();
                                total += *s;
                            }
                            for (j, &p) in scores.iter().enumerate() {
                                let vj = &values[j * kvd + kvh * hd..j * kvd + (kvh + 1) * hd];
                                let w = p / total;
                                oh.iter_mut().zip(vj).for_each(|(o, v)| *o += w * v);
                            }
                        },
                    )
                },
            );
        out
    }
}

/// Adds `bias` (`width` values) to every row of `x` (`n × width`).
fn add_row_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
    }
}

/// Row-wise RMSNorm of `x` (`n × d`, d = weight.len()) into `out`.
fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    for (row, dst) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mean_square = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (mean_square + eps).sqrt();
        for ((o, &v), &w) in dst.iter_mut().zip(row).zip(weight) {
            *o = v * inv * w;
        }
    }
}
