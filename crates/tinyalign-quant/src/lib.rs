//! Matrix products for CPU inference with weights kept in llama.cpp's block formats.
//!
//! A decoding step of a small LLM is a chain of matrix-vector products whose cost is reading the weights;
//! keeping them at 4.5–8.5 bits instead of 32 cuts that traffic 4–7×. As in ggml, the activation vector is
//! quantised to 8 bits per block of 32 once per product, so the inner loop is an integer dot product (AVX2
//! `maddubs`: 32 multiply-adds per instruction) and one float multiply per block.
//!
//! Kernels: AVX2+FMA chosen at run time on x86_64 (through `pulp`'s safe feature tokens, so no `unsafe`
//! here), with VNNI's 8-bit multiply-add where the CPU has it (`vnni-shim`'s tokens), and a portable scalar path everywhere else (wasm32 included) that is also the reference the
//! SIMD path is tested against.

mod acts;
mod dequant;
mod group;
mod kernels;
mod q4k;
mod q6k;
mod repack;
mod row_dots;

use acts::{Acts, Form};
pub use kernels::Kernel;
pub use q4k::Q4kSuper;
pub use q6k::{Q6kSuper, q6k_values};
pub use repack::q5_0_bytes;
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

/// `Σ a·b` with eight partial sums, so it vectorises (a strict left-to-right float sum cannot). The sum
/// is the same at any vector width (8 lanes of SSE pairs, one AVX register), so it is the same inside
/// [`vectorized`] and outside it, bit for bit.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    kernels::portable_dot(a, b)
}

