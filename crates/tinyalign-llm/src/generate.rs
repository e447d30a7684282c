//! Token-by-token generation: greedy or sampled (temperature, top-k, top-p), repetition penalty, stop
//! tokens, a token budget, and a callback that streams text as it completes.

use std::time::Instant;

use crate::{KvCache, LlamaModel, LlmError, StreamDecoder, Tokenizer};

#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    /// 0 means greedy.
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely tokens whose probabilities sum to `top_p` (1 keeps all).
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens (0 keeps all).
    pub top_k: usize,
    /// Values above 1 discourage tokens seen in the last `repetition_window` tokens (CTRL-style: positive logits are
    /// divided by it, negative ones multiplied).
    pub repetition_penalty: f32,
    pub repetition_window: usize,
    pub seed: u64,
    /// Ending tokens; empty means the tokenizer's end-of-sequence token.
    pub stop_tokens: Vec<u32>,
    /// Texts that end the answer where they first appear; the answer is cut before them (the transcribe
    /// task's closing quote, see [`crate::SlotPrompt`]).
    pub stop_strings: Vec<String>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            repetition_penalty: 1.0,
            repetition_window: 64,
            seed: 0,
            stop_tokens: Vec::new(),
            stop_strings: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    StopToken,
    /// One of the options' `stop_strings` appeared.
    StopText,
    MaxTokens,
    ContextFull,
    /// The streaming callback asked to stop.
    Cancelled,
}

#[derive(Clone, Debug)]
pub struct Generation {
    /// Generated ids, the stop token excluded.
    pub tokens: Vec<u32>,
    pub text: String,
    pub stop_reason: StopReason,
    pub prompt_tokens: usize,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
}

impl Generation {
    pub fn prefill_tokens_per_second(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill_seconds.max(1e-9)
    }

    /// Tokens per second after the first (which prefill produced).
    pub fn decode_tokens_per_second(&self) -> f64 {
        let decoded = self.tokens.len().saturating_sub(1)
            + usize::from(self.stop_reason == StopReason::StopToken);
        decoded as f64 / self.decode_seconds.max(1e-9)
    }
}

/// Picks the next token from logits. Seeded and deterministic.
#[derive(Debug, Clone)]
pub struct Sampler {
    options: GenerateOptions,
    state: u64,
}

impl Sampler {
    pub fn new(options: &GenerateOptions) -> Self {
        Self {
            options: options.clone(),
            state: options.seed ^ 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// splitmix64 → uniform in [0, 1).
    fn uniform(&mut self) -> f32 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }

    /// `recent`: earlier token ids, for the repetition penalty.
    pub fn sample(&mut self, logits: &mut [f32], recent: &[u32]) -> u32 {
        let o = &self.options;
        if o.repetition_penalty != 1.0 && o.repetition_penalty > 0.0 {
            let window = &recent[recent.len().saturating_sub(o.repetition_window)..];
            let mut seen = std::collections::HashSet::new();
            for &id in window.iter().filter(|id| seen.insert(**id)) {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = if *l > 0.0 {
                        *l / o.repetition_penalty
                    } else {
                        *l * o.repetition_penalty
                    };
                }
            }
        }
        let argmax = || {
            logits
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &l)| {
                    if l > best.1 { (i, l) } else { best }
                })
                .0 as u32
        };
        if o.temperature <= 0.0 || !o.temperature.is_finite() {
            return argmax();
        }
        let mut candidates: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, &l)| (i as u32, l / o.temperature))
            .collect();
        if candidates.is_empty() {
            return argmax();
        }
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
        if o.top_k > 0 {
            candidates.truncate(o.top_k);
        }
        let max = candidates[0].1;
        let mut total = 0.0;
        for c in candidates.iter_mut() {
            c.1 = (c.1 - max).exp();
            total += c.1;
        }
        if o.top_p < 1.0 {
            let mut kept = 0.0;
            let mut keep = candidates.len();
            for (i, c) in candidates.iter().enumerate() {
                kept += c.1 / total;
                if kept >= o.top_p {
                    keep = i + 1;
                    break;
                }
            }
            candidates.truncate(keep);
            total = candidates.iter().map(|c| c.1).sum();
        }
        let mut target = self.uniform() * total;
        for &(id, p) in &candidates {
            target -= p;
            if target < 0.0 {
                return id;
            }
        }
        candidates[candidates.len() - 1].0
    }
}

