//! CTranslate2 `model.bin` (binary version 6, as written by ctranslate2 3.x/4.x converters):
//! `u32 version`, `u16-len name spec`, `u32 revision`, `u32 n_vars`, then per variable `u16-len name`,
//! `u8 rank`, `u32 dims[rank]`, `u8 dtype`, `u32 nbytes`, data; then `u32 n_aliases` × (name, target).
//! Strings carry a trailing NUL. Little-endian, unaligned.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::error::{WeightsError, WeightsErrorKind};
use crate::floats::{FloatKind, le_floats};
use crate::reader::ByteReader;
use crate::tensor::{Tensor, TensorMap};

/// Element type codes of CTranslate2's `DataType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ct2Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Ct2Dtype {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::Bf16,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::Bf16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }
}

/// One stored variable: its shape, type and where its bytes are in the file.
#[derive(Debug, Clone)]
pub struct Ct2Variable {
    pub shape: Vec<usize>,
    pub dtype: Ct2Dtype,
    range: Range<usize>,
}

/// A parsed `model.bin`, borrowing the file's bytes.
#[derive(Debug)]
pub struct Ct2Model<'a> {
    pub source_name: String,
    pub version: u32,
    pub spec: String,
    pub revision: u32,
    pub variables: BTreeMap<String, Ct2Variable>,
    /// Alias name → target variable name (e.g. a tied output projection).
    pub aliases: BTreeMap<String, String>,
    bytes: &'a [u8],
}

impl<'a> Ct2Model<'a> {
    pub fn parse(bytes: &'a [u8], source_name: &str) -> Result<Self, WeightsError> {
        Self::parse_inner(bytes, source_name).map_err(|kind| WeightsError::new(source_name, kind))
    }

    fn parse_inner(bytes: &'a [u8], source_name: &str) -> Result<Self, WeightsErrorKind> {
        let mut r = ByteReader::new(bytes);
        let version = r.u32("binary version")?;
        if version != 6 {
            // Versions 1-5 predate the layout above; newer ones are unknown. A GGUF or safetensors file read
            // as model.bin lands here too.
            return Err(WeightsErrorKind::UnsupportedVersion {
                format: "CTranslate2 model.bin",
                version: u64::from(version),
            });
        }
        let len = r.u16("spec name length")?;
        let spec = r.string(u64::from(len), "spec name")?;
        let revision = r.u32("spec revision")?;
        let n_vars = r.u32("variable count")?;
        let mut variables = BTreeMap::new();
        for _ in 0..n_vars {
            let len = r.u16("variable name length")?;
            let name = r.string(u64::from(len), "variable name")?;
            let rank = r.u8("rank")?;
            let mut shape = Vec::with_capacity(usize::from(rank));
            for _ in 0..rank {
                shape.push(r.u32("dimension")? as usize);
            }
            let code = r.u8("dtype")?;
            let dtype =
                Ct2Dtype::from_code(code).ok_or_else(|| WeightsErrorKind::UnsupportedDtype {
                    name: name.clone(),
                    dtype: format!("code {code}"),
                })?;
            let nbytes = r.u32("byte count")?;
            let numel = shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| {
                    WeightsErrorKind::Malformed(format!("{name}: shape {shape:?} overflows"))
                })?;
            if numel.checked_mul(dtype.size()) != Some(nbytes as usize) {
                return Err(WeightsErrorKind::Malformed(format!(
                    "{name}: shape {shape:?} of {dtype:?} needs {} bytes, the file says {nbytes}",
                    numel.saturating_mul(dtype.size())
                )));
            }
            let start = r.pos();
            r.take(u64::from(nbytes), &format!("data of {name}"))?;
            variables.insert(
                name,
                Ct2Variable {
                    shape,
                    dtype,
                    range: start..r.pos(),
                },
            );
        }
        let mut aliases = BTreeMap::new();
        if r.remaining() > 0 {
            let n_aliases = r.u32("alias count")?;
            for _ in 0..n_aliases {
                let len = r.u16("alias name length")?;
                let alias = r.string(u64::from(len), "alias name")?;
                let len = r.u16("alias target length")?;
                let target = r.string(u64::from(len), "alias target")?;
                aliases.insert(alias, target);
            }
        }
        Ok(Self {
            source_name: source_name.to_string(),
            version,
            spec,
            revision,
            variables,
            aliases,
            bytes,
        })
    }

    fn variable(&self, name: &str) -> Result<&Ct2Variable, WeightsError> {
        let resolved = self.aliases.get(name).map_or(name, String::as_str);
        self.variables.get(resolved).ok_or_else(|| {
            WeightsError::new(
                &self.source_name,
                WeightsErrorKind::Missing {
                    name: name.to_string(),
                },
            )
        })
    }

    /// A floating-point variable as `f32` (f16/bf16 widened exactly).
    pub fn tensor(&self, name: &str) -> Result<Tensor, WeightsError> {
        let var = self.variable(name)?;
        let raw = &self.bytes[var.range.clone()];
        let data = match var.dtype {
            Ct2Dtype::F32 => le_floats(FloatKind::F32, raw),
            Ct2Dtype::F16 => le_floats(FloatKind::F16, raw),
            Ct2Dtype::Bf16 => le_floats(FloatKind::Bf16, raw),
            other => {
                return Err(WeightsError::new(
                    &self.source_name,
                    WeightsErrorKind::UnsupportedDtype {
                        name: name.to_string(),
                        dtype: format!("{other:?} (expected a float tensor)"),
                    },
                ));
            }
        };
        Ok(Tensor::new(var.shape.clone(), data))
    }

    /// An integer scalar (CTranslate2 stores options such as `encoder/num_heads` this way).
    pub fn scalar_i64(&self, name: &str) -> Result<i64, WeightsError> {
        let var = self.variable(name)?;
        let raw = &self.bytes[var.range.clone()];
        let bad = || {
            WeightsError::new(
                &self.source_name,
                WeightsErrorKind::Malformed(format!("{name} is not an integer scalar")),
            )
        };
        if !var.shape.is_empty() {
            return Err(bad());
        }
        Ok(match (var.dtype, raw) {
            (Ct2Dtype::I8, [a]) => i64::from(*a as i8),
            (Ct2Dtype::I16, [a, b]) => i64::from(i16::from_le_bytes([*a, *b])),
            (Ct2Dtype::I32, [a, b, c, d]) => i64::from(i32::from_le_bytes([*a, *b, *c, *d])),
            _ => return Err(bad()),
        })
    }
}

