//! Inference kernels on host rows, for passes that record no gradient: multi-head attention fused over
//! blocks of queries (the `(heads, n, n)` score tensor never exists whole), erf-GELU, LayerNorm and
//! `x W + b` with the bias as gemm's starting value, all spread over rayon's pool. dfdx 0.13 runs
//! element-wise ops on one thread and materialises every intermediate; in Whisper's encoder on a 30 s input
//! that was about 70% of the time. `exp` and `erf` are branch-free polynomials the compiler vectorises
//! (libm's calls were a fifth of the remaining time); their errors are bounded in the tests.

use gemm::matmul_f32;
use rayon::prelude::*;

/// Fewest and most query rows per attention task. A task hands gemm one head's keys and values per block,
/// and gemm packs them anew for each call, so small blocks repack the same keys many times: with 32 rows,
/// packing was 17% of a 30 s Whisper encode. Measured on the 2-core Xeon (criterion, 30 s window): 32 rows
/// 294–307 ms, 64 rows 255–271, 128 rows 252–258, 256 rows 237–263, 384 rows 236–238. At 256 rows a
/// block's scores (256 × 1500 × 4 B = 1.5 MB) still fit this CPU's 2 MB L2 per core.
const MIN_QUERY_BLOCK: usize = 32;
const MAX_QUERY_BLOCK: usize = 256;

/// Query rows per task: two tasks per thread where the rows allow, so the pool stays balanced on many cores.
fn query_block(n_q: usize) -> usize {
    n_q.div_ceil(2 * rayon::current_num_threads())
        .clamp(MIN_QUERY_BLOCK, MAX_QUERY_BLOCK)
}

/// Keys per task when one query scores them (a decoding step over Whisper's 1500 audio frames: 4 tasks).
const KEY_BLOCK: usize = 384;

/// Output columns per task of a one-row product: 256 columns of a 384-row weight are 384 KB, a task worth
/// handing to another core.
const LINEAR_BAND: usize = 256;

/// `softmax(q kᵀ + bias) v` per head over `q` `(n_q, d)` (already scaled by `1/√d_head`), `k` and `v`
/// `(n_k, d)`, each row `i` starting at `i·row_stride` (`d`, or `3d` when q, k and v are column blocks of one
/// packed projection), heads taking consecutive `d / heads` columns; `key_bias` `(n_k)` is added to every score
/// of a key (0, or a large negative number to hide a padding frame). → `(n_q, d)`.
pub fn attention(
    (q, k, v): (&[f32], &[f32], &[f32]),
    row_stride: usize,
    (n_q, n_k, d): (usize, usize, usize),
    heads: usize,
    key_bias: Option<&[f32]>,
) -> Vec<f32> {
    let mut out = vec![0.0f32; n_q * d];
    attention_into(
        (q, k, v),
        row_stride,
        (n_q, n_k, d),
        heads,
        key_bias,
        &mut out,
    );
    out
}

