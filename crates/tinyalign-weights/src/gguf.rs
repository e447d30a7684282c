//! GGUF v2/v3 (llama.cpp's format): metadata key/values, tensor infos, and tensor data that can be
//! dequantised to `f32` (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q6_K) or handed out as raw quantised blocks.
//!
//! Layout: `"GGUF"`, `u32 version`, `u64 n_tensors`, `u64 n_kv`, key/values, tensor infos (`name`,
//! `u32 n_dims`, `u64 ne[n_dims]`, `u32 type`, `u64 offset`), padding to `general.alignment` (default 32), data.
//! `ne[0]` is the fastest-varying dimension, so the row-major shape is `ne` reversed.

use std::collections::BTreeMap;

use crate::blocks;
use crate::error::{WeightsError, WeightsErrorKind};
use crate::floats::{FloatKind, le_floats};
use crate::reader::ByteReader;
use crate::tensor::Tensor;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
}

impl GgufValue {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(u64::from(v)),
            Self::U16(v) => Some(u64::from(v)),
            Self::U32(v) => Some(u64::from(v)),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(f64::from(v)),
            Self::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            Self::Array(v) => Some(v),
            _ => None,
        }
    }
}

/// ggml tensor types this crate knows by name; only some can be dequantised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Bf16,
    Q4_0,
    Q4_1,
    Q8_0,
    Q5_0,
    Q4K,
    Q6K,
    /// Known to ggml but not readable here (other K-quants, Q5_1, IQ*...): refused by name on use.
    Other(u32),
}

impl GgmlType {
    fn from_code(code: u32) -> Self {
        match code {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            14 => Self::Q6K,
            30 => Self::Bf16,
            other => Self::Other(other),
        }
    }

    /// The type's number in GGUF tensor infos (`ggml_type` in `ggml.h`).
    pub fn code(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q8_0 => 8,
            Self::Q4K => 12,
            Self::Q6K => 14,
            Self::Bf16 => 30,
            Self::Other(code) => code,
        }
    }

    /// (elements per block, bytes per block).
    pub fn block(self) -> Option<(usize, usize)> {
        Some(match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::Bf16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q8_0 => (32, 34),
            Self::Q5_0 => (32, blocks::Q5_0_BYTES),
            Self::Q4K => (blocks::SUPER_BLOCK, blocks::Q4_K_BYTES),
            Self::Q6K => (blocks::SUPER_BLOCK, blocks::Q6_K_BYTES),
            Self::Other(_) => return None,
        })
    }

    pub fn name(self) -> String {
        match self {
            Self::Other(code) => match code {
                7 => "Q5_1".into(),
                9 => "Q8_1".into(),
                10 => "Q2_K".into(),
                11 => "Q3_K".into(),
                13 => "Q5_K".into(),
                15 => "Q8_K".into(),
                other => format!("ggml type {other}"),
            },
            Self::Q4K => "Q4_K".into(),
            Self::Q6K => "Q6_K".into(),
            known => format!("{known:?}").to_uppercase(),
        }
    }
}

/// Where a tensor lives in the file.
#[derive(Debug, Clone)]
pub struct GgufTensorInfo {
    pub name: String,
    /// Row-major shape (ggml's `ne` reversed).
    pub shape: Vec<usize>,
    pub ggml_type: GgmlType,
    /// Absolute byte range in the file (known only for readable types).
    pub byte_range: Option<std::ops::Range<usize>>,
}

/// A parsed GGUF file, borrowing its bytes.
#[derive(Debug)]
pub struct GgufFile<'a> {
    pub source_name: String,
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: Vec<GgufTensorInfo>,
    bytes: &'a [u8],
}

/// Nesting limit for metadata arrays of arrays (real files use one level).
const MAX_ARRAY_DEPTH: usize = 4;

impl<'a> GgufFile<'a> {
    pub fn parse(bytes: &'a [u8], source_name: &str) -> Result<Self, WeightsError> {
        Self::parse_inner(bytes, source_name).map_err(|kind| WeightsError::new(source_name, kind))
    }

