//! What a run reads before its first step: the manifest's training and validation utterances, and their
//! encoder features with the augmented copies the config asks for. [`cache_features`] does only the
//! second part, for one shard of the utterances, so N processes (one per machine of a batch scheduler, all
//! writing one cache folder on a shared file system) fill a large corpus's cache in parallel; each entry is
//! renamed into place whole, so shards never see each other's half-written files.

use std::path::PathBuf;
use std::time::Instant;

use tinyalign_data::{AugmentPolicy, Augmentation, Manifest, Split, SplitMix, Utterance};

use crate::features::FeatureCache;
use crate::{TrainConfig, TrainError, TrainOptions};

/// The config's manifest (a relative path is under the cache), read and checked.
pub(crate) fn read_manifest(
    config: &TrainConfig,
    options: &TrainOptions,
) -> Result<Manifest, TrainError> {
    let path = {
        let p = PathBuf::from(&config.data.manifest);
        if p.is_absolute() {
            p
        } else {
            options.cache_dir.join(p)
        }
    };
    if !path.exists() {
        return Err(TrainError::Data(format!(
            "no manifest at {} (build it with `cargo xtask data NAME`: synth, synth-wide, asterisk, ...)",
            path.display()
        )));
    }
    Ok(Manifest::read(&path)?)
}

/// The frozen Whisper encoder of `options` on the CPU, and its weights' sha256 (the feature cache's key).
pub(crate) fn load_encoder(
    options: &TrainOptions,
) -> Result<(tinyalign_whisper::WhisperEncoder, String), TrainError> {
    Ok(tinyalign_whisper::load_encoder_dir_with_sha256(
        &options.whisper_dir,
    )?)
}

/// The utterances of `splits`, the first `max` in manifest order (0 = all); none is an error.
pub(crate) fn select<'m>(
    manifest: &'m Manifest,
    splits: &[String],
    max: usize,
) -> Result<Vec<&'m Utterance>, TrainError> {
    let wanted: Vec<Split> = splits
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()
        .map_err(|e| TrainError::Config(format!("{e}")))?;
    let mut picked = manifest.in_splits(&wanted);
    if max > 0 {
        picked.truncate(max);
    }
    if picked.is_empty() {
        return Err(TrainError::Data(format!(
            "the manifest has no utterances in {splits:?}"
        )));
    }
    Ok(picked)
}

/// A policy's augmentations of a run's training utterances, with what babble draws from: the training
/// WAV recordings (none when the policy has no babble).
pub(crate) struct Augmenter<'a> {
    policy: &'a AugmentPolicy,
    manifest: &'a Manifest,
    babble_pool: Vec<PathBuf>,
}

impl<'a> Augmenter<'a> {
    pub(crate) fn new(
        policy: &'a AugmentPolicy,
        manifest: &'a Manifest,
        train: &[&Utterance],
    ) -> Self {
        let babble_pool = if policy.babble > 0.0 {
            train
                .iter()
                .filter(|u| u.input_format() == tinyalign_mel::InputFormat::Wav)
                .map(|u| manifest.audio_path(u))
                .collect()
        } else {
            Vec::new()
        };
        Self {
            policy,
            manifest,
            babble_pool,
        }
    }

    /// The augmentation of copy `copy` of `u` (copy 0 is the clean one): seeded by the id and the copy
    /// only, not the run's seed, so runs with other seeds (and [`cache_features`]) make the same copies.
    pub(crate) fn copy(&self, u: &Utterance, copy: usize) -> Option<Augmentation> {
        (copy > 0).then(|| {
            self.policy.draw(
                SplitMix::new(copy as u64).next_u64() ^ id_seed(&u.id),
                &self.babble_pool,
                &self.manifest.audio_path(u),
            )
        })
    }
}

/// FNV-1a of an utterance id: the per-utterance part of an augmentation's seed, and of its shard.
fn id_seed(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Shard `index` of `count` (`"i/N"` on the command line, 0-based): the utterances whose id hashes to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    pub fn parse(text: &str) -> Result<Self, TrainError> {
        let bad =
            || TrainError::Config(format!("--shard {text}: give I/N with 0 ≤ I < N, e.g. 0/4"));
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<usize>().map_err(|_| bad())?,
            n.trim().parse::<usize>().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }

    pub fn contains(&self, id: &str) -> bool {
        (id_seed(id) % self.count as u64) as usize == self.index
    }
}

