//! Training losses on `(rows, width)` tensors that may carry a tape; each returns a scalar that
//! differentiates back into `pred`/`logits`.

use dfdx::prelude::*;

use crate::{NnDevice, Scalar, Taped2, Tensor1, Tensor2, dims, fork, from_vec2, weighted_sum};

/// `Σ mask·(pred − target)² / Σ mask`: mean squared error over the entries `mask` (0/1, pred's shape)
/// keeps.
pub fn masked_mse<T: Tape<f32, D>, D: NnDevice>(
    pred: Taped2<T, D>,
    target: &Tensor2<D>,
    mask: &Tensor2<D>,
) -> Scalar<T, D> {
    use dfdx::tensor_ops::SumTo;
    let kept: f32 = crate::host_values(mask).iter().sum();
    ((pred - target.clone()).square() * mask.clone()).sum() / kept.max(1.0)
}

/// Mean next-token cross-entropy `−(1/k) Σ log softmax(logits[pos])[token]` over the `k` `(pos, token)`
/// pairs; `logits` `(n, vocab)`. Other positions do not count.
pub fn token_cross_entropy<T: Tape<f32, D>, D: NnDevice>(
    logits: Taped2<T, D>,
    targets: &[(usize, usize)],
) -> Scalar<T, D> {
    let (n, vocab) = dims(&logits);
    let mut weights = vec![0.0; n * vocab];
    let share = 1.0 / targets.len().max(1) as f32;
    for &(pos, token) in targets {
        weights[pos * vocab + token] -= share;
    }
    let weights = from_vec2(logits.device(), weights, n, vocab);
    weighted_sum(logits.log_softmax::<dfdx::shapes::Axis<1>>(), &weights)
}

/// `Σᵢ wᵢ·(1 − cos(predᵢ, targetᵢ)) / Σᵢ wᵢ` over the rows of `pred` `(n, d)`, with row weights `w` `(n)`.
pub fn weighted_cosine_distance<T: Tape<f32, D> + Merge<T>, D: NnDevice>(
    pred: Taped2<T, D>,
    target: &Tensor2<D>,
    row_weights: &[f32],
) -> Scalar<T, D> {
    use dfdx::tensor_ops::SumTo;
    let (n, cols) = dims(&pred);
    let dev = pred.device().clone();
    let target_host = crate::host_values(target);
    let target_norms: Vec<f32> = target_host
        .chunks_exact(cols)
        .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12))
        .collect();
    let target_norms: Tensor1<D> = dev.tensor_from_vec(target_norms, (n,));
    let weights: Tensor1<D> = dev.tensor_from_vec(row_weights.to_vec(), (n,));
    let total: f32 = row_weights.iter().sum();
    let dots = (fork(&pred) * target.clone()).sum::<(usize,), dfdx::shapes::Axis<1>>();
    let norms = (pred.square().sum::<(usize,), dfdx::shapes::Axis<1>>() + 1e-12).sqrt();
    let cosines = dots / (norms * target_norms);
    ((cosines.negate() + 1.0) * weights).sum() / total.max(1e-12)
}

#[cfg(test)]
mod tests {
    use tinyalign_testkit::lcg;

    /// Loss values against plain-Rust formulas, and their gradients against central differences.
    #[test]
    fn losses_match_reference_values_and_gradients() {
        let dev = crate::cpu();
        let (n, d) = (3, 4);
        let (p0, t0) = (lcg(n * d, 31), lcg(n * d, 32));
        let weights = [1.0, 0.0, 0.5];
        let mask: Vec<f32> = (0..n * d).map(|i| weights[i / d]).collect();
        let target = crate::from_vec2(&dev, t0.clone(), n, d);
        let mask_t = crate::from_vec2(&dev, mask.clone(), n, d);
        let value = |p: &[f32]| {
            let x = crate::from_vec2(&dev, p.to_vec(), n, d);
            let cos = crate::scalar_value(&crate::weighted_cosine_distance(
                crate::traced(&x),
                &target,
                &weights,
            ));
            let mse = crate::scalar_value(&crate::masked_mse(crate::traced(&x), &target, &mask_t));
            (cos, mse)
        };
        let (cos, mse) = value(&p0);
        let mut want_cos = 0.0;
        for r in 0..n {
            let (a, b) = (&p0[r * d..(r + 1) * d], &t0[r * d..(r + 1) * d]);
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
            want_cos += weights[r] * (1.0 - dot / (norm(a) * norm(b)));
        }
        want_cos /= weights.iter().sum::<f32>();
        let want_mse = p0
            .iter()
            .zip(&t0)
            .zip(&mask)
            .map(|((a, b), m)| m * (a - b) * (a - b))
            .sum::<f32>()
            / mask.iter().sum::<f32>();
        assert!(
            (cos - want_cos).abs() < 1e-6 && (mse - want_mse).abs() < 1e-6,
            "{cos} {want_cos} {mse} {want_mse}"
        );

        let x = crate::from_vec2(&dev, p0.clone(), n, d);
        let loss = crate::weighted_cosine_distance(crate::traced(&x), &target, &weights)
            + crate::masked_mse(crate::traced(&x), &target, &mask_t);
        let analytic = crate::gradient(loss, &x);
        for idx in 0..n * d {
            let eps = 1e-3;
            let at = |delta: f32| {
                let mut p = p0.clone();
                p[idx] += delta;
                let (c, m) = value(&p);
                c + m
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            assert!(
                (numeric - analytic[idx]).abs() < 2e-3,
                "d/dp[{idx}]: {numeric} vs {}",
                analytic[idx]
            );
        }
    }
}
