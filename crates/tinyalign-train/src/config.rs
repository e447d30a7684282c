//! Run configuration, read from a TOML preset (`configs/*.toml`); unknown keys are errors.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tinyalign_projector::{ProjectorKind, TokenCount};

use crate::TrainError;

/// The sections a preset may leave out (their defaults apply).
const OPTIONAL_SECTIONS: [&str; 2] = ["llm", "augment"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub data: DataConfig,
    pub projector: ProjectorSizes,
    pub loss: LossConfig,
    pub optim: OptimConfig,
    #[serde(default)]
    pub llm: LlmConfig,
    /// Training augmentation (off unless `copies` > 0); applied when features are made.
    #[serde(default)]
    pub augment: tinyalign_data::AugmentPolicy,
}

/// The frozen LLM: a short name the CLI resolves in the model cache (`smollm2-135m`, `qwen2.5-0.5b`,
/// `qwen2.5-1.5b`) or a path to a GGUF file. The projector's output width follows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    pub model: String,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            model: "smollm2-135m".into(),
        }
    }
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
    /// What the projector learns from: EmbedLink targets (the default), or the conventional
    /// LLM-in-the-loop objective (the baseline; see [`Objective`]).
    #[serde(default)]
    pub objective: Objective,
    pub mse_weight: f32,
    pub cosine_weight: f32,
    pub pad_weight: f32,
    pub pad_text: String,
    /// Weight of the token-identity term: cross-entropy of each transcript row's dot products with the
    /// batch's distinct target embeddings, its own being the label (0 = off, the paper's loss).
    #[serde(default)]
    pub token_weight: f32,
    /// The CTC objective's logit scale κ (see `ProjectorOutput::Ctc`): a frame's logit for a token is about
    /// κ × its cosine with the token's embedding.
    #[serde(default = "default_ctc_logit_scale")]
    pub ctc_logit_scale: f32,
    /// CTC only: score each training batch against this many classes (its own tokens plus a seeded
    /// uniform sample of the rest) instead of all (0 = all). With tens of thousands of words the head is
    /// most of a step's cost; validation always scores every class.
    #[serde(default)]
    pub ctc_sampled_classes: usize,
}

fn default_ctc_logit_scale() -> f32 {
    16.0
}

/// The training objective.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Tiny-Align's EmbedLink: match the LLM's input embeddings of the transcript; the LLM never runs.
    #[default]
    Embedlink,
    /// The conventional objective (SLAM-ASR and most speech-LLM work): the projected audio goes through the
    /// frozen LLM inside the transcribe prompt, and the loss is the next-token cross-entropy of the
    /// transcript (then its closing quote), back-propagated through the LLM to the projector.
    LlmInTheLoop,
    /// CTC onto the LLM's vocabulary (EmbedLink's point kept: the LLM never runs): the projector keeps one
    /// vector per stacked frame, scored against the frozen input embeddings of the training transcripts'
    /// tokens plus a learned blank, and is trained with CTC against each transcript's token ids.
    Ctc,
}

