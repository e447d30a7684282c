//! Dot products of one weight row with one (quantised) activation vector.

use crate::acts::ActsView;

/// Which implementation runs the inner loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Plain Rust; the compiler vectorises what it can for the build target.
    Portable,
    /// x86_64 AVX2 + FMA, detected at run time.
    Avx2,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if pulp::x86::V3::try_new().is_some() {
            return Kernel::Avx2;
        }
        Kernel::Portable
    }

    /// Every kernel this CPU runs, portable first.
    pub fn available() -> Vec<Self> {
        let mut kernels = vec![Kernel::Portable];
        if Self::detect() == Kernel::Avx2 {
            kernels.push(Kernel::Avx2);
        }
        kernels
    }

    /// Runs `task` with this kernel's dot products. The whole task is compiled with the kernel's CPU
    /// features enabled, so the per-row loop around the dot products is inlined and vectorised too.
    pub(crate) fn run<T: DotTask>(self, task: T) -> T::Output {
        #[cfg(target_arch = "x86_64")]
        if let (Kernel::Avx2, Some(simd)) = (self, pulp::x86::V3::try_new()) {
            return simd.vectorize(
                #[inline(always)]
                || task.run(avx2::Avx2(simd)),
            );
        }
        task.run(portable::Portable)
    }
}

pub(crate) fn portable_dot(a: &[f32], b: &[f32]) -> f32 {
    portable::dot_f32(a, b)
}

/// Dot products of one weight row with one activation vector, in each storage format.
pub(crate) trait Dot: Copy {
    fn f32(self, w: &[f32], x: &[f32]) -> f32;
    fn q8_0(self, scales: &[f32], quants: &[[u8; 32]], x: ActsView) -> f32;
    /// Q4_0 (`mins` = None: nibbles offset by 8) or Q4_1 (nibbles plus a per-block minimum).
    fn q4(self, scales: &[f32], mins: Option<&[f32]>, nibbles: &[[u8; 16]], x: ActsView) -> f32;
}

/// Work generic over the dot-product implementation (pulp's `WithSimd` pattern).
pub(crate) trait DotTask {
    type Output;
    fn run<D: Dot>(self, dot: D) -> Self::Output;
}

mod portable {
    use super::Dot;
    use crate::acts::ActsView;

    #[derive(Clone, Copy)]
    pub struct Portable;

    impl Dot for Portable {
        #[inline(always)]
        fn f32(self, w: &[f32], x: &[f32]) -> f32 {
            dot_f32(w, x)
        }
        #[inline(always)]
        fn q8_0(self, scales: &[f32], quants: &[[u8; 32]], x: ActsView) -> f32 {
            dot_q8_0(scales, quants, x)
        }
        #[inline(always)]
        fn q4(
            self,
            scales: &[f32],
            mins: Option<&[f32]>,
            nibbles: &[[u8; 16]],
            x: ActsView,
        ) -> f32 {
            dot_q4(scales, mins, nibbles, x)
        }
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

    #[inline(always)]
    pub fn dot_q8_0(scales: &[f32], quants: &[[u8; 32]], x: ActsView) -> f32 {
        let mut total = 0.0;
        for b in 0..scales.len() {
            let sum: i32 = quants[b]
                .iter()
                .zip(&x.quants[b])
                .map(|(&w, &q)| i32::from(w as i8) * i32::from(q as i8))
                .sum();
            total += scales[b] * x.scales[b] * sum as f32;
        }
        total
    }

