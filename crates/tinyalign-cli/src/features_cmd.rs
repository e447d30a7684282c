//! `tinyalign features FILE --out F.npy|F.safetensors`: the frozen Whisper encoder's output for one file,
//! shape `[frames, d_audio]` (what the projector trains on).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use tinyalign_mel::npy;
use tinyalign_weights::st::{StoreAs, write_safetensors};
use tinyalign_weights::{Tensor, TensorMap};

use crate::input_args::InputArgs;
use tinyalign_data::write_atomic;

#[derive(Debug, Args)]
pub struct FeaturesArgs {
    /// Audio file (WAV, or headerless PCM16 with --raw).
    file: PathBuf,
    /// Output file: `.npy` (f32) or `.safetensors` (tensor "features", f32).
    #[arg(long)]
    out: PathBuf,
    /// Pad/trim to Whisper's 30 s window (1500 output frames) instead of the natural length.
    #[arg(long)]
    pad30: bool,
    /// Whisper model folder (Hugging Face layout: config.json + model.safetensors).
    /// Default: $TINYALIGN_CACHE/whisper-tiny.en/hf, else .cache/tinyalign/whisper-tiny.en/hf.
    #[arg(long)]
    model: Option<PathBuf>,
    #[command(flatten)]
    input: InputArgs,
}

pub fn run(args: &FeaturesArgs) -> Result<ExitCode> {
    let ext = args
        .out
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    if !matches!(ext, "npy" | "safetensors") {
        bail!(
            "--out {}: use a .npy or .safetensors file name",
            args.out.display()
        );
    }
    let model_dir = args
        .model
        .clone()
        .unwrap_or_else(crate::paths::default_whisper_dir);
    if !model_dir.join("model.safetensors").exists() {
        bail!(
            "no Whisper model in {}: run `cargo xtask fetch` (or pass --model DIR with config.json + model.safetensors)",
            model_dir.display()
        );
    }
    let started = Instant::now();
    let encoder = tinyalign_whisper::load_encoder_dir(&model_dir)?;
    let loaded = started.elapsed();

    let frontend = encoder.config().frontend(args.pad30)?;
    let format = args.input.format();
    let t0 = Instant::now();
    let mel = frontend.file_to_log_mel(&args.file, format)?;
    let t_mel = t0.elapsed();
    let t1 = Instant::now();
    let tinyalign_whisper::Features {
        frames,
        width: dim,
        data,
    } = encoder.forward(&mel)?;
    let t_enc = t1.elapsed();

    let bytes = if ext == "npy" {
        npy::to_npy_bytes(&[frames, dim], &data)
    } else {
        let mut map = TensorMap::new(args.out.display().to_string());
        map.insert("features", Tensor::new(vec![frames, dim], data));
        let source = args.file.display().to_string();
        write_safetensors(
            &map,
            StoreAs::F32,
            &[("source", source.as_str()), ("encoder", "whisper")],
        )?
    };
    write_atomic(&args.out, &bytes)?;
    println!(
        "{}: {frames} x {dim} features -> {} (model load {:.0} ms, log-mel {:.1} ms, encoder {:.0} ms)",
        args.file.display(),
        args.out.display(),
        loaded.as_secs_f64() * 1e3,
        t_mel.as_secs_f64() * 1e3,
        t_enc.as_secs_f64() * 1e3
    );
    Ok(ExitCode::SUCCESS)
}
