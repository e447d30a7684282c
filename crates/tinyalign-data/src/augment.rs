//! Signal-level changes to speech: the fixed effects that make the `atypical` users ([`Effect`], applied
//! once when their audio is synthesised), and seeded training augmentation ([`Augmentation`], drawn per
//! utterance copy from an [`AugmentPolicy`] and applied when encoder features are made, so the feature cache
//! keys an entry by audio + [`Augmentation::tag`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::babble::Babble;
use crate::recipes::SplitMix;

/// The rate augmentation works at and returns: Whisper's.
pub const AUGMENT_RATE: u32 = 16_000;

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
    pub(crate) fn tag(&self) -> String {
        match self {
            Effect::None => "effect=none".into(),
            Effect::Telephone => "effect=telephone-300-3400hz".into(),
            Effect::Noise { snr_db } => format!("effect=noise-snr-{snr_db}db"),
            Effect::Tremolo { hz, depth } => format!("effect=tremolo-{hz}hz-depth-{depth}"),
        }
    }
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
                *s += (sigma * gaussian(&mut rng)) as f32;
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

/// The colour of additive noise: white (flat), pink (−3 dB/octave, Paul Kellet's economy filter on white
/// noise), brown (−6 dB/octave, a leaky integrator of white noise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseColour {
    White,
    Pink,
    Brown,
}

/// One utterance copy's augmentation; every field is already rounded to what [`Augmentation::tag`] prints,
/// so the tag is the whole recipe. Applied in this order: speed, reverberation, noise, babble, telephone,
/// gain.
#[derive(Debug, Clone, PartialEq)]
pub struct Augmentation {
    /// Speed perturbation (tempo and pitch together, Ko et al. 2015): the 16 kHz signal is read as if it
    /// were sampled at 16 kHz·speed and resampled back. Two decimals.
    pub speed: f64,
    /// Schroeder reverberation (4 combs + 2 all-passes) with this RT60 in seconds, mixed in at `drr_db`
    /// below the direct sound.
    pub reverb: Option<Reverb>,
    /// Additive noise at this SNR (dB, against the speech's RMS over the whole utterance).
    pub noise: Option<(NoiseColour, f64)>,
    /// Other training recordings talking over the speech ([`Babble`]).
    pub babble: Option<Babble>,
    /// A telephone line: down to 8 kHz, band-pass 300–3400 Hz, G.711 µ-law 8-bit, back up to 16 kHz.
    pub telephone: bool,
    /// Gain in dB; samples past full scale clip, as a hot recording does.
    pub gain_db: f64,
    /// Seeds the noise and the reverberator's delays.
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reverb {
    pub rt60_s: f64,
    pub drr_db: f64,
}

/// How training draws augmentations: `copies` augmented copies of each training utterance beside the clean
/// one, each with independent draws. Validation and test audio are never augmented.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentPolicy {
    pub copies: usize,
    /// Probability of a telephone line.
    pub telephone: f64,
    /// Probability of additive noise, its SNR range (dB) and colours (uniform choice).
    pub noise: f64,
    pub snr_db: [f64; 2],
    pub colours: Vec<NoiseColour>,
    /// Probability of reverberation, its RT60 range (s) and direct-to-reverberant ratio range (dB).
    pub reverb: f64,
    pub rt60_s: [f64; 2],
    pub drr_db: [f64; 2],
    /// Speeds to choose from (uniformly); Kaldi's 0.9/1.0/1.1 by default.
    pub speeds: Vec<f64>,
    /// Gain range (dB).
    pub gain_db: [f64; 2],
    /// Probability of babble (0 by default: the presets' draws and cache keys predate it), how many other
    /// training recordings talk (inclusive range) and at what speech-to-babble ratio (dB).
    pub babble: f64,
    pub babble_talkers: [usize; 2],
    pub babble_snr_db: [f64; 2],
}

impl Default for AugmentPolicy {
    fn default() -> Self {
        Self {
            copies: 0,
            telephone: 0.3,
            noise: 0.4,
            snr_db: [5.0, 30.0],
            colours: vec![NoiseColour::White, NoiseColour::Pink, NoiseColour::Brown],
            reverb: 0.3,
            rt60_s: [0.2, 0.8],
            drr_db: [0.0, 12.0],
            speeds: vec![0.9, 1.0, 1.1],
            gain_db: [-12.0, 6.0],
            babble: 0.0,
            babble_talkers: [3, 6],
            babble_snr_db: [5.0, 20.0],
        }
    }
}

