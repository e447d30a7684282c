//! Seeded test inputs and plain-loop references shared by the unit tests of several crates (a
//! dev-dependency only: nothing here ships).

/// `n` values in [−0.5, 0.5) from a 32-bit LCG (Numerical Recipes constants), reproducible by seed.
pub fn lcg(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

/// Values uniform in [−`half_width`, `half_width`) from Knuth's 64-bit LCG (MMIX constants), one per state's
/// top 24 bits: the stream the projector, CTC, quant and wgpu tests were written against.
pub fn lcg64(n: usize, seed: u64, half_width: f32) -> Vec<f32> {
    let mut next = lcg64_stream(seed, half_width);
    (0..n).map(|_| next()).collect()
}

/// [`lcg64`] one value at a time.
pub fn lcg64_stream(seed: u64, half_width: f32) -> impl FnMut() -> f32 {
    let mut s = seed;
    move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) * (2.0 * half_width) - half_width
    }
}

/// Multi-head attention by plain f64 loops over heads, queries and keys: `softmax(q kᵀ + key_bias) v` per
/// head, `q` already scaled by `1/√d_head`, all `(rows, d)` row-major. The definition the kernels are
/// tested against, independent of gemm and of any blocking.
pub fn attention_reference(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (n_q, n_k, d): (usize, usize, usize),
    heads: usize,
    key_bias: Option<&[f32]>,
) -> Vec<f32> {
    let dh = d / heads;
    let mut out = vec![0.0; n_q * d];
    for h in 0..heads {
        for i in 0..n_q {
            let scores: Vec<f64> = (0..n_k)
                .map(|j| {
                    let dot: f64 = (0..dh)
                        .map(|c| q[i * d + h * dh + c] as f64 * k[j * d + h * dh + c] as f64)
                        .sum();
                    dot + key_bias.map_or(0.0, |b| b[j] as f64)
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::MIN, f64::max);
            let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = exps.iter().sum();
            for c in 0..dh {
                out[i * d + h * dh + c] = (0..n_k)
                    .map(|j| exps[j] / total * v[j * d + h * dh + c] as f64)
                    .sum::<f64>() as f32;
            }
        }
    }
    out
}
