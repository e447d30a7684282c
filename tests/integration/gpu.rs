//! The wgpu forward passes on the real models against references: the Whisper encoder against the numpy
//! port's fixture (the same tolerance as the CPU encoder), the projector, SmolLM2 and Qwen2.5 against the
//! CPU implementations, and the whole audio → answer pipeline against the CPU assistant's greedy answer.
//! Runs on whatever adapter wgpu finds (Mesa's llvmpipe in CI); no adapter is a failure.

use tinyalign_llm::{Activations, GenerateOptions, KvCache, LlamaModel, Precision};
use tinyalign_mel::LogMel;
use tinyalign_projector::{Projector, ProjectorConfig, ProjectorKind, ProjectorOutput, TokenCount};
use tinyalign_weights::gguf::GgufFile;
use tinyalign_wgpu::{Gpu, GpuLlama, GpuProjector, GpuWhisperEncoder};

use crate::common::{cached_model, load_npy, max_abs_diff};

const GGUF: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
const QWEN_GGUF: &str = "qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

fn gpu() -> &'static Gpu {
    Gpu::shared_blocking().expect("a wgpu adapter (install mesa-vulkan-drivers)")
}

fn weasels_mel() -> LogMel {
    let a = load_npy("mel/tt-weasels.logmel.npy");
    LogMel {
        n_mels: a.shape[0],
        n_frames: a.shape[1],
        data: a.data,
    }
}