thread_local! {
    /// One attention task's `(rows, n_k)` scores (1.5 MB for a 256-row block of Whisper's 1500 frames), kept
    /// by each thread between tasks: freshly allocated per task, every block's pages were faulted in anew
    /// once glibc had trimmed them.
    static SCORES: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// [`attention`] written over `out` `(n_q, d)`, whose previous values are ignored.
pub fn attention_into(
    (q, k, v): (&[f32], &[f32], &[f32]),
    row_stride: usize,
    (n_q, n_k, d): (usize, usize, usize),
    heads: usize,
    key_bias: Option<&[f32]>,
    out: &mut [f32],
) {
    assert_eq!(out.len(), n_q * d, "attention output is not ({n_q}, {d})");
    let dh = d / heads;
    if n_q == 0 || n_k == 0 {
        out.fill(0.0);
        return;
    }
    if n_q == 1 {
        out.fill(0.0);
        single_query_attention((q, k, v), row_stride, (n_k, d), heads, key_bias, out);
        return;
    }
    let block_rows = query_block(n_q);
    out.par_chunks_mut(block_rows * d)
        .enumerate()
        .for_each(|(block, out_rows)| {
            let first = block * block_rows;
            let rows = out_rows.len() / d;
            // Taken, not borrowed: a nested task on this thread would find it empty and allocate.
            let mut scores = SCORES.take();
            scores.resize(rows * n_k, 0.0);
            for h in 0..heads {
                let c0 = h * dh;
                // scores (rows, n_k) = q[first.., head] (rows, dh) · k[.., head]ᵀ (dh, n_k).
                matmul_f32(
                    (rows, dh, n_k),
                    &mut scores,
                    n_k,
                    false,
                    (&q[first * row_stride + c0..], row_stride, 1),
                    (&k[c0..], 1, row_stride),
                    1,
                );
                vectorized(
                    #[inline(always)]
                    || {
                        for row in scores.chunks_exact_mut(n_k) {
                            if let Some(bias) = key_bias {
                                row.iter_mut().zip(bias).for_each(|(s, b)| *s += b);
                            }
                            softmax_in_place(row);
                        }
                    },
                );
                // out[.., head] (rows, dh) = probabilities (rows, n_k) · v[.., head] (n_k, dh).
                matmul_f32(
                    (rows, n_k, dh),
                    &mut out_rows[c0..],
                    d,
                    false,
                    (&scores, n_k, 1),
                    (&v[c0..], row_stride, 1),
                    1,
                );
            }
            SCORES.set(scores);
        });
}

/// [`attention`] for one query (a decoding step): one pass over the key rows scores every head at once,
/// one pass over the value rows sums every head's output, each row read whole and once, where gemm would
/// first pack every head's `(n_k, d_head)` operands. Key rows are split over the pool.
fn single_query_attention(
    (q, k, v): (&[f32], &[f32], &[f32]),
    row_stride: usize,
    (n_k, d): (usize, usize),
    heads: usize,
    key_bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let dh = d / heads;
    // scores `(n_k, heads)`, key-major.
    let mut scores = vec![0.0f32; n_k * heads];
    scores
        .par_chunks_mut(KEY_BLOCK * heads)
        .enumerate()
        .for_each(|(block, scores)| {
            vectorized(
                #[inline(always)]
                || {
                    for (i, row_scores) in scores.chunks_exact_mut(heads).enumerate() {
                        let j = block * KEY_BLOCK + i;
                        let key = &k[j * row_stride..j * row_stride + d];
                        let bias = key_bias.map_or(0.0, |b| b[j]);
                        for (h, s) in row_scores.iter_mut().enumerate() {
                            *s = dot(&q[h * dh..(h + 1) * dh], &key[h * dh..(h + 1) * dh]) + bias;
                        }
                    }
                },
            );
        });
    // Per head: softmax over its column of scores, then its slice of every value row (one thread: split
    // over heads it measured slower, 8.3–9.9 against 6.7–9.0 ms a Whisper step).
    out.par_chunks_mut(dh)
        .enumerate()
        .for_each(|(h, out_head)| {
            vectorized(
                #[inline(always)]
                || {
                    let mut column: Vec<f32> =
                        scores.iter().skip(h).step_by(heads).copied().collect();
                    softmax_in_place(&mut column);
                    for (j, p) in column.into_iter().enumerate() {
                        let value = &v[j * row_stride + h * dh..j * row_stride + (h + 1) * dh];
                        out_head
                            .iter_mut()
                            .zip(value)
                            .for_each(|(o, x)| *o += p * x);
                    }
                },
            );
        });
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[inline(always)]
pub(crate) fn softmax_in_place(row: &mut [f32]) {
    let max = lanes_fold(row, f32::NEG_INFINITY, max, max);
    row.iter_mut().for_each(|s| *s = exp(*s - max));
    let scale = 1.0 / lanes_fold(row, 0.0, add, add);
    row.iter_mut().for_each(|s| *s *= scale);
}

/// Folds `xs` with `step` over 8 independent lanes, then merges the lanes with `merge`: a float sum or max
/// in one running value cannot be reordered, so the compiler would keep it scalar.
#[inline(always)]
fn lanes_fold(
    xs: &[f32],
    init: f32,
    step: impl Fn(f32, f32) -> f32,
    merge: impl Fn(f32, f32) -> f32,
) -> f32 {
    let mut lanes = [init; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = step(*lane, v);
        }
    }
    let merged = lanes.into_iter().fold(init, merge);
    tail.iter().fold(merged, |acc, &v| step(acc, v))
}

#[inline(always)]
fn max(a: f32, b: f32) -> f32 {
    if b > a { b } else { a }
}

#[inline(always)]
fn add(a: f32, b: f32) -> f32 {
    a + b
}

/// Runs `f` compiled for AVX2 + FMA when the CPU has them (pulp's safe feature token), else as is; the
/// loops inside are written so the compiler vectorises them either way.
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(f);
    }
    f()
}

