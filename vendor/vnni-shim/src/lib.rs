//! VPDPBUSD, the 8-bit multiply-add of the VNNI extensions, and its 16-bit sibling VPDPWSSD, behind safe
//! tokens. pulp 0.22 detects the features but has no method for the instructions, and the tinyalign crates
//! forbid `unsafe`; this crate holds the five `unsafe` blocks it takes, each sound because a token exists
//! only on a CPU that has the feature (checked at run time by [`Vnni::detect`]).
//!
//! One instruction does what AVX2 needs `vpmaddubsw` + `vpmaddwd` for (u8·i8 products summed four to an
//! i32 lane), and it adds into an accumulator, so a subtraction folds into it too. It never saturates,
//! where `vpmaddubsw`'s i16 pair sums can; for 8-bit activations in −127..127 and weights the quant kernels
//! use, both give the same lanes.

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::{
        __m256i, _mm256_dpbusd_avx_epi32, _mm256_dpbusd_epi32, _mm256_dpwssd_avx_epi32,
        _mm256_dpwssd_epi32,
    };

    /// The instruction and a way to run code compiled for it.
    pub trait Dpbusd: Copy + Send + Sync + core::fmt::Debug {
        /// `acc + Σ a·b` per i32 lane over that lane's four bytes, `a` unsigned and `b` signed; exact (no
        /// saturation; the i32 sum wraps only past ±2³¹, which 4·255·128 is far from).
        fn dpbusd(self, acc: __m256i, a: __m256i, b: __m256i) -> __m256i;

        /// VPDPWSSD: `acc + a₀b₀ + a₁b₁` per i32 lane over that lane's two i16s, both signed; exact below
        /// ±2³¹ (it does what `vpmaddwd` + `vpaddd` do, in one instruction, without saturating).
        fn dpwssd(self, acc: __m256i, a: __m256i, b: __m256i) -> __m256i;

        /// Runs `f` compiled with AVX, AVX2, FMA and this token's VNNI features enabled, so intrinsics of
        /// those sets inside it (pulp's AVX2 methods, [`Dpbusd::dpbusd`]) become single instructions. `f`
        /// and everything it calls must be `#[inline(always)]` for that, as with pulp's `vectorize`.
        fn vectorize<R>(self, f: impl FnOnce() -> R) -> R;
    }

    /// AVX-VNNI (VEX encoding: Alder Lake and later client cores, Sapphire Rapids, Zen 5).
    #[derive(Clone, Copy, Debug)]
    pub struct AvxVnni {
        _private: (),
    }

    /// AVX512-VNNI with AVX512VL, used at 256 bits (Cascade Lake, Ice Lake, Zen 4 and later).
    #[derive(Clone, Copy, Debug)]
    pub struct Avx512Vnni {
        _private: (),
    }

    impl Dpbusd for AvxVnni {
        #[inline(always)]
        fn dpbusd(self, acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
            // SAFETY: an `AvxVnni` is only made by `Vnni::detect`, after the CPU reported AVX-VNNI.
            unsafe { _mm256_dpbusd_avx_epi32(acc, a, b) }
        }

        #[inline(always)]
        fn dpwssd(self, acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
            // SAFETY: as for `dpbusd` (VPDPWSSD is part of AVX-VNNI).
            unsafe { _mm256_dpwssd_avx_epi32(acc, a, b) }
        }

        #[inline(always)]
        fn vectorize<R>(self, f: impl FnOnce() -> R) -> R {
            #[target_feature(enable = "avx,avx2,fma,avxvnni")]
            #[inline]
            fn with_features<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: as for `dpbusd`, and `detect` also checked AVX, AVX2 and FMA.
            unsafe { with_features(f) }
        }
    }

    impl Dpbusd for Avx512Vnni {
        #[inline(always)]
        fn dpbusd(self, acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
            // SAFETY: an `Avx512Vnni` is only made by `Vnni::detect`, after the CPU reported AVX512-VNNI and
            // AVX512VL (the 256-bit form needs both).
            unsafe { _mm256_dpbusd_epi32(acc, a, b) }
        }

        #[inline(always)]
        fn dpwssd(self, acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
            // SAFETY: as for `dpbusd` (VPDPWSSD is part of AVX512-VNNI; 256 bits need AVX512VL).
            unsafe { _mm256_dpwssd_epi32(acc, a, b) }
        }

        #[inline(always)]
        fn vectorize<R>(self, f: impl FnOnce() -> R) -> R {
            #[target_feature(enable = "avx,avx2,fma,avx512vnni,avx512vl")]
            #[inline]
            fn with_features<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: as for `dpbusd`, and `detect` also checked AVX, AVX2 and FMA.
            unsafe { with_features(f) }
        }
    }

    /// The VNNI this CPU has, if any (with AVX2 and FMA, which the kernels around it need).
    #[derive(Clone, Copy, Debug)]
    pub enum Vnni {
        Vex(AvxVnni),
        Evex(Avx512Vnni),
    }

    impl Vnni {
        pub fn detect() -> Option<Self> {
            let base = is_x86_feature_detected!("avx")
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma");
            if !base {
                return None;
            }
            if is_x86_feature_detected!("avxvnni") {
                return Some(Vnni::Vex(AvxVnni { _private: () }));
            }
            if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl") {
                return Some(Vnni::Evex(Avx512Vnni { _private: () }));
            }
            None
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use core::arch::x86_64::__m256i;

        fn reference(acc: [i32; 8], a: [u8; 32], b: [i8; 32]) -> [i32; 8] {
            std::array::from_fn(|lane| {
                acc[lane]
                    + (0..4)
                        .map(|k| i32::from(a[4 * lane + k]) * i32::from(b[4 * lane + k]))
                        .sum::<i32>()
            })
        }

        fn check<T: Dpbusd>(token: T) {
            // Extremes (255 · −128, which vpmaddubsw's pair sums would saturate), then seeded bytes.
            let mut state = 0x2545_f491_4f6c_dd1du64;
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            };
            let mut cases = vec![([i32::MIN / 2; 8], [255u8; 32], [-128i8; 32])];
            for _ in 0..200 {
                let acc: [i32; 8] =
                    std::array::from_fn(|_| i32::from(next() as i8) * 1000 - i32::from(next()));
                cases.push((
                    acc,
                    std::array::from_fn(|_| next()),
                    std::array::from_fn(|_| next() as i8),
                ));
            }
            for (acc, a, b) in cases {
                let got: [i32; 8] = token.vectorize(|| {
                    let (acc, a, b): (__m256i, __m256i, __m256i) =
                        (bytemuck_cast(acc), bytemuck_cast(a), bytemuck_cast(b));
                    bytemuck_cast(token.dpbusd(acc, a, b))
                });
                assert_eq!(got, reference(acc, a, b), "{token:?}: a {a:?} b {b:?}");
                // The same bytes as sixteen i16 pairs per lane for VPDPWSSD.
                let (a16, b16): ([i16; 16], [i16; 16]) = (bytemuck_cast(a), bytemuck_cast(b));
                let got: [i32; 8] = token.vectorize(|| {
                    let (acc, a, b): (__m256i, __m256i, __m256i) =
                        (bytemuck_cast(acc), bytemuck_cast(a16), bytemuck_cast(b16));
                    bytemuck_cast(token.dpwssd(acc, a, b))
                });
                let want: [i32; 8] = std::array::from_fn(|lane| {
                    // Two products of −2¹⁵ each reach 2³¹: the instruction wraps, so the reference does.
                    acc[lane]
                        .wrapping_add(i32::from(a16[2 * lane]) * i32::from(b16[2 * lane]))
                        .wrapping_add(i32::from(a16[2 * lane + 1]) * i32::from(b16[2 * lane + 1]))
                });
                assert_eq!(got, want, "{token:?}: a {a16:?} b {b16:?}");
            }
        }

        /// Same-size plain-data reinterpretation for the test's inputs (arrays of integers and `__m256i`).
        fn bytemuck_cast<A: Copy, B: Copy>(a: A) -> B {
            assert_eq!(size_of::<A>(), size_of::<B>());
            // SAFETY: both are 32 bytes of plain integers, every bit pattern valid; read_unaligned copies.
            unsafe { core::ptr::read_unaligned((&raw const a).cast::<B>()) }
        }

        #[test]
        fn dpbusd_and_dpwssd_are_the_exact_sums_per_lane() {
            match Vnni::detect() {
                Some(Vnni::Vex(token)) => check(token),
                Some(Vnni::Evex(token)) => check(token),
                None => eprintln!("this CPU has no VNNI: nothing to check"),
            }
            // Where the CPU has both, check the EVEX form too.
            if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl") {
                check(Avx512Vnni { _private: () });
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{Avx512Vnni, AvxVnni, Dpbusd, Vnni};
