//! Personalisation on the device: a user's utterances are copied into their private folder
//! (`<users>/NAME/`), the base projector is evaluated on their `heldout` part, fine-tuned on their `adapt`
//! part (held-out audio is never trained on, nor used to pick a checkpoint), evaluated again, and the
//! before/after WER, the time it took and the peak memory are kept in `personalization.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use tinyalign_data::{Manifest, Split, Utterance};
use tinyalign_eval::{Assistant, EvalOptions, EvalReport};
use tinyalign_train::{
    ComputeDevice, Objective, PersonalisationResult, TrainConfig, TrainOptions, UserStore,
};

#[derive(Debug, thiserror::Error)]
pub enum PersonalError {
    /// The request or the user's data (no adapt/held-out utterances, an unknown speaker, an unreadable
    /// file), naming what.
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Data(#[from] tinyalign_data::DataError),
    #[error(transparent)]
    Train(#[from] tinyalign_train::TrainError),
    #[error(transparent)]
    Eval(#[from] tinyalign_eval::AssistantError),
}

/// One personalisation.
#[derive(Debug, Clone)]
pub struct Request {
    /// The user's name (their folder in the store).
    pub user: String,
    /// A manifest with `adapt` and `heldout` utterances, or a folder of x.wav + x.txt (split 70/30).
    pub data: PathBuf,
    /// In a manifest with several speakers, the one to personalise for.
    pub speaker: Option<String>,
    /// The base projector: a training run folder.
    pub base: PathBuf,
    /// Fine-tuning steps; default 600 for a CTC base (its head must learn a new voice's frames; 150 left
    /// the telephone speaker's token error at 95%), 150 for a pooled one.
    pub steps: Option<u64>,
    /// Peak learning rate; default 1e-3 for a CTC base, 3e-4 for a pooled one.
    pub lr: Option<f32>,
    /// Evaluate on at most this many held-out utterances (0 = all).
    pub eval_limit: usize,
    pub seed: u64,
    pub device: ComputeDevice,
}

/// Where the frozen models are.
#[derive(Debug, Clone)]
pub struct Models {
    pub cache_dir: PathBuf,
    pub whisper_dir: PathBuf,
    /// The LLM the base projector was trained for.
    pub llm_path: PathBuf,
}

/// What a personalisation made.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub result: PersonalisationResult,
    pub user_dir: PathBuf,
    pub projector_dir: PathBuf,
    pub adapt_utterances: usize,
    pub adapt_seconds: f64,
    pub heldout_utterances: usize,
}

/// The user's utterances from a manifest (one speaker) or a wav+txt folder, with `adapt` and `heldout`.
fn user_utterances(request: &Request) -> Result<(Manifest, Vec<Utterance>), PersonalError> {
    let data = &request.data;
    if data.is_dir() {
        let mut utts = tinyalign_data::import_wav_txt(
            data,
            Some(&request.user),
            Split::Adapt,
            "the user's own recordings",
            data,
        )?;
        utts.sort_by(|a, b| a.id.cmp(&b.id));
        let mut order: Vec<usize> = (0..utts.len()).collect();
        tinyalign_data::seeded_shuffle(&mut order, request.seed);
        let heldout = (utts.len() as f64 * 0.3).round().max(1.0) as usize;
        for &i in &order[..heldout.min(utts.len())] {
            utts[i].split = Split::Heldout;
        }
        let manifest = Manifest::new(data, utts.clone());
        return Ok((manifest, utts));
    }
    let manifest = Manifest::read(data)?;
    let mut speakers: Vec<&str> = manifest
        .utterances
        .iter()
        .filter(|u| matches!(u.split, Split::Adapt | Split::Heldout))
        .map(|u| u.speaker.as_str())
        .collect();
    speakers.sort();
    speakers.dedup();
    let input = |message: String| Err(PersonalError::Input(message));
    let speaker = match (&request.speaker, speakers.as_slice()) {
        (Some(s), _) if speakers.contains(&s.as_str()) => s.clone(),
        (Some(s), _) => {
            return input(format!(
                "{}: no adapt/heldout utterances of speaker `{s}` (there are: {})",
                data.display(),
                speakers.join(", ")
            ));
        }
        (None, [one]) => one.to_string(),
        (None, []) => {
            return input(format!(
                "{}: no `adapt`/`heldout` utterances to personalise with",
                data.display()
            ));
        }
        (None, many) => {
            return input(format!(
                "{} has several speakers; pick one with --speaker ({})",
                data.display(),
                many.join(", ")
            ));
        }
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
fn copy_into(
    user_dir: &Path,
    source: &Manifest,
    utts: &[Utterance],
) -> Result<Manifest, PersonalError> {
    let audio_dir = user_dir.join("audio");
    std::fs::create_dir_all(&audio_dir)
        .map_err(|e| PersonalError::Input(format!("{}: {e}", audio_dir.display())))?;
    let mut copied = Vec::with_capacity(utts.len());
    for (i, u) in utts.iter().enumerate() {
        let from = source.audio_path(u);
        let name = from
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "audio.wav".into());
        let to = audio_dir.join(format!("{i:05}-{name}"));
        if !to.exists() {
            let bytes = std::fs::read(&from).map_err(|e| {
                PersonalError::Input(format!("reading {} ({}): {e}", from.display(), u.id))
            })?;
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
    models: &Models,
    projector: &Path,
    limit: usize,
    out: &Path,
    what: &str,
) -> Result<EvalReport, PersonalError> {
    let assistant = Assistant::load(&models.whisper_dir, &models.llm_path, projector)?;
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

/// The fine-tuning config: the base's, on the user's `adapt` utterances (validation watches 16 of them:
/// held-out audio never steers training), with the request's schedule.
fn adaptation_config(
    base: TrainConfig,
    user_dir: &Path,
    request: &Request,
    adapt: usize,
) -> TrainConfig {
    let mut config = base;
    config.data.manifest = user_dir.join("manifest.jsonl").display().to_string();
    config.data.train_splits = vec!["adapt".into()];
    config.data.valid_splits = vec!["adapt".into()];
    config.data.max_train = 0;
    config.data.max_valid = 16;
    let ctc = config.loss.objective == Objective::Ctc;
    let steps = request.steps.unwrap_or(if ctc { 600 } else { 150 });
    config.optim.max_steps = steps;
    config.optim.lr = request.lr.unwrap_or(if ctc { 1e-3 } else { 3e-4 });
    config.optim.warmup_steps = (steps / 10).max(1);
    config.optim.validate_every = (steps / 6).max(1);
    config.optim.patience = 0;
    config.optim.max_seconds = 0.0;
    // On the device the LLM never runs: a base trained with the LLM in the loop adapts with EmbedLink; a
    // CTC base keeps CTC (its head would be meaningless under EmbedLink's pooled targets).
    if config.loss.objective == Objective::LlmInTheLoop {
        config.loss.objective = Objective::Embedlink;
    }
    config.optim.seed = request.seed;
    config.optim.batch_size = config.optim.batch_size.min(adapt);
    config
}

/// Personalises `request.user` in `store`: copies, evaluates, adapts, evaluates again, writes
/// `personalization.json`.
pub fn personalize(
    store: &UserStore,
    request: &Request,
    models: &Models,
) -> Result<Outcome, PersonalError> {
    UserStore::check_name(&request.user)?;
    let base = request.base.canonicalize().map_err(|_| {
        PersonalError::Input(format!(
            "base projector {}: train one first (`cargo xtask train`) or pass --base RUN_DIR",
            request.base.display()
        ))
    })?;
    let config_path = base.join("config.toml");
    let base_config = TrainConfig::from_toml(
        &std::fs::read_to_string(&config_path)
            .map_err(|e| PersonalError::Input(format!("{}: {e}", config_path.display())))?,
        "base config.toml",
    )?;
    let (source, utts) = user_utterances(request)?;
    let adapt: Vec<&Utterance> = utts.iter().filter(|u| u.split == Split::Adapt).collect();
    let heldout = utts.iter().filter(|u| u.split == Split::Heldout).count();
    if adapt.is_empty() || heldout == 0 {
        return Err(PersonalError::Input(format!(
            "personalising needs `adapt` and `heldout` utterances; {} has {} and {heldout}",
            request.data.display(),
            adapt.len()
        )));
    }
    let adapt_seconds: f64 = adapt.iter().map(|u| u.duration_s).sum();
    // Absolute: the trainer resolves relative manifest paths against the cache folder.
    let user_dir = store
        .create(&request.user)?
        .canonicalize()
        .map_err(|e| PersonalError::Input(format!("the user's folder: {e}")))?;
    let manifest = copy_into(&user_dir, &source, &utts)?;
    eprintln!(
        "user `{}`: {} adapt utterances ({:.1} min), {heldout} held out → {}",
        request.user,
        adapt.len(),
        adapt_seconds / 60.0,
        user_dir.display()
    );

    let limit = request.eval_limit;
    let before = evaluate(
        &manifest,
        models,
        &base,
        limit,
        &user_dir.join("eval-before"),
        "before",
    )?;
    let config = adaptation_config(base_config, &user_dir, request, adapt.len());
    let projector_dir = user_dir.join("projector");
    let _ = std::fs::remove_dir_all(&projector_dir);
    let options = TrainOptions {
        run_dir: projector_dir.clone(),
        cache_dir: models.cache_dir.clone(),
        whisper_dir: models.whisper_dir.clone(),
        llm_path: models.llm_path.clone(),
        resume: false,
        stop: Arc::new(AtomicBool::new(false)),
        verbose: true,
        interrupt_at_step: None,
        init_from: Some(base.clone()),
        feature_dir: Some(user_dir.join("features")),
        device: request.device,
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
        models,
        &projector_dir,
        limit,
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
        user: request.user.clone(),
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
    let json = serde_json::to_vec_pretty(&result)
        .map_err(|e| PersonalError::Input(format!("personalization.json: {e}")))?;
    tinyalign_data::write_atomic(&user_dir.join("personalization.json"), &json)?;
    Ok(Outcome {
        result,
        user_dir,
        projector_dir,
        adapt_utterances: adapt.len(),
        adapt_seconds,
        heldout_utterances: heldout,
    })
}
