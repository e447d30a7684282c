//! The LLM-in-the-loop objective (the baseline Tiny-Align's EmbedLink replaces): each utterance's projected
//! audio tokens sit in the transcribe prompt exactly as at inference, the frozen LLM (a differentiable dfdx
//! graph over dequantised f32 weights) reads the prompt (its answer begun as an open quotation) followed by
//! the transcript (teacher forcing), and the loss is the mean next-token cross-entropy of the transcript and
//! its closing quote, where inference stops. Gradients flow through the whole LLM back to the projector.
//!
//! Cost note: dfdx's matmul backward also computes gradients for the frozen weights (it has no notion of a
//! constant operand), so the backward pass does ~1.5× the work a framework with frozen-weight support would.

use tinyalign_llm::{LlamaGraph, LlamaModel, SlotPrompt};
use tinyalign_nn::{Device, Merge, Scalar, Tape, Taped2};
use tinyalign_projector::BatchLayout;
use tinyalign_weights::gguf::GgufFile;

use crate::TrainError;

/// The frozen LLM as a graph and the fixed parts of the prompt.
#[derive(Debug)]
pub struct LoopContext {
    graph: LlamaGraph,
    before: Vec<f32>,
    before_len: usize,
    after: Vec<f32>,
    after_len: usize,
    d: usize,
}

impl LoopContext {
    /// `file` is the parsed GGUF that `llm` was loaded from.
    pub fn new(llm: &LlamaModel, file: &GgufFile) -> Result<Self, TrainError> {
        let graph = LlamaGraph::from_gguf(file, tinyalign_nn::cpu())?;
        let (before_ids, after_ids) = llm.slot_prompt_ids(&SlotPrompt::transcribe());
        Ok(Self {
            before: llm.embed_tokens(&before_ids)?,
            before_len: before_ids.len(),
            after: llm.embed_tokens(&after_ids)?,
            after_len: after_ids.len(),
            d: llm.config.hidden_size,
            graph,
        })
    }

    /// What the LLM must answer for a transcript after the prompt's open quotation: the transcript and the
    /// closing quote, tokenised together (BPE may join the quote to the last punctuation, `."`).
    pub fn answer_ids(&self, llm: &LlamaModel, text: &str) -> Vec<u32> {
        llm.tokenizer.encode(&format!("{text}\""), false)
    }

    /// Mean over the batch of each utterance's transcript cross-entropy. `out` `(batch·max_tokens, d)` are
    /// the projector's outputs; utterance i uses its first `layout.tokens[i]` rows. `answers[i]` holds
    /// answer ids, `answer_embeds[i]` their input embeddings (teacher forcing).
    pub fn loss<T: Tape<f32, Device> + Merge<T>>(
        &self,
        out: Taped2<T>,
        layout: &BatchLayout,
        answers: &[&[u32]],
        answer_embeds: &[&[f32]],
    ) -> Scalar<T> {
        let dev = self.graph.device().clone();
        let d = self.d;
        let batch = layout.batch();
        let mut out = Some(out);
        let mut total: Option<Scalar<T>> = None;
        for i in 0..batch {
            let t = layout.tokens[i];
            let answer = answers[i];
            // Sequence: prompt before the slot, T audio rows, prompt after, answer minus its last token.
            let n = self.before_len + t + self.after_len + answer.len() - 1;
            let mut base = Vec::with_capacity(n * d);
            base.extend_from_slice(&self.before);
            base.resize(base.len() + t * d, 0.0);
            base.extend_from_slice(&self.after);
            base.extend_from_slice(&answer_embeds[i][..(answer.len() - 1) * d]);
            let base = tinyalign_nn::from_vec2(&dev, base, n, d);
            let placements: Vec<(usize, usize)> = (0..t)
                .map(|k| (self.before_len + k, i * layout.max_tokens + k))
                .collect();
            // The last utterance takes the taped tensor itself; the others a fork (merged back below).
            let rows = if i + 1 == batch {
                out.take().expect("taken once, at the last utterance")
            } else {
                tinyalign_nn::fork(out.as_ref().expect("present until the last utterance"))
            };
            let sequence = tinyalign_nn::place_rows(rows, &placements, &base);
            let logits = self.graph.forward(sequence);
            // The logit at position p predicts token p + 1: the first answer token follows the prompt.
            let first = self.before_len + t + self.after_len - 1;
            let targets: Vec<(usize, usize)> = answer
                .iter()
                .enumerate()
                .map(|(j, &id)| (first + j, id as usize))
                .collect();
            let loss = tinyalign_nn::token_cross_entropy(logits, &targets);
            total = Some(match total {
                None => loss,
                Some(sum) => sum + loss,
            });
        }
        total.expect("a batch has at least one utterance") / batch as f32
    }
}
