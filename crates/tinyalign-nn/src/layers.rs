//! Linear, LayerNorm, Conv1d, multi-head self-attention and erf-GELU on `(frames, channels)` tensors.

use dfdx::prelude::*;
use tinyalign_kernels::{ConvGeometry, HostConv1d, HostLinear, HostSelfAttention};

use crate::params::{ParamTensor, Parameters};
use crate::weights::{Init, NnError, Weights};
use crate::{Device, NnDevice, Taped2, Tensor1, Tensor2, Tensor3};

/// GELU in its exact erf form, `x · Φ(x)`, as Whisper (`F.gelu`) uses. On the CPU: on host rows on every
/// core, with one taped backward closure when training (src/taped.rs); elsewhere from dfdx ops with the
/// derivative corrected (dfdx 0.13's own `accurate_gelu` misses the `1/√2` of `erf(x/√2)`; src/portable.rs).
pub fn gelu<T: Tape<f32, D>, D: NnDevice>(x: Taped2<T, D>) -> Taped2<T, D> {
    D::gelu(x)
}

/// `y = x Wᵀ + b` with PyTorch's `weight (out, in)`, stored transposed as `(in, out)` so the forward pass is
/// one plain matmul.
#[derive(Debug, Clone)]
pub struct Linear<D: NnDevice = Device> {
    /// `"prefix."` of this layer's keys (empty at the root), for [`Parameters`].
    key_prefix: String,
    weight_t: Tensor2<D>,
    bias: Option<Tensor1<D>>,
    in_dim: usize,
    out_dim: usize,
    /// A host copy of `weight_t` and `bias` for inference passes, made on first use and dropped whenever
    /// [`Parameters::visit`] lends the tensors out (the only way they change).
    host: HostCopy<HostLinear>,
}

/// A lazily made host-row copy of a trainable layer's weights, for tinyalign-kernels' inference passes
/// (dfdx 0.13 hands out CPU data only as copies).
struct HostCopy<L>(std::sync::OnceLock<L>);

impl<L> Default for HostCopy<L> {
    fn default() -> Self {
        Self(std::sync::OnceLock::new())
    }
}

impl<L> Clone for HostCopy<L> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl<L> std::fmt::Debug for HostCopy<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "HostCopy(cached)"
        } else {
            "HostCopy(empty)"
        })
    }
}

impl<D: NnDevice> Linear<D> {
    /// Loads `weight` `(out, in)` and, when `with_bias`, `bias` `(out)`.
    pub fn load(
        w: &Weights<'_, D>,
        in_dim: usize,
        out_dim: usize,
        with_bias: bool,
    ) -> Result<Self, NnError> {
        // PyTorch's default: U(±1/√in) for weight and bias.
        let fan_in = Init::Uniform(1.0 / (in_dim.max(1) as f32).sqrt());
        let weight_t = crate::transpose_host(
            &w.param("weight", &[out_dim, in_dim], fan_in)?,
            out_dim,
            in_dim,
        );
        Ok(Self {
            key_prefix: w.key(""),
            weight_t: crate::from_vec2(w.device(), weight_t, in_dim, out_dim),
            bias: if with_bias {
                Some(w.param1("bias", out_dim, fan_in)?)
            } else {
                None
            },
            in_dim,
            out_dim,
            host: HostCopy::default(),
        })
    }

