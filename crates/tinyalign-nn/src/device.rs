//! The backends the trainable layers run on. Training and inference on the CPU use the host-row kernels
//! (tinyalign-kernels, `taped.rs`); any other dfdx backend (CUDA, behind the `cuda` feature) runs the same layers
//! through dfdx's own tensor ops (`portable.rs`), so the weights, gradients and checkpoints are the same
//! on every device.

use dfdx::prelude::*;

use crate::Taped2;
use crate::Tensor1;

/// A dfdx backend the layers run on: dfdx's ops plus the three ops whose fast form is device-specific.
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
}

impl NnDevice for Cpu {
    const HOST_KERNELS: bool = true;

    fn gelu<T: Tape<f32, Self>>(x: Taped2<T, Self>) -> Taped2<T, Self> {
        if T::OWNS_TAPE {
            return crate::taped::gelu(x);
        }
        let shape = *x.shape();
        let mut values = x.as_vec();
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
}

#[cfg(feature = "cuda")]
impl NnDevice for Cuda {
    const HOST_KERNELS: bool = false;
}
