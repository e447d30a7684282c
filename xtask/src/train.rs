//! `cargo xtask train`: the main job. The pipeline grows stage by stage as its crates land; each stage that
//! exists runs for real on real audio, and the job says plainly which stages do not exist yet.

use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::fetch;
use crate::util::{self, root};

/// The real recordings bundled with the repository (licences in tests/fixtures/mel/README.md).
const BUNDLED_WAVS: &[&str] = &["tt-weasels.wav", "librivox-0880.wav", "synth22050.wav"];
const BUNDLED_RAW: &[&str] = &["goforward.raw"];

pub fn run(args: &[String]) -> Result<()> {
    if let Some(extra) = args.first() {
        bail!(
            "cargo xtask train takes no options yet (got '{extra}'); presets arrive with the trainer"
        );
    }
    println!("== stage 1/6: fetch the pinned models and speech data");
    fetch::run(&[])?;
    util::cargo(&["build", "--release", "--quiet", "-p", "tinyalign-cli"])?;
    let cli = root().join("target/release/tinyalign");

    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("system clock before 1970")?
        .as_secs();
    let run_dir = root().join("runs").join(format!("train-{stamp}"));
    let features = run_dir.join("features");
    let fixtures = root().join("tests/fixtures/mel");
    let paths =
        |names: &[&str]| -> Vec<PathBuf> { names.iter().map(|n| fixtures.join(n)).collect() };

    println!("== stage 2/6: audio frontend (WAV -> 16 kHz mono -> Whisper log-mel)");
    util::run(
        Command::new(&cli)
            .arg("mel")
            .args(paths(BUNDLED_WAVS))
            .arg("--out")
            .arg(&features)
            .arg("--png"),
    )?;
    util::run(
        Command::new(&cli)
            .arg("mel")
            .args(paths(BUNDLED_RAW))
            .args(["--raw", "--out"])
            .arg(&features)
            .arg("--png"),
    )?;

    println!("\n== stage 3/6: frozen Whisper tiny.en: encoder features and its own transcripts");
    let whisper = fetch::cache_dir().join("whisper-tiny.en/hf");
    for wav in paths(BUNDLED_WAVS) {
        let stem = wav
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        util::run(
            Command::new(&cli)
                .arg("features")
                .arg(&wav)
                .arg("--model")
                .arg(&whisper)
                .arg("--out")
                .arg(features.join(format!("{stem}.whisper.npy"))),
        )?;
    }
    util::run(
        Command::new(&cli)
            .arg("transcribe")
            .args(paths(BUNDLED_WAVS))
            .arg("--model")
            .arg(&whisper),
    )?;

    println!("\n== stage 4/6: frozen SmolLM2-135M-Instruct (Q4_1 GGUF) answers a text question");
    util::run(Command::new(&cli).args(["ask", "What is the capital of France?", "--stats"]))?;

    println!(
        "\n== stages 5-6 are not built yet:\n\
         \x20 5. the speech datasets and the BridgeFormer projector trained with EmbedLink targets\n\
         \x20 6. evaluation through the frozen LLM with instruction injection\n\
         \nlog-mel features, spectrograms and Whisper encoder features are in {}\n\
         try it on your own audio: target/release/tinyalign transcribe YOUR.wav --model {}\n\
         or ask the LLM: target/release/tinyalign ask \"...\"",
        features.display(),
        whisper.display()
    );
    Ok(())
}
