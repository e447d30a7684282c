//! LLMs from Hugging Face folders (`config.json`, `model.safetensors` or sharded
//! `model.safetensors.index.json`, `tokenizer.json`, `tokenizer_config.json`), for the SmolLM2 (`llama`) and
//! Qwen2.5 (`qwen2`) layouts, in F32, F16 or BF16.
//!
//! The folder is converted in memory to the GGUF that llama.cpp's `convert_hf_to_gguf.py` would write:
//! tensors renamed to GGUF names, Llama's Q/K rows permuted so RoPE rotates adjacent pairs (its `permute`),
//! norms and biases in F32, matrices as stored or quantised to a block format when asked. Every backend
//! then loads it through its one GGUF loader, and a projector names it by the sha256 of those bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tinyalign_weights::gguf::{GgmlType, GgufValue};
use tinyalign_weights::gguf_write::GgufBuilder;
use tinyalign_weights::quantize::{WRITABLE, quantize, writable_by_name};
use tinyalign_weights::st::{RawTensor, read_safetensors_raw};

use crate::hf_tokenizer::{self, read_json};
use crate::{Architecture, LlamaConfig, LlmError, LlmWeights};

/// The bytes of the LLM at `path`: a GGUF file as it is, or a Hugging Face folder converted to GGUF.
/// `DIR@q8_0` (any of `f32 f16 bf16 q8_0 q5_0 q4_1 q4_0`) quantises the folder's matrices at load.
pub fn read_llm_bytes(path: &Path) -> Result<Vec<u8>, LlmError> {
    match hf_choice(path)? {
        Some((dir, quantize)) => gguf_from_hf_folder(&dir, quantize),
        None => Ok(tinyalign_weights::read_file(path)?),
    }
}

/// `Some((folder, quantisation))` when `path` names a Hugging Face folder, optionally with an `@FORMAT`
/// suffix; `None` for anything else (a GGUF file).
pub fn hf_choice(path: &Path) -> Result<Option<(PathBuf, Option<GgmlType>)>, LlmError> {
    if path.is_dir() {
        return Ok(Some((path.to_path_buf(), None)));
    }
    let text = path.to_string_lossy();
    let Some((dir, format)) = text.rsplit_once('@') else {
        return Ok(None);
    };
    if !Path::new(dir).is_dir() {
        return Ok(None);
    }
    let ty = writable_by_name(format).ok_or_else(|| {
        LlmError::Unsupported(format!(
            "{}: quantisation `{format}` (writable: {})",
            path.display(),
            WRITABLE.map(|t| t.name().to_lowercase()).join(", ")
        ))
    })?;
    Ok(Some((PathBuf::from(dir), Some(ty))))
}

/// GGUF names → Hugging Face names (`blk.3.attn_q.weight` → `model.layers.3.self_attn.q_proj.weight`).
fn hf_name(gguf: &str) -> String {
    match gguf {
        "token_embd.weight" => return "model.embed_tokens.weight".into(),
        "output.weight" => return "lm_head.weight".into(),
        "output_norm.weight" => return "model.norm.weight".into(),
        _ => {}
    }
    let mut parts = gguf.splitn(3, '.');
    let (Some("blk"), Some(layer), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return gguf.into();
    };
    let (part, kind) = rest.split_once('.').unwrap_or((rest, "weight"));
    let hf = match part {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_norm" => "post_attention_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        other => other,
    };
    format!("model.layers.{layer}.{hf}.{kind}")
}

/// llama.cpp's `permute` for Llama Q/K (`convert_hf_to_gguf.py`): within each head of `hd` rows, row
/// `h·hd + half·hd/2 + i` moves to `h·hd + 2i + half`, so RoPE's rotate-half pairs become adjacent pairs.
fn permute_rows(data: &[u8], rows: usize, heads: usize, row_bytes: usize) -> Vec<u8> {
    let hd = rows / heads;
    let mut out = vec![0u8; data.len()];
    for h in 0..heads {
        for half in 0..2 {
            for i in 0..hd / 2 {
                let from = h * hd + half * hd / 2 + i;
                let to = h * hd + 2 * i + half;
                out[to * row_bytes..(to + 1) * row_bytes]
                    .copy_from_slice(&data[from * row_bytes..(from + 1) * row_bytes]);
            }
        }
    }
    out
}

