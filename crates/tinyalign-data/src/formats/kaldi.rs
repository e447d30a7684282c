//! Kaldi/ESPnet data folders (`wav.scp`, `text`, `utt2spk`).

use std::path::{Path, PathBuf};

use serde_json::Map;

use super::{Defaults, Names, at, file_name, from_record, non_empty, read, resolve};
use crate::{DataError, Split, Utterance};

const KALDI: Names = Names {
    text: &["text"],
    speaker: &["speaker"],
};
/// A Kaldi/ESPnet data folder: `wav.scp` (`ID PATH`), `text` (`ID TRANSCRIPT`) and, when present,
/// `utt2spk` (`ID SPEAKER`; without it each utterance is its own speaker, Kaldi's rule when speakers are
/// unknown, unless `--speaker` names one). A relative path is looked up beside `wav.scp`, then from the
/// current folder (where Kaldi recipes run). Piped commands, archive offsets and `segments` are refused
/// with what to do instead.
pub fn import_kaldi(
    dir: &Path,
    split: Split,
    speaker: Option<&str>,
    manifest_dir: &Path,
) -> Result<Vec<Utterance>, DataError> {
    if dir.join("segments").exists() {
        return Err(DataError::Invalid(format!(
            "{}: segments of longer recordings are not read here; cut them into files first (Kaldi's \
             `extract-segments`, or sox), then write a wav.scp without `segments`",
            dir.join("segments").display()
        )));
    }
    let table = |name: &str, required: bool| -> Result<Vec<(usize, String, String)>, DataError> {
        let path = dir.join(name);
        if !required && !path.exists() {
            return Ok(Vec::new());
        }
        let mut rows = Vec::new();
        for (i, line) in read(&path)?.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (id, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            rows.push((i + 1, id.to_string(), rest.trim().to_string()));
        }
        Ok(rows)
    };
    let scp = dir.join("wav.scp");
    let mut audio = std::collections::HashMap::new();
    for (line, id, path) in table("wav.scp", true)? {
        let at = at(&scp, line);
        if path.ends_with('|') {
            return Err(at(format!(
                "`{id}` is a command (`{path}`); run it into a WAV file and list that file"
            )));
        }
        if path.is_empty()
            || path.ends_with(".ark")
            || path
                .rsplit_once(':')
                .is_some_and(|(_, n)| n.parse::<u64>().is_ok())
        {
            return Err(at(format!(
                "`{id}`: `{path}` is not a WAV file path (archives are not read here)"
            )));
        }
        let beside = resolve(dir, &path);
        let found = [beside.clone(), PathBuf::from(&path)]
            .into_iter()
            .find(|p| p.exists())
            .ok_or_else(|| {
                at(format!(
                    "`{id}`: {path} is neither beside wav.scp ({}) nor under the current folder",
                    beside.display()
                ))
            })?;
        audio.insert(id, found);
    }
    let speakers: std::collections::HashMap<String, String> = table("utt2spk", false)?
        .into_iter()
        .map(|(_, id, spk)| (id, spk))
        .collect();
    let text_path = dir.join("text");
    let mut out = Vec::new();
    for (line, id, words) in table("text", true)? {
        let at = at(&text_path, line);
        let Some(path) = audio.get(&id) else {
            return Err(at(format!("`{id}` has no line in wav.scp")));
        };
        let mut record = Map::new();
        record.insert("text".into(), words.into());
        if let Some(spk) = speakers.get(&id) {
            record.insert("speaker".into(), spk.clone().into());
        }
        let defaults = Defaults {
            id: id.clone(),
            split,
            speaker,
            speaker_fallback: id.clone(),
            source: format!("Kaldi data folder {}", file_name(dir)),
        };
        out.push(from_record(record, path, &KALDI, defaults, manifest_dir).map_err(at)?);
    }
    non_empty(out, &text_path)
}
