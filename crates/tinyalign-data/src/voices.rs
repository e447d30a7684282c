//! The synthetic voices: espeak-ng's accents × variants, flite's and festival's voices, each with a seeded
//! rate and pitch (`synth`), and the `atypical` users' voices pushed to extremes, which `synth` never uses.

use std::path::Path;
use std::process::Command;

use crate::augment::Effect;
use crate::kokoro::{kokoro_voice_count, kokoro_voices};
use crate::recipes::{SplitMix, seeded_shuffle};
use crate::{DataError, SynthOptions};

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
/// With `every_variant`: the rest of espeak-ng 1.51's variants (`espeak-ng --voices=variant`), less the six
/// the `atypical` users speak with, `Mr serious` (a space in its name), and three that sound exactly like
/// another (`fast` is the default voice once the rate is set; `klatt` and `klatt6` are `caleb`).
const MORE_ESPEAK_VARIANTS: [&str; 79] = [
    "Alex",
    "Alicia",
    "Andrea",
    "Andy",
    "Annie",
    "AnxiousAndy",
    "Demonic",
    "Denis",
    "Diogo",
    "Gene",
    "Gene2",
    "Henrique",
    "Hugo",
    "Jacky",
    "Lee",
    "Marco",
    "Mario",
    "Michael",
    "Mike",
    "Nguyen",
    "RicishayMax",
    "RicishayMax2",
    "RicishayMax3",
    "Storm",
    "Tweaky",
    "UniRobot",
    "adam",
    "anikaRobot",
    "announcer",
    "antonio",
    "aunty",
    "belinda",
    "benjamin",
    "boris",
    "caleb",
    "david",
    "ed",
    "edward",
    "edward2",
    "gustave",
    "iven",
    "iven2",
    "iven4",
    "john",
    "kaukovalta",
    "klatt2",
    "klatt3",
    "klatt4",
    "klatt5",
    "linda",
    "m8",
    "marcelo",
    "max",
    "michel",
    "miguel",
    "norbert",
    "pablo",
    "paul",
    "pedro",
    "quincy",
    "rob",
    "robert",
    "robosoft",
    "robosoft2",
    "robosoft3",
    "robosoft4",
    "robosoft5",
    "robosoft6",
    "robosoft7",
    "robosoft8",
    "sandro",
    "shelby",
    "steph",
    "steph2",
    "steph3",
    "travis",
    "victor",
    "whisper",
    "zac",
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
    /// Kokoro-82M through a long-lived worker ([`crate::kokoro`]), not one process per utterance.
    Kokoro,
}

