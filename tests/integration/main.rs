//! Workspace-level integration tests. One binary, one module per area, so the workspace links once.

mod audio_errors;
mod common;
mod datasets;
mod formats;
mod gpu;
mod hf_llm;
mod in_the_loop;
mod llm;
mod mel_properties;
mod mel_reference;
mod projector_pytorch;
mod qwen;
mod real_models;
mod resampler;
mod training;
mod weights;
mod whisper_decoder_reference;
mod whisper_encoder;
mod whisper_transcribe;
