//! `tinyalign eval`: the transcribe task on a manifest split, one row per system, written as `report.json`
//! (per row and per utterance) and `report.md`.
//!
//! Rows: `whisper` (Whisper tiny.en's own greedy transcript: the cascade's first half), `text-oracle` (the
//! LLM given the reference transcript's own token embeddings in the audio slot: the upper bound of the
//! injection layout), `projector` (audio → projector → LLM, instruction injected) and
//! `projector-no-injection` (the same, audio tokens alone).

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use tinyalign_data::{Manifest, Split};
use tinyalign_llm::GenerateOptions;
use tinyalign_mel::{Frontend, FrontendConfig, MelBands};
use tinyalign_whisper::WhisperModel;

use crate::{Assistant, AssistantError, EditCounts, PromptLayout, TRANSCRIBE_INSTRUCTION};

#[derive(Debug, Clone, Default, Serialize)]
pub struct RowSummary {
    pub name: String,
    pub utterances: usize,
    pub wer: f64,
    pub cer: f64,
    pub words: EditCounts,
    pub chars: EditCounts,
    pub refusal_rate: f64,
    pub loop_rate: f64,
    pub mean_latency_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Hypothesis {
    pub text: String,
    pub wer: f64,
    pub latency_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UtteranceResult {
    pub id: String,
    pub reference: String,
    pub rows: BTreeMap<String, Hypothesis>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub split: String,
    pub rows: Vec<RowSummary>,
    pub utterances: Vec<UtteranceResult>,
}

impl EvalReport {
    /// Writes `report.json` (per-row and per-utterance results) and `report.md` into `dir`, atomically.
    pub fn write(&self, dir: &std::path::Path) -> Result<(), AssistantError> {
        let json = serde_json::to_vec_pretty(self).expect("reports serialise");
        for (name, bytes) in [
            ("report.json", json),
            ("report.md", self.to_markdown().into_bytes()),
        ] {
            tinyalign_data::write_atomic(&dir.join(name), &bytes)
                .map_err(|e| AssistantError::Io(e.to_string()))?;
        }
        Ok(())
    }

    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "# Transcribe task, split `{}`\n\n| row | utterances | WER | CER | S / I / D | refusals | loops | ms / utt |\n|---|---|---|---|---|---|---|---|\n",
            self.split
        );
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {:.1}% | {:.1}% | {} / {} / {} | {:.0}% | {:.0}% | {:.0} |\n",
                r.name,
                r.utterances,
                100.0 * r.wer,
                100.0 * r.cer,
                r.words.substitutions,
                r.words.insertions,
                r.words.deletions,
                100.0 * r.refusal_rate,
                100.0 * r.loop_rate,
                r.mean_latency_ms
            ));
        }
        out
    }
}

#[derive(Default)]
struct Accumulator {
    words: EditCounts,
    chars: EditCounts,
    refusals: usize,
    loops: usize,
    ms: f64,
    n: usize,
}

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub split: Split,
    /// At most this many utterances (0 = all), in id order.
    pub limit: usize,
    pub max_tokens: usize,
    /// Add the `projector-no-injection` row.
    pub ablation: bool,
    /// Add the `whisper` and `cascade` (Whisper's transcript → LLM; both need the Whisper model) and
    /// `text-oracle` rows.
    pub baselines: bool,
    /// Only this speaker's utterances (a manifest with several users).
    pub speaker: Option<String>,
}

