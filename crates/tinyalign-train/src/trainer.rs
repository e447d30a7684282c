//! Training's entry points: [`train`] (setup in `run_setup`, the loop in `train_loop`, then the summary),
//! [`projector_alignment`], and the options and summary types. Resumption is exact: the batch order is a
//! function of the seed and the step, so a checkpoint only needs the weights, the optimiser moments and the
//! step.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};
use tinyalign_data::Manifest;
use tinyalign_llm::{LlamaModel, Precision};

use crate::batch::make_example;
use crate::ctc_objective::{self, ClassSet};
use crate::device::{ComputeDevice, TrainDevice};
use crate::features::{FeatureCache, sha256_hex};
use crate::in_the_loop::LoopContext;
use crate::objective::{ObjectiveParts, evaluate};
use crate::prepare::{load_encoder, select};
use crate::run_files::{ManifestParts, load_run_projector};
use crate::run_folder::RunFolder;
use crate::run_setup::prepare_run;
use crate::targets::{TargetBuilder, TargetTable};
use crate::train_loop::{LoopInputs, training_loop};
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
pub(crate) fn load_llm(
    path: &Path,
    objective: Objective,
) -> Result<(LlamaModel, String, Option<LoopContext>), TrainError> {
    let bytes = tinyalign_llm::read_llm_bytes(path)?;
    let file = tinyalign_weights::gguf::GgufFile::parse(&bytes, &path.display().to_string())?;
    let llm = LlamaModel::from_gguf(&file, Precision::Native)?;
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
    let manifest = Manifest::read(manifest_path)?;
    let utts = select(&manifest, &[split.to_string()], limit)?;
    let (encoder, encoder_hash) = load_encoder(options)?;
    let llm = LlamaModel::load_gguf(&options.llm_path, Precision::Native)?;
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
    let target_table = match projector.config().ctc_classes() {
        Some(_) => TargetTable::default(),
        None => targets.table(utts.iter().map(|u| u.text.as_str()))?,
    };
    let parts = ObjectiveParts {
        in_loop: None,
        classes: &classes,
        targets: &target_table,
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
    let dev = tinyalign_nn::cuda(ordinal)?;
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
    let run = RunFolder::create(&options.run_dir, config)?;
    let prepared = prepare_run(config, options, &run, dev, &say)?;
    let mut projector = prepared.projector;
    let parameters = projector.parameter_count();
    let inputs = LoopInputs {
        train_set: &prepared.train_set,
        valid_set: &prepared.valid_set,
        parts: ObjectiveParts {
            in_loop: prepared.in_loop.as_ref(),
            classes: &prepared.classes,
            targets: &prepared.target_table,
            mse_scale: prepared.mse_scale,
            pad_id: prepared.pad_id,
        },
        manifest: ManifestParts {
            config: &prepared.projector_config,
            encoder_hash: &prepared.encoder_hash,
            llm_hash: &prepared.llm_hash,
            llm: &config.llm.model,
            objective: config.loss.objective,
            train_utterances: prepared.train_utterances,
        },
    };
    let outcome = training_loop(config, options, &run, projector, &inputs, &say)?;
    run.write_loss_plot()?;
    let state = &outcome.state;
    let summary = TrainSummary {
        steps: state.step,
        stopped_because: outcome.stopped_because,
        best_valid_loss: state.best_valid,
        best_valid_cosine: state.best_valid_cosine,
        best_valid_readout_error: state.best_readout_error,
        classes: prepared.classes.ids.len(),
        valid_token_coverage: outcome.valid_coverage,
        too_short_for_ctc: prepared.too_short_for_ctc,
        best_step: state.best_step,
        train_utterances: prepared.train_utterances,
        train_examples: prepared.train_set.len(),
        valid_utterances: prepared.valid_set.len(),
        parameters,
        features_computed: prepared.features_computed,
        features_reused: prepared.features_reused,
        feature_seconds: prepared.feature_seconds,
        training_seconds: outcome.seconds,
        peak_rss_bytes: tinyalign_data::peak_rss_bytes(),
        projector: run.projector_path(),
        device: options.device.to_string(),
    };
    run.write_summary(&summary)?;
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
