//! The aligned speech assistant and its evaluation (transcribe task: WER/CER, refusals, loops, latency).

mod assistant;
mod run;
mod wer;

pub use assistant::{Answer, Assistant, AssistantError, PromptLayout, TRANSCRIBE_INSTRUCTION};
pub use run::{EvalOptions, EvalReport, Hypothesis, RowSummary, UtteranceResult, evaluate};
pub use wer::{
    EditCounts, char_errors, edit_counts, is_looping, is_refusal, normalise, number_words,
    word_errors,
};