fn usize_field(config: &Value, key: &str, source: &Path) -> Result<usize, LlmError> {
    config[key]
        .as_u64()
        .map(|v| v as usize)
        .ok_or_else(|| LlmError::Model(format!("{}: `{key}` is missing", source.display())))
}

/// The model's hyper-parameters from `config.json`, refusing what the implemented blocks do not compute.
fn llama_config(config: &Value, source: &Path) -> Result<LlamaConfig, LlmError> {
    let unsupported = |what: String| LlmError::Unsupported(format!("{}: {what}", source.display()));
    let architecture = match config["model_type"].as_str() {
        Some("llama") => Architecture::Llama,
        Some("qwen2") => Architecture::Qwen2,
        other => {
            return Err(unsupported(format!(
                "model_type `{}` (implemented: `llama`, e.g. SmolLM2, and `qwen2`, e.g. Qwen2.5)",
                other.unwrap_or("(missing)")
            )));
        }
    };
    if let Some(act) = config["hidden_act"].as_str().filter(|a| *a != "silu") {
        return Err(unsupported(format!("hidden_act `{act}` (only silu)")));
    }
    if !config["rope_scaling"].is_null() {
        return Err(unsupported(format!(
            "rope_scaling {} (only plain RoPE)",
            config["rope_scaling"]
        )));
    }
    if architecture == Architecture::Llama
        && (config["attention_bias"] == true || config["mlp_bias"] == true)
    {
        return Err(unsupported("Llama with attention or MLP biases".into()));
    }
    if config["use_sliding_window"] == true {
        return Err(unsupported("sliding-window attention".into()));
    }
    let field = |key| usize_field(config, key, source);
    let (hidden_size, heads) = (field("hidden_size")?, field("num_attention_heads")?);
    Ok(LlamaConfig {
        architecture,
        vocab_size: field("vocab_size")?,
        hidden_size,
        intermediate_size: field("intermediate_size")?,
        num_hidden_layers: field("num_hidden_layers")?,
        num_attention_heads: heads,
        num_key_value_heads: field("num_key_value_heads").unwrap_or(heads),
        head_dim: field("head_dim").unwrap_or(hidden_size / heads.max(1)),
        rms_norm_eps: config["rms_norm_eps"].as_f64().unwrap_or(1e-6) as f32,
        rope_theta: config["rope_theta"].as_f64().unwrap_or(10_000.0) as f32,
        max_position_embeddings: field("max_position_embeddings")?,
        tie_word_embeddings: config["tie_word_embeddings"].as_bool().unwrap_or(false),
    })
}

/// The safetensors files of the folder: `model.safetensors`, or the shards its index lists.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, LlmError> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.exists() {
        return Err(LlmError::Io(format!(
            "{}: neither model.safetensors nor model.safetensors.index.json",
            dir.display()
        )));
    }
    let map = read_json(&index)?;
    let mut files: Vec<String> = map["weight_map"]
        .as_object()
        .ok_or_else(|| LlmError::Model(format!("{}: no `weight_map`", index.display())))?
        .values()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    files.sort();
    files.dedup();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// No `general.name`: the bytes, and so a projector's record of them, depend on the folder's contents
/// only, not on where it lies.
fn metadata(builder: &mut GgufBuilder, config: &LlamaConfig) {
    let arch = config.architecture.gguf_name();
    let u32_of = |v: usize| GgufValue::U32(v as u32);
    builder.meta("general.architecture", GgufValue::String(arch.into()));
    for (key, value) in [
        ("context_length", u32_of(config.max_position_embeddings)),
        ("embedding_length", u32_of(config.hidden_size)),
        ("block_count", u32_of(config.num_hidden_layers)),
        ("feed_forward_length", u32_of(config.intermediate_size)),
        ("attention.head_count", u32_of(config.num_attention_heads)),
        (
            "attention.head_count_kv",
            u32_of(config.num_key_value_heads),
        ),
        ("rope.freq_base", GgufValue::F32(config.rope_theta)),
        (
            "attention.layer_norm_rms_epsilon",
            GgufValue::F32(config.rms_norm_eps),
        ),
        ("rope.dimension_count", u32_of(config.head_dim)),
        ("vocab_size", u32_of(config.vocab_size)),
    ] {
        builder.meta(&format!("{arch}.{key}"), value);
    }
}