/// What [`cache_features`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FeatureReport {
    pub shard: String,
    /// Utterances of this shard (training and validation).
    pub utterances: usize,
    /// Cache entries (utterance copies) computed now, and found already there.
    pub computed: usize,
    pub reused: usize,
    pub seconds: f64,
    pub cache: PathBuf,
}

/// Computes the encoder features `train` would, with the same augmented copies, for the utterances of
/// `shard`, into the run's feature cache; `progress(done, total)` after each utterance.
pub fn cache_features(
    config: &TrainConfig,
    options: &TrainOptions,
    shard: Shard,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<FeatureReport, TrainError> {
    let started = Instant::now();
    let manifest = read_manifest(config, options)?;
    let train = select(&manifest, &config.data.train_splits, config.data.max_train)?;
    let valid = select(&manifest, &config.data.valid_splits, config.data.max_valid)?;
    let (encoder, encoder_hash) = load_encoder(options)?;
    let mut cache = FeatureCache::new(&options.features_dir(), encoder, &encoder_hash)?;
    let jobs: Vec<(&Utterance, usize)> = train
        .iter()
        .map(|u| (*u, config.augment.copies))
        .chain(valid.iter().map(|u| (*u, 0)))
        .filter(|(u, _)| shard.contains(&u.id))
        .collect();
    let augmenter = Augmenter::new(&config.augment, &manifest, &train);
    for (done, (u, copies)) in jobs.iter().enumerate() {
        for copy in 0..=*copies {
            cache.store(&manifest, u, augmenter.copy(u, copy).as_ref())?;
        }
        progress(done + 1, jobs.len());
    }
    cache.flush()?;
    Ok(FeatureReport {
        shard: format!("{}/{}", shard.index, shard.count),
        utterances: jobs.len(),
        computed: cache.computed,
        reused: cache.reused,
        seconds: started.elapsed().as_secs_f64(),
        cache: cache.dir().to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_utterances() {
        let ids: Vec<String> = (0..1000)
            .map(|i| format!("synth/speaker-{}/{i:05}", i % 7))
            .collect();
        let shards: Vec<Shard> = (0..4).map(|i| Shard { index: i, count: 4 }).collect();
        let mut sizes = [0usize; 4];
        for id in &ids {
            let owners: Vec<usize> = (0..4).filter(|&i| shards[i].contains(id)).collect();
            assert_eq!(owners.len(), 1, "{id}");
            sizes[owners[0]] += 1;
        }
        assert!(sizes.iter().all(|&n| (200..300).contains(&n)), "{sizes:?}");
        assert!(ids.iter().all(|id| Shard::ALL.contains(id)));
    }

    #[test]
    fn shard_arguments_are_checked() {
        assert_eq!(Shard::parse("2/8").unwrap(), Shard { index: 2, count: 8 });
        for bad in ["8/8", "1/0", "x/2", "3", "-1/4"] {
            let message = Shard::parse(bad).unwrap_err().to_string();
            assert!(message.contains("I/N"), "{bad}: {message}");
        }
    }

    #[test]
    fn copy_zero_is_clean_and_copies_are_seeded_by_id_and_copy() {
        let utterance = |id: &str| -> Utterance {
            serde_json::from_value(serde_json::json!({
                "id": id, "audio": format!("{id}.wav"), "text": "x", "speaker": id, "duration_s": 1.0,
                "sample_rate": 16000, "split": "train", "source": "test", "licence": "test"
            }))
            .unwrap()
        };
        let (a, b) = (utterance("a"), utterance("b"));
        let manifest = Manifest::new(std::path::Path::new("/data"), vec![a.clone(), b.clone()]);
        let policy = AugmentPolicy {
            babble: 1.0,
            babble_talkers: [1, 1],
            ..AugmentPolicy::default()
        };
        let augmenter = Augmenter::new(&policy, &manifest, &[&a, &b]);
        assert_eq!(augmenter.copy(&a, 0), None);
        let a1 = augmenter.copy(&a, 1).unwrap();
        assert_eq!(Some(&a1), augmenter.copy(&a, 1).as_ref());
        assert_ne!(Some(&a1), augmenter.copy(&a, 2).as_ref());
        assert_ne!(Some(&a1), augmenter.copy(&b, 1).as_ref());
        // The only other training recording is the babble.
        let babble = a1.babble.expect("babble at probability 1");
        assert_eq!(babble.talkers, vec![PathBuf::from("/data/b.wav")]);
    }
}
