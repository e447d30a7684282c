//! Q4_K's 8-bit products on AVX2 (ggml's `ggml_vec_dot_q4_K_q8_K` idea): activations rounded per
//! super-block of 256, so each run of 32 needs `vpmaddubsw`, a `vpmaddwd` with the run's 6-bit scale as
//! the multiplier and an integer add, and the floats meet once per 256 (a conversion and two FMAs with the
//! offsets), where a Q4_1 block paid a conversion, a scale product and an FMA per 32.

use core::arch::x86_64::{__m256, __m256i};

use pulp::x86::V3;

use super::avx2::{hsum, load8, quad_scales, spread};
use super::unpack::nibble_bytes;
use crate::acts::{ActsView, QuadView};
use crate::q4k::{Q4kRow, Q4kSuper, RUNS};

/// How a run's 16-bit pair sums are scaled and added to the i32 lanes: `acc + pairs₀·s + pairs₁·s`.
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

/// `acc + Σ sc·(q·x̂)` per i32 lane (elements 4i..4i+4): `vpmaddubsw`'s pairs are at most 2·15·127, so it
/// never saturates, and a super-block's lanes stay below 2³¹.
#[inline(always)]
fn add_run(
    simd: V3,
    add: impl ScaleAdd,
    q: __m256i,
    x: [u8; 32],
    scale: __m256i,
    acc: __m256i,
) -> __m256i {
    let pairs = simd.avx2._mm256_maddubs_epi16(q, pulp::cast(x));
    add.scale_add(simd, pairs, scale, acc)
}

/// The super-block's run offsets `−dmin·m_j` in lanes j ([`Q4kSuper::run_offsets`], the same products).
#[inline(always)]
fn offsets(simd: V3, sup: &Q4kSuper) -> __m256 {
    let mut bytes = [0u8; 16];
    bytes[..RUNS].copy_from_slice(&sup.mins);
    let mins = simd
        .avx
        ._mm256_cvtepi32_ps(simd.avx2._mm256_cvtepu8_epi32(pulp::cast(bytes)));
    simd.avx
        ._mm256_mul_ps(mins, simd.avx._mm256_set1_ps(-sup.dmin))
}

#[inline(always)]
fn run_scale(simd: V3, sc: u8) -> __m256i {
    simd.avx._mm256_set1_epi16(i16::from(sc))
}

/// One row with one vector.
#[inline(always)]
pub(super) fn one(simd: V3, add: impl ScaleAdd, w: Q4kRow, x: &ActsView) -> f32 {
    let blocks = w.supers.len() * RUNS;
    let (nibbles, x_quants, x_scales, sums) = (
        &w.nibbles[..blocks],
        &x.quants[..blocks],
        &x.scales[..blocks],
        &x.sums[..blocks],
    );
    let mut acc = simd.avx._mm256_setzero_ps();
    for (s, sup) in w.supers.iter().enumerate() {
        let first = RUNS * s;
        // Even and odd runs in two sums, so VPDPWSSD's latency chains four runs, not eight; integer sums,
        // so the total is the same in any order.
        let (mut even, mut odd) = (
            simd.avx._mm256_setzero_si256(),
            simd.avx._mm256_setzero_si256(),
        );
        for j in (0..RUNS).step_by(2) {
            let b = first + j;
            let q = nibble_bytes(simd, nibbles[b]);
            even = add_run(
                simd,
                add,
                q,
                x_quants[b],
                run_scale(simd, sup.scales[j]),
                even,
            );
            let q = nibble_bytes(simd, nibbles[b + 1]);
            let scale = run_scale(simd, sup.scales[j + 1]);
            odd = add_run(simd, add, q, x_quants[b + 1], scale, odd);
        }
        let lanes = simd.avx2._mm256_add_epi32(even, odd);
        let scale = simd.avx._mm256_set1_ps(sup.d * x_scales[first]);
        acc = simd
            .fma
            ._mm256_fmadd_ps(simd.avx._mm256_cvtepi32_ps(lanes), scale, acc);
        acc = simd
            .fma
            ._mm256_fmadd_ps(offsets(simd, sup), load8(simd, &sums[first..]), acc);
    }
    hsum(acc)
}

/// One row with four vectors, each run's nibbles unpacked once for the four; each result equals [`one`]'s
/// bit for bit (the same integer lanes, `quad_scales`' products `x_k·d` equal `d·x_k`, the same FMAs).
#[inline(always)]
pub(super) fn four(simd: V3, add: impl ScaleAdd, w: Q4kRow, xs: &QuadView) -> [f32; 4] {
    let blocks = w.supers.len() * RUNS;
    let (nibbles, x_quants, x_scales) = (
        &w.nibbles[..blocks],
        &xs.quants[..blocks],
        &xs.scales[..blocks],
    );
    // Written out: an array `map` here is compiled without AVX and called per row.
    let v = &xs.vectors;
    let sums = [
        &v[0].sums[..blocks],
        &v[1].sums[..blocks],
        &v[2].sums[..blocks],
        &v[3].sums[..blocks],
    ];
    let mut acc = [simd.avx._mm256_setzero_ps(); 4];
    for (s, sup) in w.supers.iter().enumerate() {
        let first = RUNS * s;
        let mut lanes = [simd.avx._mm256_setzero_si256(); 4];
        for j in 0..RUNS {
            let b = first + j;
            let q = nibble_bytes(simd, nibbles[b]);
            let scale = run_scale(simd, sup.scales[j]);
            for k in 0..4 {
                lanes[k] = add_run(simd, add, q, x_quants[b][k], scale, lanes[k]);
            }
        }
        let scales = spread(
            simd,
            quad_scales(simd, &x_scales[first], simd.avx._mm256_set1_ps(sup.d)),
        );
        let offsets = offsets(simd, sup);
        for k in 0..4 {
            let dots = simd.avx._mm256_cvtepi32_ps(lanes[k]);
            acc[k] = simd.fma._mm256_fmadd_ps(dots, scales[k], acc[k]);
            acc[k] = simd
                .fma
                ._mm256_fmadd_ps(offsets, load8(simd, &sums[k][first..]), acc[k]);
        }
    }
    [hsum(acc[0]), hsum(acc[1]), hsum(acc[2]), hsum(acc[3])]
}
