//! The trained projector on the GPU, one utterance at a time, from the trainer's `projector.safetensors`.

use tinyalign_projector::{ProjectorConfig, ProjectorKind};
use tinyalign_weights::TensorMap;

use crate::layers::{EncoderLayer, LayerNorm, Linear, vector};
use crate::ops::{self, Activation};
use crate::{Gpu, GpuError, GpuTensor};

// One value per loaded projector: the size difference between the kinds costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Body {
    BridgeFormer {
        input_fc1: Linear,
        input_fc2: Linear,
        layers: Vec<EncoderLayer>,
        encoder_norm: LayerNorm,
        output_fc1: Linear,
        output_fc2: Linear,
    },
    Stacked {
        fc1: Linear,
        fc2: Option<Linear>,
    },
}

#[derive(Debug)]
pub struct GpuProjector {
    config: ProjectorConfig,
    body: Body,
    output_norm: GpuTensor,
}

impl GpuProjector {
    /// From a state dict with the trainer's PyTorch keys, every shape checked against `config`.
    pub fn load(gpu: &Gpu, config: ProjectorConfig, map: &TensorMap) -> Result<Self, GpuError> {
        config
            .validate()
            .map_err(|e| GpuError::Model(e.to_string()))?;
        if config.ctc_classes().is_some() {
            return Err(GpuError::Model(
                "this projector has a CTC head (trained with loss.objective = \"ctc\"); the GPU path runs pooled projectors only: run it on the CPU (ask without --gpu)".into(),
            ));
        }
        let c = &config;
        let eps = c.norm_eps;
        let kd = c.stack * c.d_audio;
        let body = match c.kind {
            ProjectorKind::BridgeFormer => Body::BridgeFormer {
                input_fc1: Linear::load(gpu, map, "input_proj.fc1", kd, c.d_model, true)?,
                input_fc2: Linear::load(gpu, map, "input_proj.fc2", c.d_model, c.d_model, true)?,
                layers: (0..c.layers)
                    .map(|i| {
                        EncoderLayer::load(
                            gpu,
                            map,
                            &format!("layers.{i}"),
                            c.d_model,
                            c.heads,
                            c.ffn_dim,
                            true,
                            eps,
                        )
                    })
                    .collect::<Result<_, _>>()?,
                encoder_norm: LayerNorm::load(gpu, map, "encoder_layer_norm", c.d_model, eps)?,
                output_fc1: Linear::load(gpu, map, "output_proj.fc1", c.d_model, c.d_model, true)?,
                output_fc2: Linear::load(gpu, map, "output_proj.fc2", c.d_model, c.d_llm, true)?,
            },
            ProjectorKind::Mlp => Body::Stacked {
                fc1: Linear::load(gpu, map, "proj.fc1", kd, c.d_model, true)?,
                fc2: Some(Linear::load(
                    gpu, map, "proj.fc2", c.d_model, c.d_llm, true,
                )?),
            },
            ProjectorKind::Linear => Body::Stacked {
                fc1: Linear::load(gpu, map, "proj.fc1", kd, c.d_llm, true)?,
                fc2: None,
            },
        };
        Ok(Self {
            output_norm: vector(gpu, map, "output_norm.weight", c.d_llm)?,
            config,
            body,
        })
    }

    pub fn config(&self) -> &ProjectorConfig {
        &self.config
    }

    /// Encoder features `(frames, d_audio)` → audio tokens `(T, d_llm)`, T = `tokens_for(frames)`.
    pub fn forward(&self, gpu: &Gpu, features: &GpuTensor) -> Result<GpuTensor, GpuError> {
        let c = &self.config;
        let frames = features.rows();
        if features.cols() != c.d_audio || frames == 0 {
            return Err(GpuError::Shape(format!(
                "projector input is {frames}×{}; it takes frames × {}",
                features.cols(),
                c.d_audio
            )));
        }
        // Pad to a whole number of stacks with zero frames (as the CPU projector does), then see k
        // consecutive frames as one row: (n, d) and (n/k, k·d) are the same row-major memory.
        let k = c.stack;
        let padded_frames = frames.div_ceil(k) * k;
        let padded = gpu.output(padded_frames, c.d_audio);
        if padded_frames > frames {
            let zeros = gpu.upload(
                &vec![0.0; (padded_frames - frames) * c.d_audio],
                padded_frames - frames,
                c.d_audio,
            )?;
            gpu.copy_rows(&zeros, 0, &padded, frames, padded_frames - frames)?;
        }
        gpu.copy_rows(features, 0, &padded, 0, frames)?;
        let stacked = padded.reshaped(padded_frames / k, k * c.d_audio)?;
        let valid = frames.div_ceil(k);
        let tokens = c.tokens_for(frames);
        let projected = match &self.body {
            Body::BridgeFormer {
                input_fc1,
                input_fc2,
                layers,
                encoder_norm,
                output_fc1,
                output_fc2,
            } => {
                let h = input_fc1.forward(gpu, &stacked, Activation::Gelu)?;
                let mut h = input_fc2.forward(gpu, &h, Activation::None)?;
                for layer in layers {
                    h = layer.forward(gpu, &h, valid)?;
                }
                let h = encoder_norm.forward(gpu, &h)?;
                let pooled = ops::adaptive_pool(gpu, &h, valid, tokens)?;
                let h = output_fc1.forward(gpu, &pooled, Activation::Gelu)?;
                output_fc2.forward(gpu, &h, Activation::None)?
            }
            Body::Stacked { fc1, fc2 } => {
                let h = match fc2 {
                    Some(fc2) => fc2.forward(
                        gpu,
                        &fc1.forward(gpu, &stacked, Activation::Relu)?,
                        Activation::None,
                    )?,
                    None => fc1.forward(gpu, &stacked, Activation::None)?,
                };
                ops::adaptive_pool(gpu, &h, valid, tokens)?
            }
        };
        ops::rms_norm(gpu, &projected, &self.output_norm, c.norm_eps, c.output_rms)
    }
}
