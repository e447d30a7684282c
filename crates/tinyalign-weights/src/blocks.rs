//! Integer decoding of the ggml block formats beyond the plain ones: Q5_0, Q4_K and Q6_K (layouts and
//! formulas from ggml's `ggml-common.h` and `dequantize_row_*` in `ggml-quants.c`).
//!
//! Each decoder returns the block's integers and its float scales separately, so that `tinyalign-quant`
//! can keep the integers for its integer dot products, and [`crate::gguf::dequantize`] multiplies them out.
//! Every format here becomes "a scale (and a minimum) per run of 16 or 32 small integers", which is what
//! the kernels consume; the float scales are computed exactly as ggml computes them (`d · sc` in f32).

/// Bytes of one Q5_0 block (32 elements): f16 d, u32 high bits, 16 bytes of low nibbles.
pub const Q5_0_BYTES: usize = 22;
/// Bytes of one Q4_K super-block (256 elements): f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes
/// of nibbles.
pub const Q4_K_BYTES: usize = 144;
/// Bytes of one Q6_K super-block (256 elements): 128 bytes low nibbles, 64 bytes high 2-bit pairs, 16 i8
/// scales, f16 d.
pub const Q6_K_BYTES: usize = 210;
/// Elements of a K-quant super-block.
pub const SUPER_BLOCK: usize = 256;

