//! Projector configuration (serde; stored in every checkpoint's manifest).

use serde::{Deserialize, Serialize};

use crate::ProjectorError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectorKind {
    /// Input MLP → transformer encoder layers without positional encoding → pooling → output MLP.
    BridgeFormer,
    /// SLAM-ASR's projector: k stacked frames → Linear → ReLU → Linear → pooling.
    Mlp,
    /// k stacked frames → Linear → pooling.
    Linear,
}

/// How many audio tokens an utterance becomes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum TokenCount {
    /// Always `tokens` (the paper's fixed T).
    Fixed { tokens: usize },
    /// `per_second` × duration, clamped to `[min, max]`.
    PerSecond {
        per_second: f32,
        min: usize,
        max: usize,
    },
}

/// What the projector emits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode", deny_unknown_fields)]
pub enum ProjectorOutput {
    /// T vectors pooled from the frames (`tokens` decides T): the paper's BridgeFormer and SLAM-ASR's
    /// baselines, trained towards the transcript's embeddings position by position.
    #[default]
    Pooled,
    /// One vector per stacked frame (no pooling) and a CTC head over `classes`, a sorted subset of the
    /// LLM's token ids, plus a blank: a frame's logit for class k is `logit_scale · (o · e_k) / (d_llm ·
    /// output_rms²)` with `e_k` the LLM's frozen input embedding of token `classes[k]` (about
    /// `logit_scale · cos` at the embedding scale); the blank's is a learned vector's dot product plus a
    /// learned bias. Trained with CTC against the transcript's token ids; read into the LLM by a readout.
    Ctc { classes: Vec<u32>, logit_scale: f32 },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectorConfig {
    pub kind: ProjectorKind,
    /// Width of the encoder features (Whisper tiny.en: 384, base: 512).
    pub d_audio: usize,
    /// Width of the LLM's input embeddings (SmolLM2-135M: 576).
    pub d_llm: usize,
    /// BridgeFormer's internal width, and the MLP baseline's hidden width.
    pub d_model: usize,
    /// BridgeFormer encoder layers.
    pub layers: usize,
    pub heads: usize,
    pub ffn_dim: usize,
    /// Consecutive frames concatenated before anything else (SLAM-ASR's baselines use 5; BridgeFormer 4).
    pub stack: usize,
    pub tokens: TokenCount,
    /// Encoder output frames per second of audio (Whisper: 50).
    pub frames_per_second: f32,
    /// Outputs are RMS-normalised and scaled to this (with a learned per-channel gain starting at 1), so
    /// their scale matches the LLM's own input embeddings from the first step.
    pub output_rms: f32,
    pub norm_eps: f32,
    /// Pooled tokens (the default, and what manifests without this field hold) or per-frame CTC.
    #[serde(default)]
    pub output: ProjectorOutput,
}

/// Finite and above zero (NaN is not).
fn positive(x: f32) -> bool {
    x.is_finite() && x > 0.0
}

impl ProjectorConfig {
    /// BridgeFormer with the default sizes for Whisper width `d_audio` and LLM width `d_llm`.
    pub fn bridgeformer(d_audio: usize, d_llm: usize, output_rms: f32) -> Self {
        Self {
            kind: ProjectorKind::BridgeFormer,
            d_audio,
            d_llm,
            d_model: 256,
            layers: 2,
            heads: 4,
            ffn_dim: 1024,
            stack: 4,
            tokens: TokenCount::Fixed { tokens: 32 },
            frames_per_second: 50.0,
            output_rms,
            norm_eps: 1e-5,
            output: ProjectorOutput::Pooled,
        }
    }

    /// The SLAM-ASR-style baseline (`Mlp` or `Linear`) over `stack` = 5 frames, same T and output scaling.
    pub fn stacked(kind: ProjectorKind, d_audio: usize, d_llm: usize, output_rms: f32) -> Self {
        Self {
            kind,
            stack: 5,
            d_model: 1024,
            layers: 0,
            ..Self::bridgeformer(d_audio, d_llm, output_rms)
        }
    }

    pub fn validate(&self) -> Result<(), ProjectorError> {
        let bad = |what: String| Err(ProjectorError::Config(what));
        if self.d_audio == 0 || self.d_llm == 0 || self.d_model == 0 {
            return bad("widths must be positive".into());
        }
        if self.kind == ProjectorKind::BridgeFormer {
            if self.heads == 0 || !self.d_model.is_multiple_of(self.heads) {
                return bad(format!(
                    "d_model {} does not split into {} heads",
                    self.d_model, self.heads
                ));
            }
            if self.ffn_dim == 0 {
                return bad("ffn_dim must be positive".into());
            }
        }
        if self.stack == 0 {
            return bad("stack must be at least 1".into());
        }
        match self.tokens {
            TokenCount::Fixed { tokens: 0 } => return bad("T must be at least 1".into()),
            TokenCount::PerSecond {
                per_second,
                min,
                max,
            } if !positive(per_second) || min == 0 || max < min => {
                return bad(format!(
                    "per-second tokens need rate > 0 and 1 ≤ min ≤ max (got {per_second}, {min}, {max})"
                ));
            }
            _ => {}
        }
        if !positive(self.output_rms) || !positive(self.frames_per_second) {
            return bad("output_rms and frames_per_second must be positive".into());
        }
        if let ProjectorOutput::Ctc {
            classes,
            logit_scale,
        } = &self.output
        {
            if classes.is_empty() || !classes.windows(2).all(|w| w[0] < w[1]) {
                return bad(
                    "CTC classes must be a non-empty, strictly increasing list of token ids".into(),
                );
            }
            if !positive(*logit_scale) {
                return bad(format!(
                    "CTC logit_scale must be positive (got {logit_scale})"
                ));
            }
        }
        Ok(())
    }

    /// The CTC head's classes (LLM token ids), when the projector has one.
    pub fn ctc_classes(&self) -> Option<&[u32]> {
        match &self.output {
            ProjectorOutput::Pooled => None,
            ProjectorOutput::Ctc { classes, .. } => Some(classes),
        }
    }

    /// Output vectors for an utterance of `frames` encoder frames: T pooled tokens, or one per stacked
    /// frame with a CTC head.
    pub fn tokens_for(&self, frames: usize) -> usize {
        if self.ctc_classes().is_some() {
            return frames.div_ceil(self.stack);
        }
        match self.tokens {
            TokenCount::Fixed { tokens } => tokens,
            TokenCount::PerSecond {
                per_second,
                min,
                max,
            } => {
                let seconds = frames as f32 / self.frames_per_second;
                ((seconds * per_second).round() as usize).clamp(min, max)
            }
        }
    }

    /// The most tokens any utterance (up to Whisper's 30 s) can get.
    pub fn max_tokens(&self) -> usize {
        if self.ctc_classes().is_some() {
            let window_frames = tinyalign_mel::WINDOW_SECONDS as f32 * self.frames_per_second;
            return self.tokens_for(window_frames as usize);
        }
        match self.tokens {
            TokenCount::Fixed { tokens } => tokens,
            TokenCount::PerSecond { max, .. } => max,
        }
    }
}
