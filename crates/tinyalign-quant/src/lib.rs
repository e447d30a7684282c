//! Matrix products for CPU inference with weights kept in llama.cpp's block formats.
//!
//! A decoding step of a small LLM is a chain of matrix-vector products whose cost is reading the weights;
//! keeping them at 4.5–8.5 bits instead of 32 cuts that traffic 4–7×. As in ggml, the activation vector is
//! quantised to 8 bits per block of 32 once per product, so the inner loop is an integer dot product (AVX2
//! `maddubs`: 32 multiply-adds per instruction) and one float multiply per block.
//!
//! Kernels: AVX2+FMA chosen at run time on x86_64 (through `pulp`'s safe feature tokens, so no `unsafe`
//! here), and a portable scalar path everywhere else (wasm32 included) that is also the reference the
//! SIMD path is tested against.

mod acts;
mod kernels;
mod repack;
mod row_dots;

use acts::Acts;
pub use kernels::Kernel;
use row_dots::{RowDots, rows_per_task};

/// How activations enter a product with block-quantised weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Activations {
    /// Kept in f32; each weight block is widened to f32 in registers. Exact up to summation order.
    #[default]
    F32,
    /// Rounded to 8 bits per block of 32 first, as llama.cpp does, so the inner loop is integer
    /// multiply-adds. Faster, but every product then carries up to max|x|/254 error per element.
    Q8,
}

/// The kernel and activation handling of a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Product {
    pub kernel: Kernel,
    pub activations: Activations,
}

impl Default for Product {
    fn default() -> Self {
        Self {
            kernel: Kernel::detect(),
            activations: Activations::default(),
        }
    }
}

/// `Σ a·b` with eight partial sums, so it vectorises (a strict left-to-right float sum cannot).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    kernels::portable_dot(a, b)
}

/// Elements per quantisation block in every block format here.
pub const BLOCK: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantError {
    #[error(
        "{0} weights are not supported here (supported: F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q6_K)"
    )]
    Unsupported(String),
    #[error("a {rows}×{cols} {format} matrix needs {expected} bytes, got {got}")]
    Size {
        rows: usize,
        cols: usize,
        format: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{format} needs the row length to be a multiple of {block}, got {cols}")]
    RowLength {
        format: &'static str,
        block: usize,
        cols: usize,
    },
    #[error("shape mismatch: {0}")]
    Shape(String),
}

/// Storage format of a weight matrix, with the ggml block layouts of `ggml-common.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    F32,
    /// Read as F16, stored as f32.
    F16,
    /// f16 d + 32 × i8; x = d·q.
    Q8_0,
    /// f16 d + 16 bytes of nibbles; x = d·(q − 8). Low nibbles are elements 0..16, high ones 16..32.
    Q4_0,
    /// f16 d + f16 m + 16 bytes of nibbles; x = d·q + m.
    Q4_1,
    /// f16 d + 32 high bits + 16 bytes of nibbles; x = d·(q − 16). Held as Q8_0 (same d, q − 16 as i8):
    /// exact, and served by the Q8_0 kernels at 8.5 instead of 5.5 bits per weight.
    Q5_0,
    /// Super-blocks of 256 with 6-bit scales and minimums per 32; x = (d·sc)·q − dmin·m. Held as Q4_1 blocks
    /// (scale d·sc, minimum −dmin·m, nibbles reordered): exact, same bits per weight.
    Q4K,
    /// Super-blocks of 256 with an i8 scale per 16; x = (d·sc)·(q − 32). Held as i8 with two f32 scales per
    /// block of 32 (`Q8x16`): exact, 10 bits per weight instead of 6.6.
    Q6K,
    /// The in-memory form of Q6_K: 32 × i8 with one scale per 16 elements.
    Q8x16,
}