fn tokenizer_metadata(builder: &mut GgufBuilder, meta: hf_tokenizer::TokenizerMeta) {
    let strings = |v: Vec<String>| GgufValue::Array(v.into_iter().map(GgufValue::String).collect());
    builder
        .meta("tokenizer.ggml.model", GgufValue::String("gpt2".into()))
        .meta("tokenizer.ggml.pre", GgufValue::String(meta.pre.into()))
        .meta("tokenizer.ggml.tokens", strings(meta.tokens))
        .meta(
            "tokenizer.ggml.token_type",
            GgufValue::Array(meta.types.into_iter().map(GgufValue::I32).collect()),
        )
        .meta("tokenizer.ggml.merges", strings(meta.merges));
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", meta.bos),
        ("tokenizer.ggml.eos_token_id", meta.eos),
    ] {
        if let Some(id) = id {
            builder.meta(key, GgufValue::U32(id));
        }
    }
    if let Some(add_bos) = meta.add_bos {
        builder.meta("tokenizer.ggml.add_bos_token", GgufValue::Bool(add_bos));
    }
    if let Some(template) = meta.chat_template {
        builder.meta("tokenizer.chat_template", GgufValue::String(template));
    }
}

/// Converts the folder; `quantize` re-encodes every matrix whose rows are whole blocks of 32 (norms and
/// biases stay F32, as llama.cpp keeps them).
pub fn gguf_from_hf_folder(dir: &Path, quantize_to: Option<GgmlType>) -> Result<Vec<u8>, LlmError> {
    let config_path = dir.join("config.json");
    let config_json = read_json(&config_path)?;
    let config = llama_config(&config_json, &config_path)?;
    // Heads that split the width evenly before any row is permuted by them.
    config.validate(&config_path.display().to_string())?;
    let files = weight_files(dir)?;
    let file_bytes = files
        .iter()
        .map(|f| tinyalign_weights::read_file(f))
        .collect::<Result<Vec<_>, _>>()?;
    let mut tensors: HashMap<String, (RawTensor<'_>, &Path)> = HashMap::new();
    for (bytes, path) in file_bytes.iter().zip(&files) {
        for t in read_safetensors_raw(bytes, &path.display().to_string())? {
            tensors.insert(t.name.clone(), (t, path));
        }
    }
    // Every block has tensors of its own: a layer count beyond the files' tensor count is refused before
    // the weight description is sized by it (a smaller shortfall names the first missing tensor below).
    if config.num_hidden_layers > tensors.len() {
        return Err(LlmError::Model(format!(
            "{}: num_hidden_layers {} needs more than the {} tensors the weight files hold",
            config_path.display(),
            config.num_hidden_layers,
            tensors.len()
        )));
    }
    // The embedding table vouches for `vocab_size` before the tokenizer allocates a slot per id.
    let embed = hf_name("token_embd.weight");
    if let Some((t, path)) = tensors.get(&embed)
        && t.shape != [config.vocab_size, config.hidden_size]
    {
        return Err(LlmError::Model(format!(
            "{}: `{embed}` is {:?}, config.json implies [{}, {}]",
            path.display(),
            t.shape,
            config.vocab_size,
            config.hidden_size
        )));
    }
    let tokenizer = hf_tokenizer::read(dir, config.vocab_size, &config_json)?;
    let mut builder = GgufBuilder::new();
    metadata(&mut builder, &config);
    tokenizer_metadata(&mut builder, tokenizer);

    let permute_heads = |gguf: &str| match (config.architecture, gguf) {
        (Architecture::Llama, n) if n.ends_with("attn_q.weight") => {
            Some(config.num_attention_heads)
        }
        (Architecture::Llama, n) if n.ends_with("attn_k.weight") => {
            Some(config.num_key_value_heads)
        }
        _ => None,
    };
    let mut add = |gguf: &str, shape: &[usize]| -> Result<(), LlmError> {
        let hf = hf_name(gguf);
        let (t, path) = tensors.get(&hf).ok_or_else(|| {
            LlmError::Model(format!(
                "{}: tensor `{hf}` is missing ({} files read: {})",
                dir.display(),
                files.len(),
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let numel: usize = shape.iter().product();
        if t.shape.iter().product::<usize>() != numel || t.shape.len() != shape.len() {
            return Err(LlmError::Model(format!(
                "{}: `{hf}` is {:?}, config.json implies {shape:?}",
                path.display(),
                t.shape
            )));
        }
        let elem_bytes = t.data.len() / numel.max(1);
        let stored = match permute_heads(gguf) {
            Some(heads) => permute_rows(t.data, shape[0], heads, shape[1] * elem_bytes),
            None => t.data.to_vec(),
        };
        let target = match (shape.len(), quantize_to) {
            (1, _) => GgmlType::F32,
            (_, Some(ty)) if shape[1].is_multiple_of(32) => ty,
            _ => t.ty,
        };
        let data = if target == t.ty {
            stored
        } else {
            let values = tinyalign_weights::gguf::dequantize(t.ty, &stored)
                .expect("F32/F16/BF16 always decode");
            quantize(target, &values).expect("a writable type on whole blocks")
        };
        builder.tensor(gguf, shape, target, data)?;
        Ok(())
    };
    // The one weight description lists what the architecture needs, with shapes, in file order.
    let wanted = std::cell::RefCell::new(Vec::new());
    LlmWeights::<(), ()>::load_with(
        &config,
        |gguf, rows, cols| {
            wanted
                .borrow_mut()
                .push((gguf.to_string(), vec![rows, cols]));
            Ok::<_, LlmError>(())
        },
        |gguf, len| {
            wanted.borrow_mut().push((gguf.to_string(), vec![len]));
            Ok(())
        },
    )?;
    for (gguf, shape) in wanted.into_inner() {
        add(&gguf, &shape)?;
    }
    // The folder's bytes go before the file is assembled: the peak is two copies of the weights, not three.
    drop(tensors);
    drop(file_bytes);
    Ok(builder.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_names_map_to_hugging_face_names() {
        for (gguf, hf) in [
            ("token_embd.weight", "model.embed_tokens.weight"),
            ("output.weight", "lm_head.weight"),
            ("output_norm.weight", "model.norm.weight"),
            (
                "blk.0.attn_norm.weight",
                "model.layers.0.input_layernorm.weight",
            ),
            (
                "blk.12.attn_q.bias",
                "model.layers.12.self_attn.q_proj.bias",
            ),
            (
                "blk.3.attn_output.weight",
                "model.layers.3.self_attn.o_proj.weight",
            ),
            (
                "blk.3.ffn_norm.weight",
                "model.layers.3.post_attention_layernorm.weight",
            ),
            (
                "blk.3.ffn_down.weight",
                "model.layers.3.mlp.down_proj.weight",
            ),
        ] {
            assert_eq!(hf_name(gguf), hf);
        }
    }

    /// The permutation is llama.cpp's `w.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2)`: written here as
    /// that reshape's index arithmetic on one-byte rows.
    #[test]
    fn permutation_interleaves_the_two_halves_of_each_head() {
        let rows: Vec<u8> = (0..8).collect();
        // 2 heads of 4 rows: head 0 = [0 1 | 2 3] → [0 2 1 3].
        assert_eq!(permute_rows(&rows, 8, 2, 1), [0, 2, 1, 3, 4, 6, 5, 7]);
    }

    #[test]
    fn quantisation_suffixes_are_checked() {
        let dir = std::env::temp_dir();
        let with = |s: &str| PathBuf::from(format!("{}{s}", dir.display()));
        assert_eq!(hf_choice(&dir).unwrap(), Some((dir.clone(), None)));
        assert_eq!(
            hf_choice(&with("@q8_0")).unwrap(),
            Some((dir.clone(), Some(GgmlType::Q8_0)))
        );
        let err = hf_choice(&with("@q3_k")).unwrap_err().to_string();
        assert!(err.contains("q3_k") && err.contains("q4_1"), "{err}");
        assert_eq!(hf_choice(Path::new("model.gguf")).unwrap(), None);
    }
}
