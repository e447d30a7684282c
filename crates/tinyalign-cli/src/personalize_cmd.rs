//! `tinyalign personalize --user NAME --data MANIFEST_OR_FOLDER`: adapts a base projector to one user's
//! voice (the procedure is `tinyalign_personal::personalize`) and prints the before/after WER, the time it
//! took and the peak memory. `tinyalign users list` and `tinyalign users forget NAME` manage the users'
//! folders.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use tinyalign_train::{ComputeDevice, UserStore};

#[derive(Debug, Args)]
pub struct PersonalizeArgs {
    /// The user's name (their folder under <cache>/users).
    #[arg(long)]
    user: String,
    /// A manifest with `adapt` and `heldout` utterances, or a folder of x.wav + x.txt (split 70/30).
    #[arg(long)]
    data: PathBuf,
    /// In a manifest with several speakers, the one to personalise for.
    #[arg(long)]
    speaker: Option<String>,
    /// The base projector: a training run folder.
    #[arg(long, default_value = "runs/latest")]
    base: PathBuf,
    /// Fine-tuning steps. Default: 600 for a CTC base (its head must learn a new voice's frames; 150
    /// left the telephone speaker's token error at 95%), 150 for a pooled one.
    #[arg(long)]
    steps: Option<u64>,
    /// Peak learning rate of the fine-tuning. Default: 1e-3 for a CTC base, 3e-4 for a pooled one.
    #[arg(long)]
    lr: Option<f32>,
    /// Evaluate before and after on at most this many held-out utterances (0 = all, the default: a few
    /// dozen give intervals too wide to tell before from after).
    #[arg(long, default_value_t = 0)]
    eval_limit: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the projector trains: cpu, or cuda / cuda:N (a build with `--features cuda`). The frozen
    /// encoder and LLM run on the CPU either way.
    #[arg(long, default_value = "cpu")]
    device: ComputeDevice,
}

#[derive(Debug, Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Users with a folder: size, whether a projector exists, the last before/after WER.
    List,
    /// Delete a user's audio copies, features, projector and results.
    Forget { name: String },
}

/// `$TINYALIGN_USERS`, else `<cache>/users`.
pub fn user_store() -> UserStore {
    UserStore::new(
        std::env::var_os("TINYALIGN_USERS")
            .map(PathBuf::from)
            .unwrap_or_else(crate::paths::default_users_dir),
    )
}

pub fn run_users(args: &UsersArgs) -> Result<ExitCode> {
    let store = user_store();
    match &args.command {
        UsersCommand::List => {
            let users = store.list()?;
            if users.is_empty() {
                println!(
                    "no users (personalise one with `tinyalign personalize --user NAME --data ...`)"
                );
            }
            for u in users {
                let result = u
                    .result
                    .map(|r| {
                        format!(
                            "WER {:.1}% → {:.1}% on {} held-out utterances, token readout error {} → {}, adapted in {:.0} s",
                            100.0 * r.wer_before,
                            100.0 * r.wer_after,
                            r.heldout_utterances,
                            percent(r.heldout_readout_error_before),
                            percent(r.heldout_readout_error_after),
                            r.adaptation_seconds
                        )
                    })
                    .unwrap_or_else(|| "not personalised yet".into());
                println!(
                    "{:<24} {:>8.1} MB {:>6} files  projector: {:<3}  {result}",
                    u.name,
                    u.bytes as f64 / 1e6,
                    u.files,
                    if u.has_projector { "yes" } else { "no" }
                );
            }
        }
        UsersCommand::Forget { name } => {
            let (bytes, files) = store.forget(name)?;
            println!(
                "forgot `{name}`: {files} files, {:.1} MB deleted; nothing of theirs is left in {}",
                bytes as f64 / 1e6,
                store.dir(name)?.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(args: &PersonalizeArgs) -> Result<ExitCode> {
    let request = tinyalign_personal::Request {
        user: args.user.clone(),
        data: args.data.clone(),
        speaker: args.speaker.clone(),
        base: args.base.clone(),
        steps: args.steps,
        lr: args.lr,
        eval_limit: args.eval_limit,
        seed: args.seed,
        device: args.device,
    };
    let models = tinyalign_personal::Models {
        cache_dir: crate::paths::cache_dir(),
        whisper_dir: crate::paths::default_whisper_dir(),
        llm_path: crate::llm_choice::for_projector(None, &args.base)?,
    };
    let outcome = tinyalign_personal::personalize(&user_store(), &request, &models)?;
    let result = &outcome.result;
    println!(
        "user `{}`: WER {:.1}% → {:.1}% (CER {:.1}% → {:.1}%, empty answers {} → {}) on {} held-out utterances; held-out token readout error {} → {}, cosine to the transcript embeddings {} → {} ({} utterances); adapted on {:.1} min of audio in {:.0} s ({} steps), peak RSS {}",
        args.user,
        100.0 * result.wer_before,
        100.0 * result.wer_after,
        100.0 * result.cer_before,
        100.0 * result.cer_after,
        result.empty_answers_before,
        result.empty_answers_after,
        result.heldout_utterances,
        percent(result.heldout_readout_error_before),
        percent(result.heldout_readout_error_after),
        cosine(result.heldout_cosine_before),
        cosine(result.heldout_cosine_after),
        outcome.heldout_utterances,
        outcome.adapt_seconds / 60.0,
        result.adaptation_seconds,
        result.steps,
        result
            .peak_rss_bytes
            .map(|b| format!("{:.2} GB", b as f64 / 1e9))
            .unwrap_or_else(|| "n/a".into())
    );
    println!(
        "projector: {} (try it: tinyalign ask --audio FILE --projector {})",
        outcome.projector_dir.display(),
        args.user
    );
    Ok(ExitCode::SUCCESS)
}

fn percent(rate: Option<f32>) -> String {
    rate.map(|r| format!("{:.1}%", 100.0 * r))
        .unwrap_or_else(|| "n/a".into())
}

fn cosine(value: Option<f32>) -> String {
    value
        .map(|c| format!("{c:.3}"))
        .unwrap_or_else(|| "n/a".into())
}

/// `--projector` of ask/eval: a run folder, or the name of a personalised user.
pub fn resolve_projector(arg: &Path) -> PathBuf {
    if arg.is_dir() {
        return arg.to_path_buf();
    }
    arg.to_str()
        .and_then(|name| user_store().projector(name))
        .unwrap_or_else(|| arg.to_path_buf())
}
