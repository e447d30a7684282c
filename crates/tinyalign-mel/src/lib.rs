//! The audio frontend of tinyalign: any WAV → 16 kHz mono → Whisper-exact log-mel.
//!
//! ```text
//! WAV / raw PCM16 bytes ──decode_wav──► Audio (mono f32, source rate)
//!                        ──Resampler──► 16 kHz samples
//!                  ──LogMelSpectrogram──► LogMel (n_mels × frames), the encoder's input
//! ```
//!
//! No ML dependency and no I/O beyond reading a file, so it builds for wasm32 and runs in the browser demo.

mod error;
mod filterbank;
mod logmel;
pub mod npy;
mod resample;
mod wav;

use std::path::Path;

pub use error::{AudioError, AudioErrorKind};

/// Version of the frontend's numerical output; bump it when features change, so caches keyed by it are
/// not reused.
pub const FRONTEND_VERSION: u32 = 1;
pub use filterbank::{MelBands, MelFilterbank, N_FREQS};
pub use logmel::{LogMel, LogMelSpectrogram, frame_count, pad_or_trim};
pub use resample::{Resampler, resample};
pub use wav::{Audio, InputFormat, decode_raw_pcm16, decode_wav, downmix, read_audio_file};

/// Whisper's input rate.
pub const SAMPLE_RATE: u32 = 16_000;
/// STFT size (25 ms at 16 kHz).
pub const N_FFT: usize = 400;
/// STFT hop (10 ms at 16 kHz): one log-mel frame per hop.
pub const HOP_LENGTH: usize = 160;
/// Samples in Whisper's fixed 30 s window.
pub const N_SAMPLES_30S: usize = 30 * SAMPLE_RATE as usize;
/// Whisper's window in seconds: the longest audio the encoder, the projector's token budget and every
/// dataset builder accept.
pub const WINDOW_SECONDS: f64 = N_SAMPLES_30S as f64 / SAMPLE_RATE as f64;
/// Log-mel frames in Whisper's fixed 30 s window.
pub const N_FRAMES_30S: usize = N_SAMPLES_30S / HOP_LENGTH;
/// Lowest input rate accepted (below this no speech band survives).
pub const MIN_SAMPLE_RATE: u32 = 1_000;
/// Highest input rate accepted (above any real recording format).
pub const MAX_SAMPLE_RATE: u32 = 384_000;

/// How the frontend turns audio into features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontendConfig {
    pub bands: MelBands,
    /// Pad with silence or trim to exactly 30 s (3000 frames), as Whisper's reference pipeline does.
    /// Off by default: tinyalign's encoder runs on the natural length.
    pub pad_to_30s: bool,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        Self {
            bands: MelBands::Mel80,
            pad_to_30s: false,
        }
    }
}

/// Decoding, resampling and log-mel with the expensive parts (FFT plan, filterbank) built once.
#[derive(Debug, Clone)]
pub struct Frontend {
    config: FrontendConfig,
    spectrogram: LogMelSpectrogram,
}

impl Frontend {
    pub fn new(config: FrontendConfig) -> Self {
        Self {
            config,
            spectrogram: LogMelSpectrogram::new(config.bands),
        }
    }

    pub fn config(&self) -> FrontendConfig {
        self.config
    }

    /// Reads an audio file and computes its log-mel features.
    pub fn file_to_log_mel(&self, path: &Path, format: InputFormat) -> Result<LogMel, AudioError> {
        let audio = read_audio_file(path, format)?;
        self.audio_to_log_mel(&audio, &path.display().to_string())
    }

    /// Resamples decoded audio to 16 kHz and computes its log-mel features.
    pub fn audio_to_log_mel(&self, audio: &Audio, source_name: &str) -> Result<LogMel, AudioError> {
        let samples = to_16k(audio, source_name)?;
        self.samples_to_log_mel(&samples, source_name)
    }

    /// Log-mel of 16 kHz mono samples (padded or trimmed to 30 s first when configured).
    pub fn samples_to_log_mel(
        &self,
        samples_16k: &[f32],
        source_name: &str,
    ) -> Result<LogMel, AudioError> {
        let padded;
        let samples = if self.config.pad_to_30s {
            padded = pad_or_trim(samples_16k, N_SAMPLES_30S);
            &padded[..]
        } else {
            samples_16k
        };
        self.spectrogram.compute(samples).ok_or_else(|| {
            AudioError::new(
                source_name,
                AudioErrorKind::TooShort {
                    samples: samples.len(),
                },
            )
        })
    }
}

/// Resamples decoded audio to 16 kHz (a copy when it already is).
pub fn to_16k(audio: &Audio, source_name: &str) -> Result<Vec<f32>, AudioError> {
    resample(&audio.samples, audio.sample_rate, SAMPLE_RATE)
        .map_err(|kind| AudioError::new(source_name, kind))
}
