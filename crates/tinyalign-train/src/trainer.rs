//! The EmbedLink training loop: length-bucketed seeded batches, AdamW with warm-up + cosine decay and
//! gradient clipping, validation every N steps with early stopping, NaN/inf detection, atomic checkpoints and
//! exact resumption (the batch order is a function of the seed and the step, so a checkpoint only needs the
//! weights, the optimiser moments and the step).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tinyalign_data::{AugmentPolicy, Manifest};
use tinyalign_llm::{LlamaModel, Precision};
use tinyalign_nn::AdamW;
use tinyalign_projector::{Projector, ProjectorConfig, ProjectorOutput};

use crate::batch::{Example, ExampleBuilder, epoch_batches, make_batch, make_example};
use crate::ctc_objective::{self, ClassSet};
use crate::device::{ComputeDevice, TrainDevice};
use crate::features::{FeatureCache, sha256_hex};
use crate::in_the_loop::LoopContext;
use crate::objective::{ObjectiveParts, evaluate, objective_loss};
use crate::prepare::{load_encoder, read_manifest, select};
use crate::run_files::{
    CheckpointState, ManifestParts, base_classes, load_base, load_run_projector, open_metrics,
    read_checkpoint, save_projector, write_checkpoint,
};
use crate::targets::TargetBuilder;
use crate::{Objective, TrainConfig, TrainError};

/// Where the models and data are, and how to run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub run_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// Whisper model folder (config.json + model.safetensors).
    pub whisper_dir: PathBuf,
    pub llm_path: PathBuf,
    /// Continue from `run_dir/checkpoint` if there is one.
    pub resume: bool,
    /// Set (e.g. by Ctrl-C) to stop after the current step with a checkpoint.
    pub stop: Arc<AtomicBool>,
    /// Print progress lines to stderr.
    pub verbose: bool,
    /// Behave as if interrupted once this many steps are done (a deterministic Ctrl-C, for tests).
    pub interrupt_at_step: Option<u64>,
    /// Start from this trained projector (a run folder: projector.safetensors + projector.json) instead of
    /// a fresh initialisation: personalisation. Its projector config must equal the run's.
    pub init_from: Option<PathBuf>,
    /// Where encoder features are cached (default `<cache_dir>/features`); a user's own folder keeps their
    /// features apart.
    pub feature_dir: Option<PathBuf>,
    /// Where the projector trains (the frozen models always run on the CPU).
    pub device: ComputeDevice,
}

impl TrainOptions {
    /// Where encoder features are cached: `feature_dir`, else `<cache_dir>/features`.
    pub(crate) fn features_dir(&self) -> PathBuf {
        self.feature_dir
            .clone()
            .unwrap_or_else(|| self.cache_dir.join("features"))
    }
}

/// The frozen LLM read once from its GGUF: the inference model, the file's sha256 and, for LLM-in-the-loop,
/// the differentiable graph built from the same parsed file.
fn load_llm(
    path: &Path,
    objective: Objective,
) -> Result<(LlamaModel, String, Option<LoopContext>), TrainError> {
    let model = |e: tinyalign_llm::LlmError| TrainError::Model(e.to_string());
    let bytes = tinyalign_llm::read_llm_bytes(path).map_err(model)?;
    let file = tinyalign_weights::gguf::GgufFile::parse(&bytes, &path.display().to_string())
        .map_err(|e| TrainError::Model(e.to_string()))?;
    let llm = LlamaModel::from_gguf(&file, Precision::Native).map_err(model)?;
    let in_loop = match objective {
        Objective::Embedlink | Objective::Ctc => None,
        Objective::LlmInTheLoop => Some(LoopContext::new(&llm, &file)?),
    };
    Ok((llm, sha256_hex(&bytes), in_loop))
}

