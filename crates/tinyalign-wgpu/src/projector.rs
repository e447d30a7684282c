//! The trained projector on the GPU, one utterance at a time, from the trainer's `projector.safetensors`:
//! pooled to T tokens, or (a CTC projector) one vector per stacked frame with the CTC head's logits.

use tinyalign_projector::{
    BodyLayout, PartLoaders, ProjectorConfig, ProjectorLayout, ProjectorOutput,
};
use tinyalign_weights::TensorMap;

use crate::layers::{EncoderLayer, LayerNorm, Linear, vector};
use crate::ops::{self, Activation};
use crate::{Gpu, GpuError, GpuMatrix, GpuTensor};

/// A CTC projector's head as one product: logits `(frames, classes + 1)` = frames · Wᵀ + b with
/// W = [κ/(d·rms²) · E; w_blank] (`(classes + 1) × d_llm`, E the LLM's input embeddings of the classes) and
/// b = [0, …, 0, b_blank]: the CPU's `Projector::ctc_logits` (class scores against the frozen table, the
/// blank's own learned logit last).
#[derive(Debug)]
pub struct GpuCtcHead {
    head: GpuMatrix,
    bias: GpuTensor,
    /// The LLM token id of each class, in the head's order.
    pub classes: Vec<u32>,
}

impl GpuCtcHead {
    /// Classes plus the blank: the logits' row width.
    pub fn width(&self) -> usize {
        self.classes.len() + 1
    }
}

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

/// A linear layer's weights read from the state dict (shapes checked) before they go to the GPU: the body's
/// layers are uploaded as they are, the CTC blank joins the head's one matrix.
#[derive(Debug)]
struct HostLinear<'a> {
    /// `d_out × d_in`
    weight: &'a [f32],
    bias: &'a [f32],
    d_in: usize,
    d_out: usize,
}

impl<'a> HostLinear<'a> {
    fn read(map: &'a TensorMap, prefix: &str, d_in: usize, d_out: usize) -> Result<Self, GpuError> {
        Ok(Self {
            weight: &map
                .get_shaped(&format!("{prefix}.weight"), &[d_out, d_in])?
                .data,
            bias: &map.get_shaped(&format!("{prefix}.bias"), &[d_out])?.data,
            d_in,
            d_out,
        })
    }

    fn upload(self, gpu: &Gpu) -> Result<Linear, GpuError> {
        Linear::from_host(gpu, self.d_in, self.d_out, self.weight, Some(self.bias))
    }
}

#[derive(Debug)]
pub struct GpuProjector {
    config: ProjectorConfig,
    body: Body,
    output_norm: GpuTensor,
    ctc: Option<GpuCtcHead>,
}

impl GpuProjector {
    /// From a state dict with the trainer's PyTorch keys, every shape checked against `config`. A CTC
    /// projector also needs `class_embeddings`: the LLM's input embeddings of its classes,
    /// `(classes, d_llm)` row-major in the config's class order.
    pub fn load(
        gpu: &Gpu,
        config: ProjectorConfig,
        map: &TensorMap,
        class_embeddings: Option<&[f32]>,
    ) -> Result<Self, GpuError> {
        config.validate()?;
        let c = &config;
        let eps = c.norm_eps;
        let layout = ProjectorLayout::load_with(
            c,
            PartLoaders {
                linear: |prefix: &str, d_in, d_out| HostLinear::read(map, prefix, d_in, d_out),
                layer_norm: |prefix: &str, d| LayerNorm::load(gpu, map, prefix, d, eps),
                encoder_layer: |prefix: &str| {
                    EncoderLayer::load(gpu, map, prefix, c.d_model, c.heads, c.ffn_dim, true, eps)
                },
                rms_norm: |prefix: &str, d| vector(gpu, map, &format!("{prefix}.weight"), d),
            },
        )?;
        let ctc = match (&config.output, layout.ctc_blank) {
            (
                ProjectorOutput::Ctc {
                    classes,
                    logit_scale,
                },
                Some(blank),
            ) => Some(Self::build_ctc_head(
                gpu,
                &config,
                classes,
                *logit_scale,
                class_embeddings,
                blank,
            )?),
            _ => None,
        };
        let body = match layout.body {
            BodyLayout::BridgeFormer {
                input_fc1,
                input_fc2,
                layers,
                encoder_norm,
            } => {
                let (Some(output_fc1), Some(output_fc2)) = (layout.output_fc1, layout.output_fc2)
                else {
                    return Err(GpuError::Model("a BridgeFormer without output_proj".into()));
                };
                Body::BridgeFormer {
                    input_fc1: input_fc1.upload(gpu)?,
                    input_fc2: input_fc2.upload(gpu)?,
                    layers,
                    encoder_norm,
                    output_fc1: output_fc1.upload(gpu)?,
                    output_fc2: output_fc2.upload(gpu)?,
                }
            }
            BodyLayout::Stacked { fc1, fc2 } => Body::Stacked {
                fc1: fc1.upload(gpu)?,
                fc2: fc2.map(|fc2| fc2.upload(gpu)).transpose()?,
            },
        };
        Ok(Self {
            output_norm: layout.output_norm,
            config,
            body,
            ctc,
        })
    }

