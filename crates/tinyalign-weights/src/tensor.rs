//! Host tensors (f32, row-major) and a named collection of them with shape-checked lookups.

use std::collections::BTreeMap;

use crate::error::{WeightsError, WeightsErrorKind};

/// A dense row-major `f32` tensor on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    /// Panics if `data` does not hold `shape`'s element count (an internal invariant, never user input).
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "tensor data does not match its shape"
        );
        Self { shape, data }
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Rows `start..end` of a tensor viewed as `(shape[0], rest)`.
    pub fn rows(&self, start: usize, end: usize) -> Tensor {
        let row: usize = self.shape[1..].iter().product();
        let mut shape = self.shape.clone();
        shape[0] = end - start;
        Tensor::new(shape, self.data[start * row..end * row].to_vec())
    }
}

/// Tensors by canonical (Hugging Face / PyTorch) key, remembering the file they came from for messages.
#[derive(Debug, Clone, Default)]
pub struct TensorMap {
    pub source_name: String,
    tensors: BTreeMap<String, Tensor>,
}

impl TensorMap {
    pub fn new(source_name: impl Into<String>) -> Self {
        Self {
            source_name: source_name.into(),
            tensors: BTreeMap::new(),
        }
    }

    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.tensors.insert(name.into(), tensor);
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.tensors.iter()
    }

    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        self.tensors.remove(name)
    }

    pub fn get(&self, name: &str) -> Result<&Tensor, WeightsError> {
        self.tensors.get(name).ok_or_else(|| {
            WeightsError::new(
                &self.source_name,
                WeightsErrorKind::Missing {
                    name: name.to_string(),
                },
            )
        })
    }

    /// The tensor `name`, refusing any other shape with a message naming both shapes.
    pub fn get_shaped(&self, name: &str, expected: &[usize]) -> Result<&Tensor, WeightsError> {
        let t = self.get(name)?;
        if t.shape != expected {
            return Err(WeightsError::new(
                &self.source_name,
                WeightsErrorKind::Shape {
                    name: name.to_string(),
                    expected: expected.to_vec(),
                    found: t.shape.clone(),
                },
            ));
        }
        Ok(t)
    }

    /// Total number of parameters.
    pub fn numel(&self) -> usize {
        self.tensors.values().map(Tensor::numel).sum()
    }
}
