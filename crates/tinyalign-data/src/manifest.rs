//! The manifest: JSON Lines, one utterance per line, audio paths relative to the manifest's folder.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::DataError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Valid,
    Test,
    /// A personal user's utterances for adaptation.
    Adapt,
    /// The same user's utterances kept out of adaptation, for the before/after comparison.
    Heldout,
}

impl Split {
    pub const ALL: [Split; 5] = [
        Split::Train,
        Split::Valid,
        Split::Test,
        Split::Adapt,
        Split::Heldout,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
            Split::Adapt => "adapt",
            Split::Heldout => "heldout",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Split {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        Split::ALL
            .into_iter()
            .find(|split| split.name() == s)
            .ok_or_else(|| {
                DataError::Invalid(format!(
                    "unknown split `{s}` (train, valid, test, adapt, heldout)"
                ))
            })
    }
}

/// What the utterance asks of the LLM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Repeat what was said (scored by WER).
    Transcribe,
    /// Answer the spoken request (scored against the LLM's answer to the text).
    Respond,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::Transcribe => "transcribe",
            Task::Respond => "respond",
        }
    }
}

impl std::str::FromStr for Task {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, DataError> {
        match s {
            "transcribe" => Ok(Task::Transcribe),
            "respond" => Ok(Task::Respond),
            _ => Err(DataError::Invalid(format!(
                "unknown task `{s}` (transcribe, respond)"
            ))),
        }
    }
}

/// One line of a manifest. Read through [`Utterance::from_fields`], so a wrong type names its field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub struct Utterance {
    pub id: String,
    /// Relative to the manifest's folder (or absolute).
    pub audio: String,
    pub text: String,
    pub speaker: String,
    pub duration_s: f64,
    pub sample_rate: u32,
    pub split: Split,
    /// Where the speech came from; empty when the manifest does not say.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Its licence; empty when the manifest does not say.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub licence: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Fields this tool does not read (another system's transcript, NeMo's `offset`, a corpus's own ids):
    /// kept with their values and written back after the known ones (in name order). `Manifest::read_strict`
    /// refuses them.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The names [`Utterance`] reads; every other field of a line goes to `extra`.
pub const KNOWN_FIELDS: [&str; 11] = [
    "id",
    "audio",
    "text",
    "speaker",
    "duration_s",
    "sample_rate",
    "split",
    "source",
    "licence",
    "task",
    "tags",
];

impl TryFrom<Map<String, Value>> for Utterance {
    type Error = String;
    fn try_from(fields: Map<String, Value>) -> Result<Self, String> {
        Utterance::from_fields(fields)
    }
}

impl Utterance {
    /// Takes the known fields out of one JSON object (the rest become `extra`). A missing required field,
    /// or a wrong type in any known one, is an error naming the field; `null` counts as missing.
    pub fn from_fields(mut fields: Map<String, Value>) -> Result<Self, String> {
        fn take<T: DeserializeOwned>(
            fields: &mut Map<String, Value>,
            name: &str,
        ) -> Result<Option<T>, String> {
            match fields.remove(name) {
                None | Some(Value::Null) => Ok(None),
                Some(value) => serde_json::from_value(value)
                    .map(Some)
                    .map_err(|e| format!("field `{name}`: {e}")),
            }
        }
        fn required<T: DeserializeOwned>(
            fields: &mut Map<String, Value>,
            name: &str,
        ) -> Result<T, String> {
            take(fields, name)?.ok_or_else(|| format!("missing field `{name}`"))
        }
        Ok(Utterance {
            id: required(&mut fields, "id")?,
            audio: required(&mut fields, "audio")?,
            text: required(&mut fields, "text")?,
            speaker: required(&mut fields, "speaker")?,
            duration_s: required(&mut fields, "duration_s")?,
            sample_rate: required(&mut fields, "sample_rate")?,
            split: required(&mut fields, "split")?,
            source: take(&mut fields, "source")?.unwrap_or_default(),
            licence: take(&mut fields, "licence")?.unwrap_or_default(),
            task: take(&mut fields, "task")?,
            tags: take(&mut fields, "tags")?.unwrap_or_default(),
            extra: fields,
        })
    }

