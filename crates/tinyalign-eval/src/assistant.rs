//! Audio → 16 kHz log-mel → frozen Whisper encoder → trained projector → frozen LLM, with instruction
//! injection (Tiny-Align §3.3): the chat template, an instruction and the projected audio tokens are put
//! together as the LLM's input embeddings.
//!
//! Layout (ChatML, the default system message of the model's template):
//!
//! ```text
//! <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{instruction}\n[T audio embeddings]<|im_end|>\n
//! <|im_start|>assistant\n
//! ```
//!
//! Without injection the user turn holds only the audio embeddings.

use std::path::Path;

use serde_json::Value;
use tinyalign_llm::{GenerateOptions, Generation, KvCache, LlamaModel, SlotPrompt};
use tinyalign_mel::{Frontend, FrontendConfig, MelBands};
use tinyalign_projector::{Projector, ProjectorConfig};
use tinyalign_whisper::WhisperEncoder;

/// The default instruction of the transcribe task.
pub use tinyalign_llm::TRANSCRIBE_INSTRUCTION;

#[derive(Debug, thiserror::Error)]
pub enum AssistantError {
    #[error("{0}")]
    Io(String),
    #[error("projector {path}: {message}")]
    Projector { path: String, message: String },
    #[error(
        "the projector was trained for another {what}: it expects sha256 {expected}, the loaded one is {found}"
    )]
    Mismatch {
        what: &'static str,
        expected: String,
        found: String,
    },
    #[error("audio: {0}")]
    Audio(#[from] tinyalign_mel::AudioError),
    #[error("model: {0}")]
    Model(String),
    #[error("data: {0}")]
    Data(String),
}

#[derive(Debug)]
pub struct Answer {
    pub generation: Generation,
    pub audio_seconds: f64,
    pub audio_tokens: usize,
    /// Milliseconds spent in the frontend + encoder, and in the projector.
    pub encode_ms: f64,
    pub project_ms: f64,
}

/// The audio half of the chain: log-mel frontend, frozen encoder, trained projector.
#[derive(Debug)]
struct Hearing {
    frontend: Frontend,
    encoder: WhisperEncoder,
    projector: Projector,
}

#[derive(Debug)]
pub struct Assistant {
    /// `None` for a text-only assistant (the evaluation's baseline rows without a projector).
    hearing: Option<Hearing>,
    pub llm: LlamaModel,
}

