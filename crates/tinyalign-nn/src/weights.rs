//! A view of named host weights under a dotted prefix (`pp("model.encoder")`), turning them into device
//! tensors with their shapes checked, so a layer constructor reads `w.linear("fc1", d, 4 * d)`.

use dfdx::tensor::TensorFromVec;
use tinyalign_weights::{TensorMap, WeightsError};

use crate::{Device, Tensor1, Tensor2};

/// Errors while building layers from weights.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("{0}")]
    Config(String),
}

/// Weights under a key prefix.
#[derive(Debug, Clone)]
pub struct Weights<'a> {
    map: &'a TensorMap,
    prefix: String,
    dev: Device,
}

impl<'a> Weights<'a> {
    pub fn new(map: &'a TensorMap, dev: Device) -> Self {
        Self {
            map,
            prefix: String::new(),
            dev,
        }
    }

    /// The view under `prefix.name`.
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        Self {
            map: self.map,
            prefix: self.key(&name.to_string()),
            dev: self.dev.clone(),
        }
    }

    pub fn device(&self) -> &Device {
        &self.dev
    }

    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains(&self.key(name))
    }

    /// Host data of `name`, which must have exactly `shape`.
    pub fn host(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, NnError> {
        Ok(self.map.get_shaped(&self.key(name), shape)?.data.clone())
    }

    pub fn tensor1(&self, name: &str, n: usize) -> Result<Tensor1, NnError> {
        Ok(self.dev.tensor_from_vec(self.host(name, &[n])?, (n,)))
    }

    pub fn tensor2(&self, name: &str, rows: usize, cols: usize) -> Result<Tensor2, NnError> {
        Ok(self
            .dev
            .tensor_from_vec(self.host(name, &[rows, cols])?, (rows, cols)))
    }
}
