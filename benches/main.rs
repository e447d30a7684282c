//! criterion benchmarks. Throughput is stated in audio seconds ("elements" = seconds of audio), so criterion's
//! `elem/s` reads directly as "times real time" on one thread.
//!
//! Run: `cargo bench -p tinyalign-benches` (or `cargo xtask bench`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tinyalign_mel::{
    Frontend, FrontendConfig, LogMelSpectrogram, MelBands, N_SAMPLES_30S, Resampler, decode_wav,
};

/// 30 s of speech-like audio: the committed 8 kHz telephone prompt, resampled and tiled to 30 s.
fn speech_30s() -> Vec<f32> {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/mel/tt-weasels.wav"
    ))
    .expect("fixture");
    let audio = decode_wav(&bytes, "tt-weasels.wav").expect("decodes");
    let x16 = Resampler::new(audio.sample_rate, 16_000)
        .expect("rates")
        .process(&audio.samples);
    x16.iter().copied().cycle().take(N_SAMPLES_30S).collect()
}

fn frontend(c: &mut Criterion) {
    let audio = speech_30s();
    let mut group = c.benchmark_group("frontend_30s");
    group.throughput(Throughput::Elements(30));
    group.measurement_time(Duration::from_secs(5));

    let spec80 = LogMelSpectrogram::new(MelBands::Mel80);
    group.bench_function("log_mel_80", |b| {
        b.iter(|| spec80.compute(black_box(&audio)))
    });
    let spec128 = LogMelSpectrogram::new(MelBands::Mel128);
    group.bench_function("log_mel_128", |b| {
        b.iter(|| spec128.compute(black_box(&audio)))
    });

    let at_8k: Vec<f32> = audio.iter().step_by(2).copied().collect();
    let up = Resampler::new(8_000, 16_000).expect("rates");
    group.bench_function("resample_8k_to_16k", |b| {
        b.iter(|| up.process(black_box(&at_8k)))
    });
    let at_44k = Resampler::new(16_000, 44_100)
        .expect("rates")
        .process(&audio);
    let down = Resampler::new(44_100, 16_000).expect("rates");
    group.bench_function("resample_44k1_to_16k", |b| {
        b.iter(|| down.process(black_box(&at_44k)))
    });

    let full = Frontend::new(FrontendConfig::default());
    let audio_8k = tinyalign_mel::Audio {
        samples: at_8k.clone(),
        sample_rate: 8_000,
        source_channels: 1,
    };
    group.bench_function("telephone_8k_to_log_mel", |b| {
        b.iter(|| full.audio_to_log_mel(black_box(&audio_8k), "bench"))
    });
    group.finish();
}

criterion_group!(benches, frontend);
criterion_main!(benches);
