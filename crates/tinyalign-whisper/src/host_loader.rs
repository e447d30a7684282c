//! Frozen host layers (tinyalign-kernels) from a model file's tensors by Hugging Face's Whisper keys, each
//! shape checked against the config (a wrong one is an error naming the key): the encoder and the decoder
//! load through the same one.

use tinyalign_kernels::{HostAttention, HostLayerNorm, HostLinear, HostSelfAttention};
use tinyalign_weights::TensorMap;

use crate::WhisperError;

/// PyTorch's default LayerNorm epsilon, which Whisper keeps.
const LN_EPS: f32 = 1e-5;

/// Host layers from a model file's tensors, each shape checked against the config (a wrong one is an
/// error naming the key).
pub(crate) struct HostLoader<'a> {
    pub(crate) map: &'a TensorMap,
}

impl HostLoader<'_> {
    pub(crate) fn get(&self, key: &str, shape: &[usize]) -> Result<Vec<f32>, WhisperError> {
        Ok(self.map.get_shaped(key, shape)?.data.clone())
    }

    pub(crate) fn linear(
        &self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<HostLinear, WhisperError> {
        let weight = self.get(&format!("{prefix}.weight"), &[d_out, d_in])?;
        let bias = match bias {
            true => Some(self.get(&format!("{prefix}.bias"), &[d_out])?),
            false => None,
        };
        Ok(HostLinear::from_torch(&weight, bias, d_in, d_out))
    }

    pub(crate) fn layer_norm(&self, prefix: &str, d: usize) -> Result<HostLayerNorm, WhisperError> {
        Ok(HostLayerNorm::new(
            self.get(&format!("{prefix}.weight"), &[d])?,
            self.get(&format!("{prefix}.bias"), &[d])?,
            LN_EPS,
        ))
    }

    pub(crate) fn self_attention(
        &self,
        prefix: &str,
        d: usize,
        heads: usize,
    ) -> Result<HostSelfAttention, WhisperError> {
        self.check_heads(d, heads)?;
        let [q, k, v, out] = self.projections(prefix, d)?;
        Ok(HostSelfAttention::new([&q, &k, &v], out, heads))
    }

    /// Attention with its keys and values kept apart (the decoder's self- and cross-attention).
    pub(crate) fn attention(
        &self,
        prefix: &str,
        d: usize,
        heads: usize,
    ) -> Result<HostAttention, WhisperError> {
        self.check_heads(d, heads)?;
        let [q, k, v, out] = self.projections(prefix, d)?;
        Ok(HostAttention::new([q, k, v], out, heads))
    }

    fn check_heads(&self, d: usize, heads: usize) -> Result<(), WhisperError> {
        if heads == 0 || !d.is_multiple_of(heads) {
            return Err(WhisperError::Config {
                path: self.map.source_name.clone(),
                message: format!("{d} channels do not split into {heads} heads"),
            });
        }
        Ok(())
    }

    /// `q_proj`, `k_proj`, `v_proj`, `out_proj`, each `(d, d)`; Whisper's `k_proj` has no bias.
    fn projections(&self, prefix: &str, d: usize) -> Result<[HostLinear; 4], WhisperError> {
        Ok([
            self.linear(&format!("{prefix}.q_proj"), d, d, true)?,
            self.linear(&format!("{prefix}.k_proj"), d, d, false)?,
            self.linear(&format!("{prefix}.v_proj"), d, d, true)?,
            self.linear(&format!("{prefix}.out_proj"), d, d, true)?,
        ])
    }
}
