//! Importers for layouts users already have. Each returns utterances with audio paths relative to the
//! folder the manifest will be written to; durations come from decoding the audio, so a broken file is
//! reported here, by name, rather than during training.

use std::path::{Path, PathBuf};

use crate::{DataError, Split, Task, Utterance, clean_text, relative_path};

/// Decodes `path` for its duration and rate; compressed formats we cannot decode get a conversion hint.
pub(crate) fn probe(path: &Path) -> Result<(f64, u32), DataError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if matches!(ext.as_str(), "flac" | "mp3" | "ogg" | "opus" | "m4a") {
        return Err(DataError::Invalid(format!(
            "{}: {ext} audio is not decoded here; convert to WAV first, e.g. \
             `ffmpeg -i in.{ext} -ar 16000 -ac 1 out.wav` (a same-name .wav next to it is picked up)",
            path.display()
        )));
    }
    let audio = tinyalign_mel::read_audio_file(path, tinyalign_mel::InputFormat::Wav)?;
    Ok((audio.duration_s(), audio.sample_rate))
}

/// The `.wav` next to `path` if there is one (converted copies of FLAC/MP3 corpora), else `path`.
fn prefer_wav(path: PathBuf) -> PathBuf {
    let wav = path.with_extension("wav");
    if wav.exists() { wav } else { path }
}

#[allow(clippy::too_many_arguments)]
fn utterance(
    id: String,
    audio: &Path,
    text: &str,
    speaker: String,
    split: Split,
    source: &str,
    licence: &str,
    manifest_dir: &Path,
) -> Result<Utterance, DataError> {
    let (duration_s, sample_rate) = probe(audio)?;
    Ok(Utterance {
        id,
        audio: relative_path(audio, manifest_dir)
            .to_string_lossy()
            .into_owned(),
        text: clean_text(text),
        speaker,
        duration_s,
        sample_rate,
        split,
        source: source.to_string(),
        licence: licence.to_string(),
        task: Some(Task::Transcribe),
        tags: Vec::new(),
        extra: Default::default(),
    })
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| DataError::Io(format!("{}: {e}", dir.display())))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// A folder (searched recursively) of `x.wav` files with same-name `x.txt` transcripts. The speaker is
/// `speaker`, or else the name of each file's folder.
pub fn import_wav_txt(
    dir: &Path,
    speaker: Option<&str>,
    split: Split,
    licence: &str,
    manifest_dir: &Path,
) -> Result<Vec<Utterance>, DataError> {
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    let mut out = Vec::new();
    for wav in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav")))
    {
        let txt = wav.with_extension("txt");
        let Ok(text) = std::fs::read_to_string(&txt) else {
            continue;
        };
        let folder = wav
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        let speaker = speaker
            .map(str::to_owned)
            .or(folder)
            .unwrap_or_else(|| "speaker".into());
        let id = relative_path(wav, dir)
            .with_extension("")
            .to_string_lossy()
            .replace(['/', '\\'], "_");
        if clean_text(&text).is_empty() {
            return Err(DataError::Invalid(format!(
                "{}: empty transcript",
                txt.display()
            )));
        }
        out.push(utterance(
            id,
            wav,
            &text,
            speaker,
            split,
            "wav+txt folder",
            licence,
            manifest_dir,
        )?);
    }
    if out.is_empty() {
        return Err(DataError::Invalid(format!(
            "{}: no .wav files with same-name .txt transcripts",
            dir.display()
        )));
    }
    Ok(out)
}

/// LibriSpeech layout: `SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt` with lines `ID TRANSCRIPT`, audio `ID.flac`
/// (or a converted `ID.wav`).
pub fn import_librispeech(
    dir: &Path,
    split: Split,
    manifest_dir: &Path,
) -> Result<Vec<Utterance>, DataError> {
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    let mut out = Vec::new();
    for trans in files
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".trans.txt"))
    {
        let text = std::fs::read_to_string(trans)
            .map_err(|e| DataError::Io(format!("{}: {e}", trans.display())))?;
        let folder = trans.parent().unwrap_or(dir);
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let Some((id, words)) = line.split_once(' ') else {
                return Err(DataError::Line {
                    file: trans.display().to_string(),
                    line: i + 1,
                    message: "expected `ID TRANSCRIPT`".into(),
                });
            };
            let speaker = id.split('-').next().unwrap_or(id).to_string();
            let audio = prefer_wav(folder.join(format!("{id}.flac")));
            let source = "LibriSpeech layout";
            out.push(utterance(
                id.to_string(),
                &audio,
                words,
                speaker,
                split,
                source,
                "CC-BY-4.0",
                manifest_dir,
            )?);
        }
    }
    if out.is_empty() {
        return Err(DataError::Invalid(format!(
            "{}: no *.trans.txt files",
            dir.display()
        )));
    }
    Ok(out)
}

/// Common Voice layout: a TSV with a header naming `client_id`, `path` and `sentence`, clips in `clips/`
/// next to it (MP3, or converted same-name `.wav`).
pub fn import_common_voice(
    tsv: &Path,
    split: Split,
    manifest_dir: &Path,
) -> Result<Vec<Utterance>, DataError> {
    let text = std::fs::read_to_string(tsv)
        .map_err(|e| DataError::Io(format!("{}: {e}", tsv.display())))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    let column = |name: &str| {
        header.iter().position(|h| *h == name).ok_or_else(|| {
            DataError::Invalid(format!(
                "{}: the header has no `{name}` column",
                tsv.display()
            ))
        })
    };
    let (client, path, sentence) = (column("client_id")?, column("path")?, column("sentence")?);
    let clips = tsv.parent().unwrap_or(Path::new(".")).join("clips");
    let mut out = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let get = |c: usize| {
            fields.get(c).copied().ok_or_else(|| DataError::Line {
                file: tsv.display().to_string(),
                line: i + 2,
                message: format!("{} fields, the header has {}", fields.len(), header.len()),
            })
        };
        let (speaker, clip, words) = (get(client)?, get(path)?, get(sentence)?);
        let audio = prefer_wav(clips.join(clip));
        let id = Path::new(clip)
            .with_extension("")
            .to_string_lossy()
            .into_owned();
        out.push(utterance(
            id,
            &audio,
            words,
            speaker.to_string(),
            split,
            "Common Voice layout",
            "CC0-1.0",
            manifest_dir,
        )?);
    }
    Ok(out)
}
