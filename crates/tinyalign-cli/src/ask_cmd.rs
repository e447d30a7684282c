//! `tinyalign ask "PROMPT"`: the frozen LLM answers a text prompt (ChatML), streaming to stdout.
//! `tinyalign ask --audio FILE --projector RUN`: the aligned chain hears the audio and answers under an
//! instruction (`--task transcribe`, the default: repeat what was said; `--task respond`: answer the spoken
//! request; or any `--instruction`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use tinyalign_llm::{Activations, ChatMessage, GenerateOptions, LlamaModel, Precision, SlotPrompt};

#[derive(Debug, Args)]
pub struct AskArgs {
    /// The question (text mode). With --audio, use --instruction instead.
    prompt: Option<String>,
    /// Audio to answer (WAV; `.raw` = 16 kHz PCM16): runs Whisper → projector → LLM.
    #[arg(long)]
    audio: Option<PathBuf>,
    /// A trained projector: a run folder with projector.safetensors + projector.json, or a personalised
    /// user's name.
    #[arg(long)]
    projector: Option<PathBuf>,
    /// With --audio: transcribe ("Repeat exactly what the speaker said.") or respond ("Answer the
    /// speaker's request or question."), the instruction injected before the audio tokens.
    #[arg(long, default_value = "transcribe")]
    task: String,
    /// Inject this instruction instead of the task's.
    #[arg(long)]
    instruction: Option<String>,
    /// Put only the audio tokens in the user turn (the ablation without instruction injection).
    #[arg(long)]
    no_injection: bool,
    /// The frozen LLM: smollm2-135m, qwen2.5-0.5b, qwen2.5-1.5b (from the cache), a .gguf file or a Hugging Face folder (`DIR`, or `DIR@q8_0` to quantise it at load). Default:
    /// with --projector, the LLM it was trained for; else qwen2.5-0.5b.
    #[arg(long, alias = "model")]
    llm: Option<String>,
    /// System message (default: the model's own, as its chat template inserts it).
    #[arg(long)]
    system: Option<String>,
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 is greedy decoding.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Dequantise the weights to f32 instead of multiplying in their stored 4/8-bit formats.
    #[arg(long)]
    f32: bool,
    /// Keep activations in f32 inside quantised products instead of rounding them to 8 bits per block
    /// (llama.cpp's way, the default): slower, closer to the unquantised model's arithmetic.
    #[arg(long)]
    exact_activations: bool,
    /// End with one JSON line: prompt and generated tokens, prefill and decode tokens/s, peak RSS.
    #[arg(long)]
    stats: bool,
    /// With --audio: run the chain on the GPU through wgpu (f32 activations, weights in their GGUF blocks),
    /// as the browser demo does. Its greedy answer equals the CPU's with --exact-activations.
    #[arg(long)]
    gpu: bool,
    /// How a CTC projector's frames go into the LLM: greedy (default), posterior or vectors (see `tinyalign
    /// eval --help`).
    #[arg(long)]
    readout: Option<tinyalign_eval::Readout>,
}

/// The prompt around the audio: none with --no-injection, `--instruction` as given (no answer prefix),
/// else the task's (transcribe begins the answer as a quotation and ends it at the closing quote).
fn slot_prompt(args: &AskArgs) -> Result<SlotPrompt> {
    let task: tinyalign_eval::Task = args.task.parse()?;
    Ok(if args.no_injection {
        SlotPrompt::audio_only()
    } else if let Some(text) = &args.instruction {
        SlotPrompt::instruction(text)
    } else {
        tinyalign_eval::task_prompt(task)
    })
}

fn options(args: &AskArgs) -> GenerateOptions {
    GenerateOptions {
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        repetition_penalty: args.repetition_penalty,
        seed: args.seed,
        ..Default::default()
    }
}

fn run_audio(args: &AskArgs, audio_path: &std::path::Path) -> Result<ExitCode> {
    let projector = args
        .projector
        .as_deref()
        .map(crate::personalize_cmd::resolve_projector)
        .context("--audio needs --projector RUN_DIR_OR_USER (a trained projector)")?;
    let llm_path = &crate::llm_choice::for_projector(args.llm.as_deref(), &projector)?;
    let whisper = crate::paths::default_whisper_dir();
    let format = if audio_path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("raw"))
    {
        tinyalign_mel::InputFormat::RawPcm16 {
            sample_rate: 16_000,
        }
    } else {
        tinyalign_mel::InputFormat::Wav
    };
    let audio = tinyalign_mel::read_audio_file(audio_path, format)?;
    if args.gpu {
        // The GPU chain reads a CTC projector's frames the default (greedy) way only: say so before
        // loading anything.
        if let Some(readout) = args
            .readout
            .filter(|r| *r != tinyalign_eval::Readout::Greedy)
        {
            bail!(
                "--gpu reads a CTC projector's frames greedily only; --readout {readout} runs on the CPU (without --gpu)"
            );
        }
        return run_audio_gpu(args, &audio, &whisper, llm_path, &projector);
    }
    let mut assistant = tinyalign_eval::Assistant::load(&whisper, llm_path, &projector)?;
    if let Some(readout) = args.readout {
        assistant.set_readout(readout)?;
    }
    if args.exact_activations {
        assistant.llm.set_activations(Activations::F32);
    }
    let mut stdout = std::io::stdout().lock();
    let name = audio_path.display().to_string();
    let answer = assistant.answer(
        &audio,
        &name,
        &slot_prompt(args)?,
        &options(args),
        |piece| {
            stdout
                .write_all(piece.as_bytes())
                .and_then(|_| stdout.flush())
                .is_ok()
        },
    )?;
    writeln!(stdout)?;
    if args.stats {
        let g = &answer.generation;
        let stats = json!({
            "audio_s": answer.audio_seconds,
            "audio_tokens": answer.audio_tokens,
            "encode_ms": answer.encode_ms,
            "project_ms": answer.project_ms,
            "prompt_tokens": g.prompt_tokens,
            "generated_tokens": g.tokens.len(),
            "prefill_tokens_per_s": g.prefill_tokens_per_second(),
            "decode_tokens_per_s": g.decode_tokens_per_second(),
            "peak_rss_bytes": tinyalign_train::peak_rss_bytes(),
        });
        writeln!(stdout, "{stats}")?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "gpu")]
