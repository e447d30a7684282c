//! `tinyalign convert-whisper MODEL.bin --out DIR`: a CTranslate2 Whisper into the canonical layout every
//! tinyalign tool reads, `DIR/model.safetensors` (Hugging Face keys, f16 as stored upstream) and
//! `DIR/config.json` (Hugging Face `WhisperConfig` fields, plus the token suppression lists CTranslate2 keeps
//! in its own config.json beside the model).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{Value, json};
use tinyalign_weights::ct2::{Ct2Model, whisper_to_hf};
use tinyalign_weights::st::{StoreAs, write_safetensors};
use tinyalign_weights::{TensorMap, read_file};

use tinyalign_data::write_atomic;

#[derive(Debug, Args)]
pub struct ConvertWhisperArgs {
    /// CTranslate2 `model.bin` of a Whisper model.
    model: PathBuf,
    /// Output folder (created if missing).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: &ConvertWhisperArgs) -> Result<ExitCode> {
    let name = args.model.display().to_string();
    let bytes = read_file(&args.model)?;
    let model = Ct2Model::parse(&bytes, &name)?;
    let tensors = whisper_to_hf(&model)?;
    let mut config = whisper_config(&model, &tensors)?;
    if let Some(extra) = ct2_generation_options(&args.model)? {
        config
            .as_object_mut()
            .context("config is an object")?
            .extend(extra);
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let st = write_safetensors(
        &tensors,
        StoreAs::F16,
        &[("format", "pt"), ("converted_from", "ctranslate2")],
    )?;
    write_atomic(&args.out.join("model.safetensors"), &st)?;
    write_atomic(
        &args.out.join("config.json"),
        serde_json::to_string_pretty(&config)?.as_bytes(),
    )?;
    println!(
        "{name}: {} tensors, {:.1} M parameters -> {}",
        tensors.len(),
        tensors.numel() as f64 / 1e6,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Hugging Face `WhisperConfig` fields, read off the tensor shapes and CTranslate2's scalars.
fn whisper_config(model: &Ct2Model<'_>, t: &TensorMap) -> Result<Value> {
    let conv1 = &t.get("model.encoder.conv1.weight")?.shape;
    let count = |side: &str| {
        (0..)
            .take_while(|i| t.contains(&format!("model.{side}.layers.{i}.fc1.weight")))
            .count()
    };
    Ok(json!({
        "model_type": "whisper",
        "architectures": ["WhisperForConditionalGeneration"],
        "d_model": conv1[0],
        "num_mel_bins": conv1[1],
        "encoder_layers": count("encoder"),
        "decoder_layers": count("decoder"),
        "encoder_attention_heads": model.scalar_i64("encoder/num_heads")?,
        "decoder_attention_heads": model.scalar_i64("decoder/num_heads")?,
        "encoder_ffn_dim": t.get("model.encoder.layers.0.fc1.weight")?.shape[0],
        "decoder_ffn_dim": t.get("model.decoder.layers.0.fc1.weight")?.shape[0],
        "vocab_size": t.get("model.decoder.embed_tokens.weight")?.shape[0],
        "max_source_positions": t.get("model.encoder.embed_positions.weight")?.shape[0],
        "max_target_positions": t.get("model.decoder.embed_positions.weight")?.shape[0],
        "activation_function": "gelu",
        "scale_embedding": false,
        "tie_word_embeddings": true,
    }))
}

/// `suppress_ids`, `suppress_ids_begin`, `lang_ids` and `alignment_heads` from CTranslate2's config.json, under
/// Hugging Face's names where it has them.
fn ct2_generation_options(model_path: &Path) -> Result<Option<serde_json::Map<String, Value>>> {
    let path = model_path.with_file_name("config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let ct2: Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let mut out = serde_json::Map::new();
    for (from, to) in [
        ("suppress_ids", "suppress_tokens"),
        ("suppress_ids_begin", "begin_suppress_tokens"),
        ("lang_ids", "lang_ids"),
        ("alignment_heads", "alignment_heads"),
    ] {
        if let Some(v) = ct2.get(from) {
            out.insert(to.to_string(), v.clone());
        }
    }
    Ok(Some(out))
}

#[derive(Debug, Args)]
pub struct ConvertLlmArgs {
    /// A Hugging Face folder (config.json, model.safetensors, tokenizer.json) of a SmolLM2 or Qwen2.5
    /// model; `DIR@q8_0` (or f32, f16, bf16, q5_0, q4_1, q4_0) quantises its matrices.
    model: PathBuf,
    /// The GGUF file to write (through a temporary file, so a failure leaves nothing behind).
    #[arg(long)]
    out: PathBuf,
}

/// `tinyalign convert-llm DIR[@FORMAT] --out model.gguf`: the GGUF that `--llm DIR` loads in memory, kept
/// as a file for the browser demo, llama.cpp, or a faster start.
pub fn run_llm(args: &ConvertLlmArgs) -> Result<ExitCode> {
    if tinyalign_llm::hf_choice(&args.model)?.is_none() {
        anyhow::bail!(
            "{} is not a Hugging Face model folder (DIR or DIR@FORMAT)",
            args.model.display()
        );
    }
    let bytes = tinyalign_llm::read_llm_bytes(&args.model)?;
    // Parse it back as every loader will, before anything is written.
    tinyalign_llm::LlamaModel::from_gguf(
        &tinyalign_weights::gguf::GgufFile::parse(&bytes, &args.out.display().to_string())?,
        tinyalign_llm::Precision::Native,
    )?;
    write_atomic(&args.out, &bytes)?;
    println!(
        "{} ({:.1} MB, sha256 {})",
        args.out.display(),
        bytes.len() as f64 / 1e6,
        tinyalign_weights::sha256_hex(&bytes)
    );
    Ok(ExitCode::SUCCESS)
}
