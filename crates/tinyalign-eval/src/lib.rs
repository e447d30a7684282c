//! The aligned speech assistant and (to come) its evaluation.

mod assistant;

pub use assistant::{Answer, Assistant, AssistantError, PromptLayout, TRANSCRIBE_INSTRUCTION};
