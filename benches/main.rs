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

/// The machine's GEMM peak through dfdx (the denominator for every FLOP/s figure), then Whisper tiny.en's
/// encoder on 5 s of speech at its natural length and padded to Whisper's 30 s window. Throughput is in
/// FLOPs, so criterion's `elem/s` reads as FLOP/s.
fn encoder(c: &mut Criterion) {
    let dev = tinyalign_nn::cpu();
    let mut group = c.benchmark_group("whisper_tiny_en");
    group.measurement_time(Duration::from_secs(8));
    group.sample_size(10);
    let n = 1024;
    let a = tinyalign_nn::from_vec2(&dev, vec![0.5; n * n], n, n);
    let b = tinyalign_nn::from_vec2(&dev, vec![0.25; n * n], n, n);
    group.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
    group.bench_function("gemm_peak_1024", |bench| {
        bench.iter(|| tinyalign_nn::matmul(black_box(&a), &b))
    });

    let cache = std::env::var_os("TINYALIGN_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache/tinyalign").into());
    let dir = cache.join("whisper-tiny.en/hf");
    if !dir.join("model.safetensors").exists() {
        eprintln!(
            "SKIPPED encoder benches: no {} (run `cargo xtask fetch`)",
            dir.display()
        );
        return;
    }
    let enc = tinyalign_whisper::load_encoder_dir(&dir).expect("loads");
    let speech: Vec<f32> = speech_30s()[..5 * 16_000].to_vec();
    for (name, pad) in [
        ("encoder_5s_natural", false),
        ("encoder_5s_padded_30s", true),
    ] {
        let mel = Frontend::new(FrontendConfig {
            bands: MelBands::Mel80,
            pad_to_30s: pad,
        })
        .samples_to_log_mel(&speech, "bench")
        .expect("long enough");
        group.throughput(Throughput::Elements(encoder_flops(
            enc.output_frames(mel.n_frames) as u64,
        )));
        group.bench_function(name, |bench| {
            bench.iter(|| enc.forward(black_box(&mel)).expect("runs"))
        });
    }
    group.finish();
}

/// Matmul FLOPs of tiny.en's encoder for `t` output frames (d 384, 4 layers, FFN 1536, 80 mels): the convs,
/// the four projections, the two attention products and the MLP.
fn encoder_flops(t: u64) -> u64 {
    let (d, ffn, layers, mels) = (384u64, 1536u64, 4u64, 80u64);
    let convs = 2 * (2 * t) * mels * d * 3 + 2 * t * d * d * 3;
    let per_layer = 2 * t * d * d * 4 + 2 * 2 * t * t * d + 2 * 2 * t * d * ffn;
    convs + layers * per_layer
}

