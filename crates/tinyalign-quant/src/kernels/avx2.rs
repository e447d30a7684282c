//! The x86_64 AVX2 + FMA dot products, through pulp's safe feature tokens.

use core::arch::x86_64::{__m128, __m128i, __m256, __m256i};

use pulp::x86::V3;

use super::avx2_super;
use super::unpack::{nibble_bytes, q5_bytes, split_nibbles};
use super::{Dot, Q5Row, offset_term};
use crate::acts::{ActsView, QuadView};
use crate::q4k::Q4kRow;
use crate::q6k::Q6kRow;

// Helpers are functions marked inline(always), never closures: a closure would not inherit the AVX2
// features of the caller and its intrinsics would become calls.

#[derive(Clone, Copy)]
pub struct Avx2(pub V3);

#[inline(always)]
pub(super) fn hsum(v: __m256) -> f32 {
    let lanes: [f32; 8] = pulp::cast(v);
    lanes.iter().sum()
}

#[inline(always)]
pub(super) fn load8(simd: V3, x: &[f32]) -> __m256 {
    let _ = simd;
    pulp::cast::<[f32; 8], __m256>(x[..8].try_into().expect("8 lanes"))
}

/// Eight i32 lanes → f32.
#[inline(always)]
fn widen_u8(simd: V3, bytes: __m128i) -> __m256 {
    simd.avx
        ._mm256_cvtepi32_ps(simd.avx2._mm256_cvtepu8_epi32(bytes))
}

#[inline(always)]
fn widen_i8(simd: V3, bytes: __m128i) -> __m256 {
    simd.avx
        ._mm256_cvtepi32_ps(simd.avx2._mm256_cvtepi8_epi32(bytes))
}

/// A block of 32 i8 weights as four groups of 8 f32 lanes (elements 0..8, 8..16, 16..24, 24..32).
#[inline(always)]
fn widen_i8_block(simd: V3, quants: [u8; 32]) -> [__m256; 4] {
    let [q0, q1]: [__m128i; 2] = pulp::cast(quants);
    [
        widen_i8(simd, q0),
        widen_i8(simd, simd.sse2._mm_srli_si128::<8>(q0)),
        widen_i8(simd, q1),
        widen_i8(simd, simd.sse2._mm_srli_si128::<8>(q1)),
    ]
}

/// Σ over one block of 32 of w·x with w given as four groups of 8 f32 lanes. Written out: iterator
/// adapters here ended up as out-of-line calls compiled without AVX.
#[inline(always)]
fn block_fma(simd: V3, w: [__m256; 4], x: &[f32]) -> __m256 {
    let p = simd.avx._mm256_mul_ps(w[0], load8(simd, &x[0..8]));
    let p = simd.fma._mm256_fmadd_ps(w[1], load8(simd, &x[8..16]), p);
    let p = simd.fma._mm256_fmadd_ps(w[2], load8(simd, &x[16..24]), p);
    simd.fma._mm256_fmadd_ps(w[3], load8(simd, &x[24..32]), p)
}

/// Σ over 32 lanes of signed w · signed x, as 8 i32 partial sums converted to f32. `maddubs` wants an
/// unsigned first operand, so it gets |w| and x carries w's sign (ggml's trick).
#[inline(always)]
fn signed_dot(simd: V3, w: __m256i, x: __m256i) -> __m256 {
    signed_dot_with_abs(simd, simd.avx2._mm256_sign_epi8(w, w), w, x)
}

/// [`signed_dot`] with `|w|` already made (shared by the vectors of a multi-vector product).
#[inline(always)]
fn signed_dot_with_abs(simd: V3, abs_w: __m256i, w: __m256i, x: __m256i) -> __m256 {
    let signed_x = simd.avx2._mm256_sign_epi8(x, w);
    let pairs = simd.avx2._mm256_maddubs_epi16(abs_w, signed_x);
    let quads = simd
        .avx2
        ._mm256_madd_epi16(pairs, simd.avx._mm256_set1_epi16(1));
    simd.avx._mm256_cvtepi32_ps(quads)
}

#[inline(always)]
fn unsigned_dot(simd: V3, w: __m256i, x: __m256i) -> __m256 {
    let pairs = simd.avx2._mm256_maddubs_epi16(w, x);
    simd.avx._mm256_cvtepi32_ps(
        simd.avx2
            ._mm256_madd_epi16(pairs, simd.avx._mm256_set1_epi16(1)),
    )
}

