//! Hugging Face `audiofolder` metadata (`metadata.jsonl` / `metadata.csv`, keyed by `file_name`).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{
    Defaults, Names, at, fields_of, from_record, ids_from_paths, non_empty, parent_name, read,
    write_jsonl,
};
use crate::{DataError, Manifest, Split, Utterance, relative_path};

const AUDIOFOLDER: Names = Names {
    text: &["transcription", "text", "sentence", "transcript"],
    speaker: &["speaker_id", "speaker", "client_id"],
};

/// A Hugging Face `audiofolder`: `metadata.jsonl` or `metadata.csv` in `dir` (all its records go to
/// `split`), or else in split folders under it (`train`, `validation`/`valid`/`dev`, `test`). `file_name`
/// is the audio's path relative to the metadata file; the transcript is `transcription`, `text`,
/// `sentence` or `transcript`, the speaker `speaker_id`, `speaker` or `client_id` (else the audio's
/// folder name).
pub fn import_audiofolder(
    dir: &Path,
    split: Split,
    speaker: Option<&str>,
    manifest_dir: &Path,
) -> Result<Vec<Utterance>, DataError> {
    // (folder, its metadata file, split, id prefix)
    let mut parts: Vec<(PathBuf, PathBuf, Split, &str)> = Vec::new();
    if let Some(metadata) = metadata_file(dir) {
        parts.push((dir.to_path_buf(), metadata, split, ""));
    } else {
        for (folder, split) in [
            ("train", Split::Train),
            ("validation", Split::Valid),
            ("valid", Split::Valid),
            ("dev", Split::Valid),
            ("test", Split::Test),
        ] {
            if let Some(metadata) = metadata_file(&dir.join(folder)) {
                parts.push((dir.join(folder), metadata, split, folder));
            }
        }
    }
    if parts.is_empty() {
        return Err(DataError::Invalid(format!(
            "{}: no metadata.jsonl or metadata.csv, in it or in train/, validation/ or test/ under it",
            dir.display()
        )));
    }
    let mut records = Vec::new();
    for (folder, metadata, split, prefix) in parts {
        for (line, mut record) in metadata_records(&metadata)? {
            let Some(Value::String(name)) = record.remove("file_name") else {
                return Err(at(&metadata, line)("no `file_name`".into()));
            };
            let key = Path::new(prefix).join(&name).to_string_lossy().into_owned();
            records.push((
                metadata.clone(),
                line,
                record,
                folder.join(&name),
                key,
                split,
            ));
        }
    }
    let ids = ids_from_paths(&records.iter().map(|r| r.4.clone()).collect::<Vec<_>>());
    let mut out = Vec::new();
    for ((metadata, line, record, audio, _, split), id) in records.into_iter().zip(ids) {
        let defaults = Defaults {
            id,
            split,
            speaker,
            speaker_fallback: parent_name(&audio),
            source: format!("audiofolder {}", relative_path(&metadata, dir).display()),
        };
        let u = from_record(record, &audio, &AUDIOFOLDER, defaults, manifest_dir);
        out.push(u.map_err(at(&metadata, line))?);
    }
    non_empty(out, dir)
}

fn metadata_file(folder: &Path) -> Option<PathBuf> {
    ["metadata.jsonl", "metadata.csv"]
        .map(|name| folder.join(name))
        .into_iter()
        .find(|p| p.is_file())
}

/// A record (one JSON object) with the line it starts on.
type Record = (usize, Map<String, Value>);
/// A CSV row with the line it starts on.
type Row = (usize, Vec<String>);

/// The records of a metadata file with the line each starts on (CSV values are strings).
fn metadata_records(path: &Path) -> Result<Vec<Record>, DataError> {
    let text = read(path)?;
    if path.extension().is_some_and(|e| e == "jsonl") {
        let mut records = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if !line.trim().is_empty() {
                let record =
                    serde_json::from_str(line).map_err(|e| at(path, i + 1)(e.to_string()))?;
                records.push((i + 1, record));
            }
        }
        return Ok(records);
    }
    let rows = parse_csv(&text).map_err(|(line, m)| at(path, line)(m))?;
    let Some(((_, header), rows)) = rows.split_first() else {
        return Ok(Vec::new());
    };
    rows.iter()
        .map(|(line, row)| {
            if row.len() != header.len() {
                return Err(at(path, *line)(format!(
                    "{} fields, the header has {}",
                    row.len(),
                    header.len()
                )));
            }
            let record = header
                .iter()
                .zip(row)
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            Ok((*line, record))
        })
        .collect()
}

