//! Frozen layers on host rows: each holds its weights once, in the layout its kernel reads, and is built
//! from PyTorch's layout (`weight (out, in)`, `Conv1d.weight (c_out, c_in, k)`). Constructors take data
//! their caller has already shape-checked against a file (`TensorMap::get_shaped`), so a wrong length is
//! an internal error and panics.

use crate::ops::{attention_into, layer_norm_in_place, linear, linear_add, linear_into};

/// `y = x Wᵀ + b` with `W` stored transposed, `(in, out)`, so a pass is one plain gemm.
#[derive(Clone)]
pub struct HostLinear {
    weight_t: Vec<f32>,
    bias: Option<Vec<f32>>,
    in_dim: usize,
    out_dim: usize,
}

impl std::fmt::Debug for HostLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HostLinear({} → {}{})",
            self.in_dim,
            self.out_dim,
            if self.bias.is_some() { ", bias" } else { "" }
        )
    }
}

impl HostLinear {
    /// From `weight_t` `(in, out)` row-major and `bias` `(out)`.
    pub fn new(weight_t: Vec<f32>, bias: Option<Vec<f32>>, in_dim: usize, out_dim: usize) -> Self {
        assert_eq!(
            weight_t.len(),
            in_dim * out_dim,
            "weight is not ({in_dim}, {out_dim})"
        );
        if let Some(b) = &bias {
            assert_eq!(b.len(), out_dim, "bias is not ({out_dim})");
        }
        Self {
            weight_t,
            bias,
            in_dim,
            out_dim,
        }
    }

    /// From PyTorch's `weight` `(out, in)` row-major and `bias` `(out)`.
    pub fn from_torch(
        weight: &[f32],
        bias: Option<Vec<f32>>,
        in_dim: usize,
        out_dim: usize,
    ) -> Self {
        assert_eq!(
            weight.len(),
            in_dim * out_dim,
            "weight is not ({out_dim}, {in_dim})"
        );
        let mut weight_t = vec![0.0f32; weight.len()];
        for (o, row) in weight.chunks_exact(in_dim.max(1)).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                weight_t[i * out_dim + o] = v;
            }
        }
        Self::new(weight_t, bias, in_dim, out_dim)
    }

    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// `W` as `(in, out)`, row-major.
    pub fn weight_t(&self) -> &[f32] {
        &self.weight_t
    }

    pub fn bias(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }

    /// `x` `(n, in)` → `(n, out)`. Panics if `x.len()` is not a multiple of `in` (callers build the rows).
    pub fn forward_rows(&self, x: &[f32]) -> Vec<f32> {
        self.check_rows(x);
        linear(
            x,
            &self.weight_t,
            self.bias.as_deref(),
            self.in_dim,
            self.out_dim,
        )
    }

    /// [`Self::forward_rows`] into `out`'s allocation (resized to `(n, out)`).
    pub fn forward_rows_into(&self, x: &[f32], out: &mut Vec<f32>) {
        self.check_rows(x);
        linear_into(
            x,
            &self.weight_t,
            self.bias.as_deref(),
            self.in_dim,
            self.out_dim,
            out,
        );
    }

    /// `residual += x Wᵀ + b` for `x` `(n, in)` and `residual` `(n, out)`. Panics on other shapes.
    pub fn add_forward_rows(&self, x: &[f32], residual: &mut [f32]) {
        self.check_rows(x);
        linear_add(
            x,
            &self.weight_t,
            self.bias.as_deref(),
            self.in_dim,
            self.out_dim,
            residual,
        );
    }

    fn check_rows(&self, x: &[f32]) {
        assert!(
            x.len().is_multiple_of(self.in_dim),
            "{} values are not rows of {}",
            x.len(),
            self.in_dim
        );
    }
}