fn round_to(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

impl AugmentPolicy {
    /// Refuses probabilities outside [0, 1], empty or reversed ranges, speeds outside 0.5–2, and more than
    /// 16 copies; the message names the field.
    pub fn check(&self) -> Result<(), DataError> {
        let bad =
            |field: &str, why: String| Err(DataError::Invalid(format!("augment.{field}: {why}")));
        for (field, p) in [
            ("telephone", self.telephone),
            ("noise", self.noise),
            ("reverb", self.reverb),
            ("babble", self.babble),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad(field, format!("{p} is not a probability"));
            }
        }
        for (field, [lo, hi]) in [
            ("snr_db", self.snr_db),
            ("rt60_s", self.rt60_s),
            ("drr_db", self.drr_db),
            ("gain_db", self.gain_db),
            ("babble_snr_db", self.babble_snr_db),
        ] {
            if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                return bad(field, format!("[{lo}, {hi}] is not a range"));
            }
        }
        if self.rt60_s[0] <= 0.0 {
            return bad("rt60_s", "must be positive".into());
        }
        if self.speeds.is_empty() || self.speeds.iter().any(|s| !(0.5..=2.0).contains(s)) {
            return bad("speeds", format!("{:?}: give speeds in 0.5–2", self.speeds));
        }
        if self.noise > 0.0 && self.colours.is_empty() {
            return bad("colours", "noise needs at least one colour".into());
        }
        if self.copies > 16 {
            return bad("copies", format!("{} (at most 16)", self.copies));
        }
        let [few, many] = self.babble_talkers;
        if !(1 <= few && few <= many && many <= 16) {
            return bad(
                "babble_talkers",
                format!("[{few}, {many}]: give a range within 1–16"),
            );
        }
        Ok(())
    }

    /// The augmentation for `seed` (derive it from the utterance and the copy): the same on every machine.
    /// Babble talkers come from `babble_pool` (the training recordings), never `own` (the utterance's).
    pub fn draw(&self, seed: u64, babble_pool: &[PathBuf], own: &Path) -> Augmentation {
        let mut rng = SplitMix::new(seed ^ 0xA06D_E27A_710F_5EED);
        let mut uniform = |[lo, hi]: [f64; 2]| lo + (hi - lo) * rng.unit();
        let speed = round_to(
            self.speeds
                [(uniform([0.0, 1.0]) * self.speeds.len() as f64) as usize % self.speeds.len()],
            2,
        );
        let reverb = (uniform([0.0, 1.0]) < self.reverb).then(|| Reverb {
            rt60_s: round_to(uniform(self.rt60_s), 2),
            drr_db: round_to(uniform(self.drr_db), 1),
        });
        let noise = if uniform([0.0, 1.0]) < self.noise {
            let colour = self.colours
                [(uniform([0.0, 1.0]) * self.colours.len() as f64) as usize % self.colours.len()];
            Some((colour, round_to(uniform(self.snr_db), 1)))
        } else {
            None
        };
        let telephone = uniform([0.0, 1.0]) < self.telephone;
        let gain_db = round_to(uniform(self.gain_db), 1);
        // Its own stream, so policies without babble draw exactly what they drew before it existed.
        let mut babble_rng = SplitMix::new(seed ^ 0x00BA_BB1E_5EED);
        let babble = (self.babble > 0.0 && babble_rng.unit() < self.babble)
            .then(|| {
                let [few, many] = self.babble_talkers;
                let count = few + babble_rng.below(many - few + 1);
                let [lo, hi] = self.babble_snr_db;
                let snr_db = round_to(lo + (hi - lo) * babble_rng.unit(), 1);
                Babble::draw(babble_pool, own, count, snr_db, &mut babble_rng)
            })
            .flatten();
        Augmentation {
            speed,
            reverb,
            noise,
            babble,
            telephone,
            gain_db,
            seed,
        }
    }
}