impl Objective {
    /// The name presets and manifests use.
    pub fn name(self) -> &'static str {
        match self {
            Objective::Embedlink => "embedlink",
            Objective::LlmInTheLoop => "llm_in_the_loop",
            Objective::Ctc => "ctc",
        }
    }
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
    /// Stop (validating once more) when this much training time has passed, in seconds (0 = no budget):
    /// runs of different objectives compared under the same time budget.
    #[serde(default)]
    pub max_seconds: f64,
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

    /// `text` with `section.key = value` overrides applied (`value` in TOML syntax; a bare word is taken as
    /// a string), e.g. `optim.batch_size=8`, `loss.objective=llm_in_the_loop`. Unknown keys are errors.
    pub fn from_toml_with_overrides(
        text: &str,
        name: &str,
        overrides: &[String],
    ) -> Result<Self, TrainError> {
        let bad = |m: String| TrainError::Config(format!("{name}: {m}"));
        let mut doc: toml::Table = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        for item in overrides {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| bad(format!("override `{item}` is not KEY=VALUE")))?;
            let (section, field) = key
                .trim()
                .split_once('.')
                .ok_or_else(|| bad(format!("override key `{key}` is not SECTION.FIELD")))?;
            let value = value.trim();
            let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.to_string()));
            // Sections with defaults may be absent from a preset and still be overridden.
            if OPTIONAL_SECTIONS.contains(&section) && !doc.contains_key(section) {
                doc.insert(section.to_string(), toml::Value::Table(toml::Table::new()));
            }
            let table = doc
                .get_mut(section)
                .and_then(toml::Value::as_table_mut)
                .ok_or_else(|| bad(format!("no section `[{section}]`")))?;
            table.insert(field.to_string(), parsed);
        }
        let merged = toml::to_string(&doc).map_err(|e| bad(e.to_string()))?;
        Self::from_toml(&merged, name)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("configs serialise")
    }

    fn validate(&self) -> Result<(), String> {
        let o = &self.optim;
        if o.batch_size == 0 || o.max_steps == 0 || o.validate_every == 0 {
            return Err("batch_size, max_steps and validate_every must be at least 1".into());
        }
        if !(o.max_seconds.is_finite() && o.max_seconds >= 0.0) {
            return Err("max_seconds must be ≥ 0".into());
        }
        if !(o.lr.is_finite() && o.lr > 0.0 && o.grad_clip.is_finite() && o.grad_clip > 0.0) {
            return Err("lr and grad_clip must be positive".into());
        }
        let l = &self.loss;
        if l.objective == Objective::Ctc {
            // The EmbedLink terms compare pooled rows with transcript positions, which CTC frames do not
            // have: a preset that sets them with CTC mixes two objectives.
            if l.mse_weight != 0.0 || l.cosine_weight != 0.0 || l.token_weight != 0.0 {
                return Err(format!(
                    "loss.objective = \"ctc\" uses none of loss.mse_weight, loss.cosine_weight, loss.token_weight (got {}, {}, {}): set them to 0",
                    l.mse_weight, l.cosine_weight, l.token_weight
                ));
            }
            if !(l.ctc_logit_scale.is_finite() && l.ctc_logit_scale > 0.0) {
                return Err("loss.ctc_logit_scale must be positive".into());
            }
        } else if l.ctc_sampled_classes > 0 {
            return Err("loss.ctc_sampled_classes applies to loss.objective = \"ctc\" only".into());
        } else if l.mse_weight < 0.0
            || l.cosine_weight < 0.0
            || l.mse_weight + l.cosine_weight <= 0.0
            || l.pad_weight < 0.0
        {
            return Err("loss weights must be ≥ 0 with mse_weight + cosine_weight > 0".into());
        }
        if self.data.train_splits.is_empty() || self.data.valid_splits.is_empty() {
            return Err("name at least one train and one valid split".into());
        }
        self.augment.check().map_err(|e| e.to_string())
    }

    /// Learning rate at `step` (0-based): linear warm-up, then cosine decay to 10% of the peak.
    pub fn lr_at(&self, step: u64) -> f32 {
        self.lr_at_time(step, 0.0)
    }

    /// [`Self::lr_at`] under a time budget: the decay follows whichever of steps and `elapsed` seconds is
    /// further along, so a run that stops at `max_seconds` has decayed fully whatever its speed (runs of
    /// different cost compared on one budget each get a whole schedule). This makes the schedule depend
    /// on wall time, so only runs without `max_seconds` resume step for step.
    pub fn lr_at_time(&self, step: u64, elapsed: f64) -> f32 {
        let o = &self.optim;
        if step < o.warmup_steps {
            return o.lr * (step + 1) as f32 / o.warmup_steps as f32;
        }
        let span = o.max_steps.saturating_sub(o.warmup_steps).max(1);
        let by_steps = (step - o.warmup_steps) as f64 / span as f64;
        let by_time = if o.max_seconds > 0.0 {
            elapsed / o.max_seconds
        } else {
            0.0
        };
        let progress = by_steps.max(by_time).min(1.0) as f32;
        o.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f32::consts::PI * progress).cos()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_set_fields_and_refuse_unknown_ones() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/pooled.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let set = |items: &[&str]| {
            let items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
            TrainConfig::from_toml_with_overrides(&text, "pooled", &items)
        };
        let c = set(&[
            "optim.batch_size=8",
            "loss.objective=llm_in_the_loop",
            "projector.kind=\"mlp\"",
            "llm.model=\"qwen2.5-0.5b\"",
        ])
        .unwrap();
        assert_eq!(c.llm.model, "qwen2.5-0.5b");
        assert_eq!(c.optim.batch_size, 8);
        assert_eq!(c.loss.objective, Objective::LlmInTheLoop);
        assert_eq!(c.projector.kind, ProjectorKind::Mlp);
        assert_eq!(set(&[]).unwrap(), TrainConfig::read(&path).unwrap());
        let ctc = set(&[
            "loss.objective=ctc",
            "loss.mse_weight=0",
            "loss.cosine_weight=0",
            "loss.token_weight=0",
        ])
        .unwrap();
        assert_eq!(
            (ctc.loss.objective, ctc.loss.ctc_logit_scale),
            (Objective::Ctc, 16.0)
        );
        // [augment] is absent from the preset: an override creates it over the defaults.
        assert_eq!(c.augment.copies, 0);
        let augmented = set(&["augment.copies=2", "augment.telephone=0.5"]).unwrap();
        assert_eq!(
            (augmented.augment.copies, augmented.augment.telephone),
            (2, 0.5)
        );
        assert_eq!(augmented.augment.speeds, [0.9, 1.0, 1.1]);
        for (bad, why) in [
            ("augment.noise=2", "augment.noise"),
            ("loss.ctc_sampled_classes=100", "\"ctc\" only"),
            ("augment.speeds=[]", "augment.speeds"),
            ("optim.batch_sise=8", "unknown field"),
            ("nosuch.x=1", "no section"),
            ("optim", "not KEY=VALUE"),
            ("batch_size=8", "not SECTION.FIELD"),
            ("optim.batch_size=-3", "invalid value"),
            // CTC with EmbedLink's terms still weighted mixes two objectives.
            ("loss.objective=ctc", "loss.mse_weight"),
        ] {
            let err = set(&[bad]).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn presets_parse_and_unknown_keys_are_refused() {
        for preset in ["smoke", "default", "pooled", "full", "wide"] {
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
        // Under a time budget, half the time gone is half the decay even after few steps.
        let mut timed = c.clone();
        timed.optim.max_seconds = 100.0;
        assert!((timed.lr_at_time(10, 50.0) - 0.55).abs() < 1e-3);
        assert!((timed.lr_at_time(60, 10.0) - 0.55).abs() < 1e-3);
        assert!((c.lr_at_time(10, 50.0) - c.lr_at(10)).abs() < 1e-6);
    }
}