/// `eˣ` within 3e−7 relative error (2.5 ulp) for x in [−87, 88] (clamped outside: e⁻⁸⁷ ≈ 1.6e−38 stands in for underflow, which a
/// softmax cannot tell from 0). x = k·ln 2 + r with |r| ≤ ln 2 / 2, eʳ by its degree-6 Taylor polynomial
/// (truncation < 1.2e−7 relative), 2ᵏ built in the exponent bits. No branches or calls, so it vectorises.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer with plain float adds.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let k_rounded = x * std::f32::consts::LOG2_E + ROUND;
    let k = k_rounded - ROUND;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // k sits in the low mantissa bits of `k_rounded` (|k| ≤ 127 ≪ 2²²): integer subtraction recovers it
    // without a float→int conversion, whose saturation and NaN fix-ups cost vector instructions.
    let k_int = k_rounded.to_bits().wrapping_sub(ROUND.to_bits());
    p * f32::from_bits(k_int.wrapping_add(127) << 23)
}

/// erf(x) by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e−7), odd-extended.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152_1 + t * 1.061_405_4))));
    (1.0 - poly * exp(-a * a)).copysign(x)
}

/// `x · Φ(x) = x/2 · (1 + erf(x/√2))` in place (Whisper's exact GELU; absolute error ≤ 1e−7·|x|).
pub fn gelu_in_place(x: &mut [f32]) {
    const CHUNK: usize = 1 << 14;
    x.par_chunks_mut(CHUNK).for_each(|chunk| {
        vectorized(
            #[inline(always)]
            || {
                for v in chunk {
                    *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
                }
            },
        )
    });
}

/// For training through GELU g: each element's value `g(x)` (written over `x`, which the caller no longer
/// needs) and slope `g′(x) = Φ(x) + x·φ(x)`.
pub fn gelu_with_slope(mut x: Vec<f32>) -> (Vec<f32>, Vec<f32>) {
    const CHUNK: usize = 1 << 14;
    // 1/√(2π).
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let mut slope = vec![0.0f32; x.len()];
    x.par_chunks_mut(CHUNK)
        .zip(slope.par_chunks_mut(CHUNK))
        .for_each(|(x, slope)| {
            vectorized(
                #[inline(always)]
                || {
                    for (v, s) in x.iter_mut().zip(slope.iter_mut()) {
                        let cdf = 0.5 * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
                        *s = cdf + *v * INV_SQRT_2PI * exp(-0.5 * *v * *v);
                        *v *= cdf;
                    }
                },
            )
        });
    (x, slope)
}

/// Normalises each `d`-wide row of `x` in place to zero mean and unit (biased) variance, returning each
/// row's `1/√(var + eps)`.
pub fn normalize_rows(x: &mut [f32], d: usize, eps: f32) -> Vec<f32> {
    let mut inv = vec![0.0f32; x.len() / d.max(1)];
    x.par_chunks_mut(d * 64)
        .zip(inv.par_chunks_mut(64))
        .for_each(|(rows, inv)| {
            vectorized(
                #[inline(always)]
                || {
                    for (row, inv) in rows.chunks_exact_mut(d).zip(inv.iter_mut()) {
                        let mean = lanes_fold(row, 0.0, add, add) / d as f32;
                        row.iter_mut().for_each(|v| *v -= mean);
                        let var = lanes_fold(row, 0.0, |acc, v| acc + v * v, add) / d as f32;
                        *inv = 1.0 / (var + eps).sqrt();
                        row.iter_mut().for_each(|v| *v *= *inv);
                    }
                },
            )
        });
    inv
}

/// LayerNorm of each `d`-wide row in place: `(x − mean) / √(var + eps) · gamma + beta`, biased variance, as
/// PyTorch and dfdx's `normalize`.
pub fn layer_norm_in_place(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let d = gamma.len();
    normalize_rows(x, d, eps);
    x.par_chunks_mut(d * 64).for_each(|rows| {
        for row in rows.chunks_exact_mut(d) {
            for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
                *v = *v * g + b;
            }
        }
    });
}