    /// How to decode the audio: headerless PCM16 for `.raw`/`.pcm` files (at `sample_rate`), WAV otherwise.
    pub fn input_format(&self) -> tinyalign_mel::InputFormat {
        let lower = self.audio.to_ascii_lowercase();
        if lower.ends_with(".raw") || lower.ends_with(".pcm") {
            tinyalign_mel::InputFormat::RawPcm16 {
                sample_rate: self.sample_rate,
            }
        } else {
            tinyalign_mel::InputFormat::Wav
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.id.trim().is_empty() {
            return Err("empty `id`".into());
        }
        if self.text.trim().is_empty() {
            return Err(format!("utterance `{}` has an empty transcript", self.id));
        }
        if self.speaker.trim().is_empty() {
            return Err(format!("utterance `{}` has no speaker", self.id));
        }
        if self.audio.trim().is_empty() {
            return Err(format!("utterance `{}` has no audio path", self.id));
        }
        if !(self.duration_s.is_finite() && self.duration_s > 0.0) {
            return Err(format!(
                "utterance `{}` has duration {} s",
                self.id, self.duration_s
            ));
        }
        if !(1_000..=384_000).contains(&self.sample_rate) {
            return Err(format!(
                "utterance `{}` has sample rate {} Hz",
                self.id, self.sample_rate
            ));
        }
        Ok(())
    }
}

/// Evaluation protocol: no speaker is in two of `train`, `valid`, `test` (a personal user's own audio goes
/// to `adapt` / `heldout` instead).
fn check_speaker_disjoint(utterances: &[Utterance]) -> Result<(), String> {
    let mut first_split: std::collections::HashMap<&str, (Split, &str)> = Default::default();
    for u in utterances {
        if !matches!(u.split, Split::Train | Split::Valid | Split::Test) {
            continue;
        }
        let (split, id) = *first_split.entry(&u.speaker).or_insert((u.split, &u.id));
        if split != u.split {
            return Err(format!(
                "speaker `{}` is in both `{}` ({id}) and `{}` ({}): splits must be speaker-disjoint (use `adapt`/`heldout` for one speaker's own data)",
                u.speaker,
                split.name(),
                u.split.name(),
                u.id
            ));
        }
    }
    Ok(())
}

/// A manifest read from disk: its utterances and the folder their audio paths are relative to.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    pub base_dir: PathBuf,
    pub utterances: Vec<Utterance>,
}

impl Manifest {
    pub fn new(base_dir: impl Into<PathBuf>, utterances: Vec<Utterance>) -> Self {
        Self {
            base_dir: base_dir.into(),
            utterances,
        }
    }