impl Format {
    /// The format a GGUF tensor of type `ty` is read as (`None`: no kernel; BF16 and the rest).
    pub fn from_ggml(ty: tinyalign_weights::gguf::GgmlType) -> Option<Self> {
        use tinyalign_weights::gguf::GgmlType;
        Some(match ty {
            GgmlType::F32 => Format::F32,
            GgmlType::F16 => Format::F16,
            GgmlType::Q8_0 => Format::Q8_0,
            GgmlType::Q4_0 => Format::Q4_0,
            GgmlType::Q4_1 => Format::Q4_1,
            GgmlType::Q5_0 => Format::Q5_0,
            GgmlType::Q4K => Format::Q4K,
            GgmlType::Q6K => Format::Q6K,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::F32 => "F32",
            Format::F16 => "F16",
            Format::Q8_0 => "Q8_0",
            Format::Q4_0 => "Q4_0",
            Format::Q4_1 => "Q4_1",
            Format::Q5_0 => "Q5_0",
            Format::Q4K => "Q4_K",
            Format::Q6K => "Q6_K",
            Format::Q8x16 => "Q8x16",
        }
    }

    /// Bytes of one GGUF block and the elements it holds.
    fn gguf_block(self) -> (usize, usize) {
        match self {
            Format::F32 => (4, 1),
            Format::F16 => (2, 1),
            Format::Q8_0 => (34, BLOCK),
            Format::Q4_0 => (18, BLOCK),
            Format::Q4_1 => (20, BLOCK),
            Format::Q5_0 => (tinyalign_weights::blocks::Q5_0_BYTES, BLOCK),
            Format::Q4K => (
                tinyalign_weights::blocks::Q4_K_BYTES,
                tinyalign_weights::blocks::SUPER_BLOCK,
            ),
            Format::Q6K | Format::Q8x16 => (
                tinyalign_weights::blocks::Q6_K_BYTES,
                tinyalign_weights::blocks::SUPER_BLOCK,
            ),
        }
    }
}

/// Blocks of one matrix, row-major: row `r` owns blocks `r·nb .. (r+1)·nb`, `nb = cols / 32`.
#[derive(Clone)]
enum Storage {
    F32(Vec<f32>),
    Q8_0 {
        scales: Vec<f32>,
        quants: Vec<[u8; 32]>,
    },
    Q4_0 {
        scales: Vec<f32>,
        nibbles: Vec<[u8; 16]>,
    },
    Q4_1 {
        scales: Vec<f32>,
        mins: Vec<f32>,
        nibbles: Vec<[u8; 16]>,
    },
    /// One scale per 16 elements: `scales[b] = [s₀, s₁]` for elements 0..16 and 16..32 of block b.
    Q8x16 {
        scales: Vec<[f32; 2]>,
        quants: Vec<[u8; 32]>,
    },
}

/// A matrix's values as held, block by block in row order, for other backends to copy as they are (the GPU
/// path's loaders use the same layouts).
#[derive(Debug, Clone, Copy)]
pub enum Packed<'a> {
    F32(&'a [f32]),
    /// x = scales[b] · q (q as i8).
    Q8_0 {
        scales: &'a [f32],
        quants: &'a [[u8; 32]],
    },
    /// x = scales[b] · (q − 8); element j in the low nibble of byte j, j + 16 in its high nibble.
    Q4_0 {
        scales: &'a [f32],
        nibbles: &'a [[u8; 16]],
    },
    /// x = scales[b] · q + mins[b]; nibbles as Q4_0's.
    Q4_1 {
        scales: &'a [f32],
        mins: &'a [f32],
        nibbles: &'a [[u8; 16]],
    },
    /// x = scales[b][e / 16] · q (q as i8).
    Q8x16 {
        scales: &'a [[f32; 2]],
        quants: &'a [[u8; 32]],
    },
}

/// A `rows × cols` weight matrix (PyTorch `Linear` layout: `y = W·x`, one output per row).
#[derive(Clone)]
pub struct QMatrix {
    rows: usize,
    cols: usize,
    storage: Storage,
    /// The file's format (Q5_0 is held as Q8_0, for example).
    source: Format,
}

impl std::fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "QMatrix({}×{} {} from {})",
            self.rows,
            self.cols,
            self.format().name(),
            self.source.name()
        )
    }
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

impl QMatrix {
    pub fn from_f32(rows: usize, cols: usize, data: Vec<f32>) -> Result<Self, QuantError> {
        if data.len() != rows * cols {
            return Err(QuantError::Size {
                rows,
                cols,
                format: "F32",
                expected: rows * cols * 4,
                got: data.len() * 4,
            });
        }
        Ok(Self {
            rows,
            cols,
            storage: Storage::F32(data),
            source: Format::F32,
        })
    }