    fn parse_inner(bytes: &'a [u8], source_name: &str) -> Result<Self, WeightsErrorKind> {
        let mut r = ByteReader::new(bytes);
        if r.take(4, "magic").ok() != Some(b"GGUF".as_slice()) {
            return Err(WeightsErrorKind::BadMagic { format: "GGUF" });
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(WeightsErrorKind::UnsupportedVersion {
                format: "GGUF",
                version: u64::from(version),
            });
        }
        let n_tensors = r.u64("tensor count")?;
        let n_kv = r.u64("metadata count")?;
        // Each key/value needs at least 12 bytes and each tensor info at least 24: reject counts the file
        // cannot hold before looping over them.
        if n_kv.saturating_mul(12) > r.remaining() as u64
            || n_tensors.saturating_mul(24) > r.remaining() as u64
        {
            return Err(WeightsErrorKind::Malformed(format!(
                "{n_kv} metadata entries and {n_tensors} tensors cannot fit in {} bytes",
                bytes.len()
            )));
        }
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = read_string(&mut r, "metadata key")?;
            let ty = r.u32("metadata type")?;
            let value = read_value(&mut r, ty, 0)?;
            metadata.insert(key, value);
        }
        let mut infos = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = read_string(&mut r, "tensor name")?;
            let n_dims = r.u32("tensor rank")?;
            if n_dims > 8 {
                return Err(WeightsErrorKind::Malformed(format!(
                    "{name}: rank {n_dims}"
                )));
            }
            let mut ne = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                let d = r.u64("tensor dimension")?;
                ne.push(
                    usize::try_from(d)
                        .map_err(|_| WeightsErrorKind::Malformed(format!("{name}: dim {d}")))?,
                );
            }
            let ggml_type = GgmlType::from_code(r.u32("tensor type")?);
            let offset = r.u64("tensor offset")?;
            ne.reverse();
            infos.push((name, ne, ggml_type, offset));
        }
        let alignment = metadata
            .get("general.alignment")
            .and_then(GgufValue::as_u64)
            .unwrap_or(32);
        if alignment == 0 || alignment > 1 << 20 {
            return Err(WeightsErrorKind::Malformed(format!(
                "alignment {alignment}"
            )));
        }
        let data_start = (r.pos() as u64).next_multiple_of(alignment);
        let mut tensors = Vec::with_capacity(infos.len());
        for (name, shape, ggml_type, offset) in infos {
            let byte_range = match ggml_type.block() {
                Some((block_elems, block_bytes)) => {
                    let numel = shape
                        .iter()
                        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                        .ok_or_else(|| {
                            WeightsErrorKind::Malformed(format!(
                                "{name}: shape {shape:?} overflows"
                            ))
                        })?;
                    if numel % block_elems != 0 {
                        return Err(WeightsErrorKind::Malformed(format!(
                            "{name}: {numel} elements are not whole {} blocks",
                            ggml_type.name()
                        )));
                    }
                    let len = (numel / block_elems) as u64 * block_bytes as u64;
                    let start = data_start.checked_add(offset);
                    let end = start.and_then(|s| s.checked_add(len));
                    match (start, end) {
                        (Some(s), Some(e)) if e <= bytes.len() as u64 => {
                            Some(s as usize..e as usize)
                        }
                        _ => {
                            return Err(WeightsErrorKind::Truncated {
                                what: format!("data of {name}"),
                                offset: data_start.saturating_add(offset) as usize,
                                needed: len,
                                available: bytes
                                    .len()
                                    .saturating_sub(data_start.saturating_add(offset) as usize),
                            });
                        }
                    }
                }
                None => None,
            };
            tensors.push(GgufTensorInfo {
                name,
                shape,
                ggml_type,
                byte_range,
            });
        }
        Ok(Self {
            source_name: source_name.to_string(),
            version,
            metadata,
            tensors,
            bytes,
        })
    }

    pub fn info(&self, name: &str) -> Result<&GgufTensorInfo, WeightsError> {
        self.tensors.iter().find(|t| t.name == name).ok_or_else(|| {
            WeightsError::new(
                &self.source_name,
                WeightsErrorKind::Missing {
                    name: name.to_string(),
                },
            )
        })
    }

    /// The raw stored bytes of a tensor (quantised blocks stay as they are).
    pub fn raw(&self, name: &str) -> Result<(&GgufTensorInfo, &'a [u8]), WeightsError> {
        let info = self.info(name)?;
        let range = info
            .byte_range
            .clone()
            .ok_or_else(|| self.unsupported(info))?;
        Ok((info, &self.bytes[range]))
    }

    /// A tensor dequantised to `f32`.
    pub fn tensor(&self, name: &str) -> Result<Tensor, WeightsError> {
        let (info, raw) = self.raw(name)?;
        let data = dequantize(info.ggml_type, raw).ok_or_else(|| self.unsupported(info))?;
        Ok(Tensor::new(info.shape.clone(), data))
    }

    fn unsupported(&self, info: &GgufTensorInfo) -> WeightsError {
        WeightsError::new(
            &self.source_name,
            WeightsErrorKind::UnsupportedDtype {
                name: info.name.clone(),
                dtype: format!(
                    "{} (readable: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q6_K)",
                    info.ggml_type.name()
                ),
            },
        )
    }

    pub fn meta_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(GgufValue::as_str)
    }

    pub fn meta_u64(&self, key: &str) -> Option<u64> {
        self.metadata.get(key).and_then(GgufValue::as_u64)
    }

    pub fn meta_f64(&self, key: &str) -> Option<f64> {
        self.metadata.get(key).and_then(GgufValue::as_f64)
    }
}