impl Assistant {
    /// Loads the chain. `projector_dir` holds `projector.safetensors` + `projector.json` (a training run
    /// folder); the manifest's encoder and LLM hashes must match the files given, else it is refused.
    pub fn load(
        whisper_dir: &Path,
        llm_path: &Path,
        projector_dir: &Path,
    ) -> Result<Self, AssistantError> {
        let manifest_path = projector_dir.join("projector.json");
        let bad = |message: String| AssistantError::Projector {
            path: projector_dir.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(&manifest_path).map_err(|e| {
            bad(format!(
                "{}: {e} (train one with `tinyalign train`)",
                manifest_path.display()
            ))
        })?;
        let manifest: Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("projector.json: {e}")))?;
        let config: ProjectorConfig = serde_json::from_value(manifest["projector"].clone())
            .map_err(|e| bad(format!("projector.json `projector`: {e}")))?;
        let check = |what: &'static str, key: &str, found: String| -> Result<(), AssistantError> {
            let expected = manifest[key].as_str().unwrap_or_default().to_string();
            if expected != found {
                return Err(AssistantError::Mismatch {
                    what,
                    expected,
                    found,
                });
            }
            Ok(())
        };
        let (encoder, encoder_sha256) =
            tinyalign_whisper::load_encoder_dir_with_sha256(whisper_dir, tinyalign_nn::cpu())
                .map_err(|e| AssistantError::Model(e.to_string()))?;
        check("Whisper encoder", "encoder_sha256", encoder_sha256)?;
        if manifest["frontend_version"].as_u64() != Some(u64::from(tinyalign_mel::FRONTEND_VERSION))
        {
            return Err(bad(format!(
                "made with frontend version {}, this build has {}",
                manifest["frontend_version"],
                tinyalign_mel::FRONTEND_VERSION
            )));
        }
        let weights_path = projector_dir.join("projector.safetensors");
        let bytes = std::fs::read(&weights_path)
            .map_err(|e| bad(format!("{}: {e}", weights_path.display())))?;
        let weights =
            tinyalign_weights::st::read_safetensors(&bytes, &weights_path.display().to_string())
                .map_err(|e| bad(e.to_string()))?;
        let projector = Projector::load(config, &weights, tinyalign_nn::cpu())
            .map_err(|e| bad(e.to_string()))?;
        let bands = MelBands::from_count(encoder.config().num_mel_bins)
            .ok_or_else(|| AssistantError::Model("unsupported mel band count".into()))?;
        let (llm, llm_sha256) =
            LlamaModel::load_gguf_with_sha256(llm_path, tinyalign_llm::Precision::Native)
                .map_err(|e| AssistantError::Model(e.to_string()))?;
        check("LLM", "llm_sha256", llm_sha256)?;
        if projector.config().d_llm != llm.config.hidden_size
            || projector.config().d_audio != encoder.config().d_model
        {
            return Err(bad(
                "its widths do not match the loaded encoder and LLM".into()
            ));
        }
        Ok(Self {
            hearing: Some(Hearing {
                frontend: Frontend::new(FrontendConfig {
                    bands,
                    pad_to_30s: false,
                }),
                encoder,
                projector,
            }),
            llm,
        })
    }

    /// The LLM alone: answers to text in the audio slot (text oracle, cascade); asking it to hear audio
    /// is an error.
    pub fn load_text_only(llm_path: &Path) -> Result<Self, AssistantError> {
        let llm = LlamaModel::load_gguf(llm_path, tinyalign_llm::Precision::Native)
            .map_err(|e| AssistantError::Model(e.to_string()))?;
        Ok(Self { hearing: None, llm })
    }

    /// Whether a projector is loaded (audio can be answered).
    pub fn hears(&self) -> bool {
        self.hearing.is_some()
    }

    /// Audio tokens of an utterance: `(T, d_llm)` row-major and T.
    pub fn audio_tokens(
        &self,
        audio: &tinyalign_mel::Audio,
        name: &str,
    ) -> Result<(Vec<f32>, usize, f64, f64), AssistantError> {
        if audio.duration_s() > 30.0 {
            return Err(AssistantError::Io(format!(
                "{name}: {:.1} s is over Whisper's 30 s window",
                audio.duration_s()
            )));
        }
        let hearing = self.hearing.as_ref().ok_or_else(|| {
            AssistantError::Model("this assistant has no projector: it cannot hear audio".into())
        })?;
        let started = std::time::Instant::now();
        let mel = hearing.frontend.audio_to_log_mel(audio, name)?;
        let features = hearing
            .encoder
            .forward(&mel)
            .map_err(|e| AssistantError::Model(e.to_string()))?;
        let encode_ms = started.elapsed().as_secs_f64() * 1e3;
        let started = std::time::Instant::now();
        let (tokens, t) = hearing
            .projector
            .project(&tinyalign_nn::to_vec2(&features))
            .map_err(|e| AssistantError::Model(e.to_string()))?;
        Ok((tokens, t, encode_ms, started.elapsed().as_secs_f64() * 1e3))
    }

    /// Answers `audio` under `prompt` (instruction, answer prefix, stop texts), streaming text.
    pub fn answer(
        &self,
        audio: &tinyalign_mel::Audio,
        name: &str,
        prompt: &SlotPrompt,
        options: &GenerateOptions,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<Answer, AssistantError> {
        let (audio_embeds, t, encode_ms, project_ms) = self.audio_tokens(audio, name)?;
        let generation = self.answer_embeddings(&audio_embeds, t, prompt, options, on_text)?;
        Ok(Answer {
            generation,
            audio_seconds: audio.duration_s(),
            audio_tokens: t,
            encode_ms,
            project_ms,
        })
    }

    /// The same prompt with any `t` rows of embeddings in the audio slot (e.g. a transcript's own token
    /// embeddings: the text oracle).
    pub fn answer_embeddings(
        &self,
        slot: &[f32],
        t: usize,
        prompt: &SlotPrompt,
        options: &GenerateOptions,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generation, AssistantError> {
        let (before, after) = self.llm.slot_prompt_ids(prompt);
        let mut options = options.clone();
        options
            .stop_strings
            .extend(prompt.stop_strings.iter().cloned());
        let model = |e: tinyalign_llm::LlmError| AssistantError::Model(e.to_string());
        let mut embeds = self.llm.embed_tokens(&before).map_err(model)?;
        embeds.extend_from_slice(slot);
        embeds.extend(self.llm.embed_tokens(&after).map_err(model)?);
        let n = before.len() + t + after.len();
        let mut cache = KvCache::new(&self.llm.config, n + options.max_tokens);
        let history: Vec<u32> = before.iter().chain(&after).copied().collect();
        self.llm
            .generate(&embeds, n, &mut cache, &history, &options, on_text)
            .map_err(model)
    }
}
