//! `tinyalign personalize --user NAME --data MANIFEST_OR_FOLDER`: adapts a base projector to one user's
//! voice. The user's utterances are copied into their private folder (`<cache>/users/NAME/`), the base
//! projector is evaluated on their `heldout` part, fine-tuned on their `adapt` part (held-out audio is never
//! trained on, nor used to pick a checkpoint), evaluated again, and the before/after WER, the time it took
//! and the peak memory are printed and kept in `personalization.json`.
//! `tinyalign users list` and `tinyalign users forget NAME` manage those folders.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tinyalign_data::{Manifest, Split, Utterance};
use tinyalign_eval::{Assistant, EvalOptions, EvalReport};
use tinyalign_train::{ComputeDevice, PersonalisationResult, TrainConfig, TrainOptions, UserStore};

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

/// The user's utterances from a manifest (one speaker) or a wav+txt folder, with `adapt` and `heldout`.
fn user_utterances(args: &PersonalizeArgs) -> Result<(Manifest, Vec<Utterance>)> {
    if args.data.is_dir() {
        let mut utts = tinyalign_data::import_wav_txt(
            &args.data,
            Some(&args.user),
            Split::Adapt,
            "the user's own recordings",
            &args.data,
        )?;
        utts.sort_by(|a, b| a.id.cmp(&b.id));
        let mut order: Vec<usize> = (0..utts.len()).collect();
        tinyalign_data::seeded_shuffle(&mut order, args.seed);
        let heldout = (utts.len() as f64 * 0.3).round().max(1.0) as usize;
        for &i in &order[..heldout.min(utts.len())] {
            utts[i].split = Split::Heldout;
        }
        let manifest = Manifest::new(&args.data, utts.clone());
        return Ok((manifest, utts));
    }
    let manifest = Manifest::read(&args.data)?;
    let mut speakers: Vec<&str> = manifest
        .utterances
        .iter()
        .filter(|u| matches!(u.split, Split::Adapt | Split::Heldout))
        .map(|u| u.speaker.as_str())
        .collect();
    speakers.sort();
    speakers.dedup();
    let speaker = match (&args.speaker, speakers.as_slice()) {
        (Some(s), _) if speakers.contains(&s.as_str()) => s.clone(),
        (Some(s), _) => bail!(
            "{}: no adapt/heldout utterances of speaker `{s}` (there are: {})",
            args.data.display(),
            speakers.join(", ")
        ),
        (None, [one]) => one.to_string(),
        (None, []) => bail!(
            "{}: no `adapt`/`heldout` utterances to personalise with",
            args.data.display()
        ),
        (None, many) => bail!(
            "{} has several speakers; pick one with --speaker ({})",
            args.data.display(),
            many.join(", ")
        ),
    };
    let utts = manifest
        .utterances
        .iter()
        .filter(|u| u.speaker == speaker && matches!(u.split, Split::Adapt | Split::Heldout))
        .cloned()
        .collect();
    Ok((manifest, utts))
}

/// Copies the user's audio into their folder and writes the manifest that points at the copies.
fn copy_into(user_dir: &Path, source: &Manifest, utts: &[Utterance]) -> Result<Manifest> {
    let audio_dir = user_dir.join("audio");
    std::fs::create_dir_all(&audio_dir).with_context(|| audio_dir.display().to_string())?;
    let mut copied = Vec::with_capacity(utts.len());
    for (i, u) in utts.iter().enumerate() {
        let from = source.audio_path(u);
        let name = from
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "audio.wav".into());
        let to = audio_dir.join(format!("{i:05}-{name}"));
        if !to.exists() {
            let bytes = std::fs::read(&from)
                .with_context(|| format!("reading {} ({})", from.display(), u.id))?;
            tinyalign_data::write_atomic(&to, &bytes)?;
        }
        let mut u = u.clone();
        u.audio = format!(
            "audio/{}",
            to.file_name().unwrap_or_default().to_string_lossy()
        );
        copied.push(u);
    }
    let manifest = Manifest::new(user_dir, copied);
    manifest.write(&user_dir.join("manifest.jsonl"))?;
    Ok(manifest)
}

