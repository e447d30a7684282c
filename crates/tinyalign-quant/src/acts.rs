//! Activations rounded to 8 bits per block of 32, ggml's Q8_1 idea: scale d = max|x| / 127, q = round(x / d),
//! plus the exact block sum Σx that the Q4_1 minimum term needs.

use crate::BLOCK;

/// `n` vectors of `cols` values each, quantised block by block.
#[derive(Debug)]
pub struct QuantizedActs {
    blocks_per_vector: usize,
    scales: Vec<f32>,
    sums: Vec<f32>,
    quants: Vec<[u8; 32]>,
}

/// One quantised vector: per block a scale, the block's exact sum, and 32 i8 values (stored as bytes).
#[derive(Clone, Copy, Debug)]
pub struct ActsView<'a> {
    pub scales: &'a [f32],
    pub sums: &'a [f32],
    pub quants: &'a [[u8; 32]],
}

impl QuantizedActs {
    /// `xs` is `n × cols` row-major; `cols` is a multiple of 32 (checked by the matrix that asks).
    pub fn quantize(xs: &[f32], n: usize, cols: usize) -> Self {
        let blocks = n * cols / BLOCK;
        let mut acts = Self {
            blocks_per_vector: cols / BLOCK,
            scales: Vec::with_capacity(blocks),
            sums: Vec::with_capacity(blocks),
            quants: Vec::with_capacity(blocks),
        };
        for block in xs.chunks_exact(BLOCK) {
            let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut q = [0u8; 32];
            for (slot, &v) in q.iter_mut().zip(block) {
                *slot = ((v * inv).round() as i8) as u8;
            }
            acts.scales.push(d);
            acts.sums.push(block.iter().sum());
            acts.quants.push(q);
        }
        acts
    }

    pub fn vector(&self, t: usize) -> ActsView<'_> {
        let range = t * self.blocks_per_vector..(t + 1) * self.blocks_per_vector;
        ActsView {
            scales: &self.scales[range.clone()],
            sums: &self.sums[range.clone()],
            quants: &self.quants[range],
        }
    }
}
