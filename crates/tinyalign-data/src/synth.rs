//! Synthetic speakers from offline synthesisers (espeak-ng, flite; ../shared/MODELS.md):
//! - `synth`: many voices (accent × voice variant × rate × pitch), speaker-disjoint train/valid/test, and
//!   texts that are split-disjoint too, so a test sentence was never heard in training.
//! - `atypical`: personal "users" with strong characteristics (very slow or fast, pitch extremes, croaky and
//!   breathy voices, telephone band, noise, tremolo) made from voices the `synth` set never uses; each has
//!   `adapt` and `heldout` parts.
//!
//! Audio is written through a temporary file and renamed, and its name carries a hash of what made it, so
//! an interrupted build resumes without redoing finished files and a changed recipe never reuses a stale one.

use std::path::{Path, PathBuf};

use crate::augment::{Effect, apply_effect};
use crate::recipes::{RecipeReport, finish, probe, seeded_shuffle};
use crate::texts::TextPool;
use crate::voices::{
    DEFAULT_SPEAKERS, DEFAULT_TEST_SPEAKERS, DEFAULT_VALID_SPEAKERS, Engine, Voice,
    atypical_voices, check_engine, synth_voices,
};
use crate::{DataError, Manifest, Split, Task, Utterance, relative_path};

const SOURCE: &str =
    "tinyalign synthetic speech (espeak-ng 1.51, flite 2.2), datasets/synth/templates.txt";
const LICENCE: &str =
    "MIT OR Apache-2.0 (texts); espeak-ng GPL-3.0 and flite BSD-like voices, output unrestricted";
const WIDE_SOURCE: &str = "tinyalign synthetic speech (espeak-ng 1.51, flite 2.2), WordNet 3.0 usage examples (Debian wordnet-base 1:3.0-37)";
const WIDE_LICENCE: &str =
    "WordNet 3.0 licence (texts); espeak-ng GPL-3.0 and flite BSD-like voices, output unrestricted";

#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub seed: u64,
    /// Audio to make, over all splits.
    pub hours: f64,
    pub speakers: usize,
    pub valid_speakers: usize,
    pub test_speakers: usize,
    /// Add festival's voices to the pool.
    pub festival: bool,
    /// Every espeak-ng variant in the pool, not only the 12 plain ones (`synth-wide`).
    pub every_variant: bool,
    /// WordNet's database folder: two thirds of the texts become its usage examples (`synth-wide`).
    pub wordnet: Option<PathBuf>,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            hours: 1.0,
            speakers: DEFAULT_SPEAKERS,
            valid_speakers: DEFAULT_VALID_SPEAKERS,
            test_speakers: DEFAULT_TEST_SPEAKERS,
            festival: false,
            every_variant: false,
            wordnet: None,
        }
    }
}

/// Progress of a build: (seconds of audio made, seconds wanted).
pub type Progress<'a> = &'a mut dyn FnMut(f64, f64);

