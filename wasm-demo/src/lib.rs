//! The browser's entry point: the aligned chain (`tinyalign_wgpu::GpuAssistant`) behind a wasm-bindgen API.
//! The page's web worker constructs an [`Assistant`] from the model files' bytes, then asks it about WAV
//! files or recorded PCM; text streams back through a JS callback. Errors become `JsError`s whose message
//! is the Rust error's.

use std::rc::Rc;

use tinyalign_llm::{GenerateOptions, SlotPrompt};
use tinyalign_mel::Audio;
use tinyalign_wgpu::{Gpu, GpuAssistant, ModelFiles};
use wasm_bindgen::prelude::*;

#[derive(Debug)]
struct Inner {
    gpu: Gpu,
    assistant: GpuAssistant,
}

#[wasm_bindgen]
#[derive(Debug)]
pub struct Assistant {
    inner: Rc<Inner>,
}

fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

#[wasm_bindgen]
impl Assistant {
    /// Opens WebGPU and loads the chain: Whisper's `config.json` and `model.safetensors`, a training run's
    /// `projector.json` and `projector.safetensors`, and the LLM's GGUF. A projector trained against other
    /// model files is refused.
    pub async fn create(
        whisper_config: String,
        whisper_weights: Vec<u8>,
        projector_manifest: String,
        projector_weights: Vec<u8>,
        llm_gguf: Vec<u8>,
    ) -> Result<Assistant, JsError> {
        let gpu = Gpu::new().await.map_err(js_error)?;
        let assistant = GpuAssistant::load(
            &gpu,
            ModelFiles {
                whisper_config: &whisper_config,
                whisper_weights: &whisper_weights,
                projector_manifest: &projector_manifest,
                projector_weights: &projector_weights,
                llm_gguf: &llm_gguf,
            },
        )
        .map_err(js_error)?;
        Ok(Assistant {
            inner: Rc::new(Inner { gpu, assistant }),
        })
    }

    /// Swaps in another projector (e.g. a personalised user's), trained against the same encoder and LLM.
    /// Refused while an answer is being generated; on any error the current projector stays.
    pub fn set_projector(&mut self, manifest: String, weights: Vec<u8>) -> Result<(), JsError> {
        let inner = Rc::get_mut(&mut self.inner)
            .ok_or_else(|| JsError::new("busy answering: switch the projector afterwards"))?;
        inner
            .assistant
            .set_projector(&inner.gpu, &manifest, &weights)
            .map_err(js_error)
    }

    /// The WebGPU adapter, e.g. "SwiftShader Device (Subzero) (BrowserWebGpu, Cpu)".
    pub fn adapter(&self) -> String {
        self.inner.gpu.adapter_description()
    }

    /// The log-mel the encoder sees, `(80, frames)` row-major (the page draws it).
    pub fn log_mel_wav(&self, wav: &[u8]) -> Result<js_sys::Float32Array, JsError> {
        let mel = self
            .inner
            .assistant
            .log_mel(&Self::decode_wav(wav)?)
            .map_err(js_error)?;
        Ok(js_sys::Float32Array::from(&mel.data[..]))
    }

    pub fn log_mel_pcm(
        &self,
        pcm: Vec<f32>,
        sample_rate: u32,
    ) -> Result<js_sys::Float32Array, JsError> {
        let mel = self
            .inner
            .assistant
            .log_mel(&Self::pcm_audio(pcm, sample_rate))
            .map_err(js_error)?;
        Ok(js_sys::Float32Array::from(&mel.data[..]))
    }

    /// Answers a WAV file under `instruction` (empty: the audio alone), greedy, at most `max_tokens`;
    /// `on_text(piece)` gets the text as it completes. Resolves to a JSON string: the answer, token ids and
    /// per-stage milliseconds.
    pub fn ask_wav(
        &self,
        wav: &[u8],
        instruction: String,
        max_tokens: u32,
        on_text: js_sys::Function,
    ) -> Result<js_sys::Promise, JsError> {
        let audio = Self::decode_wav(wav)?;
        Ok(self.ask(audio, instruction, max_tokens, on_text))
    }

    /// [`Assistant::ask_wav`] for mono PCM in [-1, 1] at `sample_rate` (a microphone recording).
    pub fn ask_pcm(
        &self,
        pcm: Vec<f32>,
        sample_rate: u32,
        instruction: String,
        max_tokens: u32,
        on_text: js_sys::Function,
    ) -> js_sys::Promise {
        self.ask(
            Self::pcm_audio(pcm, sample_rate),
            instruction,
            max_tokens,
            on_text,
        )
    }
}

impl Assistant {
    /// Decodes a WAV file (any rate, format and channel count) with the native tool's decoder.
    fn decode_wav(wav: &[u8]) -> Result<Audio, JsError> {
        tinyalign_mel::decode_wav(wav, "the WAV file").map_err(js_error)
    }

    fn pcm_audio(pcm: Vec<f32>, sample_rate: u32) -> Audio {
        Audio {
            samples: pcm,
            sample_rate,
            source_channels: 1,
        }
    }

    fn ask(
        &self,
        audio: Audio,
        instruction: String,
        max_tokens: u32,
        on_text: js_sys::Function,
    ) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let options = GenerateOptions {
                max_tokens: max_tokens as usize,
                ..GenerateOptions::default()
            };
            let prompt = if instruction.trim().is_empty() {
                SlotPrompt::audio_only()
            } else {
                SlotPrompt::instruction(&instruction)
            };
            let answer = inner
                .assistant
                .answer(&inner.gpu, &audio, &prompt, &options, &now_ms, |piece| {
                    on_text
                        .call1(&JsValue::NULL, &JsValue::from_str(piece))
                        .is_ok()
                })
                .await
                .map_err(|e| JsValue::from(js_error(e)))?;
            let json = serde_json::to_string(&answer).map_err(|e| JsValue::from(js_error(e)))?;
            Ok(JsValue::from_str(&json))
        })
    }
}
