//! Audio → 16 kHz log-mel → frozen Whisper encoder → trained projector → frozen LLM, with instruction
//! injection (Tiny-Align §3.3): the chat template, an instruction and the projected audio tokens are put
//! together as the LLM's input embeddings.
//!
//! Layout (ChatML, the default system message of the model's template):
//!
//! ```text
//! <|im_start|>system\n{system}<|im_end|>\n
//! [worked examples: <|im_start|>user\n{instruction}\n{example}<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>\n]
//! <|im_start|>user\n{instruction}\n[T audio embeddings]<|im_end|>\n<|im_start|>assistant\n{answer prefix}
//! ```
//!
//! Without injection the user turn holds only the audio embeddings. A pooled projector's tokens go in as they
//! are; a CTC projector's frames go in through a [`Readout`] (one vector per greedy segment).

use std::path::Path;

use tinyalign_llm::{GenerateOptions, Generation, KvCache, LlamaModel, SlotPrompt};
use tinyalign_mel::Frontend;
use tinyalign_projector::{CtcTable, LoadedModels, Projector, ProjectorManifest, Readout};
use tinyalign_whisper::WhisperEncoder;

/// The default instruction of the transcribe task.
pub use tinyalign_llm::TRANSCRIBE_INSTRUCTION;

#[derive(Debug, thiserror::Error)]
pub enum AssistantError {
    #[error("{0}")]
    Io(String),
    #[error("projector {path}: {message}")]
    Projector { path: String, message: String },
    #[error(transparent)]
    Manifest(#[from] tinyalign_projector::ManifestError),
    #[error("audio: {0}")]
    Audio(#[from] tinyalign_mel::AudioError),
    #[error("model: {0}")]
    Model(String),
    #[error("data: {0}")]
    Data(String),
    /// The frozen LLM (loading it, its embeddings, generation).
    #[error("model: {0}")]
    Llm(#[from] tinyalign_llm::LlmError),
    /// The frozen Whisper encoder or decoder.
    #[error("model: {0}")]
    Whisper(#[from] tinyalign_whisper::WhisperError),
    /// A results file that could not be written (the message names it).
    #[error(transparent)]
    File(#[from] tinyalign_data::DataError),
    /// The projector's forward pass (a shape it cannot take).
    #[error("model: {0}")]
    Projection(#[from] tinyalign_projector::ProjectorError),
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
    /// A CTC projector's head: its table, and its classes' LLM embeddings `(classes, d_llm)`.
    ctc: Option<(CtcTable, Vec<f32>)>,
    readout: Readout,
}

impl Hearing {
    /// The LLM token of each greedy segment of the CTC head (none for a pooled projector).
    fn segment_tokens(&self, segments: &[tinyalign_projector::Segment]) -> Vec<u32> {
        let classes = self.projector.config().ctc_classes().unwrap_or_default();
        segments.iter().map(|s| classes[s.class]).collect()
    }
}

/// What the projector made of an utterance.
#[derive(Debug, Clone)]
pub enum HeardAudio {
    /// T pooled tokens `(T, d_llm)`: they go into the LLM as they are.
    Pooled { tokens: Vec<f32>, t: usize },
    /// A CTC projector's frame vectors `(frames, d_llm)` and logits `(frames, classes + 1)`, read into the
    /// LLM by a [`Readout`].
    Ctc {
        vectors: Vec<f32>,
        logits: Vec<f32>,
        frames: usize,
    },
}

/// [`HeardAudio`] with the time it took.
#[derive(Debug, Clone)]
pub struct Heard {
    pub audio: HeardAudio,
    /// Milliseconds spent in the frontend + encoder, and in the projector.
    pub encode_ms: f64,
    pub project_ms: f64,
}

#[derive(Debug)]
pub struct Assistant {
    /// `None` for a text-only assistant (the evaluation's baseline rows without a projector).
    hearing: Option<Hearing>,
    pub llm: LlamaModel,
    /// The keys and values of the last prompt's part before the slot (system message, worked examples,
    /// instruction), which every answer under that prompt shares: prefilled once, not once per answer.
    prompt_cache: std::sync::Mutex<Option<(Vec<u32>, KvCache)>>,
}

impl Assistant {
    /// Loads the chain. `projector_dir` holds `projector.safetensors` + `projector.json` (a training run
    /// folder); the manifest's encoder and LLM hashes must match the files given, else it is refused.
    pub fn load(
        whisper_dir: &Path,
        llm_path: &Path,
        projector_dir: &Path,
    ) -> Result<Self, AssistantError> {
        let bad = |message: String| AssistantError::Projector {
            path: projector_dir.display().to_string(),
            message,
        };
        let manifest = ProjectorManifest::read(projector_dir)?;
        let (encoder, encoder_sha256) =
            tinyalign_whisper::load_encoder_dir_with_sha256(whisper_dir)?;
        let frontend = encoder.config().frontend(false)?;
        let (llm, llm_sha256) =
            LlamaModel::load_gguf_with_sha256(llm_path, tinyalign_llm::Precision::Native)?;
        manifest.check(&LoadedModels {
            encoder_sha256: &encoder_sha256,
            llm_sha256: &llm_sha256,
            frontend_version: tinyalign_mel::FRONTEND_VERSION,
            d_audio: encoder.config().d_model,
            d_llm: llm.config.hidden_size,
        })?;
        let weights_path = projector_dir.join("projector.safetensors");
        let bytes = std::fs::read(&weights_path)
            .map_err(|e| bad(format!("{}: {e}", weights_path.display())))?;
        let weights =
            tinyalign_weights::st::read_safetensors(&bytes, &weights_path.display().to_string())
                .map_err(|e| bad(e.to_string()))?;
        let projector = Projector::load(manifest.projector, &weights, tinyalign_nn::cpu())
            .map_err(|e| bad(e.to_string()))?;
        let ctc = match projector.config().ctc_classes() {
            None => None,
            Some(classes) => {
                if let Some(id) = classes
                    .iter()
                    .find(|&&id| id as usize >= llm.config.vocab_size)
                {
                    return Err(bad(format!(
                        "projector.json `projector.output.classes` holds token id {id}, outside the LLM's {} tokens",
                        llm.config.vocab_size
                    )));
                }
                let rows = llm.embed_tokens(classes)?;
                let table = projector.ctc_table(&rows).map_err(|e| bad(e.to_string()))?;
                Some((table, rows))
            }
        };
        Ok(Self {
            hearing: Some(Hearing {
                frontend,
                encoder,
                projector,
                ctc,
                readout: Readout::default(),
            }),
            llm,
            prompt_cache: Default::default(),
        })
    }

    /// How a CTC projector's frames go into the LLM from now on; a pooled projector takes none.
    pub fn set_readout(&mut self, readout: Readout) -> Result<(), AssistantError> {
        match &mut self.hearing {
            Some(hearing) if hearing.ctc.is_some() => {
                hearing.readout = readout;
                Ok(())
            }
            _ => Err(AssistantError::Model(format!(
                "the `{readout}` readout needs a projector trained with the CTC objective; this one pools its tokens (they go into the LLM as they are)"
            ))),
        }
    }

    /// Whether the projector has a CTC head (it takes a readout).
    pub fn has_ctc_head(&self) -> bool {
        self.hearing.as_ref().is_some_and(|h| h.ctc.is_some())
    }

    /// The LLM alone: answers to text in the audio slot (text oracle, cascade); asking it to hear audio
    /// is an error.
    pub fn load_text_only(llm_path: &Path) -> Result<Self, AssistantError> {
        let llm = LlamaModel::load_gguf(llm_path, tinyalign_llm::Precision::Native)?;
        Ok(Self {
            hearing: None,
            llm,
            prompt_cache: Default::default(),
        })
    }

    /// Whether a projector is loaded (audio can be answered).
    pub fn hears(&self) -> bool {
        self.hearing.is_some()
    }

    /// What the projector makes of an utterance.
    pub fn hear(&self, audio: &tinyalign_mel::Audio, name: &str) -> Result<Heard, AssistantError> {
        audio.check_whisper_window(name)?;
        let hearing = self.hearing()?;
        let started = std::time::Instant::now();
        let mel = hearing.frontend.audio_to_log_mel(audio, name)?;
        let features = hearing.encoder.forward(&mel)?;
        let encode_ms = started.elapsed().as_secs_f64() * 1e3;
        let started = std::time::Instant::now();
        let features = features.data;
        let heard = match &hearing.ctc {
            None => {
                let (tokens, t) = hearing.projector.project(&features)?;
                HeardAudio::Pooled { tokens, t }
            }
            Some((table, _)) => {
                let (vectors, logits, frames) = hearing.projector.project_ctc(&features, table)?;
                HeardAudio::Ctc {
                    vectors,
                    logits,
                    frames,
                }
            }
        };
        Ok(Heard {
            audio: heard,
            encode_ms,
            project_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }

    fn hearing(&self) -> Result<&Hearing, AssistantError> {
        self.hearing.as_ref().ok_or_else(|| {
            AssistantError::Model("this assistant has no projector: it cannot hear audio".into())
        })
    }

    /// A CTC head's greedy path as LLM token ids (`None` for a pooled projector): the token readout.
    pub fn ctc_token_ids(&self, heard: &HeardAudio) -> Option<Vec<u32>> {
        let (HeardAudio::Ctc { logits, .. }, Some(hearing)) = (heard, &self.hearing) else {
            return None;
        };
        let (table, _) = hearing.ctc.as_ref()?;
        let segments = tinyalign_projector::greedy_segments(logits, table.width);
        Some(hearing.segment_tokens(&segments))
    }

    /// The audio slot's embeddings `(t, d_llm)` and t: pooled tokens as they are, CTC frames through
    /// `readout` (the assistant's own when `None`).
    pub fn slot(
        &self,
        heard: &HeardAudio,
        readout: Option<Readout>,
    ) -> Result<(Vec<f32>, usize), AssistantError> {
        let hearing = self.hearing()?;
        let (vectors, logits, table, class_rows) = match (heard, &hearing.ctc) {
            (HeardAudio::Pooled { tokens, t }, _) => return Ok((tokens.clone(), *t)),
            (
                HeardAudio::Ctc {
                    vectors, logits, ..
                },
                Some((table, rows)),
            ) => (vectors, logits, table, rows),
            (HeardAudio::Ctc { .. }, None) => {
                return Err(AssistantError::Model(
                    "CTC frames given to a pooled projector's assistant".into(),
                ));
            }
        };
        let d = self.llm.config.hidden_size;
        let width = table.width;
        let segments = tinyalign_projector::greedy_segments(logits, width);
        let slot = match readout.unwrap_or(hearing.readout) {
            Readout::Greedy => self.llm.embed_tokens(&hearing.segment_tokens(&segments))?,
            Readout::Posterior => {
                let mut probs = logits.clone();
                tinyalign_projector::softmax_rows(&mut probs, width);
                let mut slot = vec![0.0f32; segments.len() * d];
                for (s, out) in segments.iter().zip(slot.chunks_exact_mut(d)) {
                    let weights = tinyalign_projector::segment_posterior(&probs, width, s);
                    for (w, row) in weights.iter().zip(class_rows.chunks_exact(d)) {
                        if *w > 1e-4 {
                            out.iter_mut().zip(row).for_each(|(o, e)| *o += w * e);
                        }
                    }
                }
                slot
            }
            Readout::Vectors => segments
                .iter()
                .flat_map(|s| vectors[s.peak * d..(s.peak + 1) * d].iter().copied())
                .collect(),
        };
        Ok((slot, segments.len()))
    }

    /// Audio tokens of an utterance as they go into the LLM: `(T, d_llm)` row-major, T, and the
    /// milliseconds of encoding and projecting.
    pub fn audio_tokens(
        &self,
        audio: &tinyalign_mel::Audio,
        name: &str,
    ) -> Result<(Vec<f32>, usize, f64, f64), AssistantError> {
        let heard = self.hear(audio, name)?;
        let (slot, t) = self.slot(&heard.audio, None)?;
        Ok((slot, t, heard.encode_ms, heard.project_ms))
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
        let (mut cache, prefilled) = self.prompt_prefix(&before)?;
        let mut embeds = slot.to_vec();
        embeds.extend(self.llm.embed_tokens(&after)?);
        let n = t + after.len();
        let history: Vec<u32> = before.iter().chain(&after).copied().collect();
        let mut generation = self
            .llm
            .generate(&embeds, n, &mut cache, &history, &options, on_text)?;
        // The prefill statistics count what this answer computed: the shared part only when it was not
        // cached yet.
        if let Some(seconds) = prefilled {
            generation.prompt_tokens += before.len();
            generation.prefill_seconds += seconds;
        }
        Ok(generation)
    }

    /// A cache holding the prefilled `before` ids (the context's whole length as its capacity; the token
    /// budget ends answers), from the last prompt's when it is the same; with the seconds the prefill took
    /// when it was not.
    fn prompt_prefix(&self, before: &[u32]) -> Result<(KvCache, Option<f64>), AssistantError> {
        let mut cached = self
            .prompt_cache
            .lock()
            .map_err(|_| AssistantError::Model("the prompt cache was poisoned".into()))?;
        if let Some((ids, cache)) = cached.as_ref()
            && ids == before
        {
            return Ok((cache.clone(), None));
        }
        let started = std::time::Instant::now();
        let mut cache = KvCache::new(&self.llm.config, self.llm.config.max_position_embeddings);
        let embeds = self.llm.embed_tokens(before)?;
        self.llm
            .forward_embeds(&embeds, before.len(), &mut cache, false)?;
        *cached = Some((before.to_vec(), cache.clone()));
        Ok((cache, Some(started.elapsed().as_secs_f64())))
    }
}
