//! Attention whose keys and values are kept apart from its queries: a decoder's self-attention over its
//! KV cache, and cross-attention over an encoder's output projected once per utterance.

use crate::layers::{HostLinear, attention_width};
use crate::ops::attention;

/// Multi-head attention with PyTorch's `q_proj`, `k_proj`, `v_proj`, `out_proj` held separately (the
/// keys and values are made once and reused, so there is nothing to pack).
#[derive(Debug, Clone)]
pub struct HostAttention {
    q: HostLinear,
    k: HostLinear,
    v: HostLinear,
    out: HostLinear,
    heads: usize,
}

impl HostAttention {
    /// From the four projections, each `(d, d)`. Panics if `heads` does not divide `d` or a projection is
    /// not `(d, d)`.
    pub fn new([q, k, v]: [HostLinear; 3], out: HostLinear, heads: usize) -> Self {
        attention_width([&q, &k, &v, &out], heads);
        Self {
            q,
            k,
            v,
            out,
            heads,
        }
    }

    /// Model width `d`.
    pub fn dim(&self) -> usize {
        self.out.in_dim()
    }

    /// Keys and values of `x` `(n, d)`, as rows `(n, d)` each: what a KV cache appends, or an encoder
    /// output's cross-attention memory.
    pub fn project_kv_rows(&self, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
        (self.k.forward_rows(x), self.v.forward_rows(x))
    }

    /// Queries from `x` `(n_q, d)` over key/value rows `(n_k, d)` from [`Self::project_kv_rows`], every
    /// query seeing every key (a decoder running one token at a time appends its own key first):
    /// `out(softmax(q kᵀ / √d_head) v)` per head. → `(n_q, d)`.
    pub fn attend_rows(&self, x: &[f32], keys: &[f32], values: &[f32]) -> Vec<f32> {
        let d = self.dim();
        let (n_q, n_k) = (x.len() / d, keys.len() / d);
        // Scaled after the projection, as openai-whisper does (not folded into W_q).
        let scale = (1.0 / ((d / self.heads) as f64).sqrt()) as f32;
        let mut q = self.q.forward_rows(x);
        q.iter_mut().for_each(|v| *v *= scale);
        let ctx = attention((&q, keys, values), d, (n_q, n_k, d), self.heads, None);
        self.out.forward_rows(&ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinyalign_testkit::{attention_reference, lcg};

    fn projection(d: usize, seed: u32, bias: bool) -> HostLinear {
        let b = bias.then(|| lcg(d, seed + 100));
        HostLinear::from_torch(&lcg(d * d, seed), b, d, d)
    }

    #[test]
    fn cached_keys_give_the_definition_of_attention() {
        let (d, heads, n_q, n_k) = (8, 2, 3, 5);
        let attn = HostAttention::new(
            [
                projection(d, 1, true),
                projection(d, 2, false),
                projection(d, 3, true),
            ],
            projection(d, 4, true),
            heads,
        );
        let (x, memory) = (lcg(n_q * d, 5), lcg(n_k * d, 6));
        let (keys, values) = attn.project_kv_rows(&memory);
        let got = attn.attend_rows(&x, &keys, &values);

        let scale = 1.0 / ((d / heads) as f32).sqrt();
        let q: Vec<f32> = projection(d, 1, true)
            .forward_rows(&x)
            .iter()
            .map(|v| v * scale)
            .collect();
        let ctx = attention_reference(&q, &keys, &values, (n_q, n_k, d), heads, None);
        let want = projection(d, 4, true).forward_rows(&ctx);
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-6, "max abs error {err}");
        // The keys are the memory's rows through k_proj alone (no bias).
        assert_eq!(keys, projection(d, 2, false).forward_rows(&memory));
    }
}
