//! The frozen encoder runs once per utterance (and once per augmented copy); its features are stored as
//! f16 in the [`FeatureStore`] (packed shards). Later epochs and later runs only read them, batch by batch
//! ([`FeatureFile::load`]): training holds no corpus in memory, so its peak RSS does not grow with the
//! hours of speech.

use std::path::Path;

use tinyalign_data::{Augmentation, Manifest, Utterance};
use tinyalign_mel::Frontend;
use tinyalign_weights::{FloatKind, le_floats};
use tinyalign_whisper::WhisperEncoder;

use crate::TrainError;
use crate::feature_shards::ShardEntry;
use crate::feature_store::{FeatureFile, FeatureStore};

pub use tinyalign_mel::FRONTEND_VERSION;
pub use tinyalign_weights::sha256_hex;

pub use tinyalign_whisper::Features;

/// The feature store of one encoder, and the encoder and frontend that fill it.
#[derive(Debug)]
pub struct FeatureCache {
    store: FeatureStore,
    encoder: WhisperEncoder,
    frontend: Frontend,
    pub computed: usize,
    pub reused: usize,
}

impl FeatureCache {
    /// The store of `encoder` under `root` ([`FeatureStore::open`]); `encoder_hash` is the sha256 of its
    /// weight file.
    pub fn new(
        root: &Path,
        encoder: WhisperEncoder,
        encoder_hash: &str,
    ) -> Result<Self, TrainError> {
        Ok(Self {
            store: FeatureStore::open(root, encoder_hash)?,
            frontend: encoder.config().frontend(false)?,
            encoder,
            computed: 0,
            reused: 0,
        })
    }

    pub fn dir(&self) -> &Path {
        self.store.dir()
    }

    /// Writes the shard being filled. Dropping the cache does too, but cannot report a failure.
    pub fn flush(&mut self) -> Result<(), TrainError> {
        self.store.flush()
    }

    /// Features of `u` (augmented by `augment`) from the cache, or computed and stored now.
    pub fn get(
        &mut self,
        manifest: &Manifest,
        u: &Utterance,
        augment: Option<&Augmentation>,
    ) -> Result<Features, TrainError> {
        let (file, features) = self.store(manifest, u, augment)?;
        match features {
            Some(features) => Ok(features),
            None => file.load(),
        }
    }

    /// Makes sure the features of `u` (augmented by `augment`) are stored, and says where. Returns them
    /// too when they were computed now (of a cached entry only the index is read, for its shape).
    pub fn store(
        &mut self,
        manifest: &Manifest,
        u: &Utterance,
        augment: Option<&Augmentation>,
    ) -> Result<(FeatureFile, Option<Features>), TrainError> {
        let path = manifest.audio_path(u);
        let bytes = std::fs::read(&path)
            .map_err(|e| TrainError::Io(format!("{} ({}): {e}", path.display(), u.id)))?;
        let tag = augment.map(Augmentation::tag).unwrap_or_default();
        let key = sha256_hex(
            &[
                bytes.as_slice(),
                format!("{:?}", u.input_format()).as_bytes(),
                tag.as_bytes(),
            ]
            .concat(),
        )[..32]
            .to_string();
        if let Some(entry) = self.store.find(&key) {
            self.reused += 1;
            return Ok((entry, None));
        }
        let name = format!("{} ({})", path.display(), u.id);
        let mut audio = match u.input_format() {
            tinyalign_mel::InputFormat::Wav => tinyalign_mel::decode_wav(&bytes, &name)?,
            tinyalign_mel::InputFormat::RawPcm16 { sample_rate } => {
                tinyalign_mel::decode_raw_pcm16(&bytes, sample_rate, &name)?
            }
        };
        if let Some(augment) = augment {
            audio.samples = augment
                .apply(&audio.samples, audio.sample_rate)
                .map_err(|e| TrainError::Data(format!("{name}: {e}")))?;
            audio.sample_rate = tinyalign_data::AUGMENT_RATE;
        }
        audio.check_whisper_window(&name)?;
        let mel = self.frontend.audio_to_log_mel(&audio, &name)?;
        let Features {
            frames,
            width,
            data,
        } = self
            .encoder
            .forward(&mel)
            .map_err(|e| TrainError::Model(format!("{name}: {e}")))?;
        let rows: Vec<u8> = data
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let entry = ShardEntry {
            key: key.clone(),
            frames,
            width,
            start: 0,
            utterance: u.id.clone(),
            augmentation: tag,
        };
        let file = self.store.add_to_shard(entry, &rows)?.0;
        self.computed += 1;
        // Return what later runs will read (f16-rounded), so a cached and a fresh run train identically.
        let features = Features {
            frames,
            width,
            data: le_floats(FloatKind::F16, &rows),
        };
        Ok((file, Some(features)))
    }
}
