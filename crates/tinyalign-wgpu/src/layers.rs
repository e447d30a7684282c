//! Layers shared by the Whisper encoder and BridgeFormer, loaded from PyTorch-keyed tensors.

use tinyalign_weights::TensorMap;

use crate::ops::{self, Activation, AttentionShape};
use crate::{Gpu, GpuError, GpuMatrix, GpuTensor};

/// A `1 × len` vector (bias, norm weight).
pub(crate) fn vector(
    gpu: &Gpu,
    map: &TensorMap,
    name: &str,
    len: usize,
) -> Result<GpuTensor, GpuError> {
    let t = map.get_shaped(name, &[len])?;
    gpu.upload(&t.data, 1, len)
}

#[derive(Debug)]
pub(crate) struct Linear {
    pub w: GpuMatrix,
    pub b: Option<GpuTensor>,
}

impl Linear {
    /// `{prefix}.weight` (`d_out × d_in`, PyTorch layout) and, with `bias`, `{prefix}.bias`.
    pub fn load(
        gpu: &Gpu,
        map: &TensorMap,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Self, GpuError> {
        let w = map.get_shaped(&format!("{prefix}.weight"), &[d_out, d_in])?;
        Ok(Self {
            w: GpuMatrix::from_f32(gpu, d_out, d_in, &w.data)?,
            b: if bias {
                Some(vector(gpu, map, &format!("{prefix}.bias"), d_out)?)
            } else {
                None
            },
        })
    }

    /// From host rows: `weight` `d_out × d_in` (PyTorch layout), `bias` `d_out`.
    pub fn from_host(
        gpu: &Gpu,
        d_in: usize,
        d_out: usize,
        weight: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<Self, GpuError> {
        Ok(Self {
            w: GpuMatrix::from_f32(gpu, d_out, d_in, weight)?,
            b: bias.map(|b| gpu.upload(b, 1, d_out)).transpose()?,
        })
    }

    pub fn forward(
        &self,
        gpu: &Gpu,
        x: &GpuTensor,
        act: Activation,
    ) -> Result<GpuTensor, GpuError> {
        ops::linear(gpu, x, &self.w, self.b.as_ref(), act)
    }
}

#[derive(Debug)]
pub(crate) struct LayerNorm {
    w: GpuTensor,
    b: GpuTensor,
    eps: f32,
}

impl LayerNorm {
    pub fn load(
        gpu: &Gpu,
        map: &TensorMap,
        prefix: &str,
        d: usize,
        eps: f32,
    ) -> Result<Self, GpuError> {
        Ok(Self {
            w: vector(gpu, map, &format!("{prefix}.weight"), d)?,
            b: vector(gpu, map, &format!("{prefix}.bias"), d)?,
            eps,
        })
    }

    pub fn forward(&self, gpu: &Gpu, x: &GpuTensor) -> Result<GpuTensor, GpuError> {
        ops::layer_norm(gpu, x, &self.w, &self.b, self.eps)
    }
}

/// A pre-norm transformer encoder layer with Whisper's key names: `x + attn(LN(x))`, then
/// `x + fc2(GELU(fc1(LN(x))))`.
#[derive(Debug)]
pub(crate) struct EncoderLayer {
    attn_norm: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ffn_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
}

impl EncoderLayer {
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        gpu: &Gpu,
        map: &TensorMap,
        prefix: &str,
        d: usize,
        heads: usize,
        ffn: usize,
        k_bias: bool,
        eps: f32,
    ) -> Result<Self, GpuError> {
        let p = |part: &str| format!("{prefix}.{part}");
        Ok(Self {
            attn_norm: LayerNorm::load(gpu, map, &p("self_attn_layer_norm"), d, eps)?,
            q: Linear::load(gpu, map, &p("self_attn.q_proj"), d, d, true)?,
            k: Linear::load(gpu, map, &p("self_attn.k_proj"), d, d, k_bias)?,
            v: Linear::load(gpu, map, &p("self_attn.v_proj"), d, d, true)?,
            out: Linear::load(gpu, map, &p("self_attn.out_proj"), d, d, true)?,
            ffn_norm: LayerNorm::load(gpu, map, &p("final_layer_norm"), d, eps)?,
            fc1: Linear::load(gpu, map, &p("fc1"), d, ffn, true)?,
            fc2: Linear::load(gpu, map, &p("fc2"), ffn, d, true)?,
            heads,
        })
    }

    /// x `n × d`; keys from `valid_keys` on are padding (masked out).
    pub fn forward(
        &self,
        gpu: &Gpu,
        x: &GpuTensor,
        valid_keys: usize,
    ) -> Result<GpuTensor, GpuError> {
        let normed = self.attn_norm.forward(gpu, x)?;
        let q = self.q.forward(gpu, &normed, Activation::None)?;
        let k = self.k.forward(gpu, &normed, Activation::None)?;
        let v = self.v.forward(gpu, &normed, Activation::None)?;
        let d = x.cols();
        let attended = ops::attention(
            gpu,
            &q,
            &k,
            &v,
            AttentionShape {
                heads: self.heads,
                kv_heads: self.heads,
                head_dim: d / self.heads,
                valid_keys,
                causal_start: None,
            },
        )?;
        let x = ops::add(gpu, x, &self.out.forward(gpu, &attended, Activation::None)?)?;
        let hidden = self
            .fc1
            .forward(gpu, &self.ffn_norm.forward(gpu, &x)?, Activation::Gelu)?;
        ops::add(gpu, &x, &self.fc2.forward(gpu, &hidden, Activation::None)?)
    }
}
