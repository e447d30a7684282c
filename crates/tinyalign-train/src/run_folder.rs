//! A run folder and the files a run writes there: `config.toml` (at start), `augmentations.jsonl`,
//! `metrics.jsonl` (one typed [`MetricsLine`] per step), `checkpoint/` (exact resume), `projector.safetensors`
//! with its manifest (the best validation so far), `loss.svg` and `summary.json` (at the end). Paths are named
//! here once; the trainer asks for them.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::trainer::{TrainSummary, io};
use crate::{TrainConfig, TrainError};

/// One training step in `metrics.jsonl`; a validation step also carries the validation scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsLine {
    pub step: u64,
    pub epoch: u64,
    pub loss: f32,
    pub lr: f32,
    pub grad_norm: f32,
    /// Training time so far, over resumed sessions.
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_loss: Option<f32>,
    /// Pooled projectors: mean cosine between the projected tokens and their targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_cosine: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_readout_error: Option<f32>,
}

/// The lines of a `metrics.jsonl`; lines that are not metrics (none are written) are skipped.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsLine>, TrainError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// A finished run's `summary.json` (fields added since a run was written read as their defaults).
pub fn read_summary(run_dir: &Path) -> Result<TrainSummary, TrainError> {
    let path = run_dir.join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text).map_err(io(&path))
}

#[derive(Debug, Clone)]
pub(crate) struct RunFolder {
    dir: PathBuf,
}

impl RunFolder {
    /// Makes the folder (if missing) and writes the run's config into it.
    pub(crate) fn create(dir: &Path, config: &TrainConfig) -> Result<Self, TrainError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        tinyalign_data::write_atomic(&dir.join("config.toml"), config.to_toml().as_bytes())?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn checkpoint_dir(&self) -> PathBuf {
        self.dir.join("checkpoint")
    }

    pub(crate) fn projector_path(&self) -> PathBuf {
        self.dir.join("projector.safetensors")
    }

    /// `augmentations.jsonl`: one `{"id", "copy", "augmentation"}` line per augmented copy.
    pub(crate) fn write_augmentations(&self, lines: &str) -> Result<(), TrainError> {
        tinyalign_data::write_atomic(&self.dir.join("augmentations.jsonl"), lines.as_bytes())
            .map_err(TrainError::from)
    }

    /// `metrics.jsonl` cut back to exactly the lines up to `step` (the checkpoint's; 0 empties it), open
    /// for appending: a resumed run's file reads as if it had never stopped.
    pub(crate) fn metrics(&self, step: u64) -> Result<MetricsLog, TrainError> {
        let path = self.dir.join("metrics.jsonl");
        let kept: String = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                serde_json::from_str::<MetricsLine>(l).is_ok_and(|m| m.step <= step) && step > 0
            })
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, kept).map_err(io(&path))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok(MetricsLog { path, file })
    }

    /// `loss.svg` from `metrics.jsonl`.
    pub(crate) fn write_loss_plot(&self) -> Result<(), TrainError> {
        crate::plot::write_loss_svg(&self.dir.join("metrics.jsonl"), &self.dir.join("loss.svg"))
    }

    pub(crate) fn write_summary(&self, summary: &TrainSummary) -> Result<(), TrainError> {
        let json = serde_json::to_vec_pretty(summary).expect("summary serialises");
        tinyalign_data::write_atomic(&self.dir.join("summary.json"), &json)
            .map_err(TrainError::from)
    }
}

/// `metrics.jsonl`, open for appending.
#[derive(Debug)]
pub(crate) struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    pub(crate) fn append(&mut self, line: &MetricsLine) -> Result<(), TrainError> {
        let json = serde_json::to_string(line).expect("a metrics line serialises");
        writeln!(self.file, "{json}").map_err(io(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_lines_keep_the_names_earlier_runs_wrote() {
        // A validation line as the trainer wrote it before the type existed (`json!`, keys sorted).
        let old = r#"{"epoch":3,"grad_norm":0.75,"loss":2.5,"lr":0.001,"seconds":12.5,"step":40,"valid_loss":3.25,"valid_readout_error":0.5}"#;
        let line: MetricsLine = serde_json::from_str(old).unwrap();
        assert_eq!((line.step, line.epoch), (40, 3));
        assert_eq!((line.valid_loss, line.valid_cosine), (Some(3.25), None));
        // The same keys, and values that read back as the same numbers (`json!` widened f32s to f64).
        let text = serde_json::to_string(&line).unwrap();
        let keys = |json: &str| -> Vec<String> {
            let map: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(json).unwrap();
            let mut keys: Vec<String> = map.keys().cloned().collect();
            keys.sort();
            keys
        };
        assert_eq!(keys(&text), keys(old));
        assert_eq!(serde_json::from_str::<MetricsLine>(&text).unwrap(), line);
        // A step without validation has no validation keys at all.
        let plain = MetricsLine {
            valid_loss: None,
            valid_readout_error: None,
            ..line
        };
        let text = serde_json::to_string(&plain).unwrap();
        assert!(!text.contains("valid"), "{text}");
    }
}