/// Evaluates the manifest's split; `progress(done, total)` after each utterance.
pub fn evaluate(
    manifest: &Manifest,
    assistant: &Assistant,
    whisper: Option<&WhisperModel>,
    eval: &EvalOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<EvalReport, AssistantError> {
    let (split, limit, max_tokens, ablation) =
        (eval.split, eval.limit, eval.max_tokens, eval.ablation);
    let mut utts = manifest.in_splits(&[split]);
    utts.retain(|u| eval.speaker.as_ref().is_none_or(|s| *s == u.speaker));
    if limit > 0 {
        utts.truncate(limit);
    }
    if utts.is_empty() {
        return Err(AssistantError::Data(format!(
            "no utterances in split `{}`{}",
            split.name(),
            eval.speaker
                .as_ref()
                .map(|s| format!(" of speaker `{s}`"))
                .unwrap_or_default()
        )));
    }
    let whisper = match (eval.baselines, whisper) {
        (false, _) => None,
        (true, Some(w)) => Some(w),
        (true, None) => {
            return Err(AssistantError::Model(
                "the whisper baseline row needs the Whisper model".into(),
            ));
        }
    };
    let padded = whisper
        .map(|w| {
            MelBands::from_count(w.encoder.config().num_mel_bins)
                .map(|bands| {
                    Frontend::new(FrontendConfig {
                        bands,
                        pad_to_30s: true,
                    })
                })
                .ok_or_else(|| AssistantError::Model("mel bands".into()))
        })
        .transpose()?;
    let options = GenerateOptions {
        max_tokens,
        ..Default::default()
    };
    let mut rows: BTreeMap<&str, Accumulator> = BTreeMap::new();
    let mut results = Vec::new();
    for (i, u) in utts.iter().enumerate() {
        let name = format!("{} ({})", manifest.audio_path(u).display(), u.id);
        let audio = tinyalign_mel::read_audio_file(&manifest.audio_path(u), u.input_format())?;
        let mut hyps: Vec<(&str, String, f64)> = Vec::new();

        // The LLM answering a text in the audio slot (its token embeddings), as at inference.
        let answer_text = |text: &str| -> Result<String, AssistantError> {
            let ids = assistant.llm.tokenizer.encode(text, false);
            let embeds = assistant
                .llm
                .embed_tokens(&ids)
                .map_err(|e| AssistantError::Model(e.to_string()))?;
            let g = assistant.answer_embeddings(
                &embeds,
                ids.len(),
                TRANSCRIBE_INSTRUCTION,
                PromptLayout::Injected,
                &options,
                |_| true,
            )?;
            Ok(g.text)
        };
        if let (Some(whisper), Some(padded)) = (whisper, &padded) {
            let started = Instant::now();
            let mel = padded.audio_to_log_mel(&audio, &name)?;
            let text = whisper
                .transcribe(&mel, 224)
                .map_err(|e| AssistantError::Model(e.to_string()))?;
            let whisper_ms = started.elapsed().as_secs_f64() * 1e3;
            // The cascade: Whisper's own transcript handed to the LLM in place of the audio tokens.
            let started = Instant::now();
            let cascade = answer_text(&text)?;
            let cascade_ms = whisper_ms + started.elapsed().as_secs_f64() * 1e3;
            hyps.push(("whisper", text, whisper_ms));
            hyps.push(("cascade", cascade, cascade_ms));
        }

        if eval.baselines {
            let started = Instant::now();
            let text = answer_text(&u.text)?;
            hyps.push(("text-oracle", text, started.elapsed().as_secs_f64() * 1e3));
        }

        let mut layouts = vec![("projector", PromptLayout::Injected)];
        if ablation {
            layouts.push(("projector-no-injection", PromptLayout::AudioOnly));
        }
        for (row, layout) in layouts {
            let started = Instant::now();
            let a = assistant.answer(
                &audio,
                &name,
                TRANSCRIBE_INSTRUCTION,
                layout,
                &options,
                |_| true,
            )?;
            hyps.push((
                row,
                a.generation.text,
                started.elapsed().as_secs_f64() * 1e3,
            ));
        }

        let mut per_row = BTreeMap::new();
        for (row, text, ms) in hyps {
            let words = crate::word_errors(&u.text, &text);
            let acc = rows.entry(row).or_default();
            acc.words.add(words);
            acc.chars.add(crate::char_errors(&u.text, &text));
            acc.refusals += usize::from(crate::is_refusal(&text));
            acc.loops += usize::from(crate::is_looping(&text));
            acc.ms += ms;
            acc.n += 1;
            per_row.insert(
                row.to_string(),
                Hypothesis {
                    text: text.trim().to_string(),
                    wer: words.rate(),
                    latency_ms: ms,
                },
            );
        }
        results.push(UtteranceResult {
            id: u.id.clone(),
            reference: u.text.clone(),
            rows: per_row,
        });
        progress(i + 1, utts.len());
    }
    let order = [
        "whisper",
        "cascade",
        "text-oracle",
        "projector",
        "projector-no-injection",
    ];
    let summaries = order
        .iter()
        .filter_map(|name| rows.get(name).map(|a| (name, a)))
        .map(|(name, a)| RowSummary {
            name: name.to_string(),
            utterances: a.n,
            wer: a.words.rate(),
            cer: a.chars.rate(),
            words: a.words,
            chars: a.chars,
            refusal_rate: a.refusals as f64 / a.n.max(1) as f64,
            loop_rate: a.loops as f64 / a.n.max(1) as f64,
            mean_latency_ms: a.ms / a.n.max(1) as f64,
        })
        .collect();
    Ok(EvalReport {
        split: split.name().into(),
        rows: summaries,
        utterances: results,
    })
}
