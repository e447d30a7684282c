//! The whole aligned chain on the GPU, built from the model files' bytes (so the browser, which has no
//! file system, and the native CLI share it): audio → log-mel (CPU) → Whisper encoder → projector → LLM.
//! The prompt layout is the CPU assistant's (`tinyalign_llm::slot_prompt_ids`).

use tinyalign_llm::GenerateOptions;
use tinyalign_mel::{Audio, Frontend, FrontendConfig, MelBands};
use tinyalign_projector::{LoadedModels, ProjectorManifest};
use tinyalign_weights::gguf::GgufFile;
use tinyalign_whisper::WhisperConfig;

use crate::{Gpu, GpuError, GpuLlama, GpuProjector, GpuWhisperEncoder};

/// The model files, as bytes.
#[derive(Debug, Clone, Copy)]
pub struct ModelFiles<'a> {
    /// Whisper's Hugging Face `config.json` and `model.safetensors`.
    pub whisper_config: &'a str,
    pub whisper_weights: &'a [u8],
    /// A training run's `projector.json` manifest and `projector.safetensors`.
    pub projector_manifest: &'a str,
    pub projector_weights: &'a [u8],
    /// The LLM's GGUF file.
    pub llm_gguf: &'a [u8],
}

#[derive(Debug)]
pub struct GpuAssistant {
    frontend: Frontend,
    encoder: GpuWhisperEncoder,
    projector: GpuProjector,
    pub llm: GpuLlama,
    identity: Identity,
}

/// What one answer took, stage by stage (milliseconds by the caller's clock).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StageTimes {
    pub log_mel_ms: f64,
    pub encoder_ms: f64,
    pub projector_ms: f64,
    pub prefill_ms: f64,
    pub decode_ms: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct GpuAnswer {
    pub text: String,
    pub tokens: Vec<u32>,
    pub stop_reason: String,
    pub audio_seconds: f64,
    pub audio_tokens: usize,
    pub prompt_tokens: usize,
    pub times: StageTimes,
}

fn model_error(what: &str, e: impl std::fmt::Display) -> GpuError {
    GpuError::Model(format!("{what}: {e}"))
}

/// The sha256 of the files a projector must have been trained against.
#[derive(Debug, Clone)]
struct Identity {
    encoder_sha256: String,
    llm_sha256: String,
    d_audio: usize,
    d_llm: usize,
}

/// A projector from its manifest and weights, refused unless it was trained against `identity`'s files
/// (naming both hashes, as the CPU assistant does) with this frontend version and these widths.
fn load_projector(
    gpu: &Gpu,
    identity: &Identity,
    manifest: &str,
    weights: &[u8],
) -> Result<GpuProjector, GpuError> {
    let manifest = ProjectorManifest::from_json(manifest, "projector.json")
        .map_err(|e| GpuError::Model(e.to_string()))?;
    manifest
        .check(&LoadedModels {
            encoder_sha256: &identity.encoder_sha256,
            llm_sha256: &identity.llm_sha256,
            frontend_version: tinyalign_mel::FRONTEND_VERSION,
            d_audio: identity.d_audio,
            d_llm: identity.d_llm,
        })
        .map_err(|e| GpuError::Model(e.to_string()))?;
    let config = manifest.projector;
    let map = tinyalign_weights::st::read_safetensors(weights, "projector.safetensors")?;
    GpuProjector::load(gpu, config, &map)
}

