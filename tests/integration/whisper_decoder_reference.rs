//! openai-whisper's `TextDecoder` (model.py) by plain f64 loops over a model file's tensors: the whole
//! prefix recomputed with a causal mask, no cache and no tinyalign kernel, as the reference the decoder's
//! KV-cached steps are checked against.

use tinyalign_weights::TensorMap;
use tinyalign_whisper::WhisperConfig;

/// The tensors by Hugging Face's `model.decoder.*` keys, read as f64 where they are used.
pub struct ReferenceDecoder<'a> {
    map: &'a TensorMap,
    config: &'a WhisperConfig,
}

type Rows = Vec<f64>;

impl<'a> ReferenceDecoder<'a> {
    pub fn new(map: &'a TensorMap, config: &'a WhisperConfig) -> Self {
        Self { map, config }
    }

    fn get(&self, key: &str) -> Rows {
        let t = self.map.get(&format!("model.decoder.{key}")).unwrap();
        t.data.iter().map(|&v| v as f64).collect()
    }

    /// `x W^T + b` with PyTorch's `weight` `(out, in)`.
    fn linear(&self, x: &[f64], key: &str, bias: bool) -> Rows {
        let w = self.get(&format!("{key}.weight"));
        let b = bias.then(|| self.get(&format!("{key}.bias")));
        let d_out = self
            .map
            .get(&format!("model.decoder.{key}.weight"))
            .unwrap()
            .shape[0];
        let d_in = w.len() / d_out;
        x.chunks(d_in)
            .flat_map(|row| {
                let (w, b) = (&w, &b);
                (0..d_out).map(move |o| {
                    let dot: f64 = row.iter().zip(&w[o * d_in..]).map(|(a, b)| a * b).sum();
                    dot + b.as_ref().map_or(0.0, |b| b[o])
                })
            })
            .collect()
    }

    fn layer_norm(&self, x: &[f64], key: &str) -> Rows {
        let (g, b) = (
            self.get(&format!("{key}.weight")),
            self.get(&format!("{key}.bias")),
        );
        x.chunks(g.len())
            .flat_map(|row| {
                let mean = row.iter().sum::<f64>() / row.len() as f64;
                let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / row.len() as f64;
                let inv = 1.0 / (var + 1e-5).sqrt();
                row.iter()
                    .enumerate()
                    .map(|(i, v)| (v - mean) * inv * g[i] + b[i])
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// `out(softmax(q kᵀ / √d_head [+ causal mask]) v)` per head, queries from `x`, keys and values from
    /// `memory` (`x` itself for self-attention).
    fn attention(&self, x: &[f64], memory: &[f64], key: &str, causal: bool) -> Rows {
        let d = self.config.d_model;
        let heads = self.config.decoder_attention_heads;
        let dh = d / heads;
        let q = self.linear(x, &format!("{key}.q_proj"), true);
        let k = self.linear(memory, &format!("{key}.k_proj"), false);
        let v = self.linear(memory, &format!("{key}.v_proj"), true);
        let (n_q, n_k) = (x.len() / d, memory.len() / d);
        let mut ctx = vec![0.0; n_q * d];
        for h in 0..heads {
            for i in 0..n_q {
                let visible = if causal { i + 1 } else { n_k };
                let scores: Vec<f64> = (0..visible)
                    .map(|j| {
                        (0..dh)
                            .map(|c| q[i * d + h * dh + c] * k[j * d + h * dh + c])
                            .sum::<f64>()
                            / (dh as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = exps.iter().sum();
                for c in 0..dh {
                    ctx[i * d + h * dh + c] = (0..visible)
                        .map(|j| exps[j] / total * v[j * d + h * dh + c])
                        .sum();
                }
            }
        }
        self.linear(&ctx, &format!("{key}.out_proj"), true)
    }

    /// One causal pass over `prefix`, cross-attending to `audio` `(frames, d)`: the logits `(vocab)` for the
    /// token after each position from `first` on (position `p` sees tokens `..=p` only).
    pub fn next_logits(&self, prefix: &[usize], audio: &[f32], first: usize) -> Vec<Vec<f32>> {
        let d = self.config.d_model;
        let (tokens, positions) = (
            self.get("embed_tokens.weight"),
            self.get("embed_positions.weight"),
        );
        let audio: Rows = audio.iter().map(|&v| v as f64).collect();
        let mut x: Rows = prefix
            .iter()
            .enumerate()
            .flat_map(|(p, &t)| (0..d).map(move |c| (t, p, c)))
            .map(|(t, p, c)| tokens[t * d + c] + positions[p * d + c])
            .collect();
        let add = |x: &mut Rows, y: Rows| x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
        for l in 0..self.config.decoder_layers {
            let layer = format!("layers.{l}");
            let h = self.layer_norm(&x, &format!("{layer}.self_attn_layer_norm"));
            add(
                &mut x,
                self.attention(&h, &h, &format!("{layer}.self_attn"), true),
            );
            let h = self.layer_norm(&x, &format!("{layer}.encoder_attn_layer_norm"));
            add(
                &mut x,
                self.attention(&h, &audio, &format!("{layer}.encoder_attn"), false),
            );
            let h = self.layer_norm(&x, &format!("{layer}.final_layer_norm"));
            let mut hidden = self.linear(&h, &format!("{layer}.fc1"), true);
            hidden.iter_mut().for_each(|v| *v = gelu(*v));
            add(&mut x, self.linear(&hidden, &format!("{layer}.fc2"), true));
        }
        let normed = self.layer_norm(&x[first * d..], "layer_norm");
        normed
            .chunks(d)
            .map(|state| {
                tokens
                    .chunks(d)
                    .map(|row| row.iter().zip(state).map(|(a, b)| a * b).sum::<f64>() as f32)
                    .collect()
            })
            .collect()
    }
}

/// `x Φ(x)` with erf by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7, far inside the tolerance
/// of the test that uses it).
fn gelu(x: f64) -> f64 {
    let z = (x / std::f64::consts::SQRT_2).abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = (1.0 - poly * (-z * z).exp()).copysign(x);
    0.5 * x * (1.0 + erf)
}

#[test]
fn gelu_reference_matches_known_values() {
    // Φ(1) = 0.841344746..., Φ(-2) = 0.022750131...
    assert!((gelu(1.0) - 0.841_344_746).abs() < 2e-7);
    assert!((gelu(-2.0) + 2.0 * 0.022_750_131).abs() < 4e-7);
    assert_eq!(gelu(0.0), 0.0);
}
