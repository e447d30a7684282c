//! Q4_K held as the file holds it: per super-block of 256 the two f16 factors (as f32) and the eight 6-bit
//! scales and minimums (unpacked to bytes), per run of 32 its 16 bytes of nibbles in Q4_1's layout.
//! 4.75 bits per weight, against 6 when each run was a Q4_1 block with f32 scale and minimum.
//!
//! Its 8-bit products take activations rounded with one scale per 256 (`Acts`' group of 256, ggml's Q8_K
//! idea), so a super-block's eight runs sum in integers with their 6-bit scales as multipliers and meet
//! floats once per 256 instead of once per 32.

use tinyalign_weights::blocks::{Q4_K_BYTES, q4_k_block, q4_k_scale_min};

use crate::Storage;

/// Runs of 32 per super-block.
pub(crate) const RUNS: usize = 8;

/// One super-block's factors: run `j`'s values are `(d·scales[j])·q − dmin·mins[j]`, `q ∈ [0, 15]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Q4kSuper {
    pub d: f32,
    pub dmin: f32,
    pub scales: [u8; RUNS],
    pub mins: [u8; RUNS],
}

impl Q4kSuper {
    /// Each run's scale `d·sc`, as ggml's dequantiser computes it.
    #[inline(always)]
    pub fn run_scales(&self) -> [f32; RUNS] {
        self.scales.map(|sc| self.d * f32::from(sc))
    }

    /// Each run's offset `−dmin·m` (x = scale·q + offset).
    #[inline(always)]
    pub fn run_offsets(&self) -> [f32; RUNS] {
        self.mins.map(|m| -(self.dmin * f32::from(m)))
    }
}

/// One row: `cols / 256` super-blocks and `cols / 32` runs of nibbles.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Q4kRow<'a> {
    pub supers: &'a [Q4kSuper],
    pub nibbles: &'a [[u8; 16]],
}

/// The file's bytes → [`Storage::Q4K`]; the factors through the shared decoder, so every value is what
/// ggml dequantises.
pub(crate) fn repack(raw: &[u8]) -> Storage {
    let supers_n = raw.len() / Q4_K_BYTES;
    let (mut supers, mut nibbles) = (
        Vec::with_capacity(supers_n),
        Vec::with_capacity(supers_n * RUNS),
    );
    for block in raw.chunks_exact(Q4_K_BYTES) {
        let decoded = q4_k_block(block);
        let packed = &block[4..16];
        let pairs: [(u8, u8); RUNS] = std::array::from_fn(|j| q4_k_scale_min(j, packed));
        supers.push(Q4kSuper {
            d: half::f16::from_le_bytes([block[0], block[1]]).to_f32(),
            dmin: half::f16::from_le_bytes([block[2], block[3]]).to_f32(),
            scales: pairs.map(|p| p.0),
            mins: pairs.map(|p| p.1),
        });
        for run in decoded.q.chunks_exact(32) {
            nibbles.push(std::array::from_fn(|j| run[j] | (run[j + 16] << 4)));
        }
    }
    Storage::Q4K { supers, nibbles }
}