    /// This layer with `bias` `(out)` in place of its own (a frozen model whose biases are stored apart
    /// from the weights, as GGUF's `attn_q.bias`).
    pub fn with_bias(mut self, bias: Tensor1<D>) -> Self {
        self.bias = Some(bias);
        self.host = HostCopy::default();
        self
    }

    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    #[cfg(test)]
    pub(crate) fn weight_t_for_tests(&self) -> Tensor2<D> {
        self.weight_t.clone()
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Inference on host rows: `x` `(n, in)` row-major → `(n, out)`. Panics if `x.len()` is not a multiple of
    /// `in` (an internal invariant: callers build the rows).
    pub fn forward_rows(&self, x: &[f32]) -> Vec<f32> {
        self.host.0.get_or_init(|| self.host_copy()).forward_rows(x)
    }

    /// This layer's weights as a frozen host layer (a fresh copy).
    pub fn host_copy(&self) -> HostLinear {
        HostLinear::new(
            self.weight_t.as_vec(),
            self.bias.as_ref().map(|b| b.as_vec()),
            self.in_dim,
            self.out_dim,
        )
    }

    /// `(n, in)` → `(n, out)`; gradients flow to `x` when it carries a tape.
    pub fn forward<T: Tape<f32, D>>(&self, x: Taped2<T, D>) -> Taped2<T, D> {
        let n = x.shape().0;
        if !T::OWNS_TAPE && D::HOST_KERNELS {
            let y = self.forward_rows(&crate::host_values(&x));
            return x
                .device()
                .tensor_from_vec(y, (n, self.out_dim))
                .retaped::<T>();
        }
        D::linear(x, &self.weight_t, self.bias.as_ref())
    }
}

impl<D: NnDevice> Parameters<D> for Linear<D> {
    fn visit(&mut self, f: &mut dyn FnMut(&str, ParamTensor<'_, D>)) {
        self.host = HostCopy::default();
        let weight = format!("{}weight", self.key_prefix);
        f(&weight, ParamTensor::Matrix(&mut self.weight_t, true));
        if let Some(bias) = &mut self.bias {
            f(
                &format!("{}bias", self.key_prefix),
                ParamTensor::Vector(bias),
            );
        }
    }
}

impl<D: NnDevice> Parameters<D> for LayerNorm<D> {
    fn visit(&mut self, f: &mut dyn FnMut(&str, ParamTensor<'_, D>)) {
        f(
            &format!("{}weight", self.key_prefix),
            ParamTensor::Vector(&mut self.gamma),
        );
        f(
            &format!("{}bias", self.key_prefix),
            ParamTensor::Vector(&mut self.beta),
        );
    }
}

/// LayerNorm over the channel axis with affine `weight` and `bias`.
#[derive(Debug, Clone)]
pub struct LayerNorm<D: NnDevice = Device> {
    key_prefix: String,
    gamma: Tensor1<D>,
    beta: Tensor1<D>,
    eps: f64,
}

impl<D: NnDevice> LayerNorm<D> {
    pub fn load(w: &Weights<'_, D>, dim: usize, eps: f64) -> Result<Self, NnError> {
        Ok(Self {
            key_prefix: w.key(""),
            gamma: w.param1("weight", dim, Init::Constant(1.0))?,
            beta: w.param1("bias", dim, Init::Constant(0.0))?,
            eps,
        })
    }

    /// Inference on host rows: normalises each `d`-wide row of `x` in place.
    pub fn forward_rows_in_place(&self, x: &mut [f32]) {
        let (gamma, beta) = (self.gamma.as_vec(), self.beta.as_vec());
        tinyalign_kernels::layer_norm_in_place(x, &gamma, &beta, self.eps as f32);
    }

    /// `(n, d)` → `(n, d)`.
    pub fn forward<T: Tape<f32, D>>(&self, x: Taped2<T, D>) -> Taped2<T, D> {
        let shape = *x.shape();
        if !T::OWNS_TAPE && D::HOST_KERNELS {
            let mut data = crate::host_values(&x);
            self.forward_rows_in_place(&mut data);
            return x.device().tensor_from_vec(data, shape).retaped::<T>();
        }
        D::layer_norm(x, &self.gamma, &self.beta, self.eps as f32)
    }
}

/// 1-D convolution over time, PyTorch `Conv1d(c_in, c_out, k, stride, padding)` with `weight (c_out, c_in, k)`.
/// Computed as a sum over taps of `gather(x_padded, rows k + stride·t) @ W_k`, all dfdx ops, so it
/// differentiates like any other layer.
#[derive(Debug, Clone)]
pub struct Conv1d {
    /// Tap `j`'s weights as `(c_in, c_out)`.
    taps: Vec<Tensor2>,
    bias: Tensor1,
    /// The same weights for [`Conv1d::forward_rows`] (the layer has no trainable-parameter view, so this
    /// never goes stale).
    host: HostConv1d,
    c_in: usize,
    c_out: usize,
    stride: usize,
    padding: usize,
}

impl Conv1d {
    pub fn load(
        w: &Weights<'_>,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self, NnError> {
        if kernel == 0 || stride == 0 {
            return Err(NnError::Config(format!(
                "conv1d kernel {kernel} / stride {stride} must be >= 1"
            )));
        }
        let fan_in = Init::Uniform(1.0 / ((c_in * kernel).max(1) as f32).sqrt());
        let weight = w.param("weight", &[c_out, c_in, kernel], fan_in)?;
        let taps: Vec<Vec<f32>> = (0..kernel)
            .map(|j| {
                let mut tap = vec![0.0f32; c_in * c_out];
                for o in 0..c_out {
                    for i in 0..c_in {
                        tap[i * c_out + o] = weight[(o * c_in + i) * kernel + j];
                    }
                }
                tap
            })
            .collect();
        let bias = w.param1("bias", c_out, fan_in)?;
        let geometry = ConvGeometry {
            c_in,
            c_out,
            kernel,
            stride,
            padding,
        };
        Ok(Self {
            host: HostConv1d::from_torch(&weight, bias.as_vec(), geometry),
            taps: taps
                .into_iter()
                .map(|tap| crate::from_vec2(w.device(), tap, c_in, c_out))
                .collect(),
            bias,
            c_in,
            c_out,
            stride,
            padding,
        })
    }

