//! Slaney-style mel filterbank, a port of `librosa.filters.mel(sr=16000, n_fft=400, n_mels=N)` (librosa 0.10,
//! `htk=False`, `norm='slaney'`), which is how Whisper's `mel_filters.npz` was made. Stored sparsely: each
//! triangle covers a contiguous run of FFT bins, so applying it costs ~2 multiplies per bin instead of
//! `n_mels`.

use crate::{N_FFT, SAMPLE_RATE};

/// Number of rFFT bins for Whisper's 400-point FFT: `1 + 400 / 2`.
pub const N_FREQS: usize = N_FFT / 2 + 1;

/// Mel band counts Whisper models use: 80 (tiny ... large-v2) or 128 (large-v3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MelBands {
    Mel80,
    Mel128,
}

impl MelBands {
    pub fn count(self) -> usize {
        match self {
            MelBands::Mel80 => 80,
            MelBands::Mel128 => 128,
        }
    }

    pub fn from_count(n: usize) -> Option<Self> {
        match n {
            80 => Some(MelBands::Mel80),
            128 => Some(MelBands::Mel128),
            _ => None,
        }
    }
}

/// One mel band: weights for FFT bins `start .. start + weights.len()`, zero elsewhere.
#[derive(Debug, Clone)]
struct Band {
    start: usize,
    weights: Vec<f32>,
}

/// `(n_mels, N_FREQS)` filterbank.
#[derive(Debug, Clone)]
pub struct MelFilterbank {
    bands: Vec<Band>,
}

impl MelFilterbank {
    pub fn new(n_mels: MelBands) -> Self {
        let n_mels = n_mels.count();
        let nyquist = f64::from(SAMPLE_RATE) / 2.0;
        // np.linspace(0, sr / 2, 1 + n_fft // 2)
        let fft_freqs: Vec<f64> = (0..N_FREQS)
            .map(|k| nyquist * k as f64 / (N_FREQS - 1) as f64)
            .collect();
        // librosa.mel_frequencies(n_mels + 2, fmin=0, fmax=sr / 2): evenly spaced on the Slaney mel scale.
        let mel_max = hz_to_mel(nyquist);
        let mel_points: Vec<f64> = (0..n_mels + 2)
            .map(|i| mel_to_hz(mel_max * i as f64 / (n_mels + 1) as f64))
            .collect();

        let bands = (0..n_mels)
            .map(|i| {
                let (lo, mid, hi) = (mel_points[i], mel_points[i + 1], mel_points[i + 2]);
                // Slaney normalisation: each triangle has unit area in Hz.
                let enorm = 2.0 / (hi - lo);
                let dense: Vec<f32> = fft_freqs
                    .iter()
                    .map(|&f| {
                        let lower = (f - lo) / (mid - lo);
                        let upper = (hi - f) / (hi - mid);
                        // librosa stores the triangle into a float32 array, then scales it in place.
                        let triangle = lower.min(upper).max(0.0) as f32;
                        (f64::from(triangle) * enorm) as f32
                    })
                    .collect();
                let start = dense.iter().position(|&w| w != 0.0).unwrap_or(0);
                let end = dense
                    .iter()
                    .rposition(|&w| w != 0.0)
                    .map_or(start, |e| e + 1);
                Band {
                    start,
                    weights: dense[start..end].to_vec(),
                }
            })
            .collect();
        Self { bands }
    }

    pub fn n_mels(&self) -> usize {
        self.bands.len()
    }

    /// Dense `(n_mels, N_FREQS)` matrix, row-major, as stored in `mel_filters.npz`.
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.bands.len() * N_FREQS];
        for (row, band) in out.chunks_exact_mut(N_FREQS).zip(&self.bands) {
            row[band.start..band.start + band.weights.len()].copy_from_slice(&band.weights);
        }
        out
    }

    /// `mel[i] = sum_k filters[i, k] * power[k]` for one frame: `(N_FREQS)` → `(n_mels)`.
    pub fn apply(&self, power: &[f32], mel: &mut [f32]) {
        debug_assert_eq!(power.len(), N_FREQS);
        debug_assert_eq!(mel.len(), self.bands.len());
        for (out, band) in mel.iter_mut().zip(&self.bands) {
            let bins = &power[band.start..band.start + band.weights.len()];
            *out = bins.iter().zip(&band.weights).map(|(p, w)| p * w).sum();
        }
    }
}

// librosa's Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above.
const F_SP: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;
const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

fn hz_to_mel(hz: f64) -> f64 {
    if hz >= MIN_LOG_HZ {
        MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / log_step()
    } else {
        hz / F_SP
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    if mel >= MIN_LOG_MEL {
        MIN_LOG_HZ * (log_step() * (mel - MIN_LOG_MEL)).exp()
    } else {
        F_SP * mel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mel_scale_round_trips() {
        for hz in [0.0, 100.0, 999.0, 1000.0, 4321.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9, "{hz}");
        }
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
    }

    #[test]
    fn sparse_and_dense_agree() {
        let fb = MelFilterbank::new(MelBands::Mel80);
        let power: Vec<f32> = (0..N_FREQS)
            .map(|k| (k as f32 * 0.37).sin().abs())
            .collect();
        let mut sparse = vec![0.0; 80];
        fb.apply(&power, &mut sparse);
        let dense = fb.to_dense();
        for (i, s) in sparse.iter().enumerate() {
            let d: f32 = (0..N_FREQS)
                .map(|k| dense[i * N_FREQS + k] * power[k])
                .sum();
            assert!(
                (s - d).abs() <= 1e-6 * d.abs().max(1.0),
                "band {i}: {s} vs {d}"
            );
        }
    }
}