/// LayerNorm over each row: `(x − mean) / √(var + eps) · gamma + beta`, biased variance (PyTorch's).
#[derive(Clone)]
pub struct HostLayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl std::fmt::Debug for HostLayerNorm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostLayerNorm({}, eps {})", self.gamma.len(), self.eps)
    }
}

impl HostLayerNorm {
    pub fn new(gamma: Vec<f32>, beta: Vec<f32>, eps: f32) -> Self {
        assert_eq!(gamma.len(), beta.len(), "gamma and beta differ in width");
        Self { gamma, beta, eps }
    }

    /// Normalises each `gamma.len()`-wide row of `x` in place.
    pub fn forward_rows_in_place(&self, x: &mut [f32]) {
        layer_norm_in_place(x, &self.gamma, &self.beta, self.eps);
    }
}

/// PyTorch `Conv1d(c_in, c_out, k, stride, padding)` over time on `(frames, c_in)` rows, computed as one
/// gemm over the unfolded input: the `k` taps stacked into one `(k·c_in, c_out)` matrix.
#[derive(Clone)]
pub struct HostConv1d {
    /// Row `j·c_in + i`, column `o`: PyTorch's `weight[o, i, j]`.
    taps: Vec<f32>,
    bias: Vec<f32>,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
}

impl std::fmt::Debug for HostConv1d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HostConv1d({} → {}, k {}, stride {}, padding {})",
            self.c_in, self.c_out, self.kernel, self.stride, self.padding
        )
    }
}

/// A convolution's channels and geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl HostConv1d {
    /// From PyTorch's `weight` `(c_out, c_in, k)` and `bias` `(c_out)`. Panics on a zero kernel or stride
    /// (callers check the configuration first).
    pub fn from_torch(weight: &[f32], bias: Vec<f32>, g: ConvGeometry) -> Self {
        let ConvGeometry {
            c_in,
            c_out,
            kernel,
            stride,
            padding,
        } = g;
        assert!(
            kernel > 0 && stride > 0,
            "conv1d kernel and stride must be >= 1"
        );
        assert_eq!(
            weight.len(),
            c_out * c_in * kernel,
            "weight is not ({c_out}, {c_in}, {kernel})"
        );
        assert_eq!(bias.len(), c_out, "bias is not ({c_out})");
        let mut taps = vec![0.0f32; kernel * c_in * c_out];
        for o in 0..c_out {
            for i in 0..c_in {
                for j in 0..kernel {
                    taps[(j * c_in + i) * c_out + o] = weight[(o * c_in + i) * kernel + j];
                }
            }
        }
        Self {
            taps,
            bias,
            c_in,
            c_out,
            kernel,
            stride,
            padding,
        }
    }

    /// Output frames for `frames` input frames: `(frames + 2p − k) / s + 1`, or 0 if the input is too short.
    pub fn out_frames(&self, frames: usize) -> usize {
        let span = frames + 2 * self.padding;
        if span < self.kernel {
            0
        } else {
            (span - self.kernel) / self.stride + 1
        }
    }

    /// `x` `(frames, c_in)` → `(out_frames, c_out)` (row t of the unfolded input holds the k frames tap j
    /// reads, zeros for padding). Panics if `x` is not rows of `c_in` or `out_frames(frames) == 0` (callers
    /// check).
    pub fn forward_rows(&self, x: &[f32]) -> Vec<f32> {
        assert!(
            x.len().is_multiple_of(self.c_in),
            "{} values are not rows of {}",
            x.len(),
            self.c_in
        );
        let frames = x.len() / self.c_in;
        let t_out = self.out_frames(frames);
        assert!(
            t_out > 0,
            "conv1d input of {frames} frames is shorter than the kernel"
        );
        let (k, c_in) = (self.kernel, self.c_in);
        let mut unfolded = vec![0.0f32; t_out * k * c_in];
        for (t, row) in unfolded.chunks_exact_mut(k * c_in).enumerate() {
            for (j, slot) in row.chunks_exact_mut(c_in).enumerate() {
                let pos = (t * self.stride + j) as isize - self.padding as isize;
                if pos >= 0 && (pos as usize) < frames {
                    let pos = pos as usize;
                    slot.copy_from_slice(&x[pos * c_in..(pos + 1) * c_in]);
                }
            }
        }
        linear(
            &unfolded,
            &self.taps,
            Some(&self.bias),
            k * c_in,
            self.c_out,
        )
    }
}

