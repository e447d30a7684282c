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
use std::process::Command;

use crate::recipes::{RecipeReport, SplitMix, finish, probe, seeded_shuffle};
use crate::texts::TextPool;
use crate::{DataError, Manifest, Split, Task, Utterance, relative_path};

const SOURCE: &str =
    "tinyalign synthetic speech (espeak-ng 1.51, flite 2.2), datasets/synth/templates.txt";
const LICENCE: &str =
    "MIT OR Apache-2.0 (texts); espeak-ng GPL-3.0 and flite BSD-like voices, output unrestricted";

/// espeak-ng's English accents (MODELS.md).
pub const ESPEAK_ACCENTS: [&str; 8] = [
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
];
/// Voice variants of the `synth` set; `atypical` uses others, so its users are unseen voices.
const ESPEAK_VARIANTS: [&str; 12] = [
    "f1", "f2", "f3", "f4", "f5", "m1", "m2", "m3", "m4", "m5", "m6", "m7",
];
const FLITE_VOICES: [&str; 5] = ["kal", "kal16", "awb", "rms", "slt"];
/// Festival voices (Debian `festvox-kallpc16k`, `festvox-kdlpc16k`, `festvox-us-slt-hts`); opt-in, because
/// festival is 20× slower than the others and adding voices reshuffles the seeded selection.
const FESTIVAL_VOICES: [&str; 3] = ["kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    EspeakNg,
    Flite,
    Festival,
}

impl Engine {
    pub fn program(self) -> &'static str {
        match self {
            Engine::EspeakNg => "espeak-ng",
            Engine::Flite => "flite",
            Engine::Festival => "text2wave",
        }
    }

    /// The Debian packages that provide it.
    pub fn packages(self) -> &'static str {
        match self {
            Engine::EspeakNg => "espeak-ng",
            Engine::Flite => "flite",
            Engine::Festival => "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts",
        }
    }
}

/// A signal-level change applied after synthesis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Effect {
    None,
    /// Band-pass 300–3400 Hz (two 2nd-order high-pass and two low-pass sections), like a phone line.
    Telephone,
    /// White Gaussian noise at this SNR (dB) against the speech's RMS.
    Noise {
        snr_db: f64,
    },
    /// Amplitude modulation: gain 1 − depth·(1 + sin 2πft)/2.
    Tremolo {
        hz: f64,
        depth: f64,
    },
}

impl Effect {
    fn tag(&self) -> String {
        match self {
            Effect::None => "effect=none".into(),
            Effect::Telephone => "effect=telephone-300-3400hz".into(),
            Effect::Noise { snr_db } => format!("effect=noise-snr-{snr_db}db"),
            Effect::Tremolo { hz, depth } => format!("effect=tremolo-{hz}hz-depth-{depth}"),
        }
    }
}

/// One synthetic speaker: a voice, its rate and pitch, and an effect.
#[derive(Debug, Clone, PartialEq)]
pub struct Voice {
    pub speaker: String,
    pub engine: Engine,
    /// espeak-ng `accent+variant`, or a flite voice name.
    pub name: String,
    /// Speaking rate relative to the engine's default (espeak-ng 175 words/min).
    pub rate: f64,
    /// espeak-ng pitch 0–99 (50 is the default); flite keeps its voice's own pitch.
    pub pitch: u32,
    pub effect: Effect,
}

impl Voice {
    /// Runs the synthesiser, writing `wav`. Festival reads the text from stdin; the others take it as an
    /// argument (no shell is involved either way).
    fn run(&self, text: &str, wav: &Path) -> std::io::Result<std::process::Output> {
        let mut cmd = self.command(text, wav);
        if self.engine != Engine::Festival {
            return cmd.output();
        }
        use std::io::Write;
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(text.as_bytes())?;
        let output = child.wait_with_output()?;
        // text2wave exits 0 on Scheme errors (an unknown voice): without its file the utterance counts as
        // failed, with the error as the reason.
        if String::from_utf8_lossy(&output.stderr).contains("SIOD ERROR") {
            let _ = std::fs::remove_file(wav);
        }
        Ok(output)
    }

