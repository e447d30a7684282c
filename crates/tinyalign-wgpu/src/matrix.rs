//! Weight matrices on the GPU, kept in GGUF block formats (SmolLM2: Q4_1 layers, Q8_0 embeddings; Qwen2.5:
//! Q5_0, Q4_K and Q6_K, in the layouts `tinyalign-quant` repacks them to exactly) or as f32, with every field 4-byte
//! aligned for WGSL. A matrix larger than one storage binding (Qwen2.5's 151,936-row embedding table and
//! head, ~136 MB each, against WebGPU's usual 128 MiB) is held as row bands, each its own binding.

use tinyalign_quant::{Format, Packed, QMatrix};
use tinyalign_weights::gguf::{GgmlType, GgufFile};

use crate::context::bytes_of_f32;
use crate::{Gpu, GpuError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightFormat {
    F32,
    /// 32 values per block: a scale d and 32 signed bytes; value = d · q. Holds GGUF Q8_0 and Q5_0
    /// (q − 16 fits a byte).
    Q8_0,
    /// 32 values per block: d and m and 32 nibbles; value = d · q + m. Holds GGUF Q4_1 and Q4_K (each run of
    /// 32 of a Q4_K super-block is such a block, with d = scale, m = −min).
    Q4_1,
    /// 16 values per block: a scale and 16 signed bytes; value = scale · q. Holds GGUF Q6_K (16 runs of 16
    /// per super-block, scale = d · sc, q ∈ [−32, 31]).
    Q8x16,
}

impl WeightFormat {
    /// The WGSL loader (`load_b.wgsl`) for this format.
    pub(crate) fn loader(self) -> &'static str {
        match self {
            WeightFormat::F32 => "load_f32",
            WeightFormat::Q8_0 => "load_q8_0",
            WeightFormat::Q4_1 => "load_q4_1",
            WeightFormat::Q8x16 => "load_q8x16",
        }
    }

    /// Bytes of packed values and of f32 block constants for one row of `cols` values.
    fn row_bytes(self, cols: usize) -> (usize, usize) {
        match self {
            WeightFormat::F32 => (cols * 4, 0),
            WeightFormat::Q8_0 => (cols, cols / 32 * 4),
            WeightFormat::Q4_1 => (cols / 2, cols / 32 * 8),
            WeightFormat::Q8x16 => (cols, cols / 16 * 4),
        }
    }
}

/// Rows `first_row .. first_row + rows` of a matrix, each band its own storage binding.
#[derive(Debug)]
pub(crate) struct RowBand {
    pub(crate) first_row: usize,
    pub(crate) rows: usize,
    pub(crate) words: wgpu::Buffer,
    pub(crate) constants: Option<wgpu::Buffer>,
}