/// SmolLM2-135M-Instruct decoding and prompt processing, tokens per second (criterion's `elem/s`), with the
/// weights as stored (Q4_1 + Q8_0) and 8-bit or f32 activations, and dequantised to f32. The first bench is the
/// denominator: how fast this machine streams memory on all cores; a decoding step must read every weight
/// once, so `bandwidth / weight bytes` bounds tokens per second.
fn llm(c: &mut Criterion) {
    let mut group = c.benchmark_group("smollm2_135m");
    group.measurement_time(Duration::from_secs(6));
    group.sample_size(10);
    // Integer XOR is associative, so this loop vectorises and is bound by memory, not by add latency.
    let big: Vec<u64> = (0..32u64 << 20).collect();
    group.throughput(Throughput::Bytes(big.len() as u64 * 8));
    group.bench_function("memory_read_256MiB", |bench| {
        bench.iter(|| {
            use rayon::prelude::*;
            big.par_chunks(1 << 15)
                .map(|c| c.iter().fold(0, |a, &v| a ^ v))
                .reduce(|| 0, |a, b| a ^ b)
        })
    });
    drop(big);

    let cache = std::env::var_os("TINYALIGN_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache/tinyalign").into());
    let path = cache.join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.exists() {
        eprintln!(
            "SKIPPED LLM benches: no {} (run `cargo xtask fetch`)",
            path.display()
        );
        return;
    }
    use tinyalign_llm::{Activations, KvCache, LlamaModel, Precision};
    let prompt_text = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
                       Face<|im_end|>\n<|im_start|>user\nWrite a short story about a lighthouse keeper who \
                       finds a message in a bottle, and what happens next.<|im_end|>\n<|im_start|>assistant\n";
    for (name, precision, activations) in [
        ("q4_1_q8act", Precision::Native, Activations::Q8),
        ("q4_1_f32act", Precision::Native, Activations::F32),
        ("f32", Precision::F32, Activations::F32),
    ] {
        let mut model = LlamaModel::load_gguf(&path, precision).expect("loads");
        model.set_activations(activations);
        eprintln!(
            "{name}: {:.1} MB of weights read per token",
            model.weight_bytes() as f64 / 1e6
        );
        let ids = model.tokenizer.encode(prompt_text, true);
        let embeds = model.embed_tokens(&ids).expect("ids in range");
        let mut kv = KvCache::new(&model.config, ids.len() + 1);
        group.throughput(Throughput::Elements(ids.len() as u64));
        group.bench_function(format!("prefill_{}_tokens_{name}", ids.len()), |bench| {
            bench.iter(|| {
                kv.truncate(0);
                model
                    .forward_embeds(black_box(&embeds), ids.len(), &mut kv, false)
                    .expect("runs")
            })
        });
        // One decoding step after the prompt: the cache is cut back to the prompt before each.
        let next = model.embed_tokens(&[504]).expect("id in range");
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("decode_step_{name}"), |bench| {
            bench.iter(|| {
                kv.truncate(ids.len());
                model
                    .forward_embeds(black_box(&next), 1, &mut kv, false)
                    .expect("runs")
            })
        });
    }
    group.finish();
}

/// A padded batch of `b` seeded Whisper-tiny-width (384) feature sequences of `n` frames each, laid out as
/// `projector` takes them: `(b · frames, 384)` and its layout. The training-step benches' shared input.
fn synthetic_batch(
    projector: &tinyalign_projector::Projector<tinyalign_nn::Device>,
    b: usize,
    n: usize,
) -> (tinyalign_nn::Tensor2, tinyalign_projector::BatchLayout) {
    let utterances: Vec<Vec<f32>> = (0..b)
        .map(|u| {
            (0..n * 384)
                .map(|i| (((i + u) * 7919) % 1000) as f32 / 1000.0 - 0.5)
                .collect()
        })
        .collect();
    let refs: Vec<&[f32]> = utterances.iter().map(Vec::as_slice).collect();
    let (data, layout) = projector.pad_batch(&refs).expect("lengths");
    let x = tinyalign_nn::from_vec2(projector.device(), data, b * layout.frames, 384);
    (x, layout)
}

/// One BridgeFormer training step at the default sizes (Whisper tiny.en 384 → SmolLM2 576, 4 frames stacked,
/// d_model 256, two layers, T = 32) on a batch of 16 utterances of 5 s (250 frames): forward, masked-MSE backward, AdamW.
/// Throughput is the step's matmul FLOPs (forward + 2× for backward), so `elem/s` reads as FLOP/s; compare
/// with `whisper_tiny_en/gemm_peak_1024`.
fn projector(c: &mut Criterion) {
    use tinyalign_projector::{Projector, ProjectorConfig};
    let mut group = c.benchmark_group("bridgeformer");
    group.measurement_time(Duration::from_secs(8));
    group.sample_size(10);
    let dev = tinyalign_nn::cpu();
    let config = ProjectorConfig::bridgeformer(384, 576, 0.05);
    let mut projector = Projector::init(config.clone(), 0, dev.clone()).expect("config");
    let (b, n) = (16usize, 250usize);
    let (x, layout) = synthetic_batch(&projector, b, n);
    let rows = b * layout.max_tokens;
    let target = tinyalign_nn::from_vec2(&dev, vec![0.01; rows * 576], rows, 576);
    let mask = tinyalign_nn::from_vec2(&dev, vec![1.0; rows * 576], rows, 576);
    let mut opt = tinyalign_nn::AdamW::new(0.01, Some(1.0));
    group.throughput(Throughput::Elements(
        3 * bridgeformer_flops(&config, b as u64, n as u64),
    ));
    group.bench_function("train_step_b16_5s", |bench| {
        bench.iter(|| {
            let out = projector.forward(tinyalign_nn::traced(&x), &layout);
            let mut grads = tinyalign_nn::backward(tinyalign_nn::masked_mse(out, &target, &mask));
            opt.step(&mut projector, &mut grads, 1e-4)
        })
    });
    group.finish();
}