    #[inline(always)]
    pub fn dot_q4(scales: &[f32], mins: Option<&[f32]>, nibbles: &[[u8; 16]], x: ActsView) -> f32 {
        let offset = if mins.is_some() { 0 } else { 8 };
        let mut total = 0.0;
        for b in 0..scales.len() {
            let (lo, hi) = x.quants[b].split_at(16);
            let mut sum = 0i32;
            for j in 0..16 {
                let byte = nibbles[b][j];
                sum += (i32::from(byte & 15) - offset) * i32::from(lo[j] as i8);
                sum += (i32::from(byte >> 4) - offset) * i32::from(hi[j] as i8);
            }
            total += scales[b] * x.scales[b] * sum as f32;
            if let Some(mins) = mins {
                total += mins[b] * x.sums[b];
            }
        }
        total
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use core::arch::x86_64::{__m128i, __m256, __m256i};

    use pulp::x86::V3;

    use super::Dot;
    use crate::acts::ActsView;

    #[derive(Clone, Copy)]
    pub struct Avx2(pub V3);

    impl Dot for Avx2 {
        #[inline(always)]
        fn f32(self, w: &[f32], x: &[f32]) -> f32 {
            dot_f32(self.0, w, x)
        }
        #[inline(always)]
        fn q8_0(self, scales: &[f32], quants: &[[u8; 32]], x: ActsView) -> f32 {
            dot_q8_0(self.0, scales, quants, x)
        }
        #[inline(always)]
        fn q4(
            self,
            scales: &[f32],
            mins: Option<&[f32]>,
            nibbles: &[[u8; 16]],
            x: ActsView,
        ) -> f32 {
            dot_q4(self.0, scales, mins, nibbles, x)
        }
    }

    #[inline(always)]
    fn hsum(v: __m256) -> f32 {
        let lanes: [f32; 8] = pulp::cast(v);
        lanes.iter().sum()
    }

    #[inline(always)]
    pub fn dot_f32(simd: V3, w: &[f32], x: &[f32]) -> f32 {
        let mut acc = [simd.avx._mm256_setzero_ps(); 4];
        let (wc, xc) = (w.chunks_exact(32), x.chunks_exact(32));
        let tail = super::portable::dot_f32(wc.remainder(), xc.remainder());
        for (a, b) in wc.zip(xc) {
            for (k, slot) in acc.iter_mut().enumerate() {
                let av: __m256 =
                    pulp::cast::<[f32; 8], _>(a[8 * k..8 * k + 8].try_into().expect("8 lanes"));
                let bv: __m256 =
                    pulp::cast::<[f32; 8], _>(b[8 * k..8 * k + 8].try_into().expect("8 lanes"));
                *slot = simd.fma._mm256_fmadd_ps(av, bv, *slot);
            }
        }
        let sum = simd.avx._mm256_add_ps(
            simd.avx._mm256_add_ps(acc[0], acc[1]),
            simd.avx._mm256_add_ps(acc[2], acc[3]),
        );
        hsum(sum) + tail
    }

    /// Σ over 32 lanes of signed w · signed x, as 8 i32 partial sums converted to f32. `maddubs` wants an
    /// unsigned first operand, so it gets |w| and x carries w's sign (ggml's trick).
    #[inline(always)]
    fn signed_dot(simd: V3, w: __m256i, x: __m256i) -> __m256 {
        let abs_w = simd.avx2._mm256_sign_epi8(w, w);
        let signed_x = simd.avx2._mm256_sign_epi8(x, w);
        let pairs = simd.avx2._mm256_maddubs_epi16(abs_w, signed_x);
        let quads = simd
            .avx2
            ._mm256_madd_epi16(pairs, simd.avx._mm256_set1_epi16(1));
        simd.avx._mm256_cvtepi32_ps(quads)
    }

    #[inline(always)]
    pub fn dot_q8_0(simd: V3, scales: &[f32], quants: &[[u8; 32]], x: ActsView) -> f32 {
        let mut acc = simd.avx._mm256_setzero_ps();
        for b in 0..scales.len() {
            let w: __m256i = pulp::cast(quants[b]);
            let xv: __m256i = pulp::cast(x.quants[b]);
            let scale = simd.avx._mm256_set1_ps(scales[b] * x.scales[b]);
            acc = simd
                .fma
                ._mm256_fmadd_ps(signed_dot(simd, w, xv), scale, acc);
        }
        hsum(acc)
    }

    /// 16 bytes of a Q4 block → its 32 unsigned nibbles in element order (low nibbles 0..16, high 16..32).
    #[inline(always)]
    fn unpack_nibbles(simd: V3, packed: [u8; 16]) -> __m256i {
        let packed: __m128i = pulp::cast(packed);
        let high = simd.sse2._mm_srli_epi16::<4>(packed);
        simd.avx2._mm256_and_si256(
            simd.avx._mm256_set_m128i(high, packed),
            simd.avx._mm256_set1_epi8(0x0f),
        )
    }

    #[inline(always)]
    pub fn dot_q4(
        simd: V3,
        scales: &[f32],
        mins: Option<&[f32]>,
        nibbles: &[[u8; 16]],
        x: ActsView,
    ) -> f32 {
        // (A closure here would not inherit the AVX2 features and its intrinsics would become calls.)
        #[inline(always)]
        fn block_dot(simd: V3, packed: [u8; 16], xq: [u8; 32], unsigned: bool) -> __m256 {
            let w = unpack_nibbles(simd, packed);
            let xv: __m256i = pulp::cast(xq);
            if unsigned {
                // Q4_1: nibbles are unsigned, exactly what maddubs takes.
                let pairs = simd.avx2._mm256_maddubs_epi16(w, xv);
                simd.avx._mm256_cvtepi32_ps(
                    simd.avx2
                        ._mm256_madd_epi16(pairs, simd.avx._mm256_set1_epi16(1)),
                )
            } else {
                // Q4_0: nibble − 8 is signed.
                signed_dot(
                    simd,
                    simd.avx2._mm256_sub_epi8(w, simd.avx._mm256_set1_epi8(8)),
                    xv,
                )
            }
        }
        let unsigned = mins.is_some();
        // Two accumulators so consecutive blocks' FMAs do not wait on each other.
        let mut acc = [simd.avx._mm256_setzero_ps(); 2];
        let pairs = scales.len() / 2;
        for p in 0..pairs {
            for (k, slot) in acc.iter_mut().enumerate() {
                let b = 2 * p + k;
                let scale = simd.avx._mm256_set1_ps(scales[b] * x.scales[b]);
                *slot = simd.fma._mm256_fmadd_ps(
                    block_dot(simd, nibbles[b], x.quants[b], unsigned),
                    scale,
                    *slot,
                );
            }
        }
        if scales.len() % 2 == 1 {
            let b = scales.len() - 1;
            let scale = simd.avx._mm256_set1_ps(scales[b] * x.scales[b]);
            acc[0] = simd.fma._mm256_fmadd_ps(
                block_dot(simd, nibbles[b], x.quants[b], unsigned),
                scale,
                acc[0],
            );
        }
        // Q4_1's minimum term, Σ_b m_b · Σx_b, is a plain dot product of two f32 vectors.
        let min_term = mins.map_or(0.0, |m| super::portable::dot_f32(m, x.sums));
        hsum(simd.avx._mm256_add_ps(acc[0], acc[1])) + min_term
    }
}
