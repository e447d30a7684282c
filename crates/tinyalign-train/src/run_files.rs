//! A run folder's files: checkpoints (weights, optimiser moments, state; written so that an interrupted
//! write is never used), the best projector with its manifest, and reading trained projectors back.

use std::path::Path;

use tinyalign_nn::{AdamW, NnDevice};
use tinyalign_projector::{
    MANIFEST_FILE, MANIFEST_FORMAT, Projector, ProjectorConfig, ProjectorManifest, ProjectorOutput,
};
use tinyalign_weights::TensorMap;
use tinyalign_weights::st::{StoreAs, read_safetensors, write_safetensors};

use crate::trainer::io;
use crate::{Objective, TrainError};

pub(crate) fn write_checkpoint<D: NnDevice>(
    dir: &Path,
    projector: &mut Projector<D>,
    opt: &AdamW<D>,
    state: &CheckpointState,
) -> Result<(), TrainError> {
    let weights = write_safetensors(&projector.state_dict(), StoreAs::F32, &[])?;
    let moments = write_safetensors(&opt.state(), StoreAs::F32, &[])?;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    // The state file is written last: a checkpoint without it (interrupted mid-write) is not used.
    let state_path = dir.join("state.json");
    let _ = std::fs::remove_file(&state_path);
    tinyalign_data::write_atomic(&dir.join("projector.safetensors"), &weights)?;
    tinyalign_data::write_atomic(&dir.join("optimizer.safetensors"), &moments)?;
    let json = serde_json::to_vec_pretty(state).expect("state serialises");
    tinyalign_data::write_atomic(&state_path, &json).map_err(TrainError::from)
}

pub(crate) fn read_map(path: &Path) -> Result<TensorMap, TrainError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    read_safetensors(&bytes, &path.display().to_string()).map_err(TrainError::from)
}

/// A trained projector to start from, on `dev`; its config (from projector.json) must be the one this run
/// builds.
pub(crate) fn load_base<D: NnDevice>(
    dir: &Path,
    expected: &ProjectorConfig,
    dev: D,
) -> Result<Projector<D>, TrainError> {
    let (found, weights) = read_run_projector(dir)?;
    if !same_but_classes(&found, expected) {
        return Err(TrainError::Config(format!(
            "the base projector in {} has another shape than this run's config: {found:?} vs {expected:?}",
            dir.display(),
        )));
    }
    // The run's classes (the base's and this data's tokens) replace the base's: nothing about a class is
    // learned, so the head takes new ones as they are.
    Projector::load(expected.clone(), &weights, dev)
        .map_err(|e| TrainError::Model(format!("{}: {e}", dir.display())))
}

/// Equal configs, except that a CTC head's class list may differ.
fn same_but_classes(a: &ProjectorConfig, b: &ProjectorConfig) -> bool {
    let without_classes = |c: &ProjectorConfig| {
        let mut c = c.clone();
        if let ProjectorOutput::Ctc { classes, .. } = &mut c.output {
            classes.clear();
        }
        c
    };
    without_classes(a) == without_classes(b)
}

/// The CTC classes of the base projector in run folder `dir`, if it has a CTC head.
pub(crate) fn base_classes(dir: &Path) -> Result<Option<Vec<u32>>, TrainError> {
    Ok(read_run_projector(dir)?
        .0
        .ctc_classes()
        .map(<[u32]>::to_vec))
}

/// The projector of a run folder (projector.json + projector.safetensors), on the CPU.
pub(crate) fn load_run_projector(dir: &Path) -> Result<Projector, TrainError> {
    let (config, weights) = read_run_projector(dir)?;
    Projector::load(config, &weights, tinyalign_nn::cpu())
        .map_err(|e| TrainError::Model(format!("{}: {e}", dir.display())))
}

/// The config and weights of a run folder's projector.
pub(crate) fn read_run_projector(dir: &Path) -> Result<(ProjectorConfig, TensorMap), TrainError> {
    let manifest = ProjectorManifest::read(dir)?;
    Ok((
        manifest.projector,
        read_map(&dir.join("projector.safetensors"))?,
    ))
}

