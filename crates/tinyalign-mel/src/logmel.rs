//! Whisper's log-mel spectrogram, a port of `whisper.audio.log_mel_spectrogram` (openai-whisper 20250625):
//! `torch.stft(audio, 400, 160, window=hann_window(400), center=True, pad_mode='reflect')`, drop the last
//! frame, power `|X|^2`, mel filterbank, `log10(max(x, 1e-10))`, clamp to `max - 8`, then `(x + 4) / 4`.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex, num_complex::Complex};

use crate::filterbank::{MelBands, MelFilterbank, N_FREQS};
use crate::{HOP_LENGTH, N_FFT};

/// Log-mel features, `(n_mels, n_frames)` row-major: the layout Whisper's encoder takes (mel bands are the
/// conv1d input channels).
#[derive(Debug, Clone, PartialEq)]
pub struct LogMel {
    pub n_mels: usize,
    pub n_frames: usize,
    pub data: Vec<f32>,
}

impl LogMel {
    /// Band `mel` across all frames: `(n_frames)`.
    pub fn band(&self, mel: usize) -> &[f32] {
        &self.data[mel * self.n_frames..(mel + 1) * self.n_frames]
    }

    pub fn shape(&self) -> [usize; 2] {
        [self.n_mels, self.n_frames]
    }

    /// The same values frame by frame: `(n_frames, n_mels)` row-major, what the encoder's first
    /// convolution reads as rows.
    pub fn time_major(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.n_frames * self.n_mels];
        for m in 0..self.n_mels {
            for (t, &v) in self.band(m).iter().enumerate() {
                out[t * self.n_mels + m] = v;
            }
        }
        out
    }
}

/// Number of log-mel frames for `n_samples` of 16 kHz audio: the centred STFT has `1 + n / 160` frames and
/// Whisper drops the last.
pub fn frame_count(n_samples: usize) -> usize {
    n_samples / HOP_LENGTH
}

/// Reusable log-mel computer (FFT plan, window and filterbank built once).
#[derive(Clone)]
pub struct LogMelSpectrogram {
    filterbank: MelFilterbank,
    /// Periodic Hann window, `torch.hann_window(400)`: `0.5 - 0.5 cos(2 pi n / 400)`.
    window: Vec<f32>,
    fft: Arc<dyn RealToComplex<f32>>,
}

impl std::fmt::Debug for LogMelSpectrogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMelSpectrogram")
            .field("n_mels", &self.filterbank.n_mels())
            .finish_non_exhaustive()
    }
}

impl LogMelSpectrogram {
    pub fn new(bands: MelBands) -> Self {
        let window = (0..N_FFT)
            .map(|n| {
                let phase = 2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64;
                (0.5 - 0.5 * phase.cos()) as f32
            })
            .collect();
        Self {
            filterbank: MelFilterbank::new(bands),
            window,
            fft: RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT),
        }
    }

    pub fn n_mels(&self) -> usize {
        self.filterbank.n_mels()
    }

    pub fn filterbank(&self) -> &MelFilterbank {
        &self.filterbank
    }

    /// Log-mel of 16 kHz mono samples. Returns `None` when there are fewer than 160 samples (no frame).
    pub fn compute(&self, samples: &[f32]) -> Option<LogMel> {
        let n_frames = frame_count(samples.len());
        if n_frames == 0 {
            return None;
        }
        let n_mels = self.n_mels();
        let mut data = vec![0.0f32; n_mels * n_frames];
        let mut frame = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0.0f32; N_FREQS];
        let mut mel = vec![0.0f32; n_mels];
        let pad = N_FFT / 2;
        let mut max_log = f32::NEG_INFINITY;

        for t in 0..n_frames {
            // Frame t covers padded samples t*hop .. t*hop + 400, i.e. original samples from t*hop - 200.
            let first = (t * HOP_LENGTH) as isize - pad as isize;
            if first >= 0 && first as usize + N_FFT <= samples.len() {
                let start = first as usize;
                for ((dst, &x), &w) in frame
                    .iter_mut()
                    .zip(&samples[start..start + N_FFT])
                    .zip(&self.window)
                {
                    *dst = x * w;
                }
            } else {
                for (n, (dst, &w)) in frame.iter_mut().zip(&self.window).enumerate() {
                    *dst = samples[reflect_index(first + n as isize, samples.len())] * w;
                }
            }
            self.fft
                .process_with_scratch(&mut frame, &mut spectrum, &mut scratch)
                .expect("buffers come from the plan, so their lengths match");
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = norm_sqr(*c);
            }
            self.filterbank.apply(&power, &mut mel);
            for (i, &m) in mel.iter().enumerate() {
                let v = m.max(1e-10).log10();
                max_log = max_log.max(v);
                data[i * n_frames + t] = v;
            }
        }

        let floor = max_log - 8.0;
        for v in &mut data {
            *v = (v.max(floor) + 4.0) / 4.0;
        }
        Some(LogMel {
            n_mels,
            n_frames,
            data,
        })
    }
}

fn norm_sqr(c: Complex<f32>) -> f32 {
    c.re * c.re + c.im * c.im
}

/// Index into `0..len` of position `i` under numpy's `'reflect'` padding (mirror without repeating the edge
/// sample), repeated as often as needed so signals shorter than the 200-sample pad work too. torch's reflect
/// pad refuses those; numpy's definition is the natural extension.
fn reflect_index(i: isize, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    let period = 2 * (len as isize - 1);
    let j = i.rem_euclid(period);
    if j < len as isize {
        j as usize
    } else {
        (period - j) as usize
    }
}

/// Pads with zeros or trims `samples` to exactly `len` (Whisper's `pad_or_trim`; 480 000 for 30 s).
pub fn pad_or_trim(samples: &[f32], len: usize) -> Vec<f32> {
    let mut out = samples[..samples.len().min(len)].to_vec();
    out.resize(len, 0.0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_major_puts_each_frame_s_bands_together() {
        let mel = LogMel {
            n_mels: 3,
            n_frames: 2,
            // Bands: [0, 1], [10, 11], [20, 21].
            data: vec![0.0, 1.0, 10.0, 11.0, 20.0, 21.0],
        };
        assert_eq!(mel.time_major(), vec![0.0, 10.0, 20.0, 1.0, 11.0, 21.0]);
    }

    #[test]
    fn reflect_matches_numpy() {
        // np.pad([0, 1, 2, 3], 5, mode='reflect') -> [1 2 3 2 1 | 0 1 2 3 | 2 1 0 1 2]
        let idx: Vec<usize> = (-5..9).map(|i| reflect_index(i, 4)).collect();
        assert_eq!(idx, vec![1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]);
    }

    #[test]
    fn window_is_periodic_hann() {
        let s = LogMelSpectrogram::new(MelBands::Mel80);
        assert_eq!(s.window[0], 0.0);
        assert!((s.window[200] - 1.0).abs() < 1e-7);
        assert!((s.window[100] - 0.5).abs() < 1e-7);
        assert!((s.window[399] - s.window[1]).abs() < 1e-7);
    }

    #[test]
    fn pad_or_trim_both_ways() {
        assert_eq!(pad_or_trim(&[1.0, 2.0], 4), vec![1.0, 2.0, 0.0, 0.0]);
        assert_eq!(pad_or_trim(&[1.0, 2.0, 3.0], 2), vec![1.0, 2.0]);
    }
}
