//! The work of one task of a product: a run of weight rows against every input vector, per storage
//! format and activation handling.

use crate::acts::Acts;
use crate::kernels::{Dot, DotTask};
use crate::{BLOCK, QMatrix, Storage};

/// Dot products of the weight rows `first ..` with every input vector, written row by row (`rows × n`).
pub(crate) struct RowDots<'a> {
    pub matrix: &'a QMatrix,
    pub first: usize,
    pub acts: &'a Acts<'a>,
    pub out: &'a mut [f32],
    pub n: usize,
}

impl DotTask for RowDots<'_> {
    type Output = ();

    #[inline(always)]
    fn run<D: Dot>(self, dot: D) {
        let m = self.matrix;
        let (cols, nb) = (m.cols, m.cols / BLOCK);
        let q8 = self.acts.is_quantized();
        for (i, slots) in self.out.chunks_exact_mut(self.n).enumerate() {
            let r = self.first + i;
            let b = r * nb..(r + 1) * nb;
            for (t, slot) in slots.iter_mut().enumerate() {
                let x = self.acts.vector(t);
                *slot = match &m.storage {
                    Storage::F32(w) => dot.f32(&w[r * cols..(r + 1) * cols], x.values),
                    Storage::Q8_0 { scales, quants } if q8 => {
                        dot.q8_0_q8(&scales[b.clone()], &quants[b.clone()], x)
                    }
                    Storage::Q8_0 { scales, quants } => {
                        dot.q8_0_f32(&scales[b.clone()], &quants[b.clone()], x)
                    }
                    Storage::Q4_0 { scales, nibbles } if q8 => {
                        dot.q4_q8(&scales[b.clone()], None, &nibbles[b.clone()], x)
                    }
                    Storage::Q4_0 { scales, nibbles } => {
                        dot.q4_f32(&scales[b.clone()], None, &nibbles[b.clone()], x)
                    }
                    Storage::Q4_1 {
                        scales,
                        mins,
                        nibbles,
                    } if q8 => dot.q4_q8(
                        &scales[b.clone()],
                        Some(&mins[b.clone()]),
                        &nibbles[b.clone()],
                        x,
                    ),
                    Storage::Q4_1 {
                        scales,
                        mins,
                        nibbles,
                    } => dot.q4_f32(
                        &scales[b.clone()],
                        Some(&mins[b.clone()]),
                        &nibbles[b.clone()],
                        x,
                    ),
                    Storage::Q8x16 { scales, quants } if q8 => {
                        dot.q8x16_q8(&scales[b.clone()], &quants[b.clone()], x)
                    }
                    Storage::Q8x16 { scales, quants } => {
                        dot.q8x16_f32(&scales[b.clone()], &quants[b.clone()], x)
                    }
                };
            }
        }
    }
}

/// Tasks per product: enough for rayon to balance a few cores, few enough that scheduling stays cheap next
/// to the product (a decoding step makes ~200 of them).
pub(crate) fn rows_per_task(rows: usize) -> usize {
    let threads = {
        #[cfg(feature = "parallel")]
        {
            rayon::current_num_threads()
        }
        #[cfg(not(feature = "parallel"))]
        {
            1
        }
    };
    rows.div_ceil(4 * threads).max(16)
}
