//! Writing GGUF v3 in memory: metadata key/values and tensors already encoded in their ggml type, laid out
//! as [`crate::gguf::GgufFile::parse`] (and llama.cpp) reads them: header, key/values, tensor infos, padding
//! to `general.alignment` (32), then each tensor's data at an offset that is a multiple of 32.
//!
//! What it is for: an LLM read from a Hugging Face folder becomes the same bytes a GGUF file would hold,
//! so every backend loads it through its one GGUF loader and a projector can name it by one sha256.

use crate::error::{WeightsError, WeightsErrorKind};
use crate::gguf::{GgmlType, GgufValue};

const ALIGNMENT: usize = 32;

#[derive(Debug)]
struct PendingTensor {
    name: String,
    /// Row-major (outermost first), as [`crate::gguf::GgufTensorInfo::shape`].
    shape: Vec<usize>,
    ty: GgmlType,
    data: Vec<u8>,
}

/// Collects metadata and tensors, then serialises them with [`Self::into_bytes`].
#[derive(Debug, Default)]
pub struct GgufBuilder {
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<PendingTensor>,
}

impl GgufBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a metadata value.
    pub fn meta(&mut self, key: &str, value: GgufValue) -> &mut Self {
        self.metadata.retain(|(k, _)| k != key);
        self.metadata.push((key.to_string(), value));
        self
    }

    /// Adds a tensor of row-major `shape` whose `data` is already encoded as `ty`; the byte count must be
    /// exactly what `shape` needs in that type.
    pub fn tensor(
        &mut self,
        name: &str,
        shape: &[usize],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> Result<&mut Self, WeightsError> {
        let fail = |message: String| {
            WeightsError::new(
                "GGUF being written",
                WeightsErrorKind::Malformed(format!("{name}: {message}")),
            )
        };
        let (block_elems, block_bytes) = ty
            .block()
            .ok_or_else(|| fail(format!("{} cannot be written", ty.name())))?;
        let numel: usize = shape.iter().product();
        if !numel.is_multiple_of(block_elems)
            || shape
                .last()
                .is_some_and(|&cols| !cols.is_multiple_of(block_elems))
        {
            return Err(fail(format!(
                "rows of {shape:?} are not whole {} blocks of {block_elems}",
                ty.name()
            )));
        }
        if data.len() != numel / block_elems * block_bytes {
            return Err(fail(format!(
                "{} bytes for {shape:?} in {} (expected {})",
                data.len(),
                ty.name(),
                numel / block_elems * block_bytes
            )));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(fail("written twice".into()));
        }
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            shape: shape.to_vec(),
            ty,
            data,
        });
        Ok(self)
    }

    /// The whole file; each tensor's copy is freed once it is written, so the peak is about one model.
    pub fn into_bytes(self) -> Vec<u8> {
        let mut out = self.header();
        let total = out.len()
            + self
                .tensors
                .iter()
                .map(|t| t.data.len().next_multiple_of(ALIGNMENT))
                .sum::<usize>();
        out.reserve_exact(total - out.len());
        for t in self.tensors {
            out.extend_from_slice(&t.data);
            out.resize(out.len().next_multiple_of(ALIGNMENT), 0);
        }
        out
    }

    /// Header, key/values and tensor infos, padded to where the data starts.
    fn header(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        let alignment = ("general.alignment", GgufValue::U32(ALIGNMENT as u32));
        let metadata: Vec<(&str, &GgufValue)> = std::iter::once((alignment.0, &alignment.1))
            .chain(
                self.metadata
                    .iter()
                    .filter(|(k, _)| k != "general.alignment")
                    .map(|(k, v)| (k.as_str(), v)),
            )
            .collect();
        out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (key, value) in metadata {
            write_string(&mut out, key);
            out.extend_from_slice(&value_type(value).to_le_bytes());
            write_value(&mut out, value);
        }
        let mut offset = 0usize;
        for t in &self.tensors {
            write_string(&mut out, &t.name);
            out.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            // GGUF lists dimensions fastest-varying first.
            for &d in t.shape.iter().rev() {
                out.extend_from_slice(&(d as u64).to_le_bytes());
            }
            out.extend_from_slice(&t.ty.code().to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            offset = (offset + t.data.len()).next_multiple_of(ALIGNMENT);
        }
        out.resize(out.len().next_multiple_of(ALIGNMENT), 0);
        out
    }
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The GGUF value type number (`gguf_type` in `gguf.h`).
fn value_type(value: &GgufValue) -> u32 {
    match value {
        GgufValue::U8(_) => 0,
        GgufValue::I8(_) => 1,
        GgufValue::U16(_) => 2,
        GgufValue::I16(_) => 3,
        GgufValue::U32(_) => 4,
        GgufValue::I32(_) => 5,
        GgufValue::F32(_) => 6,
        GgufValue::Bool(_) => 7,
        GgufValue::String(_) => 8,
        GgufValue::Array(_) => 9,
        GgufValue::U64(_) => 10,
        GgufValue::I64(_) => 11,
        GgufValue::F64(_) => 12,
    }
}

fn write_value(out: &mut Vec<u8>, value: &GgufValue) {
    match value {
        GgufValue::U8(v) => out.push(*v),
        GgufValue::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::Bool(v) => out.push(u8::from(*v)),
        GgufValue::String(s) => write_string(out, s),
        GgufValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::Array(items) => {
            // An empty array is written as strings; readers see zero items either way.
            let elem = items.first().map_or(8, value_type);
            out.extend_from_slice(&elem.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                write_value(out, item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;

    #[test]
    fn written_files_parse_back_with_every_value_and_tensor() {
        let mut b = GgufBuilder::new();
        b.meta("general.architecture", GgufValue::String("llama".into()))
            .meta("a.u32", GgufValue::U32(7))
            .meta("a.f32", GgufValue::F32(1.5))
            .meta("a.bool", GgufValue::Bool(true))
            .meta("a.i64", GgufValue::I64(-3))
            .meta(
                "a.strings",
                GgufValue::Array(vec![
                    GgufValue::String("x".into()),
                    GgufValue::String("Ġy".into()),
                ]),
            )
            .meta(
                "a.ints",
                GgufValue::Array(vec![GgufValue::I32(1), GgufValue::I32(-1)]),
            );
        let values: Vec<f32> = (0..6).map(|i| i as f32 * 0.5).collect();
        let f32_bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        b.tensor("m", &[2, 3], GgmlType::F32, f32_bytes).unwrap();
        b.tensor("q", &[1, 32], GgmlType::Q8_0, vec![0; 34])
            .unwrap();
        let bytes = b.into_bytes();
        let g = GgufFile::parse(&bytes, "written").unwrap();
        assert_eq!(g.meta_str("general.architecture"), Some("llama"));
        assert_eq!(g.meta_u64("a.u32"), Some(7));
        assert_eq!(g.meta_f64("a.f32"), Some(1.5));
        assert_eq!(g.metadata["a.bool"], GgufValue::Bool(true));
        assert_eq!(g.metadata["a.i64"], GgufValue::I64(-3));
        assert_eq!(g.metadata["a.ints"].as_array().unwrap().len(), 2);
        assert_eq!(g.meta_u64("general.alignment"), Some(32));
        let m = g.tensor("m").unwrap();
        assert_eq!((m.shape.clone(), m.data), (vec![2, 3], values));
        assert_eq!(g.raw("q").unwrap().1.len(), 34);
    }

    #[test]
    fn wrong_sizes_and_partial_blocks_are_refused_by_name() {
        let mut b = GgufBuilder::new();
        let err = b
            .tensor("w", &[2, 3], GgmlType::F32, vec![0; 20])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("w:") && err.contains("expected 24"), "{err}");
        let err = b
            .tensor("w", &[2, 48], GgmlType::Q8_0, vec![0; 102])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("whole Q8_0 blocks"), "{err}");
    }
}