/// Why a run's loop ended; written to `summary.json` as its snake-case name (what earlier runs wrote as a
/// string, so their summaries still load).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The step budget (`optim.max_steps`) was reached.
    MaxSteps,
    /// Ctrl-C (or a test's interruption): a checkpoint was written, `--resume` continues.
    Interrupted,
    /// `optim.patience` validations without improvement.
    EarlyStopping,
    /// `optim.max_seconds` ran out.
    TimeBudget,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::MaxSteps => "max_steps",
            StopReason::Interrupted => "interrupted",
            StopReason::EarlyStopping => "early_stopping",
            StopReason::TimeBudget => "time_budget",
        }
    }
}

/// What a run did, written to `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    pub steps: u64,
    pub stopped_because: StopReason,
    pub best_valid_loss: Option<f32>,
    pub best_valid_cosine: Option<f32>,
    /// Token readout error rate on the validation split at the best step (LLM tokens; no LLM runs).
    #[serde(default)]
    pub best_valid_readout_error: Option<f32>,
    /// Tokens in the class set (the CTC head's classes; the pooled readout's candidates).
    #[serde(default)]
    pub classes: usize,
    /// Share of the validation transcripts' tokens inside the class set.
    #[serde(default)]
    pub valid_token_coverage: Option<f32>,
    /// Training utterances CTC could not use (fewer frames than their tokens need).
    #[serde(default)]
    pub too_short_for_ctc: usize,
    pub best_step: Option<u64>,
    pub train_utterances: usize,
    /// Training examples: the utterances and their augmented copies.
    #[serde(default)]
    pub train_examples: usize,
    pub valid_utterances: usize,
    pub parameters: usize,
    pub features_computed: usize,
    pub features_reused: usize,
    pub feature_seconds: f64,
    pub training_seconds: f64,
    pub peak_rss_bytes: Option<u64>,
    pub projector: PathBuf,
    /// Where the projector trained (`cpu`, `cuda:0`).
    #[serde(default)]
    pub device: String,
}

pub(crate) fn io<E: std::fmt::Display>(what: &Path) -> impl Fn(E) -> TrainError + '_ {
    move |e| TrainError::Io(format!("{}: {e}", what.display()))
}

/// How well a trained projector aligns, measured without running the LLM.
#[derive(Debug, Clone, Copy)]
pub struct Alignment {
    /// Mean cosine between its tokens and the EmbedLink targets (transcript rows; pooled projectors).
    pub cosine: Option<f32>,
    /// Token readout error rate: a CTC head's greedy path, or each pooled token's nearest class.
    pub readout_error: f32,
}

