//! Runtime-shaped layers over dfdx 0.13. dfdx's own `nn` modules fix widths at compile time and have no
//! conv1d, masks or erf-GELU blocks; these layers are built from its tensor ops instead, so they run and
//! differentiate on any sizes read from a config file. Tensors are time-major: `(frames, channels)`.
//!
//! This is the only crate that imports dfdx; the rest of tinyalign sees [`Tensor2`] and friends.

mod decoder;
mod layers;
mod params;
#[cfg(test)]
mod test_data;
mod weights;

pub use decoder::{RmsNorm, RotaryPairs, grouped_causal_attention, silu};
pub use dfdx;
/// Tape types for writing code generic over inference (`NoneTape`) and training (`OwnedTape`).
pub use dfdx::tensor::{Gradients, Merge, NoneTape, OwnedTape, Tape};
pub use layers::{
    Conv1d, Embedding, LayerNorm, Linear, MultiHeadAttention, Taped2, causal_mask, gelu, mix_frames,
};
pub use params::{AdamW, ParamTensor, Parameters, StepReport, parameter_count, state_dict};
pub use weights::{Init, Initializer, NnError, Weights};

/// The compute device: dfdx's CPU backend (gemm + rayon).
pub type Device = dfdx::tensor::Cpu;
/// `(rows, cols)` f32 tensor without a gradient tape.
pub type Tensor2 = dfdx::tensor::Tensor<(usize, usize), f32, Device>;
/// `(n,)` f32 tensor.
pub type Tensor1 = dfdx::tensor::Tensor<(usize,), f32, Device>;
/// `(a, b, c)` f32 tensor.
///
/// Built from host data with [`from_vec3`].
pub type Tensor3 = dfdx::tensor::Tensor<(usize, usize, usize), f32, Device>;

/// A fresh CPU device.
pub fn cpu() -> Device {
    Device::default()
}

/// A `(a, b, c)` tensor from row-major host data.
pub fn from_vec3(dev: &Device, data: Vec<f32>, shape: (usize, usize, usize)) -> Tensor3 {
    use dfdx::tensor::TensorFromVec;
    dev.tensor_from_vec(data, shape)
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

/// A second use of `x` in a graph: the same values and gradient identity with an empty tape. Ops on the fork
/// record their own tape, which merges back when the branch is combined with `x`'s (dfdx's idiom for
/// using one tensor twice).
pub fn fork<T: Tape<f32, Device>>(x: &Taped2<T>) -> Taped2<T> {
    use dfdx::tensor::WithEmptyTape;
    x.with_empty_tape()
}

/// `(rows, cols)` of a possibly taped tensor.
pub fn dims<T>(x: &Taped2<T>) -> (usize, usize) {
    use dfdx::shapes::HasShape;
    *x.shape()
}

/// A scalar that may carry a tape (a loss).
pub type Scalar<T> = dfdx::tensor::Tensor<(), f32, Device, T>;
/// A `(rows, cols)` tensor recording the operations applied to it, for `backward`.
pub type Traced2 = Taped2<OwnedTape<f32, Device>>;

/// Starts recording at `x`: gradients of everything computed from the result flow back to `x`.
pub fn traced(x: &Tensor2) -> Traced2 {
    use dfdx::tensor::Trace;
    x.clone().leaky_traced()
}

/// `Σ x ⊙ weights` (a constant `weights` of `x`'s shape): e.g. picks logits with a one-hot mask.
pub fn weighted_sum<T: Tape<f32, Device>>(x: Taped2<T>, weights: &Tensor2) -> Scalar<T> {
    use dfdx::tensor_ops::SumTo;
    (x * weights.clone()).sum()
}

/// Host value of a scalar.
pub fn scalar_value<T>(x: &Scalar<T>) -> f32 {
    x.as_vec()[0]
}

/// Back-propagates `loss` and returns the gradient for `wrt` (row-major, `wrt`'s shape).
pub fn gradient(loss: Scalar<OwnedTape<f32, Device>>, wrt: &Tensor2) -> Vec<f32> {
    use dfdx::tensor_ops::Backward;
    loss.backward().get(wrt).as_vec()
}

/// The same values viewed as `(rows, cols)` (row-major; rows·cols must equal the element count).
pub fn reshape_rows<T: Tape<f32, Device>>(x: Taped2<T>, rows: usize, cols: usize) -> Taped2<T> {
    use dfdx::tensor_ops::ReshapeTo;
    x.reshape_like(&(rows, cols))
}

/// `max(x, 0)`.
pub fn relu<T: Tape<f32, Device>>(x: Taped2<T>) -> Taped2<T> {
    x.relu()
}

/// Element-wise product with a constant of the same shape (masks).
pub fn mul_const<T: Tape<f32, Device>>(x: Taped2<T>, c: &Tensor2) -> Taped2<T> {
    x * c.clone()
}

/// Back-propagates `loss`, returning every gradient (for an optimiser step).
pub fn backward(loss: Scalar<OwnedTape<f32, Device>>) -> Gradients<f32, Device> {
    use dfdx::tensor_ops::Backward;
    loss.backward()
}

/// Whether `param` received a gradient with any non-zero entry (tests use it to find dead parameters).
pub fn has_nonzero_grad(param: &ParamTensor<'_>, grads: &mut Gradients<f32, Device>) -> bool {
    let values = match param {
        ParamTensor::Matrix(t, _) => grads
            .get_or_alloc_mut(&**t)
            .map(|g| g.iter().any(|v| *v != 0.0)),
        ParamTensor::Vector(t) => grads
            .get_or_alloc_mut(&**t)
            .map(|g| g.iter().any(|v| *v != 0.0)),
    };
    values.unwrap_or(false)
}

/// `Σ mask·(pred − target)² / Σ mask`: mean squared error over the entries `mask` (0/1, pred's shape)
/// keeps.
pub fn masked_mse<T: Tape<f32, Device>>(
    pred: Taped2<T>,
    target: &Tensor2,
    mask: &Tensor2,
) -> Scalar<T> {
    use dfdx::tensor_ops::SumTo;
    let kept: f32 = mask.as_vec().iter().sum();
    ((pred - target.clone()).square() * mask.clone()).sum() / kept.max(1.0)
}

/// `Σᵢ wᵢ·(1 − cos(predᵢ, targetᵢ)) / Σᵢ wᵢ` over the rows of `pred` `(n, d)`, with row weights `w` `(n)`.
pub fn weighted_cosine_distance<T: Tape<f32, Device> + Merge<T>>(
    pred: Taped2<T>,
    target: &Tensor2,
    row_weights: &[f32],
) -> Scalar<T> {
    use dfdx::tensor::TensorFromVec;
    use dfdx::tensor_ops::SumTo;
    let (n, cols) = dims(&pred);
    let dev = pred.device().clone();
    let target_host = target.as_vec();
    let target_norms: Vec<f32> = target_host
        .chunks_exact(cols)
        .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12))
        .collect();
    let target_norms: Tensor1 = dev.tensor_from_vec(target_norms, (n,));
    let weights: Tensor1 = dev.tensor_from_vec(row_weights.to_vec(), (n,));
    let total: f32 = row_weights.iter().sum();
    let dots = (fork(&pred) * target.clone()).sum::<(usize,), dfdx::shapes::Axis<1>>();
    let norms = (pred.square().sum::<(usize,), dfdx::shapes::Axis<1>>() + 1e-12).sqrt();
    let cosines = dots / (norms * target_norms);
    ((cosines.negate() + 1.0) * weights).sum() / total.max(1e-12)
}