impl Augmentation {
    /// The whole recipe in one line: recorded per utterance copy and part of its feature-cache key.
    pub fn tag(&self) -> String {
        let mut parts = vec![format!("speed={:.2}", self.speed)];
        if let Some(r) = self.reverb {
            parts.push(format!(
                "reverb=rt60-{:.2}s-drr-{:.1}db",
                r.rt60_s, r.drr_db
            ));
        }
        if let Some((colour, snr)) = self.noise {
            parts.push(format!("noise={colour:?}-{snr:.1}db").to_lowercase());
        }
        if let Some(babble) = &self.babble {
            parts.push(babble.tag());
        }
        if self.telephone {
            parts.push("telephone=8khz-300-3400hz-ulaw".into());
        }
        parts.push(format!("gain={:.1}db", self.gain_db));
        parts.push(format!("seed={:016x}", self.seed));
        parts.join(",")
    }

    /// Applies the recipe to mono `samples` at `sample_rate`; returns 16 kHz samples.
    pub fn apply(&self, samples: &[f32], sample_rate: u32) -> Result<Vec<f32>, DataError> {
        let resample = |x: &[f32], from: u32, to: u32| {
            tinyalign_mel::resample(x, from, to).map_err(|e| {
                DataError::Invalid(format!("augmentation resampling {from} → {to} Hz: {e}"))
            })
        };
        let mut x = resample(samples, sample_rate, AUGMENT_RATE)?;
        if (self.speed - 1.0).abs() > 1e-9 {
            let read_as = (f64::from(AUGMENT_RATE) * self.speed).round() as u32;
            x = resample(&x, read_as, AUGMENT_RATE)?;
        }
        if let Some(r) = self.reverb {
            reverberate(&mut x, AUGMENT_RATE, r, self.seed);
        }
        if let Some((colour, snr_db)) = self.noise {
            add_noise(&mut x, colour, snr_db, self.seed);
        }
        if let Some(babble) = &self.babble {
            babble.add_to(&mut x, self.seed)?;
        }
        if self.telephone {
            let mut narrow = resample(&x, AUGMENT_RATE, 8_000)?;
            apply_effect(&mut narrow, 8_000, Effect::Telephone, 0);
            for s in narrow.iter_mut() {
                *s = mu_law_round_trip(*s);
            }
            x = resample(&narrow, 8_000, AUGMENT_RATE)?;
        }
        let gain = 10f64.powf(self.gain_db / 20.0) as f32;
        for s in x.iter_mut() {
            *s = (*s * gain).clamp(-1.0, 1.0);
        }
        Ok(x)
    }
}