    /// Output frames for `frames` input frames: `(frames + 2p − k) / s + 1`, or 0 if the input is too short.
    pub fn out_frames(&self, frames: usize) -> usize {
        let span = frames + 2 * self.padding;
        if span < self.taps.len() {
            0
        } else {
            (span - self.taps.len()) / self.stride + 1
        }
    }

    /// Inference on host rows: `x` `(frames, c_in)` → `(out_frames, c_out)` ([`HostConv1d::forward_rows`]).
    /// Panics if `x` is not rows of `c_in` or `out_frames(frames) == 0` (callers check).
    pub fn forward_rows(&self, x: &[f32]) -> Vec<f32> {
        self.host.forward_rows(x)
    }

    /// `(frames, c_in)` → `(out_frames, c_out)`. Panics if `out_frames(frames) == 0` (callers check).
    pub fn forward<T: Tape<f32, Device> + Merge<NoneTape>>(&self, x: Taped2<T>) -> Taped2<T> {
        let dev: Device = x.device().clone();
        let frames = x.shape().0;
        let t_out = self.out_frames(frames);
        assert!(
            t_out > 0,
            "conv1d input of {frames} frames is shorter than the kernel"
        );
        // Row `frames` of `padded` is the zero row every out-of-range (padding) position reads.
        let zero: Tensor2 = dev.zeros_like(&(1, self.c_in));
        let mut padded = Some((x, zero).concat_along(Axis::<0>));
        let mut out: Option<Taped2<T>> = None;
        let last = self.taps.len() - 1;
        for (j, tap) in self.taps.iter().enumerate() {
            let rows: Vec<usize> = (0..t_out)
                .map(|t| {
                    let pos = (t * self.stride + j) as isize - self.padding as isize;
                    if pos < 0 || pos as usize >= frames {
                        frames
                    } else {
                        pos as usize
                    }
                })
                .collect();
            let idx: Tensor<(usize,), usize, Device> = dev.tensor_from_vec(rows, (t_out,));
            // Every tap reads `padded`; the last one takes it (and the tape holding the concat) so the
            // backward pass reaches `x`, the others read it through an empty tape.
            let source = if j == last {
                padded.take().expect("taken once")
            } else {
                padded
                    .as_ref()
                    .expect("present until the last tap")
                    .with_empty_tape()
            };
            let gathered: Taped2<T> = source.gather(idx);
            let y = gathered.matmul(tap.clone());
            out = Some(match out {
                Some(acc) => acc + y,
                None => y,
            });
        }
        let out = out.expect("kernel >= 1");
        out + self
            .bias
            .clone()
            .broadcast_like::<_, Axis<0>>(&(t_out, self.c_out))
    }
}

/// Multi-head attention with PyTorch-style `q_proj`, `k_proj` (optionally bias-free), `v_proj`, `out_proj`.
#[derive(Debug, Clone)]
pub struct MultiHeadAttention<D: NnDevice = Device> {
    q: Linear<D>,
    k: Linear<D>,
    v: Linear<D>,
    out: Linear<D>,
    heads: usize,
    dim: usize,
    /// The same projections as one frozen host layer (`[W_q/√d_head | W_k | W_v]` packed, one gemm per
    /// inference pass); made on first use, dropped when [`Parameters::visit`] lends the tensors out.
    host: HostCopy<HostSelfAttention>,
}

impl<D: NnDevice> MultiHeadAttention<D> {
    pub fn load(
        w: &Weights<'_, D>,
        dim: usize,
        heads: usize,
        k_bias: bool,
    ) -> Result<Self, NnError> {
        if heads == 0 || !dim.is_multiple_of(heads) {
            return Err(NnError::Config(format!(
                "{dim} channels do not split into {heads} heads"
            )));
        }
        Ok(Self {
            q: Linear::load(&w.pp("q_proj"), dim, dim, true)?,
            k: Linear::load(&w.pp("k_proj"), dim, dim, k_bias)?,
            v: Linear::load(&w.pp("v_proj"), dim, dim, true)?,
            out: Linear::load(&w.pp("out_proj"), dim, dim, true)?,
            heads,
            dim,
            host: HostCopy::default(),
        })
    }

