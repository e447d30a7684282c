//! `tinyalign eval --manifest M --projector RUN [--task transcribe|respond]`: one task on a manifest split (a
//! packaged set or your own), rows whisper / cascade / text-oracle / projector; writes report.json,
//! report.md and a chart of the main score per row with its 95% interval.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use tinyalign_data::{Manifest, Split};
use tinyalign_eval::{Assistant, EvalOptions, Task};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The manifest to evaluate on.
    #[arg(long)]
    manifest: PathBuf,
    /// train, valid, test, adapt or heldout.
    #[arg(long, default_value = "heldout")]
    split: String,
    /// transcribe (WER against the transcript) or respond (word F1 and exact match against the LLM's answer
    /// to the transcript as text; utterances labelled transcribe are skipped).
    #[arg(long, default_value = "transcribe")]
    task: String,
    /// A trained projector (run folder with projector.safetensors + projector.json) or a user's name.
    /// Without one, only the whisper, cascade and text-oracle rows are scored (the LLM's ceiling).
    #[arg(long)]
    projector: Option<PathBuf>,
    /// The frozen LLM (smollm2-135m, qwen2.5-0.5b, qwen2.5-1.5b, a .gguf file or a Hugging Face folder (`DIR`, or `DIR@q8_0` to quantise it at load)). Default: the one the
    /// projector was trained for; without a projector, qwen2.5-0.5b.
    #[arg(long)]
    llm: Option<String>,
    /// Inject this instruction in every row instead of the task's (for comparing prompts).
    #[arg(long)]
    instruction: Option<String>,
    /// The system message of every row instead of the LLM's default ("" for none).
    #[arg(long)]
    system: Option<String>,
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
    /// Of the baselines keep only the text oracle (no Whisper decoding: fast, for comparing prompts).
    #[arg(long)]
    oracle_only: bool,
    /// How a CTC projector's frames go into the LLM in the `projector` row: greedy (the greedy path's tokens
    /// as the LLM's own embeddings), posterior (each segment's posterior-weighted embeddings) or vectors
    /// (the projector's vector at each segment's peak). Default: greedy.
    #[arg(long)]
    readout: Option<tinyalign_eval::Readout>,
    /// With a CTC projector, add a `projector-<readout>` row for each other readout.
    #[arg(long)]
    all_readouts: bool,
    /// Where report.json and report.md go (default: <projector>/eval-<split>, eval-<split>-respond).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: &EvalArgs) -> Result<ExitCode> {
    let manifest = Manifest::read(&args.manifest)?;
    let split: Split = args.split.parse()?;
    let task: Task = args.task.parse()?;
    let whisper_dir = crate::paths::default_whisper_dir();
    let projector = args
        .projector
        .as_deref()
        .map(crate::personalize_cmd::resolve_projector);
    let mut assistant = match &projector {
        Some(projector) => Assistant::load(
            &whisper_dir,
            &crate::llm_choice::for_projector(args.llm.as_deref(), projector)?,
            projector,
        )?,
        None => {
            if args.no_baselines {
                bail!("without --projector only the baseline rows exist: drop --no-baselines");
            }
            Assistant::load_text_only(&crate::llm_choice::resolve(
                args.llm
                    .as_deref()
                    .unwrap_or(crate::llm_choice::DEFAULT_LLM),
            )?)?
        }
    };
    if let Some(readout) = args.readout {
        assistant.set_readout(readout)?;
    }
    if args.all_readouts && !assistant.has_ctc_head() {
        bail!("--all-readouts needs a projector trained with the CTC objective");
    }
    if let Some(system) = &args.system {
        assistant.llm.system_prompt = (!system.is_empty()).then(|| system.clone());
    }
    let whisper = if args.no_baselines || args.oracle_only {
        None
    } else {
        Some(tinyalign_whisper::WhisperModel::load_dir(&whisper_dir)?)
    };
    let options = EvalOptions {
        task,
        split,
        limit: args.limit,
        max_tokens: args.max_tokens,
        ablation: args.ablation,
        baselines: !args.no_baselines,
        speaker: args.speaker.clone(),
        instruction: args.instruction.clone(),
        readout: args.readout,
        all_readouts: args.all_readouts,
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
    let out = match (&args.out, &projector) {
        (Some(out), _) => out.clone(),
        (None, Some(projector)) => projector.join(default_folder(task, split)),
        (None, None) => bail!("without --projector, say where the report goes with --out DIR"),
    };
    report.write(&out).context("writing the report")?;
    let bars: Vec<tinyalign_train::plot::Bar> = report
        .rows
        .iter()
        .map(|r| match task {
            Task::Transcribe => (r.name.as_str(), r.wer, r.wer_ci95),
            Task::Respond => (r.name.as_str(), r.f1, r.f1_ci95),
        })
        .collect();
    let (chart, label) = match task {
        Task::Transcribe => ("wer_per_row.svg", "WER"),
        Task::Respond => ("f1_per_row.svg", "word F1"),
    };
    tinyalign_data::write_atomic(
        &out.join(chart),
        tinyalign_train::plot::bar_chart_svg(label, &bars).as_bytes(),
    )?;
    print!("{}", report.to_markdown());
    eprintln!("report: {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// The report folder inside a projector's run folder: `eval-<split>` for transcribe (what `tinyalign
/// compare` reads), `eval-<split>-respond` for respond.
fn default_folder(task: Task, split: Split) -> String {
    match task {
        Task::Transcribe => format!("eval-{}", split.name()),
        Task::Respond => format!("eval-{}-respond", split.name()),
    }
}
