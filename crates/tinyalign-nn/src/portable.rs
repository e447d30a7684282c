//! GELU, LayerNorm, RMSNorm, the bias add, attention and row masking from dfdx's own ops (and the linear layer's
//! matmul, in `NnDevice`'s default), for backends without host kernels (CUDA). They
//! compile and are tested on the CPU against the host kernels and finite differences, so the GPU runs
//! code whose values and gradients are checked on every CI run.

use dfdx::prelude::*;

use crate::{Taped2, Tensor1, Tensor2};

/// Exact (erf) GELU. dfdx's `accurate_gelu` has the exact forward value but the derivative
/// `Φ(x) + √2·x·φ(x)` instead of `Φ(x) + x·φ(x)`. Adding `k·(φ(x) − φ(x)⁰)`, where `φ(x)⁰` is the same
/// value off the tape and `k = √2 − 1`, adds exactly zero to the value and, since `φ′(x) = −x·φ(x)`,
/// `−(√2 − 1)·x·φ(x)` to the derivative: the correct one.
pub(crate) fn gelu<T: Tape<f32, D>, D: Device<f32>>(x: Taped2<T, D>) -> Taped2<T, D> {
    if !T::OWNS_TAPE {
        return x.accurate_gelu();
    }
    let k = std::f32::consts::SQRT_2 - 1.0;
    let constant = scaled_density(x.retaped::<NoneTape>(), k).retaped::<T>();
    let correction = scaled_density(x.with_empty_tape(), k) - constant;
    x.accurate_gelu() + correction
}

/// `scale · φ(x)`, the standard normal density.
fn scaled_density<T: Tape<f32, D>, D: Device<f32>>(x: Taped2<T, D>, scale: f32) -> Taped2<T, D> {
    let inv_sqrt_2pi = 0.5 * std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::FRAC_1_SQRT_2;
    (x.square() * -0.5).exp() * (scale * inv_sqrt_2pi)
}

/// `(x − mean) / √(var + ε) · γ + β` per row (biased variance, as PyTorch).
pub(crate) fn layer_norm<T: Tape<f32, D>, D: Device<f32>>(
    x: Taped2<T, D>,
    gamma: &Tensor1<D>,
    beta: &Tensor1<D>,
    eps: f32,
) -> Taped2<T, D> {
    let shape = *x.shape();
    x.normalize::<Axis<1>>(eps) * gamma.clone().broadcast_like::<_, Axis<0>>(&shape)
        + beta.clone().broadcast_like::<_, Axis<0>>(&shape)
}

/// Multi-head attention from dfdx ops: per head `softmax(q kᵀ/√d_head + key_bias) v`, `(b·n, d)` rows in
/// and out, `key_bias` `(b, n)`.
pub(crate) fn attention<T: Tape<f32, D> + Merge<T>, D: Device<f32>>(
    (q, k, v): (Taped2<T, D>, Taped2<T, D>, Taped2<T, D>),
    key_bias: &Tensor2<D>,
    (b, n, h): (usize, usize, usize),
) -> Taped2<T, D> {
    let d = q.shape().1;
    let dh = d / h;
    let q = (q * (1.0 / (dh as f64).sqrt()) as f32)
        .reshape_like(&(b, n, h, dh))
        .permute::<_, Axes4<0, 2, 1, 3>>();
    let k = k
        .reshape_like(&(b, n, h, dh))
        .permute::<_, Axes4<0, 2, 3, 1>>();
    let v = v
        .reshape_like(&(b, n, h, dh))
        .permute::<_, Axes4<0, 2, 1, 3>>();
    let bias = key_bias
        .clone()
        .broadcast_like::<_, Axes2<1, 2>>(&(b, h, n, n));
    (q.matmul(k) + bias)
        .softmax::<Axis<3>>()
        .matmul(v)
        .permute::<_, Axes4<0, 2, 1, 3>>()
        .reshape_like(&(b * n, d))
}

