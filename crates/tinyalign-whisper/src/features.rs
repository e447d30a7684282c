//! What the encoder hands on: host rows, because every consumer (the feature cache, the projector, the
//! decoder's cross-attention, `tinyalign features`) works on host rows; a dfdx tensor in between only cost
//! two copies.

/// Encoder features of one utterance: `frames × width` (`d_model`), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    pub frames: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl Features {
    /// Row `t` (`width` values).
    pub fn row(&self, t: usize) -> &[f32] {
        &self.data[t * self.width..(t + 1) * self.width]
    }
}