/// The per-token bookkeeping of generation (sampling, stop tokens, the token budget, streaming text),
/// shared by every backend's loop: the CPU model's here and the GPU's in `tinyalign-wgpu`.
#[derive(Debug)]
pub struct Decoding {
    stops: Vec<u32>,
    stop_strings: Vec<String>,
    /// A stop string was seen: what the stream decoder still holds is after it.
    stopped_by_text: bool,
    max_tokens: usize,
    sampler: Sampler,
    recent: Vec<u32>,
    decoder: StreamDecoder,
    pub tokens: Vec<u32>,
    pub text: String,
}

impl Decoding {
    /// `history`: the prompt's token ids, for the repetition penalty.
    pub fn new(tokenizer: &Tokenizer, history: &[u32], options: &GenerateOptions) -> Self {
        Self {
            stops: if options.stop_tokens.is_empty() {
                tokenizer.eos_id.into_iter().collect()
            } else {
                options.stop_tokens.clone()
            },
            stop_strings: options
                .stop_strings
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect(),
            stopped_by_text: false,
            max_tokens: options.max_tokens,
            sampler: Sampler::new(options),
            recent: history.to_vec(),
            decoder: StreamDecoder::default(),
            tokens: Vec::new(),
            text: String::new(),
        }
    }

    /// Picks the next token from the last position's `logits` and streams its text: `Ok(token)` to run
    /// through the model next, or why generation stops. `cache_full`: the KV cache has no room left.
    pub fn step(
        &mut self,
        tokenizer: &Tokenizer,
        logits: &mut [f32],
        cache_full: bool,
        on_text: &mut impl FnMut(&str) -> bool,
    ) -> Result<u32, StopReason> {
        if self.tokens.len() >= self.max_tokens {
            return Err(StopReason::MaxTokens);
        }
        let next = self.sampler.sample(logits, &self.recent);
        if self.stops.contains(&next) {
            return Err(StopReason::StopToken);
        }
        self.tokens.push(next);
        self.recent.push(next);
        let mut piece = self.decoder.push(tokenizer, next);
        let streamed = self.text.len();
        self.text.push_str(&piece);
        // A stop text may straddle pieces: search the whole answer, cut it there, stream what precedes it.
        let stop_at = self
            .stop_strings
            .iter()
            .filter_map(|s| self.text.find(s.as_str()))
            .min();
        if let Some(at) = stop_at {
            self.stopped_by_text = true;
            self.text.truncate(at);
            piece = self
                .text
                .get(streamed.min(at)..)
                .unwrap_or_default()
                .to_string();
        }
        if !piece.is_empty() && !on_text(&piece) {
            return Err(StopReason::Cancelled);
        }
        if stop_at.is_some() {
            return Err(StopReason::StopText);
        }
        if self.tokens.len() >= self.max_tokens {
            return Err(StopReason::MaxTokens);
        }
        if cache_full {
            return Err(StopReason::ContextFull);
        }
        Ok(next)
    }

    /// Streams what the decoder still holds; returns the tokens and the whole text.
    pub fn finish(mut self, on_text: &mut impl FnMut(&str) -> bool) -> (Vec<u32>, String) {
        let rest = self.decoder.finish();
        if !rest.is_empty() && !self.stopped_by_text {
            on_text(&rest);
            self.text.push_str(&rest);
        }
        (self.tokens, self.text)
    }
}

