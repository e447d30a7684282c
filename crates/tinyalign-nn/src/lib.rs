//! Runtime-shaped layers over dfdx 0.13. dfdx's own `nn` modules fix widths at compile time and have no
//! conv1d, masks or erf-GELU blocks; these layers are built from its tensor ops instead, so they run and
//! differentiate on any sizes read from a config file. Tensors are time-major: `(frames, channels)`.
//!
//! The trainable layers run on any [`NnDevice`]: the CPU (default; host-row kernels) or, with the `cuda`
//! feature, dfdx's CUDA backend (the same layers through dfdx ops and cuBLAS).
//!
//! This is the only crate that imports dfdx; the rest of tinyalign sees [`Tensor2`] and friends.

mod adamw;
mod decoder;
mod device;
mod layers;
mod loss;
mod params;
mod portable;
mod taped;
mod weights;

pub use adamw::{AdamW, StepReport};
pub use decoder::{RmsNorm, RotaryPairs, grouped_causal_attention, silu};
pub use device::NnDevice;
pub use dfdx;
pub use dfdx::tensor::Cpu;
#[cfg(feature = "cuda")]
pub use dfdx::tensor::Cuda;
/// Tape types for writing code generic over inference (`NoneTape`) and training (`OwnedTape`).
pub use dfdx::tensor::{Gradients, Merge, NoneTape, OwnedTape, Tape};
pub use layers::{Conv1d, Embedding, LayerNorm, Linear, MultiHeadAttention, gelu, mix_frames};
pub use loss::{masked_mse, token_cross_entropy, weighted_cosine_distance};
pub use params::{ParamTensor, Parameters, parameter_count, parameter_gradients, state_dict};
pub use weights::{Init, Initializer, NnError, Weights};

/// The default compute device: dfdx's CPU backend (gemm + rayon). The frozen models (Whisper, the LLM) run
/// here; the trainable layers take any [`NnDevice`].
pub type Device = Cpu;
/// `(rows, cols)` f32 tensor without a gradient tape.
pub type Tensor2<D = Cpu> = dfdx::tensor::Tensor<(usize, usize), f32, D>;
/// `(n,)` f32 tensor.
pub type Tensor1<D = Cpu> = dfdx::tensor::Tensor<(usize,), f32, D>;
/// `(a, b, c)` f32 tensor.
///
/// Built from host data with [`from_vec3`].
pub type Tensor3<D = Cpu> = dfdx::tensor::Tensor<(usize, usize, usize), f32, D>;

/// A `(rows, cols)` tensor that may carry a gradient tape `T` (`NoneTape` for inference).
pub type Taped2<T, D = Device> = dfdx::tensor::Tensor<(usize, usize), f32, D, T>;

/// A fresh CPU device.
pub fn cpu() -> Device {
    Device::default()
}

/// CUDA device `ordinal` (dfdx's backend over cudarc: cuBLAS matmuls, its own kernels), or why there is
/// none (no driver, no such GPU).
#[cfg(feature = "cuda")]
pub fn cuda(ordinal: usize) -> Result<Cuda, NnError> {
    Cuda::try_build(ordinal, 0)
        .map_err(|e| NnError::Config(format!("CUDA device {ordinal} is not usable: {e:?}")))
}

/// A `(a, b, c)` tensor from row-major host data.
pub fn from_vec3<D: NnDevice>(dev: &D, data: Vec<f32>, shape: (usize, usize, usize)) -> Tensor3<D> {
    dev.tensor_from_vec(data, shape)
}

/// Host data of a tensor, row-major.
pub fn to_vec2<D: NnDevice>(t: &Tensor2<D>) -> Vec<f32> {
    host_values(t)
}

/// A `(rows, cols)` tensor from row-major host data. Panics if the length does not match (an internal
/// invariant: callers build `data` for this shape).
pub fn from_vec2<D: NnDevice>(dev: &D, data: Vec<f32>, rows: usize, cols: usize) -> Tensor2<D> {
    assert_eq!(
        data.len(),
        rows * cols,
        "host data does not match ({rows}, {cols})"
    );
    dev.tensor_from_vec(data, (rows, cols))
}