/// Maps a CTranslate2 `WhisperSpec` to Hugging Face `WhisperForConditionalGeneration` keys, splitting the fused
/// projections: self-attention `linear_0` (3d × d) into q/k/v, decoder cross-attention `linear_1` (2d × d) into
/// k/v. Hugging Face's k projections have no bias; CTranslate2 stores zeros there, and a key bias could not
/// change attention anyway (it adds the same `q·b` to every score of a query), so it is dropped. The tied
/// output projection (`proj_out`) is not stored, as in Hugging Face files.
pub fn whisper_to_hf(model: &Ct2Model<'_>) -> Result<TensorMap, WeightsError> {
    if model.spec != "WhisperSpec" {
        return Err(WeightsError::new(
            &model.source_name,
            WeightsErrorKind::Malformed(format!("spec is {}, not WhisperSpec", model.spec)),
        ));
    }
    let mut out = TensorMap::new(&model.source_name);
    let layer_count = |side: &str| {
        (0..)
            .take_while(|i| {
                model
                    .variables
                    .contains_key(&format!("{side}/layer_{i}/ffn/linear_0/weight"))
            })
            .count()
    };
    let copy = |out: &mut TensorMap, from: &str, to: &str| -> Result<(), WeightsError> {
        out.insert(to, model.tensor(from)?);
        Ok(())
    };
    let copy_linear = |out: &mut TensorMap, from: &str, to: &str| -> Result<(), WeightsError> {
        copy(out, &format!("{from}/weight"), &format!("{to}.weight"))?;
        copy(out, &format!("{from}/bias"), &format!("{to}.bias"))
    };
    let copy_norm = |out: &mut TensorMap, from: &str, to: &str| -> Result<(), WeightsError> {
        copy(out, &format!("{from}/gamma"), &format!("{to}.weight"))?;
        copy(out, &format!("{from}/beta"), &format!("{to}.bias"))
    };
    // Splits a fused (parts·d, d) projection into `names` (rows in order), dropping the k bias.
    let split = |out: &mut TensorMap,
                 from: &str,
                 to: &str,
                 names: &[&str]|
     -> Result<(), WeightsError> {
        let w = model.tensor(&format!("{from}/weight"))?;
        let b = model.tensor(&format!("{from}/bias"))?;
        let parts = names.len();
        if w.shape.len() != 2 || w.shape[0] % parts != 0 || b.shape != [w.shape[0]] {
            return Err(WeightsError::new(
                &model.source_name,
                WeightsErrorKind::Malformed(format!(
                    "{from}: fused projection of shape {:?} / bias {:?} cannot split into {parts}",
                    w.shape, b.shape
                )),
            ));
        }
        let d = w.shape[0] / parts;
        for (i, name) in names.iter().enumerate() {
            out.insert(format!("{to}.{name}.weight"), w.rows(i * d, (i + 1) * d));
            if *name != "k_proj" {
                out.insert(format!("{to}.{name}.bias"), b.rows(i * d, (i + 1) * d));
            }
        }
        Ok(())
    };

    // What encoder and decoder layers share: self-attention and the MLP.
    let map_block = |out: &mut TensorMap, c: &str, h: &str| -> Result<(), WeightsError> {
        split(
            out,
            &format!("{c}/self_attention/linear_0"),
            &format!("{h}.self_attn"),
            &["q_proj", "k_proj", "v_proj"],
        )?;
        copy_linear(
            out,
            &format!("{c}/self_attention/linear_1"),
            &format!("{h}.self_attn.out_proj"),
        )?;
        copy_norm(
            out,
            &format!("{c}/self_attention/layer_norm"),
            &format!("{h}.self_attn_layer_norm"),
        )?;
        copy_norm(
            out,
            &format!("{c}/ffn/layer_norm"),
            &format!("{h}.final_layer_norm"),
        )?;
        copy_linear(out, &format!("{c}/ffn/linear_0"), &format!("{h}.fc1"))?;
        copy_linear(out, &format!("{c}/ffn/linear_1"), &format!("{h}.fc2"))
    };

    copy_linear(&mut out, "encoder/conv1", "model.encoder.conv1")?;
    copy_linear(&mut out, "encoder/conv2", "model.encoder.conv2")?;
    copy(
        &mut out,
        "encoder/position_encodings/encodings",
        "model.encoder.embed_positions.weight",
    )?;
    for i in 0..layer_count("encoder") {
        map_block(
            &mut out,
            &format!("encoder/layer_{i}"),
            &format!("model.encoder.layers.{i}"),
        )?;
    }
    copy_norm(&mut out, "encoder/layer_norm", "model.encoder.layer_norm")?;

    copy(
        &mut out,
        "decoder/embeddings/weight",
        "model.decoder.embed_tokens.weight",
    )?;
    copy(
        &mut out,
        "decoder/position_encodings/encodings",
        "model.decoder.embed_positions.weight",
    )?;
    for i in 0..layer_count("decoder") {
        let (c, h) = (
            format!("decoder/layer_{i}"),
            format!("model.decoder.layers.{i}"),
        );
        map_block(&mut out, &c, &h)?;
        copy_linear(
            &mut out,
            &format!("{c}/attention/linear_0"),
            &format!("{h}.encoder_attn.q_proj"),
        )?;
        split(
            &mut out,
            &format!("{c}/attention/linear_1"),
            &format!("{h}.encoder_attn"),
            &["k_proj", "v_proj"],
        )?;
        copy_linear(
            &mut out,
            &format!("{c}/attention/linear_2"),
            &format!("{h}.encoder_attn.out_proj"),
        )?;
        copy_norm(
            &mut out,
            &format!("{c}/attention/layer_norm"),
            &format!("{h}.encoder_attn_layer_norm"),
        )?;
    }
    copy_norm(&mut out, "decoder/layer_norm", "model.decoder.layer_norm")?;
    Ok(out)
}