/// `x / √(mean(x²) + eps) ⊙ weight` per row.
pub(crate) fn rms_norm<T: Tape<f32, D>, D: Device<f32>>(
    x: Taped2<T, D>,
    weight: &Tensor1<D>,
    eps: f32,
) -> Taped2<T, D> {
    let shape = *x.shape();
    let values = x.with_empty_tape();
    let inv_rms = (x.square().mean::<(usize,), Axis<1>>() + eps)
        .sqrt()
        .recip();
    values
        * inv_rms.broadcast_like::<_, Axis<1>>(&shape)
        * weight.clone().broadcast_like::<_, Axis<0>>(&shape)
}

/// `x` with the rows whose `keep` is false set to zero: a product with a constant 0/1 mask.
pub(crate) fn zero_rows<T: Tape<f32, D>, D: Device<f32>>(
    x: Taped2<T, D>,
    keep: &[bool],
) -> Taped2<T, D> {
    let (n, d) = *x.shape();
    assert_eq!(keep.len(), n, "one keep flag per row");
    let mask: Vec<f32> = keep
        .iter()
        .flat_map(|&k| std::iter::repeat_n(if k { 1.0 } else { 0.0 }, d))
        .collect();
    let mask: Tensor2<D> = x.device().tensor_from_vec(mask, (n, d));
    x * mask
}