/// [`Alignment`] of the projector in run folder `projector_dir` on the manifest's `split` utterances (at
/// most `limit`, 0 = all). The readout's classes are the CTC head's, or for a pooled projector the split's
/// own transcript tokens (an optimistic candidate set: say so where it is quoted). Features come from (and
/// go to) `options.feature_dir`; `config` gives the target padding.
pub fn projector_alignment(
    projector_dir: &Path,
    manifest_path: &Path,
    split: &str,
    limit: usize,
    config: &TrainConfig,
    options: &TrainOptions,
) -> Result<Alignment, TrainError> {
    let projector = load_run_projector(projector_dir)?;
    let manifest = Manifest::read(manifest_path).map_err(|e| TrainError::Data(e.to_string()))?;
    let utts = select(&manifest, &[split.to_string()], limit)?;
    let (encoder, encoder_hash) = load_encoder(options)?;
    let llm = LlamaModel::load_gguf(&options.llm_path, Precision::Native)
        .map_err(|e| TrainError::Model(e.to_string()))?;
    let targets = TargetBuilder::new(&llm, &config.loss.pad_text, config.loss.pad_weight)?;
    let mut cache = FeatureCache::new(&options.features_dir(), encoder, &encoder_hash)?;
    let examples = utts
        .iter()
        .map(|u| {
            make_example(
                &mut cache,
                &manifest,
                u,
                None,
                projector.config(),
                &targets,
                None,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    cache.flush()?;
    let class_ids = match projector.config().ctc_classes() {
        Some(classes) => classes.to_vec(),
        None => ctc_objective::transcript_classes(&llm, utts.iter().map(|u| u.text.as_str())),
    };
    let classes = ClassSet::new(class_ids, &llm, &projector)?;
    let parts = ObjectiveParts {
        in_loop: None,
        classes: &classes,
        mse_scale: 1.0 / (targets.embedding_rms * targets.embedding_rms),
        pad_id: targets.pad_id(),
    };
    let validation = evaluate(&projector, &examples, config, &parts)?;
    Ok(Alignment {
        cosine: validation.cosine,
        readout_error: validation.readout.rate(),
    })
}

/// Trains a projector with EmbedLink targets on `options.device`; everything goes into `options.run_dir`.
pub fn train(config: &TrainConfig, options: &TrainOptions) -> Result<TrainSummary, TrainError> {
    match options.device {
        ComputeDevice::Cpu => train_on(config, options, tinyalign_nn::cpu()),
        ComputeDevice::Cuda(ordinal) => train_on_cuda(config, options, ordinal),
    }
}

#[cfg(feature = "cuda")]
fn train_on_cuda(
    config: &TrainConfig,
    options: &TrainOptions,
    ordinal: usize,
) -> Result<TrainSummary, TrainError> {
    if config.loss.objective == Objective::LlmInTheLoop {
        return Err(TrainError::Config(
            crate::objective::LOOP_ON_CPU_ONLY.into(),
        ));
    }
    let dev = tinyalign_nn::cuda(ordinal).map_err(|e| TrainError::Config(e.to_string()))?;
    train_on(config, options, dev)
}

#[cfg(not(feature = "cuda"))]
fn train_on_cuda(_: &TrainConfig, _: &TrainOptions, _: usize) -> Result<TrainSummary, TrainError> {
    Err(TrainError::Config(
        "this build has no CUDA support: rebuild with `--features cuda` (needs the CUDA toolkit; see the README)"
            .into(),
    ))
}

fn train_on<D: TrainDevice>(
    config: &TrainConfig,
    options: &TrainOptions,
    dev: D,
) -> Result<TrainSummary, TrainError> {
    let say = |line: String| {
        if options.verbose {
            eprintln!("{line}");
        }
    };
    let run = &options.run_dir;
    std::fs::create_dir_all(run).map_err(io(run))?;
    tinyalign_data::write_atomic(&run.join("config.toml"), config.to_toml().as_bytes())?;

    // Data.
    let manifest = read_manifest(config, options)?;
    let train_utts = select(&manifest, &config.data.train_splits, config.data.max_train)?;
    let valid_utts = select(&manifest, &config.data.valid_splits, config.data.max_valid)?;

    // Frozen models.
    let (encoder, encoder_hash) = load_encoder(options)?;
    let d_audio = encoder.config().d_model;
    if config.loss.objective == Objective::LlmInTheLoop {
        say("LLM-in-the-loop: building the frozen LLM's differentiable graph (f32 weights)".into());
    }
    let (llm, llm_hash, in_loop) = load_llm(&options.llm_path, config.loss.objective)?;
    let targets = TargetBuilder::new(&llm, &config.loss.pad_text, config.loss.pad_weight)?;

    // The class set: every token of the training transcripts (and of the base's, when personalising a CTC
    // projector); the pooled readout also needs the padding token its targets hold.
    let mut class_ids =
        ctc_objective::transcript_classes(&llm, train_utts.iter().map(|u| u.text.as_str()));
    if let Some(base) = &options.init_from
        && let Some(base) = base_classes(base)?
    {
        class_ids.extend(base);
    }
    if config.loss.objective != Objective::Ctc {
        class_ids.push(targets.pad_id());
    }
    class_ids.sort_unstable();
    class_ids.dedup();
    let output = match config.loss.objective {
        Objective::Ctc => ProjectorOutput::Ctc {
            classes: class_ids.clone(),
            logit_scale: config.loss.ctc_logit_scale,
        },
        _ => ProjectorOutput::Pooled,
    };

    // Projector (its T rule decides the target lengths).
    let p = &config.projector;
    let projector_config = ProjectorConfig {
        kind: p.kind,
        d_audio,
        d_llm: llm.config.hidden_size,
        d_model: p.d_model,
        layers: p.layers,
        heads: p.heads,
        ffn_dim: p.ffn_dim,
        stack: p.stack,
        tokens: p.tokens,
        frames_per_second: 50.0,
        output_rms: targets.embedding_rms,
        norm_eps: 1e-5,
        output,
    };
    let mut projector = Projector::init(projector_config.clone(), config.optim.seed, dev.clone())
        .map_err(|e| TrainError::Config(e.to_string()))?;
    if let Some(base) = &options.init_from {
        projector = load_base(base, &projector_config, dev.clone())?;
        say(format!("starting from {}", base.display()));
    }
    let parameters = projector.parameter_count();
    say(format!(
        "projector: {:?}{}, {parameters} parameters, output RMS {:.4}, {} classes, training on {}",
        p.kind,
        if config.loss.objective == Objective::Ctc {
            " with a CTC head"
        } else {
            ""
        },
        targets.embedding_rms,
        class_ids.len(),
        options.device
    ));
    let classes = ClassSet::new(class_ids, &llm, &projector)?;

    // Features (cached) and targets.
    let feature_started = Instant::now();
    let mut cache = FeatureCache::new(&options.features_dir(), encoder, &encoder_hash)?;
    let answers = in_loop.as_ref().map(|context| (context, &llm));
    let mut examples = ExampleBuilder {
        cache: &mut cache,
        manifest: &manifest,
        projector: &projector_config,
        targets: &targets,
        answers,
        augmentations: String::new(),
    };
    let mut progress = |what: &str, done: usize, total: usize| {
        if done.is_multiple_of(50) || done == total {
            say(format!("  {what} features {done}/{total}"));
        }
    };
    let train_set = examples.build(&train_utts, "train", &config.augment, &mut progress)?;
    // Validation hears the audio as it is (the default policy makes no copies).
    let valid_set = examples.build(
        &valid_utts,
        "valid",
        &AugmentPolicy::default(),
        &mut progress,
    )?;
    examples.cache.flush()?;
    if config.augment.copies > 0 {
        tinyalign_data::write_atomic(
            &run.join("augmentations.jsonl"),
            examples.augmentations.as_bytes(),
        )?;
        say(format!(
            "augmentation: {} copies of each of {} training utterances (recipes in augmentations.jsonl)",
            config.augment.copies,
            train_utts.len()
        ));
    }
    let feature_seconds = feature_started.elapsed().as_secs_f64();
    say(format!(
        "features: {} computed, {} reused from {} in {feature_seconds:.1} s",
        cache.computed,
        cache.reused,
        cache.dir().display()
    ));
    let too_short_for_ctc = if config.loss.objective == Objective::Ctc {
        // CTC needs a frame per token plus one between repeated tokens.
        let too_short = train_set
            .iter()
            .filter(|e| {
                let repeats = e.target.ids.windows(2).filter(|w| w[0] == w[1]).count();
                projector_config.tokens_for(e.features.frames()) < e.target.ids.len() + repeats
            })
            .count();
        say(format!(
            "CTC: {} frames per second after stacking; {too_short} training utterances have too few frames for their tokens and are skipped",
            projector_config.frames_per_second / projector_config.stack as f32
        ));
        too_short
    } else {
        let truncated = train_set.iter().filter(|e| e.target.truncated > 0).count();
        say(format!("{truncated} training transcripts longer than T"));
        0
    };
    let manifest_parts = ManifestParts {
        config: &projector_config,
        encoder_hash: &encoder_hash,
        llm_hash: &llm_hash,
        llm: &config.llm.model,
        objective: config.loss.objective,
        train_utterances: train_utts.len(),
    };
    let parts = ObjectiveParts {
        in_loop: in_loop.as_ref(),
        classes: &classes,
        mse_scale: 1.0 / (targets.embedding_rms * targets.embedding_rms),
        pad_id: targets.pad_id(),
    };
    // Targets, answers and class rows are built, so the frozen LLM's weights (~0.5 GB for Qwen2.5-0.5B as
    // stored, more for larger ones; the in-the-loop graph holds its own copy) leave memory before the loop,
    // which then holds no more for a larger LLM. Measured on the 20-hour `synth-wide` run (18,034 classes,
    // 20 steps and one validation): peak RSS 1.54 → 1.35 GB, the same validation scores. A small run's
    // peak is at load instead (the GGUF's bytes and the model side by side: 1.31 GB either way).
    drop(targets);
    drop(llm);

    // Optimiser, and the checkpoint to continue from.
    let mut opt = AdamW::new(config.optim.weight_decay, Some(config.optim.grad_clip));
    let checkpoint_dir = run.join("checkpoint");
    let mut state = CheckpointState::default();
    if options.resume
        && let Some((resumed, weights)) = read_checkpoint(&checkpoint_dir, &mut opt)?
    {
        state = resumed;
        projector = Projector::load(projector_config.clone(), &weights, dev.clone())
            .map_err(|e| TrainError::Model(format!("checkpoint does not fit this config: {e}")))?;
        say(format!("resuming at step {}", state.step));
    }
    let metrics_path = run.join("metrics.jsonl");
    let mut metrics = open_metrics(&metrics_path, state.step)?;

    let batches_per_epoch = train_set.len().div_ceil(config.optim.batch_size) as u64;
    let started = Instant::now();
    let mut valid_coverage = None;
    let seconds_before = state.seconds;
    let first_step = state.step;
    let mut recent_loss = Vec::new();
    let stopped_because = loop {
        if state.step >= config.optim.max_steps {
            break StopReason::MaxSteps;
        }
        if options.stop.load(Ordering::SeqCst)
            || options.interrupt_at_step.is_some_and(|s| state.step >= s)
        {
            break StopReason::Interrupted;
        }
        let epoch = state.step / batches_per_epoch;
        let order = epoch_batches(
            &train_set,
            config.optim.batch_size,
            config.optim.seed,
            epoch,
        );
        let members: Vec<&Example> = order[(state.step % batches_per_epoch) as usize]
            .iter()
            .map(|&i| &train_set[i])
            .collect();
        let batch = make_batch(&projector, &members)?;
        let out = projector.forward(tinyalign_nn::traced(&batch.x), &batch.layout);
        let class_sample_seed = config.optim.seed ^ state.step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let (total, _) = objective_loss(
            &projector,
            out,
            &batch,
            &members,
            config,
            &parts,
            Some(class_sample_seed),
        )?;
        let value = tinyalign_nn::scalar_value(&total);
        if !value.is_finite() {
            return Err(TrainError::Diverged(format!(
                "loss is {value} at step {}; the last good checkpoint is in {}",
                state.step,
                checkpoint_dir.display()
            )));
        }
        let mut grads = tinyalign_nn::backward(total);
        let lr = config.lr_at_time(state.step, seconds_before + started.elapsed().as_secs_f64());
        let report = opt.step(&mut projector, &mut grads, lr);
        if !report.grad_norm.is_finite() {
            return Err(TrainError::Diverged(format!(
                "gradient norm is {} at step {}; the last good checkpoint is in {}",
                report.grad_norm,
                state.step,
                checkpoint_dir.display()
            )));
        }
        state.step += 1;
        recent_loss.push(value);
        let elapsed = seconds_before + started.elapsed().as_secs_f64();
        let out_of_time = config.optim.max_seconds > 0.0 && elapsed >= config.optim.max_seconds;
        let mut line = json!({"step": state.step, "epoch": epoch, "loss": value, "lr": lr, "grad_norm": report.grad_norm, "seconds": elapsed});
        if state.step.is_multiple_of(config.optim.validate_every)
            || state.step == config.optim.max_steps
            || out_of_time
        {
            let validation = evaluate(&projector, &valid_set, config, &parts)?;
            let (valid_loss, valid_cos) = (validation.loss, validation.cosine);
            let readout_error = validation.readout.rate();
            line["valid_loss"] = json!(valid_loss);
            if let Some(cos) = valid_cos {
                line["valid_cosine"] = json!(cos);
            }
            line["valid_readout_error"] = json!(readout_error);
            let improved = state.record_validation(valid_loss, readout_error, valid_cos);
            if improved {
                save_projector(run, &mut projector, &manifest_parts.manifest(&state))?;
            }
            state.seconds = elapsed;
            write_checkpoint(&checkpoint_dir, &mut projector, &opt, &state)?;
            let train_mean = recent_loss.iter().sum::<f32>() / recent_loss.len().max(1) as f32;
            recent_loss.clear();
            let steps_this_session = (state.step - first_step).max(1) as f64;
            let mut eta = (config.optim.max_steps - state.step) as f64
                * started.elapsed().as_secs_f64()
                / steps_this_session;
            if config.optim.max_seconds > 0.0 {
                eta = eta.min((config.optim.max_seconds - elapsed).max(0.0));
            }
            say(format!(
                "step {:>5}/{}  train {train_mean:.4}  valid {valid_loss:.4}{}  readout {:.1}% TER{}  lr {lr:.2e}  {elapsed:.0} s  ETA {eta:.0} s",
                state.step,
                config.optim.max_steps,
                valid_cos
                    .map(|c| format!("  cos {c:.3}"))
                    .unwrap_or_default(),
                100.0 * readout_error,
                if improved { " *" } else { "" }
            ));
            valid_coverage = Some(validation.readout.coverage());
            if config.optim.patience > 0 && state.bad_validations >= config.optim.patience {
                writeln!(metrics, "{line}").map_err(io(&metrics_path))?;
                break StopReason::EarlyStopping;
            }
            if out_of_time {
                writeln!(metrics, "{line}").map_err(io(&metrics_path))?;
                break StopReason::TimeBudget;
            }
        }
        writeln!(metrics, "{line}").map_err(io(&metrics_path))?;
    };
    if stopped_because == StopReason::Interrupted {
        state.seconds = seconds_before + started.elapsed().as_secs_f64();
        write_checkpoint(&checkpoint_dir, &mut projector, &opt, &state)?;
        say(format!(
            "interrupted at step {}: checkpoint written; continue with --resume",
            state.step
        ));
    }
    crate::plot::write_loss_svg(&metrics_path, &run.join("loss.svg"))?;
    let summary = TrainSummary {
        steps: state.step,
        stopped_because,
        best_valid_loss: state.best_valid,
        best_valid_cosine: state.best_valid_cosine,
        best_valid_readout_error: state.best_readout_error,
        classes: classes.ids.len(),
        valid_token_coverage: valid_coverage,
        too_short_for_ctc,
        best_step: state.best_step,
        train_utterances: train_utts.len(),
        train_examples: train_set.len(),
        valid_utterances: valid_set.len(),
        parameters,
        features_computed: cache.computed,
        features_reused: cache.reused,
        feature_seconds,
        training_seconds: seconds_before + started.elapsed().as_secs_f64(),
        peak_rss_bytes: tinyalign_data::peak_rss_bytes(),
        projector: run.join("projector.safetensors"),
        device: options.device.to_string(),
    };
    let json = serde_json::to_vec_pretty(&summary).expect("summary serialises");
    tinyalign_data::write_atomic(&run.join("summary.json"), &json)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::StopReason;

    #[test]
    fn stop_reasons_read_and_write_the_names_earlier_summaries_hold() {
        for reason in [
            StopReason::MaxSteps,
            StopReason::Interrupted,
            StopReason::EarlyStopping,
            StopReason::TimeBudget,
        ] {
            let written = serde_json::to_string(&reason).unwrap();
            assert_eq!(written, format!("\"{}\"", reason.as_str()));
            assert_eq!(
                serde_json::from_str::<StopReason>(&written).unwrap(),
                reason
            );
        }
        assert!(serde_json::from_str::<StopReason>("\"tired\"").is_err());
    }
}
