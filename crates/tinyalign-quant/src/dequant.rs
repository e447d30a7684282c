//! What a matrix holds, counted and dequantised per storage format.

use crate::{BLOCK, Q4kSuper, Q6kSuper, QMatrix, Storage, q4k, q5_0_bytes, q6k_values};

impl QMatrix {
    /// Bytes the weights occupy in memory (what one full product has to read).
    pub fn weight_bytes(&self) -> usize {
        match &self.storage {
            Storage::F32(w) => w.len() * 4,
            Storage::Q8_0 { scales, quants } => scales.len() * 4 + quants.len() * 32,
            Storage::Q4_0 { scales, nibbles } => scales.len() * 4 + nibbles.len() * 16,
            Storage::Q4_1 {
                scales,
                mins,
                nibbles,
            } => (scales.len() + mins.len()) * 4 + nibbles.len() * 16,
            Storage::Q5_0 {
                scales,
                nibbles,
                high,
            } => scales.len() * 4 + nibbles.len() * 16 + high.len() * 4,
            Storage::Q6K {
                supers,
                nibbles,
                high,
            } => supers.len() * size_of::<Q6kSuper>() + nibbles.len() * 16 + high.len() * 8,
            Storage::Q4K { supers, nibbles } => {
                supers.len() * size_of::<Q4kSuper>() + nibbles.len() * 16
            }
        }
    }

    /// Row `r` as f32 (`cols` values), exactly as ggml dequantises it.
    pub fn row_f32(&self, r: usize) -> Vec<f32> {
        let nb = self.cols / BLOCK;
        let blocks = r * nb..(r + 1) * nb;
        match &self.storage {
            Storage::F32(w) => w[r * self.cols..(r + 1) * self.cols].to_vec(),
            Storage::Q8_0 { scales, quants } => blocks
                .flat_map(|b| {
                    quants[b]
                        .iter()
                        .map(move |&q| scales[b] * f32::from(q as i8))
                })
                .collect(),
            Storage::Q4_0 { scales, nibbles } => blocks
                .flat_map(|b| {
                    let d = scales[b];
                    let lo = nibbles[b]
                        .iter()
                        .map(move |&q| d * (f32::from(q & 15) - 8.0));
                    let hi = nibbles[b]
                        .iter()
                        .map(move |&q| d * (f32::from(q >> 4) - 8.0));
                    lo.chain(hi)
                })
                .collect(),
            Storage::Q4_1 {
                scales,
                mins,
                nibbles,
            } => blocks
                .flat_map(|b| {
                    let (d, m) = (scales[b], mins[b]);
                    let lo = nibbles[b].iter().map(move |&q| d * f32::from(q & 15) + m);
                    let hi = nibbles[b].iter().map(move |&q| d * f32::from(q >> 4) + m);
                    lo.chain(hi)
                })
                .collect(),
            Storage::Q5_0 {
                scales,
                nibbles,
                high,
            } => blocks
                .flat_map(|b| {
                    q5_0_bytes(&nibbles[b], &high[b])
                        .map(move |q| scales[b] * (f32::from(q) - 16.0))
                })
                .collect(),
            Storage::Q6K {
                supers,
                nibbles,
                high,
            } => blocks
                .flat_map(|b| {
                    let scales = supers[b / q4k::RUNS].group_scales();
                    let group = 2 * (b % q4k::RUNS);
                    q6k_values(&nibbles[b], &high[b])
                        .into_iter()
                        .enumerate()
                        .map(move |(j, q)| scales[group + j / 16] * f32::from(q as i8 - 32))
                })
                .collect(),
            Storage::Q4K { supers, nibbles } => blocks
                .flat_map(|b| {
                    let run = b % q4k::RUNS;
                    let sup = &supers[b / q4k::RUNS];
                    let (d, m) = (sup.run_scales()[run], sup.run_offsets()[run]);
                    let lo = nibbles[b].iter().map(move |&q| d * f32::from(q & 15) + m);
                    let hi = nibbles[b].iter().map(move |&q| d * f32::from(q >> 4) + m);
                    lo.chain(hi)
                })
                .collect(),
        }
    }
}
