//! The frozen encoder runs once per utterance (and once per augmented copy); its features are stored (f16
//! safetensors, one file per utterance copy) under a folder named by the encoder's weight hash and the
//! frontend version, keyed by a hash of the audio bytes and the augmentation's tag. Later epochs and later
//! runs only read them, batch by batch ([`FeatureFile::load`]): training holds no corpus in memory, so its
//! peak RSS does not grow with the hours of speech.

use std::path::{Path, PathBuf};

use tinyalign_data::{Augmentation, Manifest, Utterance};
use tinyalign_mel::{Frontend, FrontendConfig, MelBands};
use tinyalign_weights::st::{StoreAs, read_safetensors, write_safetensors};
use tinyalign_weights::{Tensor as HostTensor, TensorMap};
use tinyalign_whisper::WhisperEncoder;

use crate::TrainError;

pub use tinyalign_mel::FRONTEND_VERSION;
pub use tinyalign_weights::sha256_hex;

/// Encoder features of one utterance: `frames × width`, row-major.
#[derive(Debug, Clone)]
pub struct Features {
    pub frames: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

/// Stored features of one utterance copy: the file and its shape, read when a batch needs them.
#[derive(Debug, Clone)]
pub struct FeatureFile {
    pub path: PathBuf,
    pub frames: usize,
    pub width: usize,
}

impl FeatureFile {
    /// The stored (f16-rounded) features; an unreadable or reshaped file is an error naming it.
    pub fn load(&self) -> Result<Features, TrainError> {
        let name = self.path.display().to_string();
        let bytes =
            std::fs::read(&self.path).map_err(|e| TrainError::Io(format!("{name}: {e}")))?;
        let features = decode(&bytes, &name)?;
        if (features.frames, features.width) != (self.frames, self.width) {
            return Err(TrainError::Data(format!(
                "{name}: {}×{} features, {}×{} when the run started (was the cache changed under it?)",
                features.frames, features.width, self.frames, self.width
            )));
        }
        Ok(features)
    }
}

fn decode(bytes: &[u8], name: &str) -> Result<Features, TrainError> {
    let mut map = read_safetensors(bytes, name).map_err(|e| TrainError::Io(e.to_string()))?;
    let t = map
        .remove("features")
        .ok_or_else(|| TrainError::Io(format!("{name}: no tensor `features`")))?;
    if t.shape.len() != 2 {
        return Err(TrainError::Data(format!(
            "{name}: features of shape {:?}",
            t.shape
        )));
    }
    Ok(Features {
        frames: t.shape[0],
        width: t.shape[1],
        data: t.data,
    })
}

#[derive(Debug)]
pub struct FeatureCache {
    dir: PathBuf,
    encoder: WhisperEncoder,
    frontend: Frontend,
    pub computed: usize,
    pub reused: usize,
}

impl FeatureCache {
    /// `root`/`<encoder sha256 prefix>-fe<version>/`; `encoder_hash` is the sha256 of its weight file.
    pub fn new(
        root: &Path,
        encoder: WhisperEncoder,
        encoder_hash: &str,
    ) -> Result<Self, TrainError> {
        let bands = MelBands::from_count(encoder.config().num_mel_bins).ok_or_else(|| {
            TrainError::Config(format!("{} mel bands", encoder.config().num_mel_bins))
        })?;
        let dir = root.join(format!(
            "{}-fe{FRONTEND_VERSION}",
            &encoder_hash[..16.min(encoder_hash.len())]
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| TrainError::Io(format!("{}: {e}", dir.display())))?;
        Ok(Self {
            dir,
            encoder,
            frontend: Frontend::new(FrontendConfig {
                bands,
                pad_to_30s: false,
            }),
            computed: 0,
            reused: 0,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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
    /// too when they were computed now (a cached entry is only read to check its shape).
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
        );
        let file = self.dir.join(format!("{}.safetensors", &key[..32]));
        if let Ok(stored) = std::fs::read(&file)
            && let Ok(features) = decode(&stored, &file.display().to_string())
        {
            self.reused += 1;
            let entry = FeatureFile {
                path: file,
                frames: features.frames,
                width: features.width,
            };
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
        if audio.duration_s() > 30.0 {
            return Err(TrainError::Data(format!(
                "{name}: {:.1} s is over Whisper's 30 s window",
                audio.duration_s()
            )));
        }
        let mel = self.frontend.audio_to_log_mel(&audio, &name)?;
        let out = self
            .encoder
            .forward(&mel)
            .map_err(|e| TrainError::Model(format!("{name}: {e}")))?;
        let (frames, width) = tinyalign_nn::shape2(&out);
        let data = tinyalign_nn::to_vec2(&out);
        let mut map = TensorMap::new("features");
        map.insert("features", HostTensor::new(vec![frames, width], data));
        let mut metadata = vec![("utterance", u.id.as_str())];
        if augment.is_some() {
            metadata.push(("augmentation", tag.as_str()));
        }
        let encoded = write_safetensors(&map, StoreAs::F16, &metadata)
            .map_err(|e| TrainError::Io(e.to_string()))?;
        tinyalign_data::write_atomic(&file, &encoded).map_err(|e| TrainError::Io(e.to_string()))?;
        self.computed += 1;
        // Return what later runs will read (f16-rounded), so a cached and a fresh run train identically.
        let features = decode(&encoded, "features")?;
        let entry = FeatureFile {
            path: file,
            frames,
            width,
        };
        Ok((entry, Some(features)))
    }
}
