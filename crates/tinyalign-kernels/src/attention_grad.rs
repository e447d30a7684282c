//! Multi-head attention for training: a forward pass that keeps the softmax probabilities, and the exact
//! backward pass from them. dfdx 0.13 builds the same attention from a dozen single-threaded tensor ops
//! (reshapes, permutes, a broadcast bias add, a five-op softmax), each with its own buffers forward and
//! backward; here each sequence is one task on rayon's pool and every product is one gemm call.
//!
//! Layout: `b` sequences of `n` frames as `(b·n, d)` rows, heads taking consecutive `d / heads` columns;
//! probabilities `(b, heads, n, n)`. Per sequence and head, with `s` the score scale (`1/√d_head`) and `β`
//! the key bias `(n)`:
//!
//! forward: `S = s·Q Kᵀ + β`, `P = softmax(S)` over keys, `O = P V`;
//! backward: `dV = Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ⊙ (dP − rowsum(dP ⊙ P))`, `dQ = s·dS K`, `dK = s·dSᵀ Q`
//! (the softmax Jacobian `diag(p) − p pᵀ` applied row by row).

use gemm::matmul_f32;
use rayon::prelude::*;

use crate::ops::{softmax_in_place, vectorized};

/// Sizes of one batched attention call: `b` sequences of `n` frames, width `d` over `heads` heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    pub b: usize,
    pub n: usize,
    pub d: usize,
    pub heads: usize,
}

impl AttentionShape {
    fn head_dim(&self) -> usize {
        self.d / self.heads
    }

    /// The score scale `1/√d_head`.
    pub fn scale(&self) -> f32 {
        1.0 / (self.head_dim() as f32).sqrt()
    }
}

/// `softmax(s·Q Kᵀ + key_bias) V` per sequence and head, for `q`, `k`, `v` `(b·n, d)` and `key_bias` `(b·n)`
/// (0 for a real frame, a large negative number for padding). → (output `(b·n, d)`, probabilities
/// `(b, heads, n, n)` for [`attention_backward`]).
pub fn attention_forward(
    (q, k, v): (&[f32], &[f32], &[f32]),
    key_bias: &[f32],
    shape: AttentionShape,
) -> (Vec<f32>, Vec<f32>) {
    let AttentionShape { b, n, d, heads } = shape;
    let dh = shape.head_dim();
    let scale = shape.scale();
    assert!(
        q.len() == b * n * d && k.len() == q.len() && v.len() == q.len() && key_bias.len() == b * n,
        "attention inputs do not match {shape:?}"
    );
    let mut out = vec![0.0f32; b * n * d];
    let mut probs = vec![0.0f32; b * heads * n * n];
    if n == 0 {
        return (out, probs);
    }
    out.par_chunks_mut(n * d)
        .zip(probs.par_chunks_mut(heads * n * n))
        .enumerate()
        .for_each(|(s, (out, probs))| {
            let rows = s * n * d;
            let bias = &key_bias[s * n..(s + 1) * n];
            for (h, p) in probs.chunks_exact_mut(n * n).enumerate() {
                let c0 = h * dh;
                // P (n, n) = Q_h (n, dh) · K_hᵀ (dh, n).
                matmul_f32(
                    (n, dh, n),
                    p,
                    n,
                    false,
                    (&q[rows + c0..], d, 1),
                    (&k[rows + c0..], 1, d),
                    1,
                );
                vectorized(
                    #[inline(always)]
                    || {
                        for row in p.chunks_exact_mut(n) {
                            row.iter_mut()
                                .zip(bias)
                                .for_each(|(x, b)| *x = *x * scale + b);
                            softmax_in_place(row);
                            flush_negligible(row);
                        }
                    },
                );
                // O_h (n, dh) = P (n, n) · V_h (n, dh).
                matmul_f32(
                    (n, n, dh),
                    &mut out[c0..],
                    d,
                    false,
                    (p, n, 1),
                    (&v[rows + c0..], d, 1),
                    1,
                );
            }
        });
    (out, probs)
}