impl LlamaModel {
    /// Generates after `prefix` (`n × hidden_size` input embeddings, e.g. a chat prompt's token embeddings
    /// with projected audio spliced in), continuing `cache`. `history` holds the prompt's token ids for the
    /// repetition penalty. `on_text` receives each completed piece of text and returns false to stop.
    pub fn generate(
        &self,
        prefix: &[f32],
        n: usize,
        cache: &mut KvCache,
        history: &[u32],
        options: &GenerateOptions,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generation, LlmError> {
        let mut decoding = Decoding::new(&self.tokenizer, history, options);
        let started = Instant::now();
        let mut logits = self.forward_embeds(prefix, n, cache, false)?;
        let prefill_seconds = started.elapsed().as_secs_f64();
        let decode_started = Instant::now();
        let stop_reason = loop {
            let cache_full = cache.len() >= cache.capacity();
            match decoding.step(&self.tokenizer, &mut logits, cache_full, &mut on_text) {
                Ok(next) => {
                    let embed = self.embed_tokens(&[next])?;
                    logits = self.forward_embeds(&embed, 1, cache, false)?;
                }
                Err(reason) => break reason,
            }
        };
        let (tokens, text) = decoding.finish(&mut on_text);
        Ok(Generation {
            tokens,
            text,
            stop_reason,
            prompt_tokens: n,
            prefill_seconds,
            decode_seconds: decode_started.elapsed().as_secs_f64(),
        })
    }

    /// Encodes a ChatML conversation and generates the assistant's answer (text-only prompts).
    pub fn chat(
        &self,
        messages: &[crate::ChatMessage],
        options: &GenerateOptions,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generation, LlmError> {
        let ids = self.tokenizer.encode(
            &crate::chatml_prompt(messages, self.system_prompt.as_deref()),
            true,
        );
        let capacity = (ids.len() + options.max_tokens).min(self.config.max_position_embeddings);
        if ids.len() > self.config.max_position_embeddings {
            return Err(LlmError::ContextFull {
                needed: ids.len(),
                context: self.config.max_position_embeddings,
            });
        }
        let mut cache = KvCache::new(&self.config, capacity);
        let embeds = self.embed_tokens(&ids)?;
        self.generate(&embeds, ids.len(), &mut cache, &ids, options, on_text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_argmax_and_penalty_can_change_it() {
        let mut logits = vec![0.1, 2.0, 1.9, -1.0];
        assert_eq!(
            Sampler::new(&GenerateOptions::default()).sample(&mut logits.clone(), &[]),
            1
        );
        let options = GenerateOptions {
            repetition_penalty: 1.5,
            ..Default::default()
        };
        assert_eq!(Sampler::new(&options).sample(&mut logits, &[1]), 2);
    }

    #[test]
    fn sampling_is_seeded_and_follows_the_distribution() {
        let options = GenerateOptions {
            temperature: 1.0,
            seed: 42,
            ..Default::default()
        };
        let logits = [0.0f32, (3.0f32).ln(), f32::NEG_INFINITY];
        let draw = |options: &GenerateOptions| {
            let mut sampler = Sampler::new(options);
            (0..4000)
                .map(|_| sampler.sample(&mut logits.clone(), &[]))
                .collect::<Vec<_>>()
        };
        let draws = draw(&options);
        assert_eq!(draws, draw(&options), "same seed, same tokens");
        let ones = draws.iter().filter(|&&t| t == 1).count() as f32 / draws.len() as f32;
        assert!((ones - 0.75).abs() < 0.03, "p(1) = {ones}, want 0.75");
        assert!(!draws.contains(&2));
        let nucleus = GenerateOptions {
            top_p: 0.7,
            ..options
        };
        assert!(
            draw(&nucleus).iter().all(|&t| t == 1),
            "top-p 0.7 keeps only the 0.75 token"
        );
    }
}