/// The best projector so far: weights, then the manifest that ties them to the models they were trained
/// for (each written atomically).
pub(crate) fn save_projector<D: NnDevice>(
    run: &Path,
    projector: &mut Projector<D>,
    manifest: &ProjectorManifest,
) -> Result<(), TrainError> {
    let weights = write_safetensors(&projector.state_dict(), StoreAs::F32, &[("format", "pt")])?;
    tinyalign_data::write_atomic(&run.join("projector.safetensors"), &weights)?;
    tinyalign_data::write_atomic(&run.join(MANIFEST_FILE), &manifest.to_json())
        .map_err(TrainError::from)
}

/// A manifest for this run's projector with the best step's scores (see [`ProjectorManifest`]).
pub(crate) struct ManifestParts<'a> {
    pub config: &'a ProjectorConfig,
    pub encoder_hash: &'a str,
    pub llm_hash: &'a str,
    pub llm: &'a str,
    pub objective: Objective,
    pub train_utterances: usize,
}

impl ManifestParts<'_> {
    pub fn manifest(&self, state: &CheckpointState) -> ProjectorManifest {
        ProjectorManifest {
            format: MANIFEST_FORMAT.into(),
            projector: self.config.clone(),
            encoder_sha256: self.encoder_hash.into(),
            llm_sha256: self.llm_hash.into(),
            llm: Some(self.llm.into()),
            frontend_version: crate::features::FRONTEND_VERSION,
            objective: self.objective.name().into(),
            step: state.step,
            valid_loss: state.best_valid,
            valid_cosine: state.best_valid_cosine,
            valid_readout_error: state.best_readout_error,
            train_utterances: self.train_utterances,
        }
    }
}

/// Where a run stands: written with every checkpoint, read on `--resume`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct CheckpointState {
    pub step: u64,
    pub best_valid: Option<f32>,
    pub best_step: Option<u64>,
    #[serde(default)]
    pub best_valid_cosine: Option<f32>,
    /// The token readout's error rate at the best step: what picks the best step.
    #[serde(default)]
    pub best_readout_error: Option<f32>,
    pub bad_validations: u64,
    pub seconds: f64,
}

impl CheckpointState {
    /// Records a validation: the token readout picks the best step (what the LLM will be given is what
    /// matters) and the loss breaks ties, e.g. while a CTC head still emits only blanks. Returns whether it
    /// is the new best (then the caller saves the projector).
    pub(crate) fn record_validation(
        &mut self,
        valid_loss: f32,
        readout_error: f32,
        valid_cosine: Option<f32>,
    ) -> bool {
        let improved = match (self.best_readout_error, self.best_valid) {
            (Some(best_error), Some(best_loss)) => {
                readout_error < best_error
                    || (readout_error == best_error && valid_loss < best_loss)
            }
            _ => true,
        };
        if improved {
            self.best_valid = Some(valid_loss);
            self.best_readout_error = Some(readout_error);
            self.best_step = Some(self.step);
            self.bad_validations = 0;
            self.best_valid_cosine = valid_cosine;
        } else {
            self.bad_validations += 1;
        }
        improved
    }
}

/// The checkpoint in `dir`, if a whole one is there (its state file is written last): the state and the
/// projector's weights, with the optimiser's moments loaded into `opt`.
pub(crate) fn read_checkpoint<D: NnDevice>(
    dir: &Path,
    opt: &mut AdamW<D>,
) -> Result<Option<(CheckpointState, TensorMap)>, TrainError> {
    let state_path = dir.join("state.json");
    if !state_path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&state_path).map_err(io(dir))?;
    let state: CheckpointState = serde_json::from_str(&text)
        .map_err(|e| TrainError::Io(format!("checkpoint state {}: {e}", state_path.display())))?;
    let weights = read_map(&dir.join("projector.safetensors"))?;
    opt.load_state(&read_map(&dir.join("optimizer.safetensors"))?)?;
    Ok(Some((state, weights)))
}