/// The model width `d` of attention projections `[q, k, v, out]`. Panics if they are not all `(d, d)` or
/// `heads` does not divide `d`.
pub(crate) fn attention_width(parts: [&HostLinear; 4], heads: usize) -> usize {
    let d = parts[3].in_dim;
    assert!(
        heads > 0 && d.is_multiple_of(heads),
        "{d} channels do not split into {heads} heads"
    );
    for part in parts {
        assert_eq!(
            (part.in_dim, part.out_dim),
            (d, d),
            "attention projections must be ({d}, {d})"
        );
    }
    d
}

/// Multi-head self-attention with PyTorch's `q_proj`, `k_proj`, `v_proj`, `out_proj`: the three input
/// projections packed into one `(d, 3d)` matrix `[W_q/√d_head | W_k | W_v]` (and bias), so a pass is one
/// gemm, then the fused kernel per sequence.
#[derive(Debug, Clone)]
pub struct HostSelfAttention {
    qkv: HostLinear,
    out: HostLinear,
    heads: usize,
}

impl HostSelfAttention {
    /// From the four projections, each `(d, d)`; a missing bias counts as zeros (Whisper's `k_proj` has
    /// none). Panics if `heads` does not divide `d` or the projections are not `(d, d)`.
    pub fn new([q, k, v]: [&HostLinear; 3], out: HostLinear, heads: usize) -> Self {
        let d = attention_width([q, k, v, &out], heads);
        let scale = (1.0 / ((d / heads) as f64).sqrt()) as f32;
        let parts = [(q, scale), (k, 1.0), (v, 1.0)];
        let mut w = Vec::with_capacity(d * 3 * d);
        for i in 0..d {
            for (part, s) in &parts {
                w.extend(part.weight_t[i * d..(i + 1) * d].iter().map(|x| x * s));
            }
        }
        let b = parts
            .iter()
            .flat_map(|(part, s)| match &part.bias {
                Some(b) => b.iter().map(|x| x * s).collect(),
                None => vec![0.0; d],
            })
            .collect();
        Self {
            qkv: HostLinear::new(w, Some(b), d, 3 * d),
            out,
            heads,
        }
    }

    /// Model width `d`.
    pub fn dim(&self) -> usize {
        self.out.in_dim
    }

    /// Unmasked self-attention over `x` `(n, d)` → `(n, d)`: `softmax(q kᵀ / √d_head) v` per head.
    pub fn forward_rows(&self, x: &[f32]) -> Vec<f32> {
        let d = self.dim();
        self.forward_batch_rows(x, 1, x.len() / d, None)
    }

    /// Self-attention over `b` sequences of `n` frames stored as `(b·n, d)` rows; `key_bias` `(b, n)`, when
    /// given, is added to every score of a key (0 for real frames, −1e9 for padding). → `(b·n, d)`.
    pub fn forward_batch_rows(
        &self,
        x: &[f32],
        b: usize,
        n: usize,
        key_bias: Option<&[f32]>,
    ) -> Vec<f32> {
        let mut out = vec![0.0; x.len()];
        let mut buffers = AttentionBuffers::default();
        self.add_forward_batch_rows(x, (b, n), key_bias, &mut buffers, &mut out);
        out
    }

