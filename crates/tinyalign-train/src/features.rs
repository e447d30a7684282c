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

pub use tinyalign_whisper::Features;

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

/// The `(frames, width)` of a stored entry from its safetensors header alone (8-byte length + JSON), the
/// f16 data unread; `None` when the file is missing, truncated or not a features entry (it is recomputed).
/// At start-up a run learns every entry's shape this way: 13,768 entries were 5.4 s of decoding whole files.
fn stored_shape(path: &Path) -> Option<(usize, usize)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let file_len = file.metadata().ok()?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len).ok()?;
    let header_len = u64::from_le_bytes(len);
    if header_len > 1 << 20 || 8 + header_len > file_len {
        return None;
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).ok()?;
    let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
    let entry = header.get("features")?;
    let shape: Vec<usize> = entry
        .get("shape")?
        .as_array()?
        .iter()
        .map(|v| v.as_u64().map(|v| v as usize))
        .collect::<Option<_>>()?;
    let offsets: Vec<u64> = entry
        .get("data_offsets")?
        .as_array()?
        .iter()
        .map(serde_json::Value::as_u64)
        .collect::<Option<_>>()?;
    let (&[frames, width], &[start, end], Some("F16")) = (
        shape.as_slice(),
        offsets.as_slice(),
        entry.get("dtype").and_then(serde_json::Value::as_str),
    ) else {
        return None;
    };
    let complete = end.checked_sub(start) == Some((frames * width * 2) as u64)
        && 8 + header_len + end == file_len;
    complete.then_some((frames, width))
}

fn decode(bytes: &[u8], name: &str) -> Result<Features, TrainError> {
    let mut map = read_safetensors(bytes, name)?;
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
    /// too when they were computed now (of a cached entry only the header is read, for its shape).
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
        if let Some((frames, width)) = stored_shape(&file) {
            self.reused += 1;
            let entry = FeatureFile {
                path: file,
                frames,
                width,
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
        let mut map = TensorMap::new("features");
        map.insert("features", HostTensor::new(vec![frames, width], data));
        let mut metadata = vec![("utterance", u.id.as_str())];
        if augment.is_some() {
            metadata.push(("augmentation", tag.as_str()));
        }
        let encoded = write_safetensors(&map, StoreAs::F16, &metadata)?;
        tinyalign_data::write_atomic(&file, &encoded)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(frames: usize, width: usize, store_as: StoreAs) -> Vec<u8> {
        let mut map = TensorMap::new("features");
        let data = (0..frames * width).map(|i| i as f32 * 0.25).collect();
        map.insert("features", HostTensor::new(vec![frames, width], data));
        write_safetensors(&map, store_as, &[("utterance", "u1")]).unwrap()
    }

    #[test]
    fn a_stored_shape_comes_from_the_header_and_a_damaged_entry_has_none() {
        let dir = std::env::temp_dir().join(format!("tinyalign-shape-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("entry.safetensors");
        let bytes = entry(37, 384, StoreAs::F16);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(stored_shape(&path), Some((37, 384)));
        let decoded = decode(&bytes, "entry").unwrap();
        assert_eq!((decoded.frames, decoded.width), (37, 384));
        // Truncated (a crash before the rename cannot leave one, a full disk or a copy can), one byte too
        // many, another dtype, a missing file: recomputed, not trusted.
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(stored_shape(&path), None);
        std::fs::write(&path, [bytes.as_slice(), &[0]].concat()).unwrap();
        assert_eq!(stored_shape(&path), None);
        std::fs::write(&path, entry(37, 384, StoreAs::F32)).unwrap();
        assert_eq!(stored_shape(&path), None);
        std::fs::write(&path, &bytes[..5]).unwrap();
        assert_eq!(stored_shape(&path), None);
        assert_eq!(stored_shape(&dir.join("missing.safetensors")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
