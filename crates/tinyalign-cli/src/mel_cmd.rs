//! `tinyalign mel FILE... --out DIR`: each file's log-mel as `DIR/<stem>.npy` (f32, `[n_mels, frames]`,
//! exactly what the encoder sees) and, with `--png`, `DIR/<stem>.png`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use tinyalign_mel::{
    AudioErrorKind, Frontend, FrontendConfig, InputFormat, MelBands, npy, read_audio_file,
};

use crate::input_args::InputArgs;
use crate::spectrogram_png::spectrogram_png;
use tinyalign_data::write_atomic;

#[derive(Debug, Args)]
pub struct MelArgs {
    /// Audio files: WAV (PCM 8/16/24/32-bit or 32-bit float, any rate and channel count), or headerless
    /// PCM16 with --raw.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Output folder (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Also write a spectrogram image per file.
    #[arg(long)]
    png: bool,
    /// Pad with silence or trim to 30 s (3000 frames), as Whisper's reference pipeline does.
    #[arg(long)]
    pad30: bool,
    /// Mel bands: 80 (Whisper tiny..large-v2) or 128 (large-v3).
    #[arg(long, default_value_t = 80, value_parser = parse_bands)]
    n_mels: usize,
    #[command(flatten)]
    input: InputArgs,
}

fn parse_bands(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    MelBands::from_count(n)
        .map(MelBands::count)
        .ok_or_else(|| format!("{n} mel bands are not supported: use 80 or 128"))
}

pub fn run(args: &MelArgs) -> Result<ExitCode> {
    let bands = MelBands::from_count(args.n_mels).context("n_mels was validated by clap")?;
    let outputs = output_stems(&args.files)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let frontend = Frontend::new(FrontendConfig {
        bands,
        pad_to_30s: args.pad30,
    });
    let format = args.input.format();

    let mut failures = 0usize;
    for (file, stem) in args.files.iter().zip(&outputs) {
        match convert_one(&frontend, file, format, &args.out, stem, args.png) {
            Ok(summary) => println!("{summary}"),
            Err(e) => {
                failures += 1;
                eprintln!("error: {e:#}");
            }
        }
    }
    if failures > 0 {
        eprintln!("{failures} of {} files failed", args.files.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Output stems, refusing two inputs that would overwrite each other's output.
fn output_stems(files: &[PathBuf]) -> Result<Vec<String>> {
    let mut seen: HashMap<String, &Path> = HashMap::new();
    let mut stems = Vec::with_capacity(files.len());
    for file in files {
        let stem = file
            .file_stem()
            .with_context(|| format!("{}: not a file name", file.display()))?
            .to_string_lossy()
            .into_owned();
        if let Some(previous) = seen.insert(stem.clone(), file) {
            bail!(
                "{} and {} would both write {stem}.npy; run them into different --out folders",
                previous.display(),
                file.display()
            );
        }
        stems.push(stem);
    }
    Ok(stems)
}

fn convert_one(
    frontend: &Frontend,
    file: &Path,
    format: InputFormat,
    out_dir: &Path,
    stem: &str,
    png: bool,
) -> Result<String> {
    let started = Instant::now();
    let audio = read_audio_file(file, format).map_err(|e| {
        if matches!(e.kind, AudioErrorKind::NotWav) && format == InputFormat::Wav {
            anyhow::anyhow!(
                "{e}; for headerless PCM16 pass --raw (and --raw-rate if it is not 16 kHz)"
            )
        } else {
            anyhow::Error::new(e)
        }
    })?;
    let name = file.display().to_string();
    let mel = frontend.audio_to_log_mel(&audio, &name)?;
    let elapsed = started.elapsed();

    let npy_path = out_dir.join(format!("{stem}.npy"));
    write_atomic(&npy_path, &npy::to_npy_bytes(&mel.shape(), &mel.data))?;
    let mut written = npy_path.display().to_string();
    if png {
        let png_path = out_dir.join(format!("{stem}.png"));
        write_atomic(&png_path, &spectrogram_png(&mel)?)?;
        written.push_str(&format!(", {}", png_path.display()));
    }
    Ok(format!(
        "{name}: {:.2} s at {} Hz, {} ch -> {} x {} log-mel in {:.1} ms ({written})",
        audio.duration_s(),
        audio.sample_rate,
        audio.source_channels,
        mel.n_mels,
        mel.n_frames,
        elapsed.as_secs_f64() * 1e3,
    ))
}
