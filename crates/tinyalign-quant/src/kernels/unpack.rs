//! Weight blocks unpacked to bytes on AVX2: Q4 nibbles, and Q5_0's nibbles with their high bits.

use core::arch::x86_64::{__m128i, __m256i};

use pulp::x86::V3;

/// A Q5_0 block's values q ∈ [0, 32) as 32 bytes ([`crate::q5_0_bytes`]): the nibbles as Q4's, and bit 4
/// from the high word. Byte j takes byte j / 8 of the word (`vpshufb` shuffles within each 128-bit half,
/// and every 32-bit lane holds the word); OR-ing every bit but bit j % 8 leaves all ones exactly where
/// bit j is set (ggml's `bytes_from_bits_32`).
#[inline(always)]
pub(super) fn q5_bytes(simd: V3, nibbles: [u8; 16], high: [u8; 4]) -> __m256i {
    let (avx, avx2) = (simd.avx, simd.avx2);
    let word = avx._mm256_set1_epi32(i32::from_le_bytes(high));
    let byte_of_bit = avx._mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let spread = avx2._mm256_shuffle_epi8(word, byte_of_bit);
    let other_bits = avx._mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
    let set = avx2._mm256_cmpeq_epi8(
        avx2._mm256_or_si256(spread, other_bits),
        avx._mm256_set1_epi8(-1),
    );
    avx2._mm256_or_si256(
        nibble_bytes(simd, nibbles),
        avx2._mm256_and_si256(set, avx._mm256_set1_epi8(0x10)),
    )
}

/// 16 bytes of a Q4 block → (low nibbles = elements 0..16, high nibbles = elements 16..32).
#[inline(always)]
pub(super) fn split_nibbles(simd: V3, packed: [u8; 16]) -> (__m128i, __m128i) {
    let packed: __m128i = pulp::cast(packed);
    let mask = simd.sse2._mm_set1_epi8(0x0f);
    let low = simd.sse2._mm_and_si128(packed, mask);
    let high = simd
        .sse2
        ._mm_and_si128(simd.sse2._mm_srli_epi16::<4>(packed), mask);
    (low, high)
}

/// A Q4 block's 32 nibbles as bytes in element order.
#[inline(always)]
pub(super) fn nibble_bytes(simd: V3, packed: [u8; 16]) -> __m256i {
    // The bytes and the bytes shifted down by 4 side by side, then one 256-bit mask: three instructions
    // where masking each half first took five.
    let packed: __m128i = pulp::cast(packed);
    let both = simd
        .avx
        ._mm256_set_m128i(simd.sse2._mm_srli_epi16::<4>(packed), packed);
    simd.avx2
        ._mm256_and_si256(both, simd.avx._mm256_set1_epi8(0x0f))
}
