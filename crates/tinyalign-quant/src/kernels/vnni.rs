//! The AVX2 kernels with VNNI's VPDPBUSD for the 8-bit products (through `vnni-shim`'s safe tokens). Per
//! block and activation vector AVX2 takes `vpsignb`, `vpmaddubsw`, `vpmaddwd` and a conversion to get
//! the lane sums; here one VPDPBUSD makes them, starting from the activations' lane corrections (`Acts`),
//! and the conversion. The lanes are the same integers, so every result equals the AVX2 kernels' bit for
//! bit (tested). The f32-activation products are the AVX2 ones.

use core::arch::x86_64::{__m256, __m256i};

use pulp::x86::V3;
use vnni_shim::Dpbusd;

use super::avx2::{Avx2, accumulate, accumulate4, quad_scales, scaled_add, spread, with_offsets};
use super::avx2_super;
use super::unpack::{nibble_bytes, q5_bytes};
use super::{Dot, Q5Row, offset_term};
use crate::acts::{ActsView, QuadView};
use crate::q4k::Q4kRow;
use crate::q6k::Q6kRow;

/// VPDPWSSD as the K-quants' [`avx2_super::ScaleAdd`]: the same lanes as `vpmaddwd` + `vpaddd`.
#[derive(Clone, Copy)]
struct Wssd<T: Dpbusd>(T);

impl<T: Dpbusd> avx2_super::ScaleAdd for Wssd<T> {
    #[inline(always)]
    fn scale_add(self, _: V3, pairs: __m256i, scale: __m256i, acc: __m256i) -> __m256i {
        self.0.dpwssd(acc, pairs, scale)
    }
}

#[derive(Clone, Copy)]
pub struct Vnni<T: Dpbusd> {
    pub simd: V3,
    pub dp: T,
}

/// i8 weight bytes as unsigned w + 128 (a sign-bit flip), for VPDPBUSD's unsigned operand; the
/// activations' corrections (−128·Σx̂ per lane) take the 128 back off.
#[inline(always)]
fn biased(simd: V3, w: [u8; 32]) -> __m256i {
    simd.avx2
        ._mm256_xor_si256(pulp::cast(w), simd.avx._mm256_set1_epi8(i8::MIN))
}

/// Σ over each lane's 4 elements of `q·x̂`, started from `start`, as f32 lanes.
#[inline(always)]
fn lanes<T: Dpbusd>(simd: V3, dp: T, start: __m256i, q: __m256i, x: [u8; 32]) -> __m256 {
    simd.avx
        ._mm256_cvtepi32_ps(dp.dpbusd(start, q, pulp::cast(x)))
}

impl<T: Dpbusd> Vnni<T> {
    /// One row of weights made unsigned by `weights(b)` (offset taken off by the corrections, if any) with
    /// one 8-bit vector; `scale(b)` block b's lane scales.
    #[inline(always)]
    fn one(
        self,
        x: &ActsView,
        blocks: usize,
        corrected: bool,
        weights: impl Fn(usize) -> __m256i,
        scale: impl Fn(usize) -> __m256,
    ) -> f32 {
        let Self { simd, dp } = self;
        let (x_quants, corrections) = (&x.quants[..blocks], x.corrections);
        let zero = simd.avx._mm256_setzero_si256();
        accumulate(
            simd,
            blocks,
            #[inline(always)]
            |b, acc| {
                let start = if corrected {
                    pulp::cast(corrections[b])
                } else {
                    zero
                };
                scaled_add(
                    simd,
                    lanes(simd, dp, start, weights(b), x_quants[b]),
                    scale(b),
                    acc,
                )
            },
        )
    }

    /// [`Vnni::one`] for four vectors, each weight block made once for the four; `scales(b, x_scales)`
    /// the four vectors' lane scales of block b.
    #[inline(always)]
    fn four(
        self,
        xs: &QuadView,
        blocks: usize,
        corrected: bool,
        weights: impl Fn(usize) -> __m256i,
        scales: impl Fn(usize, &[f32; 4]) -> [__m256; 4],
    ) -> [f32; 4] {
        let Self { simd, dp } = self;
        let (x_scales, x_quants) = (&xs.scales[..blocks], &xs.quants[..blocks]);
        let zero = simd.avx._mm256_setzero_si256();
        accumulate4(
            simd,
            blocks,
            #[inline(always)]
            |b, acc| {
                let w = weights(b);
                let lane_scales = scales(b, &x_scales[b]);
                let mut out = acc;
                for k in 0..4 {
                    let start = if corrected {
                        pulp::cast(xs.corrections[b][k])
                    } else {
                        zero
                    };
                    let dot = lanes(simd, dp, start, w, x_quants[b][k]);
                    out[k] = scaled_add(simd, dot, lane_scales[k], out[k]);
                }
                out
            },
        )
    }

    /// [`Vnni::one`] with one weight scale per block.
    #[inline(always)]
    fn one_scaled(
        self,
        x: &ActsView,
        scales: &[f32],
        corrected: bool,
        weights: impl Fn(usize) -> __m256i,
    ) -> f32 {
        let simd = self.simd;
        let x_scales = &x.scales[..scales.len()];
        self.one(
            x,
            scales.len(),
            corrected,
            weights,
            #[inline(always)]
            |b| simd.avx._mm256_set1_ps(scales[b] * x_scales[b]),
        )
    }