fn evaluate(
    manifest: &Manifest,
    projector: &Path,
    limit: usize,
    out: &Path,
    what: &str,
) -> Result<EvalReport> {
    let assistant = Assistant::load(
        &crate::paths::default_whisper_dir(),
        &crate::llm_choice::for_projector(None, projector)?,
        projector,
    )?;
    let options = EvalOptions {
        task: tinyalign_eval::Task::Transcribe,
        split: Split::Heldout,
        limit,
        max_tokens: 48,
        ablation: false,
        baselines: false,
        speaker: None,
        instruction: None,
        readout: None,
        all_readouts: false,
    };
    let report = tinyalign_eval::evaluate(manifest, &assistant, None, &options, |done, total| {
        if done % 10 == 0 || done == total {
            eprintln!("  {what}: {done}/{total} held-out utterances");
        }
    })?;
    report.write(out)?;
    Ok(report)
}

pub fn run(args: &PersonalizeArgs) -> Result<ExitCode> {
    let store = user_store();
    UserStore::check_name(&args.user)?;
    let base = args.base.canonicalize().with_context(|| {
        format!(
            "base projector {}: train one first (`cargo xtask train`) or pass --base RUN_DIR",
            args.base.display()
        )
    })?;
    let base_config = TrainConfig::from_toml(
        &std::fs::read_to_string(base.join("config.toml"))
            .with_context(|| format!("{}/config.toml", base.display()))?,
        "base config.toml",
    )?;
    let (source, utts) = user_utterances(args)?;
    let adapt: Vec<&Utterance> = utts.iter().filter(|u| u.split == Split::Adapt).collect();
    let heldout = utts.iter().filter(|u| u.split == Split::Heldout).count();
    if adapt.is_empty() || heldout == 0 {
        bail!(
            "personalising needs `adapt` and `heldout` utterances; {} has {} and {heldout}",
            args.data.display(),
            adapt.len()
        );
    }
    let adapt_seconds: f64 = adapt.iter().map(|u| u.duration_s).sum();
    // Absolute: the trainer resolves relative manifest paths against the cache folder.
    let user_dir = store.create(&args.user)?.canonicalize()?;
    let manifest = copy_into(&user_dir, &source, &utts)?;
    eprintln!(
        "user `{}`: {} adapt utterances ({:.1} min), {heldout} held out → {}",
        args.user,
        adapt.len(),
        adapt_seconds / 60.0,
        user_dir.display()
    );

    let before = evaluate(
        &manifest,
        &base,
        args.eval_limit,
        &user_dir.join("eval-before"),
        "before",
    )?;

    let mut config = base_config;
    config.data.manifest = user_dir.join("manifest.jsonl").display().to_string();
    config.data.train_splits = vec!["adapt".into()];
    // Validation watches a slice of the adaptation data: held-out audio never steers training.
    config.data.valid_splits = vec!["adapt".into()];
    config.data.max_train = 0;
    config.data.max_valid = 16;
    let ctc = config.loss.objective == tinyalign_train::Objective::Ctc;
    let steps = args.steps.unwrap_or(if ctc { 600 } else { 150 });
    config.optim.max_steps = steps;
    config.optim.lr = args.lr.unwrap_or(if ctc { 1e-3 } else { 3e-4 });
    config.optim.warmup_steps = (steps / 10).max(1);
    config.optim.validate_every = (steps / 6).max(1);
    config.optim.patience = 0;
    config.optim.max_seconds = 0.0;
    // On the device the LLM never runs: a base trained with the LLM in the loop adapts with EmbedLink; a
    // CTC base keeps CTC (its head would be meaningless under EmbedLink's pooled targets).
    if config.loss.objective == tinyalign_train::Objective::LlmInTheLoop {
        config.loss.objective = tinyalign_train::Objective::Embedlink;
    }
    config.optim.seed = args.seed;
    config.optim.batch_size = config.optim.batch_size.min(adapt.len());
    let projector_dir = user_dir.join("projector");
    let _ = std::fs::remove_dir_all(&projector_dir);
    let options = TrainOptions {
        run_dir: projector_dir.clone(),
        cache_dir: crate::paths::cache_dir(),
        whisper_dir: crate::paths::default_whisper_dir(),
        llm_path: crate::llm_choice::for_projector(None, &base)?,
        resume: false,
        stop: Arc::new(AtomicBool::new(false)),
        verbose: true,
        interrupt_at_step: None,
        init_from: Some(base.clone()),
        feature_dir: Some(user_dir.join("features")),
        device: args.device,
    };
    let manifest_path = user_dir.join("manifest.jsonl");
    let alignment = |projector: &Path| {
        tinyalign_train::projector_alignment(
            projector,
            &manifest_path,
            "heldout",
            0,
            &config,
            &options,
        )
    };
    let alignment_before = alignment(&base)?;
    let started = Instant::now();
    let summary = tinyalign_train::train(&config, &options)?;
    let adaptation_seconds = started.elapsed().as_secs_f64();
    let alignment_after = alignment(&projector_dir)?;

    let after = evaluate(
        &manifest,
        &projector_dir,
        args.eval_limit,
        &user_dir.join("eval-after"),
        "after",
    )?;
    let row = |r: &EvalReport| {
        r.rows
            .iter()
            .find(|row| row.name == "projector")
            .map(|row| (row.wer, row.cer, row.utterances))
            .unwrap_or_default()
    };
    let ((wer_before, cer_before, n), (wer_after, cer_after, _)) = (row(&before), row(&after));
    let empty = |r: &EvalReport| {
        r.utterances
            .iter()
            .filter(|u| {
                u.rows
                    .get("projector")
                    .is_some_and(|h| h.text.trim().is_empty())
            })
            .count()
    };
    let result = PersonalisationResult {
        user: args.user.clone(),
        base_projector: base.display().to_string(),
        adapt_utterances: adapt.len(),
        adapt_seconds,
        heldout_utterances: n,
        wer_before,
        wer_after,
        cer_before,
        cer_after,
        heldout_cosine_before: alignment_before.cosine,
        heldout_cosine_after: alignment_after.cosine,
        heldout_readout_error_before: Some(alignment_before.readout_error),
        heldout_readout_error_after: Some(alignment_after.readout_error),
        empty_answers_before: empty(&before),
        empty_answers_after: empty(&after),
        adaptation_seconds,
        steps: summary.steps,
        peak_rss_bytes: tinyalign_train::peak_rss_bytes(),
    };
    tinyalign_data::write_atomic(
        &user_dir.join("personalization.json"),
        &serde_json::to_vec_pretty(&result)?,
    )?;
    println!(
        "user `{}`: WER {:.1}% → {:.1}% (CER {:.1}% → {:.1}%, empty answers {} → {}) on {n} held-out utterances; held-out token readout error {} → {}, cosine to the transcript embeddings {} → {} ({heldout} utterances); adapted on {:.1} min of audio in {:.0} s ({} steps), peak RSS {}",
        args.user,
        100.0 * wer_before,
        100.0 * wer_after,
        100.0 * cer_before,
        100.0 * cer_after,
        result.empty_answers_before,
        result.empty_answers_after,
        percent(result.heldout_readout_error_before),
        percent(result.heldout_readout_error_after),
        cosine(alignment_before.cosine),
        cosine(alignment_after.cosine),
        adapt_seconds / 60.0,
        adaptation_seconds,
        summary.steps,
        result
            .peak_rss_bytes
            .map(|b| format!("{:.2} GB", b as f64 / 1e9))
            .unwrap_or_else(|| "n/a".into())
    );
    println!(
        "projector: {} (try it: tinyalign ask --audio FILE --projector {})",
        projector_dir.display(),
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
