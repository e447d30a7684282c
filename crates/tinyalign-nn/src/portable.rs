//! GELU, LayerNorm and the bias add from dfdx's own ops, for backends without host kernels (CUDA). They
//! compile and are tested on the CPU against the host kernels and finite differences, so the GPU runs
//! code whose values and gradients are checked on every CI run.

use dfdx::prelude::*;

use crate::Taped2;
use crate::Tensor1;

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
        for (what, (a, b)) in ["value", "dx", "dgamma", "dbeta"]
            .iter()
            .zip(a.iter().zip(&b))
        {
            let worst = a
                .iter()
                .zip(b)
                .map(|(p, q)| (p - q).abs() / (1.0 + q.abs()))
                .fold(0.0f32, f32::max);
            assert!(worst < tolerance, "{what}: relative error {worst}");
        }
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
