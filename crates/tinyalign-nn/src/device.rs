//! The backends the trainable layers run on. Training and inference on the CPU use the host-row kernels
//! (tinyalign-kernels, `taped.rs`); any other dfdx backend (CUDA, behind the `cuda` feature) runs the same layers
//! through dfdx's own tensor ops (`portable.rs`), so the weights, gradients and checkpoints are the same
//! on every device.

use dfdx::prelude::*;

use crate::{Taped2, Tensor1, Tensor2};

/// A dfdx backend the layers run on: dfdx's ops plus the eight ops whose fast form is device-specific.
/// Their defaults are the portable dfdx-op forms; the CPU overrides them with its host kernels.
pub trait NnDevice: dfdx::tensor_ops::Device<f32> + std::fmt::Debug {
    /// Inference passes (no tape) run on host rows with the CPU kernels instead of dfdx ops.
    const HOST_KERNELS: bool;

    /// Exact (erf) GELU, differentiable.
    fn gelu<T: Tape<f32, Self>>(x: Taped2<T, Self>) -> Taped2<T, Self> {
        crate::portable::gelu(x)
    }

    /// LayerNorm over the channel axis of `(n, d)`, with affine `gamma`, `beta` `(d)`.
    fn layer_norm<T: Tape<f32, Self>>(
        x: Taped2<T, Self>,
        gamma: &Tensor1<Self>,
        beta: &Tensor1<Self>,
        eps: f32,
    ) -> Taped2<T, Self> {
        crate::portable::layer_norm(x, gamma, beta, eps)
    }

    /// `x + bias` on every row: `(n, d)` + `(d)`.
    fn add_bias<T: Tape<f32, Self>>(x: Taped2<T, Self>, bias: &Tensor1<Self>) -> Taped2<T, Self> {
        crate::portable::add_bias(x, bias)
    }

    /// The gradient recorded for a contiguous `t` (a parameter) in `grads`, on the host (zeros when it took
    /// no part).
    fn host_grad<S: Shape>(grads: &mut Gradients<f32, Self>, t: &Tensor<S, f32, Self>) -> Vec<f32> {
        match grads.get_or_alloc_mut(t) {
            Ok(_) => crate::host_values(&grads.get(t)),
            Err(_) => vec![0.0; t.shape().num_elements()],
        }
    }

    /// `x W + b`: `x` `(n, d_in)`, `weight_t` `(d_in, d_out)`, `bias` `(d_out)`.
    fn linear<T: Tape<f32, Self>>(
        x: Taped2<T, Self>,
        weight_t: &Tensor2<Self>,
        bias: Option<&Tensor1<Self>>,
    ) -> Taped2<T, Self> {
        let y = x.matmul(weight_t.clone());
        match bias {
            Some(b) => Self::add_bias(y, b),
            None => y,
        }
    }

    /// RMSNorm over the channel axis of `(n, d)`: `x / √(mean(x²) + eps) ⊙ weight`.
    fn rms_norm<T: Tape<f32, Self>>(
        x: Taped2<T, Self>,
        weight: &Tensor1<Self>,
        eps: f32,
    ) -> Taped2<T, Self> {
        crate::portable::rms_norm(x, weight, eps)
    }

    /// `x` `(n, d)` with the rows whose `keep[row]` is false set to zero; their gradient is zero too.
    fn zero_rows<T: Tape<f32, Self>>(x: Taped2<T, Self>, keep: &[bool]) -> Taped2<T, Self> {
        crate::portable::zero_rows(x, keep)
    }

    /// Multi-head attention `softmax(q kᵀ/√d_head + key_bias) v` over `b` sequences of `n` frames: `q`, `k`,
    /// `v` `(b·n, d)`, `key_bias` `(b, n)` added to every score of a key → `(b·n, d)`.
    fn attention<T: Tape<f32, Self> + Merge<T>>(
        qkv: (Taped2<T, Self>, Taped2<T, Self>, Taped2<T, Self>),
        key_bias: &Tensor2<Self>,
        b_n_heads: (usize, usize, usize),
    ) -> Taped2<T, Self> {
        crate::portable::attention(qkv, key_bias, b_n_heads)
    }
}

impl NnDevice for Cpu {
    const HOST_KERNELS: bool = true;

    fn gelu<T: Tape<f32, Self>>(x: Taped2<T, Self>) -> Taped2<T, Self> {
        if T::OWNS_TAPE {
            return crate::taped::gelu(x);
        }
        let shape = *x.shape();
        let mut values = crate::host_values(&x);
        tinyalign_kernels::gelu_in_place(&mut values);
        x.device().tensor_from_vec(values, shape).retaped::<T>()
    }

    fn layer_norm<T: Tape<f32, Self>>(
        x: Taped2<T, Self>,
        gamma: &Tensor1<Self>,
        beta: &Tensor1<Self>,
        eps: f32,
    ) -> Taped2<T, Self> {
        crate::taped::layer_norm(x, gamma, beta, eps)
    }

    fn add_bias<T: Tape<f32, Self>>(x: Taped2<T, Self>, bias: &Tensor1<Self>) -> Taped2<T, Self> {
        crate::taped::add_bias(x, bias)
    }

    fn attention<T: Tape<f32, Self> + Merge<T>>(
        qkv: (Taped2<T, Self>, Taped2<T, Self>, Taped2<T, Self>),
        key_bias: &Tensor2<Self>,
        b_n_heads: (usize, usize, usize),
    ) -> Taped2<T, Self> {
        crate::taped::attention(qkv, key_bias, b_n_heads)
    }

    fn zero_rows<T: Tape<f32, Self>>(x: Taped2<T, Self>, keep: &[bool]) -> Taped2<T, Self> {
        crate::taped::zero_rows(x, keep)
    }

    fn rms_norm<T: Tape<f32, Self>>(
        x: Taped2<T, Self>,
        weight: &Tensor1<Self>,
        eps: f32,
    ) -> Taped2<T, Self> {
        crate::taped::rms_norm(x, weight, eps)
    }

    fn linear<T: Tape<f32, Self>>(
        x: Taped2<T, Self>,
        weight_t: &Tensor2<Self>,
        bias: Option<&Tensor1<Self>>,
    ) -> Taped2<T, Self> {
        crate::taped::linear(x, weight_t, bias)
    }

    /// One copy of the buffer (`grads.get` would clone it first, and a zero-filled copy would follow).
    fn host_grad<S: Shape>(grads: &mut Gradients<f32, Self>, t: &Tensor<S, f32, Self>) -> Vec<f32> {
        match grads.get_or_alloc_mut(t) {
            Ok(g) => g.to_vec(),
            Err(_) => vec![0.0; t.shape().num_elements()],
        }
    }
}

#[cfg(feature = "cuda")]
impl NnDevice for Cuda {
    const HOST_KERNELS: bool = false;
}