/// A `rows × cols` weight matrix (PyTorch / GGUF layout: one row per output). Each band's `words` holds the
/// f32 bits or the packed quants, `constants` the per-block scales (and offsets).
#[derive(Debug)]
pub struct GpuMatrix {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) format: WeightFormat,
    pub(crate) bands: Vec<RowBand>,
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

    /// How many row bands the matrix is held in (1 unless it outgrew one binding).
    pub fn bands(&self) -> usize {
        self.bands.len()
    }

    /// The largest buffer one band may be: the adapter's binding and buffer limits.
    fn band_limit(gpu: &Gpu) -> u64 {
        gpu.max_binding_bytes().min(gpu.max_buffer_bytes())
    }

    pub fn from_f32(gpu: &Gpu, rows: usize, cols: usize, data: &[f32]) -> Result<Self, GpuError> {
        if data.len() != rows * cols {
            return Err(GpuError::Shape(format!(
                "{} values do not make a {rows}×{cols} matrix",
                data.len()
            )));
        }
        Self::upload_bands(
            gpu,
            WeightFormat::F32,
            rows,
            cols,
            &bytes_of_f32(data),
            &[],
            Self::band_limit(gpu),
        )
    }

    /// A GGUF matrix tensor `name`: Q8_0, Q4_1, Q5_0, Q4_K and Q6_K stay quantised; F32, F16, BF16 and
    /// Q4_0 become f32.
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
        Self::from_blocks_in_bands(gpu, ty, rows, cols, raw, Self::band_limit(gpu))
    }

    /// [`GpuMatrix::from_blocks`] with bands of at most `band_bytes` each (the adapter's limits apply
    /// too): how the tests exercise banding on small matrices.
    pub fn from_blocks_in_bands(
        gpu: &Gpu,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        raw: &[u8],
        band_bytes: u64,
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
        let bad = |e: tinyalign_quant::QuantError| GpuError::Model(e.to_string());
        // The CPU path's exact storage, widened where the loaders want it (below): Q4_K's runs as Q4_1 blocks,
        // Q6_K's as i8 with a scale per 16, Q5_0 as signed bytes; F16, BF16 and Q4_0 become f32.
        let matrix = match Format::from_ggml(ty) {
            Some(format) => QMatrix::from_gguf_bytes(format, rows, cols, raw).map_err(bad)?,
            None => {
                let values = tinyalign_weights::gguf::dequantize(ty, raw)
                    .ok_or_else(|| GpuError::Model(format!("{} has no GPU path", ty.name())))?;
                QMatrix::from_f32(rows, cols, values).map_err(bad)?
            }
        };
        let limit = band_bytes.min(Self::band_limit(gpu));
        let upload = |format, words: &[u8], constants: &[f32]| {
            Self::upload_bands(gpu, format, rows, cols, words, constants, limit)
        };
        match matrix.packed() {
            Packed::F32(values) => upload(WeightFormat::F32, &bytes_of_f32(values), &[]),
            Packed::Q8_0 { scales, quants } => {
                upload(WeightFormat::Q8_0, quants.as_flattened(), scales)
            }
            Packed::Q4_1 {
                scales,
                mins,
                nibbles,
            } => {
                let pairs: Vec<f32> = scales
                    .iter()
                    .zip(mins)
                    .flat_map(|(d, m)| [*d, *m])
                    .collect();
                upload(WeightFormat::Q4_1, nibbles.as_flattened(), &pairs)
            }
            // The Q8_0 loader takes Q5_0 as its signed q − 16 (exact).
            Packed::Q5_0 {
                scales,
                nibbles,
                high,
            } => {
                let signed: Vec<u8> = nibbles
                    .iter()
                    .zip(high)
                    .flat_map(|(n, h)| {
                        tinyalign_quant::q5_0_bytes(n, h).map(|q| (q as i8 - 16) as u8)
                    })
                    .collect();
                upload(WeightFormat::Q8_0, &signed, scales)
            }
            // Q4_K's runs are Q4_1 blocks with scale d·sc and offset −dmin·m (the same values).
            Packed::Q4K { supers, nibbles } => {
                let pairs: Vec<f32> = supers
                    .iter()
                    .flat_map(|s| {
                        let (scales, offsets) = (s.run_scales(), s.run_offsets());
                        (0..scales.len()).flat_map(move |j| [scales[j], offsets[j]])
                    })
                    .collect();
                upload(WeightFormat::Q4_1, nibbles.as_flattened(), &pairs)
            }
            // The Q8x16 loader takes Q6_K's runs as i8 q − 32 with their two group scales (exact).
            Packed::Q6K {
                supers,
                nibbles,
                high,
            } => {
                let quants: Vec<u8> = nibbles
                    .iter()
                    .zip(high)
                    .flat_map(|(n, h)| {
                        tinyalign_quant::q6k_values(n, h).map(|q| q.wrapping_sub(32))
                    })
                    .collect();
                let scales: Vec<f32> = supers.iter().flat_map(|s| s.group_scales()).collect();
                upload(WeightFormat::Q8x16, &quants, &scales)
            }
            // No Q4_0 loader: such matrices (none in the supported models) go up as f32.
            Packed::Q4_0 { .. } => {
                let values: Vec<f32> = (0..rows).flat_map(|r| matrix.row_f32(r)).collect();
                upload(WeightFormat::F32, &bytes_of_f32(&values), &[])
            }
        }
    }

    /// Uploads the packed matrix as row bands whose words and constants each fit in `limit` bytes.
    fn upload_bands(
        gpu: &Gpu,
        format: WeightFormat,
        rows: usize,
        cols: usize,
        words: &[u8],
        constants: &[f32],
        limit: u64,
    ) -> Result<Self, GpuError> {
        let (word_bytes, constant_bytes) = format.row_bytes(cols);
        let widest = word_bytes.max(constant_bytes).max(1) as u64;
        let band_rows = (limit / widest) as usize;
        if band_rows == 0 {
            return Err(GpuError::Model(format!(
                "one row of {cols} values needs {widest} bytes; this adapter binds at most {limit}"
            )));
        }
        let constants_per_row = constant_bytes / 4;
        let bands = (0..rows.max(1))
            .step_by(band_rows)
            .map(|first_row| {
                let end = (first_row + band_rows).min(rows);
                RowBand {
                    first_row,
                    rows: end - first_row,
                    words: gpu
                        .upload_words(words[first_row * word_bytes..end * word_bytes].to_vec()),
                    constants: (constants_per_row > 0).then(|| {
                        gpu.upload_words(bytes_of_f32(
                            &constants[first_row * constants_per_row..end * constants_per_row],
                        ))
                    }),
                }
            })
            .collect();
        Ok(Self {
            rows,
            cols,
            format,
            bands,
        })
    }
}