/// `(rows, cols)` of a tensor.
pub fn shape2<D: NnDevice>(t: &Tensor2<D>) -> (usize, usize) {
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
pub fn fork<T: Tape<f32, D>, D: NnDevice>(x: &Taped2<T, D>) -> Taped2<T, D> {
    use dfdx::tensor::WithEmptyTape;
    x.with_empty_tape()
}

/// Host data of a possibly taped tensor, row-major (the tape is untouched).
pub fn values2<T: Tape<f32, D>, D: NnDevice>(x: &Taped2<T, D>) -> Vec<f32> {
    host_values(x)
}

/// Host data of any tensor in logical (row-major) order: a contiguous tensor is one copy of its buffer, where
/// dfdx's `as_vec` walks every element through a strided index iterator (~4 ns an element here, the largest
/// serial cost of a CPU training step before). A broadcast or permuted tensor is made contiguous first
/// (dfdx's `contiguous` copies only then).
pub fn host_values<S: dfdx::shapes::Shape, T: Tape<f32, D>, D: NnDevice>(
    x: &dfdx::tensor::Tensor<S, f32, D, T>,
) -> Vec<f32> {
    use dfdx::shapes::HasShape;
    use dfdx::tensor_ops::ReshapeTo;
    let contiguous = x.retaped::<NoneTape>().contiguous();
    let mut out = vec![0.0f32; contiguous.shape().num_elements()];
    contiguous.copy_into(&mut out);
    out
}

/// `(rows, cols)` of a possibly taped tensor.
pub fn dims<T, D: NnDevice>(x: &Taped2<T, D>) -> (usize, usize) {
    use dfdx::shapes::HasShape;
    *x.shape()
}

/// A scalar that may carry a tape (a loss).
pub type Scalar<T, D = Cpu> = dfdx::tensor::Tensor<(), f32, D, T>;
/// A `(rows, cols)` tensor recording the operations applied to it, for `backward`.
pub type Traced2<D = Cpu> = Taped2<OwnedTape<f32, D>, D>;

/// Starts recording at `x`: gradients of everything computed from the result flow back to `x`.
pub fn traced<D: NnDevice>(x: &Tensor2<D>) -> Traced2<D> {
    use dfdx::tensor::Trace;
    x.clone().leaky_traced()
}

/// `Σ x ⊙ weights` (a constant `weights` of `x`'s shape): e.g. picks logits with a one-hot mask.
pub fn weighted_sum<T: Tape<f32, D>, D: NnDevice>(
    x: Taped2<T, D>,
    weights: &Tensor2<D>,
) -> Scalar<T, D> {
    use dfdx::tensor_ops::SumTo;
    (x * weights.clone()).sum()
}

/// Host value of a scalar.
pub fn scalar_value<T, D: NnDevice>(x: &Scalar<T, D>) -> f32 {
    x.as_vec()[0]
}

/// Back-propagates `loss` and returns the gradient for `wrt` (row-major, `wrt`'s shape).
pub fn gradient<D: NnDevice>(loss: Scalar<OwnedTape<f32, D>, D>, wrt: &Tensor2<D>) -> Vec<f32> {
    use dfdx::tensor_ops::Backward;
    loss.backward().get(wrt).as_vec()
}

/// The same values viewed as `(rows, cols)` (row-major; rows·cols must equal the element count).
pub fn reshape_rows<T: Tape<f32, D>, D: NnDevice>(
    x: Taped2<T, D>,
    rows: usize,
    cols: usize,
) -> Taped2<T, D> {
    use dfdx::tensor_ops::ReshapeTo;
    x.reshape_like(&(rows, cols))
}

/// `max(x, 0)`.
pub fn relu<T: Tape<f32, D>, D: NnDevice>(x: Taped2<T, D>) -> Taped2<T, D> {
    x.relu()
}

/// `x` `(n, d)` with the rows whose `keep[row]` is false set to zero (padding frames); their gradient is zero.
pub fn zero_rows<T: Tape<f32, D>, D: NnDevice>(x: Taped2<T, D>, keep: &[bool]) -> Taped2<T, D> {
    D::zero_rows(x, keep)
}

/// Back-propagates `loss`, returning every gradient (for an optimiser step).
pub fn backward<D: NnDevice>(loss: Scalar<OwnedTape<f32, D>, D>) -> Gradients<f32, D> {
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

/// `base + placed`: row `dst` of the result is `base[dst] + x[src]` for each `(dst, src)` in `placements`
/// (`dst` distinct), other rows are `base`'s. `x` `(rows, d)`, `base` `(n, d)` constant → `(n, d)`,
/// differentiable in `x`. Puts trained rows (projected audio) into a sequence of fixed embeddings.
pub fn place_rows<T: Tape<f32, D>, D: NnDevice>(
    x: Taped2<T, D>,
    placements: &[(usize, usize)],
    base: &Tensor2<D>,
) -> Taped2<T, D> {
    let rows = dims(&x).0;
    let n = shape2(base).0;
    let mut selection = vec![0.0; n * rows];
    for &(dst, src) in placements {
        selection[dst * rows + src] = 1.0;
    }
    let selection = from_vec3(x.device(), selection, (1, n, rows));
    mix_frames(x, &selection, 1, rows) + base.clone()
}

/// `x · w` with a constant `w` `(d, k)`: `(n, d)` → `(n, k)`, differentiable in `x`.
pub fn matmul_const<T: Tape<f32, D>, D: NnDevice>(x: Taped2<T, D>, w: &Tensor2<D>) -> Taped2<T, D> {
    use dfdx::tensor_ops::TryMatMul;
    x.matmul(w.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinyalign_testkit::lcg;

    #[test]
    fn place_rows_puts_rows_where_asked_and_routes_gradients_back() {
        let dev = cpu();
        let x = from_vec2(&dev, lcg(6, 1), 3, 2);
        let base = from_vec2(&dev, lcg(8, 2), 4, 2);
        let placements = [(0, 2), (3, 0)];
        let out = to_vec2(&place_rows(x.clone(), &placements, &base));
        let (xs, bs) = (x.as_vec(), base.as_vec());
        let mut expected = bs.clone();
        for &(dst, src) in &placements {
            for c in 0..2 {
                expected[dst * 2 + c] += xs[src * 2 + c];
            }
        }
        assert!(out.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-6));
        // d/dx Σ w ⊙ out: row src gets w[dst]; an unplaced row gets nothing.
        let w = from_vec2(&dev, lcg(8, 3), 4, 2);
        let grad = gradient(
            weighted_sum(place_rows(traced(&x), &placements, &base), &w),
            &x,
        );
        let ws = w.as_vec();
        let want = [ws[6], ws[7], 0.0, 0.0, ws[0], ws[1]];
        assert!(
            grad.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{grad:?}"
        );
    }

    #[test]
    fn token_cross_entropy_matches_a_plain_reference_and_its_gradient() {
        let dev = cpu();
        let (n, vocab) = (3, 5);
        let raw: Vec<f32> = lcg(n * vocab, 4).iter().map(|v| v * 8.0).collect();
        let logits = from_vec2(&dev, raw.clone(), n, vocab);
        let targets = [(0, 1), (2, 4)];
        let log_softmax = |row: &[f32]| {
            let max = row.iter().cloned().fold(f32::MIN, f32::max);
            let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
            row.iter().map(|v| v - lse).collect::<Vec<f32>>()
        };
        let expected: f32 = -targets
            .iter()
            .map(|&(p, t)| log_softmax(&raw[p * vocab..(p + 1) * vocab])[t])
            .sum::<f32>()
            / 2.0;
        let value = scalar_value(&token_cross_entropy(logits.clone(), &targets));
        assert!((value - expected).abs() < 1e-5, "{value} vs {expected}");
        // Gradient: (softmax − one-hot) / k on target rows, zero on the others.
        let grad = gradient(token_cross_entropy(traced(&logits), &targets), &logits);
        for p in 0..n {
            let probs: Vec<f32> = log_softmax(&raw[p * vocab..(p + 1) * vocab])
                .iter()
                .map(|l| l.exp())
                .collect();
            for t in 0..vocab {
                let want = match targets.iter().find(|&&(tp, _)| tp == p) {
                    Some(&(_, tt)) => (probs[t] - f32::from(u8::from(t == tt))) / 2.0,
                    None => 0.0,
                };
                let got = grad[p * vocab + t];
                assert!((got - want).abs() < 1e-5, "({p}, {t}): {got} vs {want}");
            }
        }
    }
}