fn gaussian(rng: &mut SplitMix) -> f64 {
    // Box–Muller.
    let (u1, u2) = (rng.unit().max(1e-12), rng.unit());
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

pub(crate) fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// Noise of `colour`, `len` samples, unit RMS.
fn coloured_noise(colour: NoiseColour, len: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix::new(seed ^ 0x0015_E0C0_10A5);
    let mut b = [0f64; 3];
    let mut brown = 0f64;
    let noise: Vec<f32> = (0..len)
        .map(|_| {
            let w = gaussian(&mut rng);
            (match colour {
                NoiseColour::White => w,
                NoiseColour::Pink => {
                    b[0] = 0.99765 * b[0] + w * 0.0990460;
                    b[1] = 0.96300 * b[1] + w * 0.2965164;
                    b[2] = 0.57000 * b[2] + w * 1.0526913;
                    b[0] + b[1] + b[2] + w * 0.1848
                }
                NoiseColour::Brown => {
                    brown = 0.995 * brown + w;
                    brown
                }
            }) as f32
        })
        .collect();
    let scale = 1.0 / rms(&noise).max(1e-12);
    noise
        .iter()
        .map(|&s| (f64::from(s) * scale) as f32)
        .collect()
}

fn add_noise(x: &mut [f32], colour: NoiseColour, snr_db: f64, seed: u64) {
    let sigma = rms(x) / 10f64.powf(snr_db / 20.0);
    let noise = coloured_noise(colour, x.len(), seed);
    for (s, n) in x.iter_mut().zip(noise) {
        *s += (sigma * f64::from(n)) as f32;
    }
}

/// Schroeder's reverberator (Schroeder 1962): four parallel feedback combs, delays near 30–45 ms jittered
/// ±10 % by `seed`, each with feedback g = 10^(−3·delay/RT60) so it decays 60 dB in RT60; then two all-passes
/// (5 ms and 1.7 ms, g = 0.7). The wet signal is scaled to `drr_db` below the dry signal's RMS and added.
fn reverberate(x: &mut [f32], rate: u32, reverb: Reverb, seed: u64) {
    let mut rng = SplitMix::new(seed ^ 0x0000_2EBE_2B00);
    let rate = f64::from(rate);
    let mut wet = vec![0f64; x.len()];
    for base_ms in [29.7, 37.1, 41.1, 43.7] {
        let delay_s = base_ms / 1000.0 * (0.9 + 0.2 * rng.unit());
        let d = ((delay_s * rate) as usize).max(1);
        let g = 10f64.powf(-3.0 * delay_s / reverb.rt60_s);
        let mut line = vec![0f64; d];
        for (i, &s) in x.iter().enumerate() {
            let y = f64::from(s) + g * line[i % d];
            line[i % d] = y;
            wet[i] += y;
        }
    }
    for (ms, g) in [(5.0, 0.7), (1.7, 0.7)] {
        let d = ((ms / 1000.0 * rate) as usize).max(1);
        // v[n] = w[n] + g·v[n−d]; y[n] = v[n−d] − g·v[n].
        let mut line = vec![0f64; d];
        for (i, w) in wet.iter_mut().enumerate() {
            let delayed = line[i % d];
            let v = *w + g * delayed;
            line[i % d] = v;
            *w = delayed - g * v;
        }
    }
    let dry = rms(x);
    let wet_rms = (wet.iter().map(|w| w * w).sum::<f64>() / wet.len().max(1) as f64).sqrt();
    if wet_rms > 0.0 {
        let scale = dry / wet_rms / 10f64.powf(reverb.drr_db / 20.0);
        for (s, w) in x.iter_mut().zip(&wet) {
            *s += (w * scale) as f32;
        }
    }
}

/// G.711 µ-law (µ = 255) companding to 8 bits and back, in its continuous form:
/// F(x) = sgn(x)·ln(1 + µ|x|)/ln(1 + µ), quantised to 256 levels.
fn mu_law_round_trip(s: f32) -> f32 {
    const MU: f64 = 255.0;
    let x = f64::from(s).clamp(-1.0, 1.0);
    let f = x.signum() * (1.0 + MU * x.abs()).ln() / (1.0 + MU).ln();
    let q = (f * 127.5).round() / 127.5;
    (q.signum() * ((1.0 + MU).powf(q.abs()) - 1.0) / MU) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f64, rate: u32, seconds: f64) -> Vec<f32> {
        (0..(f64::from(rate) * seconds) as usize)
            .map(|i| (0.5 * (std::f64::consts::TAU * hz * i as f64 / f64::from(rate)).sin()) as f32)
            .collect()
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

    fn lag1_correlation(x: &[f32]) -> f64 {
        let num: f64 = x
            .windows(2)
            .map(|w| f64::from(w[0]) * f64::from(w[1]))
            .sum();
        let den: f64 = x.iter().map(|&s| f64::from(s).powi(2)).sum();
        num / den
    }

    fn dominant_hz(x: &[f32], rate: f64) -> f64 {
        // Zero crossings per second / 2: enough for a pure tone.
        let crossings = x
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        crossings as f64 / 2.0 / (x.len() as f64 / rate)
    }

    fn plain() -> Augmentation {
        Augmentation {
            speed: 1.0,
            reverb: None,
            noise: None,
            babble: None,
            telephone: false,
            gain_db: 0.0,
            seed: 1,
        }
    }

    #[test]
    fn draws_are_seeded_rounded_and_tagged_in_full() {
        let policy = AugmentPolicy::default();
        policy.check().unwrap();
        let draw = |s| policy.draw(s, &[], Path::new("own.wav"));
        let a: Vec<_> = (0..200).map(draw).collect();
        assert_eq!(a, (0..200).map(draw).collect::<Vec<_>>());
        let tags: std::collections::HashSet<_> = a.iter().map(Augmentation::tag).collect();
        assert_eq!(tags.len(), 200, "the seed is part of the tag");
        let share =
            |f: &dyn Fn(&Augmentation) -> bool| a.iter().filter(|x| f(x)).count() as f64 / 200.0;
        // Probabilities 0.3 / 0.4 / 0.3: within ±0.1 of them over 200 draws.
        assert!((share(&|x| x.telephone) - 0.3).abs() < 0.1);
        assert!((share(&|x| x.noise.is_some()) - 0.4).abs() < 0.1);
        assert!((share(&|x| x.reverb.is_some()) - 0.3).abs() < 0.1);
        for x in &a {
            assert!([0.9, 1.0, 1.1].contains(&x.speed));
            assert!((-12.0..=6.0).contains(&x.gain_db));
            assert_eq!(x.gain_db, round_to(x.gain_db, 1));
            if let Some((_, snr)) = x.noise {
                assert!((5.0..=30.0).contains(&snr));
            }
        }
    }

    #[test]
    fn babble_draws_from_the_pool_and_leaves_other_draws_alone() {
        let plain = AugmentPolicy::default();
        let babbling = AugmentPolicy {
            babble: 0.5,
            ..Default::default()
        };
        let pool: Vec<PathBuf> = (0..20)
            .map(|i| PathBuf::from(format!("s{i}/u.wav")))
            .collect();
        let own = Path::new("s3/u.wav");
        let mut with = 0;
        for seed in 0..200 {
            let (a, b) = (
                plain.draw(seed, &pool, own),
                babbling.draw(seed, &pool, own),
            );
            assert_eq!(a.babble, None);
            assert_eq!(
                Augmentation {
                    babble: None,
                    ..b.clone()
                },
                a,
                "babble has its own stream"
            );
            if let Some(babble) = &b.babble {
                with += 1;
                assert!((3..=6).contains(&babble.talkers.len()));
                assert!((5.0..=20.0).contains(&babble.snr_db));
                assert!(babble.talkers.iter().all(|t| t != own && pool.contains(t)));
                assert!(b.tag().contains(&babble.tag()));
            }
        }
        assert!(
            (70..=130).contains(&with),
            "{with} of 200 at probability 0.5"
        );
        // Without a pool (or with too few others) there is no babble to draw.
        assert!((0..50).all(|s| babbling.draw(s, &pool[3..4], own).babble.is_none()));
    }

    #[test]
    fn bad_policies_name_their_field() {
        let cases: Vec<(AugmentPolicy, &str)> = vec![
            (
                AugmentPolicy {
                    noise: 1.5,
                    ..Default::default()
                },
                "augment.noise",
            ),
            (
                AugmentPolicy {
                    snr_db: [30.0, 5.0],
                    ..Default::default()
                },
                "augment.snr_db",
            ),
            (
                AugmentPolicy {
                    speeds: vec![],
                    ..Default::default()
                },
                "augment.speeds",
            ),
            (
                AugmentPolicy {
                    speeds: vec![3.0],
                    ..Default::default()
                },
                "augment.speeds",
            ),
            (
                AugmentPolicy {
                    rt60_s: [0.0, 0.5],
                    ..Default::default()
                },
                "augment.rt60_s",
            ),
            (
                AugmentPolicy {
                    colours: vec![],
                    ..Default::default()
                },
                "augment.colours",
            ),
            (
                AugmentPolicy {
                    copies: 99,
                    ..Default::default()
                },
                "augment.copies",
            ),
            (
                AugmentPolicy {
                    babble: -0.1,
                    ..Default::default()
                },
                "augment.babble",
            ),
            (
                AugmentPolicy {
                    babble_talkers: [4, 2],
                    ..Default::default()
                },
                "augment.babble_talkers",
            ),
            (
                AugmentPolicy {
                    babble_snr_db: [f64::NAN, 3.0],
                    ..Default::default()
                },
                "augment.babble_snr_db",
            ),
        ];
        for (policy, field) in cases {
            let message = policy.check().unwrap_err().to_string();
            assert!(message.starts_with(field), "{message}");
        }
    }

    #[test]
    fn plain_augmentation_only_resamples() {
        let x = tone(440.0, 22_050, 1.0);
        let y = plain().apply(&x, 22_050).unwrap();
        assert_eq!(y, tinyalign_mel::resample(&x, 22_050, 16_000).unwrap());
    }

    #[test]
    fn speed_scales_tempo_and_pitch_together() {
        let x = tone(1000.0, 16_000, 2.0);
        for speed in [0.9, 1.1] {
            let y = Augmentation { speed, ..plain() }.apply(&x, 16_000).unwrap();
            let length_ratio = y.len() as f64 / x.len() as f64;
            assert!(
                (length_ratio - 1.0 / speed).abs() < 0.002,
                "{speed}: {length_ratio}"
            );
            let hz = dominant_hz(&y[2000..y.len() - 2000], 16_000.0);
            assert!((hz - 1000.0 * speed).abs() < 5.0, "{speed}: {hz} Hz");
        }
    }

    #[test]
    fn telephone_keeps_the_voice_band_and_drops_the_rest() {
        let telephone = Augmentation {
            telephone: true,
            ..plain()
        };
        for (hz, kept) in [(1000.0, true), (5000.0, false), (100.0, false)] {
            let x = tone(hz, 16_000, 1.0);
            let y = telephone.apply(&x, 16_000).unwrap();
            assert_eq!(y.len(), x.len());
            let gain = rms(&y[8000..]) / rms(&x[8000..]);
            if kept {
                assert!(gain > 0.8, "{hz} Hz: gain {gain}");
            } else {
                assert!(gain < 0.06, "{hz} Hz: gain {gain}");
            }
        }
    }

    #[test]
    fn mu_law_is_an_8_bit_compander() {
        let mut levels: Vec<i64> = (-1000..=1000)
            .map(|i| (f64::from(mu_law_round_trip(i as f32 / 1000.0)) * 1e6).round() as i64)
            .collect();
        for i in -1000..=1000 {
            let x = i as f32 / 1000.0;
            let y = mu_law_round_trip(x);
            // Step at full scale is ~1/32 of it; relative error under 4 % above −40 dBFS.
            assert!(
                (x - y).abs() <= 0.035 && (x.abs() < 0.01 || ((x - y) / x).abs() < 0.04),
                "{x} → {y}"
            );
        }
        levels.dedup();
        assert!(levels.len() <= 256, "{} levels", levels.len());
        assert!(levels.windows(2).all(|w| w[0] < w[1]), "monotonic");
    }

    #[test]
    fn coloured_noise_has_the_snr_and_its_colour() {
        let clean: Vec<f32> = tone(440.0, 16_000, 2.0).iter().map(|s| s * 0.1).collect();
        let mut correlations = Vec::new();
        for colour in [NoiseColour::White, NoiseColour::Pink, NoiseColour::Brown] {
            let noisy = Augmentation {
                noise: Some((colour, 10.0)),
                ..plain()
            }
            .apply(&clean, 16_000)
            .unwrap();
            let noise: Vec<f32> = noisy.iter().zip(&clean).map(|(a, b)| a - b).collect();
            let snr = 20.0 * (rms(&clean) / rms(&noise)).log10();
            assert!((snr - 10.0).abs() < 0.05, "{colour:?}: snr {snr}");
            correlations.push(lag1_correlation(&noise));
        }
        // White is uncorrelated; pink in between; brown nearly a random walk.
        assert!(correlations[0].abs() < 0.05, "{correlations:?}");
        assert!(
            correlations[1] > 0.3 && correlations[1] < 0.95,
            "{correlations:?}"
        );
        assert!(correlations[2] > 0.95, "{correlations:?}");
    }

    #[test]
    fn reverberation_decays_by_60_db_in_rt60() {
        let rt60 = 0.4;
        let mut click = vec![0f32; 32_000];
        click[0] = 1.0;
        let reverb = Reverb {
            rt60_s: rt60,
            drr_db: 0.0,
        };
        let mut y = click.clone();
        reverberate(&mut y, 16_000, reverb, 3);
        let energy_db = |from_s: f64| {
            let a = (from_s * 16_000.0) as usize;
            let e: f64 = y[a..a + 800].iter().map(|&s| f64::from(s).powi(2)).sum();
            10.0 * e.max(1e-30).log10()
        };
        // From 0.1 s to 0.1 s + RT60/2, the tail drops 30 dB (±6 dB: four combs are not an ideal decay).
        let drop = energy_db(0.1) - energy_db(0.1 + rt60 / 2.0);
        assert!((drop - 30.0).abs() < 6.0, "dropped {drop:.1} dB in RT60/2");
    }
}