fn f16(b: &[u8]) -> f32 {
    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// One Q5_0 block: `x_j = d · q_j` with `q_j ∈ [−16, 15]` (the 5-bit value minus 16). Bit 4 of element j
/// is bit j of `qh`; elements 0..16 take the low nibbles of `qs`, 16..32 the high ones.
pub fn q5_0_block(block: &[u8]) -> (f32, [i8; 32]) {
    let d = f16(&block[0..2]);
    let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
    let qs = &block[6..22];
    let mut q = [0i8; 32];
    for j in 0..16 {
        let high_lo = ((qh >> j) << 4) & 0x10;
        let high_hi = (qh >> (j + 12)) & 0x10;
        q[j] = ((u32::from(qs[j] & 0x0f) | high_lo) as i32 - 16) as i8;
        q[j + 16] = ((u32::from(qs[j] >> 4) | high_hi) as i32 - 16) as i8;
    }
    (d, q)
}

/// Scale and minimum index `j` (0..8) of a Q4_K block's packed 12 bytes (`get_scale_min_k4`), both 6-bit.
pub fn q4_k_scale_min(j: usize, packed: &[u8]) -> (u8, u8) {
    if j < 4 {
        (packed[j] & 63, packed[j + 4] & 63)
    } else {
        (
            (packed[j + 4] & 0x0f) | ((packed[j - 4] >> 6) << 4),
            (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4),
        )
    }
}

/// A Q4_K super-block as 8 runs of 32: `x = scale_s · q − min_s` with `q ∈ [0, 15]`, so the run is a
/// Q4_1 block with scale `scale_s` and offset `−min_s`. `q[32·s + i]` is element `32·s + i`.
#[derive(Debug, Clone)]
pub struct Q4K {
    pub scales: [f32; 8],
    pub mins: [f32; 8],
    pub q: [u8; SUPER_BLOCK],
}

pub fn q4_k_block(block: &[u8]) -> Q4K {
    let (d, dmin) = (f16(&block[0..2]), f16(&block[2..4]));
    let packed = &block[4..16];
    let qs = &block[16..144];
    let mut out = Q4K {
        scales: [0.0; 8],
        mins: [0.0; 8],
        q: [0; SUPER_BLOCK],
    };
    // Each 64 elements read 32 bytes: low nibbles are the first run of 32, high nibbles the second.
    for chunk in 0..4 {
        for half in 0..2 {
            let s = 2 * chunk + half;
            let (sc, m) = q4_k_scale_min(s, packed);
            out.scales[s] = d * f32::from(sc);
            out.mins[s] = dmin * f32::from(m);
            for l in 0..32 {
                let byte = qs[32 * chunk + l];
                out.q[32 * s + l] = if half == 0 { byte & 0x0f } else { byte >> 4 };
            }
        }
    }
    out
}

/// A Q6_K super-block as 16 runs of 16: `x = scale_s · q` with `q ∈ [−32, 31]`, `scale_s = d · sc_s`.
#[derive(Debug, Clone)]
pub struct Q6K {
    pub scales: [f32; 16],
    pub q: [i8; SUPER_BLOCK],
}

pub fn q6_k_block(block: &[u8]) -> Q6K {
    let (ql, qh, sc) = (&block[0..128], &block[128..192], &block[192..208]);
    let d = f16(&block[208..210]);
    let mut out = Q6K {
        scales: [0.0; 16],
        q: [0; SUPER_BLOCK],
    };
    for (s, slot) in out.scales.iter_mut().enumerate() {
        *slot = d * f32::from(sc[s] as i8);
    }
    // Two halves of 128 elements, each from 64 bytes of ql and 32 of qh (`dequantize_row_q6_K`).
    for n in 0..2 {
        let (ql, qh) = (&ql[64 * n..], &qh[32 * n..]);
        let base = 128 * n;
        for l in 0..32 {
            let six =
                |low: u8, shift: u32| ((low | (((qh[l] >> shift) & 3) << 4)) as i32 - 32) as i8;
            out.q[base + l] = six(ql[l] & 0x0f, 0);
            out.q[base + l + 32] = six(ql[l + 32] & 0x0f, 2);
            out.q[base + l + 64] = six(ql[l] >> 4, 4);
            out.q[base + l + 96] = six(ql[l + 32] >> 4, 6);
        }
    }
    out
}

/// Dequantised values of Q5_0 / Q4_K / Q6_K bytes (whole blocks), ggml's arithmetic order.
pub(crate) fn dequantize_q5_0(raw: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(raw.len() / Q5_0_BYTES * 32);
    for block in raw.chunks_exact(Q5_0_BYTES) {
        let (d, q) = q5_0_block(block);
        out.extend(q.iter().map(|&v| d * f32::from(v)));
    }
    out
}

pub(crate) fn dequantize_q4_k(raw: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(raw.len() / Q4_K_BYTES * SUPER_BLOCK);
    for block in raw.chunks_exact(Q4_K_BYTES) {
        let b = q4_k_block(block);
        for (i, &q) in b.q.iter().enumerate() {
            out.push(b.scales[i / 32] * f32::from(q) - b.mins[i / 32]);
        }
    }
    out
}

pub(crate) fn dequantize_q6_k(raw: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(raw.len() / Q6_K_BYTES * SUPER_BLOCK);
    for block in raw.chunks_exact(Q6_K_BYTES) {
        let b = q6_k_block(block);
        for (i, &q) in b.q.iter().enumerate() {
            out.push(b.scales[i / 16] * f32::from(q));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q5_0_high_bits_land_on_their_elements() {
        // d = 1, all low nibbles 0, high bit set for elements 0 and 17 only: those are 16 − 16 = 0, the
        // rest −16.
        let mut block = half::f16::from_f32(1.0).to_le_bytes().to_vec();
        block.extend((1u32 | (1 << 17)).to_le_bytes());
        block.extend([0u8; 16]);
        let (d, q) = q5_0_block(&block);
        assert_eq!(d, 1.0);
        for (j, &v) in q.iter().enumerate() {
            assert_eq!(v, if j == 0 || j == 17 { 0 } else { -16 }, "element {j}");
        }
    }

    #[test]
    fn q4_k_scales_unpack_six_bits() {
        // Six-bit scales 40..48 and mins 50..58 (high bits set), packed as get_scale_min_k4 reads them.
        let (sc, mn): (Vec<u8>, Vec<u8>) = ((40..48).collect(), (50..58).collect());
        let mut packed = [0u8; 12];
        for j in 0..4 {
            packed[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
            packed[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
            packed[j + 8] = (sc[j + 4] & 0x0f) | ((mn[j + 4] & 0x0f) << 4);
        }
        for j in 0..8 {
            assert_eq!(q4_k_scale_min(j, &packed), (sc[j], mn[j]), "index {j}");
        }
    }
}
