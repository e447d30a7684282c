//! The LLM's weights described once: which GGUF tensor each part of a block is and the shape the config
//! implies. Every backend (the CPU's quantised model, the wgpu model) fills the same structure through its
//! own loader, so a new architecture's weights are written here and nowhere else.

use crate::LlamaConfig;

/// Biases of the Q, K and V projections (Qwen2): `d`, `kv_dim`, `kv_dim` values.
#[derive(Debug)]
pub struct QkvBias<V> {
    pub q: V,
    pub k: V,
    pub v: V,
}

/// One decoder block. Matrices are `rows × cols` with one row per output (GGUF / PyTorch layout).
#[derive(Debug)]
pub struct BlockWeights<M, V> {
    pub attn_norm: V,
    /// `d × d`
    pub q: M,
    /// `kv_dim × d`
    pub k: M,
    /// `kv_dim × d`
    pub v: M,
    pub qkv_bias: Option<QkvBias<V>>,
    /// `d × d`
    pub o: M,
    pub ffn_norm: V,
    /// `ffn × d`
    pub gate: M,
    /// `ffn × d`
    pub up: M,
    /// `d × ffn`
    pub down: M,
}

/// Every weight of a Llama-family model (Llama, Qwen2).
#[derive(Debug)]
pub struct LlmWeights<M, V> {
    /// `vocab × d`; also the output head when the embeddings are tied (SmolLM2).
    pub embed: M,
    /// `vocab × d` when untied (Qwen2.5).
    pub output: Option<M>,
    pub output_norm: V,
    pub blocks: Vec<BlockWeights<M, V>>,
}

impl<M, V> LlmWeights<M, V> {
    /// Asks `matrix(name, rows, cols)` and `vector(name, len)` for each GGUF tensor the architecture has,
    /// with the shape `config` implies; the loaders check the stored shape against it.
    pub fn load_with<E>(
        config: &LlamaConfig,
        mut matrix: impl FnMut(&str, usize, usize) -> Result<M, E>,
        mut vector: impl FnMut(&str, usize) -> Result<V, E>,
    ) -> Result<Self, E> {
        let (d, kv, ff) = (
            config.hidden_size,
            config.kv_dim(),
            config.intermediate_size,
        );
        let embed = matrix("token_embd.weight", config.vocab_size, d)?;
        let output = if config.tie_word_embeddings {
            None
        } else {
            Some(matrix("output.weight", config.vocab_size, d)?)
        };
        let mut blocks = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let weight = |part: &str| format!("blk.{i}.{part}.weight");
            let bias = |part: &str| format!("blk.{i}.{part}.bias");
            let attn_norm = vector(&weight("attn_norm"), d)?;
            let q = matrix(&weight("attn_q"), d, d)?;
            let k = matrix(&weight("attn_k"), kv, d)?;
            let v = matrix(&weight("attn_v"), kv, d)?;
            let qkv_bias = if config.architecture.attention_bias() {
                Some(QkvBias {
                    q: vector(&bias("attn_q"), d)?,
                    k: vector(&bias("attn_k"), kv)?,
                    v: vector(&bias("attn_v"), kv)?,
                })
            } else {
                None
            };
            blocks.push(BlockWeights {
                attn_norm,
                q,
                k,
                v,
                qkv_bias,
                o: matrix(&weight("attn_output"), d, d)?,
                ffn_norm: vector(&weight("ffn_norm"), d)?,
                gate: matrix(&weight("ffn_gate"), ff, d)?,
                up: matrix(&weight("ffn_up"), ff, d)?,
                down: matrix(&weight("ffn_down"), d, ff)?,
            });
        }
        Ok(Self {
            embed,
            output,
            output_norm: vector("output_norm.weight", d)?,
            blocks,
        })
    }

    /// The output head: the untied matrix, else the embedding table.
    pub fn head(&self) -> &M {
        self.output.as_ref().unwrap_or(&self.embed)
    }
}
