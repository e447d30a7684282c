//! `cargo xtask train [--preset smoke|default|pooled|wide|full] [--run DIR] [--resume] [--device cuda] [--llm NAME]`: the
//! main job, end to end on the
//! real models and speech: fetch, datasets, the frozen models on real recordings, EmbedLink training on the
//! synthetic speakers, evaluation on unseen voices and on the real telephone speaker, and personalisation
//! of the trained projector to that speaker. `runs/latest` points at the newest trained projector.

use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::fetch;
use crate::util::{self, root};

/// The real recordings bundled with the repository (licences in tests/fixtures/mel/README.md).
const BUNDLED_WAVS: &[&str] = &["tt-weasels.wav", "librivox-0880.wav", "synth22050.wav"];
const BUNDLED_RAW: &[&str] = &["goforward.raw"];

struct Options {
    preset: String,
    run: Option<PathBuf>,
    resume: bool,
    /// Where the projector trains and is personalised (`cpu`, `cuda`, `cuda:N`).
    device: String,
    /// The frozen LLM (`tinyalign train --llm`); `None` keeps the preset's `[llm] model`.
    llm: Option<String>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        preset: "default".into(),
        run: None,
        resume: false,
        device: "cpu".into(),
        llm: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--preset" => options.preset = it.next().context("--preset needs a name")?.clone(),
            "--run" => options.run = Some(it.next().context("--run needs a folder")?.into()),
            "--resume" => options.resume = true,
            "--device" => options.device = it.next().context("--device needs cpu or cuda")?.clone(),
            "--llm" => {
                options.llm = Some(
                    it.next()
                        .context("--llm needs a name or a .gguf file")?
                        .clone(),
                )
            }
            other => {
                bail!(
                    "unknown option '{other}' (--preset smoke|default|pooled|wide|full, --run DIR, --resume, --device cpu|cuda, \
                     --llm smollm2-135m|qwen2.5-0.5b|qwen2.5-1.5b|FILE.gguf)"
                )
            }
        }
    }
    if !root()
        .join("configs")
        .join(format!("{}.toml", options.preset))
        .exists()
    {
        bail!(
            "no preset configs/{}.toml (smoke, default, pooled, wide, full)",
            options.preset
        );
    }
    if options.resume && options.run.is_none() {
        bail!("--resume needs --run DIR (the run folder to continue)");
    }
    Ok(options)
}

/// The `data build` arguments of the training set a preset reads beyond `synth` (its `[data] manifest`): a
/// build resumes where it stopped, so a rerun of the main job costs only the manifest's check.
fn preset_training_data(preset: &str) -> Option<Vec<String>> {
    let wide = |hours: &str, name: &str| {
        let out = fetch::cache_dir().join("datasets").join(name);
        ["synth-wide", "--hours", hours, "--out"]
            .map(String::from)
            .into_iter()
            .chain([out.to_string_lossy().into_owned()])
            .collect()
    };
    match preset {
        "wide" => Some(wide("5", "synth-wide")),
        "full" => Some(wide("20", "synth-wide-20h")),
        _ => None,
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    println!("== stage 1/7: build the release CLI, fetch the pinned models and speech data");
    // One release build for every stage, Whisper's conversion included. The CUDA build (dfdx's backend)
    // needs the CUDA toolkit (nvcc, nvidia-smi) where it builds; see the README.
    let cli = if options.device == "cpu" {
        util::release_cli(&[])?
    } else {
        util::release_cli(&["cuda"])?
    };
    fetch::run_with(&[], Some(&cli))?;

    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("system clock before 1970")?
        .as_secs();
    let run_dir = root().join("runs").join(format!("train-{stamp}"));
    let features = run_dir.join("features");
    let fixtures = root().join("tests/fixtures/mel");
    let paths =
        |names: &[&str]| -> Vec<PathBuf> { names.iter().map(|n| fixtures.join(n)).collect() };

    println!(
        "\n== stage 2/7: datasets (synthetic speakers for training, the atypical users, the real asterisk \
         speaker, the pocketsphinx test set)"
    );
    util::ensure_synthesisers()?;
    for name in ["synth", "atypical", "asterisk", "pocketsphinx"] {
        util::run(Command::new(&cli).args(["data", "build", name]))?;
    }
    if let Some(build) = preset_training_data(&options.preset) {
        util::run(Command::new(&cli).args(["data", "build"]).args(build))?;
    }

    println!("\n== stage 3/7: audio frontend and frozen Whisper on the bundled recordings");
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

    println!("\n== stage 4/7: the frozen LLM answers a text question");
    let mut ask = Command::new(&cli);
    ask.args(["ask", "What is the capital of France?", "--stats"]);
    if let Some(llm) = &options.llm {
        ask.args(["--llm", llm]);
    }
    util::run(&mut ask)?;

    let train_run = options
        .run
        .clone()
        .unwrap_or_else(|| run_dir.with_file_name(format!("{}-{stamp}", options.preset)));
    println!(
        "\n== stage 5/7: training of the projector, the LLM never running (configs/{}.toml)",
        options.preset
    );
    let mut train = Command::new(&cli);
    train
        .args(["train", "--config"])
        .arg(
            root()
                .join("configs")
                .join(format!("{}.toml", options.preset)),
        )
        .arg("--run")
        .arg(&train_run)
        .args(["--device", &options.device]);
    if options.resume {
        train.arg("--resume");
    }
    if let Some(llm) = &options.llm {
        train.args(["--llm", llm]);
    }
    util::run(&mut train)?;

    let latest = root().join("runs/latest");
    let _ = std::fs::remove_file(&latest);
    #[cfg(unix)]
    std::os::unix::fs::symlink(&train_run, &latest)
        .with_context(|| format!("linking {}", latest.display()))?;

    println!(
        "\n== stage 6/7: evaluation through the frozen LLM: the transcribe and respond tasks on 30 utterances of \
         unseen synthetic voices, the transcribe task on 30 held-out prompts of the real telephone speaker"
    );
    crate::eval::evaluate_run(&cli, &train_run, 30)?;

    println!(
        "\n== stage 7/7: personalisation: adapt the projector to the asterisk speaker (their `adapt` prompts), \
         WER on their held-out prompts before and after"
    );
    util::run(
        Command::new(&cli)
            .args(["personalize", "--user", "asterisk", "--data"])
            .arg(fetch::cache_dir().join("datasets/asterisk/manifest.jsonl"))
            .arg("--base")
            .arg(&train_run)
            .args(["--device", &options.device]),
    )?;
    println!(
        "\ntrained projector, metrics.jsonl, loss.svg, summary.json, eval-*/ and the run's report.md: {}\n\
         log-mel features, spectrograms and Whisper features of the bundled recordings: {}\n\
         the personalised asterisk user: target/release/tinyalign users list\n\
         try: target/release/tinyalign ask --audio YOUR.wav --projector {}   (or --projector asterisk)\n\
         \x20    target/release/tinyalign transcribe YOUR.wav --model {}",
        train_run.display(),
        features.display(),
        train_run.display(),
        whisper.display()
    );
    Ok(())
}
