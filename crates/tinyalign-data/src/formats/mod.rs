//! Other toolkits' manifests, read into ours and written back: NeMo's JSON lines (`audio_filepath`,
//! `duration`, `text`), Hugging Face `audiofolder` metadata (`metadata.jsonl` or `metadata.csv` beside the
//! audio, keyed by `file_name`), and Kaldi/ESPnet data folders (`wav.scp`, `text`, optional `utt2spk`).
//! Whatever a record carries beyond the fields we map is kept in [`Utterance::extra`] and written back on
//! export, so another system's columns survive import → train → export. A record that also carries our own
//! fields (`id`, `split`, `task`, `tags`, `source`, `licence`: what our exports write) keeps them, so an
//! export re-imports to the same manifest.

mod audiofolder;
mod kaldi;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::import::probe;
use crate::{DataError, Manifest, Split, Task, Utterance, clean_text, relative_path};

pub use audiofolder::{export_audiofolder, import_audiofolder};
pub use kaldi::import_kaldi;

/// How one layout names the transcript and the speaker (first present wins).
struct Names {
    text: &'static [&'static str],
    speaker: &'static [&'static str],
}

/// What a record does not say itself.
struct Defaults<'a> {
    id: String,
    split: Split,
    /// `--speaker`: overrides the record's.
    speaker: Option<&'a str>,
    /// When neither `--speaker` nor the record names one.
    speaker_fallback: String,
    source: String,
}

/// One foreign record → an utterance whose audio is `audio` (resolved), path relative to `manifest_dir`.
fn from_record(
    mut record: Map<String, Value>,
    audio: &Path,
    names: &Names,
    defaults: Defaults,
    manifest_dir: &Path,
) -> Result<Utterance, String> {
    let text = take_first(&mut record, names.text, false)?
        .ok_or_else(|| format!("no transcript (a field named {})", names.text.join(" or ")))?;
    let named_speaker = take_first(&mut record, names.speaker, true)?;
    let speaker = defaults
        .speaker
        .map(str::to_owned)
        .or(named_speaker)
        .unwrap_or(defaults.speaker_fallback);
    let (duration_s, sample_rate) = probe(audio).map_err(|e| e.to_string())?;
    let audio = relative_path(audio, manifest_dir);
    let put = |record: &mut Map<String, Value>, key: &str, value: Value| {
        if record.get(key).is_none_or(Value::is_null) {
            record.insert(key.into(), value);
        }
    };
    // Corpora often number their records: an integer id is taken as its digits.
    if let Some(Value::Number(n)) = record.get("id") {
        let digits = n.to_string();
        record.insert("id".into(), digits.into());
    }
    put(&mut record, "id", defaults.id.into());
    put(&mut record, "split", defaults.split.name().into());
    put(&mut record, "task", Task::Transcribe.name().into());
    put(&mut record, "source", defaults.source.into());
    record.insert("audio".into(), audio.to_string_lossy().into_owned().into());
    record.insert("text".into(), clean_text(&text).into());
    record.insert("speaker".into(), speaker.into());
    record.insert("duration_s".into(), duration_s.into());
    record.insert("sample_rate".into(), sample_rate.into());
    Utterance::from_fields(record)
}

/// Removes the first of `names` present: a string, or with `numbers` a number written as one (speaker ids
/// often are; a transcript never is).
fn take_first(
    record: &mut Map<String, Value>,
    names: &[&str],
    numbers: bool,
) -> Result<Option<String>, String> {
    for name in names {
        match record.remove(*name) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => return Ok(Some(s)),
            Some(Value::Number(n)) if numbers => return Ok(Some(n.to_string())),
            Some(other) => return Err(format!("field `{name}` is {other}, not a string")),
        }
    }
    Ok(None)
}

/// `path` relative to `folder` unless absolute.
fn resolve(folder: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        folder.join(path)
    }
}

/// Ids from audio paths: the fewest trailing path parts (extension dropped, joined by `_`) that tell every
/// file apart: `a/spk1/001.wav`, `a/spk2/001.wav` → `spk1_001`, `spk2_001`; `../../mel/x.wav` alone → `x`.
fn ids_from_paths(paths: &[String]) -> Vec<String> {
    let parts: Vec<Vec<String>> = paths
        .iter()
        .map(|p| {
            Path::new(p)
                .with_extension("")
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let longest = parts.iter().map(Vec::len).max().unwrap_or(0);
    let with = |k: usize| -> Vec<String> {
        parts
            .iter()
            .map(|p| p[p.len().saturating_sub(k)..].join("_"))
            .collect()
    };
    (1..longest)
        .map(with)
        .find(|ids| ids.iter().collect::<std::collections::HashSet<_>>().len() == ids.len())
        .unwrap_or_else(|| with(longest))
}

fn parent_name(path: &Path) -> String {
    path.parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "speaker".into())
}

fn read(path: &Path) -> Result<String, DataError> {
    std::fs::read_to_string(path).map_err(|e| DataError::Io(format!("{}: {e}", path.display())))
}

fn at(path: &Path, line: usize) -> impl Fn(String) -> DataError + '_ {
    move |message| DataError::Line {
        file: path.display().to_string(),
        line,
        message,
    }
}