    /// Takes the raw bytes of a GGUF tensor whose innermost dimension is `cols`.
    pub fn from_gguf_bytes(
        format: Format,
        rows: usize,
        cols: usize,
        raw: &[u8],
    ) -> Result<Self, QuantError> {
        if format == Format::Q8x16 {
            return Err(QuantError::Unsupported(
                "Q8x16 (an in-memory layout, not a GGUF type)".into(),
            ));
        }
        let (block_bytes, block_elems) = format.gguf_block();
        if !cols.is_multiple_of(block_elems) {
            return Err(QuantError::RowLength {
                format: format.name(),
                block: block_elems,
                cols,
            });
        }
        let blocks = rows * cols / block_elems;
        if raw.len() != blocks * block_bytes {
            return Err(QuantError::Size {
                rows,
                cols,
                format: format.name(),
                expected: blocks * block_bytes,
                got: raw.len(),
            });
        }
        let chunks = raw.chunks_exact(block_bytes);
        let storage = match format {
            Format::F32 => Storage::F32(
                chunks
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            ),
            Format::F16 => Storage::F32(chunks.map(|b| f16_at(b, 0)).collect()),
            Format::Q8_0 => Storage::Q8_0 {
                scales: raw
                    .chunks_exact(block_bytes)
                    .map(|b| f16_at(b, 0))
                    .collect(),
                quants: chunks
                    .map(|b| b[2..34].try_into().expect("34-byte block"))
                    .collect(),
            },
            Format::Q4_0 => Storage::Q4_0 {
                scales: raw
                    .chunks_exact(block_bytes)
                    .map(|b| f16_at(b, 0))
                    .collect(),
                nibbles: chunks
                    .map(|b| b[2..18].try_into().expect("18-byte block"))
                    .collect(),
            },
            Format::Q4_1 => Storage::Q4_1 {
                scales: raw
                    .chunks_exact(block_bytes)
                    .map(|b| f16_at(b, 0))
                    .collect(),
                mins: raw
                    .chunks_exact(block_bytes)
                    .map(|b| f16_at(b, 2))
                    .collect(),
                nibbles: chunks
                    .map(|b| b[4..20].try_into().expect("20-byte block"))
                    .collect(),
            },
            Format::Q5_0 => repack::q5_0(raw),
            Format::Q4K => repack::q4_k(raw),
            Format::Q6K | Format::Q8x16 => repack::q6_k(raw),
        };
        Ok(Self {
            rows,
            cols,
            storage,
            source: format,
        })
    }

