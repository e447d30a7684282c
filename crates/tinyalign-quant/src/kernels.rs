//! Dot products of one weight row with one (quantised) activation vector.

use crate::acts::{ActsView, QuadView};
use crate::q4k::{Q4kRow, RUNS};
use crate::q6k::Q6kRow;

/// Which implementation runs the inner loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Plain Rust; the compiler vectorises what it can for the build target.
    Portable,
    /// x86_64 AVX2 + FMA, detected at run time.
    Avx2,
    /// [`Kernel::Avx2`] with VNNI's 8-bit multiply-add (AVX-VNNI or AVX512-VNNI) for the 8-bit products;
    /// the same results bit for bit.
    Avx2Vnni,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if pulp::x86::V3::try_new().is_some() {
            if vnni_shim::Vnni::detect().is_some() {
                return Kernel::Avx2Vnni;
            }
            return Kernel::Avx2;
        }
        Kernel::Portable
    }

    /// Every kernel this CPU runs, portable first.
    pub fn available() -> Vec<Self> {
        match Self::detect() {
            Kernel::Portable => vec![Kernel::Portable],
            Kernel::Avx2 => vec![Kernel::Portable, Kernel::Avx2],
            Kernel::Avx2Vnni => vec![Kernel::Portable, Kernel::Avx2, Kernel::Avx2Vnni],
        }
    }

    /// Whether the kernel reads the activations four vectors at a time (`Acts`' interleaved copy).
    pub(crate) fn reads_quads(self) -> bool {
        self != Kernel::Portable
    }

    /// The offset this kernel adds to signed 8-bit weights to multiply them as unsigned bytes (VNNI's
    /// VPDPBUSD: w + 128), taken back off through the activations' lane corrections; 0 for none.
    pub(crate) fn signed_weight_offset(self) -> i32 {
        if self == Kernel::Avx2Vnni { 128 } else { 0 }
    }

    /// Runs `task` with this kernel's dot products. The whole task is compiled with the kernel's CPU
    /// features enabled, so the per-row loop around the dot products is inlined and vectorised too.
    pub(crate) fn run<T: DotTask>(self, task: T) -> T::Output {
        #[cfg(target_arch = "x86_64")]
        if let (Kernel::Avx2Vnni, Some(simd), Some(vnni)) =
            (self, pulp::x86::V3::try_new(), vnni_shim::Vnni::detect())
        {
            use vnni_shim::Dpbusd;
            return match vnni {
                vnni_shim::Vnni::Vex(dp) => dp.vectorize(
                    #[inline(always)]
                    || task.run(vnni::Vnni { simd, dp }),
                ),
                vnni_shim::Vnni::Evex(dp) => dp.vectorize(
                    #[inline(always)]
                    || task.run(vnni::Vnni { simd, dp }),
                ),
            };
        }
        #[cfg(target_arch = "x86_64")]
        if let (Kernel::Avx2 | Kernel::Avx2Vnni, Some(simd)) = (self, pulp::x86::V3::try_new()) {
            return simd.vectorize(
                #[inline(always)]
                || task.run(avx2::Avx2(simd)),
            );
        }
        task.run(portable::Portable)
    }
}

#[inline(always)]
pub(crate) fn portable_dot(a: &[f32], b: &[f32]) -> f32 {
    portable::dot_f32(a, b)
}

/// Dot products of one weight row with one activation vector, per storage format and activation handling.
pub(crate) trait Dot: Copy {
    fn f32(self, w: &[f32], x: &[f32]) -> f32;
    fn q8_0_f32(self, scales: &[f32], quants: &[[u8; 32]], x: ActsView) -> f32;
    fn q8_0_q8(self, scales: &[f32], quants: &[[u8; 32]], x: ActsView) -> f32;
    /// Q4_0 (`mins` = None: nibbles offset by 8) or Q4_1 (nibbles plus a per-block minimum).
    fn q4_f32(self, scales: &[f32], mins: Option<&[f32]>, nibbles: &[[u8; 16]], x: ActsView)
    -> f32;
    fn q4_q8(self, scales: &[f32], mins: Option<&[f32]>, nibbles: &[[u8; 16]], x: ActsView) -> f32;
    /// Q5_0 as held (q ∈ [0, 32) unpacked per block, x = d·(q − 16)); the same sums as
    /// [`Dot::q8_0_f32`] of q − 16.
    fn q5_f32(self, w: Q5Row, x: ActsView) -> f32;
    /// The same integers, lane sums and float steps as [`Dot::q8_0_q8`] of q − 16, so equal bit for bit.
    fn q5_q8(self, w: Q5Row, x: ActsView) -> f32;
    /// Q5_0 blocks unpacked to a byte per value ([`crate::q5_0_bytes`]) into `out`, for
    /// [`Dot::q5_q8_x4`]: a prompt's product unpacks each block once, not once per four vectors.
    fn q5_unpack(self, nibbles: &[[u8; 16]], high: &[[u8; 4]], out: &mut [[u8; 32]]) {
        for ((slot, n), h) in out.iter_mut().zip(nibbles).zip(high) {
            *slot = crate::q5_0_bytes(n, h);
        }
    }
    /// i8 weights with a scale per 16 elements against f32 activations (Q6_K's super-blocks, widened).
    fn q8x16_f32(self, scales: &[[f32; 2]], quants: &[[u8; 32]], x: ActsView) -> f32;

