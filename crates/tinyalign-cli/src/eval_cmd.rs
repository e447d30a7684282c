//! `tinyalign eval --manifest M --projector RUN`: the transcribe task on a manifest split (a packaged set or
//! your own), rows whisper / cascade / text-oracle / projector; writes report.json and report.md.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use tinyalign_data::{Manifest, Split};
use tinyalign_eval::{Assistant, EvalOptions};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The manifest to evaluate on.
    #[arg(long)]
    manifest: PathBuf,
    /// train, valid, test, adapt or heldout.
    #[arg(long, default_value = "heldout")]
    split: String,
    /// A trained projector (run folder with projector.safetensors + projector.json) or a user's name.
    #[arg(long)]
    projector: PathBuf,
    /// Evaluate at most this many utterances (0 = all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    #[arg(long, default_value_t = 48)]
    max_tokens: usize,
    /// Add the row without instruction injection.
    #[arg(long)]
    ablation: bool,
    /// Only this speaker's utterances.
    #[arg(long)]
    speaker: Option<String>,
    /// Leave out the whisper, cascade and text-oracle rows (faster).
    #[arg(long)]
    no_baselines: bool,
    /// Where report.json and report.md go (default: <projector>/eval-<split>).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: &EvalArgs) -> Result<ExitCode> {
    let manifest = Manifest::read(&args.manifest)?;
    let split: Split = args.split.parse()?;
    let whisper_dir = crate::features_cmd::default_whisper_dir();
    let projector = crate::personalize_cmd::resolve_projector(&args.projector);
    let assistant = Assistant::load(
        &whisper_dir,
        &crate::ask_cmd::default_llm_path(),
        &projector,
    )?;
    let whisper = if args.no_baselines {
        None
    } else {
        Some(tinyalign_whisper::WhisperModel::load_dir(
            &whisper_dir,
            tinyalign_nn::cpu(),
        )?)
    };
    let options = EvalOptions {
        split,
        limit: args.limit,
        max_tokens: args.max_tokens,
        ablation: args.ablation,
        baselines: !args.no_baselines,
        speaker: args.speaker.clone(),
    };
    let report = tinyalign_eval::evaluate(
        &manifest,
        &assistant,
        whisper.as_ref(),
        &options,
        |done, total| {
            if done % 10 == 0 || done == total {
                eprintln!("  {done}/{total}");
            }
        },
    )?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| projector.join(format!("eval-{}", split.name())));
    report.write(&out).context("writing the report")?;
    print!("{}", report.to_markdown());
    eprintln!("report: {}", out.display());
    Ok(ExitCode::SUCCESS)
}