#[test]
fn gpu_encoder_matches_the_numpy_reference() {
    let Some(path) = cached_model("whisper-tiny.en/hf/model.safetensors") else {
        return;
    };
    let (config, map) = tinyalign_whisper::read_model_dir(path.parent().unwrap()).unwrap();
    let g = gpu();
    let encoder = GpuWhisperEncoder::load(g, config, &map).unwrap();
    let out = encoder.forward(g, &weasels_mel()).unwrap();
    assert_eq!((out.rows(), out.cols()), (148, 384));
    let reference = load_npy("whisper/tt-weasels.encoder.npy");
    let (err, at) = max_abs_diff(&g.read_blocking(&out).unwrap(), &reference.data);
    eprintln!("GPU encoder: max abs error {err:e} against numpy (tolerance 2e-3)");
    assert!(err <= 2e-3, "max abs error {err} at row {}", at / 384);
    let err = encoder
        .forward(
            g,
            &LogMel {
                n_mels: 128,
                n_frames: 10,
                data: vec![0.0; 1280],
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("128 mel bands"), "{err}");
}

#[test]
fn gpu_projector_matches_the_cpu_projector_for_every_kind() {
    // Real encoder features (the numpy fixture) through seeded projectors of the real sizes.
    let features = load_npy("whisper/tt-weasels.encoder.npy").data;
    let g = gpu();
    for kind in [
        ProjectorKind::BridgeFormer,
        ProjectorKind::Mlp,
        ProjectorKind::Linear,
    ] {
        let mut config = ProjectorConfig::bridgeformer(384, 576, 0.1356);
        config.kind = kind;
        config.tokens = TokenCount::PerSecond {
            per_second: 5.0,
            min: 4,
            max: 48,
        };
        if kind != ProjectorKind::BridgeFormer {
            config.stack = 5;
        }
        let mut cpu = Projector::init(config.clone(), 7, tinyalign_nn::cpu()).unwrap();
        let (want, t) = cpu.project(&features).unwrap();
        let gpu_projector = GpuProjector::load(g, config, &cpu.state_dict(), None).unwrap();
        let input = g.upload(&features, 148, 384).unwrap();
        let out = gpu_projector.forward(g, &input).unwrap();
        assert_eq!((out.rows(), out.cols()), (t, 576), "{kind:?}");
        let (err, at) = max_abs_diff(&g.read_blocking(&out).unwrap(), &want);
        eprintln!("GPU projector {kind:?}: max abs error {err:e} (outputs' RMS 0.136)");
        assert!(err <= 1e-4, "{kind:?}: max abs error {err} at {at}");
    }
}

/// A CTC projector on the GPU: one vector per stacked frame and the head's logits (classes against
/// their LLM embeddings, the learned blank last) as the CPU's `project_ctc`, for every kind, and the same
/// greedy path.
#[test]
fn gpu_ctc_projector_matches_the_cpu_projector_for_every_kind() {
    let features = load_npy("whisper/tt-weasels.encoder.npy").data;
    let g = gpu();
    let d = 576;
    let classes: Vec<u32> = (0..300).map(|i| 17 + i * 131).collect();
    // Class embeddings at about SmolLM2's embedding scale (seeded, not the LLM's: the head is what is
    // compared here; the assistant reads real rows).
    let class_embeddings: Vec<f32> = (0..classes.len() * d)
        .map(|i| 0.14 * ((i as f32 * 0.618_034).fract() * 2.0 - 1.0) * 1.7)
        .collect();
    for kind in [
        ProjectorKind::BridgeFormer,
        ProjectorKind::Mlp,
        ProjectorKind::Linear,
    ] {
        let mut config = ProjectorConfig::bridgeformer(384, d, 0.1356);
        config.kind = kind;
        config.output = ProjectorOutput::Ctc {
            classes: classes.clone(),
            logit_scale: 16.0,
        };
        let mut cpu = Projector::init(config.clone(), 11, tinyalign_nn::cpu()).unwrap();
        let table = cpu.ctc_table(&class_embeddings).unwrap();
        let (want_frames, want_logits, n) = cpu.project_ctc(&features, &table).unwrap();
        let gpu_projector =
            GpuProjector::load(g, config, &cpu.state_dict(), Some(&class_embeddings)).unwrap();
        let input = g.upload(&features, 148, 384).unwrap();
        let frames = gpu_projector.forward(g, &input).unwrap();
        assert_eq!((frames.rows(), frames.cols()), (n, d), "{kind:?}");
        let logits = gpu_projector.ctc_logits(g, &frames).unwrap();
        let (got_frames, got_logits) = (
            g.read_blocking(&frames).unwrap(),
            g.read_blocking(&logits).unwrap(),
        );
        let (frame_err, _) = max_abs_diff(&got_frames, &want_frames);
        let (logit_err, at) = max_abs_diff(&got_logits, &want_logits);
        eprintln!(
            "GPU CTC projector {kind:?}: frames max abs error {frame_err:e}, logits {logit_err:e} ({n} frames × {} classes + blank)",
            classes.len()
        );
        assert!(frame_err <= 1e-4, "{kind:?}: frames differ by {frame_err}");
        assert!(
            logit_err <= 1e-3,
            "{kind:?}: logit {at}: GPU {} vs CPU {}",
            got_logits[at],
            want_logits[at]
        );
        let width = classes.len() + 1;
        assert_eq!(
            tinyalign_projector::greedy_segments(&got_logits, width),
            tinyalign_projector::greedy_segments(&want_logits, width),
            "{kind:?}: greedy paths"
        );
    }
    let mut config = ProjectorConfig::bridgeformer(384, d, 0.1356);
    config.output = ProjectorOutput::Ctc {
        classes,
        logit_scale: 16.0,
    };
    let mut cpu = Projector::init(config.clone(), 11, tinyalign_nn::cpu()).unwrap();
    let err = GpuProjector::load(g, config, &cpu.state_dict(), None).unwrap_err();
    assert!(
        err.to_string().contains("embeddings of its classes"),
        "{err}"
    );
}

#[test]
fn gpu_llm_matches_the_cpu_model_and_answers_the_same() {
    llm_matches_the_cpu_model(GGUF, 2e-3, 10);
}

/// Qwen2.5's Q/K/V biases, half-split RoPE, untied head, Q5_0 / Q4_K / Q6_K blocks, and a 151,936-row
/// table and head larger than one storage binding on llvmpipe (held in row bands). Three answer tokens:
/// each costs seconds on llvmpipe, and the generation loop is the one the SmolLM2 test runs for ten.
#[test]
fn gpu_qwen_matches_the_cpu_model_and_answers_the_same() {
    llm_matches_the_cpu_model(QWEN_GGUF, 2e-3, 3);
}

/// The GPU LLM against the CPU model on the same prompt with projected audio in the slot: last-position
/// logits within `tolerance`, then the same greedy answer (`max_tokens`) through each side's own
/// generation loop.
fn llm_matches_the_cpu_model(gguf: &str, tolerance: f32, max_tokens: usize) {
    let Some(path) = cached_model(gguf) else {
        return;
    };
    let bytes = std::fs::read(&path).unwrap();
    let file = GgufFile::parse(&bytes, gguf).unwrap();
    // The CPU model with f32 activations: the same arithmetic as the GPU's up to summation order.
    let mut cpu = LlamaModel::from_gguf(&file, Precision::Native).unwrap();
    cpu.set_activations(Activations::F32);
    let g = gpu();
    let llm = GpuLlama::from_gguf(g, &file).unwrap();
    let d = cpu.config.hidden_size;

    // Projected audio in the slot: a seeded BridgeFormer over real encoder features.
    let features = load_npy("whisper/tt-weasels.encoder.npy").data;
    let projector = Projector::init(
        ProjectorConfig::bridgeformer(384, d, 0.1356),
        3,
        tinyalign_nn::cpu(),
    )
    .unwrap();
    let (slot, t) = projector.project(&features).unwrap();
    let instruction = "What is the capital of France? Answer in one sentence.";
    let slot_prompt = tinyalign_llm::SlotPrompt::instruction(instruction);
    let (prompt, history) = llm
        .slot_prompt(g, Some(&g.upload(&slot, t, d).unwrap()), &slot_prompt)
        .unwrap();

    let (before, after) = cpu.slot_prompt_ids(&slot_prompt);
    let mut embeds = cpu.embed_tokens(&before).unwrap();
    embeds.extend_from_slice(&slot);
    embeds.extend(cpu.embed_tokens(&after).unwrap());
    let n = before.len() + t + after.len();
    let gpu_prompt = g.read_blocking(&prompt).unwrap();
    let (err, _) = max_abs_diff(&gpu_prompt, &embeds);
    assert!(err <= 1e-6, "prompt embeddings differ by {err}");

    let options = GenerateOptions {
        max_tokens,
        ..GenerateOptions::default()
    };
    let started = std::time::Instant::now();
    let mut cache = KvCache::new(&cpu.config, n + options.max_tokens);
    let want = cpu.forward_embeds(&embeds, n, &mut cache, false).unwrap();
    let cpu_seconds = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let mut gpu_cache = llm.new_cache(g, n + options.max_tokens);
    let got = g
        .read_blocking(&llm.forward(g, &prompt, &mut gpu_cache).unwrap())
        .unwrap();
    eprintln!(
        "prefill of {n} positions: CPU {cpu_seconds:.2} s, GPU ({}) {:.2} s",
        g.adapter_description(),
        started.elapsed().as_secs_f64()
    );
    let (err, at) = max_abs_diff(&got, &want);
    eprintln!("GPU LLM: last-position logits max abs error {err:e} over {n} positions");
    assert!(
        err <= tolerance,
        "logit {at}: GPU {} vs CPU {}",
        got[at],
        want[at]
    );

    // Greedy answers from there on, through each side's own generation loop.
    let mut cache = KvCache::new(&cpu.config, n + options.max_tokens);
    let cpu_answer = cpu
        .generate(&embeds, n, &mut cache, &history, &options, |_| true)
        .unwrap();
    let started = std::time::Instant::now();
    let mut streamed = String::new();
    let (tokens, text, _) = tinyalign_wgpu::block_on(llm.generate_from(
        g,
        got,
        &mut gpu_cache,
        &history,
        &options,
        |piece| {
            streamed.push_str(piece);
            true
        },
    ))
    .unwrap();
    eprintln!(
        "GPU answer {text:?}: {} tokens in {:.2} s",
        tokens.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        tokens, cpu_answer.tokens,
        "GPU {text:?} vs CPU {:?}",
        cpu_answer.text
    );
    assert_eq!(streamed, text);
}