impl Engine {
    pub fn program(self) -> &'static str {
        match self {
            Engine::EspeakNg => "espeak-ng",
            Engine::Flite => "flite",
            Engine::Festival => "text2wave",
            Engine::Kokoro => "kokoro",
        }
    }

    /// The Debian packages that provide it.
    pub fn packages(self) -> &'static str {
        match self {
            Engine::EspeakNg => "espeak-ng",
            Engine::Flite => "flite",
            Engine::Festival => "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts",
            // Its phonemiser; the model and onnxruntime live in a venv (`--kokoro`'s error says how).
            Engine::Kokoro => "espeak-ng python3-venv",
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
    pub(crate) fn run(&self, text: &str, wav: &Path) -> std::io::Result<std::process::Output> {
        if self.engine == Engine::Kokoro {
            return Err(std::io::Error::other(
                "Kokoro voices run through their worker (crate::kokoro), not one process each",
            ));
        }
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
            Engine::Kokoro => unreachable!("run() returns before building a Kokoro command"),
        }
        cmd
    }

    pub(crate) fn tags(&self) -> Vec<String> {
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
    pub(crate) fn fingerprint(&self, text: &str) -> String {
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
        // Kokoro's worker is checked when it starts; espeak-ng phonemises for it.
        Engine::Kokoro => ("espeak-ng", "--version"),
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

/// The `synth` speakers: every accent × variant of espeak-ng (the 12 plain variants, or with
/// `every_variant` all 91 distinct ones), the flite voices and, with `festival`, the festival voices, shuffled by `seed`,
/// the first `count` kept, each with a seeded rate (0.8–1.25×) and pitch (25–75; espeak-ng only).
pub fn synth_voices(seed: u64, count: usize, festival: bool, every_variant: bool) -> Vec<Voice> {
    let variants: Vec<&str> = ESPEAK_VARIANTS
        .iter()
        .chain(MORE_ESPEAK_VARIANTS.iter().filter(|_| every_variant))
        .copied()
        .collect();
    let mut pool: Vec<(Engine, String)> = ESPEAK_ACCENTS
        .iter()
        .flat_map(|a| {
            variants
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
    if every_variant {
        let voices = default_heldout_voices();
        pool.retain(|(engine, name)| {
            !voices
                .iter()
                .any(|v| v.engine == *engine && v.name == *name)
        });
    }
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
                Engine::Kokoro => unreachable!("the pool holds no Kokoro voice"),
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

/// The build's speakers in split order (test, valid, train; [`crate::build_synth`]'s `split_of`): the seeded
/// espeak-ng/flite/festival selection, with `kokoro.speakers` of them Kokoro voices, at least one in
/// each held-out split once there are three, the rest in train. Without Kokoro it is exactly
/// [`synth_voices`]' selection.
pub(crate) fn speaker_voices(options: &SynthOptions) -> Result<Vec<Voice>, DataError> {
    let (speakers, valid, test) = (
        options.speakers,
        options.valid_speakers,
        options.test_speakers,
    );
    let kokoro = options.kokoro.as_ref().map_or(0, |k| k.speakers);
    let max_speakers = synth_voices(
        options.seed,
        usize::MAX,
        options.festival,
        options.every_variant,
    )
    .len();
    if kokoro > kokoro_voice_count() || kokoro >= speakers {
        return Err(DataError::Invalid(format!(
            "--kokoro {kokoro}: at most {} Kokoro voices, and fewer than all {speakers} speakers",
            kokoro_voice_count()
        )));
    }
    if speakers - kokoro > max_speakers || valid + test >= speakers {
        return Err(DataError::Invalid(format!(
            "{speakers} speakers ({valid} valid, {test} test): need more speakers than valid + test, at most {max_speakers}"
        )));
    }
    let mut others = synth_voices(
        options.seed,
        speakers - kokoro,
        options.festival,
        options.every_variant,
    )
    .into_iter();
    let mut kokoros = kokoro_voices(options.seed, kokoro).into_iter();
    let held_kokoro = |split_speakers: usize| {
        if kokoro < 3 || split_speakers == 0 {
            0
        } else {
            (kokoro * split_speakers / speakers).clamp(1, split_speakers)
        }
    };
    let mut voices = Vec::with_capacity(speakers);
    for split_speakers in [test, valid] {
        let k = held_kokoro(split_speakers);
        voices.extend(kokoros.by_ref().take(k));
        voices.extend(others.by_ref().take(split_speakers - k));
    }
    voices.extend(kokoros);
    voices.extend(others);
    Ok(voices)
}

/// The default `synth` set's speaker counts ([`crate::SynthOptions::default`]).
pub(crate) const DEFAULT_SPEAKERS: usize = 48;
pub(crate) const DEFAULT_VALID_SPEAKERS: usize = 4;
pub(crate) const DEFAULT_TEST_SPEAKERS: usize = 4;

/// The default `synth` set's valid + test voices (its first 8 of seed 0): the wide pool leaves them out.
pub(crate) fn default_heldout_voices() -> Vec<Voice> {
    synth_voices(0, DEFAULT_SPEAKERS, false, false)
        .into_iter()
        .take(DEFAULT_VALID_SPEAKERS + DEFAULT_TEST_SPEAKERS)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voices_are_seeded_and_distinct() {
        let a = synth_voices(1, 48, false, false);
        assert_eq!(a, synth_voices(1, 48, false, false));
        assert_ne!(a, synth_voices(2, 48, false, false));
        let mut names: Vec<_> = a.iter().map(|v| v.speaker.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 48);
        assert!(
            a.iter()
                .all(|v| (0.8..=1.25).contains(&v.rate) && (25..=75).contains(&v.pitch))
        );
        // The personal users are voices the synth set never uses.
        let every = synth_voices(0, usize::MAX, true, true);
        assert_eq!(
            every.len(),
            8 * 91 + 8 - 8,
            "less the default set's 8 held-out voices"
        );
        assert!(every.iter().any(|v| v.engine == Engine::Festival));
        for user in atypical_voices() {
            assert!(every.iter().all(|v| v.name != user.name), "{}", user.name);
        }
    }

    #[test]
    fn kokoro_speakers_replace_others_and_reach_every_split() {
        let wide = |kokoro: Option<usize>| SynthOptions {
            seed: 5,
            speakers: 160,
            valid_speakers: 8,
            test_speakers: 8,
            every_variant: true,
            kokoro: kokoro.map(|speakers| crate::KokoroOptions {
                speakers,
                python: "python".into(),
                work_dir: "kokoro".into(),
            }),
            ..Default::default()
        };
        // No Kokoro: exactly the selection builds made before Kokoro existed.
        assert_eq!(
            speaker_voices(&wide(None)).unwrap(),
            synth_voices(5, 160, false, true)
        );
        assert_eq!(
            speaker_voices(&wide(Some(0))).unwrap(),
            synth_voices(5, 160, false, true)
        );
        let voices = speaker_voices(&wide(Some(20))).unwrap();
        assert_eq!(voices.len(), 160);
        let is_kokoro = |range: std::ops::Range<usize>| {
            voices[range]
                .iter()
                .filter(|v| v.engine == Engine::Kokoro)
                .count()
        };
        assert_eq!(
            (is_kokoro(0..8), is_kokoro(8..16), is_kokoro(16..160)),
            (1, 1, 18)
        );
        let mut speakers: Vec<&str> = voices.iter().map(|v| v.speaker.as_str()).collect();
        speakers.sort();
        speakers.dedup();
        assert_eq!(speakers.len(), 160, "every speaker in one split only");

        let too_many = speaker_voices(&wide(Some(36))).unwrap_err().to_string();
        assert!(too_many.contains("at most 35 Kokoro voices"), "{too_many}");
    }
}
