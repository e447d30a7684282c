//! Properties of the frontend that hold for any input: frame counts, the silence floor, gain as a shift,
//! and lossless WAV decoding of every supported sample format.

use proptest::prelude::*;
use tinyalign_mel::{
    Frontend, FrontendConfig, HOP_LENGTH, LogMelSpectrogram, MelBands, decode_wav, frame_count,
};

use crate::common::wav_bytes;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn frame_count_is_samples_over_hop(len in 1usize..6000, seed in any::<u64>()) {
        let x = noise(len, seed, 0.1);
        let mel = LogMelSpectrogram::new(MelBands::Mel80).compute(&x);
        prop_assert_eq!(frame_count(len), len / HOP_LENGTH);
        match mel {
            Some(mel) => {
                prop_assert!(len >= HOP_LENGTH);
                prop_assert_eq!(mel.shape(), [80, len / HOP_LENGTH]);
                prop_assert!(mel.data.iter().all(|v| v.is_finite()));
            }
            None => prop_assert!(len < HOP_LENGTH),
        }
    }

    #[test]
    fn silence_is_the_floor_everywhere(len in 160usize..20_000, bands in prop_oneof![Just(MelBands::Mel80), Just(MelBands::Mel128)]) {
        // mel = 0 -> log10(1e-10) = -10 everywhere, so max - 8 does not bind: (-10 + 4) / 4 = -1.5.
        let mel = LogMelSpectrogram::new(bands).compute(&vec![0.0; len]).expect("long enough");
        prop_assert!(mel.data.iter().all(|&v| v == -1.5));
    }

    #[test]
    fn gain_shifts_log_mel_by_half_log10(gain in 0.05f32..8.0, seed in any::<u64>()) {
        // Power scales by gain^2, log10 by 2 log10(gain), and the (x + 4) / 4 scaling halves that; the
        // max - 8 clamp moves with the max, so the whole output shifts, except where the absolute floor
        // log10(1e-10) (-1.5 scaled) binds: a bin at the max - 8 floor (the first and last frames are
        // reflect-padded, hence symmetric, and their real spectra can come near zero) sits below it once a
        // gain under ~0.3 moves that floor under -10. So the law is b = max(a + shift, -1.5).
        let x = noise(8000, seed, 0.1);
        let scaled: Vec<f32> = x.iter().map(|v| v * gain).collect();
        let spec = LogMelSpectrogram::new(MelBands::Mel80);
        let a = spec.compute(&x).expect("long enough");
        let b = spec.compute(&scaled).expect("long enough");
        let shift = gain.log10() / 2.0;
        for (i, (va, vb)) in a.data.iter().zip(&b.data).enumerate() {
            let want = (va + shift).max(-1.5);
            prop_assert!((vb - want).abs() < 2e-4, "index {}: {} vs max({} + {}, -1.5)", i, vb, va, shift);
        }
    }

    #[test]
    fn wav_round_trip_for_every_format(
        format in 0usize..5,
        channels in 1u16..=3,
        rate in prop_oneof![Just(8000u32), Just(16_000), Just(22_050), Just(44_100), Just(48_000)],
        frames in 1usize..400,
        seed in any::<u64>(),
    ) {
        let n = frames * usize::from(channels);
        let unit = noise(n, seed, 0.9);
        let (bits, float) = [(8u16, false), (16, false), (24, false), (32, false), (32, true)][format];
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: if float { hound::SampleFormat::Float } else { hound::SampleFormat::Int },
        };
        // Quantise to the format first so the expected value is exact.
        let (bytes, expected_interleaved): (Vec<u8>, Vec<f32>) = if float {
            (wav_bytes(spec, &unit), unit.clone())
        } else {
            let full = (1i64 << (bits - 1)) as f64;
            let ints: Vec<i32> = unit.iter().map(|&v| (f64::from(v) * (full - 1.0)).round() as i32).collect();
            let expected = ints.iter().map(|&i| (f64::from(i) / full) as f32).collect();
            let bytes = match bits {
                8 => wav_bytes(spec, &ints.iter().map(|&i| i as i8).collect::<Vec<_>>()),
                16 => wav_bytes(spec, &ints.iter().map(|&i| i as i16).collect::<Vec<_>>()),
                _ => wav_bytes(spec, &ints),
            };
            (bytes, expected)
        };
        let audio = decode_wav(&bytes, "roundtrip.wav").expect("our own WAV decodes");
        prop_assert_eq!(audio.sample_rate, rate);
        prop_assert_eq!(audio.source_channels, channels);
        prop_assert_eq!(audio.samples.len(), frames);
        let expected = tinyalign_mel::downmix(&expected_interleaved, usize::from(channels));
        for (i, (got, want)) in audio.samples.iter().zip(&expected).enumerate() {
            prop_assert!((got - want).abs() <= 1e-6, "sample {}: {} vs {}", i, got, want);
        }
    }
}

#[test]
fn frontend_pads_any_length_to_3000_frames() {
    let frontend = Frontend::new(FrontendConfig {
        bands: MelBands::Mel80,
        pad_to_30s: true,
    });
    for len in [160, 16_000, 480_000, 700_000] {
        let mel = frontend
            .samples_to_log_mel(&noise(len, 7, 0.1), "x")
            .expect("long enough");
        assert_eq!(mel.shape(), [80, 3000], "{len} samples");
    }
}

/// Deterministic uniform noise in [-amp, amp] (xorshift; no RNG crate needed).
fn noise(len: usize, seed: u64, amp: f32) -> Vec<f32> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amp
        })
        .collect()
}
