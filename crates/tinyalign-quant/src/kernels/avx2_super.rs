//! The K-quants' 8-bit products on AVX2 (ggml's `ggml_vec_dot_q4_K_q8_K` / `q6_K_q8_K` idea): activations
//! rounded per super-block of 256, so each run of 32 needs `vpmaddubsw` of its unsigned values, a
//! `vpmaddwd` with its integer scales as the multipliers and an integer add (one `vpdpwssd` on VNNI), and
//! the floats meet once per 256: a conversion, an FMA with d·d_x, and FMAs of the offsets with the exact
//! sums of x. A Q4_1 block paid a conversion, a scale product and an FMA per 32.

use core::arch::x86_64::{__m128i, __m256, __m256i};

use pulp::x86::V3;

use super::avx2::{hsum, load8, quad_scales, spread};
use super::unpack::nibble_bytes;
use crate::acts::{ActsView, QuadView};
use crate::q4k::{Q4kRow, RUNS};
use crate::q6k::Q6kRow;

/// How a run's 16-bit pair sums are scaled and added to the i32 lanes: `acc + pairs₀·s₀ + pairs₁·s₁`.
pub(super) trait ScaleAdd: Copy {
    fn scale_add(self, simd: V3, pairs: __m256i, scale: __m256i, acc: __m256i) -> __m256i;
}

/// AVX2's `vpmaddwd` + `vpaddd` (VNNI's `vpdpwssd` does both in one, `vnni.rs`).
#[derive(Clone, Copy)]
pub(super) struct Madd;

impl ScaleAdd for Madd {
    #[inline(always)]
    fn scale_add(self, simd: V3, pairs: __m256i, scale: __m256i, acc: __m256i) -> __m256i {
        simd.avx2
            ._mm256_add_epi32(acc, simd.avx2._mm256_madd_epi16(pairs, scale))
    }
}

/// A row of one K-quant format as the kernels read it.
pub(super) trait SuperRow: Copy {
    fn supers(self) -> usize;
    /// Run `b`'s unsigned values as bytes, and the i16 multipliers of its 16 pair sums.
    fn run(self, simd: V3, b: usize) -> (__m256i, __m256i);
    /// Super-block `s`'s float factor d.
    fn d(self, s: usize) -> f32;
    /// `acc` plus super-block `s`'s offset terms against vector `x`'s exact sums.
    fn add_offsets(self, simd: V3, s: usize, x: &ActsView, acc: __m256) -> __m256;
}

impl SuperRow for Q4kRow<'_> {
    #[inline(always)]
    fn supers(self) -> usize {
        self.supers.len()
    }

    #[inline(always)]
    fn run(self, simd: V3, b: usize) -> (__m256i, __m256i) {
        let sc = self.supers[b / RUNS].scales[b % RUNS];
        (
            nibble_bytes(simd, self.nibbles[b]),
            simd.avx._mm256_set1_epi16(i16::from(sc)),
        )
    }

    #[inline(always)]
    fn d(self, s: usize) -> f32 {
        self.supers[s].d
    }

    /// Run j's offset `−dmin·m_j` (lane j, the same products as `run_offsets`) times Σx of block j.
    #[inline(always)]
    fn add_offsets(self, simd: V3, s: usize, x: &ActsView, acc: __m256) -> __m256 {
        let sup = &self.supers[s];
        let mut bytes = [0u8; 16];
        bytes[..RUNS].copy_from_slice(&sup.mins);
        let mins = simd
            .avx
            ._mm256_cvtepi32_ps(simd.avx2._mm256_cvtepu8_epi32(pulp::cast(bytes)));
        let offsets = simd
            .avx
            ._mm256_mul_ps(mins, simd.avx._mm256_set1_ps(-sup.dmin));
        let sums = load8(simd, &x.sums[RUNS * s..]);
        simd.fma._mm256_fmadd_ps(offsets, sums, acc)
    }
}