    /// The head `[κ/(d·rms²) · E; w_blank]` with bias `[0, …, 0, b_blank]` (see [`GpuCtcHead`]).
    fn build_ctc_head(
        gpu: &Gpu,
        config: &ProjectorConfig,
        classes: &[u32],
        logit_scale: f32,
        class_embeddings: Option<&[f32]>,
        blank: HostLinear<'_>,
    ) -> Result<GpuCtcHead, GpuError> {
        let d = config.d_llm;
        let embeddings = class_embeddings.ok_or_else(|| {
            GpuError::Model(
                "this projector has a CTC head: it needs the LLM's embeddings of its classes"
                    .into(),
            )
        })?;
        if embeddings.len() != classes.len() * d {
            return Err(GpuError::Shape(format!(
                "{} class embedding values for {} classes of width {d}",
                embeddings.len(),
                classes.len()
            )));
        }
        let scale = logit_scale / (d as f32 * config.output_rms * config.output_rms);
        let mut head: Vec<f32> = embeddings.iter().map(|v| v * scale).collect();
        head.extend_from_slice(blank.weight);
        let mut bias = vec![0.0; classes.len() + 1];
        bias[classes.len()] = blank.bias[0];
        Ok(GpuCtcHead {
            head: GpuMatrix::from_f32(gpu, classes.len() + 1, d, &head)?,
            bias: gpu.upload(&bias, 1, classes.len() + 1)?,
            classes: classes.to_vec(),
        })
    }

    pub fn config(&self) -> &ProjectorConfig {
        &self.config
    }

    /// The CTC head, for a projector trained with the CTC objective.
    pub fn ctc_head(&self) -> Option<&GpuCtcHead> {
        self.ctc.as_ref()
    }

    /// A CTC projector's logits `(frames, classes + 1)` of its frame vectors (what [`Self::forward`]
    /// returns for it).
    pub fn ctc_logits(&self, gpu: &Gpu, frames: &GpuTensor) -> Result<GpuTensor, GpuError> {
        let head = self.ctc.as_ref().ok_or_else(|| {
            GpuError::Model("this projector has no CTC head (it pools to T tokens)".into())
        })?;
        ops::linear(gpu, frames, &head.head, Some(&head.bias), Activation::None)
    }

    /// Encoder features `(frames, d_audio)` → audio tokens `(T, d_llm)`, T = `tokens_for(frames)`; for a
    /// CTC projector one vector per stacked frame, `(ceil(frames / stack), d_llm)`.
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
                let pooled = if self.ctc.is_some() {
                    h
                } else {
                    ops::adaptive_pool(gpu, &h, valid, tokens)?
                };
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
                if self.ctc.is_some() {
                    h
                } else {
                    ops::adaptive_pool(gpu, &h, valid, tokens)?
                }
            }
        };
        ops::rms_norm(gpu, &projected, &self.output_norm, c.norm_eps, c.output_rms)
    }
}
