//! Q5_0 bytes into the storage the kernels multiply: every value stays exactly what ggml
//! dequantises (the integers are kept, the float scales computed as ggml computes them), only the layout
//! changes. The bit unpacking itself lives in `tinyalign_weights::blocks`, shared with the dequantiser.

use tinyalign_weights::blocks::{Q5_0_BYTES, q5_0_block};

use crate::Storage;

/// Q5_0 → the file's bits as they are (high bits, nibbles) with d as f32 (the shared decoder's).
pub(crate) fn q5_0(raw: &[u8]) -> Storage {
    let blocks = raw.len() / Q5_0_BYTES;
    let mut scales = Vec::with_capacity(blocks);
    let mut nibbles = Vec::with_capacity(blocks);
    let mut high = Vec::with_capacity(blocks);
    for block in raw.chunks_exact(Q5_0_BYTES) {
        scales.push(q5_0_block(block).0);
        high.push(block[2..6].try_into().expect("4 bytes of high bits"));
        nibbles.push(block[6..22].try_into().expect("16 bytes of nibbles"));
    }
    Storage::Q5_0 {
        scales,
        nibbles,
        high,
    }
}

/// A Q5_0 block's 5-bit values q ∈ [0, 32) (x = d·(q − 16)), one per byte: element j's low 4 bits are
/// the low nibble of `nibbles[j]` (j < 16) or the high nibble of `nibbles[j − 16]`, its bit 4 is bit j of
/// `high` read little-endian (ggml's `block_q5_0`).
pub fn q5_0_bytes(nibbles: &[u8; 16], high: &[u8; 4]) -> [u8; 32] {
    let bits = u32::from_le_bytes(*high);
    std::array::from_fn(|j| {
        let low = if j < 16 {
            nibbles[j] & 15
        } else {
            nibbles[j - 16] >> 4
        };
        low | (((bits >> j) & 1) << 4) as u8
    })
}