    /// [`Vnni::four`] with one weight scale per block.
    #[inline(always)]
    fn four_scaled(
        self,
        xs: &QuadView,
        scales: &[f32],
        corrected: bool,
        weights: impl Fn(usize) -> __m256i,
    ) -> [f32; 4] {
        let simd = self.simd;
        self.four(
            xs,
            scales.len(),
            corrected,
            weights,
            #[inline(always)]
            |b, x_scales| block_scales(simd, scales[b], x_scales),
        )
    }
}

/// Block b's one scale `scales[b]` times the four vectors' (`x_scales`), spread to four lane vectors.
#[inline(always)]
fn block_scales(simd: V3, scale: f32, x_scales: &[f32; 4]) -> [__m256; 4] {
    spread(
        simd,
        quad_scales(simd, x_scales, simd.avx._mm256_set1_ps(scale)),
    )
}

impl<T: Dpbusd> Dot for Vnni<T> {
    #[inline(always)]
    fn f32(self, w: &[f32], x: &[f32]) -> f32 {
        Avx2(self.simd).f32(w, x)
    }

    #[inline(always)]
    fn q8_0_f32(self, scales: &[f32], quants: &[[u8; 32]], x: ActsView) -> f32 {
        Avx2(self.simd).q8_0_f32(scales, quants, x)
    }

    #[inline(always)]
    fn q8_0_q8(self, scales: &[f32], quants: &[[u8; 32]], x: ActsView) -> f32 {
        let (simd, quants) = (self.simd, &quants[..scales.len()]);
        self.one_scaled(
            &x,
            scales,
            true,
            #[inline(always)]
            |b| biased(simd, quants[b]),
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
        Avx2(self.simd).q4_f32(scales, mins, nibbles, x)
    }

    #[inline(always)]
    fn q4_q8(self, scales: &[f32], mins: Option<&[f32]>, nibbles: &[[u8; 16]], x: ActsView) -> f32 {
        let (simd, nibbles) = (self.simd, &nibbles[..scales.len()]);
        let total = self.one_scaled(
            &x,
            scales,
            false,
            #[inline(always)]
            |b| nibble_bytes(simd, nibbles[b]),
        );
        total + offset_term(scales, mins, x.sums)
    }

    #[inline(always)]
    fn q5_f32(self, w: Q5Row, x: ActsView) -> f32 {
        Avx2(self.simd).q5_f32(w, x)
    }

    #[inline(always)]
    fn q5_q8(self, w: Q5Row, x: ActsView) -> f32 {
        let simd = self.simd;
        let (nibbles, high) = (&w.nibbles[..w.scales.len()], &w.high[..w.scales.len()]);
        self.one_scaled(
            &x,
            w.scales,
            true,
            #[inline(always)]
            |b| q5_bytes(simd, nibbles[b], high[b]),
        )
    }

    #[inline(always)]
    fn q5_unpack(self, nibbles: &[[u8; 16]], high: &[[u8; 4]], out: &mut [[u8; 32]]) {
        Avx2(self.simd).q5_unpack(nibbles, high, out)
    }

    #[inline(always)]
    fn q8x16_f32(self, scales: &[[f32; 2]], quants: &[[u8; 32]], x: ActsView) -> f32 {
        Avx2(self.simd).q8x16_f32(scales, quants, x)
    }

    #[inline(always)]
    fn q8_0_q8_x4(self, scales: &[f32], quants: &[[u8; 32]], xs: QuadView) -> [f32; 4] {
        let (simd, scales) = (self.simd, &scales[..quants.len()]);
        self.four_scaled(
            &xs,
            scales,
            true,
            #[inline(always)]
            |b| biased(simd, quants[b]),
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
        let (simd, nibbles) = (self.simd, &nibbles[..scales.len()]);
        let totals = self.four_scaled(
            &xs,
            scales,
            false,
            #[inline(always)]
            |b| nibble_bytes(simd, nibbles[b]),
        );
        with_offsets(totals, scales, mins, &xs)
    }

    #[inline(always)]
    fn q5_q8_x4(self, scales: &[f32], quants: &[[u8; 32]], xs: QuadView) -> [f32; 4] {
        let quants = &quants[..scales.len()];
        self.four_scaled(
            &xs,
            scales,
            true,
            #[inline(always)]
            |b| pulp::cast(quants[b]),
        )
    }

    // The K-quants' runs are scaled in 16-bit integers after `vpmaddubsw` (VPDPBUSD's sums come out in
    // 32 bits, where scaling would take a `vpmulld` per run); VPDPWSSD scales and adds in one instruction.
    #[inline(always)]
    fn q4k_q8(self, w: Q4kRow, x: ActsView) -> f32 {
        avx2_super::one(self.simd, Wssd(self.dp), w, &x)
    }

    #[inline(always)]
    fn q4k_q8_x4(self, w: Q4kRow, xs: QuadView) -> [f32; 4] {
        avx2_super::four(self.simd, Wssd(self.dp), w, &xs)
    }

    #[inline(always)]
    fn q6k_q8(self, w: Q6kRow, x: ActsView) -> f32 {
        avx2_super::one(self.simd, Wssd(self.dp), w, &x)
    }

    #[inline(always)]
    fn q6k_q8_x4(self, w: Q6kRow, xs: QuadView) -> [f32; 4] {
        avx2_super::four(self.simd, Wssd(self.dp), w, &xs)
    }
}
