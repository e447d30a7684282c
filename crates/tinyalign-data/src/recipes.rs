//! Manifests for the real speech `cargo xtask fetch` unpacks (../shared/MODELS.md has the packages):
//! - `asterisk`: one US-English speaker's telephone prompts (8 kHz). The default personal user: split
//!   into `adapt` and `heldout` by a seeded shuffle.
//! - `pocketsphinx`: the test recordings with human transcripts, all `test`.

use std::io::Read;
use std::path::Path;

use crate::{DataError, Manifest, Split, Task, Utterance, clean_text, relative_path};

pub const ASTERISK_SPEAKER: &str = "asterisk-allison";
const ASTERISK_SOUNDS: &str = "speech-asterisk/usr/share/asterisk/sounds/en_US_f_Allison";
const ASTERISK_TRANSCRIPTS: &str =
    "speech-asterisk/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz";
const POCKETSPHINX: &str = "speech-pocketsphinx/usr/share/pocketsphinx/test/data";

/// What a recipe kept and why it left the rest out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecipeReport {
    pub kept: usize,
    /// (id, reason) of every utterance left out.
    pub skipped: Vec<(String, String)>,
}

/// splitmix64: a tiny seeded generator whose output is the same on every machine (dataset splits, batch
/// order, synthetic voices).
#[derive(Debug, Clone)]
pub struct SplitMix {
    state: u64,
}

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (modulo bias is negligible for the small `n` used here). `n` must be > 0.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Fisher–Yates over [`SplitMix`]: the same order for the same seed on every machine.
pub fn seeded_shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = SplitMix::new(seed);
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

pub(crate) fn probe(
    path: &Path,
    format: tinyalign_mel::InputFormat,
) -> Result<(f64, u32), DataError> {
    let audio = tinyalign_mel::read_audio_file(path, format)?;
    Ok((audio.duration_s(), audio.sample_rate))
}

/// Builds the asterisk manifest into `out_dir/manifest.jsonl` from the `cache` folder: speech prompts up to
/// `max_seconds` long; `adapt_fraction` of them (seeded) for adaptation, the rest held out.
pub fn build_asterisk(
    cache: &Path,
    out_dir: &Path,
    seed: u64,
    adapt_fraction: f64,
    max_seconds: f64,
) -> Result<(Manifest, RecipeReport), DataError> {
    let gz_path = cache.join(ASTERISK_TRANSCRIPTS);
    let gz = std::fs::read(&gz_path).map_err(|e| {
        DataError::Io(format!(
            "{}: {e} (run `cargo xtask fetch`)",
            gz_path.display()
        ))
    })?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .map_err(|e| DataError::Io(format!("{}: {e}", gz_path.display())))?;
    let mut report = RecipeReport::default();
    let mut utterances = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with(';') && l.contains(": "))
    {
        let (key, words) = line.split_once(": ").expect("filtered on the separator");
        let (key, words) = (key.trim(), clean_text(words));
        if words.starts_with('[') {
            report
                .skipped
                .push((key.into(), "not speech (a tone marker)".into()));
            continue;
        }
        let wav = cache.join(ASTERISK_SOUNDS).join(format!("{key}.wav"));
        if !wav.exists() {
            report.skipped.push((key.into(), "no audio file".into()));
            continue;
        }
        let (duration_s, sample_rate) = probe(&wav, tinyalign_mel::InputFormat::Wav)?;
        if duration_s > max_seconds {
            report.skipped.push((
                key.into(),
                format!("{duration_s:.1} s, over {max_seconds} s"),
            ));
            continue;
        }
        utterances.push(Utterance {
            id: format!("asterisk/{key}"),
            audio: relative_path(&wav, out_dir).to_string_lossy().into_owned(),
            text: words,
            speaker: ASTERISK_SPEAKER.into(),
            duration_s,
            sample_rate,
            split: Split::Heldout,
            source: "Debian asterisk-core-sounds-en-wav 1.6.1-1".into(),
            licence: "CC-BY-SA-3.0".into(),
            task: Some(Task::Transcribe),
            tags: vec!["telephone-8k".into()],
            extra: Default::default(),
        });
    }
    utterances.sort_by(|a, b| a.id.cmp(&b.id));
    let mut order: Vec<usize> = (0..utterances.len()).collect();
    seeded_shuffle(&mut order, seed);
    let adapt = (utterances.len() as f64 * adapt_fraction).round() as usize;
    for &i in &order[..adapt] {
        utterances[i].split = Split::Adapt;
    }
    report.kept = utterances.len();
    finish(out_dir, utterances, report)
}

