//! Whisper's audio encoder on the GPU, from the same `model.safetensors` as the CPU encoder.

use tinyalign_mel::LogMel;
use tinyalign_weights::TensorMap;
use tinyalign_whisper::{ConvShape, EncoderLayout, EncoderPartLoaders, WhisperConfig};

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
        let c = &config;
        let layout = EncoderLayout::load_with(
            c,
            EncoderPartLoaders {
                // A convolution as a matmul over im2col rows: `(c_out, c_in · 3)`, the kernel taps last as
                // PyTorch stores them.
                conv: |prefix: &str, s: ConvShape| -> Result<Linear, GpuError> {
                    let w = map.get_shaped(&format!("{prefix}.weight"), &[s.c_out, s.c_in, 3])?;
                    let b = map.get_shaped(&format!("{prefix}.bias"), &[s.c_out])?;
                    Linear::from_host(gpu, s.c_in * 3, s.c_out, &w.data, Some(&b.data))
                },
                positions: |key: &str, rows, cols| {
                    let t = map.get_shaped(key, &[rows, cols])?;
                    gpu.upload(&t.data, rows, cols)
                },
                encoder_layer: |prefix: &str| {
                    EncoderLayer::load(
                        gpu,
                        map,
                        prefix,
                        c.d_model,
                        c.encoder_attention_heads,
                        c.encoder_ffn_dim,
                        false,
                        LN_EPS,
                    )
                },
                layer_norm: |prefix: &str, d| LayerNorm::load(gpu, map, prefix, d, LN_EPS),
            },
        )?;
        Ok(Self {
            conv1: layout.conv1,
            conv2: layout.conv2,
            positions: layout.positions,
            final_norm: layout.final_norm,
            layers: layout.layers,
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
