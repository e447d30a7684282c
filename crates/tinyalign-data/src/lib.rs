//! Speech data for training and evaluation: one manifest format (JSON Lines, [`Manifest`]) that every tool
//! reads, importers for layouts users already have, the recipes that build manifests for the packaged real
//! speech, and statistics.

mod augment;
mod babble;
mod formats;
mod import;
mod kokoro;
mod llm_texts;
mod manifest;
mod recipes;
mod stats;
mod synth;
mod texts;
mod voices;
mod wordnet;

pub use augment::{
    AUGMENT_RATE, AugmentPolicy, Augmentation, Effect, NoiseColour, Reverb, apply_effect,
};
pub use babble::Babble;
pub use formats::{export_audiofolder, export_nemo, import_audiofolder, import_kaldi, import_nemo};
pub use import::{import_common_voice, import_librispeech, import_wav_txt};
pub use kokoro::{KOKORO_PIP, KOKORO_STYLES, KokoroOptions, kokoro_voice_count, kokoro_voices};
pub use llm_texts::{
    LlmSentence, TOPICS, check_sentence, read_llm_sentences, sentence_prompt, sentences_in,
};
pub use manifest::{KNOWN_FIELDS, Manifest, Split, Task, Utterance};
pub use recipes::{
    ASTERISK_SPEAKER, RecipeReport, SplitMix, build_asterisk, build_pocketsphinx, seeded_shuffle,
};
pub use stats::{ManifestStats, SplitStats};
pub use synth::{AtypicalOptions, SynthOptions, build_atypical, build_synth};
pub use texts::TextPool;
pub use voices::{Engine, Voice, atypical_voices, check_engine, synth_voices};
pub use wordnet::{
    WORDNET_CACHE_DIR, WORDNET_LICENCE, WORDNET_SOURCE, examples_in_data_file, wordnet_dir,
    wordnet_sentences,
};

use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{0}")]
    Io(String),
    #[error("{file}:{line}: {message}")]
    Line {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Audio(#[from] tinyalign_mel::AudioError),
}

/// Peak resident set size of this process in bytes (Linux `VmHWM`; None elsewhere).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Writes `bytes` to `path` so that no reader ever sees half a file: a temporary file beside it
/// (`.<name>.tmp<pid>`, never mistaken for a finished file), written, synced to disk, then renamed over
/// `path` (atomic on one file system). On failure the temporary file is removed and `path` is untouched.
/// The one writer every crate uses for checkpoints, manifests, projectors and cache entries; the sync costs
/// ~1 ms per file here (measured on 100 kB), against a cache entry that would otherwise survive a crash
/// empty.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    use std::io::Write;
    let io = |what: &str, p: &Path, e: std::io::Error| {
        DataError::Io(format!("{what} {}: {e}", p.display()))
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| DataError::Io(format!("{}: not a file path", path.display())))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
    }
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let write = || -> Result<(), DataError> {
        let mut file = std::fs::File::create(&tmp).map_err(|e| io("creating", &tmp, e))?;
        file.write_all(bytes).map_err(|e| io("writing", &tmp, e))?;
        file.sync_all().map_err(|e| io("syncing", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io("renaming into", path, e))
    };
    let result = write();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `target` as a path relative to folder `base` (both made absolute first), e.g. `../../audio/x.wav`.
pub fn relative_path(target: &Path, base: &Path) -> PathBuf {
    let absolute = |p: &Path| {
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        };
        // Lexical normalisation: the folders may not exist yet.
        let mut out = PathBuf::new();
        for c in p.components() {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::CurDir => {}
                other => out.push(other),
            }
        }
        out
    };
    let (target, base) = (absolute(target), absolute(base));
    let (t, b): (Vec<_>, Vec<_>) = (target.components().collect(), base.components().collect());
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

/// Collapses runs of whitespace and trims: transcripts are compared word by word later.
pub fn clean_text(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_nothing_on_failure() {
        let dir = std::env::temp_dir().join(format!("tinyalign-atomic-{}", std::process::id()));
        let path = dir.join("sub/x.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
        // A folder in the way: an error naming the path, and nothing left behind.
        let blocked = dir.join("sub/blocked");
        std::fs::create_dir_all(&blocked).unwrap();
        let message = write_atomic(&blocked, b"x").unwrap_err().to_string();
        assert!(message.contains("blocked"), "{message}");
        assert_eq!(std::fs::read_dir(dir.join("sub")).unwrap().count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative_path(Path::new("/a/b/c.wav"), Path::new("/a/d")),
            PathBuf::from("../b/c.wav")
        );
        assert_eq!(
            relative_path(Path::new("/a/b/c.wav"), Path::new("/a/b")),
            PathBuf::from("c.wav")
        );
        assert_eq!(
            relative_path(Path::new("/x/y.wav"), Path::new("/a/b/../c")),
            PathBuf::from("../../x/y.wav")
        );
    }
}