/// Q5_0's lanes: [`unsigned_dot`] of the 5-bit q, plus `corrections` (−16·Σx̂ over each lane's 4
/// elements) before the conversion, so lane i holds Σ (q − 16)·x̂ exactly as [`signed_dot`] of q − 16 does.
#[inline(always)]
fn q5_dot(simd: V3, q: __m256i, x: __m256i, corrections: &[i32; 8]) -> __m256 {
    let pairs = simd.avx2._mm256_maddubs_epi16(q, x);
    let quads = simd
        .avx2
        ._mm256_madd_epi16(pairs, simd.avx._mm256_set1_epi16(1));
    simd.avx
        ._mm256_cvtepi32_ps(simd.avx2._mm256_add_epi32(quads, pulp::cast(*corrections)))
}

/// Σ_b d_b·d_x,b·Σ q·x̂ for the nibble formats (Q4_0, Q4_1), `weights(b)` giving block b's bytes; each
/// adds its offset term (its `x = d·q + offset_b`, with the exact Σx) afterwards.
#[inline(always)]
fn unsigned_q8(simd: V3, scales: &[f32], x: &ActsView, weights: impl Fn(usize) -> __m256i) -> f32 {
    let blocks = scales.len();
    let (x_scales, x_quants) = (&x.scales[..blocks], &x.quants[..blocks]);
    accumulate(
        simd,
        blocks,
        #[inline(always)]
        |b, acc| {
            let dot = unsigned_dot(simd, weights(b), pulp::cast(x_quants[b]));
            scaled_add(
                simd,
                dot,
                simd.avx._mm256_set1_ps(scales[b] * x_scales[b]),
                acc,
            )
        },
    )
}

/// [`unsigned_q8`] for four vectors, each weight block made once for the four; each result equals the
/// single-vector one bit for bit.
#[inline(always)]
fn unsigned_q8_x4(
    simd: V3,
    scales: &[f32],
    xs: &QuadView,
    weights: impl Fn(usize) -> __m256i,
) -> [f32; 4] {
    let blocks = scales.len();
    let (x_scales, x_quants) = (&xs.scales[..blocks], &xs.quants[..blocks]);
    accumulate4(
        simd,
        blocks,
        #[inline(always)]
        |b, acc| {
            let w = weights(b);
            let lane_scales = spread(
                simd,
                quad_scales(simd, &x_scales[b], simd.avx._mm256_set1_ps(scales[b])),
            );
            let mut out = acc;
            for k in 0..4 {
                let dot = unsigned_dot(simd, w, pulp::cast(x_quants[b][k]));
                out[k] = scaled_add(simd, dot, lane_scales[k], out[k]);
            }
            out
        },
    )
}

/// Runs `block(b, acc)` for every block with two alternating accumulators, both starting at `zero`
/// (consecutive blocks' FMAs do not wait on each other), and returns the pair.
#[inline(always)]
fn alternate<A: Copy>(blocks: usize, zero: A, mut block: impl FnMut(usize, A) -> A) -> (A, A) {
    let (mut even, mut odd) = (zero, zero);
    let mut b = 0;
    while b + 1 < blocks {
        even = block(b, even);
        odd = block(b + 1, odd);
        b += 2;
    }
    if b < blocks {
        even = block(b, even);
    }
    (even, odd)
}

/// Σ over every block of `block(b, acc)`'s lanes, through [`alternate`]'s two accumulators.
#[inline(always)]
pub(super) fn accumulate(
    simd: V3,
    blocks: usize,
    block: impl FnMut(usize, __m256) -> __m256,
) -> f32 {
    let (even, odd) = alternate(blocks, simd.avx._mm256_setzero_ps(), block);
    hsum(simd.avx._mm256_add_ps(even, odd))
}

/// [`accumulate`] for four vectors at once: `block(b, acc)` updates the four accumulators of block `b`;
/// each vector's blocks go through the same alternating pair, so its sum is the single-vector one's.
#[inline(always)]
pub(super) fn accumulate4(
    simd: V3,
    blocks: usize,
    block: impl FnMut(usize, [__m256; 4]) -> [__m256; 4],
) -> [f32; 4] {
    let (even, odd) = alternate(blocks, [simd.avx._mm256_setzero_ps(); 4], block);
    [
        hsum(simd.avx._mm256_add_ps(even[0], odd[0])),
        hsum(simd.avx._mm256_add_ps(even[1], odd[1])),
        hsum(simd.avx._mm256_add_ps(even[2], odd[2])),
        hsum(simd.avx._mm256_add_ps(even[3], odd[3])),
    ]
}

