//! Plain-Rust references of every kernel (row-major slices, f64 accumulation where it matters): what the
//! kernel tests compare the GPU against. Written from the definitions, not from the WGSL.

/// erf by its Maclaurin series in f64 (|x| < 5; beyond, erf is ±1 to 1e-11).
pub fn erf(x: f64) -> f64 {
    if x.abs() >= 5.0 {
        return x.signum();
    }
    let mut term = x;
    let mut sum = x;
    let mut n = 0.0;
    while term.abs() > 1e-17 * sum.abs().max(1e-300) {
        n += 1.0;
        term *= -x * x / n;
        sum += term / (2.0 * n + 1.0);
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

pub fn gelu(x: f32) -> f32 {
    let x = f64::from(x);
    (0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))) as f32
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// `x (m × k) · w (n × k)ᵀ + bias`.
pub fn linear(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f32> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k)
                .map(|t| f64::from(x[i * k + t]) * f64::from(w[j * k + t]))
                .sum();
            out[i * n + j] = dot as f32 + bias.map_or(0.0, |b| b[j]);
        }
    }
    out
}

pub fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], eps: f32) -> Vec<f32> {
    let d = weight.len();
    x.chunks_exact(d)
        .flat_map(|row| {
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / d as f64;
            let var = row
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / d as f64;
            let inv = 1.0 / (var + f64::from(eps)).sqrt();
            row.iter()
                .zip(weight)
                .zip(bias)
                .map(move |((&v, &w), &b)| ((f64::from(v) - mean) * inv) as f32 * w + b)
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, scale: f32) -> Vec<f32> {
    let d = weight.len();
    x.chunks_exact(d)
        .flat_map(|row| {
            let ms = row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / d as f64;
            let inv = 1.0 / (ms + f64::from(eps)).sqrt();
            row.iter()
                .zip(weight)
                .map(move |(&v, &w)| (f64::from(v) * inv) as f32 * w * scale)
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn softmax(x: &[f32], cols: usize) -> Vec<f32> {
    x.chunks_exact(cols)
        .flat_map(|row| {
            let max = row
                .iter()
                .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
            let exps: Vec<f64> = row.iter().map(|&v| (f64::from(v) - max).exp()).collect();
            let total: f64 = exps.iter().sum();
            exps.into_iter().map(move |e| (e / total) as f32)
        })
        .collect()
}

/// PyTorch Conv1d on time-major x (`frames × c_in`) with weight `(c_out, c_in, kernel)` → `t_out × c_out`.
pub fn conv1d(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    c_in: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
) -> Vec<f32> {
    let frames = x.len() / c_in;
    let c_out = bias.len();
    let t_out = (frames + 2 * pad - kernel) / stride + 1;
    let mut out = vec![0.0; t_out * c_out];
    for t in 0..t_out {
        for o in 0..c_out {
            let mut acc = f64::from(bias[o]);
            for c in 0..c_in {
                for tap in 0..kernel {
                    let src = (t * stride + tap) as isize - pad as isize;
                    if src >= 0 && (src as usize) < frames {
                        acc += f64::from(weight[(o * c_in + c) * kernel + tap])
                            * f64::from(x[src as usize * c_in + c]);
                    }
                }
            }
            out[t * c_out + o] = acc as f32;
        }
    }
    out
}

/// Multi-head attention as [`crate::ops::attention`] defines it.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    valid_keys: usize,
    causal_start: Option<usize>,
) -> Vec<f32> {
    let (d, kvd) = (heads * head_dim, kv_heads * head_dim);
    let n = q.len() / d;
    let scale = 1.0 / (head_dim as f64).sqrt();
    let mut out = vec![0.0; n * d];
    for i in 0..n {
        let visible = causal_start.map_or(valid_keys, |s| valid_keys.min(s + i + 1));
        for h in 0..heads {
            let kvh = h / (heads / kv_heads);
            let qh = &q[i * d + h * head_dim..][..head_dim];
            let scores: Vec<f64> = (0..visible)
                .map(|j| {
                    let kj = &k[j * kvd + kvh * head_dim..][..head_dim];
                    qh.iter()
                        .zip(kj)
                        .map(|(&a, &b)| f64::from(a) * f64::from(b))
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let max = scores.iter().fold(f64::NEG_INFINITY, |m, &s| m.max(s));
            let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = exps.iter().sum();
            for dim in 0..head_dim {
                let acc: f64 = exps
                    .iter()
                    .enumerate()
                    .map(|(j, e)| e * f64::from(v[j * kvd + kvh * head_dim + dim]))
                    .sum();
                out[i * d + h * head_dim + dim] = (acc / total) as f32;
            }
        }
    }
    out
}

/// RoPE on every head of x (rows of `width`), row r at position `start + r`, pairing (x₂ᵢ, x₂ᵢ₊₁), or
/// (xᵢ, xᵢ₊head_dim/2) with `half_split`; angles in f64.
pub fn rope(
    x: &[f32],
    width: usize,
    head_dim: usize,
    start: usize,
    theta: f32,
    half_split: bool,
) -> Vec<f32> {
    let mut out = x.to_vec();
    let half = head_dim / 2;
    for (r, row) in out.chunks_exact_mut(width).enumerate() {
        for head in row.chunks_exact_mut(head_dim) {
            for i in 0..half {
                let (ia, ib) = if half_split {
                    (i, i + half)
                } else {
                    (2 * i, 2 * i + 1)
                };
                let freq = f64::from(theta).powf(-(2.0 * i as f64) / head_dim as f64);
                let (sin, cos) = ((start + r) as f64 * freq).sin_cos();
                let (a, b) = (f64::from(head[ia]), f64::from(head[ib]));
                head[ia] = (a * cos - b * sin) as f32;
                head[ib] = (a * sin + b * cos) as f32;
            }
        }
    }
    out
}

/// Rows `ids` of a `? × k` table.
pub fn gather(table: &[f32], k: usize, ids: &[u32]) -> Vec<f32> {
    ids.iter()
        .flat_map(|&id| {
            table[id as usize * k..(id as usize + 1) * k]
                .iter()
                .copied()
        })
        .collect()
}

/// Adaptive average pooling of the first `valid` rows (the projector crate's bins, as a matrix product).
pub fn adaptive_pool(h: &[f32], cols: usize, valid: usize, tokens: usize) -> Vec<f32> {
    let rows = h.len() / cols;
    let weights = tinyalign_projector::adaptive_pool_weights(&[valid], &[tokens], rows, tokens);
    let mut out = vec![0.0; tokens * cols];
    for j in 0..tokens {
        for r in 0..rows {
            let w = weights[j * rows + r];
            if w != 0.0 {
                for c in 0..cols {
                    out[j * cols + c] += w * h[r * cols + c];
                }
            }
        }
    }
    out
}