/// RFC 4180 CSV (quoted fields may hold commas, doubled quotes and newlines), rows with the line they
/// start on; blank lines are skipped, a leading byte-order mark dropped.
fn parse_csv(text: &str) -> Result<Vec<Row>, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut line, mut row_line, mut quoted, mut was_quoted) = (1, 1, false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                line += usize::from(c == '\n');
                field.push(c);
            }
            (false, '"') if field.is_empty() && !was_quoted => (quoted, was_quoted) = (true, true),
            (false, '"') => return Err((line, "a quote inside an unquoted field".into())),
            (false, ',') => {
                row.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                if !(row.is_empty() && field.is_empty() && !was_quoted) {
                    row.push(std::mem::take(&mut field));
                    rows.push((row_line, std::mem::take(&mut row)));
                }
                was_quoted = false;
                line += 1;
                row_line = line;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err((row_line, "a quoted field is never closed".into()));
    }
    if !(row.is_empty() && field.is_empty() && !was_quoted) {
        row.push(field);
        rows.push((row_line, row));
    }
    Ok(rows)
}

/// Writes `manifest` as a Hugging Face `audiofolder` metadata file, `dir/metadata.jsonl`: `file_name`,
/// `transcription`, `speaker_id` and every other field. `file_name` must stay inside `dir` (the
/// `datasets` loader matches files it finds there), so audio elsewhere is refused unless `copy_audio`,
/// which copies it to `dir/audio/` first.
pub fn export_audiofolder(
    manifest: &Manifest,
    dir: &Path,
    copy_audio: bool,
) -> Result<(), DataError> {
    let mut records = Vec::new();
    for u in &manifest.utterances {
        let audio = manifest.audio_path(u);
        let mut name = relative_path(&audio, dir);
        if name.starts_with("..") {
            if !copy_audio {
                return Err(DataError::Invalid(format!(
                    "{}: {} is outside {}; export into a folder that holds the audio, or pass \
                     --copy-audio",
                    u.id,
                    audio.display(),
                    dir.display()
                )));
            }
            let extension = audio.extension().map(|e| e.to_string_lossy().into_owned());
            name = PathBuf::from("audio").join(format!(
                "{}.{}",
                u.id.replace(['/', '\\'], "_"),
                extension.unwrap_or_else(|| "wav".into())
            ));
            let copy = dir.join(&name);
            let bytes = std::fs::read(&audio)
                .map_err(|e| DataError::Io(format!("{}: {e}", audio.display())))?;
            crate::write_atomic(&copy, &bytes)?;
        }
        let mut record = fields_of(u);
        for key in ["audio", "text", "speaker"] {
            record.remove(key);
        }
        record.insert(
            "file_name".into(),
            name.to_string_lossy().into_owned().into(),
        );
        record.insert("transcription".into(), u.text.clone().into());
        record.insert("speaker_id".into(), u.speaker.clone().into());
        records.push(record);
    }
    write_jsonl(&dir.join("metadata.jsonl"), records.into_iter())
}

#[cfg(test)]
mod tests {
    use super::parse_csv;

    #[test]
    fn csv_fields_may_quote_commas_quotes_and_newlines() {
        let rows =
            parse_csv("\u{feff}file_name,text\r\na.wav,\"Hello, \"\"you\"\"\nthere\"\n\nb.wav,\n")
                .unwrap();
        let fields: Vec<Vec<&str>> = rows
            .iter()
            .map(|(_, r)| r.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(
            fields,
            [
                vec!["file_name", "text"],
                vec!["a.wav", "Hello, \"you\"\nthere"],
                vec!["b.wav", ""]
            ]
        );
        assert_eq!(rows.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [1, 2, 5]);
        assert_eq!(parse_csv("a,\"b\n").unwrap_err().0, 1);
        assert!(parse_csv("a,b\"c\n").unwrap_err().1.contains("quote"));
    }
}
