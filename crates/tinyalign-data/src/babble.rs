//! Babble for training augmentation: other training recordings talking over the speech, as in a café or
//! an open office. Each talker is scaled to unit RMS (so none dominates), looped from a seeded offset to the
//! utterance's length and summed; the sum is added `snr_db` below the speech's RMS (the speech-to-babble
//! ratio of the whole utterance, as for coloured noise).

use std::path::{Path, PathBuf};

use crate::DataError;
use crate::augment::{AUGMENT_RATE, rms};
use crate::recipes::SplitMix;

/// The talkers (WAV recordings) and the level of one utterance copy's babble.
#[derive(Debug, Clone, PartialEq)]
pub struct Babble {
    pub talkers: Vec<PathBuf>,
    /// Speech RMS over babble RMS, in dB (one decimal).
    pub snr_db: f64,
}

/// The last two components of a path (`speaker/file.wav`): what a tag names a talker by, so the feature
/// cache's keys do not depend on where the dataset lives.
fn short_name(path: &Path) -> String {
    let mut parts: Vec<_> = path
        .components()
        .rev()
        .take(2)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.reverse();
    parts.join("/")
}

impl Babble {
    /// `count` distinct recordings of `pool`, none of them `own`, picked by `rng`; `None` when the pool
    /// has fewer.
    pub(crate) fn draw(
        pool: &[PathBuf],
        own: &Path,
        count: usize,
        snr_db: f64,
        rng: &mut SplitMix,
    ) -> Option<Self> {
        let candidates = pool.iter().filter(|p| p.as_path() != own).count();
        if count == 0 || candidates < count {
            return None;
        }
        let mut talkers: Vec<PathBuf> = Vec::with_capacity(count);
        while talkers.len() < count {
            let pick = &pool[rng.below(pool.len())];
            if pick.as_path() != own && !talkers.contains(pick) {
                talkers.push(pick.clone());
            }
        }
        Some(Self { talkers, snr_db })
    }

    /// `babble=<n>x-<snr>db-<FNV-1a of the talkers' names>`: the recipe, talkers included.
    pub(crate) fn tag(&self) -> String {
        let hash = self
            .talkers
            .iter()
            .flat_map(|t| short_name(t).into_bytes().into_iter().chain([b'\n']))
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        format!(
            "babble={}x-{:.1}db-{hash:016x}",
            self.talkers.len(),
            self.snr_db
        )
    }

    /// Adds the babble to `x` (mono, [`AUGMENT_RATE`]); `seed` places each talker's loop. A talker that
    /// cannot be read is an error naming it.
    pub(crate) fn add_to(&self, x: &mut [f32], seed: u64) -> Result<(), DataError> {
        if x.is_empty() {
            return Ok(());
        }
        let mut rng = SplitMix::new(seed ^ 0x00BA_BB1E_0000);
        let mut sum = vec![0f64; x.len()];
        for talker in &self.talkers {
            let name = talker.display().to_string();
            let audio = tinyalign_mel::read_audio_file(talker, tinyalign_mel::InputFormat::Wav)
                .map_err(|e| DataError::Invalid(format!("babble talker {name}: {e}")))?;
            let voice = tinyalign_mel::resample(&audio.samples, audio.sample_rate, AUGMENT_RATE)
                .map_err(|e| DataError::Invalid(format!("babble talker {name}: {e}")))?;
            let level = rms(&voice);
            if voice.is_empty() || level < 1e-9 {
                return Err(DataError::Invalid(format!(
                    "babble talker {name} is silent"
                )));
            }
            let start = rng.below(voice.len());
            for (i, s) in sum.iter_mut().enumerate() {
                *s += f64::from(voice[(start + i) % voice.len()]) / level;
            }
        }
        let babble_rms = (sum.iter().map(|s| s * s).sum::<f64>() / sum.len() as f64)
            .sqrt()
            .max(1e-12);
        let scale = rms(x) / 10f64.powf(self.snr_db / 20.0) / babble_rms;
        for (s, b) in x.iter_mut().zip(&sum) {
            *s += (b * scale) as f32;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_tone(dir: &Path, name: &str, hz: f64, rate: u32, seconds: f64) -> PathBuf {
        let path = dir.join(name);
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..(f64::from(rate) * seconds) as usize {
            let v = 0.3 * (std::f64::consts::TAU * hz * i as f64 / f64::from(rate)).sin();
            w.write_sample((v * 32767.0) as i16).unwrap();
        }
        w.finalize().unwrap();
        path
    }

    #[test]
    fn babble_is_other_talkers_at_the_snr_and_named_in_the_tag() {
        let dir = std::env::temp_dir().join(format!("tinyalign-babble-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Talkers at other rates and shorter than the speech: resampled and looped.
        let pool: Vec<PathBuf> = [(220.0, 22_050), (330.0, 16_000), (495.0, 8_000)]
            .iter()
            .enumerate()
            .map(|(i, &(hz, rate))| write_tone(&dir, &format!("t{i}.wav"), hz, rate, 0.7))
            .collect();
        let own = pool[0].clone();
        let mut rng = SplitMix::new(5);
        let babble = Babble::draw(&pool, &own, 2, 10.0, &mut rng).unwrap();
        assert!(!babble.talkers.contains(&own), "never the utterance itself");
        assert_eq!(babble.talkers.len(), 2);
        assert!(Babble::draw(&pool, &own, 3, 10.0, &mut rng).is_none());
        let tag = babble.tag();
        assert!(tag.starts_with("babble=2x-10.0db-"), "{tag}");
        let other = Babble {
            talkers: vec![pool[1].clone(), pool[0].clone()],
            snr_db: 10.0,
        };
        assert_ne!(other.tag(), tag, "the talkers are part of the recipe");

        let speech: Vec<f32> = (0..32_000).map(|i| 0.2 * (i as f32 * 0.05).sin()).collect();
        let mut mixed = speech.clone();
        babble.add_to(&mut mixed, 9).unwrap();
        let added: Vec<f32> = mixed.iter().zip(&speech).map(|(m, s)| m - s).collect();
        let snr = 20.0 * (rms(&speech) / rms(&added)).log10();
        assert!((snr - 10.0).abs() < 0.01, "SNR {snr}");
        let mut again = speech.clone();
        babble.add_to(&mut again, 9).unwrap();
        assert_eq!(again, mixed, "seeded");

        let missing = Babble {
            talkers: vec![dir.join("gone.wav")],
            snr_db: 10.0,
        };
        let err = missing.add_to(&mut speech.clone(), 1).unwrap_err();
        assert!(err.to_string().contains("gone.wav"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