/// A NeMo manifest: one JSON object a line with `audio_filepath` (relative to the manifest's folder),
/// `duration` and `text`. Durations are measured from the audio; a record that is a segment of a longer
/// file (`offset` > 0 or a `duration` short of the file's) is refused by line, since an utterance here is
/// a whole file.
pub fn import_nemo(
    path: &Path,
    split: Split,
    speaker: Option<&str>,
    manifest_dir: &Path,
) -> Result<Vec<Utterance>, DataError> {
    let folder = path.parent().unwrap_or(Path::new("."));
    let source = format!("NeMo manifest {}", file_name(path));
    let mut records = Vec::new();
    for (i, line) in read(path)?.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = at(path, i + 1);
        let mut record: Map<String, Value> =
            serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
        let Some(Value::String(audio_path)) = record.remove("audio_filepath") else {
            return Err(at("no `audio_filepath` string".into()));
        };
        let offset = record.get("offset").and_then(Value::as_f64).unwrap_or(0.0);
        if offset > 0.0 {
            return Err(at(format!(
                "`offset` {offset} s: segments of a longer file are not read here; cut them into \
                 files first (e.g. `sox in.wav out.wav trim {offset} DURATION`)"
            )));
        }
        records.push((i + 1, record, audio_path));
    }
    let ids = ids_from_paths(&records.iter().map(|r| r.2.clone()).collect::<Vec<_>>());
    let mut out = Vec::new();
    for ((line, mut record, audio_path), id) in records.into_iter().zip(ids) {
        let at = at(path, line);
        let stated = record.remove("duration").and_then(|d| d.as_f64());
        let audio = resolve(folder, &audio_path);
        let defaults = Defaults {
            id,
            split,
            speaker,
            speaker_fallback: parent_name(&audio),
            source: source.clone(),
        };
        let u = from_record(record, &audio, &NEMO, defaults, manifest_dir).map_err(&at)?;
        if let Some(stated) = stated.filter(|d| *d < u.duration_s - 0.1) {
            return Err(at(format!(
                "`duration` {stated} s but {} is {:.2} s: segments of a longer file are not read here",
                audio.display(),
                u.duration_s
            )));
        }
        out.push(u);
    }
    non_empty(out, path)
}

fn non_empty(out: Vec<Utterance>, path: &Path) -> Result<Vec<Utterance>, DataError> {
    if out.is_empty() {
        return Err(DataError::Invalid(format!(
            "{}: no utterances",
            path.display()
        )));
    }
    Ok(out)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

const NEMO: Names = Names {
    text: &["text"],
    speaker: &["speaker", "speaker_id", "spk_id"],
};
/// Writes `manifest` as a NeMo manifest at `out`: `audio_filepath` relative to its folder, `duration`,
/// `text`, and every other field of ours and the extra ones under their names.
pub fn export_nemo(manifest: &Manifest, out: &Path) -> Result<(), DataError> {
    let folder = out.parent().unwrap_or(Path::new(""));
    let lines = manifest.utterances.iter().map(|u| {
        let mut record = fields_of(u);
        let audio = relative_path(&manifest.audio_path(u), folder);
        record.remove("audio");
        record.remove("duration_s");
        record.insert(
            "audio_filepath".into(),
            audio.to_string_lossy().into_owned().into(),
        );
        record.insert("duration".into(), u.duration_s.into());
        record
    });
    write_jsonl(out, lines)
}

fn fields_of(u: &Utterance) -> Map<String, Value> {
    match serde_json::to_value(u) {
        Ok(Value::Object(map)) => map,
        _ => unreachable!("an utterance serialises to an object"),
    }
}

fn write_jsonl(
    path: &Path,
    records: impl Iterator<Item = Map<String, Value>>,
) -> Result<(), DataError> {
    let mut text = String::new();
    for record in records {
        text.push_str(&Value::Object(record).to_string());
        text.push('\n');
    }
    crate::write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::ids_from_paths;

    #[test]
    fn ids_take_the_fewest_path_parts_that_tell_files_apart() {
        let ids = |paths: &[&str]| {
            ids_from_paths(&paths.iter().map(|p| p.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(ids(&["../../mel/x.wav", "/abs/y.flac"]), ["x", "y"]);
        assert_eq!(
            ids(&["a/spk1/001.wav", "a/spk2/001.wav", "b/spk1/002.wav"]),
            ["spk1_001", "spk2_001", "spk1_002"]
        );
        // Only the same file twice stays the same; the manifest then refuses the duplicate id.
        assert_eq!(ids(&["d/x.wav", "d/x.wav"]), ["d_x", "d_x"]);
    }
}