/// `acc + dot · scale`, the per-block step every 8-bit product ends with.
#[inline(always)]
pub(super) fn scaled_add(simd: V3, dot: __m256, scale: __m256, acc: __m256) -> __m256 {
    simd.fma._mm256_fmadd_ps(dot, scale, acc)
}

/// The four vectors' activation scales of one block times the weight's (`weight_scales`, broadcast): vector
/// k's product in lanes k and k + 4, for [`spread`]. Each is the single-vector kernels' `w · x` bit for bit
/// (one IEEE multiply, and multiplication commutes), so the four-vector sums equal the one-vector ones.
#[inline(always)]
pub(super) fn quad_scales(simd: V3, x_scales: &[f32; 4], weight_scales: __m256) -> __m256 {
    let x: __m128 = pulp::cast(*x_scales);
    simd.avx
        ._mm256_mul_ps(simd.avx._mm256_broadcast_ps(&x), weight_scales)
}

/// Lanes k and k + 4 of `products` (vector k's) across all 8 lanes, for k = 0..4.
#[inline(always)]
pub(super) fn spread(simd: V3, products: __m256) -> [__m256; 4] {
    [
        simd.avx._mm256_permute_ps::<0x00>(products),
        simd.avx._mm256_permute_ps::<0x55>(products),
        simd.avx._mm256_permute_ps::<0xaa>(products),
        simd.avx._mm256_permute_ps::<0xff>(products),
    ]
}

/// One row of signed 8-bit weights (Q8_0, Q8x16) with four 8-bit vectors: `|w|` made once per block
/// for the four, `lane_scales(b, x_scales)` the four vectors' per-lane scales of block `b`.
#[inline(always)]
fn signed_x4(
    simd: V3,
    quants: &[[u8; 32]],
    xs: &QuadView,
    lane_scales: impl Fn(usize, &[f32; 4]) -> [__m256; 4],
) -> [f32; 4] {
    let blocks = quants.len();
    // Equal lengths up front, so the per-block indexing below needs no bounds checks.
    let (x_scales, x_quants) = (&xs.scales[..blocks], &xs.quants[..blocks]);
    accumulate4(
        simd,
        blocks,
        #[inline(always)]
        |b, acc| {
            let w: __m256i = pulp::cast(quants[b]);
            let abs_w = simd.avx2._mm256_sign_epi8(w, w);
            let scales = lane_scales(b, &x_scales[b]);
            let mut out = acc;
            for k in 0..4 {
                let dot = signed_dot_with_abs(simd, abs_w, w, pulp::cast(x_quants[b][k]));
                out[k] = scaled_add(simd, dot, scales[k], out[k]);
            }
            out
        },
    )
}

/// The Q4 formats' four totals plus each vector's offset term.
#[inline(always)]
pub(super) fn with_offsets(
    [t0, t1, t2, t3]: [f32; 4],
    scales: &[f32],
    mins: Option<&[f32]>,
    xs: &QuadView,
) -> [f32; 4] {
    // Written out: a closure or an array `map` here is compiled without AVX and called per row.
    let v = &xs.vectors;
    [
        t0 + offset_term(scales, mins, v[0].sums),
        t1 + offset_term(scales, mins, v[1].sums),
        t2 + offset_term(scales, mins, v[2].sums),
        t3 + offset_term(scales, mins, v[3].sums),
    ]
}

impl Dot for Avx2 {
    #[inline(always)]
    fn f32(self, w: &[f32], x: &[f32]) -> f32 {
        let simd = self.0;
        let mut acc = [simd.avx._mm256_setzero_ps(); 4];
        let (wc, xc) = (w.chunks_exact(32), x.chunks_exact(32));
        let tail = super::portable::dot_f32(wc.remainder(), xc.remainder());
        for (a, b) in wc.zip(xc) {
            for (k, slot) in acc.iter_mut().enumerate() {
                *slot = simd.fma._mm256_fmadd_ps(
                    load8(simd, &a[8 * k..]),
                    load8(simd, &b[8 * k..]),
                    *slot,
                );
            }
        }
        let sum = simd.avx._mm256_add_ps(
            simd.avx._mm256_add_ps(acc[0], acc[1]),
            simd.avx._mm256_add_ps(acc[2], acc[3]),
        );
        hsum(sum) + tail
    }