/// Runs `f` compiled with AVX2 and FMA enabled where this CPU has them (else as built), so the loops
/// inlined into it vectorise 8 lanes wide instead of the x86-64 baseline's 4. The arithmetic is the same
/// operations in the same order (Rust never fuses a multiply and an add on its own), so the results are
/// the same bits; only speed changes. `f` must be `#[inline(always)]`, and what it calls inlinable
/// (generic, or `#[inline]` across crates), for the features to reach it.
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(f);
    }
    f()
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
    /// f16 d + 32 high bits + 16 bytes of nibbles; x = d·(q − 16). Held as in the file with an f32 d (6 bits
    /// per weight): decoding is memory-bound, and a byte per weight (9 bits) made a Qwen2.5-0.5B token read
    /// 1.4× the weight bytes llama.cpp reads. The kernels unpack q ∈ [0, 32) to a byte per weight in
    /// registers (a prompt's products once per block and product, into a small scratch), multiply q
    /// without the sign fix-ups signed weights need, then take off 16·Σx̂ per lane in integers, so every
    /// product equals the signed (Q8_0-held) one bit for bit.
    Q5_0,
    /// Super-blocks of 256 with 6-bit scales and minimums per 32; x = (d·sc)·q − dmin·m. Held as in the
    /// file (`q4k`: d and dmin as f32, the 6-bit factors as bytes, nibbles in Q4_1's order), 4.75 bits per
    /// weight; its 8-bit products round the activations per 256 and sum each super-block in integers.
    Q4K,
    /// Super-blocks of 256 with an i8 scale per 16; x = (d·sc)·(q − 32). Held at the file's size (`q6k`:
    /// d as f32, q's low nibbles in Q4_1's order and its high bit pairs per run), 6.6 bits per weight; its
    /// 8-bit products round the activations per 256, as Q4_K's.
    Q6K,
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
            Format::Q6K => (
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
    /// x = scales[b] · (q − 16), q ∈ [0, 32): its low 4 bits as Q4_0's nibbles, bit 4 of element j in bit
    /// j of `high[b]` (little-endian), as in the file ([`q5_0_bytes`]).
    Q5_0 {
        scales: Vec<f32>,
        nibbles: Vec<[u8; 16]>,
        high: Vec<[u8; 4]>,
    },
    /// Row `r` owns super-blocks as Q4K's; block b's value j is `group_scales()[2·(b % 8) + j / 16] ·
    /// (q − 32)` of `supers[b / 8]`, q = [`q6k_values`]`(nibbles[b], high[b])[j]`.
    Q6K {
        supers: Vec<Q6kSuper>,
        nibbles: Vec<[u8; 16]>,
        high: Vec<[u8; 8]>,
    },
    /// Row `r` owns super-blocks `r·nb/8 .. (r+1)·nb/8` and blocks of nibbles `r·nb .. (r+1)·nb`; block b's
    /// value j is `supers[b / 8].run_scales()[b % 8] · q + run_offsets()[b % 8]`, q its nibble as Q4_1's.
    Q4K {
        supers: Vec<Q4kSuper>,
        nibbles: Vec<[u8; 16]>,
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
    /// x = scales[b] · (q − 16), q = [`q5_0_bytes`]`(nibbles[b], high[b])` ∈ [0, 32).
    Q5_0 {
        scales: &'a [f32],
        nibbles: &'a [[u8; 16]],
        high: &'a [[u8; 4]],
    },
    /// Block b: x = group_scales[2·(b % 8) + e / 16] · (q − 32) of `supers[b / 8]`, q =
    /// [`q6k_values`]`(nibbles[b], high[b])`.
    Q6K {
        supers: &'a [Q6kSuper],
        nibbles: &'a [[u8; 16]],
        high: &'a [[u8; 8]],
    },
    /// Block b: x = run_scales[b % 8] · q + run_offsets[b % 8] of `supers[b / 8]`; nibbles as Q4_0's.
    Q4K {
        supers: &'a [Q4kSuper],
        nibbles: &'a [[u8; 16]],
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
            Format::Q4K => q4k::repack(raw),
            Format::Q6K => q6k::repack(raw),
        };
        Ok(Self {
            rows,
            cols,
            storage,
            source: format,
        })
    }

    /// The values as held (see [`Format`]).
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
            Storage::Q5_0 {
                scales,
                nibbles,
                high,
            } => Packed::Q5_0 {
                scales,
                nibbles,
                high,
            },
            Storage::Q6K {
                supers,
                nibbles,
                high,
            } => Packed::Q6K {
                supers,
                nibbles,
                high,
            },
            Storage::Q4K { supers, nibbles } => Packed::Q4K { supers, nibbles },
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
            Storage::Q5_0 { .. } => Format::Q5_0,
            Storage::Q6K { .. } => Format::Q6K,
            Storage::Q4K { .. } => Format::Q4K,
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

    /// How this matrix's products take their activations: quantised to 8 bits or not, per 32 or per
    /// super-block, and the lane correction of the kernels that multiply unsigned weight bytes (`Acts`).
    fn activation_form(&self, product: Product) -> Form {
        let quantize =
            product.activations == Activations::Q8 && !matches!(self.storage, Storage::F32(_));
        let correction = match self.storage {
            Storage::Q5_0 { .. } if product.kernel != Kernel::Portable => 16,
            Storage::Q8_0 { .. } => product.kernel.signed_weight_offset(),
            _ => 0,
        };
        let group = match self.storage {
            Storage::Q4K { .. } | Storage::Q6K { .. } => tinyalign_weights::blocks::SUPER_BLOCK,
            _ => BLOCK,
        };
        Form {
            quantize,
            correction,
            group,
        }
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
        let acts = Acts::new(
            xs,
            self.cols,
            self.activation_form(product),
            kernel.reads_quads(),
        );
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
            // `rows × n` → `n × rows`, four output vectors per task: each weight row's four values are one
            // 16-byte read, and the four output rows are written in order. Single-threaded, this took a
            // twelfth of a 4864 × 896 product with 64 vectors.
            let rows = self.rows;
            let transpose = |(quad, chunk): (usize, &mut [f32])| {
                let t0 = 4 * quad;
                let vectors = chunk.len() / rows;
                for (r, values) in by_row.chunks_exact(n).enumerate() {
                    for (k, &v) in values[t0..t0 + vectors].iter().enumerate() {
                        chunk[k * rows + r] = v;
                    }
                }
            };
            #[cfg(feature = "parallel")]
            {
                use rayon::prelude::*;
                out.par_chunks_mut(4 * rows).enumerate().for_each(transpose);
            }
            #[cfg(not(feature = "parallel"))]
            out.chunks_mut(4 * rows).enumerate().for_each(transpose);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
