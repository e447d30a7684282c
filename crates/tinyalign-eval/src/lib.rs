//! The aligned speech assistant and its evaluation: the transcribe task (WER/CER, word F1) and the respond
//! task (word F1 and exact match against the LLM's answer to the text), refusals, loops, latency, memory,
//! bootstrap intervals.

mod assistant;
mod run;
mod stats;
mod wer;

pub use assistant::{Answer, Assistant, AssistantError, Heard, HeardAudio, TRANSCRIBE_INSTRUCTION};
pub use run::{
    EvalOptions, EvalReport, Hypothesis, RowSummary, UtteranceResult, evaluate, task_prompt,
};
pub use stats::{BOOTSTRAP_RESAMPLES, bootstrap_ci95};
pub use tinyalign_data::Task;
pub use tinyalign_projector::Readout;
pub use wer::{
    EditCounts, char_errors, edit_counts, exact_match, is_looping, is_refusal, normalise,
    number_words, token_f1, word_errors,
};
