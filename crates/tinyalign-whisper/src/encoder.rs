//! The encoder proper, on host rows through tinyalign-kernels (no dfdx: the encoder is frozen, so its
//! weights are held once, in the layout the kernels read); layer names follow Hugging Face's
//! `WhisperEncoder` keys.

use std::path::Path;

use tinyalign_kernels::{
    AttentionBuffers, ConvGeometry, HostConv1d, HostLayerNorm, HostLinear, HostSelfAttention,
    gelu_in_place,
};
use tinyalign_mel::LogMel;
use tinyalign_weights::TensorMap;

use crate::files::{read_model_dir, read_model_dir_hashed};
use crate::host_loader::HostLoader;
use crate::layout::{ConvShape, EncoderLayout, EncoderPartLoaders};
use crate::{Features, WhisperConfig, WhisperError};

#[derive(Debug, Clone)]
struct EncoderLayer {
    attn_norm: HostLayerNorm,
    attn: HostSelfAttention,
    mlp_norm: HostLayerNorm,
    fc1: HostLinear,
    fc2: HostLinear,
}

impl EncoderLayer {
    /// Pre-norm block on host rows `x` `(frames, d)`, in place: `x += attn(ln(x))`, `x += mlp(ln(x))`, the
    /// residual sums made by the products themselves.
    fn forward_rows(&self, x: &mut [f32], buffers: &mut LayerBuffers) {
        let LayerBuffers {
            normed,
            attention,
            hidden,
        } = buffers;
        normed.clear();
        normed.extend_from_slice(x);
        self.attn_norm.forward_rows_in_place(normed);
        let frames = x.len() / self.attn.dim();
        self.attn
            .add_forward_batch_rows(normed, (1, frames), None, attention, x);
        normed.copy_from_slice(x);
        self.mlp_norm.forward_rows_in_place(normed);
        self.fc1.forward_rows_into(normed, hidden);
        gelu_in_place(hidden);
        self.fc2.add_forward_rows(hidden, x);
    }
}

/// A pass's intermediates, reused by every layer. A fresh multi-megabyte buffer per product was page-faulted
/// in every time (glibc hands freed heap tops back to the kernel): reusing them took a warm 30 s encode from
/// 442 to 408 ms (medians of 32, 2-core EPYC VM).
#[derive(Debug, Default)]
struct LayerBuffers {
    /// `ln(x)` `(frames, d)`.
    normed: Vec<f32>,
    attention: AttentionBuffers,
    /// The MLP's `(frames, ffn)` activations.
    hidden: Vec<f32>,
}

fn add_in_place(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

/// A frozen Whisper audio encoder.
#[derive(Debug, Clone)]
pub struct WhisperEncoder {
    config: WhisperConfig,
    conv1: HostConv1d,
    conv2: HostConv1d,
    /// `(max_source_positions, d)` sinusoidal table, row-major on the host; sliced per input length.
    positions: Vec<f32>,
    layers: Vec<EncoderLayer>,
    final_norm: HostLayerNorm,
}

/// Loads only the encoder of a model folder (see [`read_model_dir`]).
pub fn load_encoder_dir(dir: &Path) -> Result<WhisperEncoder, WhisperError> {
    let (config, map) = read_model_dir(dir)?;
    WhisperEncoder::load(config, &map)
}

/// [`load_encoder_dir`] and the sha256 of `model.safetensors` (what trained projectors record), from one
/// read of the file.
pub fn load_encoder_dir_with_sha256(dir: &Path) -> Result<(WhisperEncoder, String), WhisperError> {
    let (config, map, sha256) = read_model_dir_hashed(dir, true)?;
    Ok((
        WhisperEncoder::load(config, &map)?,
        sha256.expect("asked for the hash"),
    ))
}

impl WhisperEncoder {
    /// Builds the encoder from `model.encoder.*` tensors, checking every shape against `config`.
    pub fn load(config: WhisperConfig, map: &TensorMap) -> Result<Self, WhisperError> {
        let w = HostLoader { map };
        let c = &config;
        let layout = EncoderLayout::load_with(
            c,
            EncoderPartLoaders {
                conv: |prefix: &str, s: ConvShape| -> Result<_, WhisperError> {
                    let weight = w.get(&format!("{prefix}.weight"), &[s.c_out, s.c_in, 3])?;
                    let bias = w.get(&format!("{prefix}.bias"), &[s.c_out])?;
                    let geometry = ConvGeometry {
                        c_in: s.c_in,
                        c_out: s.c_out,
                        kernel: 3,
                        stride: s.stride,
                        padding: 1,
                    };
                    Ok(HostConv1d::from_torch(&weight, bias, geometry))
                },
                positions: |key: &str, rows, cols| w.get(key, &[rows, cols]),
                encoder_layer: |prefix: &str| -> Result<_, WhisperError> {
                    let (d, ffn) = (c.d_model, c.encoder_ffn_dim);
                    Ok(EncoderLayer {
                        attn_norm: w.layer_norm(&format!("{prefix}.self_attn_layer_norm"), d)?,
                        attn: w.self_attention(
                            &format!("{prefix}.self_attn"),
                            d,
                            c.encoder_attention_heads,
                        )?,
                        mlp_norm: w.layer_norm(&format!("{prefix}.final_layer_norm"), d)?,
                        fc1: w.linear(&format!("{prefix}.fc1"), d, ffn, true)?,
                        fc2: w.linear(&format!("{prefix}.fc2"), ffn, d, true)?,
                    })
                },
                layer_norm: |prefix: &str, d| w.layer_norm(prefix, d),
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

    /// Output frames for `mel_frames` input frames: `ceil(mel_frames / 2)`.
    pub fn output_frames(&self, mel_frames: usize) -> usize {
        self.conv2.out_frames(self.conv1.out_frames(mel_frames))
    }

    /// Encodes log-mel features `(n_mels, frames)` into `(ceil(frames / 2), d_model)` hidden states.
    pub fn forward(&self, mel: &LogMel) -> Result<Features, WhisperError> {
        if mel.n_mels != self.config.num_mel_bins {
            return Err(WhisperError::MelBands {
                expected: self.config.num_mel_bins,
                found: mel.n_mels,
            });
        }
        let frames = mel.n_frames;
        if frames > self.config.max_mel_frames() {
            return Err(WhisperError::TooLong {
                frames,
                max: self.config.max_mel_frames(),
            });
        }
        let t_out = self.output_frames(frames);
        if t_out == 0 {
            return Err(WhisperError::TooShort { frames });
        }
        let time_major = mel.time_major();
        let mut x = self.conv1.forward_rows(&time_major);
        gelu_in_place(&mut x);
        let mut x = self.conv2.forward_rows(&x);
        gelu_in_place(&mut x);
        let d = self.config.d_model;
        add_in_place(&mut x, &self.positions[..t_out * d]);
        let mut buffers = LayerBuffers::default();
        for layer in &self.layers {
            layer.forward_rows(&mut x, &mut buffers);
        }
        self.final_norm.forward_rows_in_place(&mut x);
        Ok(Features {
            frames: t_out,
            width: d,
            data: x,
        })
    }
}
