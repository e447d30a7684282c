//! `tinyalign eval`: one task on a manifest split, one row per system, written as `report.json` (per row
//! and per utterance) and `report.md`.
//!
//! Tasks and what a row's answer is scored against:
//! - `transcribe` (instruction "Repeat exactly what the speaker said."): the transcript, by WER, CER and
//!   word F1.
//! - `respond` (instruction "Answer the speaker's request or question."; utterances labelled `transcribe`
//!   are skipped): the frozen LLM's own greedy answer to the transcript typed as a plain user message, by
//!   word F1 and exact match (and WER against that answer). It asks: does hearing the request give the
//!   answer reading it would have given?
//!
//! Rows: `whisper` (transcribe only: Whisper tiny.en's own greedy transcript, the cascade's first half),
//! `cascade` (Whisper's transcript handed to the LLM in the audio slot under the task's instruction),
//! `text-oracle` (the reference transcript's own token embeddings in the audio slot: the ceiling of the
//! injection layout), `token-readout` (transcribe only: each audio token read back as the vocabulary row
//! nearest to it by cosine, detokenised; no LLM runs, so it measures what the tokens carry apart from what
//! the LLM does with them), `projector` (audio → projector → LLM, instruction injected) and
//! `projector-no-injection` (the same, audio tokens alone in the user turn).
//!
//! Every rate comes with a 95% bootstrap interval over utterances.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use tinyalign_data::{Manifest, Split, Task};
use tinyalign_llm::{GenerateOptions, SlotPrompt};
use tinyalign_whisper::WhisperModel;

use crate::{Assistant, AssistantError, EditCounts, Readout, bootstrap_ci95};