impl SuperRow for Q6kRow<'_> {
    #[inline(always)]
    fn supers(self) -> usize {
        self.supers.len()
    }

    /// q = nibble | (high pair << 4): the pairs word broadcast, each 64-bit quarter shifted by 2m (see
    /// `q6k_values`); the multipliers are the run's two group scales, 8 pair sums each.
    #[inline(always)]
    fn run(self, simd: V3, b: usize) -> (__m256i, __m256i) {
        let (avx, avx2) = (simd.avx, simd.avx2);
        let word = avx._mm256_set1_epi64x(i64::from_le_bytes(self.high[b]));
        let pairs = avx2._mm256_and_si256(
            avx2._mm256_srlv_epi64(word, avx._mm256_set_epi64x(6, 4, 2, 0)),
            avx._mm256_set1_epi8(3),
        );
        let q = avx2._mm256_or_si256(
            nibble_bytes(simd, self.nibbles[b]),
            avx2._mm256_slli_epi16::<4>(pairs),
        );
        let scales = &self.supers[b / RUNS].scales;
        let j = 2 * (b % RUNS);
        let scale = avx._mm256_set_m128i(
            simd.sse2._mm_set1_epi16(i16::from(scales[j + 1])),
            simd.sse2._mm_set1_epi16(i16::from(scales[j])),
        );
        (q, scale)
    }

    #[inline(always)]
    fn d(self, s: usize) -> f32 {
        self.supers[s].d
    }

    /// Group g's offset `(−32·d)·sc_g` (`group_offsets`' products) times Σx of its 16 values.
    #[inline(always)]
    fn add_offsets(self, simd: V3, s: usize, x: &ActsView, acc: __m256) -> __m256 {
        let sup = &self.supers[s];
        let scales: __m128i = pulp::cast(sup.scales);
        let unit = simd.avx._mm256_set1_ps(-32.0 * sup.d);
        let low = simd.avx._mm256_mul_ps(widen_i8(simd, scales), unit);
        let high = simd
            .avx
            ._mm256_mul_ps(widen_i8(simd, simd.sse2._mm_srli_si128::<8>(scales)), unit);
        let sums = &x.half_sums[2 * RUNS * s..];
        let acc = simd.fma._mm256_fmadd_ps(low, load8(simd, sums), acc);
        simd.fma._mm256_fmadd_ps(high, load8(simd, &sums[8..]), acc)
    }
}

/// The low 8 bytes as signed integers in 8 f32 lanes.
#[inline(always)]
fn widen_i8(simd: V3, bytes: __m128i) -> __m256 {
    simd.avx
        ._mm256_cvtepi32_ps(simd.avx2._mm256_cvtepi8_epi32(bytes))
}

/// `acc + Σ scale·(q·x̂)` per i32 lane (elements 4i..4i+4): `vpmaddubsw`'s pairs are at most 2·63·127, so
/// it never saturates, and a super-block's lanes stay below 2³¹.
#[inline(always)]
fn add_run(
    simd: V3,
    add: impl ScaleAdd,
    (q, scale): (__m256i, __m256i),
    x: [u8; 32],
    acc: __m256i,
) -> __m256i {
    let pairs = simd.avx2._mm256_maddubs_epi16(q, pulp::cast(x));
    add.scale_add(simd, pairs, scale, acc)
}

/// One row with one vector.
#[inline(always)]
pub(super) fn one(simd: V3, add: impl ScaleAdd, w: impl SuperRow, x: &ActsView) -> f32 {
    let blocks = w.supers() * RUNS;
    let (x_quants, x_scales) = (&x.quants[..blocks], &x.scales[..blocks]);
    let mut acc = simd.avx._mm256_setzero_ps();
    for s in 0..w.supers() {
        let first = RUNS * s;
        // Even and odd runs in two sums, so VPDPWSSD's latency chains four runs, not eight; integer sums,
        // so the total is the same in any order.
        let (mut even, mut odd) = (
            simd.avx._mm256_setzero_si256(),
            simd.avx._mm256_setzero_si256(),
        );
        for b in (first..first + RUNS).step_by(2) {
            even = add_run(simd, add, w.run(simd, b), x_quants[b], even);
            odd = add_run(simd, add, w.run(simd, b + 1), x_quants[b + 1], odd);
        }
        let lanes = simd
            .avx
            ._mm256_cvtepi32_ps(simd.avx2._mm256_add_epi32(even, odd));
        let scale = simd.avx._mm256_set1_ps(w.d(s) * x_scales[first]);
        acc = simd.fma._mm256_fmadd_ps(lanes, scale, acc);
        acc = w.add_offsets(simd, s, x, acc);
    }
    hsum(acc)
}

/// One row with four vectors, each run unpacked once for the four; each result equals [`one`]'s bit for
/// bit (the same integer lanes, `quad_scales`' products `x_k·d` equal `d·x_k`, the same FMAs).
#[inline(always)]
pub(super) fn four(simd: V3, add: impl ScaleAdd, w: impl SuperRow, xs: &QuadView) -> [f32; 4] {
    let blocks = w.supers() * RUNS;
    let (x_quants, x_scales) = (&xs.quants[..blocks], &xs.scales[..blocks]);
    let mut acc = [simd.avx._mm256_setzero_ps(); 4];
    for s in 0..w.supers() {
        let first = RUNS * s;
        let mut lanes = [simd.avx._mm256_setzero_si256(); 4];
        for (i, quants) in x_quants[first..first + RUNS].iter().enumerate() {
            let run = w.run(simd, first + i);
            for k in 0..4 {
                lanes[k] = add_run(simd, add, run, quants[k], lanes[k]);
            }
        }
        let scales = spread(
            simd,
            quad_scales(simd, &x_scales[first], simd.avx._mm256_set1_ps(w.d(s))),
        );
        for k in 0..4 {
            let dots = simd.avx._mm256_cvtepi32_ps(lanes[k]);
            acc[k] = simd.fma._mm256_fmadd_ps(dots, scales[k], acc[k]);
            acc[k] = w.add_offsets(simd, s, &xs.vectors[k], acc[k]);
        }
    }
    [hsum(acc[0]), hsum(acc[1]), hsum(acc[2]), hsum(acc[3])]
}