    // One weight row with four 8-bit activation vectors (a prompt's rows): a kernel may load and decode
    // each weight block once for the four. Each result equals the single-vector call's bit for bit.
    fn q8_0_q8_x4(self, scales: &[f32], quants: &[[u8; 32]], xs: QuadView) -> [f32; 4] {
        xs.vectors.map(|x| self.q8_0_q8(scales, quants, x))
    }
    fn q4_q8_x4(
        self,
        scales: &[f32],
        mins: Option<&[f32]>,
        nibbles: &[[u8; 16]],
        xs: QuadView,
    ) -> [f32; 4] {
        xs.vectors.map(|x| self.q4_q8(scales, mins, nibbles, x))
    }
    /// `quants`: the row's blocks unpacked by [`Dot::q5_unpack`].
    fn q5_q8_x4(self, scales: &[f32], quants: &[[u8; 32]], xs: QuadView) -> [f32; 4];

    /// Q4_K as held with f32 activations: each super-block's runs as Q4_1 blocks (scale d·sc, offset
    /// −dmin·m, the values ggml dequantises).
    #[inline(always)]
    fn q4k_f32(self, w: Q4kRow, x: ActsView) -> f32 {
        let mut total = 0.0;
        for (s, sup) in w.supers.iter().enumerate() {
            let (blocks, values) = (RUNS * s..RUNS * (s + 1), 32 * RUNS * s..32 * RUNS * (s + 1));
            let run = ActsView {
                values: &x.values[values],
                sums: &x.sums[blocks.clone()],
                half_sums: &[],
                corrections: &[],
                scales: &[],
                quants: &[],
            };
            let offsets = sup.run_offsets();
            total += self.q4_f32(&sup.run_scales(), Some(&offsets), &w.nibbles[blocks], run);
        }
        total
    }
    /// Q4_K as held with activations rounded per super-block (one scale per 256, replicated in each of its
    /// blocks' `scales`): Σ_s (d_s·d_x,s)·Σ_j sc_j·Σ q·x̂ + Σ_b offset_b·Σx_b, the inner sums in integers and
    /// the offsets against the exact block sums (as the Q4 kernels take them).
    fn q4k_q8(self, w: Q4kRow, x: ActsView) -> f32;
    fn q4k_q8_x4(self, w: Q4kRow, xs: QuadView) -> [f32; 4] {
        xs.vectors.map(|x| self.q4k_q8(w, x))
    }

    /// Q6_K as held with f32 activations: each super-block widened to i8 runs (q − 32) with their two
    /// group scales d·sc, the values ggml dequantises.
    #[inline(always)]
    fn q6k_f32(self, w: Q6kRow, x: ActsView) -> f32 {
        let mut total = 0.0;
        for (s, sup) in w.supers.iter().enumerate() {
            let blocks = RUNS * s..RUNS * (s + 1);
            let scales = sup.group_scales();
            let pairs: [[f32; 2]; RUNS] =
                std::array::from_fn(|j| [scales[2 * j], scales[2 * j + 1]]);
            let quants: [[u8; 32]; RUNS] = std::array::from_fn(|j| {
                let b = blocks.start + j;
                crate::q6k_values(&w.nibbles[b], &w.high[b]).map(|q| q.wrapping_sub(32))
            });
            let run = ActsView {
                values: &x.values[32 * blocks.start..32 * blocks.end],
                sums: &[],
                half_sums: &[],
                corrections: &[],
                scales: &[],
                quants: &[],
            };
            total += self.q8x16_f32(&pairs, &quants, run);
        }
        total
    }
    /// Q6_K as held with activations rounded per super-block: Σ_s (d_s·d_x,s)·Σ_g sc_g·Σ q·x̂ over the
    /// unsigned q, plus Σ_g (−32·d·sc_g)·Σx_g against the exact sums of each 16 values.
    fn q6k_q8(self, w: Q6kRow, x: ActsView) -> f32;
    fn q6k_q8_x4(self, w: Q6kRow, xs: QuadView) -> [f32; 4] {
        xs.vectors.map(|x| self.q6k_q8(w, x))
    }
}

/// One row of Q5_0 blocks as held: scales, low nibbles and high bits (see `Storage::Q5_0`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Q5Row<'a> {
    pub scales: &'a [f32],
    pub nibbles: &'a [[u8; 16]],
    pub high: &'a [[u8; 4]],
}

/// Work generic over the dot-product implementation (pulp's `WithSimd` pattern).
pub(crate) trait DotTask {
    type Output;
    fn run<D: Dot>(self, dot: D) -> Self::Output;
}

/// Σ_b m_b · Σx_b: the minimum term of Q4_1 (m_b) or the −8 offset of Q4_0 (m_b = −8·d_b).
#[inline(always)]
fn offset_term(scales: &[f32], mins: Option<&[f32]>, sums: &[f32]) -> f32 {
    match mins {
        Some(m) => portable::dot_f32(m, sums),
        None => -8.0 * portable::dot_f32(scales, sums),
    }
}

mod portable;

#[cfg(target_arch = "x86_64")]
mod avx2_super;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod unpack;
#[cfg(target_arch = "x86_64")]
mod vnni;