/// Builds `out_dir/manifest.jsonl` and `out_dir/audio/<speaker>/*.wav`. Speakers take turns, each with the
/// next unused text of its split's pool, until `hours` of audio exist.
pub fn build_synth(
    out_dir: &Path,
    options: &SynthOptions,
    progress: Progress,
) -> Result<(Manifest, RecipeReport), DataError> {
    let SynthOptions {
        seed,
        hours,
        speakers,
        valid_speakers,
        test_speakers,
        festival,
        every_variant,
        wordnet,
    } = options.clone();
    if !(hours > 0.0 && hours <= 1000.0) {
        return Err(DataError::Invalid(format!(
            "--hours {hours}: give a positive number of hours"
        )));
    }
    let max_speakers = synth_voices(seed, usize::MAX, festival, every_variant).len();
    if speakers > max_speakers || valid_speakers + test_speakers >= speakers {
        return Err(DataError::Invalid(format!(
            "{speakers} speakers ({valid_speakers} valid, {test_speakers} test): need more speakers than valid + test, at most {max_speakers}"
        )));
    }
    let voices = synth_voices(seed, speakers, festival, every_variant);
    for engine in [Engine::EspeakNg, Engine::Flite, Engine::Festival] {
        if voices.iter().any(|v| v.engine == engine) {
            check_engine(engine)?;
        }
    }
    let split_of = |i: usize| {
        if i < test_speakers {
            Split::Test
        } else if i < test_speakers + valid_speakers {
            Split::Valid
        } else {
            Split::Train
        }
    };
    // Texts: a seeded pool, a tenth kept for valid + test only (split-disjoint sentences).
    let target_s = hours * 3600.0;
    let texts = text_pool(seed, wanted_texts(hours), wordnet.as_deref())?;
    let held = held_text_count(texts.len());
    let (held_texts, train_texts) = texts.split_at(held);
    let mut next_text = [0usize; 2];
    let mut sink = Sink {
        out_dir,
        utterances: Vec::new(),
        report: RecipeReport::default(),
    };
    let mut made_s = 0.0;
    let mut turn = 0usize;
    while made_s < target_s {
        let speaker_index = turn % voices.len();
        let index = turn / voices.len();
        turn += 1;
        let voice = &voices[speaker_index];
        let split = split_of(speaker_index);
        let (pool, cursor) = match split {
            Split::Train => (train_texts, &mut next_text[0]),
            _ => (held_texts, &mut next_text[1]),
        };
        let sentence = &pool[*cursor % pool.len()];
        *cursor += 1;
        made_s += sink.add("synth", voice, index, sentence, split)?;
        progress(made_s.min(target_s), target_s);
        if turn > 40 && sink.report.skipped.len() * 2 > turn {
            return Err(DataError::Invalid(format!(
                "most utterances fail to synthesise; the last: {:?}",
                sink.report.skipped.last()
            )));
        }
    }
    sink.finish()
}

/// The default `synth` set's valid + test sentences (its [`SynthOptions::default`] build), lowercased.
/// `synth-wide` uses neither them nor that set's held-out voices
/// ([`crate::voices::default_heldout_voices`]), so a projector trained on it is scored on the default
/// set's `test` split beside one trained on the default set, both on voices and sentences they never heard.
fn default_heldout_texts() -> std::collections::HashSet<String> {
    let o = SynthOptions::default();
    let texts = text_pool(o.seed, wanted_texts(o.hours), None).unwrap_or_default();
    let held = held_text_count(texts.len());
    texts
        .into_iter()
        .take(held)
        .map(|s| s.text.to_lowercase())
        .collect()
}

fn wanted_texts(hours: f64) -> usize {
    ((hours * 3600.0 / 2.5) as usize).clamp(200, 40_000)
}

/// A tenth of the texts is kept for valid + test only (split-disjoint sentences).
fn held_text_count(texts: usize) -> usize {
    (texts / 10).max(1)
}

/// A text to synthesise, with where it comes from (recorded per utterance).
#[derive(Debug, Clone, PartialEq)]
struct Sentence {
    task: Task,
    text: String,
    source: &'static str,
    licence: &'static str,
}

impl Sentence {
    fn from_template((task, text): (Task, String)) -> Self {
        Self {
            task,
            text,
            source: SOURCE,
            licence: LICENCE,
        }
    }
}

/// `wanted` distinct texts in a seeded order: template expansions, or with `wordnet` one third templates
/// (every request and question) and two thirds WordNet examples (sentences to read), none of them a
/// valid or test sentence of the default set ([`default_heldout_texts`]).
fn text_pool(seed: u64, wanted: usize, wordnet: Option<&Path>) -> Result<Vec<Sentence>, DataError> {
    let Some(dir) = wordnet else {
        let mut texts: Vec<Sentence> = TextPool::builtin()
            .expand(seed, wanted)
            .into_iter()
            .map(Sentence::from_template)
            .collect();
        seeded_shuffle(&mut texts, seed ^ 0x7E57);
        return Ok(texts);
    };
    let mut examples = crate::wordnet_sentences(dir)?;
    seeded_shuffle(&mut examples, seed ^ 0x0000_0057_0DE7);
    let from_wordnet = (wanted * 2 / 3).min(examples.len());
    let mut seen = default_heldout_texts();
    let mut texts: Vec<Sentence> = TextPool::builtin()
        .expand(seed, wanted - from_wordnet)
        .into_iter()
        .map(Sentence::from_template)
        .chain(
            examples
                .into_iter()
                .take(from_wordnet)
                .map(|text| Sentence {
                    task: Task::Transcribe,
                    text,
                    source: WIDE_SOURCE,
                    licence: WIDE_LICENCE,
                }),
        )
        .filter(|s| seen.insert(s.text.to_lowercase()))
        .collect();
    seeded_shuffle(&mut texts, seed ^ 0x7E57);
    Ok(texts)
}

