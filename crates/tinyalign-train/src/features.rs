//! The frozen encoder runs once per utterance; its features are stored (f16 safetensors, one file per
//! utterance) under a folder named by the encoder's weight hash and the frontend version, keyed by a hash of
//! the audio bytes. Later epochs and later runs only read them.

use std::path::{Path, PathBuf};

use tinyalign_data::{Manifest, Utterance};
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

    /// Features of `u` from the cache, or computed (and stored) now.
    pub fn get(&mut self, manifest: &Manifest, u: &Utterance) -> Result<Features, TrainError> {
        let path = manifest.audio_path(u);
        let bytes = std::fs::read(&path)
            .map_err(|e| TrainError::Io(format!("{} ({}): {e}", path.display(), u.id)))?;
        let key = sha256_hex(
            &[
                bytes.as_slice(),
                format!("{:?}", u.input_format()).as_bytes(),
            ]
            .concat(),
        );
        let file = self.dir.join(format!("{}.safetensors", &key[..32]));
        if let Ok(stored) = std::fs::read(&file)
            && let Ok(map) = read_safetensors(&stored, &file.display().to_string())
            && let Ok(t) = map.get("features")
            && t.shape.len() == 2
        {
            self.reused += 1;
            return Ok(Features {
                frames: t.shape[0],
                width: t.shape[1],
                data: t.data.clone(),
            });
        }
        let name = format!("{} ({})", path.display(), u.id);
        let audio = match u.input_format() {
            tinyalign_mel::InputFormat::Wav => tinyalign_mel::decode_wav(&bytes, &name)?,
            tinyalign_mel::InputFormat::RawPcm16 { sample_rate } => {
                tinyalign_mel::decode_raw_pcm16(&bytes, sample_rate, &name)?
            }
        };
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
        let encoded = write_safetensors(&map, StoreAs::F16, &[("utterance", u.id.as_str())])
            .map_err(|e| TrainError::Io(e.to_string()))?;
        tinyalign_data::write_atomic(&file, &encoded).map_err(|e| TrainError::Io(e.to_string()))?;
        self.computed += 1;
        // Return what later runs will read (f16-rounded), so a cached and a fresh run train identically.
        let stored =
            read_safetensors(&encoded, "features").map_err(|e| TrainError::Io(e.to_string()))?;
        let t = stored
            .get("features")
            .map_err(|e| TrainError::Io(e.to_string()))?;
        Ok(Features {
            frames,
            width,
            data: t.data.clone(),
        })
    }
}
