//! The work of one task of a product: a run of weight rows against every input vector, per storage
//! format and activation handling.

use crate::acts::Acts;
use crate::kernels::{Dot, DotTask, Q5Row};
use crate::q4k::{Q4kRow, RUNS};
use crate::q6k::Q6kRow;
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
        // A prompt's vectors four at a time where the kernel can share each decoded weight block, the
        // four outer and the task's rows inner: the four vectors' activations stay in L1 while the rows
        // stream past, instead of every vector's activations streaming past each row.
        let quads = if q8 { self.acts.quads() } else { 0 };
        let rows = self.out.len() / self.n;
        // Q5_0's four-vector products read bytes: the task's rows are unpacked a band at a time (one that
        // stays in L2 while the four-vector groups pass over it), each block once per product instead of
        // once per four vectors. Other formats take all rows as one band.
        let q5_band = match &m.storage {
            Storage::Q5_0 { .. } if quads > 0 => {
                Some((Q5_BAND_BYTES / (32 * nb).max(1)).clamp(1, rows))
            }
            _ => None,
        };
        let band_rows = q5_band.unwrap_or(rows.max(1));
        let mut unpacked = vec![[0u8; 32]; if q5_band.is_some() { band_rows * nb } else { 0 }];
        for band in (0..rows)
            .step_by(band_rows)
            .map(|i| i..(i + band_rows).min(rows))
        {
            if let Storage::Q5_0 { nibbles, high, .. } = &m.storage
                && q5_band.is_some()
            {
                let blocks = (self.first + band.start) * nb..(self.first + band.end) * nb;
                dot.q5_unpack(
                    &nibbles[blocks.clone()],
                    &high[blocks.clone()],
                    &mut unpacked[..blocks.len()],
                );
            }
            for quad in 0..quads {
                let t = 4 * quad;
                let xs = self.acts.quad(quad);
                for i in band.clone() {
                    let r = self.first + i;
                    let b = r * nb..(r + 1) * nb;
                    let dots = match &m.storage {
                        // Never taken (f32 weights keep f32 activations); here so the match stays whole.
                        Storage::F32(w) => xs
                            .vectors
                            .map(|x| dot.f32(&w[r * cols..(r + 1) * cols], x.values)),
                        Storage::Q8_0 { scales, quants } => {
                            dot.q8_0_q8_x4(&scales[b.clone()], &quants[b.clone()], xs)
                        }
                        Storage::Q4_0 { scales, nibbles } => {
                            dot.q4_q8_x4(&scales[b.clone()], None, &nibbles[b.clone()], xs)
                        }
                        Storage::Q4_1 {
                            scales,
                            mins,
                            nibbles,
                        } => dot.q4_q8_x4(
                            &scales[b.clone()],
                            Some(&mins[b.clone()]),
                            &nibbles[b.clone()],
                            xs,
                        ),
                        Storage::Q5_0 { scales, .. } => {
                            let at = (i - band.start) * nb;
                            dot.q5_q8_x4(&scales[b.clone()], &unpacked[at..at + nb], xs)
                        }
                        Storage::Q6K {
                            supers,
                            nibbles,
                            high,
                        } => dot.q6k_q8_x4(q6k_row(supers, nibbles, high, r, nb), xs),
                        Storage::Q4K { supers, nibbles } => {
                            dot.q4k_q8_x4(q4k_row(supers, nibbles, r, nb), xs)
                        }
                    };
                    // A padded last group's copies are dropped.
                    let kept = (self.n - t).min(4);
                    self.out[i * self.n + t..i * self.n + t + kept].copy_from_slice(&dots[..kept]);
                }
            }
        }
        let done = (4 * quads).min(self.n);
        // The remaining vectors' views, made once per task rather than once per row (a decoding step's
        // one vector: making it per row was 4% of a SmolLM2 answer).
        let rest: Vec<_> = (done..self.n).map(|t| self.acts.vector(t)).collect();
        for (i, slots) in self.out.chunks_exact_mut(self.n).enumerate() {
            let r = self.first + i;
            let b = r * nb..(r + 1) * nb;
            for (slot, &x) in slots[done..].iter_mut().zip(&rest) {
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
                    Storage::Q5_0 {
                        scales,
                        nibbles,
                        high,
                    } => {
                        let w = Q5Row {
                            scales: &scales[b.clone()],
                            nibbles: &nibbles[b.clone()],
                            high: &high[b.clone()],
                        };
                        if q8 {
                            dot.q5_q8(w, x)
                        } else {
                            dot.q5_f32(w, x)
                        }
                    }
                    Storage::Q6K {
                        supers,
                        nibbles,
                        high,
                    } if q8 => dot.q6k_q8(q6k_row(supers, nibbles, high, r, nb), x),
                    Storage::Q6K {
                        supers,
                        nibbles,
                        high,
                    } => dot.q6k_f32(q6k_row(supers, nibbles, high, r, nb), x),
                    Storage::Q4K { supers, nibbles } if q8 => {
                        dot.q4k_q8(q4k_row(supers, nibbles, r, nb), x)
                    }
                    Storage::Q4K { supers, nibbles } => {
                        dot.q4k_f32(q4k_row(supers, nibbles, r, nb), x)
                    }
                };
            }
        }
    }
}

/// Row `r` of a Q4_K matrix with `nb` blocks per row.
#[inline(always)]
fn q4k_row<'a>(
    supers: &'a [crate::q4k::Q4kSuper],
    nibbles: &'a [[u8; 16]],
    r: usize,
    nb: usize,
) -> Q4kRow<'a> {
    let per_row = nb / RUNS;
    Q4kRow {
        supers: &supers[r * per_row..(r + 1) * per_row],
        nibbles: &nibbles[r * nb..(r + 1) * nb],
    }
}

/// Row `r` of a Q6_K matrix with `nb` blocks per row.
#[inline(always)]
fn q6k_row<'a>(
    supers: &'a [crate::q6k::Q6kSuper],
    nibbles: &'a [[u8; 16]],
    high: &'a [[u8; 8]],
    r: usize,
    nb: usize,
) -> Q6kRow<'a> {
    let per_row = nb / RUNS;
    Q6kRow {
        supers: &supers[r * per_row..(r + 1) * per_row],
        nibbles: &nibbles[r * nb..(r + 1) * nb],
        high: &high[r * nb..(r + 1) * nb],
    }
}

/// About how many bytes of Q5_0 rows a four-vector product unpacks at a time: 256 KiB stays in a
/// 512 KiB L2. Measured on six 4864 × 896 products of 46 vectors (Zen 3, 2 threads): 4, 16 and 64 KiB
/// bands were 10–30% slower (the activations stream past each small band once per four vectors), a whole
/// task's rows at once (545 KiB) 15% slower, 256 KiB within 3% of products that read bytes held so.
const Q5_BAND_BYTES: usize = 256 * 1024;

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
