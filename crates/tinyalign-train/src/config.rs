//! Run configuration, read from a TOML preset (`configs/*.toml`); unknown keys are errors.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tinyalign_projector::{ProjectorKind, TokenCount};

use crate::TrainError;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub data: DataConfig,
    pub projector: ProjectorSizes,
    pub loss: LossConfig,
    pub optim: OptimConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Manifest path; relative paths are resolved against the model cache.
    pub manifest: String,
    pub train_splits: Vec<String>,
    pub valid_splits: Vec<String>,
    /// Use at most this many training utterances (0 = all); the first ones in id order.
    #[serde(default)]
    pub max_train: usize,
    #[serde(default)]
    pub max_valid: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectorSizes {
    pub kind: ProjectorKind,
    pub d_model: usize,
    pub layers: usize,
    pub heads: usize,
    pub ffn_dim: usize,
    /// Frames stacked by the linear/MLP baselines.
    pub stack: usize,
    pub tokens: TokenCount,
}

/// EmbedLink's loss: `mse_weight · MSE / rms² + cosine_weight · (1 − cos)`, where rms is the LLM embedding
/// table's RMS (so the MSE term is scale-free). Target positions past the transcript hold the embedding of
/// `pad_text`'s first token and weigh `pad_weight` (0 masks them out).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossConfig {
    pub mse_weight: f32,
    pub cosine_weight: f32,
    pub pad_weight: f32,
    pub pad_text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    pub lr: f32,
    pub weight_decay: f32,
    pub warmup_steps: u64,
    pub max_steps: u64,
    pub batch_size: usize,
    pub grad_clip: f32,
    pub validate_every: u64,
    /// Stop after this many validations without improvement (0 = never).
    pub patience: u64,
    pub seed: u64,
}

impl TrainConfig {
    pub fn from_toml(text: &str, name: &str) -> Result<Self, TrainError> {
        let config: Self =
            toml::from_str(text).map_err(|e| TrainError::Config(format!("{name}: {e}")))?;
        config
            .validate()
            .map_err(|e| TrainError::Config(format!("{name}: {e}")))?;
        Ok(config)
    }

    pub fn read(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TrainError::Io(format!("{}: {e}", path.display())))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("configs serialise")
    }

    fn validate(&self) -> Result<(), String> {
        let o = &self.optim;
        if o.batch_size == 0 || o.max_steps == 0 || o.validate_every == 0 {
            return Err("batch_size, max_steps and validate_every must be at least 1".into());
        }
        if !(o.lr.is_finite() && o.lr > 0.0 && o.grad_clip.is_finite() && o.grad_clip > 0.0) {
            return Err("lr and grad_clip must be positive".into());
        }
        let l = &self.loss;
        if l.mse_weight < 0.0
            || l.cosine_weight < 0.0
            || l.mse_weight + l.cosine_weight <= 0.0
            || l.pad_weight < 0.0
        {
            return Err("loss weights must be ≥ 0 with mse_weight + cosine_weight > 0".into());
        }
        if self.data.train_splits.is_empty() || self.data.valid_splits.is_empty() {
            return Err("name at least one train and one valid split".into());
        }
        Ok(())
    }

    /// Learning rate at `step` (0-based): linear warm-up, then cosine decay to 10% of the peak.
    pub fn lr_at(&self, step: u64) -> f32 {
        let o = &self.optim;
        if step < o.warmup_steps {
            return o.lr * (step + 1) as f32 / o.warmup_steps as f32;
        }
        let span = o.max_steps.saturating_sub(o.warmup_steps).max(1);
        let progress = ((step - o.warmup_steps) as f32 / span as f32).min(1.0);
        o.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f32::consts::PI * progress).cos()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_unknown_keys_are_refused() {
        for preset in ["smoke", "default", "full"] {
            let path =
                Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../configs/{preset}.toml"));
            let config = TrainConfig::read(&path).unwrap();
            assert_eq!(
                TrainConfig::from_toml(&config.to_toml(), "again").unwrap(),
                config
            );
        }
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml"),
        )
        .unwrap();
        let err =
            TrainConfig::from_toml(&text.replace("[optim]", "[optim]\nlearning_rate = 3"), "x")
                .unwrap_err();
        assert!(err.to_string().contains("learning_rate"), "{err}");
    }

    #[test]
    fn schedule_warms_up_then_decays() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml");
        let mut c = TrainConfig::read(&path).unwrap();
        c.optim.warmup_steps = 10;
        c.optim.max_steps = 110;
        c.optim.lr = 1.0;
        assert!((c.lr_at(0) - 0.1).abs() < 1e-6 && (c.lr_at(9) - 1.0).abs() < 1e-6);
        assert!((c.lr_at(60) - 0.55).abs() < 1e-3 && (c.lr_at(110) - 0.1).abs() < 1e-6);
    }
}