/// The prompt around the audio slot for `task`.
pub fn task_prompt(task: Task) -> SlotPrompt {
    match task {
        Task::Transcribe => SlotPrompt::transcribe(),
        Task::Respond => SlotPrompt::respond(),
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RowSummary {
    pub name: String,
    pub utterances: usize,
    /// Corpus word error rate against the task's reference (all edits / all reference words).
    pub wer: f64,
    pub wer_ci95: Option<[f64; 2]>,
    pub cer: f64,
    pub words: EditCounts,
    pub chars: EditCounts,
    /// Mean per-utterance bag-of-words F1 against the task's reference.
    pub f1: f64,
    pub f1_ci95: Option<[f64; 2]>,
    /// Share of answers whose normalised words equal the reference's.
    pub exact_match: f64,
    pub refusal_rate: f64,
    pub loop_rate: f64,
    pub mean_latency_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Hypothesis {
    pub text: String,
    pub wer: f64,
    pub f1: f64,
    pub exact: bool,
    pub latency_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UtteranceResult {
    pub id: String,
    /// The utterance's transcript.
    pub reference: String,
    /// Respond task: the LLM's answer to the transcript as typed text, which the rows are scored against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_answer: Option<String>,
    pub rows: BTreeMap<String, Hypothesis>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub task: Task,
    pub instruction: String,
    /// The beginning of the answer written for the model (the transcribe task's open quotation).
    pub answer_prefix: Option<String>,
    /// How the `projector` row's CTC frames went into the LLM (absent for a pooled projector).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readout: Option<String>,
    pub split: String,
    pub rows: Vec<RowSummary>,
    pub utterances: Vec<UtteranceResult>,
    /// Peak resident memory of the evaluating process, all models loaded (Linux only).
    pub peak_rss_bytes: Option<u64>,
}

fn ci(ci: Option<[f64; 2]>) -> String {
    ci.map(|[lo, hi]| format!(" ({:.0}–{:.0})", 100.0 * lo, 100.0 * hi))
        .unwrap_or_default()
}

impl EvalReport {
    /// Writes `report.json` (per-row and per-utterance results) and `report.md` into `dir`, atomically.
    pub fn write(&self, dir: &std::path::Path) -> Result<(), AssistantError> {
        let json = serde_json::to_vec_pretty(self).expect("reports serialise");
        for (name, bytes) in [
            ("report.json", json),
            ("report.md", self.to_markdown().into_bytes()),
        ] {
            tinyalign_data::write_atomic(&dir.join(name), &bytes)?;
        }
        Ok(())
    }

    pub fn to_markdown(&self) -> String {
        let mut out = match self.task {
            Task::Transcribe => format!(
                "# Transcribe task, split `{}`\n\nInstruction \"{}\"{}, scored against the transcript; 95% bootstrap intervals over utterances in brackets.\n\n| row | utterances | WER | CER | S / I / D | word F1 | refusals | loops | ms / utt |\n|---|---|---|---|---|---|---|---|---|\n",
                self.split,
                self.instruction,
                self.answer_prefix
                    .as_ref()
                    .map(|p| format!(", the answer begun as `{p}` and ended at the closing quote"))
                    .unwrap_or_default()
            ),
            Task::Respond => format!(
                "# Respond task, split `{}`\n\nInstruction \"{}\", scored against the LLM's own answer to the transcript typed as a user message; 95% bootstrap intervals over utterances in brackets.\n\n| row | utterances | word F1 | exact match | WER vs that answer | refusals | loops | ms / utt |\n|---|---|---|---|---|---|---|---|\n",
                self.split, self.instruction
            ),
        };
        for r in &self.rows {
            let common = format!(
                "{:.0}% | {:.0}% | {:.0} |",
                100.0 * r.refusal_rate,
                100.0 * r.loop_rate,
                r.mean_latency_ms
            );
            out.push_str(&match self.task {
                Task::Transcribe => format!(
                    "| {} | {} | {:.1}%{} | {:.1}% | {} / {} / {} | {:.2} | {common}\n",
                    r.name,
                    r.utterances,
                    100.0 * r.wer,
                    ci(r.wer_ci95),
                    100.0 * r.cer,
                    r.words.substitutions,
                    r.words.insertions,
                    r.words.deletions,
                    r.f1,
                ),
                Task::Respond => format!(
                    "| {} | {} | {:.2}{} | {:.0}% | {:.1}% | {common}\n",
                    r.name,
                    r.utterances,
                    r.f1,
                    r.f1_ci95
                        .map(|[lo, hi]| format!(" ({lo:.2}–{hi:.2})"))
                        .unwrap_or_default(),
                    100.0 * r.exact_match,
                    100.0 * r.wer,
                ),
            });
        }
        if let Some(readout) = &self.readout {
            out.push_str(&format!(
                "\nThe projector has a CTC head; its frames went into the LLM by the `{readout}` readout in the `projector` row.\n"
            ));
        }
        if let Some(bytes) = self.peak_rss_bytes {
            out.push_str(&format!(
                "\nPeak RSS of the evaluating process: {:.2} GB.\n",
                bytes as f64 / 1e9
            ));
        }
        out
    }
}

/// One row's per-utterance scores, kept for the bootstrap.
#[derive(Default)]
struct Accumulator {
    words: Vec<EditCounts>,
    chars: EditCounts,
    f1: Vec<f64>,
    exact: usize,
    refusals: usize,
    loops: usize,
    ms: f64,
}

impl Accumulator {
    fn summary(&self, name: &str) -> RowSummary {
        let n = self.words.len();
        let corpus_wer = |picks: &[usize]| {
            let mut total = EditCounts::default();
            for &i in picks {
                total.add(self.words[i]);
            }
            total.rate()
        };
        let mean_f1 = |picks: &[usize]| {
            picks.iter().map(|&i| self.f1[i]).sum::<f64>() / picks.len().max(1) as f64
        };
        let all: Vec<usize> = (0..n).collect();
        let mut words = EditCounts::default();
        for w in &self.words {
            words.add(*w);
        }
        let per = |count: usize| count as f64 / n.max(1) as f64;
        RowSummary {
            name: name.to_string(),
            utterances: n,
            wer: words.rate(),
            wer_ci95: bootstrap_ci95(n, corpus_wer),
            cer: self.chars.rate(),
            words,
            chars: self.chars,
            f1: mean_f1(&all),
            f1_ci95: bootstrap_ci95(n, mean_f1),
            exact_match: per(self.exact),
            refusal_rate: per(self.refusals),
            loop_rate: per(self.loops),
            mean_latency_ms: self.ms / n.max(1) as f64,
        }
    }
}

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub task: Task,
    pub split: Split,
    /// At most this many utterances (0 = all), in id order.
    pub limit: usize,
    pub max_tokens: usize,
    /// Add the `projector-no-injection` row.
    pub ablation: bool,
    /// Add the `text-oracle` row, and with a Whisper model the `whisper` (transcribe only) and `cascade`
    /// rows.
    pub baselines: bool,
    /// Only this speaker's utterances (a manifest with several users).
    pub speaker: Option<String>,
    /// Replaces the task's instruction in every row (for trying prompts; the default is the task's).
    pub instruction: Option<String>,
    /// The readout the assistant was given for its CTC head (`None`: the default, greedy); reported.
    pub readout: Option<Readout>,
    /// With a CTC projector, add a `projector-<readout>` row for each other readout.
    pub all_readouts: bool,
}

/// Evaluates the manifest's split; `progress(done, total)` after each utterance.
pub fn evaluate(
    manifest: &Manifest,
    assistant: &Assistant,
    whisper: Option<&WhisperModel>,
    eval: &EvalOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<EvalReport, AssistantError> {
    let (task, split, limit, max_tokens, ablation) = (
        eval.task,
        eval.split,
        eval.limit,
        eval.max_tokens,
        eval.ablation,
    );
    let prompt = match &eval.instruction {
        Some(text) => SlotPrompt::instruction(text),
        None => task_prompt(task),
    };
    let mut utts = manifest.in_splits(&[split]);
    utts.retain(|u| eval.speaker.as_ref().is_none_or(|s| *s == u.speaker));
    // Any speech can be repeated; only requests (or unlabelled utterances) can be answered.
    if task == Task::Respond {
        utts.retain(|u| u.task != Some(Task::Transcribe));
    }
    if limit > 0 {
        utts.truncate(limit);
    }
    if utts.is_empty() {
        return Err(AssistantError::Data(format!(
            "no utterances for the {} task in split `{}`{}",
            task.name(),
            split.name(),
            eval.speaker
                .as_ref()
                .map(|s| format!(" of speaker `{s}`"))
                .unwrap_or_default()
        )));
    }
    // Without the Whisper model the baselines are the text oracle alone.
    let whisper = whisper.filter(|_| eval.baselines);
    let padded = whisper
        .map(|w| {
            w.encoder
                .config()
                .frontend(true)
                .map_err(AssistantError::from)
        })
        .transpose()?;
    let options = GenerateOptions {
        max_tokens,
        ..Default::default()
    };
    // The LLM answering a text put in the audio slot as its token embeddings, as at inference.
    let answer_text = |text: &str, prompt: &SlotPrompt| -> Result<String, AssistantError> {
        let ids = assistant.llm.tokenizer.encode(text, false);
        let embeds = assistant.llm.embed_tokens(&ids)?;
        let g = assistant.answer_embeddings(&embeds, ids.len(), prompt, &options, |_| true)?;
        Ok(g.text)
    };
    let mut rows: BTreeMap<&str, Accumulator> = BTreeMap::new();
    let mut results = Vec::new();
    for (i, u) in utts.iter().enumerate() {
        let name = format!("{} ({})", manifest.audio_path(u).display(), u.id);
        let audio = tinyalign_mel::read_audio_file(&manifest.audio_path(u), u.input_format())?;
        // Without an instruction the slot holds the typed request alone: exactly the plain chat prompt.
        let reference_answer = match task {
            Task::Transcribe => None,
            Task::Respond => Some(answer_text(&u.text, &SlotPrompt::audio_only())?),
        };
        let reference = reference_answer.as_deref().unwrap_or(&u.text);
        let mut hyps: Vec<(&str, String, f64)> = Vec::new();

        if let (Some(whisper), Some(padded)) = (whisper, &padded) {
            let started = Instant::now();
            let mel = padded.audio_to_log_mel(&audio, &name)?;
            let text = whisper.transcribe(&mel, 224)?;
            let whisper_ms = started.elapsed().as_secs_f64() * 1e3;
            let started = Instant::now();
            let cascade = answer_text(&text, &prompt)?;
            let cascade_ms = whisper_ms + started.elapsed().as_secs_f64() * 1e3;
            if task == Task::Transcribe {
                hyps.push(("whisper", text, whisper_ms));
            }
            hyps.push(("cascade", cascade, cascade_ms));
        }

        if eval.baselines {
            let started = Instant::now();
            let text = answer_text(&u.text, &prompt)?;
            hyps.push(("text-oracle", text, started.elapsed().as_secs_f64() * 1e3));
        }

        if assistant.hears() {
            let heard = assistant.hear(&audio, &name)?;
            let heard_ms = heard.encode_ms + heard.project_ms;
            let started = Instant::now();
            let (slot, t) = assistant.slot(&heard.audio, None)?;
            let slot_ms = heard_ms + started.elapsed().as_secs_f64() * 1e3;
            if task == Task::Transcribe {
                // No LLM involved: a CTC head's greedy path, or each pooled token's nearest vocabulary row.
                let started = Instant::now();
                let ids = match assistant.ctc_token_ids(&heard.audio) {
                    Some(ids) => ids,
                    None => assistant.llm.nearest_tokens(&slot, t)?,
                };
                let text = assistant.llm.tokenizer.decode(&ids, true);
                let ms = heard_ms + started.elapsed().as_secs_f64() * 1e3;
                hyps.push(("token-readout", text, ms));
            }
            let mut inputs = vec![("projector", prompt.clone(), slot.clone(), t, slot_ms)];
            if ablation {
                inputs.push((
                    "projector-no-injection",
                    SlotPrompt::audio_only(),
                    slot,
                    t,
                    slot_ms,
                ));
            }
            if eval.all_readouts && assistant.has_ctc_head() {
                for (row, readout) in [
                    ("projector-greedy", Readout::Greedy),
                    ("projector-posterior", Readout::Posterior),
                    ("projector-vectors", Readout::Vectors),
                ] {
                    if Some(readout) == eval.readout.or(Some(Readout::Greedy)) {
                        continue;
                    }
                    let started = Instant::now();
                    let (slot, t) = assistant.slot(&heard.audio, Some(readout))?;
                    let ms = heard_ms + started.elapsed().as_secs_f64() * 1e3;
                    inputs.push((row, prompt.clone(), slot, t, ms));
                }
            }
            for (row, layout, slot, t, slot_ms) in inputs {
                let started = Instant::now();
                let g = assistant.answer_embeddings(&slot, t, &layout, &options, |_| true)?;
                hyps.push((row, g.text, slot_ms + started.elapsed().as_secs_f64() * 1e3));
            }
        }

        let mut per_row = BTreeMap::new();
        for (row, text, ms) in hyps {
            let words = crate::word_errors(reference, &text);
            let f1 = crate::token_f1(reference, &text);
            let exact = crate::exact_match(reference, &text);
            let acc = rows.entry(row).or_default();
            acc.words.push(words);
            acc.chars.add(crate::char_errors(reference, &text));
            acc.f1.push(f1);
            acc.exact += usize::from(exact);
            acc.refusals += usize::from(crate::is_refusal(&text));
            acc.loops += usize::from(crate::is_looping(&text));
            acc.ms += ms;
            per_row.insert(
                row.to_string(),
                Hypothesis {
                    text: text.trim().to_string(),
                    wer: words.rate(),
                    f1,
                    exact,
                    latency_ms: ms,
                },
            );
        }
        results.push(UtteranceResult {
            id: u.id.clone(),
            reference: u.text.clone(),
            reference_answer: reference_answer.map(|a| a.trim().to_string()),
            rows: per_row,
        });
        progress(i + 1, utts.len());
    }
    let order = [
        "whisper",
        "cascade",
        "text-oracle",
        "token-readout",
        "projector",
        "projector-greedy",
        "projector-posterior",
        "projector-vectors",
        "projector-no-injection",
    ];
    let summaries = order
        .iter()
        .filter_map(|name| rows.get(name).map(|a| a.summary(name)))
        .collect();
    Ok(EvalReport {
        task,
        instruction: prompt.instruction.clone().unwrap_or_default(),
        answer_prefix: prompt.answer_prefix.clone(),
        readout: assistant
            .has_ctc_head()
            .then(|| eval.readout.unwrap_or_default().to_string()),
        split: split.name().into(),
        rows: summaries,
        utterances: results,
        peak_rss_bytes: tinyalign_data::peak_rss_bytes(),
    })
}