    /// The values as held (Q5_0 as Q8_0, Q4_K as Q4_1, Q6_K as Q8x16: exactly, see [`Format`]).
    pub fn packed(&self) -> Packed<'_> {
        match &self.storage {
            Storage::F32(values) => Packed::F32(values),
            Storage::Q8_0 { scales, quants } => Packed::Q8_0 { scales, quants },
            Storage::Q4_0 { scales, nibbles } => Packed::Q4_0 { scales, nibbles },
            Storage::Q4_1 {
                scales,
                mins,
                nibbles,
            } => Packed::Q4_1 {
                scales,
                mins,
                nibbles,
            },
            Storage::Q8x16 { scales, quants } => Packed::Q8x16 { scales, quants },
        }
    }

    /// The format of the file the matrix came from.
    pub fn source_format(&self) -> Format {
        self.source
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn format(&self) -> Format {
        match self.storage {
            Storage::F32(_) => Format::F32,
            Storage::Q8_0 { .. } => Format::Q8_0,
            Storage::Q4_0 { .. } => Format::Q4_0,
            Storage::Q4_1 { .. } => Format::Q4_1,
            Storage::Q8x16 { .. } => Format::Q8x16,
        }
    }

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
            Storage::Q8x16 { scales, quants } => scales.len() * 8 + quants.len() * 32,
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
            Storage::Q8x16 { scales, quants } => blocks
                .flat_map(|b| {
                    quants[b]
                        .iter()
                        .enumerate()
                        .map(move |(j, &q)| scales[b][j / 16] * f32::from(q as i8))
                })
                .collect(),
        }
    }

    /// The same matrix dequantised to f32 (the baseline the quantised path is measured against).
    pub fn to_f32(&self) -> QMatrix {
        let data = (0..self.rows).flat_map(|r| self.row_f32(r)).collect();
        QMatrix {
            rows: self.rows,
            cols: self.cols,
            storage: Storage::F32(data),
            source: self.source,
        }
    }

    /// `y = W·x` for one vector: `x` has `cols` values, `y` gets `rows`.
    pub fn matvec(&self, x: &[f32], y: &mut [f32]) -> Result<(), QuantError> {
        self.matmul(x, 1, y)
    }

    /// `out[t] = W·xs[t]` for `n` vectors stored row-major: `xs` is `n × cols`, `out` is `n × rows`.
    pub fn matmul(&self, xs: &[f32], n: usize, out: &mut [f32]) -> Result<(), QuantError> {
        self.matmul_with(Product::default(), xs, n, out)
    }

    /// [`QMatrix::matmul`] with an explicit kernel and activation handling.
    pub fn matmul_with(
        &self,
        product: Product,
        xs: &[f32],
        n: usize,
        out: &mut [f32],
    ) -> Result<(), QuantError> {
        let kernel = product.kernel;
        if xs.len() != n * self.cols || out.len() != n * self.rows {
            return Err(QuantError::Shape(format!(
                "{self:?} times {n} vectors needs {} inputs and {} outputs, got {} and {}",
                n * self.cols,
                n * self.rows,
                xs.len(),
                out.len()
            )));
        }
        if n == 0 {
            return Ok(());
        }
        let quantize =
            product.activations == Activations::Q8 && !matches!(self.storage, Storage::F32(_));
        let acts = Acts::new(xs, self.cols, quantize);
        // Each task owns a run of weight rows and writes their outputs for all n vectors (rows × n, transposed
        // afterwards when n > 1), so a weight row is read once per product however many vectors there are.
        let mut by_row = if n == 1 {
            Vec::new()
        } else {
            vec![0.0f32; n * self.rows]
        };
        let target: &mut [f32] = if n == 1 { out } else { &mut by_row };
        let rows_per_task = rows_per_task(self.rows);
        let work = |(task, chunk): (usize, &mut [f32])| {
            let first = task * rows_per_task;
            kernel.run(RowDots {
                matrix: self,
                first,
                acts: &acts,
                out: chunk,
                n,
            });
        };
        #[cfg(feature = "parallel")]
        {
            use rayon::prelude::*;
            target
                .par_chunks_mut(rows_per_task * n)
                .enumerate()
                .for_each(work);
        }
        #[cfg(not(feature = "parallel"))]
        target
            .chunks_mut(rows_per_task * n)
            .enumerate()
            .for_each(work);
        if n > 1 {
            for (r, row) in by_row.chunks_exact(n).enumerate() {
                for (t, &v) in row.iter().enumerate() {
                    out[t * self.rows + r] = v;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lcg(seed: u64) -> impl FnMut() -> f32 {
        tinyalign_testkit::lcg64_stream(seed, 1.0)
    }

    /// Random GGUF bytes of a format: scales in [0, 0.1), mins in (−0.1, 0.1), random quants. The f16
    /// scales sit where each layout has them (first for the 32-blocks and Q4_K, last for Q6_K).
    fn gguf_bytes(format: Format, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
        let mut rnd = lcg(seed);
        let (block_bytes, elems) = format.gguf_block();
        let mut out = Vec::new();
        for _ in 0..rows * cols / elems {
            match format {
                Format::F32 => out.extend(rnd().to_le_bytes()),
                Format::F16 => out.extend(half::f16::from_f32(rnd()).to_le_bytes()),
                Format::Q6K => {
                    out.extend((0..block_bytes - 2).map(|_| (rnd() * 128.0 + 128.0) as u8));
                    out.extend(half::f16::from_f32(rnd().abs() * 0.1).to_le_bytes());
                }
                _ => {
                    let start = out.len();
                    out.extend(half::f16::from_f32(rnd().abs() * 0.1).to_le_bytes());
                    if matches!(format, Format::Q4_1 | Format::Q4K) {
                        out.extend(half::f16::from_f32(rnd() * 0.1).to_le_bytes());
                    }
                    while out.len() < start + block_bytes {
                        out.push((rnd() * 128.0 + 128.0) as u8);
                    }
                }
            }
        }
        out
    }

    fn reference(m: &QMatrix, xs: &[f32], n: usize) -> Vec<f64> {
        let mut out = vec![0.0; n * m.rows()];
        for r in 0..m.rows() {
            let w = m.row_f32(r);
            for t in 0..n {
                out[t * m.rows() + r] = w
                    .iter()
                    .zip(&xs[t * m.cols()..])
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum();
            }
        }
        out
    }

    const FORMATS: [Format; 8] = [
        Format::F32,
        Format::F16,
        Format::Q8_0,
        Format::Q4_0,
        Format::Q4_1,
        Format::Q5_0,
        Format::Q4K,
        Format::Q6K,
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Every kernel against an f64 product of the dequantised weights. The quantised paths also round the
        /// activations to 8 bits per block (each element moves by at most max|x in its block| / 254), and that
        /// error reaches the output through the integer part of each weight only (see `rounded_part`); f32
        /// paths only accumulate rounding.
        #[test]
        fn products_match_f64_reference(fi in 0usize..8, rows in 1usize..40, blocks in 1usize..6, n in 1usize..10, seed: u64) {
            let format = FORMATS[fi];
            let cols = blocks * format.gguf_block().1.max(BLOCK);
            let m = QMatrix::from_gguf_bytes(format, rows, cols, &gguf_bytes(format, rows, cols, seed)).unwrap();
            let mut rnd = lcg(seed ^ 0x5555);
            let xs: Vec<f32> = (0..n * cols).map(|_| rnd() * 3.0).collect();
            let want = reference(&m, &xs, n);
            for product in products() {
                let mut got = vec![0.0; n * rows];
                m.matmul_with(product, &xs, n, &mut got).unwrap();
                for t in 0..n {
                    for r in 0..rows {
                        let w = m.row_f32(r);
                        let x = &xs[t * cols..(t + 1) * cols];
                        let magnitude: f64 = w.iter().zip(x).map(|(&a, &b)| f64::from((a * b).abs())).sum();
                        // Rounding x to 8 bits moves each element by at most max|x in its block| / 254.
                        let act_rounding: f64 = rounded_part(&m, r).chunks(BLOCK).zip(x.chunks(BLOCK)).map(|(wb, xb)| {
                            let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                            wb.iter().map(|v| f64::from(v.abs())).sum::<f64>() * f64::from(amax) / 254.0
                        }).sum();
                        let rounded = product.activations == Activations::Q8 && !matches!(format, Format::F32 | Format::F16);
                        let bound = if rounded { 1.001 * act_rounding + 1e-5 * magnitude + 1e-5 } else { 1e-5 * magnitude + 1e-6 };
                        let (g, w) = (f64::from(got[t * rows + r]), want[t * rows + r]);
                        prop_assert!((g - w).abs() <= bound, "{product:?} {format:?} row {r} vec {t}: {g} vs {w} (bound {bound})");
                    }
                }
            }
        }
    }

    /// The part of row `r`'s weights that multiplies the 8-bit-rounded activations. Q8_0 is `d·q` whole;
    /// the Q4 kernels split `w = d·q + offset` (q the unsigned nibble, offset `−8d` or the block minimum) and
    /// take the offset times the block's exact Σx, so the rounding error is weighted by `d·q`, up to 15d
    /// where |w| is at most 8d. (A bound from |w| failed about once in a few thousand random cases.)
    fn rounded_part(m: &QMatrix, r: usize) -> Vec<f32> {
        let nb = m.cols / BLOCK;
        let nibbles_times_scale = |scales: &[f32], nibbles: &[[u8; 16]]| -> Vec<f32> {
            (r * nb..(r + 1) * nb)
                .flat_map(|b| {
                    let d = scales[b];
                    let lo: Vec<f32> = nibbles[b].iter().map(|&q| d * f32::from(q & 15)).collect();
                    let hi: Vec<f32> = nibbles[b].iter().map(|&q| d * f32::from(q >> 4)).collect();
                    lo.into_iter().chain(hi)
                })
                .collect()
        };
        match &m.storage {
            Storage::F32(_) | Storage::Q8_0 { .. } | Storage::Q8x16 { .. } => m.row_f32(r),
            Storage::Q4_0 { scales, nibbles }
            | Storage::Q4_1 {
                scales, nibbles, ..
            } => nibbles_times_scale(scales, nibbles),
        }
    }

    fn products() -> Vec<Product> {
        Kernel::available()
            .into_iter()
            .flat_map(|kernel| {
                [Activations::F32, Activations::Q8].map(|activations| Product {
                    kernel,
                    activations,
                })
            })
            .collect()
    }

    /// The SIMD kernels compute the same sums as the portable ones, so they agree to float rounding.
    #[test]
    fn simd_matches_portable_closely() {
        for format in FORMATS {
            let (rows, cols) = (67, 768);
            let m =
                QMatrix::from_gguf_bytes(format, rows, cols, &gguf_bytes(format, rows, cols, 7))
                    .unwrap();
            let mut rnd = lcg(99);
            let xs: Vec<f32> = (0..2 * cols).map(|_| rnd()).collect();
            for product in products() {
                let mut portable = vec![0.0; 2 * rows];
                let reference = Product {
                    kernel: Kernel::Portable,
                    ..product
                };
                m.matmul_with(reference, &xs, 2, &mut portable).unwrap();
                let mut got = vec![0.0; 2 * rows];
                m.matmul_with(product, &xs, 2, &mut got).unwrap();
                for (g, p) in got.iter().zip(&portable) {
                    assert!(
                        (g - p).abs() <= 1e-4 * (1.0 + p.abs()),
                        "{product:?} {format:?}: {g} vs {p}"
                    );
                }
            }
        }
    }

    /// A product of many vectors (a prompt; four at a time through the multi-vector kernels, the rest one by
    /// one) gives each vector exactly what a product of it alone gives.
    #[test]
    fn many_vectors_equal_one_at_a_time_bit_for_bit() {
        let (rows, cols, n) = (37, 256, 11);
        for format in FORMATS {
            let m =
                QMatrix::from_gguf_bytes(format, rows, cols, &gguf_bytes(format, rows, cols, 3))
                    .unwrap();
            let mut rnd = lcg(5);
            let xs: Vec<f32> = (0..n * cols).map(|_| rnd() * 2.0).collect();
            for product in products() {
                let mut all = vec![0.0; n * rows];
                m.matmul_with(product, &xs, n, &mut all).unwrap();
                for (t, x) in xs.chunks_exact(cols).enumerate() {
                    let mut one = vec![0.0; rows];
                    m.matmul_with(product, x, 1, &mut one).unwrap();
                    let got = &all[t * rows..(t + 1) * rows];
                    assert!(
                        got.iter()
                            .zip(&one)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{product:?} {format:?} vector {t}: {got:?} vs {one:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn dequantisation_matches_ggml_formulas() {
        // One Q4_1 block: d = 0.5, m = −1, nibbles (lo, hi) = (j mod 16, 15 − j mod 16).
        let mut raw = half::f16::from_f32(0.5).to_le_bytes().to_vec();
        raw.extend(half::f16::from_f32(-1.0).to_le_bytes());
        raw.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let m = QMatrix::from_gguf_bytes(Format::Q4_1, 1, 32, &raw).unwrap();
        let row = m.row_f32(0);
        for j in 0..16 {
            assert_eq!(row[j], 0.5 * j as f32 - 1.0);
            assert_eq!(row[16 + j], 0.5 * (15 - j) as f32 - 1.0);
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(matches!(
            QMatrix::from_gguf_bytes(Format::Q8_0, 2, 32, &[0; 67]),
            Err(QuantError::Size {
                expected: 68,
                got: 67,
                ..
            })
        ));
        assert!(matches!(
            QMatrix::from_gguf_bytes(Format::Q4_1, 1, 48, &[0; 30]),
            Err(QuantError::RowLength { .. })
        ));
        let m = QMatrix::from_f32(2, 3, vec![0.0; 6]).unwrap();
        assert!(matches!(
            m.matvec(&[0.0; 2], &mut [0.0; 2]),
            Err(QuantError::Shape(_))
        ));
    }
}
