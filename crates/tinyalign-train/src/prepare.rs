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
    Manifest::read(&path).map_err(|e| TrainError::Data(e.to_string()))
}

/// The frozen Whisper encoder of `options` on the CPU, and its weights' sha256 (the feature cache's key).
pub(crate) fn load_encoder(
    options: &TrainOptions,
) -> Result<(tinyalign_whisper::WhisperEncoder, String), TrainError> {
    tinyalign_whisper::load_encoder_dir_with_sha256(&options.whisper_dir, tinyalign_nn::cpu())
        .map_err(|e| TrainError::Model(e.to_string()))
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

/// The augmentation of copy `copy` of utterance `id` (copy 0 is the clean one): seeded by the id and the
/// copy only, not the run's seed, so runs with other seeds (and [`cache_features`]) make the same copies.
pub(crate) fn augmentation_for(
    policy: &AugmentPolicy,
    id: &str,
    copy: usize,
) -> Option<Augmentation> {
    (copy > 0).then(|| policy.draw(SplitMix::new(copy as u64).next_u64() ^ id_seed(id)))
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
    for (done, (u, copies)) in jobs.iter().enumerate() {
        for copy in 0..=*copies {
            let augment = augmentation_for(&config.augment, &u.id, copy);
            cache.store(&manifest, u, augment.as_ref())?;
        }
        progress(done + 1, jobs.len());
    }
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
        let policy = AugmentPolicy::default();
        assert_eq!(augmentation_for(&policy, "a", 0), None);
        let a1 = augmentation_for(&policy, "a", 1).unwrap();
        assert_eq!(Some(a1), augmentation_for(&policy, "a", 1));
        assert_ne!(Some(a1), augmentation_for(&policy, "a", 2));
        assert_ne!(Some(a1), augmentation_for(&policy, "b", 1));
    }
}
