//! Weight matrices on the GPU, kept in their GGUF block formats (the LLM: Q4_1 layers, Q8_0 embeddings)
//! or as f32, repacked so every field is 4-byte aligned for WGSL.

use half::f16;
use tinyalign_weights::gguf::{GgmlType, GgufFile};

use crate::context::bytes_of_f32;
use crate::{Gpu, GpuError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightFormat {
    F32,
    /// 32 values per block: an f16 scale d and 32 signed bytes; value = d · q.
    Q8_0,
    /// 32 values per block: f16 d and m and 32 nibbles; value = d · q + m.
    Q4_1,
}

impl WeightFormat {
    /// The WGSL loader (`load_b.wgsl`) for this format.
    pub(crate) fn loader(self) -> &'static str {
        match self {
            WeightFormat::F32 => "load_f32",
            WeightFormat::Q8_0 => "load_q8_0",
            WeightFormat::Q4_1 => "load_q4_1",
        }
    }
}

/// A `rows × cols` weight matrix (PyTorch / GGUF layout: one row per output). `words` holds the f32 bits
/// or the packed quants; `constants` the per-block d (and m).
#[derive(Debug)]
pub struct GpuMatrix {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) format: WeightFormat,
    pub(crate) words: wgpu::Buffer,
    pub(crate) constants: Option<wgpu::Buffer>,
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// GGUF Q8_0 blocks (34 bytes: f16 d, 32 × i8) → (quant bytes, padded to words; scales).
pub fn repack_q8_0(raw: &[u8]) -> (Vec<u8>, Vec<f32>) {
    let blocks = raw.len() / 34;
    let mut quants = Vec::with_capacity(blocks * 32);
    let mut scales = Vec::with_capacity(blocks);
    for block in raw.chunks_exact(34) {
        scales.push(f16_at(block, 0));
        quants.extend_from_slice(&block[2..34]);
    }
    (quants, scales)
}

/// GGUF Q4_1 blocks (20 bytes: f16 d, f16 m, 16 bytes of nibbles) → (nibble bytes; d, m pairs).
pub fn repack_q4_1(raw: &[u8]) -> (Vec<u8>, Vec<f32>) {
    let blocks = raw.len() / 20;
    let mut nibbles = Vec::with_capacity(blocks * 16);
    let mut constants = Vec::with_capacity(blocks * 2);
    for block in raw.chunks_exact(20) {
        constants.push(f16_at(block, 0));
        constants.push(f16_at(block, 2));
        nibbles.extend_from_slice(&block[4..20]);
    }
    (nibbles, constants)
}

impl GpuMatrix {
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn format(&self) -> WeightFormat {
        self.format
    }

    fn check_binding(gpu: &Gpu, what: &str, bytes: usize) -> Result<(), GpuError> {
        if bytes as u64 > gpu.max_binding_bytes() {
            return Err(GpuError::Model(format!(
                "{what} needs a {bytes}-byte buffer; this adapter binds at most {}",
                gpu.max_binding_bytes()
            )));
        }
        Ok(())
    }

    pub fn from_f32(gpu: &Gpu, rows: usize, cols: usize, data: &[f32]) -> Result<Self, GpuError> {
        if data.len() != rows * cols {
            return Err(GpuError::Shape(format!(
                "{} values do not make a {rows}×{cols} matrix",
                data.len()
            )));
        }
        Self::check_binding(gpu, "a matrix", data.len() * 4)?;
        Ok(Self {
            rows,
            cols,
            format: WeightFormat::F32,
            words: gpu.upload_words(bytes_of_f32(data)),
            constants: None,
        })
    }

    /// A GGUF matrix tensor `name`: Q8_0 and Q4_1 stay quantised; F32, F16, BF16 and Q4_0 become f32.
    pub fn from_gguf(gpu: &Gpu, file: &GgufFile, name: &str) -> Result<Self, GpuError> {
        let (info, raw) = file.raw(name)?;
        let [rows, cols] = info.shape[..] else {
            return Err(GpuError::Model(format!(
                "{}: `{name}` has shape {:?}, expected a matrix",
                file.source_name, info.shape
            )));
        };
        Self::from_blocks(gpu, info.ggml_type, rows, cols, raw)
            .map_err(|e| GpuError::Model(format!("{}: `{name}`: {e}", file.source_name)))
    }

    /// A `rows × cols` matrix from its stored bytes in ggml type `ty` (GGUF's block layouts).
    pub fn from_blocks(
        gpu: &Gpu,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        raw: &[u8],
    ) -> Result<Self, GpuError> {
        let expected_raw = ty
            .block()
            .filter(|(per_block, _)| cols.is_multiple_of(*per_block))
            .map(|(per_block, bytes)| rows * cols / per_block * bytes);
        if expected_raw != Some(raw.len()) {
            return Err(GpuError::Model(format!(
                "{} bytes of {} do not make a {rows}×{cols} matrix",
                raw.len(),
                ty.name()
            )));
        }
        let (format, words, constants) = match ty {
            GgmlType::Q8_0 => {
                let (q, d) = repack_q8_0(raw);
                (WeightFormat::Q8_0, q, d)
            }
            GgmlType::Q4_1 => {
                let (q, dm) = repack_q4_1(raw);
                (WeightFormat::Q4_1, q, dm)
            }
            other => {
                let values = tinyalign_weights::gguf::dequantize(other, raw)
                    .ok_or_else(|| GpuError::Model(format!("{} has no GPU path", other.name())))?;
                return Self::from_f32(gpu, rows, cols, &values);
            }
        };
        Self::check_binding(gpu, "a matrix", words.len())?;
        Ok(Self {
            rows,
            cols,
            format,
            words: gpu.upload_words(words),
            constants: Some(gpu.upload_words(bytes_of_f32(&constants))),
        })
    }
}