/// One training step of the default CTC projector (`configs/default.toml`: the BridgeFormer trunk at the sizes
/// above, a CTC head onto Qwen2.5-0.5B's width 896 over 412 classes plus the blank, as the `synth` set's
/// transcripts give) on a batch of 16 utterances of 5 s with 20 labels each: forward, the CTC loss and its
/// exact gradient (on the host), backward, AdamW. The class rows are seeded stand-ins for the LLM's embeddings
/// (the step's cost does not depend on their values). Throughput: matmul FLOPs as for BridgeFormer.
fn ctc_projector(c: &mut Criterion) {
    use tinyalign_projector::{Projector, ProjectorConfig, ProjectorOutput};
    const CLASSES: usize = 412;
    const D_LLM: usize = 896;
    let mut group = c.benchmark_group("ctc_bridgeformer");
    group.measurement_time(Duration::from_secs(8));
    group.sample_size(10);
    let dev = tinyalign_nn::cpu();
    let mut config = ProjectorConfig::bridgeformer(384, D_LLM, 0.05);
    config.output = ProjectorOutput::Ctc {
        classes: (0..CLASSES as u32).map(|i| 100 + 3 * i).collect(),
        logit_scale: 16.0,
    };
    let mut projector = Projector::init(config.clone(), 0, dev.clone()).expect("config");
    let rows: Vec<f32> = (0..CLASSES * D_LLM)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let table = projector.ctc_table(&rows).expect("class rows");
    let (b, n) = (16usize, 250usize);
    let (x, layout) = synthetic_batch(&projector, b, n);
    let labels: Vec<Vec<usize>> = (0..b)
        .map(|u| (0..20).map(|i| (u * 31 + i * 17) % CLASSES).collect())
        .collect();
    let label_refs: Vec<&[usize]> = labels.iter().map(Vec::as_slice).collect();
    let mut opt = tinyalign_nn::AdamW::new(1e-3, Some(1.0));
    let stacked_rows = (b * layout.max_tokens) as u64;
    let head =
        2 * stacked_rows * (D_LLM as u64) * (CLASSES as u64 + 1) + 2 * stacked_rows * D_LLM as u64;
    group.throughput(Throughput::Elements(
        3 * (bridgeformer_flops(&config, b as u64, n as u64) + head),
    ));
    group.bench_function("ctc_train_step_b16_5s", |bench| {
        bench.iter(|| {
            let out = projector.forward(tinyalign_nn::traced(&x), &layout);
            let (loss, _, used) =
                tinyalign_train::ctc_batch_loss(&projector, out, &layout, &label_refs, &table);
            assert_eq!(used, b, "every utterance has frames for its labels");
            let mut grads = tinyalign_nn::backward(loss);
            opt.step(&mut projector, &mut grads, 1e-3)
        })
    });
    group.finish();
}