/// `dst (m, n) += lhs (m, k) · rhs (k, n)` on rayon's pool, with `dst` row-major and each operand given as
/// `(values, row stride, column stride)`, so a transposed operand is only swapped strides (training's
/// backward products: `dX += dY Wᵀ`, `dW += Xᵀ dY`).
pub fn matmul_accumulate(
    (m, k, n): (usize, usize, usize),
    dst: &mut [f32],
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
) {
    matmul_f32(
        (m, k, n),
        dst,
        n,
        true,
        lhs,
        rhs,
        rayon::current_num_threads(),
    );
}

/// `x W + b` for `x` `(n, d_in)`, `w` `(d_in, d_out)`, `b` `(d_out)`: gemm accumulates onto rows that start
/// as the bias, so the bias costs no pass of its own. → `(n, d_out)`.
pub fn linear(x: &[f32], w: &[f32], bias: Option<&[f32]>, d_in: usize, d_out: usize) -> Vec<f32> {
    let mut out = Vec::new();
    linear_into(x, w, bias, d_in, d_out, &mut out);
    out
}

/// [`linear`] into `out`, resized to `(n, d_out)` in its own allocation: a caller running many passes keeps
/// one buffer, whose pages are then touched once, not once per pass.
pub fn linear_into(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    d_in: usize,
    d_out: usize,
    out: &mut Vec<f32>,
) {
    let n = x.len() / d_in.max(1);
    out.clear();
    match bias {
        Some(b) => (0..n).for_each(|_| out.extend_from_slice(b)),
        None => out.resize(n * d_out, 0.0),
    }
    accumulate_product(x, w, d_in, d_out, bias.is_some(), out);
}

/// `dst += x W + b` over `dst` `(n, d_out)`: a residual connection's sum with no buffer for the product.
pub fn linear_add(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    d_in: usize,
    d_out: usize,
    dst: &mut [f32],
) {
    assert_eq!(
        dst.len(),
        x.len() / d_in.max(1) * d_out,
        "residual rows are not (n, {d_out})"
    );
    if let Some(b) = bias {
        dst.par_chunks_mut(d_out.max(1) * 64).for_each(|rows| {
            for row in rows.chunks_exact_mut(d_out) {
                row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
            }
        });
    }
    accumulate_product(x, w, d_in, d_out, true, dst);
}