/// Probabilities below this become exactly 0. A masked key's comes out of `exp`'s clamp and the softmax's
/// division as ~3.6e−39, a subnormal float, and the products with it, forward (`P V`) and backward (`dS`,
/// then `dS K`, `dSᵀ Q`), are subnormal too; x86 cores take a microcode assist per such operation: a padded
/// training batch ran its attention gemms several times slower than an unpadded one. The largest
/// probability of a row is at least 1/n, so what is dropped is below 1e−28 of it, far under f32's
/// resolution.
const NEGLIGIBLE_PROBABILITY: f32 = 1e-30;

#[inline(always)]
fn flush_negligible(row: &mut [f32]) {
    row.iter_mut().for_each(|p| {
        if *p < NEGLIGIBLE_PROBABILITY {
            *p = 0.0;
        }
    });
}

/// Gradients `(dq, dk, dv)`, each `(b·n, d)`, of [`attention_forward`]'s output given its upstream gradient
/// `grad_out` `(b·n, d)` and the probabilities it returned.
pub fn attention_backward(
    (q, k, v): (&[f32], &[f32], &[f32]),
    probs: &[f32],
    grad_out: &[f32],
    shape: AttentionShape,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let AttentionShape { b, n, d, heads } = shape;
    let dh = shape.head_dim();
    let scale = shape.scale();
    assert!(
        q.len() == b * n * d
            && k.len() == q.len()
            && v.len() == q.len()
            && grad_out.len() == q.len()
            && probs.len() == b * heads * n * n,
        "attention gradients do not match {shape:?}"
    );
    let (mut dq, mut dk, mut dv) = (
        vec![0.0f32; q.len()],
        vec![0.0f32; q.len()],
        vec![0.0f32; q.len()],
    );
    if n == 0 {
        return (dq, dk, dv);
    }
    dq.par_chunks_mut(n * d)
        .zip(dk.par_chunks_mut(n * d))
        .zip(dv.par_chunks_mut(n * d))
        .enumerate()
        .for_each(|(s, ((dq, dk), dv))| {
            let rows = s * n * d;
            let (q, k, v, grad_out) = (&q[rows..], &k[rows..], &v[rows..], &grad_out[rows..]);
            let mut grad_scores = vec![0.0f32; n * n];
            for h in 0..heads {
                let c0 = h * dh;
                let p = &probs[(s * heads + h) * n * n..(s * heads + h + 1) * n * n];
                // dV_h (n, dh) = Pᵀ (n, n) · dO_h (n, dh).
                matmul_f32(
                    (n, n, dh),
                    &mut dv[c0..],
                    d,
                    false,
                    (p, 1, n),
                    (&grad_out[c0..], d, 1),
                    1,
                );
                // dP (n, n) = dO_h (n, dh) · V_hᵀ (dh, n).
                matmul_f32(
                    (n, dh, n),
                    &mut grad_scores,
                    n,
                    false,
                    (&grad_out[c0..], d, 1),
                    (&v[c0..], 1, d),
                    1,
                );
                vectorized(
                    #[inline(always)]
                    || {
                        for (g, p) in grad_scores.chunks_exact_mut(n).zip(p.chunks_exact(n)) {
                            let dot: f32 = g.iter().zip(p).map(|(g, p)| g * p).sum();
                            g.iter_mut()
                                .zip(p)
                                .for_each(|(g, p)| *g = scale * p * (*g - dot));
                        }
                    },
                );
                // dQ_h (n, dh) = s·dS (n, n) · K_h (n, dh); dK_h = s·dSᵀ · Q_h (s already in dS).
                matmul_f32(
                    (n, n, dh),
                    &mut dq[c0..],
                    d,
                    false,
                    (&grad_scores, n, 1),
                    (&k[c0..], d, 1),
                    1,
                );
                matmul_f32(
                    (n, n, dh),
                    &mut dk[c0..],
                    d,
                    false,
                    (&grad_scores, 1, n),
                    (&q[c0..], d, 1),
                    1,
                );
            }
        });
    (dq, dk, dv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinyalign_testkit::{attention_reference, lcg};

    const SHAPE: AttentionShape = AttentionShape {
        b: 3,
        n: 7,
        d: 12,
        heads: 3,
    };

    /// Seeded inputs; the last two frames of sequence 1 are padding.
    fn inputs() -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let len = SHAPE.b * SHAPE.n * SHAPE.d;
        let mut bias = vec![0.0f32; SHAPE.b * SHAPE.n];
        bias[SHAPE.n + 5..2 * SHAPE.n].fill(-1e9);
        (lcg(len, 1), lcg(len, 2), lcg(len, 3), bias)
    }

    /// Σ w ⊙ attention(q, k, v) in f64 through the plain reference (scores scaled by 1/√d_head on q).
    fn weighted_loss(q: &[f32], k: &[f32], v: &[f32], bias: &[f32], w: &[f32]) -> f64 {
        let AttentionShape { b, n, d, heads } = SHAPE;
        let scale = SHAPE.scale();
        (0..b)
            .flat_map(|s| {
                let rows = s * n * d..(s + 1) * n * d;
                let q_scaled: Vec<f32> = q[rows.clone()].iter().map(|x| x * scale).collect();
                attention_reference(
                    &q_scaled,
                    &k[rows.clone()],
                    &v[rows],
                    (n, n, d),
                    heads,
                    Some(&bias[s * n..(s + 1) * n]),
                )
            })
            .zip(w)
            .map(|(o, w)| f64::from(o) * f64::from(*w))
            .sum()
    }

    #[test]
    fn forward_matches_the_reference() {
        let (q, k, v, bias) = inputs();
        let (out, probs) = attention_forward((&q, &k, &v), &bias, SHAPE);
        let n = SHAPE.n;
        for s in 0..SHAPE.b {
            let rows = s * n * SHAPE.d..(s + 1) * n * SHAPE.d;
            let q_scaled: Vec<f32> = q[rows.clone()].iter().map(|x| x * SHAPE.scale()).collect();
            let want = attention_reference(
                &q_scaled,
                &k[rows.clone()],
                &v[rows.clone()],
                (n, n, SHAPE.d),
                SHAPE.heads,
                Some(&bias[s * n..(s + 1) * n]),
            );
            for (got, want) in out[rows].iter().zip(&want) {
                assert!((got - want).abs() < 1e-5, "{got} vs {want}");
            }
        }
        // Each probability row sums to one, and padded keys get none.
        for (r, row) in probs.chunks_exact(n).enumerate() {
            let total: f32 = row.iter().sum();
            assert!((total - 1.0).abs() < 1e-5, "row {r} sums to {total}");
            let sequence = r / (SHAPE.heads * n);
            if sequence == 1 {
                assert!(row[5] == 0.0 && row[6] == 0.0, "padding got {row:?}");
            }
        }
    }

    /// Analytic gradients against central differences of the f64 reference, for every input value.
    #[test]
    fn backward_matches_finite_differences() {
        let (q, k, v, bias) = inputs();
        let w = lcg(q.len(), 9);
        let (_, probs) = attention_forward((&q, &k, &v), &bias, SHAPE);
        let (dq, dk, dv) = attention_backward((&q, &k, &v), &probs, &w, SHAPE);
        // Padded keys must not turn into subnormal floats (each costs a microcode assist in gemm).
        assert!(
            probs
                .iter()
                .chain(&dq)
                .chain(&dk)
                .chain(&dv)
                .all(|x| !x.is_subnormal()),
            "subnormal probabilities or gradients"
        );
        let h = 1e-2f32;
        for (which, analytic) in [dq, dk, dv].iter().enumerate() {
            for i in 0..q.len() {
                let at = |delta: f32| {
                    let mut inputs = [q.clone(), k.clone(), v.clone()];
                    inputs[which][i] += delta;
                    weighted_loss(&inputs[0], &inputs[1], &inputs[2], &bias, &w)
                };
                let numeric = (at(h) - at(-h)) / (2.0 * f64::from(h));
                assert!(
                    (f64::from(analytic[i]) - numeric).abs() < 2e-3,
                    "input {which}[{i}]: {} vs {numeric}",
                    analytic[i]
                );
            }
        }
    }
}