/// Builds the pocketsphinx manifest (`test` split) into `out_dir/manifest.jsonl`. `numbers.raw` and
/// `something.raw` have no transcript in the package and are left out.
pub fn build_pocketsphinx(
    cache: &Path,
    out_dir: &Path,
) -> Result<(Manifest, RecipeReport), DataError> {
    let data = cache.join(POCKETSPHINX);
    let mut utterances = Vec::new();
    let mut report = RecipeReport::default();
    // Sphinx transcription lines: `<s> words </s> (fileid)`.
    for (folder, file, speaker) in [
        ("librivox", "transcription", "librivox-reader"),
        ("cards", "cards.transcription", "cards-speaker"),
    ] {
        let path = data.join(folder).join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            DataError::Io(format!("{}: {e} (run `cargo xtask fetch`)", path.display()))
        })?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (words, id) = line
                .rsplit_once('(')
                .map(|(w, id)| {
                    (
                        w.replace("<s>", "").replace("</s>", ""),
                        id.trim_end_matches(')').trim(),
                    )
                })
                .ok_or_else(|| {
                    DataError::Invalid(format!(
                        "{}: `{line}` is not `<s> words </s> (id)`",
                        path.display()
                    ))
                })?;
            let wav = data.join(folder).join(format!("{id}.wav"));
            let (duration_s, sample_rate) = probe(&wav, tinyalign_mel::InputFormat::Wav)?;
            utterances.push(pocketsphinx_utterance(
                format!("{folder}/{id}"),
                &wav,
                &words,
                speaker,
                duration_s,
                sample_rate,
                out_dir,
            ));
        }
    }
    let raw = data.join("goforward.raw");
    let (duration_s, sample_rate) = probe(
        &raw,
        tinyalign_mel::InputFormat::RawPcm16 {
            sample_rate: 16_000,
        },
    )?;
    utterances.push(pocketsphinx_utterance(
        "goforward".into(),
        &raw,
        "go forward ten meters",
        "goforward-speaker",
        duration_s,
        sample_rate,
        out_dir,
    ));
    for name in ["numbers", "something"] {
        report
            .skipped
            .push((name.into(), "no transcript in the package".into()));
    }
    report.kept = utterances.len();
    finish(out_dir, utterances, report)
}

fn pocketsphinx_utterance(
    id: String,
    audio: &Path,
    words: &str,
    speaker: &str,
    duration_s: f64,
    sample_rate: u32,
    out_dir: &Path,
) -> Utterance {
    Utterance {
        id: format!("pocketsphinx/{id}"),
        audio: relative_path(audio, out_dir).to_string_lossy().into_owned(),
        text: clean_text(words),
        speaker: speaker.into(),
        duration_s,
        sample_rate,
        split: Split::Test,
        source: "Debian pocketsphinx-testdata 0.8+5prealpha+1-15".into(),
        licence: "BSD-2-Clause".into(),
        task: Some(Task::Transcribe),
        tags: Vec::new(),
        extra: Default::default(),
    }
}

pub(crate) fn finish(
    out_dir: &Path,
    utterances: Vec<Utterance>,
    report: RecipeReport,
) -> Result<(Manifest, RecipeReport), DataError> {
    let manifest = Manifest::new(out_dir, utterances);
    manifest.write(&out_dir.join("manifest.jsonl"))?;
    Ok((manifest, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let mut a: Vec<usize> = (0..50).collect();
        let mut b = a.clone();
        seeded_shuffle(&mut a, 7);
        seeded_shuffle(&mut b, 7);
        assert_eq!(a, b);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        let mut c: Vec<usize> = (0..50).collect();
        seeded_shuffle(&mut c, 8);
        assert_ne!(a, c);
    }
}
