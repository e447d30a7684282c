//! The same Llama-family LLM (llama, qwen2) as a differentiable dfdx graph over f32 (dequantised) weights:
//! gradients flow to the input embeddings while the weights stay frozen. This is what LLM-in-the-loop
//! training back-propagates through; inference uses [`crate::LlamaModel`], which is far faster.

use tinyalign_nn::{
    Device, Init, Linear, Merge, RmsNorm, RotaryPairs, Tape, Taped2, Tensor1, Weights, fork,
    grouped_causal_attention, silu,
};
use tinyalign_weights::gguf::GgufFile;
use tinyalign_weights::{Tensor, TensorMap};

use crate::{BlockWeights, LlamaConfig, LlmError, LlmWeights, RopeStyle};

#[derive(Debug)]
struct GraphLayer {
    attn_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ffn_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
}

#[derive(Debug)]
pub struct LlamaGraph {
    pub config: LlamaConfig,
    dev: Device,
    layers: Vec<GraphLayer>,
    norm: RmsNorm,
    /// `d → vocab`: the output head (the embedding table when tied).
    head: Linear,
}

fn nn_err(e: tinyalign_nn::NnError) -> LlmError {
    LlmError::Model(e.to_string())
}

/// Reorders the rows of a half-split (NEOX) Q or K projection, `(heads · head_dim, …)` with `cols` values a
/// row, so that each head's rotation pairs (i, i + head_dim/2) become adjacent (2i, 2i + 1): then the
/// graph's adjacent-pair RoPE computes Qwen2's rotation. Q·K is unchanged, as both sides move alike.
fn interleave_halves(t: &mut Tensor, head_dim: usize, cols: usize) {
    let half = head_dim / 2;
    let old = t.data.clone();
    for (h, head) in t.data.chunks_exact_mut(head_dim * cols).enumerate() {
        let base = h * head_dim * cols;
        for i in 0..half {
            for (new_row, old_row) in [(2 * i, i), (2 * i + 1, i + half)] {
                head[new_row * cols..(new_row + 1) * cols]
                    .copy_from_slice(&old[base + old_row * cols..base + (old_row + 1) * cols]);
            }
        }
    }
}

impl LlamaGraph {
    /// Dequantises every tensor of a GGUF Llama or Qwen2 (~540 MB of f32 for SmolLM2-135M, ~2.6 GB for
    /// Qwen2.5-0.5B: the output head twice as it is kept transposed, and Qwen's untied input table, which
    /// the graph never multiplies by, is loaded too because the shared description asks for it).
    pub fn from_gguf(file: &GgufFile, dev: Device) -> Result<Self, LlmError> {
        let config = LlamaConfig::from_gguf(file)?;
        config.require_architecture(
            &[crate::Architecture::Llama, crate::Architecture::Qwen2],
            "the differentiable LLM graph (LLM-in-the-loop training)",
        )?;
        let mut map = TensorMap::new(file.source_name.clone());
        for info in &file.tensors {
            let mut tensor = file.tensor(&info.name)?;
            let is_qk = info.name.contains(".attn_q.") || info.name.contains(".attn_k.");
            if config.architecture.rope_style() == RopeStyle::HalfSplit && is_qk {
                let cols = tensor.shape.get(1).copied().unwrap_or(1);
                interleave_halves(&mut tensor, config.head_dim, cols);
            }
            map.insert(info.name.clone(), tensor);
        }
        let w = Weights::new(&map, dev.clone());
        let weights: LlmWeights<Linear, Tensor1> = LlmWeights::load_with(
            &config,
            |name, rows, cols| {
                let prefix = name.strip_suffix(".weight").unwrap_or(name);
                Linear::load(&w.pp(prefix), cols, rows, false).map_err(nn_err)
            },
            |name, len| {
                let (prefix, leaf) = name.rsplit_once('.').unwrap_or(("", name));
                w.pp(prefix)
                    .param1(leaf, len, Init::Constant(0.0))
                    .map_err(nn_err)
            },
        )?;
        let eps = f64::from(config.rms_norm_eps);
        let norm = |weight| RmsNorm::from_weight(weight, eps);
        let layers = weights
            .blocks
            .into_iter()
            .map(|b: BlockWeights<Linear, Tensor1>| {
                let (q, k, v) = match b.qkv_bias {
                    Some(bias) => (
                        b.q.with_bias(bias.q),
                        b.k.with_bias(bias.k),
                        b.v.with_bias(bias.v),
                    ),
                    None => (b.q, b.k, b.v),
                };
                GraphLayer {
                    attn_norm: norm(b.attn_norm),
                    q,
                    k,
                    v,
                    o: b.o,
                    ffn_norm: norm(b.ffn_norm),
                    gate: b.gate,
                    up: b.up,
                    down: b.down,
                }
            })
            .collect();
        // The tied head is the embedding table read as a PyTorch `Linear(d, vocab)` weight `(vocab, d)`.
        let head = weights.output.unwrap_or(weights.embed);
        Ok(Self {
            norm: norm(weights.output_norm),
            config,
            dev,
            layers,
            head,
        })
    }

    pub fn device(&self) -> &Device {
        &self.dev
    }

    /// Logits `(n, vocab)` of a whole sequence of input embeddings `(n, d)` at positions `0..n`, causally.
    /// With a traced input, `backward` on a loss of these logits yields the gradient for the embeddings.
    pub fn forward<T: Tape<f32, Device> + Merge<T>>(&self, embeds: Taped2<T>) -> Taped2<T> {
        let c = &self.config;
        let n = tinyalign_nn::dims(&embeds).0;
        let rope_q = RotaryPairs::new(&self.dev, 0, n, c.hidden_size, c.head_dim, c.rope_theta);
        let rope_k = RotaryPairs::new(&self.dev, 0, n, c.kv_dim(), c.head_dim, c.rope_theta);
        let mut hidden = embeds;
        for layer in &self.layers {
            let h = layer.attn_norm.forward(fork(&hidden));
            let q = rope_q.forward(layer.q.forward(fork(&h)));
            let k = rope_k.forward(layer.k.forward(fork(&h)));
            let v = layer.v.forward(h);
            let attended =
                grouped_causal_attention(q, k, v, c.num_attention_heads, c.num_key_value_heads);
            hidden = hidden + layer.o.forward(attended);
            let h = layer.ffn_norm.forward(fork(&hidden));
            let gated = silu(layer.gate.forward(fork(&h))) * layer.up.forward(h);
            hidden = hidden + layer.down.forward(gated);
        }
        self.head.forward(self.norm.forward(hidden))
    }
}
