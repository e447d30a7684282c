//! Whisper's text decoder (openai-whisper `TextDecoder`) and greedy transcription: token + learned position
//! embeddings → N × [x + self_attn(LN(x), causal); x + cross_attn(LN(x), audio); x + MLP(LN(x))] → LN →
//! logits against the (tied) token embedding table.
//!
//! Greedy decoding keeps every layer's self-attention keys and values ([`DecoderCache`], openai-whisper's
//! `kv_cache`) and the audio's cross-attention keys and values ([`AudioContext`]), so each step runs only
//! its new token: a step costs the same at the 40th token as at the first. The layers are frozen host
//! layers (tinyalign-kernels), their weights held once; `tests/integration/whisper_transcribe.rs` checks
//! the cached steps against a plain f64 recomputation of the whole prefix.

use std::path::Path;

use tinyalign_kernels::{HostAttention, HostLayerNorm, HostLinear, gelu_in_place};
use tinyalign_weights::TensorMap;

use crate::host_loader::HostLoader;
use crate::tokenizer::WhisperTokenizer;
use crate::{Features, WhisperConfig, WhisperError};

#[derive(Debug, Clone)]
struct DecoderLayer {
    self_norm: HostLayerNorm,
    self_attn: HostAttention,
    cross_norm: HostLayerNorm,
    cross_attn: HostAttention,
    mlp_norm: HostLayerNorm,
    fc1: HostLinear,
    fc2: HostLinear,
}

/// Cross-attention keys and values of one utterance's encoder output, per decoder layer: host rows
/// `(frames, d)` each, projected once per utterance.
#[derive(Debug, Clone)]
pub struct AudioContext {
    kv: Vec<(Vec<f32>, Vec<f32>)>,
}

/// Self-attention keys and values of the tokens decoded so far: per layer, host rows `(len, d)`.
#[derive(Debug, Clone)]
pub struct DecoderCache {
    layers: Vec<(Vec<f32>, Vec<f32>)>,
    len: usize,
}

impl DecoderCache {
    /// How many tokens the cache holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[derive(Debug, Clone)]
pub struct WhisperDecoder {
    config: WhisperConfig,
    /// `(vocab, d)`: the token table, held once: its rows are the input embeddings, and it is the tied
    /// output head. A one-row product through dfdx's gemm packed the whole 80 MB table again at every
    /// step; a row-parallel matrix-vector product reads it once.
    head: tinyalign_quant::QMatrix,
    /// `(max_target_positions, d)`: the learned positions as host rows.
    position_rows: Vec<f32>,
    layers: Vec<DecoderLayer>,
    final_norm: HostLayerNorm,
    suppress: Vec<usize>,
    begin_suppress: Vec<usize>,
}

impl WhisperDecoder {
    pub fn load(config: WhisperConfig, map: &TensorMap) -> Result<Self, WhisperError> {
        let w = HostLoader { map };
        let (d, ffn, vocab) = (config.d_model, config.decoder_ffn_dim, config.vocab_size);
        if config.decoder_layers == 0 || config.decoder_attention_heads == 0 || vocab == 0 {
            return Err(WhisperError::Config {
                path: "config.json".into(),
                message:
                    "decoder_layers, decoder_attention_heads and vocab_size are needed for decoding"
                        .into(),
            });
        }
        let heads = config.decoder_attention_heads;
        let layers = (0..config.decoder_layers)
            .map(|i| {
                let l = format!("model.decoder.layers.{i}");
                Ok(DecoderLayer {
                    self_norm: w.layer_norm(&format!("{l}.self_attn_layer_norm"), d)?,
                    self_attn: w.attention(&format!("{l}.self_attn"), d, heads)?,
                    cross_norm: w.layer_norm(&format!("{l}.encoder_attn_layer_norm"), d)?,
                    cross_attn: w.attention(&format!("{l}.encoder_attn"), d, heads)?,
                    mlp_norm: w.layer_norm(&format!("{l}.final_layer_norm"), d)?,
                    fc1: w.linear(&format!("{l}.fc1"), d, ffn, true)?,
                    fc2: w.linear(&format!("{l}.fc2"), ffn, d, true)?,
                })
            })
            .collect::<Result<Vec<_>, WhisperError>>()?;
        let head = tinyalign_quant::QMatrix::from_f32(
            vocab,
            d,
            w.get("model.decoder.embed_tokens.weight", &[vocab, d])?,
        )
        .map_err(|e| WhisperError::Config {
            path: map.source_name.clone(),
            message: e.to_string(),
        })?;
        let ids = |list: &[i64]| {
            list.iter()
                .filter_map(|&t| usize::try_from(t).ok())
                .filter(|&t| t < vocab)
                .collect()
        };
        Ok(Self {
            head,
            position_rows: w.get(
                "model.decoder.embed_positions.weight",
                &[config.max_target_positions, d],
            )?,
            final_norm: w.layer_norm("model.decoder.layer_norm", d)?,
            layers,
            suppress: ids(&config.suppress_tokens),
            begin_suppress: ids(&config.begin_suppress_tokens),
            config,
        })
    }

    /// Projects the encoder output `(frames, d)` into every layer's cross-attention keys and values.
    pub fn audio_context(&self, audio: &Features) -> AudioContext {
        AudioContext {
            kv: self
                .layers
                .iter()
                .map(|l| l.cross_attn.project_kv_rows(&audio.data))
                .collect(),
        }
    }