    /// Self-attention over a batch of `b` sequences of `n` frames stored as `(b·n, d)` rows, where
    /// `key_bias` `(b, n)` is added to every score of a key (0 for real frames, −1e9 for padding, so padding
    /// never reaches a real frame). Differentiable. → `(b·n, d)`.
    pub fn forward_batch<T: Tape<f32, D> + Merge<T>>(
        &self,
        x: Taped2<T, D>,
        b: usize,
        n: usize,
        key_bias: &Tensor2<D>,
    ) -> Taped2<T, D> {
        let h = self.heads;
        if !T::OWNS_TAPE && D::HOST_KERNELS {
            // Inference: each sequence through the fused kernel, its key bias row masking its padding.
            let dev = x.device().clone();
            let out = self.host_attention().forward_batch_rows(
                &crate::host_values(&x),
                b,
                n,
                Some(&crate::host_values(key_bias)),
            );
            let out: Tensor2<D> = dev.tensor_from_vec(out, (b * n, self.dim));
            return out.retaped::<T>();
        }
        let q = self.q.forward(x.with_empty_tape());
        let k = self.k.forward(x.with_empty_tape());
        let v = self.v.forward(x);
        let ctx = D::attention((q, k, v), key_bias, (b, n, h));
        self.out.forward(ctx)
    }

    /// Unmasked self-attention, `(n, d)` → `(n, d)`: softmax(q kᵀ / √d_head) v per head.
    pub fn forward_self(&self, x: Tensor2<D>) -> Tensor2<D> {
        let (n, dev) = (x.shape().0, x.device().clone());
        dev.tensor_from_vec(
            self.forward_self_rows(&crate::host_values(&x)),
            (n, self.dim),
        )
    }

    /// Unmasked self-attention on host rows: `x` `(n, d)` row-major → `(n, d)`.
    pub fn forward_self_rows(&self, x: &[f32]) -> Vec<f32> {
        self.host_attention().forward_rows(x)
    }