    #[inline(always)]
    fn q8_0_f32(self, scales: &[f32], quants: &[[u8; 32]], x: ActsView) -> f32 {
        let simd = self.0;
        accumulate(
            simd,
            scales.len(),
            #[inline(always)]
            |b, acc| {
                let p = block_fma(simd, widen_i8_block(simd, quants[b]), &x.values[32 * b..]);
                simd.fma
                    ._mm256_fmadd_ps(p, simd.avx._mm256_set1_ps(scales[b]), acc)
            },
        )
    }

    #[inline(always)]
    fn q8_0_q8(self, scales: &[f32], quants: &[[u8; 32]], x: ActsView) -> f32 {
        let simd = self.0;
        accumulate(
            simd,
            scales.len(),
            #[inline(always)]
            |b, acc| {
                let dot = signed_dot(simd, pulp::cast(quants[b]), pulp::cast(x.quants[b]));
                simd.fma
                    ._mm256_fmadd_ps(dot, simd.avx._mm256_set1_ps(scales[b] * x.scales[b]), acc)
            },
        )
    }

    #[inline(always)]
    fn q4_f32(
        self,
        scales: &[f32],
        mins: Option<&[f32]>,
        nibbles: &[[u8; 16]],
        x: ActsView,
    ) -> f32 {
        let simd = self.0;
        let total = accumulate(
            simd,
            scales.len(),
            #[inline(always)]
            |b, acc| {
                let (low, high) = split_nibbles(simd, nibbles[b]);
                let w = [
                    widen_u8(simd, low),
                    widen_u8(simd, simd.sse2._mm_srli_si128::<8>(low)),
                    widen_u8(simd, high),
                    widen_u8(simd, simd.sse2._mm_srli_si128::<8>(high)),
                ];
                let p = block_fma(simd, w, &x.values[32 * b..]);
                simd.fma
                    ._mm256_fmadd_ps(p, simd.avx._mm256_set1_ps(scales[b]), acc)
            },
        );
        total + offset_term(scales, mins, x.sums)
    }

    #[inline(always)]
    fn q4_q8(self, scales: &[f32], mins: Option<&[f32]>, nibbles: &[[u8; 16]], x: ActsView) -> f32 {
        let simd = self.0;
        let nibbles = &nibbles[..scales.len()];
        let total = unsigned_q8(
            simd,
            scales,
            &x,
            #[inline(always)]
            |b| nibble_bytes(simd, nibbles[b]),
        );
        total + offset_term(scales, mins, x.sums)
    }

    #[inline(always)]
    fn q5_f32(self, w: Q5Row, x: ActsView) -> f32 {
        let simd = self.0;
        let sixteen = simd.avx._mm256_set1_epi8(16);
        let Q5Row {
            scales,
            nibbles,
            high,
        } = w;
        let (nibbles, high) = (&nibbles[..scales.len()], &high[..scales.len()]);
        accumulate(
            simd,
            scales.len(),
            #[inline(always)]
            |b, acc| {
                let q = q5_bytes(simd, nibbles[b], high[b]);
                let signed = simd.avx2._mm256_sub_epi8(q, sixteen);
                let p = block_fma(
                    simd,
                    widen_i8_block(simd, pulp::cast(signed)),
                    &x.values[32 * b..],
                );
                simd.fma
                    ._mm256_fmadd_ps(p, simd.avx._mm256_set1_ps(scales[b]), acc)
            },
        )
    }

    #[inline(always)]
    fn q5_q8(self, w: Q5Row, x: ActsView) -> f32 {
        let simd = self.0;
        let Q5Row {
            scales,
            nibbles,
            high,
        } = w;
        let blocks = scales.len();
        let (nibbles, high, x_scales, x_quants, corrections) = (
            &nibbles[..blocks],
            &high[..blocks],
            &x.scales[..blocks],
            &x.quants[..blocks],
            &x.corrections[..blocks],
        );
        accumulate(
            simd,
            blocks,
            #[inline(always)]
            |b, acc| {
                let dot = q5_dot(
                    simd,
                    q5_bytes(simd, nibbles[b], high[b]),
                    pulp::cast(x_quants[b]),
                    &corrections[b],
                );
                simd.fma
                    ._mm256_fmadd_ps(dot, simd.avx._mm256_set1_ps(scales[b] * x_scales[b]), acc)
            },
        )
    }