    /// `residual += attention(x)` for [`Self::forward_batch_rows`]'s `x`, `(b, n)` and `key_bias`, with the
    /// packed projections and the heads' context written in `buffers`' allocations.
    pub fn add_forward_batch_rows(
        &self,
        x: &[f32],
        (b, n): (usize, usize),
        key_bias: Option<&[f32]>,
        buffers: &mut AttentionBuffers,
        residual: &mut [f32],
    ) {
        let d = self.dim();
        if n == 0 {
            return;
        }
        let AttentionBuffers { qkv, context } = buffers;
        self.qkv.forward_rows_into(x, qkv);
        context.resize(b * n * d, 0.0);
        for (s, context) in context.chunks_exact_mut(n * d).enumerate() {
            let rows = &qkv[s * n * 3 * d..(s + 1) * n * 3 * d];
            attention_into(
                (rows, &rows[d..], &rows[2 * d..]),
                3 * d,
                (n, n, d),
                self.heads,
                key_bias.map(|bias| &bias[s * n..(s + 1) * n]),
                context,
            );
        }
        self.out.add_forward_rows(context, residual);
    }
}

/// What a [`HostSelfAttention`] pass writes between its products: the packed q, k, v `(b·n, 3d)` and the
/// heads' context `(b·n, d)`. A caller running many passes (the encoder's layers) keeps one, so these
/// pages are faulted in once.
#[derive(Debug, Default)]
pub struct AttentionBuffers {
    qkv: Vec<f32>,
    context: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinyalign_testkit::{attention_reference, lcg};

    fn plain_linear(
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        d_in: usize,
        d_out: usize,
    ) -> Vec<f64> {
        // PyTorch layout: w (out, in).
        x.chunks(d_in)
            .flat_map(|row| {
                (0..d_out).map(move |o| {
                    (0..d_in)
                        .map(|i| row[i] as f64 * w[o * d_in + i] as f64)
                        .sum::<f64>()
                        + b.map_or(0.0, |b| b[o] as f64)
                })
            })
            .collect()
    }