    fn host_attention(&self) -> &HostSelfAttention {
        self.host.0.get_or_init(|| {
            let (q, k, v) = (self.q.host_copy(), self.k.host_copy(), self.v.host_copy());
            HostSelfAttention::new([&q, &k, &v], self.out.host_copy(), self.heads)
        })
    }
}

impl<D: NnDevice> Parameters<D> for MultiHeadAttention<D> {
    fn visit(&mut self, f: &mut dyn FnMut(&str, ParamTensor<'_, D>)) {
        self.host = HostCopy::default();
        self.q.visit(f);
        self.k.visit(f);
        self.v.visit(f);
        self.out.visit(f);
    }
}

/// `out[i] = weights[i] · x[i]` for each of `b` sequences of `n` frames stored as `(b·n, d)` rows, with
/// constant `weights` `(b, t, n)` (pooling, or any fixed mixing of frames) → `(b·t, d)`. Differentiable in x.
pub fn mix_frames<T: Tape<f32, D>, D: NnDevice>(
    x: Taped2<T, D>,
    weights: &Tensor3<D>,
    b: usize,
    n: usize,
) -> Taped2<T, D> {
    let d = x.shape().1;
    let t = weights.shape().1;
    // The taped operand must be on the left in dfdx, so compute (xᵀ wᵀ)ᵀ.
    let weights_t = weights.clone().permute::<_, Axes3<0, 2, 1>>();
    x.reshape_like(&(b, n, d))
        .permute::<_, Axes3<0, 2, 1>>()
        .matmul(weights_t)
        .permute::<_, Axes3<0, 2, 1>>()
        .reshape_like(&(b * t, d))
}

/// A lookup table `(rows, d)`: `Embedding` in PyTorch terms.
#[derive(Debug, Clone)]
pub struct Embedding {
    table: Tensor2,
    rows: usize,
}

impl Embedding {
    pub fn load(w: &Weights<'_>, rows: usize, dim: usize) -> Result<Self, NnError> {
        Ok(Self {
            table: crate::from_vec2(
                w.device(),
                w.param("weight", &[rows, dim], Init::Normal(1.0))?,
                rows,
                dim,
            ),
            rows,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn table(&self) -> &Tensor2 {
        &self.table
    }

    /// Rows `ids` → `(ids.len(), d)`. Panics on an id ≥ rows (callers validate ids).
    pub fn forward(&self, ids: &[usize]) -> Tensor2 {
        assert!(
            ids.iter().all(|&i| i < self.rows),
            "embedding id out of range"
        );
        let dev = self.table.device().clone();
        let idx: Tensor<(usize,), usize, Device> = dev.tensor_from_vec(ids.to_vec(), (ids.len(),));
        self.table.clone().gather(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinyalign_testkit::lcg;
    use tinyalign_weights::{Tensor as HostTensor, TensorMap};

    /// Plain-Rust reference of PyTorch's conv1d; `geometry` is `(c_in, c_out, kernel, stride, padding)`.
    fn conv1d_reference(
        x: &[f32],
        frames: usize,
        w: &[f32],
        b: &[f32],
        geometry: (usize, usize, usize, usize, usize),
    ) -> Vec<f32> {
        let (c_in, c_out, k, s, p) = geometry;
        let t_out = (frames + 2 * p - k) / s + 1;
        let mut y = vec![0.0f32; t_out * c_out];
        for t in 0..t_out {
            for o in 0..c_out {
                let mut acc = b[o];
                for j in 0..k {
                    let pos = (t * s + j) as isize - p as isize;
                    if pos < 0 || pos as usize >= frames {
                        continue;
                    }
                    for i in 0..c_in {
                        acc += w[(o * c_in + i) * k + j] * x[pos as usize * c_in + i];
                    }
                }
                y[t * c_out + o] = acc;
            }
        }
        y
    }

    #[test]
    fn conv1d_matches_reference_for_whisper_like_shapes() {
        for (frames, c_in, c_out, k, s, p) in [
            (9, 3, 4, 3, 1, 1),
            (9, 4, 4, 3, 2, 1),
            (10, 2, 5, 3, 2, 1),
            (4, 2, 2, 1, 1, 0),
        ] {
            let mut map = TensorMap::new("test");
            let w = lcg(c_out * c_in * k, 1);
            let b = lcg(c_out, 2);
            map.insert("c.weight", HostTensor::new(vec![c_out, c_in, k], w.clone()));
            map.insert("c.bias", HostTensor::new(vec![c_out], b.clone()));
            let dev = crate::cpu();
            let conv = Conv1d::load(
                &Weights::new(&map, dev.clone()).pp("c"),
                c_in,
                c_out,
                k,
                s,
                p,
            )
            .expect("loads");
            let x = lcg(frames * c_in, 3);
            let ours =
                crate::to_vec2(&conv.forward(crate::from_vec2(&dev, x.clone(), frames, c_in)));
            let reference = conv1d_reference(&x, frames, &w, &b, (c_in, c_out, k, s, p));
            // The dfdx path (training) and the unfolded host gemm (inference) both match the loops.
            for ours in [ours, conv.forward_rows(&x)] {
                assert_eq!(ours.len(), reference.len());
                for (a, r) in ours.iter().zip(&reference) {
                    assert!((a - r).abs() < 1e-5, "{a} vs {r}");
                }
            }
        }
    }

    #[test]
    fn attention_matches_reference() {
        let (n, d, h) = (5, 6, 2);
        let mut map = TensorMap::new("test");
        for (i, name) in ["q_proj", "k_proj", "v_proj", "out_proj"]
            .iter()
            .enumerate()
        {
            map.insert(
                format!("a.{name}.weight"),
                HostTensor::new(vec![d, d], lcg(d * d, 10 + i as u32)),
            );
            map.insert(
                format!("a.{name}.bias"),
                HostTensor::new(vec![d], lcg(d, 20 + i as u32)),
            );
        }
        let dev = crate::cpu();
        let attn = MultiHeadAttention::load(&Weights::new(&map, dev.clone()).pp("a"), d, h, true)
            .expect("loads");
        let x = lcg(n * d, 5);
        let ours = crate::to_vec2(&attn.forward_self(crate::from_vec2(&dev, x.clone(), n, d)));

        let lin = |name: &str, x: &[f32]| -> Vec<f32> {
            let w = &map.get(&format!("a.{name}.weight")).expect("w").data;
            let b = &map.get(&format!("a.{name}.bias")).expect("b").data;
            (0..n * d)
                .map(|idx| {
                    let (r, o) = (idx / d, idx % d);
                    b[o] + (0..d).map(|i| w[o * d + i] * x[r * d + i]).sum::<f32>()
                })
                .collect()
        };
        let (q, k, v) = (lin("q_proj", &x), lin("k_proj", &x), lin("v_proj", &x));
        let scale = 1.0 / ((d / h) as f32).sqrt();
        let q: Vec<f32> = q.iter().map(|v| v * scale).collect();
        let ctx = tinyalign_testkit::attention_reference(&q, &k, &v, (n, n, d), h, None);
        let reference = lin("out_proj", &ctx);
        // Inference (fused host kernel) and the taped dfdx graph training differentiates.
        let taped = attn
            .forward_batch(
                crate::traced(&crate::from_vec2(&dev, x.clone(), n, d)),
                1,
                n,
                &crate::from_vec2(&dev, vec![0.0; n], 1, n),
            )
            .as_vec();
        for ours in [ours, taped] {
            for (a, r) in ours.iter().zip(&reference) {
                assert!((a - r).abs() < 1e-5, "{a} vs {r}");
            }
        }
    }

    #[test]
    fn conv1d_and_linear_gradients_match_finite_differences() {
        // loss = sum(linear(gelu(conv(x)))^2); d loss / d x by the tape vs central differences in f64-ish
        // steps on a few inputs.
        let (frames, c_in, c_out) = (7, 3, 4);
        let mut map = TensorMap::new("test");
        map.insert(
            "c.weight",
            HostTensor::new(vec![c_out, c_in, 3], lcg(c_out * c_in * 3, 31)),
        );
        map.insert("c.bias", HostTensor::new(vec![c_out], lcg(c_out, 32)));
        map.insert(
            "l.weight",
            HostTensor::new(vec![2, c_out], lcg(2 * c_out, 33)),
        );
        map.insert("l.bias", HostTensor::new(vec![2], lcg(2, 34)));
        let dev = crate::cpu();
        let w = Weights::new(&map, dev.clone());
        let conv = Conv1d::load(&w.pp("c"), c_in, c_out, 3, 2, 1).expect("loads");
        let lin = Linear::load(&w.pp("l"), c_out, 2, true).expect("loads");
        let x0 = lcg(frames * c_in, 35);
        let loss_of = |x: &[f32]| -> f32 {
            let y = lin.forward(gelu(conv.forward(crate::from_vec2(
                &dev,
                x.to_vec(),
                frames,
                c_in,
            ))));
            crate::to_vec2(&y).iter().map(|v| v * v).sum()
        };
        let x = crate::from_vec2(&dev, x0.clone(), frames, c_in);
        let loss = lin
            .forward(gelu(conv.forward(x.clone().leaky_traced())))
            .square()
            .sum();
        let grads = loss.backward();
        let analytic = grads.get(&x).as_vec();
        let h = 1e-2f32;
        for i in 0..frames * c_in {
            let (mut up, mut down) = (x0.clone(), x0.clone());
            up[i] += h;
            down[i] -= h;
            let numeric = (loss_of(&up) - loss_of(&down)) / (2.0 * h);
            assert!(
                (analytic[i] - numeric).abs() < 1e-3 * numeric.abs().max(0.1),
                "x[{i}]: {} vs {numeric}",
                analytic[i]
            );
        }
    }

    #[test]
    fn gelu_is_the_erf_form() {
        let dev = crate::cpu();
        let x = crate::from_vec2(&dev, vec![-3.0, -1.0, 0.0, 0.5, 1.0, 3.0], 1, 6);
        // torch.nn.functional.gelu(x) (approximate='none').
        let want = [
            -0.004_049_8,
            -0.158_655_26,
            0.0,
            0.345_731_37,
            0.841_344_7,
            2.995_950_2,
        ];
        let plain = crate::to_vec2(&gelu(x.clone()));
        for (a, w) in plain.iter().zip(want) {
            assert!((a - w).abs() < 1e-5, "{a} vs {w}");
        }
        // The taped path (one backward closure, src/taped.rs) and the inference path agree to rounding.
        let taped = gelu(x.leaky_traced()).as_vec();
        for (a, b) in taped.iter().zip(&plain) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
