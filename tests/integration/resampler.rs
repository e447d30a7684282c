//! The resampler against scipy.signal.resample_poly (fixtures) and against signal-processing facts: tones keep
//! their frequency, content above the new Nyquist is removed rather than folded back, lengths are exact.

use std::f64::consts::PI;

use tinyalign_mel::{InputFormat, Resampler, read_audio_file};

use crate::common::{fixture, load_npy, max_abs_diff, rms};

/// Same filter, same arithmetic order up to f32 storage of the taps.
const SCIPY_TOL: f32 = 1e-5;

fn check_against_scipy(input: &str, reference: &str, from: u32) {
    let audio = read_audio_file(&fixture(input), InputFormat::Wav).expect("decodes");
    assert_eq!(audio.sample_rate, from);
    let ours = Resampler::new(from, 16_000)
        .expect("valid rates")
        .process(&audio.samples);
    let reference = load_npy(reference);
    let (err, at) = max_abs_diff(&ours, &reference.data);
    eprintln!("{input}: resample max abs error {err:e}");
    assert!(
        err <= SCIPY_TOL,
        "{input}: max abs error {err:e} at sample {at}"
    );
}

#[test]
fn upsampling_8k_matches_scipy_resample_poly() {
    check_against_scipy(
        "mel/tt-weasels.wav",
        "mel/tt-weasels.resampled16k.npy",
        8000,
    );
}

#[test]
fn downsampling_22050_matches_scipy_resample_poly() {
    check_against_scipy(
        "mel/synth22050.wav",
        "mel/synth22050.resampled16k.npy",
        22_050,
    );
}

fn tone(freq: f64, rate: u32, seconds: f64) -> Vec<f32> {
    let n = (seconds * f64::from(rate)) as usize;
    (0..n)
        .map(|i| (0.5 * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as f32)
        .collect()
}

/// Amplitude of the `freq` component of `x` (single-bin DFT).
fn amplitude_at(x: &[f32], freq: f64, rate: u32) -> f64 {
    let (mut re, mut im) = (0.0, 0.0);
    for (i, &v) in x.iter().enumerate() {
        let phase = 2.0 * PI * freq * i as f64 / f64::from(rate);
        re += f64::from(v) * phase.cos();
        im += f64::from(v) * phase.sin();
    }
    2.0 * (re * re + im * im).sqrt() / x.len() as f64
}

#[test]
fn a_1khz_tone_stays_1khz_at_every_common_rate() {
    for from in [
        8_000, 11_025, 22_050, 24_000, 32_000, 44_100, 48_000, 96_000,
    ] {
        let out = Resampler::new(from, 16_000)
            .expect("valid rates")
            .process(&tone(1000.0, from, 1.0));
        assert_eq!(out.len(), 16_000, "from {from}");
        // Away from the edges, where zero padding tapers the signal.
        let body = &out[1000..15_000];
        let at_1k = amplitude_at(body, 1000.0, 16_000);
        assert!(
            (at_1k - 0.5).abs() < 0.01,
            "from {from}: 1 kHz amplitude {at_1k}"
        );
        for other in [900.0, 1100.0, 2000.0, 3000.0] {
            let leak = amplitude_at(body, other, 16_000);
            assert!(leak < 0.005, "from {from}: {other} Hz amplitude {leak}");
        }
    }
}

#[test]
fn content_above_the_new_nyquist_is_removed_not_aliased() {
    // A linear sweep 100 Hz -> 23 kHz at 48 kHz. After resampling to 16 kHz, the part of the sweep above
    // 8.8 kHz (outside the filter's transition band) must be gone; a naive decimator would fold it back
    // at full strength.
    let rate = 48_000u32;
    let seconds = 2.0;
    let (f0, f1) = (100.0, 23_000.0);
    let n = (seconds * f64::from(rate)) as usize;
    let sweep: Vec<f32> = (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (0.5 * (2.0 * PI * (f0 * t + (f1 - f0) * t * t / (2.0 * seconds))).sin()) as f32
        })
        .collect();
    let out = Resampler::new(rate, 16_000)
        .expect("valid rates")
        .process(&sweep);
    assert_eq!(out.len(), 32_000);
    let freq_at = |sample: usize| f0 + (f1 - f0) * (sample as f64 / 16_000.0) / seconds;
    let passband: Vec<f32> = (0..out.len())
        .filter(|&i| freq_at(i) < 6_500.0)
        .map(|i| out[i])
        .collect();
    let stopband: Vec<f32> = (0..out.len())
        .filter(|&i| freq_at(i) > 8_800.0 && i < out.len() - 200)
        .map(|i| out[i])
        .collect();
    let attenuation_db = 20.0 * (rms(&stopband) / rms(&passband)).log10();
    eprintln!("sweep stopband attenuation: {attenuation_db:.1} dB");
    assert!(rms(&passband) > 0.3, "passband rms {}", rms(&passband));
    assert!(
        attenuation_db < -40.0,
        "stopband only {attenuation_db:.1} dB below the passband"
    );
}

#[test]
fn output_length_is_exact_for_any_rate_pair() {
    for (from, len) in [
        (8_000, 1),
        (8_000, 7),
        (44_100, 44_101),
        (22_050, 3),
        (16_001, 500),
    ] {
        let r = Resampler::new(from, 16_000).expect("valid rates");
        let expected = (len * 16_000usize).div_ceil(from as usize);
        assert_eq!(
            r.process(&vec![0.25; len]).len(),
            expected,
            "{from} Hz, {len} samples"
        );
    }
}
