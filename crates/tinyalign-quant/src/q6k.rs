//! Q6_K held at the file's size: per super-block of 256 the f16 factor (as f32) and sixteen i8 scales (one
//! per 16 values), per run of 32 the unsigned 6-bit values q ∈ [0, 64) as 16 bytes of low nibbles (Q4_1's
//! order) and 8 bytes of high bit pairs. 6.625 bits per weight, against 10 when each run was 32 i8 with two
//! f32 scales (`Q8x16`, until this layout).
//!
//! x = d·sc_g·(q − 32). Its 8-bit products take activations rounded per 256, as Q4_K's: Σ sc_g·Σ q·x̂ in
//! integers per super-block, and the −32 through the exact sums of each 16 values (`Acts`' half sums).

use tinyalign_weights::blocks::{Q6_K_BYTES, q6_k_block};

use crate::Storage;
use crate::q4k::RUNS;

/// Scales (groups of 16) per super-block.
pub(crate) const GROUPS: usize = 16;

/// One super-block's factors: group g's values are `(d·scales[g])·(q − 32)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Q6kSuper {
    pub d: f32,
    pub scales: [i8; GROUPS],
}

impl Q6kSuper {
    /// Each group's scale `d·sc`, as ggml's dequantiser computes it.
    #[inline(always)]
    pub fn group_scales(&self) -> [f32; GROUPS] {
        self.scales.map(|sc| self.d * f32::from(sc))
    }

    /// Each group's offset per unit of Σx: `(−32·d)·sc` (−32·d is exact), for x = d·sc·q + that·1.
    #[inline(always)]
    pub fn group_offsets(&self) -> [f32; GROUPS] {
        let unit = -32.0 * self.d;
        self.scales.map(|sc| unit * f32::from(sc))
    }
}

/// One row: `cols / 256` super-blocks and `cols / 32` runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Q6kRow<'a> {
    pub supers: &'a [Q6kSuper],
    pub nibbles: &'a [[u8; 16]],
    pub high: &'a [[u8; 8]],
}

/// A run's values q ∈ [0, 64): the low 4 bits as Q4_1's nibbles (element j low in byte j, j + 16 high),
/// the top two bits of element `8m + k` at bits `2m, 2m + 1` of `high[k]` (so one 64-bit word shifted by
/// `2m` per quarter puts each quarter's pairs at the bottom of its bytes).
pub fn q6k_values(nibbles: &[u8; 16], high: &[u8; 8]) -> [u8; 32] {
    std::array::from_fn(|e| {
        let low = if e < 16 {
            nibbles[e] & 15
        } else {
            nibbles[e - 16] >> 4
        };
        low | (((high[e % 8] >> (2 * (e / 8))) & 3) << 4)
    })
}

/// The file's bytes → [`Storage::Q6K`], the values through the shared decoder (exactly ggml's).
pub(crate) fn repack(raw: &[u8]) -> Storage {
    let supers_n = raw.len() / Q6_K_BYTES;
    let mut supers = Vec::with_capacity(supers_n);
    let (mut nibbles, mut high) = (
        Vec::with_capacity(supers_n * RUNS),
        Vec::with_capacity(supers_n * RUNS),
    );
    for block in raw.chunks_exact(Q6_K_BYTES) {
        let decoded = q6_k_block(block);
        supers.push(Q6kSuper {
            d: half::f16::from_le_bytes([block[208], block[209]]).to_f32(),
            scales: std::array::from_fn(|g| block[192 + g] as i8),
        });
        for run in decoded.q.chunks_exact(32) {
            let q: [u8; 32] = std::array::from_fn(|e| (i16::from(run[e]) + 32) as u8);
            nibbles.push(std::array::from_fn(|j| {
                (q[j] & 15) | ((q[j + 16] & 15) << 4)
            }));
            let mut bits = [0u8; 8];
            for (e, &v) in q.iter().enumerate() {
                bits[e % 8] |= (v >> 4) << (2 * (e / 8));
            }
            high.push(bits);
        }
    }
    Storage::Q6K {
        supers,
        nibbles,
        high,
    }
}