fn read_string(r: &mut ByteReader<'_>, what: &str) -> Result<String, WeightsErrorKind> {
    let len = r.u64(what)?;
    r.string(len, what)
}

fn read_value(
    r: &mut ByteReader<'_>,
    ty: u32,
    depth: usize,
) -> Result<GgufValue, WeightsErrorKind> {
    Ok(match ty {
        0 => GgufValue::U8(r.u8("u8")?),
        1 => GgufValue::I8(r.u8("i8")? as i8),
        2 => GgufValue::U16(r.u16("u16")?),
        3 => GgufValue::I16(r.u16("i16")? as i16),
        4 => GgufValue::U32(r.u32("u32")?),
        5 => GgufValue::I32(r.u32("i32")? as i32),
        6 => GgufValue::F32(f32::from_bits(r.u32("f32")?)),
        7 => GgufValue::Bool(r.u8("bool")? != 0),
        8 => GgufValue::String(read_string(r, "string value")?),
        9 => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(WeightsErrorKind::Malformed(
                    "metadata arrays nested too deeply".into(),
                ));
            }
            let elem_ty = r.u32("array type")?;
            let n = r.u64("array length")?;
            // Every element takes at least one byte: a length beyond the remaining bytes is a lie.
            if n > r.remaining() as u64 {
                return Err(WeightsErrorKind::Truncated {
                    what: "metadata array".into(),
                    offset: r.pos(),
                    needed: n,
                    available: r.remaining(),
                });
            }
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                items.push(read_value(r, elem_ty, depth + 1)?);
            }
            GgufValue::Array(items)
        }
        10 => GgufValue::U64(r.u64("u64")?),
        11 => GgufValue::I64(r.u64("i64")? as i64),
        12 => GgufValue::F64(f64::from_bits(r.u64("f64")?)),
        other => {
            return Err(WeightsErrorKind::Malformed(format!(
                "metadata value type {other}"
            )));
        }
    })
}

/// Dequantises whole blocks of `ty` (`None` for unreadable types). Block layouts from ggml's
/// `ggml-common.h`: Q8_0 = f16 d + 32 × i8 (x = d·q); Q4_0 = f16 d + 16 bytes (x = d·(q − 8)); Q4_1 = f16 d +
/// f16 m + 16 bytes (x = d·q + m). In the 4-bit types the low nibbles hold elements 0..16, the high 16..32.
pub fn dequantize(ty: GgmlType, raw: &[u8]) -> Option<Vec<f32>> {
    let f16 = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32();
    Some(match ty {
        GgmlType::F32 => le_floats(FloatKind::F32, raw),
        GgmlType::F16 => le_floats(FloatKind::F16, raw),
        GgmlType::Bf16 => le_floats(FloatKind::Bf16, raw),
        GgmlType::Q8_0 => {
            let mut out = Vec::with_capacity(raw.len() / 34 * 32);
            for block in raw.chunks_exact(34) {
                let d = f16(&block[0..2]);
                out.extend(block[2..].iter().map(|&q| d * f32::from(q as i8)));
            }
            out
        }
        GgmlType::Q4_0 => {
            let mut out = Vec::with_capacity(raw.len() / 18 * 32);
            for block in raw.chunks_exact(18) {
                let d = f16(&block[0..2]);
                let qs = &block[2..18];
                out.extend(qs.iter().map(|&q| d * (f32::from(q & 0x0f) - 8.0)));
                out.extend(qs.iter().map(|&q| d * (f32::from(q >> 4) - 8.0)));
            }
            out
        }
        GgmlType::Q4_1 => {
            let mut out = Vec::with_capacity(raw.len() / 20 * 32);
            for block in raw.chunks_exact(20) {
                let (d, m) = (f16(&block[0..2]), f16(&block[2..4]));
                let qs = &block[4..20];
                out.extend(qs.iter().map(|&q| d * f32::from(q & 0x0f) + m));
                out.extend(qs.iter().map(|&q| d * f32::from(q >> 4) + m));
            }
            out
        }
        GgmlType::Q5_0 => blocks::dequantize_q5_0(raw),
        GgmlType::Q4K => blocks::dequantize_q4_k(raw),
        GgmlType::Q6K => blocks::dequantize_q6_k(raw),
        GgmlType::Other(_) => return None,
    })
}