impl GpuAssistant {
    /// Loads the chain. The projector manifest's encoder and LLM hashes must match the files given, else it
    /// is refused with both hashes named (as the CPU assistant does).
    pub fn load(gpu: &Gpu, files: ModelFiles<'_>) -> Result<Self, GpuError> {
        let whisper_config: WhisperConfig = serde_json::from_str(files.whisper_config)
            .map_err(|e| model_error("Whisper config.json", e))?;
        let bands = MelBands::from_count(whisper_config.num_mel_bins).ok_or_else(|| {
            GpuError::Model(format!(
                "{} mel bands are not supported",
                whisper_config.num_mel_bins
            ))
        })?;
        let gguf = GgufFile::parse(files.llm_gguf, "LLM")?;
        let identity = Identity {
            encoder_sha256: tinyalign_weights::sha256_hex(files.whisper_weights),
            llm_sha256: tinyalign_weights::sha256_hex(files.llm_gguf),
            d_audio: whisper_config.d_model,
            d_llm: tinyalign_llm::LlamaConfig::from_gguf(&gguf)
                .map_err(|e| model_error("LLM", e))?
                .hidden_size,
        };
        // The projector first: a mismatched one is refused before the big uploads.
        let projector = load_projector(
            gpu,
            &identity,
            files.projector_manifest,
            files.projector_weights,
        )?;
        let whisper_map =
            tinyalign_weights::st::read_safetensors(files.whisper_weights, "model.safetensors")?;
        let encoder = GpuWhisperEncoder::load(gpu, whisper_config, &whisper_map)?;
        drop(whisper_map);
        let llm = GpuLlama::from_gguf(gpu, &gguf)?;
        Ok(Self {
            frontend: Frontend::new(FrontendConfig {
                bands,
                pad_to_30s: false,
            }),
            encoder,
            projector,
            llm,
            identity,
        })
    }

    /// Swaps in another projector (a personalised user's) trained against the same encoder and LLM; on
    /// any error the current one stays.
    pub fn set_projector(
        &mut self,
        gpu: &Gpu,
        manifest: &str,
        weights: &[u8],
    ) -> Result<(), GpuError> {
        self.projector = load_projector(gpu, &self.identity, manifest, weights)?;
        Ok(())
    }

    /// The log-mel the encoder will see: `(n_mels, frames)` row-major.
    pub fn log_mel(&self, audio: &Audio) -> Result<tinyalign_mel::LogMel, GpuError> {
        if audio.duration_s() > 30.0 {
            return Err(GpuError::Shape(format!(
                "{:.1} s of audio is over Whisper's 30 s window",
                audio.duration_s()
            )));
        }
        self.frontend
            .audio_to_log_mel(audio, "audio")
            .map_err(|e| GpuError::Shape(e.to_string()))
    }

    /// Answers `audio` under `instruction` (None: the audio alone in the user turn), streaming text to
    /// `on_text`. `now` is the caller's clock in milliseconds (the browser has no `Instant`).
    pub async fn answer(
        &self,
        gpu: &Gpu,
        audio: &Audio,
        instruction: Option<&str>,
        options: &GenerateOptions,
        now: &dyn Fn() -> f64,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<GpuAnswer, GpuError> {
        let mut times = StageTimes::default();
        let t0 = now();
        let mel = self.log_mel(audio)?;
        let t1 = now();
        times.log_mel_ms = t1 - t0;
        let features = self.encoder.forward(gpu, &mel)?;
        // Reading one value back waits for the stage to finish, so each stage's time is its own.
        gpu.read_rows(&features, 0, 1).await?;
        let t2 = now();
        times.encoder_ms = t2 - t1;
        let slot = self.projector.forward(gpu, &features)?;
        gpu.read_rows(&slot, 0, 1).await?;
        let t3 = now();
        times.projector_ms = t3 - t2;
        let (prompt, history) = self.llm.slot_prompt(gpu, &slot, instruction)?;
        let mut cache = self.llm.new_cache(gpu, prompt.rows() + options.max_tokens);
        if prompt.rows() + 1 > cache.capacity() {
            return Err(GpuError::Shape(format!(
                "the prompt has {} positions; the GPU path holds {}",
                prompt.rows(),
                self.llm.max_context()
            )));
        }
        let logits = gpu
            .read(&self.llm.forward(gpu, &prompt, &mut cache)?)
            .await?;
        let t4 = now();
        times.prefill_ms = t4 - t3;
        let (tokens, text, reason) = self
            .llm
            .generate_from(gpu, logits, &mut cache, &history, options, on_text)
            .await?;
        times.decode_ms = now() - t4;
        Ok(GpuAnswer {
            text,
            tokens,
            stop_reason: format!("{reason:?}"),
            audio_seconds: audio.duration_s(),
            audio_tokens: slot.rows(),
            prompt_tokens: prompt.rows(),
            times,
        })
    }
}