/// One epoch of 32 synthetic training utterances (two BridgeFormer steps of batch 16 at the default sizes),
/// with the encoder features read from tinyalign-train's on-disk cache against recomputing them from the WAV
/// (decode, log-mel, Whisper tiny.en) every epoch: what the feature cache saves. Both variants run the same
/// training steps. Skipped with a notice without the cached models or the `synth` dataset.
fn epoch(c: &mut Criterion) {
    use tinyalign_projector::{Projector, ProjectorConfig};
    let cache = std::env::var_os("TINYALIGN_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache/tinyalign").into());
    let whisper = cache.join("whisper-tiny.en/hf");
    let manifest_path = cache.join("datasets/synth/manifest.jsonl");
    if !whisper.join("model.safetensors").exists() || !manifest_path.exists() {
        eprintln!(
            "SKIPPED epoch benches: needs {} and {} (run `cargo xtask fetch` and `cargo xtask data synth`)",
            whisper.display(),
            manifest_path.display()
        );
        return;
    }
    let dev = tinyalign_nn::cpu();
    let manifest = tinyalign_data::Manifest::read(&manifest_path).expect("synth manifest");
    let utterances: Vec<_> = manifest.utterances.iter().take(32).cloned().collect();
    let encoder = tinyalign_whisper::load_encoder_dir(&whisper).expect("encoder");
    let frontend = Frontend::new(FrontendConfig {
        bands: MelBands::Mel80,
        pad_to_30s: false,
    });
    let feature_dir =
        std::env::temp_dir().join(format!("tinyalign-epoch-bench-{}", std::process::id()));
    let mut features =
        tinyalign_train::FeatureCache::new(&feature_dir, encoder.clone(), "epoch-bench")
            .expect("cache");
    let audio_seconds: f64 = utterances
        .iter()
        .map(|u| {
            let f = features.get(&manifest, u, None).expect("features");
            f.frames as f64 * 0.02
        })
        .sum();

    let config = ProjectorConfig::bridgeformer(384, 576, 0.05);
    let mut projector = Projector::init(config, 0, dev.clone()).expect("config");
    let mut opt = tinyalign_nn::AdamW::new(1e-4, Some(1.0));
    let mut train_epoch = |epoch_features: Vec<Vec<f32>>| {
        for batch in epoch_features.chunks(16) {
            let refs: Vec<&[f32]> = batch.iter().map(Vec::as_slice).collect();
            let (data, layout) = projector.pad_batch(&refs).expect("lengths");
            let x = tinyalign_nn::from_vec2(&dev, data, batch.len() * layout.frames, 384);
            let rows = batch.len() * layout.max_tokens;
            let target = tinyalign_nn::from_vec2(&dev, vec![0.01; rows * 576], rows, 576);
            let mask = tinyalign_nn::from_vec2(&dev, vec![1.0; rows * 576], rows, 576);
            let out = projector.forward(tinyalign_nn::traced(&x), &layout);
            let mut grads = tinyalign_nn::backward(tinyalign_nn::masked_mse(out, &target, &mask));
            opt.step(&mut projector, &mut grads, 1e-4);
        }
    };

    let mut group = c.benchmark_group("epoch_32_utterances");
    group.measurement_time(Duration::from_secs(10));
    group.sample_size(10);
    group.throughput(Throughput::Elements(audio_seconds.round() as u64));
    group.bench_function("cached_features", |bench| {
        bench.iter(|| {
            let epoch_features = utterances
                .iter()
                .map(|u| features.get(&manifest, u, None).expect("cached").data)
                .collect();
            train_epoch(epoch_features)
        })
    });
    group.bench_function("recomputed_features", |bench| {
        bench.iter(|| {
            let epoch_features = utterances
                .iter()
                .map(|u| {
                    let path = manifest.audio_path(u);
                    let audio =
                        tinyalign_mel::read_audio_file(&path, u.input_format()).expect("audio");
                    let mel = frontend.audio_to_log_mel(&audio, &u.id).expect("mel");
                    encoder.forward(&mel).expect("encoder").data
                })
                .collect();
            train_epoch(epoch_features)
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&feature_dir);
}

/// Forward matmul FLOPs of BridgeFormer on b utterances of n frames (k frames stacked first): pooled to T
/// tokens, or, with a CTC head, every stacked frame through the output MLP (the head's own product is the
/// caller's to add).
fn bridgeformer_flops(c: &tinyalign_projector::ProjectorConfig, b: u64, n: u64) -> u64 {
    let (da, dm, ff, dl) = (
        c.d_audio as u64,
        c.d_model as u64,
        c.ffn_dim as u64,
        c.d_llm as u64,
    );
    let k = c.stack as u64;
    let m = n.div_ceil(k);
    let ctc = c.ctc_classes().is_some();
    let t = if ctc { m } else { c.max_tokens() as u64 };
    let rows = b * m;
    let input = 2 * rows * (k * da * dm + dm * dm);
    let per_layer = 2 * rows * (4 * dm * dm + 2 * dm * ff) + 2 * 2 * b * m * m * dm;
    let pool = if ctc { 0 } else { 2 * b * t * m * dm };
    let output = 2 * b * t * (dm * dm + dm * dl);
    input + c.layers as u64 * per_layer + pool + output
}

/// The wgpu kernels on whatever adapter wgpu finds (llvmpipe here: a regression guard, not a speed claim),
/// next to dfdx's CPU matmul of the same shape in the same process. Each iteration dispatches and reads the
/// result back, so the readback is included. Throughput in FLOPs.
fn wgpu_kernels(c: &mut Criterion) {
    use tinyalign_weights::gguf::GgmlType;
    use tinyalign_wgpu::ops::{self, Activation};
    let gpu = match tinyalign_wgpu::Gpu::new_blocking() {
        Ok(gpu) => gpu,
        Err(e) => {
            eprintln!("SKIPPED wgpu benches: {e}");
            return;
        }
    };
    let mut group = c.benchmark_group(format!("wgpu ({})", gpu.adapter_description()));
    group.measurement_time(Duration::from_secs(6));
    group.sample_size(10);
    // Whisper tiny.en's FFN on 5 s: 250 frames × 384 → 1536.
    let (m, k, n) = (250, 384, 1536);
    let x: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let w: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 * 0.01).collect();
    group.throughput(Throughput::Elements(2 * (m * k * n) as u64));
    let dev = tinyalign_nn::cpu();
    let (xa, wa) = (
        tinyalign_nn::from_vec2(&dev, x.clone(), m, k),
        tinyalign_nn::from_vec2(&dev, w.clone(), k, n),
    );
    group.bench_function("cpu_dfdx_matmul_250x384x1536", |b| {
        b.iter(|| tinyalign_nn::matmul(black_box(&xa), &wa))
    });
    let xg = gpu.upload(&x, m, k).expect("upload");
    let wg = tinyalign_wgpu::GpuMatrix::from_f32(&gpu, n, k, &w).expect("upload");
    group.bench_function("gpu_gemm_f32_250x384x1536", |b| {
        b.iter(|| {
            let out = ops::linear(&gpu, &xg, &wg, None, Activation::None).expect("runs");
            gpu.read_blocking(&out).expect("reads")
        })
    });
    // A decoding step's matrix-vector product on SmolLM2's FFN width, weights in Q4_1 blocks.
    let (k, n) = (576, 1536);
    let raw: Vec<u8> = (0..n * k / 32)
        .flat_map(|i| {
            let mut block = half::f16::from_f32(0.01).to_le_bytes().to_vec();
            block.extend(half::f16::from_f32(-0.05).to_le_bytes());
            block.extend((0..16).map(|j| ((i + j) % 256) as u8));
            block
        })
        .collect();
    let wq =
        tinyalign_wgpu::GpuMatrix::from_blocks(&gpu, GgmlType::Q4_1, n, k, &raw).expect("upload");
    let xv = gpu.upload(&vec![0.5; k], 1, k).expect("upload");
    group.throughput(Throughput::Elements(2 * (k * n) as u64));
    group.bench_function("gpu_gemv_q4_1_1x576x1536", |b| {
        b.iter(|| {
            let out = ops::linear(&gpu, &xv, &wq, None, Activation::None).expect("runs");
            gpu.read_blocking(&out).expect("reads")
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    frontend,
    encoder,
    llm,
    projector,
    ctc_projector,
    epoch,
    wgpu_kernels
);
criterion_main!(benches);
