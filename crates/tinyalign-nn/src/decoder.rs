//! The pieces of a Llama-style decoder as differentiable ops: RMSNorm, rotary embeddings on adjacent pairs,
//! causal grouped-query attention and SiLU. Full sequences only (no KV cache): this path exists so gradients
//! can flow through a frozen LLM to its input embeddings; fast generation lives in `tinyalign-llm`.

use dfdx::prelude::*;

use crate::Taped2;
use crate::weights::{Init, NnError, Weights};
use crate::{Device, NnDevice, Tensor1, Tensor2};

/// `x / √(mean(x²) + ε) · weight` over the channel axis.
#[derive(Debug, Clone)]
pub struct RmsNorm<D: NnDevice = Device> {
    key_prefix: String,
    weight: Tensor1<D>,
    eps: f64,
}

impl<D: NnDevice> RmsNorm<D> {
    pub fn load(w: &Weights<'_, D>, dim: usize, eps: f64) -> Result<Self, NnError> {
        Ok(Self {
            key_prefix: w.key(""),
            weight: w.param1("weight", dim, Init::Constant(1.0))?,
            eps,
        })
    }

    /// From its weight `(d)`, loaded elsewhere (keyed at the root for [`crate::Parameters`]).
    pub fn from_weight(weight: Tensor1<D>, eps: f64) -> Self {
        Self {
            key_prefix: String::new(),
            weight,
            eps,
        }
    }

    /// `(n, d)` → `(n, d)`.
    pub fn forward<T: Tape<f32, D>>(&self, x: Taped2<T, D>) -> Taped2<T, D> {
        D::rms_norm(x, &self.weight, self.eps as f32)
    }
}