/// `x + bias` on every row.
pub(crate) fn add_bias<T: Tape<f32, D>, D: Device<f32>>(
    x: Taped2<T, D>,
    bias: &Tensor1<D>,
) -> Taped2<T, D> {
    let shape = *x.shape();
    x + bias.clone().broadcast_like::<_, Axis<0>>(&shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::grad_of;
    use crate::{Cpu, NnDevice, Tensor2, Traced2, from_vec2, traced, weighted_sum};
    use tinyalign_testkit::lcg;

    /// The largest relative difference `|a − b| / (1 + |b|)` of each named pair of results must stay under
    /// `tolerance`.
    fn assert_close(names: &[&str], a: &[Vec<f32>], b: &[Vec<f32>], tolerance: f32) {
        for (what, (a, b)) in names.iter().zip(a.iter().zip(b)) {
            assert_eq!(a.len(), b.len(), "{what}: lengths");
            let worst = a
                .iter()
                .zip(b)
                .map(|(p, q)| (p - q).abs() / (1.0 + q.abs()))
                .fold(0.0f32, f32::max);
            assert!(worst < tolerance, "{what}: relative error {worst}");
        }
    }

    /// An op under test: `(x, gamma, beta)` → output.
    type Op<'a> = &'a dyn Fn(Traced2, &Tensor1, &Tensor1) -> Traced2;

    /// Values and the gradients for `x`, `gamma`, `beta` of `Σ w ⊙ op(x)` for a portable op and the CPU
    /// host-kernel op it stands in for, on the same inputs (scaled to reach GELU's tails).
    fn compare(portable: Op<'_>, host: Op<'_>, tolerance: f32) {
        let dev = crate::cpu();
        let (n, d) = (37, 24);
        let x: Tensor2 = from_vec2(
            &dev,
            lcg(n * d, 11).iter().map(|v| v * 12.0).collect(),
            n,
            d,
        );
        let w: Tensor2 = from_vec2(&dev, lcg(n * d, 12), n, d);
        let gamma: Tensor1 =
            dev.tensor_from_vec(lcg(d, 13).iter().map(|v| 1.0 + v).collect(), (d,));
        let beta: Tensor1 = dev.tensor_from_vec(lcg(d, 14), (d,));
        let run = |op: Op<'_>| {
            let gamma_t = gamma.clone();
            let beta_t = beta.clone();
            let y = op(traced(&x), &gamma_t, &beta_t);
            let values = y.as_vec();
            let mut grads = weighted_sum(y, &w).backward();
            // A parameter the op does not use gets zeros.
            vec![
                values,
                grad_of(&mut grads, &x),
                grad_of(&mut grads, &gamma_t),
                grad_of(&mut grads, &beta_t),
            ]
        };
        let (a, b) = (run(portable), run(host));
        assert_close(&["value", "dx", "dgamma", "dbeta"], &a, &b, tolerance);
    }

    /// The CPU's recorded attention op against this dfdx-op chain: values and the gradients of q, k and v,
    /// with two padded keys in one sequence.
    #[test]
    fn attention_matches_the_host_kernel_in_value_and_gradients() {
        let dev = crate::cpu();
        let (b, n, d, h) = (3, 9, 16, 4);
        let make = |seed| -> Tensor2 {
            let values = lcg(b * n * d, seed).iter().map(|v| v * 3.0).collect();
            from_vec2(&dev, values, b * n, d)
        };
        let (q, k, v) = (make(21), make(22), make(23));
        let mut key_bias = vec![0.0; b * n];
        key_bias[n + 7..2 * n].fill(-1e9);
        let key_bias = from_vec2(&dev, key_bias, b, n);
        let w = make(24);
        let run = |host: bool| {
            let qkv = (traced(&q), traced(&k), traced(&v));
            let y = if host {
                Cpu::attention(qkv, &key_bias, (b, n, h))
            } else {
                attention(qkv, &key_bias, (b, n, h))
            };
            let values = y.as_vec();
            let mut grads = weighted_sum(y, &w).backward();
            [
                values,
                grad_of(&mut grads, &q),
                grad_of(&mut grads, &k),
                grad_of(&mut grads, &v),
            ]
        };
        let (portable, host) = (run(false), run(true));
        assert_close(&["value", "dq", "dk", "dv"], &portable, &host, 1e-5);
    }

    /// The CPU's recorded `x W + b` against dfdx's matmul and bias add: values and the gradients of x, W, b.
    #[test]
    fn linear_matches_the_host_kernel_in_value_and_gradients() {
        let dev = crate::cpu();
        let (n, d_in, d_out) = (37, 24, 19);
        let x = from_vec2(&dev, lcg(n * d_in, 31), n, d_in);
        let weight_t = from_vec2(&dev, lcg(d_in * d_out, 32), d_in, d_out);
        let bias: Tensor1 = dev.tensor_from_vec(lcg(d_out, 33), (d_out,));
        let w = from_vec2(&dev, lcg(n * d_out, 34), n, d_out);
        let run = |host: bool| {
            let y = if host {
                Cpu::linear(traced(&x), &weight_t, Some(&bias))
            } else {
                add_bias(traced(&x).matmul(weight_t.clone()), &bias)
            };
            let values = y.as_vec();
            let mut grads = weighted_sum(y, &w).backward();
            let dw = grad_of(&mut grads, &weight_t);
            [
                values,
                grad_of(&mut grads, &x),
                dw,
                grad_of(&mut grads, &bias),
            ]
        };
        let (portable, host) = (run(false), run(true));
        assert_close(&["value", "dx", "dw", "db"], &portable, &host, 1e-5);
    }

    #[test]
    fn rms_norm_matches_the_host_kernel_in_value_and_gradients() {
        compare(
            &|x, gamma, _| rms_norm(x, gamma, 1e-6),
            &|x, gamma, _| Cpu::rms_norm(x, gamma, 1e-6),
            1e-5,
        );
    }

    #[test]
    fn zero_rows_matches_the_host_kernel_in_value_and_gradient() {
        let keep: Vec<bool> = (0..37).map(|r| r % 5 != 2 && r < 33).collect();
        compare(
            &|x, _, _| zero_rows(x, &keep),
            &|x, _, _| Cpu::zero_rows(x, &keep),
            1e-7,
        );
    }

    #[test]
    fn gelu_matches_the_host_kernel_in_value_and_gradient() {
        // The host kernel's derivative is checked against finite differences (taped.rs). dfdx's
        // `accurate_gelu` alone misses by 4% (relative) in dx here, so this test tells them apart.
        compare(&|x, _, _| gelu(x), &|x, _, _| Cpu::gelu(x), 2e-5);
    }

    #[test]
    fn layer_norm_matches_the_host_kernel_in_value_and_gradients() {
        compare(
            &|x, g, b| layer_norm(x, g, b, 1e-5),
            &|x, g, b| Cpu::layer_norm(x, g, b, 1e-5),
            2e-5,
        );
    }

    #[test]
    fn bias_add_matches_the_host_kernel_in_value_and_gradients() {
        compare(
            &|x, _, b| add_bias(x, b),
            &|x, _, b| Cpu::add_bias(x, b),
            1e-6,
        );
    }
}