    /// An empty self-attention cache for [`Self::next_logits_cached`].
    pub fn new_cache(&self) -> DecoderCache {
        DecoderCache {
            layers: vec![(Vec::new(), Vec::new()); self.layers.len()],
            len: 0,
        }
    }

    /// Logits `(vocab)` for the token after the cached tokens and `new` (the prompt on the first call, then
    /// one token per step), whose keys and values join the cache.
    pub fn next_logits_cached(
        &self,
        new: &[usize],
        cache: &mut DecoderCache,
        audio: &AudioContext,
    ) -> Vec<f32> {
        // On a rayon worker: a step's ~50 row-parallel products then fork from that worker's own queue; forked
        // from outside the pool, each paid a sleep and wake of the calling thread (9–24 µs a fork on a 2-core
        // VM, against 2 µs from inside).
        rayon::scope(|_| {
            // One token at a time, even for the prompt: each then sees exactly the cached keys (no causal
            // mask), and every product is a single row, which the host kernels serve without packing any
            // operand.
            let mut last = Vec::new();
            for &token in new {
                last = self.step(token, cache, audio);
            }
            self.final_norm.forward_rows_in_place(&mut last);
            self.logits(&last)
        })
    }

    /// Runs `token` at the next position through every layer, appending its keys and values to the
    /// cache; → its final hidden state `(d)`, before the last LayerNorm.
    fn step(&self, token: usize, cache: &mut DecoderCache, audio: &AudioContext) -> Vec<f32> {
        let mut x = self.embed(&[token], cache.len);
        for ((layer, (audio_k, audio_v)), (keys, values)) in self
            .layers
            .iter()
            .zip(&audio.kv)
            .zip(cache.layers.iter_mut())
        {
            let mut h = x.clone();
            layer.self_norm.forward_rows_in_place(&mut h);
            let (k, v) = layer.self_attn.project_kv_rows(&h);
            keys.extend(k);
            values.extend(v);
            add_in_place(&mut x, &layer.self_attn.attend_rows(&h, keys, values));
            let mut h = x.clone();
            layer.cross_norm.forward_rows_in_place(&mut h);
            add_in_place(&mut x, &layer.cross_attn.attend_rows(&h, audio_k, audio_v));
            let mut h = x.clone();
            layer.mlp_norm.forward_rows_in_place(&mut h);
            let mut h = layer.fc1.forward_rows(&h);
            gelu_in_place(&mut h);
            add_in_place(&mut x, &layer.fc2.forward_rows(&h));
        }
        cache.len += 1;
        x
    }

    /// Rows `(tokens, d)`: each token's embedding plus its position's, positions counted from `start`.
    fn embed(&self, tokens: &[usize], start: usize) -> Vec<f32> {
        let d = self.config.d_model;
        let mut rows = Vec::with_capacity(tokens.len() * d);
        for (&t, p) in tokens.iter().zip(start..) {
            let mut row = self.head.row_f32(t);
            add_in_place(&mut row, &self.position_rows[p * d..(p + 1) * d]);
            rows.extend(row);
        }
        rows
    }

    /// The final hidden state `(d)` → logits `(vocab)` against the tied token table.
    fn logits(&self, last: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; self.head.rows()];
        self.head
            .matvec(last, &mut out)
            .expect("the head is (vocab, d) and the state (1, d)");
        out
    }

    /// Greedy decoding from `prompt`: ordinary text tokens and `<|endoftext|>` only, minus the configured
    /// suppressions (and, on the first step, the begin suppressions), until `<|endoftext|>`, `max_tokens` or
    /// the position table ends. Returns the generated ids without the prompt and the end token.
    pub fn greedy(
        &self,
        tokenizer: &WhisperTokenizer,
        audio: &AudioContext,
        max_tokens: usize,
    ) -> Vec<usize> {
        let eot = tokenizer.specials().eot;
        let mut tokens = tokenizer.transcribe_prompt();
        let start = tokens.len();
        let limit = (start + max_tokens).min(self.config.max_target_positions);
        let mut cache = self.new_cache();
        while tokens.len() < limit {
            let mut logits = self.next_logits_cached(&tokens[cache.len..], &mut cache, audio);
            // Timestamps and every other special token come after <|endoftext|>.
            for l in logits.iter_mut().skip(eot + 1) {
                *l = f32::NEG_INFINITY;
            }
            for &t in &self.suppress {
                logits[t] = f32::NEG_INFINITY;
            }
            if tokens.len() == start {
                for &t in &self.begin_suppress {
                    logits[t] = f32::NEG_INFINITY;
                }
            }
            let next = argmax(&logits);
            if next == eot {
                break;
            }
            tokens.push(next);
        }
        tokens.split_off(start)
    }
}

fn add_in_place(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

fn argmax(x: &[f32]) -> usize {
    x.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

/// The vocabulary beside a converted model: `dir/vocabulary.txt`, else the CTranslate2 folder above it.
pub fn find_vocabulary(dir: &Path) -> Option<std::path::PathBuf> {
    [dir.join("vocabulary.txt"), dir.join("../vocabulary.txt")]
        .into_iter()
        .find(|p| p.exists())
}
