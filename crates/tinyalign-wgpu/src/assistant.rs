//! The whole aligned chain on the GPU, built from the model files' bytes (so the browser, which has no
//! file system, and the native CLI share it): audio → log-mel (CPU) → Whisper encoder → projector → LLM.
//! The prompt layout is the CPU assistant's (`tinyalign_llm::slot_prompt_ids_with_examples`); a CTC
//! projector's frames go into the LLM as the CPU's default (greedy) readout does: the LLM's own embeddings
//! of the greedy path's tokens.

use tinyalign_llm::{GenerateOptions, SlotPrompt};
use tinyalign_mel::{Audio, Frontend};
use tinyalign_projector::{LoadedModels, ProjectorManifest};
use tinyalign_weights::gguf::GgufFile;
use tinyalign_whisper::WhisperConfig;

use crate::{Gpu, GpuError, GpuLlama, GpuProjector, GpuTensor, GpuWhisperEncoder};

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
    /// The LLM's input-embedding table as stored, for the class rows of CTC projectors swapped in later.
    token_table: TokenTable,
}

/// The LLM's input-embedding table in its GGUF block format (Qwen2.5's Q5_0: 94 MB; SmolLM2's Q8_0: 30 MB),
/// kept on the host so a CTC projector's class rows can be read without the GGUF file.
#[derive(Debug)]
struct TokenTable {
    ggml_type: tinyalign_weights::gguf::GgmlType,
    rows: usize,
    cols: usize,
    raw: Vec<u8>,
}

impl TokenTable {
    fn from_gguf(file: &GgufFile) -> Result<Self, GpuError> {
        let (info, raw) = file.raw("token_embd.weight")?;
        let [rows, cols] = info.shape[..] else {
            return Err(GpuError::Model(format!(
                "{}: token_embd.weight of shape {:?} is not a matrix",
                file.source_name, info.shape
            )));
        };
        Ok(Self {
            ggml_type: info.ggml_type,
            rows,
            cols,
            raw: raw.to_vec(),
        })
    }

    /// Rows `ids`, dequantised: `(ids.len(), cols)` row-major.
    fn rows(&self, ids: &[u32]) -> Result<Vec<f32>, GpuError> {
        let row_bytes = self.raw.len() / self.rows.max(1);
        let mut out = Vec::with_capacity(ids.len() * self.cols);
        for &id in ids {
            let id = id as usize;
            if id >= self.rows {
                return Err(GpuError::Model(format!(
                    "class token {id} is outside the LLM's {} tokens",
                    self.rows
                )));
            }
            let row = tinyalign_weights::gguf::dequantize(
                self.ggml_type,
                &self.raw[id * row_bytes..(id + 1) * row_bytes],
            )
            .ok_or_else(|| {
                GpuError::Model(format!(
                    "the LLM's token table is {}, which has no dequantiser",
                    self.ggml_type.name()
                ))
            })?;
            out.extend(row);
        }
        Ok(out)
    }
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
/// (naming both hashes, as the CPU assistant does) with this frontend version and these widths. A CTC
/// projector's class embeddings are read from the LLM file's table.
fn load_projector(
    gpu: &Gpu,
    identity: &Identity,
    manifest: &str,
    weights: &[u8],
    token_table: &TokenTable,
) -> Result<GpuProjector, GpuError> {
    let manifest = ProjectorManifest::from_json(manifest, "projector.json")?;
    manifest.check(&LoadedModels {
        encoder_sha256: &identity.encoder_sha256,
        llm_sha256: &identity.llm_sha256,
        frontend_version: tinyalign_mel::FRONTEND_VERSION,
        d_audio: identity.d_audio,
        d_llm: identity.d_llm,
    })?;
    let config = manifest.projector;
    let map = tinyalign_weights::st::read_safetensors(weights, "projector.safetensors")?;
    let class_embeddings = config
        .ctc_classes()
        .map(|classes| token_table.rows(classes))
        .transpose()?;
    GpuProjector::load(gpu, config, &map, class_embeddings.as_deref())
}

impl GpuAssistant {
    /// Loads the chain. The projector manifest's encoder and LLM hashes must match the files given, else it
    /// is refused with both hashes named (as the CPU assistant does).
    pub fn load(gpu: &Gpu, files: ModelFiles<'_>) -> Result<Self, GpuError> {
        let whisper_config: WhisperConfig = serde_json::from_str(files.whisper_config)
            .map_err(|e| model_error("Whisper config.json", e))?;
        let frontend = whisper_config.frontend(false)?;
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
        let token_table = TokenTable::from_gguf(&gguf)?;
        let projector = load_projector(
            gpu,
            &identity,
            files.projector_manifest,
            files.projector_weights,
            &token_table,
        )?;
        let whisper_map =
            tinyalign_weights::st::read_safetensors(files.whisper_weights, "model.safetensors")?;
        let encoder = GpuWhisperEncoder::load(gpu, whisper_config, &whisper_map)?;
        drop(whisper_map);
        let llm = GpuLlama::from_gguf(gpu, &gguf)?;
        Ok(Self {
            frontend,
            encoder,
            projector,
            llm,
            identity,
            token_table,
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
        self.projector = load_projector(gpu, &self.identity, manifest, weights, &self.token_table)?;
        Ok(())
    }

    /// The log-mel the encoder will see: `(n_mels, frames)` row-major.
    pub fn log_mel(&self, audio: &Audio) -> Result<tinyalign_mel::LogMel, GpuError> {
        audio.check_whisper_window("audio")?;
        Ok(self.frontend.audio_to_log_mel(audio, "audio")?)
    }

    /// Answers `audio` under `prompt` (instruction, worked examples, answer prefix, stop texts), streaming
    /// text to `on_text`. `now` is the caller's clock in milliseconds (the browser has no `Instant`).
    pub async fn answer(
        &self,
        gpu: &Gpu,
        audio: &Audio,
        prompt: &SlotPrompt,
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
        let projected = self.projector.forward(gpu, &features)?;
        let slot = match self.projector.ctc_head() {
            None => {
                gpu.read_rows(&projected, 0, 1).await?;
                Some(projected)
            }
            // The greedy path's tokens (blanks and repeats removed) as the LLM's own embeddings; a path of
            // blanks leaves the slot empty, as on the CPU.
            Some(head) => {
                let logits = gpu
                    .read(&self.projector.ctc_logits(gpu, &projected)?)
                    .await?;
                let tokens: Vec<u32> = tinyalign_projector::greedy_segments(&logits, head.width())
                    .iter()
                    .map(|s| head.classes[s.class])
                    .collect();
                if tokens.is_empty() {
                    None
                } else {
                    Some(self.llm.embed_tokens(gpu, &tokens)?)
                }
            }
        };
        let t3 = now();
        times.projector_ms = t3 - t2;
        let mut options = options.clone();
        options
            .stop_strings
            .extend(prompt.stop_strings.iter().cloned());
        let options = &options;
        let audio_tokens = slot.as_ref().map_or(0, GpuTensor::rows);
        let (prompt, history) = self.llm.slot_prompt(gpu, slot.as_ref(), prompt)?;
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
            audio_tokens,
            prompt_tokens: prompt.rows(),
            times,
        })
    }
}
