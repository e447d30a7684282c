//! The model folder `cargo xtask fetch` writes: `config.json` + `model.safetensors` (Hugging Face keys).

use std::path::Path;

use tinyalign_weights::st::read_safetensors;
use tinyalign_weights::{TensorMap, read_file};

use crate::{WhisperConfig, WhisperError};

/// Reads `dir/config.json` and `dir/model.safetensors` (Hugging Face layout, as `cargo xtask fetch` writes).
pub fn read_model_dir(dir: &Path) -> Result<(WhisperConfig, TensorMap), WhisperError> {
    let (config, map, _) = read_model_dir_hashed(dir, false)?;
    Ok((config, map))
}

/// [`read_model_dir`], and with `hash` the sha256 of `model.safetensors` from the same read.
pub(crate) fn read_model_dir_hashed(
    dir: &Path,
    hash: bool,
) -> Result<(WhisperConfig, TensorMap, Option<String>), WhisperError> {
    let config = WhisperConfig::from_file(&dir.join("config.json"))?;
    let path = dir.join("model.safetensors");
    let bytes = read_file(&path)?;
    let map = read_safetensors(&bytes, &path.display().to_string())?;
    Ok((
        config,
        map,
        hash.then(|| tinyalign_weights::sha256_hex(&bytes)),
    ))
}
