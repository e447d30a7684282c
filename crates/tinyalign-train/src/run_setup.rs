//! A run's first stage: the data, the frozen models, the class set, the projector and the examples (their
//! features cached, their targets built), after which the frozen LLM leaves memory.

use std::time::Instant;

use tinyalign_data::AugmentPolicy;
use tinyalign_projector::{Projector, ProjectorConfig, ProjectorOutput};

use crate::batch::{Example, ExampleBuilder};
use crate::ctc_objective::{self, ClassSet};
use crate::device::TrainDevice;
use crate::features::FeatureCache;
use crate::in_the_loop::LoopContext;
use crate::prepare::{load_encoder, read_manifest, select};
use crate::run_files::{base_classes, load_base};
use crate::run_folder::RunFolder;
use crate::targets::{TargetBuilder, TargetTable};
use crate::trainer::{TrainOptions, load_llm};
use crate::{Objective, TrainConfig, TrainError};

/// Everything the loop needs, and what the summary reports of the setup.
pub(crate) struct PreparedRun<D: TrainDevice> {
    pub(crate) projector: Projector<D>,
    pub(crate) projector_config: ProjectorConfig,
    pub(crate) classes: ClassSet<D>,
    /// The rows EmbedLink's targets are looked up in (empty for CTC, whose examples hold ids only).
    pub(crate) target_table: TargetTable,
    /// LLM-in-the-loop only: the frozen LLM's differentiable graph.
    pub(crate) in_loop: Option<LoopContext>,
    pub(crate) train_set: Vec<Example>,
    pub(crate) valid_set: Vec<Example>,
    pub(crate) encoder_hash: String,
    pub(crate) llm_hash: String,
    /// `1 / rms²` of the LLM's embedding rows: scales EmbedLink's MSE to the embeddings' size.
    pub(crate) mse_scale: f32,
    pub(crate) pad_id: u32,
    pub(crate) train_utterances: usize,
    pub(crate) too_short_for_ctc: usize,
    pub(crate) features_computed: usize,
    pub(crate) features_reused: usize,
    pub(crate) feature_seconds: f64,
}

pub(crate) fn prepare_run<D: TrainDevice>(
    config: &TrainConfig,
    options: &TrainOptions,
    run: &RunFolder,
    dev: D,
    say: &dyn Fn(String),
) -> Result<PreparedRun<D>, TrainError> {
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
    let mut projector = Projector::init(projector_config.clone(), config.optim.seed, dev.clone())?;
    if let Some(base) = &options.init_from {
        projector = load_base(base, &projector_config, dev)?;
        say(format!("starting from {}", base.display()));
    }
    say(format!(
        "projector: {:?}{}, {} parameters, output RMS {:.4}, {} classes, training on {}",
        p.kind,
        if config.loss.objective == Objective::Ctc {
            " with a CTC head"
        } else {
            ""
        },
        projector.parameter_count(),
        targets.embedding_rms,
        class_ids.len(),
        options.device
    ));
    let classes = ClassSet::new(class_ids, &llm, &projector)?;
    let target_table = match config.loss.objective {
        Objective::Ctc => TargetTable::default(),
        _ => targets.table(
            train_utts
                .iter()
                .chain(&valid_utts)
                .map(|u| u.text.as_str()),
        )?,
    };
    if !target_table.is_empty() {
        say(format!(
            "EmbedLink targets: the embedding rows of {} distinct tokens, looked up per batch",
            target_table.len()
        ));
    }

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
        run.write_augmentations(&examples.augmentations)?;
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
    // Targets, answers and class rows are built, so the frozen LLM's weights (~0.5 GB for Qwen2.5-0.5B as
    // stored, more for larger ones; the in-the-loop graph holds its own copy) and the encoder leave memory
    // before the loop, which then holds no more for a larger LLM. Measured on the 20-hour `synth-wide` run
    // (18,034 classes, 20 steps and one validation): peak RSS 1.54 → 1.35 GB, the same validation scores.
    // A small run's peak is at load instead (the GGUF's bytes and the model side by side: 1.31 GB either
    // way).
    Ok(PreparedRun {
        projector,
        projector_config,
        classes,
        target_table,
        in_loop,
        train_set,
        valid_set,
        encoder_hash,
        llm_hash,
        mse_scale: 1.0 / (targets.embedding_rms * targets.embedding_rms),
        pad_id: targets.pad_id(),
        train_utterances: train_utts.len(),
        too_short_for_ctc,
        features_computed: cache.computed,
        features_reused: cache.reused,
        feature_seconds,
    })
}