fn run_audio_gpu(
    args: &AskArgs,
    audio: &tinyalign_mel::Audio,
    whisper_dir: &std::path::Path,
    llm_path: &std::path::Path,
    projector_dir: &std::path::Path,
) -> Result<ExitCode> {
    let read = |path: std::path::PathBuf| {
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    };
    let read_text = |path: std::path::PathBuf| {
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let load_started = Instant::now();
    let gpu = tinyalign_wgpu::Gpu::new_blocking()?;
    let (whisper_config, whisper_weights) = (
        read_text(whisper_dir.join("config.json"))?,
        read(whisper_dir.join("model.safetensors"))?,
    );
    let (manifest, projector_weights) = (
        read_text(projector_dir.join("projector.json"))?,
        read(projector_dir.join("projector.safetensors"))?,
    );
    let gguf = tinyalign_llm::read_llm_bytes(llm_path)?;
    let assistant = tinyalign_wgpu::GpuAssistant::load(
        &gpu,
        tinyalign_wgpu::ModelFiles {
            whisper_config: &whisper_config,
            whisper_weights: &whisper_weights,
            projector_manifest: &manifest,
            projector_weights: &projector_weights,
            llm_gguf: &gguf,
        },
    )
    .with_context(|| format!("loading the chain on {}", gpu.adapter_description()))?;
    let load_s = load_started.elapsed().as_secs_f64();
    let prompt = slot_prompt(args)?;
    let clock = Instant::now();
    let now = || clock.elapsed().as_secs_f64() * 1e3;
    let mut stdout = std::io::stdout().lock();
    let answer = tinyalign_wgpu::block_on(assistant.answer(
        &gpu,
        audio,
        &prompt,
        &options(args),
        &now,
        |piece| {
            stdout
                .write_all(piece.as_bytes())
                .and_then(|_| stdout.flush())
                .is_ok()
        },
    ))?;
    writeln!(stdout)?;
    if args.stats {
        let stats = json!({
            "adapter": gpu.adapter_description(),
            "load_s": load_s,
            "audio_s": answer.audio_seconds,
            "audio_tokens": answer.audio_tokens,
            "prompt_tokens": answer.prompt_tokens,
            "generated_tokens": answer.tokens.len(),
            "stop_reason": answer.stop_reason,
            "times_ms": answer.times,
            "peak_rss_bytes": tinyalign_train::peak_rss_bytes(),
        });
        writeln!(stdout, "{stats}")?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "gpu"))]
fn run_audio_gpu(
    _: &AskArgs,
    _: &tinyalign_mel::Audio,
    _: &std::path::Path,
    _: &std::path::Path,
    _: &std::path::Path,
) -> Result<ExitCode> {
    bail!("this build has no GPU path: rebuild with the `gpu` feature")
}

pub fn run(args: &AskArgs) -> Result<ExitCode> {
    if let Some(audio) = &args.audio {
        if args.prompt.is_some() {
            bail!("give either a text prompt or --audio (with --instruction), not both");
        }
        return run_audio(args, audio);
    }
    let path = crate::llm_choice::resolve(
        args.llm
            .as_deref()
            .unwrap_or(crate::llm_choice::DEFAULT_LLM),
    )?;
    let prompt = args.prompt.clone().unwrap_or_default();
    if prompt.trim().is_empty() {
        bail!("the prompt is empty (or pass --audio FILE --projector RUN)");
    }
    let load_started = Instant::now();
    let precision = if args.f32 {
        Precision::F32
    } else {
        Precision::Native
    };
    let mut model = LlamaModel::load_gguf(&path, precision)?;
    if args.exact_activations {
        model.set_activations(Activations::F32);
    }
    let load_s = load_started.elapsed().as_secs_f64();
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(ChatMessage::new("system", system));
    }
    // The prompt is user text: a literal `<|im_end|>` in it must not close the turn.
    if model.tokenizer.encode(&prompt, true) != model.tokenizer.encode(&prompt, false) {
        bail!("the prompt contains a control token such as <|im_end|>; remove it");
    }
    messages.push(ChatMessage::new("user", &prompt));
    let options = options(args);
    let mut stdout = std::io::stdout().lock();
    let generation = model.chat(&messages, &options, |piece| {
        // A closed stdout (`| head`) ends generation instead of failing.
        stdout
            .write_all(piece.as_bytes())
            .and_then(|_| stdout.flush())
            .is_ok()
    })?;
    writeln!(stdout)?;
    if args.stats {
        let stats = json!({
            "prompt_tokens": generation.prompt_tokens,
            "generated_tokens": generation.tokens.len(),
            "stop_reason": format!("{:?}", generation.stop_reason),
            "load_s": load_s,
            "prefill_tokens_per_s": generation.prefill_tokens_per_second(),
            "decode_tokens_per_s": generation.decode_tokens_per_second(),
            "weights": if args.f32 { "f32" } else { "native" },
            "activations": format!("{:?}", model.activations()),
            "weight_bytes": model.weight_bytes(),
            "peak_rss_bytes": tinyalign_train::peak_rss_bytes(),
        });
        writeln!(stdout, "{stats}")?;
    }
    Ok(ExitCode::SUCCESS)
}