    #[inline(always)]
    fn q8x16_f32(self, scales: &[[f32; 2]], quants: &[[u8; 32]], x: ActsView) -> f32 {
        let simd = self.0;
        accumulate(
            simd,
            scales.len(),
            #[inline(always)]
            |b, acc| {
                let (s0, s1) = (
                    simd.avx._mm256_set1_ps(scales[b][0]),
                    simd.avx._mm256_set1_ps(scales[b][1]),
                );
                // Groups 0 and 1 are the first 16 elements (scale s0), groups 2 and 3 the rest (s1).
                let [w0, w1, w2, w3] = widen_i8_block(simd, quants[b]);
                let w = [
                    simd.avx._mm256_mul_ps(w0, s0),
                    simd.avx._mm256_mul_ps(w1, s0),
                    simd.avx._mm256_mul_ps(w2, s1),
                    simd.avx._mm256_mul_ps(w3, s1),
                ];
                simd.avx
                    ._mm256_add_ps(block_fma(simd, w, &x.values[32 * b..]), acc)
            },
        )
    }

    #[inline(always)]
    fn q8_0_q8_x4(self, scales: &[f32], quants: &[[u8; 32]], xs: QuadView) -> [f32; 4] {
        let simd = self.0;
        let scales = &scales[..quants.len()];
        signed_x4(
            simd,
            quants,
            &xs,
            #[inline(always)]
            |b, x_scales| {
                spread(
                    simd,
                    quad_scales(simd, x_scales, simd.avx._mm256_set1_ps(scales[b])),
                )
            },
        )
    }

    #[inline(always)]
    fn q4_q8_x4(
        self,
        scales: &[f32],
        mins: Option<&[f32]>,
        nibbles: &[[u8; 16]],
        xs: QuadView,
    ) -> [f32; 4] {
        let simd = self.0;
        let nibbles = &nibbles[..scales.len()];
        let [t0, t1, t2, t3] = unsigned_q8_x4(
            simd,
            scales,
            &xs,
            #[inline(always)]
            |b| nibble_bytes(simd, nibbles[b]),
        );
        with_offsets([t0, t1, t2, t3], scales, mins, &xs)
    }

    #[inline(always)]
    fn q5_unpack(self, nibbles: &[[u8; 16]], high: &[[u8; 4]], out: &mut [[u8; 32]]) {
        let simd = self.0;
        for ((slot, &n), &h) in out.iter_mut().zip(nibbles).zip(high) {
            *slot = pulp::cast(q5_bytes(simd, n, h));
        }
    }

    #[inline(always)]
    fn q5_q8_x4(self, scales: &[f32], quants: &[[u8; 32]], xs: QuadView) -> [f32; 4] {
        let simd = self.0;
        let blocks = scales.len();
        let (quants, x_scales, x_quants, corrections) = (
            &quants[..blocks],
            &xs.scales[..blocks],
            &xs.quants[..blocks],
            &xs.corrections[..blocks],
        );
        accumulate4(
            simd,
            blocks,
            #[inline(always)]
            |b, acc| {
                let q: __m256i = pulp::cast(quants[b]);
                let lane_scales = spread(
                    simd,
                    quad_scales(simd, &x_scales[b], simd.avx._mm256_set1_ps(scales[b])),
                );
                let mut out = acc;
                for k in 0..4 {
                    let dot = q5_dot(simd, q, pulp::cast(x_quants[b][k]), &corrections[b][k]);
                    out[k] = scaled_add(simd, dot, lane_scales[k], out[k]);
                }
                out
            },
        )
    }

    #[inline(always)]
    fn q4k_q8(self, w: Q4kRow, x: ActsView) -> f32 {
        avx2_super::one(self.0, avx2_super::Madd, w, &x)
    }

    #[inline(always)]
    fn q4k_q8_x4(self, w: Q4kRow, xs: QuadView) -> [f32; 4] {
        avx2_super::four(self.0, avx2_super::Madd, w, &xs)
    }

    #[inline(always)]
    fn q6k_q8(self, w: Q6kRow, x: ActsView) -> f32 {
        avx2_super::one(self.0, avx2_super::Madd, w, &x)
    }

    #[inline(always)]
    fn q6k_q8_x4(self, w: Q6kRow, xs: QuadView) -> [f32; 4] {
        avx2_super::four(self.0, avx2_super::Madd, w, &xs)
    }
}
