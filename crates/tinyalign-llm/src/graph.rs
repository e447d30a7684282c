//! The same Llama as a differentiable dfdx graph over f32 (dequantised) weights: gradients flow to the input
//! embeddings while the weights stay frozen. This is what LLM-in-the-loop training back-propagates
//! through; inference uses [`crate::LlamaModel`], which is far faster.

use tinyalign_nn::{
    Device, Linear, Merge, RmsNorm, RotaryPairs, Tape, Taped2, Weights, fork,
    grouped_causal_attention, silu,
};
use tinyalign_weights::TensorMap;
use tinyalign_weights::gguf::GgufFile;

use crate::{LlamaConfig, LlmError};

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

impl LlamaGraph {
    /// Dequantises every tensor of a GGUF Llama (~540 MB of f32 for SmolLM2-135M, twice the head's 113 MB
    /// when tied, as the head is kept transposed).
    pub fn from_gguf(file: &GgufFile, dev: Device) -> Result<Self, LlmError> {
        let config = LlamaConfig::from_gguf(file)?;
        // Qwen2's biases and half-split RoPE are not in this graph yet: refuse rather than compute wrongly.
        config.require_architecture(
            &[crate::Architecture::Llama],
            "the differentiable LLM graph (LLM-in-the-loop training)",
        )?;
        let mut map = TensorMap::new(file.source_name.clone());
        for info in &file.tensors {
            map.insert(info.name.clone(), file.tensor(&info.name)?);
        }
        let w = Weights::new(&map, dev.clone());
        let (d, kv, ff) = (
            config.hidden_size,
            config.kv_dim(),
            config.intermediate_size,
        );
        let eps = f64::from(config.rms_norm_eps);
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let b = w.pp(format!("blk.{i}"));
            layers.push(GraphLayer {
                attn_norm: RmsNorm::load(&b.pp("attn_norm"), d, eps).map_err(nn_err)?,
                q: Linear::load(&b.pp("attn_q"), d, d, false).map_err(nn_err)?,
                k: Linear::load(&b.pp("attn_k"), d, kv, false).map_err(nn_err)?,
                v: Linear::load(&b.pp("attn_v"), d, kv, false).map_err(nn_err)?,
                o: Linear::load(&b.pp("attn_output"), d, d, false).map_err(nn_err)?,
                ffn_norm: RmsNorm::load(&b.pp("ffn_norm"), d, eps).map_err(nn_err)?,
                gate: Linear::load(&b.pp("ffn_gate"), d, ff, false).map_err(nn_err)?,
                up: Linear::load(&b.pp("ffn_up"), d, ff, false).map_err(nn_err)?,
                down: Linear::load(&b.pp("ffn_down"), ff, d, false).map_err(nn_err)?,
            });
        }
        // The tied head is the embedding table read as a PyTorch `Linear(d, vocab)` weight `(vocab, d)`.
        let head_name = if config.tie_word_embeddings {
            "token_embd"
        } else {
            "output"
        };
        let head = Linear::load(&w.pp(head_name), d, config.vocab_size, false).map_err(nn_err)?;
        Ok(Self {
            norm: RmsNorm::load(&w.pp("output_norm"), d, eps).map_err(nn_err)?,
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