impl<D: NnDevice> crate::params::Parameters<D> for RmsNorm<D> {
    fn visit(&mut self, f: &mut dyn FnMut(&str, crate::params::ParamTensor<'_, D>)) {
        let key = format!("{}weight", self.key_prefix);
        f(&key, crate::params::ParamTensor::Vector(&mut self.weight));
    }
}

/// Rotary position embedding that rotates adjacent pairs (x₂ᵢ, x₂ᵢ₊₁) of every head by pos·θ^(−2i/head_dim):
/// llama.cpp's layout, which GGUF Q/K weights are permuted for. Tables for positions `start..start + n`
/// over `width = heads · head_dim` channels.
#[derive(Debug, Clone)]
pub struct RotaryPairs {
    cos: Tensor2,
    sin: Tensor2,
    /// `(width, width)`: x·swap puts −x₂ᵢ₊₁ at 2i and x₂ᵢ at 2i+1.
    swap: Tensor2,
}

impl RotaryPairs {
    pub fn new(
        dev: &Device,
        start: usize,
        n: usize,
        width: usize,
        head_dim: usize,
        theta: f32,
    ) -> Self {
        let mut cos = Vec::with_capacity(n * width);
        let mut sin = Vec::with_capacity(n * width);
        for pos in start..start + n {
            for c in 0..width {
                let i = (c % head_dim) / 2;
                let angle = pos as f32 * theta.powf(-(2.0 * i as f32) / head_dim as f32);
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let mut swap = vec![0.0; width * width];
        for pair in 0..width / 2 {
            let (even, odd) = (2 * pair, 2 * pair + 1);
            swap[odd * width + even] = -1.0;
            swap[even * width + odd] = 1.0;
        }
        Self {
            cos: crate::from_vec2(dev, cos, n, width),
            sin: crate::from_vec2(dev, sin, n, width),
            swap: crate::from_vec2(dev, swap, width, width),
        }
    }

    /// `(n, width)` → `(n, width)`.
    pub fn forward<T: Tape<f32, Device>>(&self, x: Taped2<T>) -> Taped2<T> {
        let swapped = x.with_empty_tape().matmul(self.swap.clone());
        x * self.cos.clone() + swapped * self.sin.clone()
    }
}

/// Causal attention with `heads` query heads sharing `kv_heads` key/value heads (head h reads kv head
/// h / (heads / kv_heads)): q `(n, heads·hd)`, k and v `(n, kv_heads·hd)` → `(n, heads·hd)`.
pub fn grouped_causal_attention<T: Tape<f32, Device> + Merge<T>>(
    q: Taped2<T>,
    k: Taped2<T>,
    v: Taped2<T>,
    heads: usize,
    kv_heads: usize,
) -> Taped2<T> {
    let (n, width) = *q.shape();
    let (hd, group) = (width / heads, heads / kv_heads);
    let dev = q.device().clone();
    // Queries of one kv group stacked along time: (kv_heads, group·n, hd), row i is (head i / n, time i % n).
    let q = (q * (1.0 / (hd as f32).sqrt()))
        .reshape_like(&(n, kv_heads, group, hd))
        .permute::<_, Axes4<1, 2, 0, 3>>()
        .reshape_like(&(kv_heads, group * n, hd));
    let k = k
        .reshape_like(&(n, kv_heads, hd))
        .permute::<_, Axes3<1, 2, 0>>();
    let v = v
        .reshape_like(&(n, kv_heads, hd))
        .permute::<_, Axes3<1, 0, 2>>();
    let mask: Vec<f32> = (0..group * n * n)
        .map(|idx| if idx % n > (idx / n) % n { -1e9 } else { 0.0 })
        .collect();
    let mask = crate::from_vec2(&dev, mask, group * n, n);
    let scores = q.matmul(k) + mask.broadcast_like::<_, Axis<0>>(&(kv_heads, group * n, n));
    scores
        .softmax::<Axis<2>>()
        .matmul(v)
        .reshape_like(&(kv_heads, group, n, hd))
        .permute::<_, Axes4<2, 0, 1, 3>>()
        .reshape_like(&(n, width))
}

/// `x · sigmoid(x)`.
pub fn silu<T: Tape<f32, Device>>(x: Taped2<T>) -> Taped2<T> {
    x.with_empty_tape() * x.sigmoid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinyalign_testkit::lcg;
    use tinyalign_weights::{Tensor as HostTensor, TensorMap};

    /// Plain-Rust causal GQA with adjacent-pair RoPE applied to q and k first: the reference for the ops.
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        n: usize,
        heads: usize,
        kv_heads: usize,
        hd: usize,
    ) -> Vec<f32> {
        let rope = |x: &[f32], width: usize| {
            let mut out = x.to_vec();
            for t in 0..n {
                for c in (0..width).step_by(2) {
                    let angle =
                        t as f32 * 10_000f32.powf(-(((c % hd) / 2) as f32 * 2.0) / hd as f32);
                    let (a, b) = (x[t * width + c], x[t * width + c + 1]);
                    out[t * width + c] = a * angle.cos() - b * angle.sin();
                    out[t * width + c + 1] = a * angle.sin() + b * angle.cos();
                }
            }
            out
        };
        let (q, k) = (rope(q, heads * hd), rope(k, kv_heads * hd));
        let (w, kw) = (heads * hd, kv_heads * hd);
        let mut out = vec![0.0; n * w];
        for h in 0..heads {
            let g = h / (heads / kv_heads);
            for t in 0..n {
                let scores: Vec<f32> = (0..=t)
                    .map(|j| {
                        (0..hd)
                            .map(|c| q[t * w + h * hd + c] * k[j * kw + g * hd + c])
                            .sum::<f32>()
                            / (hd as f32).sqrt()
                    })
                    .collect();
                let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
                let total: f32 = scores.iter().map(|s| (s - max).exp()).sum();
                for (j, s) in scores.iter().enumerate() {
                    let p = (s - max).exp() / total;
                    for c in 0..hd {
                        out[t * w + h * hd + c] += p * v[j * kw + g * hd + c];
                    }
                }
            }
        }
        out
    }

    #[test]
    fn rope_and_grouped_attention_match_reference() {
        let dev = crate::cpu();
        for (n, heads, kv_heads, hd) in [(5, 4, 2, 4), (3, 3, 1, 6), (1, 2, 2, 2), (7, 6, 3, 4)] {
            let (w, kw) = (heads * hd, kv_heads * hd);
            let (q, k, v) = (lcg(n * w, 1), lcg(n * kw, 2), lcg(n * kw, 3));
            let rq = RotaryPairs::new(&dev, 0, n, w, hd, 10_000.0);
            let rk = RotaryPairs::new(&dev, 0, n, kw, hd, 10_000.0);
            let ours = grouped_causal_attention(
                rq.forward(crate::from_vec2(&dev, q.clone(), n, w)),
                rk.forward(crate::from_vec2(&dev, k.clone(), n, kw)),
                crate::from_vec2(&dev, v.clone(), n, kw),
                heads,
                kv_heads,
            );
            let want = reference(&q, &k, &v, n, heads, kv_heads, hd);
            for (a, b) in crate::to_vec2(&ours).iter().zip(&want) {
                assert!(
                    (a - b).abs() < 1e-5,
                    "n {n} heads {heads}/{kv_heads}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn rms_norm_and_silu_match_reference() {
        let dev = crate::cpu();
        let (n, d) = (3, 8);
        let (x, g) = (lcg(n * d, 5), lcg(d, 6));
        let mut map = TensorMap::new("test");
        map.insert("norm.weight", HostTensor::new(vec![d], g.clone()));
        let norm = RmsNorm::load(&Weights::new(&map, dev.clone()).pp("norm"), d, 1e-5).unwrap();
        let ours = crate::to_vec2(&silu(norm.forward(crate::from_vec2(&dev, x.clone(), n, d))));
        for t in 0..n {
            let row = &x[t * d..(t + 1) * d];
            let inv = 1.0 / (row.iter().map(|v| v * v).sum::<f32>() / d as f32 + 1e-5).sqrt();
            for c in 0..d {
                let y = row[c] * inv * g[c];
                let want = y / (1.0 + (-y).exp());
                assert!((ours[t * d + c] - want).abs() < 1e-6);
            }
        }
    }

    /// Gradients of the composed ops against central differences of the same ops.
    #[test]
    fn gradients_match_finite_differences() {
        let dev = crate::cpu();
        let (n, heads, kv_heads, hd) = (4, 4, 2, 4);
        let (w, kw) = (heads * hd, kv_heads * hd);
        let mut map = TensorMap::new("test");
        map.insert(
            "norm.weight",
            HostTensor::new(vec![w], lcg(w, 7).iter().map(|v| v + 1.0).collect()),
        );
        let norm = RmsNorm::load(&Weights::new(&map, dev.clone()).pp("norm"), w, 1e-5).unwrap();
        let (wk, wv) = (
            crate::from_vec2(&dev, lcg(w * kw, 8), w, kw),
            crate::from_vec2(&dev, lcg(w * kw, 9), w, kw),
        );
        let rq = RotaryPairs::new(&dev, 0, n, w, hd, 10_000.0);
        let rk = RotaryPairs::new(&dev, 0, n, kw, hd, 10_000.0);
        let weights = crate::from_vec2(&dev, lcg(n * w, 10), n, w);
        let scalar = |x: Taped2<OwnedTape<f32, Device>>| {
            let h = norm.forward(x);
            let q = rq.forward(h.with_empty_tape());
            let k = rk.forward(h.with_empty_tape().matmul(wk.clone()));
            let v = h.matmul(wv.clone());
            (silu(grouped_causal_attention(q, k, v, heads, kv_heads)) * weights.clone()).sum()
        };
        let x0 = lcg(n * w, 11);
        let x = crate::from_vec2(&dev, x0.clone(), n, w);
        let grads = scalar(x.clone().leaky_traced()).backward();
        let analytic = grads.get(&x).as_vec();
        for idx in [0, 5, 17, 33, 50, n * w - 1] {
            let eps = 1e-3;
            let at = |delta: f32| {
                let mut xs = x0.clone();
                xs[idx] += delta;
                scalar(crate::from_vec2(&dev, xs, n, w).leaky_traced()).as_vec()[0]
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            assert!(
                (numeric - analytic[idx]).abs() < 2e-3 + 2e-2 * numeric.abs(),
                "d/dx[{idx}]: numeric {numeric} vs analytic {}",
                analytic[idx]
            );
        }
    }
}
