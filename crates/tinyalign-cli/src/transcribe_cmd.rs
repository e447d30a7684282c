//! `tinyalign transcribe FILE...`: Whisper's own greedy transcript of each file, as plain text or one JSON
//! object per line (`--json`) with timings.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use serde_json::json;
use tinyalign_whisper::WhisperModel;

use crate::input_args::InputArgs;
use crate::paths::default_whisper_dir;

#[derive(Debug, Args)]
pub struct TranscribeArgs {
    /// Audio files (WAV, or headerless PCM16 with --raw), each at most 30 s.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// One JSON object per file: {"file", "text", "audio_s", "mel_ms", "encoder_ms", "decoder_ms"}.
    #[arg(long)]
    json: bool,
    /// Whisper model folder (config.json + model.safetensors + vocabulary.txt here or one level up).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Most tokens to generate per file.
    #[arg(long, default_value_t = 224)]
    max_tokens: usize,
    #[command(flatten)]
    input: InputArgs,
}

pub fn run(args: &TranscribeArgs) -> Result<ExitCode> {
    let dir = args.model.clone().unwrap_or_else(default_whisper_dir);
    if !dir.join("model.safetensors").exists() {
        bail!(
            "no Whisper model in {}: run `cargo xtask fetch` (or pass --model DIR)",
            dir.display()
        );
    }
    let model = WhisperModel::load_dir(&dir)?;
    // The decoder was trained on 30 s windows; padding keeps its behaviour exactly Whisper's.
    let frontend = model.encoder.config().frontend(true)?;
    let format = args.input.format();
    let mut failures = 0;
    for file in &args.files {
        let result = (|| -> Result<()> {
            let t0 = Instant::now();
            let audio = tinyalign_mel::read_audio_file(file, format)?;
            let name = file.display().to_string();
            audio.check_whisper_window(&name)?;
            let mel = frontend.audio_to_log_mel(&audio, &name)?;
            let t_mel = t0.elapsed();
            let t1 = Instant::now();
            let hidden = model.encoder.forward(&mel)?;
            let t_enc = t1.elapsed();
            let t2 = Instant::now();
            let context = model.decoder.audio_context(&hidden);
            let ids = model
                .decoder
                .greedy(&model.tokenizer, &context, args.max_tokens);
            let text = model.tokenizer.decode(&ids).trim().to_string();
            let t_dec = t2.elapsed();
            if args.json {
                println!(
                    "{}",
                    json!({
                        "file": name,
                        "text": text,
                        "audio_s": audio.duration_s(),
                        "tokens": ids.len(),
                        "mel_ms": t_mel.as_secs_f64() * 1e3,
                        "encoder_ms": t_enc.as_secs_f64() * 1e3,
                        "decoder_ms": t_dec.as_secs_f64() * 1e3,
                    })
                );
            } else if args.files.len() > 1 {
                println!("{name}: {text}");
            } else {
                println!("{text}");
            }
            Ok(())
        })();
        if let Err(e) = result {
            failures += 1;
            eprintln!("error: {e:#}");
        }
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
