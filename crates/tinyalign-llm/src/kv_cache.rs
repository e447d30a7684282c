//! The KV cache of generation.

use crate::LlamaConfig;

/// Keys and values of every layer for the positions seen so far: `len × kv_dim` each, row-major.
#[derive(Debug, Clone)]
pub struct KvCache {
    pub(crate) keys: Vec<Vec<f32>>,
    pub(crate) values: Vec<Vec<f32>>,
    pub(crate) len: usize,
    pub(crate) capacity: usize,
    pub(crate) kv_dim: usize,
}

impl KvCache {
    /// A cache for up to `capacity` positions (capped at the model's context length).
    pub fn new(config: &LlamaConfig, capacity: usize) -> Self {
        let capacity = capacity.min(config.max_position_embeddings);
        Self {
            keys: vec![Vec::new(); config.num_hidden_layers],
            values: vec![Vec::new(); config.num_hidden_layers],
            len: 0,
            capacity,
            kv_dim: config.kv_dim(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets positions from `len` on (keeps a shared prefix such as the system prompt).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
            for cache in self.keys.iter_mut().chain(self.values.iter_mut()) {
                cache.truncate(len * self.kv_dim);
            }
        }
    }
}
