//! The plain-Rust dot products: every target (wasm32 included), and the reference the SIMD kernels are
//! tested against.

use super::{Dot, Q5Row, offset_term};
use crate::acts::{ActsView, QuadView};
use crate::q4k::{Q4kRow, RUNS};
use crate::q5_0_bytes;
use crate::q6k::Q6kRow;

#[derive(Clone, Copy)]
pub struct Portable;

impl Dot for Portable {
    #[inline(always)]
    fn f32(self, w: &[f32], x: &[f32]) -> f32 {
        dot_f32(w, x)
    }

    #[inline(always)]
    fn q8_0_f32(self, scales: &[f32], quants: &[[u8; 32]], x: ActsView) -> f32 {
        byte_blocks_f32(scales, |b| quants[b], x, |q| q as i8)
    }

    #[inline(always)]
    fn q8_0_q8(self, scales: &[f32], quants: &[[u8; 32]], x: ActsView) -> f32 {
        byte_blocks_q8(scales, |b| quants[b], x, |q| q as i8)
    }

    #[inline(always)]
    fn q4_f32(
        self,
        scales: &[f32],
        mins: Option<&[f32]>,
        nibbles: &[[u8; 16]],
        x: ActsView,
    ) -> f32 {
        let mut total = 0.0;
        for (b, (packed, xb)) in nibbles.iter().zip(x.values.chunks_exact(32)).enumerate() {
            let (lo, hi) = xb.split_at(16);
            let mut acc = [0.0f32; 16];
            for j in 0..16 {
                acc[j] = f32::from(packed[j] & 15) * lo[j] + f32::from(packed[j] >> 4) * hi[j];
            }
            total += scales[b] * acc.iter().sum::<f32>();
        }
        total + offset_term(scales, mins, x.sums)
    }

    #[inline(always)]
    fn q4_q8(self, scales: &[f32], mins: Option<&[f32]>, nibbles: &[[u8; 16]], x: ActsView) -> f32 {
        let mut total = 0.0;
        for b in 0..scales.len() {
            let (lo, hi) = x.quants[b].split_at(16);
            let mut sum = 0i32;
            for j in 0..16 {
                let byte = nibbles[b][j];
                sum += i32::from(byte & 15) * i32::from(lo[j] as i8);
                sum += i32::from(byte >> 4) * i32::from(hi[j] as i8);
            }
            total += scales[b] * x.scales[b] * sum as f32;
        }
        total + offset_term(scales, mins, x.sums)
    }

    #[inline(always)]
    fn q5_f32(self, w: Q5Row, x: ActsView) -> f32 {
        let block = |b: usize| q5_0_bytes(&w.nibbles[b], &w.high[b]);
        byte_blocks_f32(w.scales, block, x, |q| q as i8 - 16)
    }

    #[inline(always)]
    fn q5_q8(self, w: Q5Row, x: ActsView) -> f32 {
        let block = |b: usize| q5_0_bytes(&w.nibbles[b], &w.high[b]);
        byte_blocks_q8(w.scales, block, x, |q| q as i8 - 16)
    }

    #[inline(always)]
    fn q5_q8_x4(self, scales: &[f32], quants: &[[u8; 32]], xs: QuadView) -> [f32; 4] {
        xs.vectors
            .map(|x| byte_blocks_q8(scales, |b| quants[b], x, |q| q as i8 - 16))
    }

    #[inline(always)]
    fn q8x16_f32(self, scales: &[[f32; 2]], quants: &[[u8; 32]], x: ActsView) -> f32 {
        let mut total = 0.0;
        for (b, (q, xb)) in quants.iter().zip(x.values.chunks_exact(32)).enumerate() {
            let mut halves = [0.0f32; 2];
            for (h, half) in halves.iter_mut().enumerate() {
                let mut acc = [0.0f32; 8];
                for (qc, xc) in q[16 * h..16 * h + 16]
                    .chunks_exact(8)
                    .zip(xb[16 * h..16 * h + 16].chunks_exact(8))
                {
                    for i in 0..8 {
                        acc[i] += f32::from(qc[i] as i8) * xc[i];
                    }
                }
                *half = acc.iter().sum();
            }
            total += scales[b][0] * halves[0] + scales[b][1] * halves[1];
        }
        total
    }

