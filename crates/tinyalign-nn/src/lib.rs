//! Runtime-shaped layers over dfdx 0.13. dfdx's own `nn` modules fix widths at compile time and have no
//! conv1d, masks or erf-GELU blocks; these layers are built from its tensor ops instead, so they run and
//! differentiate on any sizes read from a config file. Tensors are time-major: `(frames, channels)`.
//!
//! This is the only crate that imports dfdx; the rest of tinyalign sees [`Tensor2`] and friends.

mod layers;
mod weights;

pub use dfdx;
pub use layers::{Conv1d, Embedding, LayerNorm, Linear, MultiHeadAttention, causal_mask, gelu};
pub use weights::{NnError, Weights};

/// The compute device: dfdx's CPU backend (gemm + rayon).
pub type Device = dfdx::tensor::Cpu;
/// `(rows, cols)` f32 tensor without a gradient tape.
pub type Tensor2 = dfdx::tensor::Tensor<(usize, usize), f32, Device>;
/// `(n,)` f32 tensor.
pub type Tensor1 = dfdx::tensor::Tensor<(usize,), f32, Device>;
/// `(a, b, c)` f32 tensor.
pub type Tensor3 = dfdx::tensor::Tensor<(usize, usize, usize), f32, Device>;

/// A fresh CPU device.
pub fn cpu() -> Device {
    Device::default()
}

/// Host data of a tensor, row-major.
pub fn to_vec2(t: &Tensor2) -> Vec<f32> {
    t.as_vec()
}

/// A `(rows, cols)` tensor from row-major host data. Panics if the length does not match (an internal
/// invariant: callers build `data` for this shape).
pub fn from_vec2(dev: &Device, data: Vec<f32>, rows: usize, cols: usize) -> Tensor2 {
    use dfdx::tensor::TensorFromVec;
    assert_eq!(
        data.len(),
        rows * cols,
        "host data does not match ({rows}, {cols})"
    );
    dev.tensor_from_vec(data, (rows, cols))
}

/// `(rows, cols)` of a tensor.
pub fn shape2(t: &Tensor2) -> (usize, usize) {
    use dfdx::shapes::HasShape;
    *t.shape()
}

/// `a @ b` for `(m, k)` and `(k, n)`.
pub fn matmul(a: &Tensor2, b: &Tensor2) -> Tensor2 {
    use dfdx::tensor_ops::TryMatMul;
    a.clone().matmul(b.clone())
}

/// Row `row` of a `(rows, cols)` tensor as a `(1, cols)` tensor.
pub fn row(t: &Tensor2, row: usize) -> Tensor2 {
    use dfdx::prelude::{GatherTo, TensorFromVec};
    let dev = t.device().clone();
    let idx: dfdx::tensor::Tensor<(usize,), usize, Device> = dev.tensor_from_vec(vec![row], (1,));
    t.clone().gather(idx)
}

/// Row-major `(rows, cols)` host data transposed to `(cols, rows)`: PyTorch stores projections as
/// `(out, in)`, a plain `x @ W` wants `(in, out)`.
pub fn transpose_host(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(
        data.len(),
        rows * cols,
        "host data does not match ({rows}, {cols})"
    );
    let mut out = vec![0.0f32; data.len()];
    for (r, row) in data.chunks_exact(cols).enumerate() {
        for (c, &x) in row.iter().enumerate() {
            out[c * rows + r] = x;
        }
    }
    out
}