#[derive(Debug, Clone)]
pub struct AtypicalOptions {
    pub seed: u64,
    /// Adaptation audio per user.
    pub adapt_seconds: f64,
    /// Held-out utterances per user.
    pub heldout: usize,
}

impl Default for AtypicalOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            adapt_seconds: 300.0,
            heldout: 40,
        }
    }
}

/// Builds the `atypical` users into `out_dir`: per user, `adapt` utterances until `adapt_seconds`, then
/// `heldout` ones; a user's held-out texts are never among its adaptation texts.
pub fn build_atypical(
    out_dir: &Path,
    options: &AtypicalOptions,
    progress: Progress,
) -> Result<(Manifest, RecipeReport), DataError> {
    if !(options.adapt_seconds > 0.0 && options.adapt_seconds <= 36_000.0) || options.heldout == 0 {
        return Err(DataError::Invalid(
            "atypical: give positive adaptation seconds and held-out utterances".into(),
        ));
    }
    check_engine(Engine::EspeakNg)?;
    let voices = atypical_voices();
    let per_user_texts = (options.adapt_seconds / 1.5) as usize + options.heldout + 10;
    let target_s = voices.len() as f64 * (options.adapt_seconds + options.heldout as f64 * 3.0);
    let mut sink = Sink {
        out_dir,
        utterances: Vec::new(),
        report: RecipeReport::default(),
    };
    let mut made_s = 0.0;
    for (v, voice) in voices.iter().enumerate() {
        let texts = TextPool::builtin().expand(options.seed.wrapping_add(v as u64), per_user_texts);
        if texts.len() <= options.heldout {
            return Err(DataError::Invalid(format!(
                "atypical: the templates give {} distinct texts, not enough for {} held-out utterances",
                texts.len(),
                options.heldout
            )));
        }
        let (held, adapt_pool) = texts.split_at(options.heldout);
        // Adaptation texts until their audio reaches `adapt_seconds`, then the held-out texts.
        let mut adapt_s = 0.0;
        let mut index = 0;
        let as_job = |split: Split| {
            move |item: &(Task, String)| (split, Sentence::from_template(item.clone()))
        };
        let mut jobs = adapt_pool.iter().map(as_job(Split::Adapt));
        let mut held_jobs = held.iter().map(as_job(Split::Heldout));
        loop {
            let next = if adapt_s < options.adapt_seconds {
                jobs.next().or_else(|| held_jobs.next())
            } else {
                held_jobs.next()
            };
            let Some((split, sentence)) = next else {
                break;
            };
            let seconds = sink.add("atypical", voice, index, &sentence, split)?;
            made_s += seconds;
            if split == Split::Adapt {
                adapt_s += seconds;
            }
            index += 1;
            progress(made_s.min(target_s), target_s);
        }
    }
    sink.finish()
}

/// Collects a build's utterances and what it skipped.
struct Sink<'a> {
    out_dir: &'a Path,
    utterances: Vec<Utterance>,
    report: RecipeReport,
}

impl Sink<'_> {
    /// Synthesises (or finds) utterance `index` of `voice` and records it, or why it was skipped. Returns
    /// the seconds of audio it added.
    fn add(
        &mut self,
        set: &str,
        voice: &Voice,
        index: usize,
        sentence: &Sentence,
        split: Split,
    ) -> Result<f64, DataError> {
        let id = format!("{set}/{}/{index:05}", voice.speaker);
        match synthesise(self.out_dir, voice, &sentence.text, index)? {
            Ok((wav, duration_s, sample_rate)) => {
                self.utterances.push(Utterance {
                    id,
                    audio: relative_path(&wav, self.out_dir)
                        .to_string_lossy()
                        .into_owned(),
                    text: sentence.text.clone(),
                    speaker: voice.speaker.clone(),
                    duration_s,
                    sample_rate,
                    split,
                    source: sentence.source.into(),
                    licence: sentence.licence.into(),
                    task: Some(sentence.task),
                    tags: voice.tags(),
                    extra: Default::default(),
                });
                Ok(duration_s)
            }
            Err(reason) => {
                self.report.skipped.push((id, reason));
                Ok(0.0)
            }
        }
    }

    fn finish(mut self) -> Result<(Manifest, RecipeReport), DataError> {
        self.report.kept = self.utterances.len();
        finish(self.out_dir, self.utterances, self.report)
    }
}