/// `out (n, d_out) = (accumulate ? out : 0) + x (n, d_in) · w (d_in, d_out)`.
fn accumulate_product(
    x: &[f32],
    w: &[f32],
    d_in: usize,
    d_out: usize,
    accumulate: bool,
    out: &mut [f32],
) {
    let n = x.len() / d_in.max(1);
    if n == 1 {
        if !accumulate {
            out.fill(0.0);
        }
        // One row (a decoding step): `out += x_i · W[i, ..]` over W's rows in column bands, reading W
        // once instead of letting gemm pack it first.
        out.par_chunks_mut(LINEAR_BAND)
            .enumerate()
            .for_each(|(band, out)| {
                let c0 = band * LINEAR_BAND;
                vectorized(
                    #[inline(always)]
                    || {
                        for (i, &xi) in x.iter().enumerate() {
                            let row = &w[i * d_out + c0..i * d_out + c0 + out.len()];
                            out.iter_mut().zip(row).for_each(|(o, wv)| *o += xi * wv);
                        }
                    },
                );
            });
        return;
    }
    matmul_f32(
        (n, d_in, d_out),
        out,
        d_out,
        accumulate,
        (x, d_in, 1),
        (w, d_out, 1),
        rayon::current_num_threads(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinyalign_testkit::{attention_reference, lcg};

    #[test]
    fn fused_attention_matches_the_definition_across_block_edges() {
        // 70 queries: two full blocks and a partial one; a bias that hides the last 5 keys.
        for (n_q, n_k, heads, masked) in [
            (70, 45, 3, true),
            (1, 9, 2, false),
            (1, 1500, 6, true),
            (33, 1, 1, false),
            (40, 40, 2, true),
        ] {
            let d = heads * 4;
            let q = lcg(n_q * d, 1);
            let k = lcg(n_k * d, 2);
            let v = lcg(n_k * d, 3);
            let bias: Vec<f32> = (0..n_k)
                .map(|j| if j + 5 >= n_k { -1e9 } else { 0.0 })
                .collect();
            let bias = masked.then_some(bias.as_slice());
            let got = attention((&q, &k, &v), d, (n_q, n_k, d), heads, bias);
            // Over a buffer of NaNs: every value is written, none read (a NaN left over fails the equality).
            let mut reused = vec![f32::NAN; n_q * d];
            attention_into((&q, &k, &v), d, (n_q, n_k, d), heads, bias, &mut reused);
            assert_eq!(reused, got, "({n_q}, {n_k}, {heads}) into a used buffer");
            let want = attention_reference(&q, &k, &v, (n_q, n_k, d), heads, bias);
            let err = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err < 1e-5, "({n_q}, {n_k}, {heads}): max abs error {err}");
            if n_q == n_k {
                // The same rows packed as [q | k | v] column blocks of width 3d.
                let packed: Vec<f32> = (0..n_q)
                    .flat_map(|i| {
                        [&q, &k, &v]
                            .map(|m| m[i * d..(i + 1) * d].to_vec())
                            .concat()
                    })
                    .collect();
                let got = attention(
                    (&packed, &packed[d..], &packed[2 * d..]),
                    3 * d,
                    (n_q, n_k, d),
                    heads,
                    bias,
                );
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(err < 1e-5, "packed ({n_q}, {heads}): max abs error {err}");
            }
        }
    }

    #[test]
    fn gelu_matches_the_erf_definition() {
        let mut x: Vec<f32> = lcg(40_000, 4).iter().map(|v| v * 12.0).collect();
        let want: Vec<f64> = x
            .iter()
            .map(|&v| {
                let v = v as f64;
                0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2))
            })
            .collect();
        gelu_in_place(&mut x);
        let err = x
            .iter()
            .zip(&want)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 2e-6, "max abs error {err}");
    }

    #[test]
    fn gelu_with_slope_gives_its_value_and_derivative() {
        let x: Vec<f32> = lcg(20_000, 5).iter().map(|v| v * 12.0).collect();
        let (values, slope) = gelu_with_slope(x.clone());
        for ((&v, y), s) in x.iter().zip(&values).zip(&slope) {
            let v64 = v as f64;
            let cdf = 0.5 * (1.0 + libm::erf(v64 / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * v64 * v64).exp() / (2.0 * std::f64::consts::PI).sqrt();
            assert!((*s as f64 - (cdf + v64 * pdf)).abs() < 1e-6, "slope at {v}");
            assert!((*y as f64 - v64 * cdf).abs() < 2e-6, "value at {v}");
        }
    }

    #[test]
    fn exp_is_within_a_few_ulp_over_the_range_softmax_uses() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * i as f32 / 200_000.0;
            let want = (x as f64).exp();
            worst = worst.max(((exp(x) as f64) - want).abs() / want);
        }
        // 2.5 ulp of f32 is 3e-7 relative.
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1e9) < 2e-38, "a masked score vanishes");
    }

    #[test]
    fn layer_norm_and_linear_match_plain_loops() {
        let (n, d_in, d_out) = (130, 24, 40);
        let x = lcg(n * d_in, 5);
        let gamma: Vec<f32> = lcg(d_in, 6).iter().map(|g| 1.0 + g).collect();
        let beta = lcg(d_in, 7);
        let mut normed = x.clone();
        layer_norm_in_place(&mut normed, &gamma, &beta, 1e-5);
        for (row, got) in x.chunks(d_in).zip(normed.chunks(d_in)) {
            let mean = row.iter().map(|v| *v as f64).sum::<f64>() / d_in as f64;
            let var = row.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / d_in as f64;
            for c in 0..d_in {
                let want =
                    (row[c] as f64 - mean) / (var + 1e-5).sqrt() * gamma[c] as f64 + beta[c] as f64;
                assert!((got[c] as f64 - want).abs() < 1e-5, "{} vs {want}", got[c]);
            }
        }
        // Many rows through gemm; one row (a decoding step) over two column bands and a partial third.
        for (n, d_out) in [(n, d_out), (1, 2 * LINEAR_BAND + 7)] {
            let x = &x[..n * d_in];
            let w = lcg(d_in * d_out, 8);
            let b = lcg(d_out, 9);
            for bias in [Some(b.as_slice()), None] {
                let got = linear(x, &w, bias, d_in, d_out);
                for i in 0..n {
                    for j in 0..d_out {
                        let dot: f64 = (0..d_in)
                            .map(|l| x[i * d_in + l] as f64 * w[l * d_out + j] as f64)
                            .sum();
                        let want = dot + bias.map_or(0.0, |b| b[j] as f64);
                        assert!((got[i * d_out + j] as f64 - want).abs() < 1e-5);
                    }
                }
            }
        }
    }
}