    fn command(&self, text: &str, wav: &Path) -> Command {
        let mut cmd = Command::new(self.engine.program());
        match self.engine {
            Engine::EspeakNg => {
                let wpm = (175.0 * self.rate).round() as u32;
                cmd.args(["-v", &self.name, "-s", &wpm.to_string()])
                    .args(["-p", &self.pitch.to_string(), "-w"])
                    .arg(wav)
                    .arg(text);
            }
            Engine::Flite => {
                cmd.args(["-voice", &self.name, "--setf"])
                    .arg(format!("duration_stretch={:.3}", 1.0 / self.rate))
                    .arg("-t")
                    .arg(text)
                    .arg("-o")
                    .arg(wav);
            }
            Engine::Festival => {
                cmd.arg("-o")
                    .arg(wav)
                    .arg("-eval")
                    .arg(format!("(voice_{})", self.name))
                    .arg("-eval")
                    .arg(format!(
                        "(Parameter.set 'Duration_Stretch {:.3})",
                        1.0 / self.rate
                    ));
            }
        }
        cmd
    }

    fn tags(&self) -> Vec<String> {
        let mut tags = vec![
            self.engine.program().to_string(),
            format!("voice={}", self.name),
            format!("rate={:.2}", self.rate),
        ];
        if self.engine == Engine::EspeakNg {
            tags.push(format!("pitch={}", self.pitch));
        }
        if self.effect != Effect::None {
            tags.push(self.effect.tag());
        }
        tags
    }

    /// What makes this voice's audio for a text: part of the file name, so a changed recipe is re-made.
    fn fingerprint(&self, text: &str) -> String {
        format!("{:?}|{text}", self)
    }
}