    #[inline(always)]
    fn q4k_q8(self, w: Q4kRow, x: ActsView) -> f32 {
        let mut total = 0.0;
        for (s, sup) in w.supers.iter().enumerate() {
            // |Σ q·x̂| ≤ 32·15·127 per run, times a 6-bit scale, 8 runs: < 2³¹.
            let mut sum = 0i32;
            for (j, &sc) in sup.scales.iter().enumerate() {
                let b = RUNS * s + j;
                let (lo, hi) = x.quants[b].split_at(16);
                let mut run = 0i32;
                for e in 0..16 {
                    let byte = w.nibbles[b][e];
                    run += i32::from(byte & 15) * i32::from(lo[e] as i8);
                    run += i32::from(byte >> 4) * i32::from(hi[e] as i8);
                }
                sum += i32::from(sc) * run;
            }
            total += sup.d * x.scales[RUNS * s] * sum as f32;
            total += dot_f32(&sup.run_offsets(), &x.sums[RUNS * s..RUNS * (s + 1)]);
        }
        total
    }

    #[inline(always)]
    fn q6k_q8(self, w: Q6kRow, x: ActsView) -> f32 {
        let mut total = 0.0;
        for (s, sup) in w.supers.iter().enumerate() {
            // |Σ q·x̂| ≤ 16·63·127 per group, times an i8 scale, 16 groups: < 2³¹.
            let mut sum = 0i32;
            for j in 0..RUNS {
                let b = RUNS * s + j;
                let q = crate::q6k_values(&w.nibbles[b], &w.high[b]);
                for h in 0..2 {
                    let group: i32 = (16 * h..16 * h + 16)
                        .map(|e| i32::from(q[e]) * i32::from(x.quants[b][e] as i8))
                        .sum();
                    sum += i32::from(sup.scales[2 * j + h]) * group;
                }
            }
            total += sup.d * x.scales[RUNS * s] * sum as f32;
            let halves = &x.half_sums[2 * RUNS * s..2 * RUNS * (s + 1)];
            total += dot_f32(&sup.group_offsets(), halves);
        }
        total
    }
}

/// Σ_b d_b · Σ w·x over blocks of one byte per weight (`block(b)`), `weight(q)` the signed value a byte
/// holds (Q8_0: itself; Q5_0: its 5-bit value minus 16), so both formats run the same sums.
#[inline(always)]
fn byte_blocks_f32(
    scales: &[f32],
    block: impl Fn(usize) -> [u8; 32],
    x: ActsView,
    weight: impl Fn(u8) -> i8,
) -> f32 {
    let mut total = 0.0;
    for (b, xb) in x.values.chunks_exact(32).take(scales.len()).enumerate() {
        let q = block(b);
        let mut acc = [0.0f32; 8];
        for (qc, xc) in q.chunks_exact(8).zip(xb.chunks_exact(8)) {
            for i in 0..8 {
                acc[i] += f32::from(weight(qc[i])) * xc[i];
            }
        }
        total += scales[b] * acc.iter().sum::<f32>();
    }
    total
}

/// [`byte_blocks_f32`] against 8-bit activations: Σ_b d_b · d_x,b · Σ w·x̂ with integer inner sums.
#[inline(always)]
fn byte_blocks_q8(
    scales: &[f32],
    block: impl Fn(usize) -> [u8; 32],
    x: ActsView,
    weight: impl Fn(u8) -> i8,
) -> f32 {
    let mut total = 0.0;
    for (b, &scale) in scales.iter().enumerate() {
        let sum: i32 = block(b)
            .iter()
            .zip(&x.quants[b])
            .map(|(&w, &q)| i32::from(weight(w)) * i32::from(q as i8))
            .sum();
        total += scale * x.scales[b] * sum as f32;
    }
    total
}

#[inline(always)]
pub fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    // Eight independent partial sums let the compiler keep a vector register of accumulators.
    let mut acc = [0.0f32; 8];
    let (wc, xc) = (w.chunks_exact(8), x.chunks_exact(8));
    let tail: f32 = wc
        .remainder()
        .iter()
        .zip(xc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in wc.zip(xc) {
        for i in 0..8 {
            acc[i] += a[i] * b[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}