/// FNV-1a, for file names only.
fn short_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", h >> 32)
}

type Synthesised = Result<(PathBuf, f64, u32), String>;

/// Makes (or finds, from an earlier run) one utterance's WAV. The outer error stops the build (I/O); the
/// inner one skips the utterance with a reason (the synthesiser refused it, or the audio is unusable).
fn synthesise(
    out_dir: &Path,
    voice: &Voice,
    text: &str,
    index: usize,
) -> Result<Synthesised, DataError> {
    let dir = out_dir.join("audio").join(&voice.speaker);
    let wav = dir.join(format!(
        "{index:05}-{}.wav",
        short_hash(&voice.fingerprint(text))
    ));
    if !wav.exists() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| DataError::Io(format!("{}: {e}", dir.display())))?;
        let tmp = wav.with_extension(format!("tmp{}.wav", std::process::id()));
        let output = voice.run(text, &tmp).map_err(|e| {
            DataError::Io(format!(
                "{}: {e} (install it: apt-get install {})",
                voice.engine.program(),
                voice.engine.packages()
            ))
        })?;
        if !output.status.success() || !tmp.exists() {
            let _ = std::fs::remove_file(&tmp);
            return Ok(Err(format!(
                "{} failed: {}",
                voice.engine.program(),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        if voice.effect != Effect::None {
            let mut audio = tinyalign_mel::read_audio_file(&tmp, tinyalign_mel::InputFormat::Wav)?;
            let seed = u64::from_str_radix(&short_hash(text), 16).unwrap_or(0);
            apply_effect(&mut audio.samples, audio.sample_rate, voice.effect, seed);
            write_wav_pcm16(&tmp, &audio.samples, audio.sample_rate)?;
        }
        std::fs::rename(&tmp, &wav)
            .map_err(|e| DataError::Io(format!("{}: {e}", wav.display())))?;
    }
    let (duration_s, sample_rate) = probe(&wav, tinyalign_mel::InputFormat::Wav)?;
    if !(0.3..=30.0).contains(&duration_s) {
        return Ok(Err(format!(
            "{duration_s:.2} s of audio (outside 0.3–30 s)"
        )));
    }
    Ok(Ok((wav, duration_s, sample_rate)))
}

fn write_wav_pcm16(path: &Path, samples: &[f32], sample_rate: u32) -> Result<(), DataError> {
    let io = |e: hound::Error| DataError::Io(format!("{}: {e}", path.display()));
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(io)?;
    for &s in samples {
        writer
            .write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16)
            .map_err(io)?;
    }
    writer.finalize().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voices::default_heldout_voices;

    #[test]
    fn the_wide_set_leaves_out_the_default_sets_heldout_voices_and_sentences() {
        let (voices, texts) = (default_heldout_voices(), default_heldout_texts());
        assert_eq!((voices.len(), texts.len()), (8, 144));
        let wide = synth_voices(3, usize::MAX, false, true);
        for held in &voices {
            assert!(
                wide.iter()
                    .all(|w| (w.engine, &w.name) != (held.engine, &held.name)),
                "{}",
                held.name
            );
        }
        // A WordNet folder whose every file holds the default set's held-out sentences as examples.
        let dir = std::env::temp_dir().join(format!("tinyalign-wide-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let examples: Vec<String> = texts
            .iter()
            .chain(["the team is a unit".to_string()].iter())
            .map(|t| format!("\"{}\"", t.trim_end_matches(['.', '?', '!'])))
            .collect();
        let line = format!(
            "00000001 03 n 01 x 0 000 | gloss; {}\n",
            examples.join("; ")
        );
        for name in ["data.noun", "data.verb", "data.adj", "data.adv"] {
            std::fs::write(dir.join(name), &line).unwrap();
        }
        let pool = text_pool(0, 3000, Some(&dir)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(pool.iter().any(|s| s.text == "The team is a unit."));
        assert!(pool.len() > 500);
        assert!(pool.iter().all(|s| !texts.contains(&s.text.to_lowercase())));
    }
}
