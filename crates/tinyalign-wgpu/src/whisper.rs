//! Whisper's audio encoder on the GPU, from the same `model.safetensors` as the CPU encoder.

use tinyalign_mel::LogMel;
use tinyalign_weights::TensorMap;
use tinyalign_whisper::WhisperConfig;

use crate::layers::{EncoderLayer, LayerNorm, Linear};
use crate::ops::{self, Activation};
use crate::{Gpu, GpuError, GpuTensor};

/// PyTorch's LayerNorm epsilon, which Whisper keeps.
const LN_EPS: f32 = 1e-5;

#[derive(Debug)]
pub struct GpuWhisperEncoder {
    config: WhisperConfig,
    /// Convolutions as matmuls over im2col rows: weights `(d, c_in·3)`.
    conv1: Linear,
    conv2: Linear,
    /// `max_source_positions × d`.
    positions: GpuTensor,
    layers: Vec<EncoderLayer>,
    final_norm: LayerNorm,
}

impl GpuWhisperEncoder {
    /// From `model.encoder.*` tensors (Hugging Face keys), every shape checked against `config`.
    pub fn load(gpu: &Gpu, config: WhisperConfig, map: &TensorMap) -> Result<Self, GpuError> {
        let (d, mels, ffn) = (config.d_model, config.num_mel_bins, config.encoder_ffn_dim);
        let p = |part: &str| format!("model.encoder.{part}");
        let conv = |name: &str, c_in: usize| -> Result<Linear, GpuError> {
            let w = map.get_shaped(&p(&format!("{name}.weight")), &[d, c_in, 3])?;
            let b = map.get_shaped(&p(&format!("{name}.bias")), &[d])?;
            Ok(Linear {
                w: crate::GpuMatrix::from_f32(gpu, d, c_in * 3, &w.data)?,
                b: Some(gpu.upload(&b.data, 1, d)?),
            })
        };
        let positions = map.get_shaped(
            &p("embed_positions.weight"),
            &[config.max_source_positions, d],
        )?;
        let layers = (0..config.encoder_layers)
            .map(|i| {
                EncoderLayer::load(
                    gpu,
                    map,
                    &p(&format!("layers.{i}")),
                    d,
                    config.encoder_attention_heads,
                    ffn,
                    false,
                    LN_EPS,
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            conv1: conv("conv1", mels)?,
            conv2: conv("conv2", d)?,
            positions: gpu.upload(&positions.data, config.max_source_positions, d)?,
            final_norm: LayerNorm::load(gpu, map, &p("layer_norm"), d, LN_EPS)?,
            layers,
            config,
        })
    }

    pub fn config(&self) -> &WhisperConfig {
        &self.config
    }

    /// Log-mel `(n_mels, frames)` → hidden states `(ceil(frames / 2), d_model)`, left on the GPU.
    pub fn forward(&self, gpu: &Gpu, mel: &LogMel) -> Result<GpuTensor, GpuError> {
        let c = &self.config;
        if mel.n_mels != c.num_mel_bins {
            return Err(GpuError::Shape(format!(
                "input has {} mel bands, the model expects {}",
                mel.n_mels, c.num_mel_bins
            )));
        }
        let frames = mel.n_frames;
        if frames == 0 || frames > c.max_mel_frames() {
            return Err(GpuError::Shape(format!(
                "{frames} mel frames; the encoder takes 1 to {} (30 s)",
                c.max_mel_frames()
            )));
        }
        let time_major = mel.time_major();
        let x = gpu.upload(&time_major, frames, mel.n_mels)?;
        let x = self
            .conv1
            .forward(gpu, &ops::im2col(gpu, &x, 3, 1, 1)?, Activation::Gelu)?;
        let x = self
            .conv2
            .forward(gpu, &ops::im2col(gpu, &x, 3, 2, 1)?, Activation::Gelu)?;
        let mut x = ops::add(gpu, &x, &self.positions)?;
        let n = x.rows();
        for layer in &self.layers {
            x = layer.forward(gpu, &x, n)?;
        }
        self.final_norm.forward(gpu, &x)
    }
}