/// Fails early, with the install command, when a synthesiser is missing.
pub fn check_engine(engine: Engine) -> Result<(), DataError> {
    let (program, flag) = match engine {
        Engine::EspeakNg => ("espeak-ng", "--version"),
        // flite's --version exits 1; listing its voices exits 0.
        Engine::Flite => ("flite", "-lv"),
        Engine::Festival => ("festival", "--version"),
    };
    match Command::new(program).arg(flag).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(DataError::Io(format!(
            "`{program} {flag}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
        Err(e) => Err(DataError::Io(format!(
            "{program} is not available ({e}): install it with `apt-get install {}` (`cargo xtask data` does this when it can)",
            engine.packages()
        ))),
    }
}

/// The `synth` speakers: every accent × variant of espeak-ng, the flite voices and, with `festival`, the
/// festival voices, shuffled by `seed`, the first `count` kept, each with a seeded rate (0.8–1.25×) and
/// pitch (25–75; espeak-ng only).
pub fn synth_voices(seed: u64, count: usize, festival: bool) -> Vec<Voice> {
    let mut pool: Vec<(Engine, String)> = ESPEAK_ACCENTS
        .iter()
        .flat_map(|a| {
            ESPEAK_VARIANTS
                .iter()
                .map(move |v| (Engine::EspeakNg, format!("{a}+{v}")))
        })
        .chain(FLITE_VOICES.iter().map(|v| (Engine::Flite, v.to_string())))
        .chain(
            FESTIVAL_VOICES
                .iter()
                .filter(|_| festival)
                .map(|v| (Engine::Festival, v.to_string())),
        )
        .collect();
    seeded_shuffle(&mut pool, seed);
    let mut rng = SplitMix::new(seed ^ 0x5EED_5EED);
    pool.into_iter()
        .take(count)
        .map(|(engine, name)| {
            let rate = 0.8 + 0.45 * rng.unit();
            let pitch = 25 + rng.below(51) as u32;
            let slug = match engine {
                Engine::EspeakNg => name.replace('+', "-"),
                Engine::Flite => format!("flite-{name}"),
                Engine::Festival => format!("festival-{}", name.replace('_', "-")),
            };
            Voice {
                speaker: format!("synth-{slug}"),
                engine,
                name,
                rate: (rate * 100.0).round() / 100.0,
                pitch,
                effect: Effect::None,
            }
        })
        .collect()
}

/// The `atypical` users: unseen espeak-ng voice variants pushed to extremes, and signal-level effects.
pub fn atypical_voices() -> Vec<Voice> {
    let voice = |speaker: &str, name: &str, rate: f64, pitch: u32, effect: Effect| Voice {
        speaker: format!("atypical-{speaker}"),
        engine: Engine::EspeakNg,
        name: name.into(),
        rate,
        pitch,
        effect,
    };
    vec![
        voice("slow-croaky", "en-us+croak", 0.55, 40, Effect::None),
        voice("fast-high", "en-gb+anika", 1.6, 95, Effect::None),
        voice("low-breathy", "en-us+whisperf", 0.9, 5, Effect::None),
        voice(
            "telephone",
            "en-gb-scotland+grandpa",
            1.0,
            45,
            Effect::Telephone,
        ),
        voice(
            "noisy",
            "en-029+iven3",
            1.0,
            55,
            Effect::Noise { snr_db: 5.0 },
        ),
        voice(
            "tremolo",
            "en-us-nyc+grandma",
            0.8,
            60,
            Effect::Tremolo {
                hz: 5.0,
                depth: 0.7,
            },
        ),
    ]
}

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
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            hours: 1.0,
            speakers: 48,
            valid_speakers: 4,
            test_speakers: 4,
            festival: false,
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
    } = options.clone();
    if !(hours > 0.0 && hours <= 1000.0) {
        return Err(DataError::Invalid(format!(
            "--hours {hours}: give a positive number of hours"
        )));
    }
    let max_speakers = ESPEAK_ACCENTS.len() * ESPEAK_VARIANTS.len()
        + FLITE_VOICES.len()
        + if festival { FESTIVAL_VOICES.len() } else { 0 };
    if speakers > max_speakers || valid_speakers + test_speakers >= speakers {
        return Err(DataError::Invalid(format!(
            "{speakers} speakers ({valid_speakers} valid, {test_speakers} test): need more speakers than valid + test, at most {max_speakers}"
        )));
    }
    let voices = synth_voices(seed, speakers, festival);
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
    let wanted_texts = ((target_s / 2.5) as usize).clamp(200, 40_000);
    let mut texts = TextPool::builtin().expand(seed, wanted_texts);
    seeded_shuffle(&mut texts, seed ^ 0x7E57);
    let held = (texts.len() / 10).max(1);
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
        let (task, text) = &pool[*cursor % pool.len()];
        *cursor += 1;
        made_s += sink.add("synth", voice, index, *task, text, split)?;
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
        let mut jobs = adapt_pool.iter().map(|item| (Split::Adapt, item));
        let mut held_jobs = held.iter().map(|item| (Split::Heldout, item));
        loop {
            let next = if adapt_s < options.adapt_seconds {
                jobs.next().or_else(|| held_jobs.next())
            } else {
                held_jobs.next()
            };
            let Some((split, (task, text))) = next else {
                break;
            };
            let seconds = sink.add("atypical", voice, index, *task, text, split)?;
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
        task: Task,
        text: &str,
        split: Split,
    ) -> Result<f64, DataError> {
        let id = format!("{set}/{}/{index:05}", voice.speaker);
        match synthesise(self.out_dir, voice, text, index)? {
            Ok((wav, duration_s, sample_rate)) => {
                self.utterances.push(Utterance {
                    id,
                    audio: relative_path(&wav, self.out_dir)
                        .to_string_lossy()
                        .into_owned(),
                    text: text.to_string(),
                    speaker: voice.speaker.clone(),
                    duration_s,
                    sample_rate,
                    split,
                    source: SOURCE.into(),
                    licence: LICENCE.into(),
                    task: Some(task),
                    tags: voice.tags(),
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

/// Applies `effect` in place to mono samples in [-1, 1]; the result is scaled back under full scale.
pub fn apply_effect(samples: &mut [f32], sample_rate: u32, effect: Effect, seed: u64) {
    let rate = f64::from(sample_rate);
    match effect {
        Effect::None => {}
        Effect::Telephone => {
            for _ in 0..2 {
                Biquad::high_pass(300.0, rate).run(samples);
                Biquad::low_pass(3400.0_f64.min(rate * 0.45), rate).run(samples);
            }
        }
        Effect::Noise { snr_db } => {
            let power = samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>()
                / samples.len().max(1) as f64;
            let sigma = (power / 10f64.powf(snr_db / 10.0)).sqrt();
            let mut rng = SplitMix::new(seed);
            for s in samples.iter_mut() {
                // Box–Muller.
                let (u1, u2) = (rng.unit().max(1e-12), rng.unit());
                let g = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                *s += (sigma * g) as f32;
            }
        }
        Effect::Tremolo { hz, depth } => {
            for (i, s) in samples.iter_mut().enumerate() {
                let phase = std::f64::consts::TAU * hz * i as f64 / rate;
                *s *= (1.0 - depth * (1.0 + phase.sin()) / 2.0) as f32;
            }
        }
    }
    let peak = samples.iter().fold(0f32, |m, &s| m.max(s.abs()));
    if peak > 0.99 {
        let scale = 0.99 / peak;
        samples.iter_mut().for_each(|s| *s *= scale);
    }
}

/// A 2nd-order section (RBJ audio-EQ cookbook, Q = 1/√2), direct form I.
struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
}

impl Biquad {
    fn design(cutoff_hz: f64, rate: f64, high: bool) -> Self {
        let w = std::f64::consts::TAU * cutoff_hz / rate;
        let alpha = w.sin() / std::f64::consts::SQRT_2;
        let c = w.cos();
        let a0 = 1.0 + alpha;
        let b = if high {
            [(1.0 + c) / 2.0, -(1.0 + c), (1.0 + c) / 2.0]
        } else {
            [(1.0 - c) / 2.0, 1.0 - c, (1.0 - c) / 2.0]
        };
        Self {
            b: b.map(|x| x / a0),
            a: [-2.0 * c / a0, (1.0 - alpha) / a0],
        }
    }

    fn high_pass(cutoff_hz: f64, rate: f64) -> Self {
        Self::design(cutoff_hz, rate, true)
    }

    fn low_pass(cutoff_hz: f64, rate: f64) -> Self {
        Self::design(cutoff_hz, rate, false)
    }

    fn run(&self, samples: &mut [f32]) {
        let (mut x1, mut x2, mut y1, mut y2) = (0.0, 0.0, 0.0, 0.0);
        for s in samples.iter_mut() {
            let x = f64::from(*s);
            let y =
                self.b[0] * x + self.b[1] * x1 + self.b[2] * x2 - self.a[0] * y1 - self.a[1] * y2;
            (x2, x1, y2, y1) = (x1, x, y1, y);
            *s = y as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f64, rate: u32, seconds: f64) -> Vec<f32> {
        (0..(f64::from(rate) * seconds) as usize)
            .map(|i| (0.5 * (std::f64::consts::TAU * hz * i as f64 / f64::from(rate)).sin()) as f32)
            .collect()
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    #[test]
    fn telephone_band_passes_speech_and_stops_the_rest() {
        let rate = 22_050;
        for (hz, kept) in [(1000.0, true), (60.0, false), (8000.0, false)] {
            let mut x = tone(hz, rate, 1.0);
            let before = rms(&x[rate as usize / 2..]);
            apply_effect(&mut x, rate, Effect::Telephone, 0);
            let gain = rms(&x[rate as usize / 2..]) / before;
            // Four 2nd-order sections: ~0.9 in the pass band, under 0.05 two octaves out.
            if kept {
                assert!(gain > 0.8, "{hz} Hz: gain {gain}");
            } else {
                assert!(gain < 0.05, "{hz} Hz: gain {gain}");
            }
        }
    }

    #[test]
    fn noise_has_the_requested_snr() {
        // Quiet enough that the final rescale under full scale does not kick in.
        let clean: Vec<f32> = tone(440.0, 16_000, 2.0).iter().map(|s| s * 0.2).collect();
        let mut noisy = clean.clone();
        apply_effect(&mut noisy, 16_000, Effect::Noise { snr_db: 5.0 }, 9);
        let noise: Vec<f32> = noisy.iter().zip(&clean).map(|(a, b)| a - b).collect();
        let snr = 20.0 * (rms(&clean) / rms(&noise)).log10();
        assert!((snr - 5.0).abs() < 0.2, "snr {snr}");
    }

    #[test]
    fn tremolo_modulates_the_envelope() {
        let mut x = vec![0.5f32; 16_000];
        apply_effect(
            &mut x,
            16_000,
            Effect::Tremolo {
                hz: 5.0,
                depth: 0.7,
            },
            0,
        );
        let (lo, hi) = x
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), &s| (l.min(s), h.max(s)));
        assert!(
            (hi - 0.5).abs() < 1e-3 && (lo - 0.15).abs() < 1e-3,
            "{lo}..{hi}"
        );
    }

    #[test]
    fn voices_are_seeded_and_distinct() {
        let a = synth_voices(1, 48, false);
        assert_eq!(a, synth_voices(1, 48, false));
        assert_ne!(a, synth_voices(2, 48, false));
        let mut names: Vec<_> = a.iter().map(|v| v.speaker.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 48);
        assert!(
            a.iter()
                .all(|v| (0.8..=1.25).contains(&v.rate) && (25..=75).contains(&v.pitch))
        );
        // The personal users are voices the synth set never uses.
        let every = synth_voices(0, 104, true);
        assert_eq!(every.len(), 104);
        assert!(every.iter().any(|v| v.engine == Engine::Festival));
        for user in atypical_voices() {
            assert!(every.iter().all(|v| v.name != user.name), "{}", user.name);
        }
    }
}