    fn max_err(got: &[f32], want: &[f64]) -> f64 {
        assert_eq!(got.len(), want.len());
        got.iter()
            .zip(want)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn linear_from_pytorch_layout_matches_plain_loops() {
        let (n, d_in, d_out) = (7, 5, 3);
        let (x, w, b) = (lcg(n * d_in, 1), lcg(d_out * d_in, 2), lcg(d_out, 3));
        let layer = HostLinear::from_torch(&w, Some(b.clone()), d_in, d_out);
        let err = max_err(
            &layer.forward_rows(&x),
            &plain_linear(&x, &w, Some(&b), d_in, d_out),
        );
        assert!(err < 1e-6, "max abs error {err}");
    }

    #[test]
    fn products_into_used_buffers_and_onto_residuals_match_fresh_ones() {
        let d_in = 5;
        let w = lcg(3 * d_in, 2);
        for (n, bias) in [(7, Some(lcg(3, 3))), (1, Some(lcg(3, 4))), (4, None)] {
            let layer = HostLinear::from_torch(&w, bias.clone(), d_in, 3);
            let x = lcg(n * d_in, 1);
            let fresh = layer.forward_rows(&x);
            // A longer buffer holding NaNs: resized, and nothing of it read.
            let mut out = vec![f32::NAN; 50];
            layer.forward_rows_into(&x, &mut out);
            assert_eq!(out, fresh, "{n} rows into a used buffer");
            let residual = lcg(n * 3, 5);
            let mut summed = residual.clone();
            layer.add_forward_rows(&x, &mut summed);
            let want = plain_linear(&x, &w, bias.as_deref(), d_in, 3);
            let want: Vec<f64> = want
                .iter()
                .zip(&residual)
                .map(|(p, r)| p + *r as f64)
                .collect();
            let err = max_err(&summed, &want);
            assert!(err < 1e-6, "{n} rows onto a residual: max abs error {err}");
        }
    }

    #[test]
    fn conv1d_matches_the_definition_with_stride_and_padding() {
        for (frames, stride) in [(9, 1), (9, 2), (2, 2)] {
            let g = ConvGeometry {
                c_in: 3,
                c_out: 4,
                kernel: 3,
                stride,
                padding: 1,
            };
            let (x, w, b) = (lcg(frames * 3, 4), lcg(4 * 3 * 3, 5), lcg(4, 6));
            let conv = HostConv1d::from_torch(&w, b.clone(), g);
            let t_out = conv.out_frames(frames);
            assert_eq!(t_out, (frames + 2 - 3) / stride + 1);
            let mut want = vec![0.0f64; t_out * 4];
            for t in 0..t_out {
                for o in 0..4 {
                    let mut sum = b[o] as f64;
                    for i in 0..3 {
                        for j in 0..3 {
                            let pos = (t * stride + j) as isize - 1;
                            if (0..frames as isize).contains(&pos) {
                                sum +=
                                    x[pos as usize * 3 + i] as f64 * w[(o * 3 + i) * 3 + j] as f64;
                            }
                        }
                    }
                    want[t * 4 + o] = sum;
                }
            }
            let err = max_err(&conv.forward_rows(&x), &want);
            assert!(
                err < 1e-6,
                "frames {frames}, stride {stride}: max abs error {err}"
            );
        }
    }

    #[test]
    fn self_attention_matches_the_definition_and_masks_padding() {
        let (b, n, d, heads) = (2, 6, 8, 2);
        let layer = |seed| HostLinear::from_torch(&lcg(d * d, seed), Some(lcg(d, seed + 10)), d, d);
        let (q, k, v, out) = (layer(1), layer(2), layer(3), layer(4));
        let attn = HostSelfAttention::new([&q, &k, &v], out.clone(), heads);
        let x = lcg(b * n * d, 9);
        // The second sequence's last two frames are padding.
        let bias: Vec<f32> = (0..b * n)
            .map(|i| if i >= n && i % n >= n - 2 { -1e9 } else { 0.0 })
            .collect();
        let got = attn.forward_batch_rows(&x, b, n, Some(&bias));
        let scale = 1.0 / ((d / heads) as f32).sqrt();
        for s in 0..b {
            let rows = &x[s * n * d..(s + 1) * n * d];
            let qs: Vec<f32> = q.forward_rows(rows).iter().map(|v| v * scale).collect();
            let ctx = attention_reference(
                &qs,
                &k.forward_rows(rows),
                &v.forward_rows(rows),
                (n, n, d),
                heads,
                Some(&bias[s * n..(s + 1) * n]),
            );
            let want: Vec<f64> = out.forward_rows(&ctx).iter().map(|v| *v as f64).collect();
            let err = max_err(&got[s * n * d..(s + 1) * n * d], &want);
            assert!(err < 1e-5, "sequence {s}: max abs error {err}");
        }
        // Unmasked, one sequence: the same as a batch of one without a bias.
        let one = &x[..n * d];
        assert_eq!(
            attn.forward_rows(one),
            attn.forward_batch_rows(one, 1, n, None)
        );
        // Buffers used first by the batch of two, then by one shorter sequence, and a residual to add onto.
        let mut buffers = AttentionBuffers::default();
        let mut sum = vec![0.0; b * n * d];
        attn.add_forward_batch_rows(&x, (b, n), Some(&bias), &mut buffers, &mut sum);
        assert_eq!(sum, got);
        let short = &x[..(n - 1) * d];
        let residual = lcg((n - 1) * d, 11);
        let mut sum = residual.clone();
        attn.add_forward_batch_rows(short, (1, n - 1), None, &mut buffers, &mut sum);
        let want: Vec<f64> = attn
            .forward_rows(short)
            .iter()
            .zip(&residual)
            .map(|(a, r)| (a + r) as f64)
            .collect();
        let err = max_err(&sum, &want);
        assert!(
            err < 1e-6,
            "reused buffers onto a residual: max abs error {err}"
        );
    }
}