    /// Reads and validates a manifest; an error names the file and the line.
    pub fn read(path: &Path) -> Result<Self, DataError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DataError::Io(format!("{}: {e}", path.display())))?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, base_dir, &path.display().to_string())
    }

    pub fn parse(text: &str, base_dir: PathBuf, name: &str) -> Result<Self, DataError> {
        let mut utterances = Vec::new();
        let mut ids = HashSet::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = |message: String| DataError::Line {
                file: name.to_string(),
                line: i + 1,
                message,
            };
            let fields: Map<String, Value> =
                serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
            let u = Utterance::from_fields(fields).map_err(at)?;
            u.check().map_err(at)?;
            if !ids.insert(u.id.clone()) {
                return Err(at(format!("duplicate id `{}`", u.id)));
            }
            utterances.push(u);
        }
        if utterances.is_empty() {
            return Err(DataError::Invalid(format!("{name}: no utterances")));
        }
        check_speaker_disjoint(&utterances)
            .map_err(|m| DataError::Invalid(format!("{name}: {m}")))?;
        Ok(Self {
            base_dir,
            utterances,
        })
    }

    /// Like [`Manifest::read`], and also refuses fields this tool does not read (a misspelt `speakr` would
    /// otherwise be kept quietly as an extra field); the error names the file, the line's id and the fields.
    pub fn read_strict(path: &Path) -> Result<Self, DataError> {
        let manifest = Self::read(path)?;
        if let Some(u) = manifest.utterances.iter().find(|u| !u.extra.is_empty()) {
            let names: Vec<&str> = u.extra.keys().map(String::as_str).collect();
            return Err(DataError::Invalid(format!(
                "{}: utterance `{}` has fields this tool does not read: {} (known: {}); without \
                 --strict they are kept and written back unchanged",
                path.display(),
                u.id,
                names.join(", "),
                KNOWN_FIELDS.join(", ")
            )));
        }
        Ok(manifest)
    }

    /// The manifest as JSON Lines.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for u in &self.utterances {
            out.push_str(&serde_json::to_string(u).expect("utterances serialise"));
            out.push('\n');
        }
        out
    }

    /// Writes the manifest atomically (temp file, then rename).
    pub fn write(&self, path: &Path) -> Result<(), DataError> {
        crate::write_atomic(path, self.to_jsonl().as_bytes())
    }

    pub fn audio_path(&self, u: &Utterance) -> PathBuf {
        self.base_dir.join(&u.audio)
    }

    pub fn split(&self, split: Split) -> impl Iterator<Item = &Utterance> {
        self.utterances.iter().filter(move |u| u.split == split)
    }

    /// The utterances of any of `splits`, in id order: the one order every tool takes a "first N" from, so
    /// training, evaluation and checks pick the same utterances whatever the file's line order.
    pub fn in_splits(&self, splits: &[Split]) -> Vec<&Utterance> {
        let mut picked: Vec<&Utterance> = self
            .utterances
            .iter()
            .filter(|u| splits.contains(&u.split))
            .collect();
        picked.sort_by(|a, b| a.id.cmp(&b.id));
        picked
    }

    /// Utterances whose audio file is missing, as (id, path).
    pub fn missing_audio(&self) -> Vec<(String, PathBuf)> {
        self.utterances
            .iter()
            .map(|u| (u.id.clone(), self.audio_path(u)))
            .filter(|(_, p)| !p.exists())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, text: &str) -> String {
        format!(
            r#"{{"id":"{id}","audio":"a/{id}.wav","text":"{text}","speaker":"s1","duration_s":1.5,"sample_rate":16000,"split":"train","source":"test","licence":"CC0","task":"transcribe","tags":["x"]}}"#
        )
    }

    #[test]
    fn round_trips_and_reports_bad_lines_by_number() {
        let text = format!("{}\n\n{}\n", line("a", "hello"), line("b", "world"));
        let m = Manifest::parse(&text, "/data".into(), "m.jsonl").unwrap();
        assert_eq!(m.utterances.len(), 2);
        assert_eq!(
            m.audio_path(&m.utterances[1]),
            PathBuf::from("/data/a/b.wav")
        );
        assert_eq!(
            Manifest::parse(&m.to_jsonl(), "/data".into(), "again").unwrap(),
            m
        );

        let cases = [
            (
                format!("{}\n{}", line("a", "x"), line("a", "y")),
                2,
                "duplicate id",
            ),
            (
                format!("{}\n{}", line("a", "x"), line("b", " ")),
                2,
                "empty transcript",
            ),
            (format!("{}\nnot json", line("a", "x")), 2, "expected"),
            (
                line("a", "x").replace("\"train\"", "\"dev\""),
                1,
                "unknown variant",
            ),
            (line("a", "x").replace("1.5", "0"), 1, "duration"),
            (
                line("a", "x").replace("1.5", "\"1.5\""),
                1,
                "field `duration_s`: invalid type: string",
            ),
            (
                line("a", "x").replace("\"speaker\"", "\"speakr\""),
                1,
                "missing field `speaker`",
            ),
            (line("a", "x").replace("\"s1\"", "null"), 1, "missing field"),
            ("[1, 2]".to_string(), 1, "expected a map"),
        ];
        for (text, want_line, want) in cases {
            let err = Manifest::parse(&text, "/".into(), "m.jsonl").unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, DataError::Line { line, .. } if line == want_line),
                "{message}"
            );
            assert!(
                message.contains(want) && message.contains("m.jsonl"),
                "{message}"
            );
        }
        assert!(Manifest::parse("\n", "/".into(), "empty").is_err());
    }

    #[test]
    fn unknown_fields_are_kept_and_source_and_licence_are_optional() {
        let extra = line("a", "x").replace(
            "\"tags\":[\"x\"]",
            "\"tags\":[\"x\"],\"pred_text\":\"eks\",\"nemo\":{\"offset\":0.0,\"lang\":[\"en\"]}",
        );
        let bare = line("b", "y")
            .replace(",\"source\":\"test\"", "")
            .replace(",\"licence\":\"CC0\"", "");
        let m = Manifest::parse(&format!("{extra}\n{bare}"), "/".into(), "m").unwrap();
        let (a, b) = (&m.utterances[0], &m.utterances[1]);
        assert_eq!(a.extra["pred_text"], "eks");
        assert_eq!(a.extra["nemo"]["lang"][0], "en");
        assert_eq!((b.source.as_str(), b.licence.as_str()), ("", ""));
        // Written back with every value as it was read, and the absent source/licence stay absent.
        let written = m.to_jsonl();
        let lines: Vec<&str> = written.lines().collect();
        let reread: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(reread, serde_json::from_str::<Value>(&extra).unwrap());
        assert!(!lines[1].contains("source") && !lines[1].contains("licence"));
        assert_eq!(Manifest::parse(&written, "/".into(), "again").unwrap(), m);

        let dir = std::env::temp_dir().join(format!("tinyalign-strict-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.jsonl");
        std::fs::write(&path, &written).unwrap();
        let err = Manifest::read_strict(&path).unwrap_err().to_string();
        assert!(
            err.contains("m.jsonl") && err.contains("`a`") && err.contains("nemo, pred_text"),
            "{err}"
        );
        std::fs::write(&path, format!("{bare}\n")).unwrap();
        assert!(Manifest::read_strict(&path).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_speaker_in_two_evaluation_splits_is_refused() {
        let test_line = line("b", "y").replace("\"train\"", "\"test\"");
        let err = Manifest::parse(&format!("{}\n{test_line}", line("a", "x")), "/".into(), "m")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("speaker `s1` is in both `train` (a) and `test` (b)"),
            "{err}"
        );
        // One speaker's own adapt/heldout parts are the personalisation protocol, not a leak.
        let adapt = line("a", "x").replace("\"train\"", "\"adapt\"");
        let heldout = line("b", "y").replace("\"train\"", "\"heldout\"");
        assert!(Manifest::parse(&format!("{adapt}\n{heldout}"), "/".into(), "m").is_ok());
    }
}
