//! safetensors reading (F32/F16/BF16 widened to f32) and writing (as F32, F16 or BF16).

use safetensors::{Dtype, SafeTensors};

use crate::error::{WeightsError, WeightsErrorKind};
use crate::floats::{FloatKind, le_floats};
use crate::tensor::{Tensor, TensorMap};

/// Parses a safetensors file held in memory into f32 tensors.
pub fn read_safetensors(bytes: &[u8], source_name: &str) -> Result<TensorMap, WeightsError> {
    let fail = |kind| WeightsError::new(source_name, kind);
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| fail(WeightsErrorKind::Safetensors(e.to_string())))?;
    let mut out = TensorMap::new(source_name);
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => le_floats(FloatKind::F32, raw),
            Dtype::F16 => le_floats(FloatKind::F16, raw),
            Dtype::BF16 => le_floats(FloatKind::Bf16, raw),
            other => {
                return Err(fail(WeightsErrorKind::UnsupportedDtype {
                    name,
                    dtype: format!("{other:?}"),
                }));
            }
        };
        out.insert(name, Tensor::new(view.shape().to_vec(), data));
    }
    Ok(out)
}

/// One tensor of a safetensors file as stored: its float dtype as the ggml type of the same encoding, and
/// its little-endian bytes (borrowed from the file).
#[derive(Debug)]
pub struct RawTensor<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub ty: crate::gguf::GgmlType,
    pub data: &'a [u8],
}

/// The tensors of a safetensors file without widening them (F32, F16 and BF16; another dtype is an error
/// naming the tensor), in the file's order.
pub fn read_safetensors_raw<'a>(
    bytes: &'a [u8],
    source_name: &str,
) -> Result<Vec<RawTensor<'a>>, WeightsError> {
    use crate::gguf::GgmlType;
    let fail = |kind| WeightsError::new(source_name, kind);
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| fail(WeightsErrorKind::Safetensors(e.to_string())))?;
    let mut out = Vec::new();
    for (name, view) in st.iter() {
        let ty = match view.dtype() {
            Dtype::F32 => GgmlType::F32,
            Dtype::F16 => GgmlType::F16,
            Dtype::BF16 => GgmlType::Bf16,
            other => {
                return Err(fail(WeightsErrorKind::UnsupportedDtype {
                    name: name.to_string(),
                    dtype: format!("{other:?}"),
                }));
            }
        };
        out.push(RawTensor {
            name: name.to_string(),
            shape: view.shape().to_vec(),
            ty,
            data: view.data(),
        });
    }
    Ok(out)
}

/// Storage precision when writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreAs {
    F32,
    /// Half precision: lossless for weights that came from an f16 file (CTranslate2's Whisper).
    F16,
    /// bfloat16, the dtype most Hugging Face LLM checkpoints are published in.
    Bf16,
}

/// Serialises tensors (sorted by name) with optional `__metadata__` string pairs.
pub fn write_safetensors(
    tensors: &TensorMap,
    store_as: StoreAs,
    metadata: &[(&str, &str)],
) -> Result<Vec<u8>, WeightsError> {
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let bytes = match store_as {
                StoreAs::F32 => t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                StoreAs::F16 => t
                    .data
                    .iter()
                    .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                    .collect(),
                StoreAs::Bf16 => t
                    .data
                    .iter()
                    .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                    .collect(),
            };
            (name.clone(), t.shape.clone(), bytes)
        })
        .collect();
    let dtype = match store_as {
        StoreAs::F32 => Dtype::F32,
        StoreAs::F16 => Dtype::F16,
        StoreAs::Bf16 => Dtype::BF16,
    };
    let views = encoded
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| {
                    WeightsError::new(
                        &tensors.source_name,
                        WeightsErrorKind::Safetensors(e.to_string()),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let meta = (!metadata.is_empty()).then(|| {
        metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<std::collections::HashMap<_, _>>()
    });
    safetensors::serialize(views, meta).map_err(|e| {
        WeightsError::new(
            &tensors.source_name,
            WeightsErrorKind::Safetensors(e.to_string()),
        )
    })
}
