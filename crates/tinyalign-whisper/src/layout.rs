//! Whisper's encoder weights described once: the Hugging Face key of each part and the shape the config
//! implies. The dfdx encoder (CPU) and the wgpu encoder fill the same structure through their own loaders.

use crate::WhisperConfig;

/// One of the two convolutions: `{prefix}.weight` `(d_model, c_in, 3)` and `{prefix}.bias` `(d_model)`,
/// padding 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub c_in: usize,
    pub c_out: usize,
    pub stride: usize,
}

/// Every weight of the encoder. `C`: a convolution, `P`: the position table, `E`: a pre-norm encoder layer
/// (`{prefix}`: `self_attn_layer_norm`, `self_attn.{q,k,v,out}_proj` with no bias on `k`,
/// `final_layer_norm`, `fc1`, `fc2`, sized by `d_model`, the heads and `encoder_ffn_dim`), `N`: a LayerNorm.
#[derive(Debug, Clone)]
pub struct EncoderLayout<C, P, E, N> {
    /// `model.encoder.conv1`: `num_mel_bins → d_model`, stride 1.
    pub conv1: C,
    /// `model.encoder.conv2`: `d_model → d_model`, stride 2.
    pub conv2: C,
    /// `model.encoder.embed_positions.weight`: `max_source_positions × d_model`.
    pub positions: P,
    /// `model.encoder.layers.{i}`.
    pub layers: Vec<E>,
    /// `model.encoder.layer_norm`.
    pub final_norm: N,
}

/// How a backend makes each kind of part: `conv(prefix, shape)`, `positions(key, rows, cols)`,
/// `encoder_layer(prefix)` and `layer_norm(prefix, d)`.
pub struct EncoderPartLoaders<FC, FP, FE, FN> {
    pub conv: FC,
    pub positions: FP,
    pub encoder_layer: FE,
    pub layer_norm: FN,
}

impl<FC, FP, FE, FN> std::fmt::Debug for EncoderPartLoaders<FC, FP, FE, FN> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncoderPartLoaders")
    }
}

impl<C, P, E, N> EncoderLayout<C, P, E, N> {
    /// Asks the loaders for each part of the encoder `config` describes.
    pub fn load_with<Err, FC, FP, FE, FN>(
        config: &WhisperConfig,
        mut parts: EncoderPartLoaders<FC, FP, FE, FN>,
    ) -> Result<Self, Err>
    where
        FC: FnMut(&str, ConvShape) -> Result<C, Err>,
        FP: FnMut(&str, usize, usize) -> Result<P, Err>,
        FE: FnMut(&str) -> Result<E, Err>,
        FN: FnMut(&str, usize) -> Result<N, Err>,
    {
        let d = config.d_model;
        let conv1 = (parts.conv)(
            "model.encoder.conv1",
            ConvShape {
                c_in: config.num_mel_bins,
                c_out: d,
                stride: 1,
            },
        )?;
        let conv2 = (parts.conv)(
            "model.encoder.conv2",
            ConvShape {
                c_in: d,
                c_out: d,
                stride: 2,
            },
        )?;
        let positions = (parts.positions)(
            "model.encoder.embed_positions.weight",
            config.max_source_positions,
            d,
        )?;
        let layers = (0..config.encoder_layers)
            .map(|i| (parts.encoder_layer)(&format!("model.encoder.layers.{i}")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            conv1,
            conv2,
            positions,
            layers,
            final_norm: (parts.layer_norm)("model.encoder.layer_norm", d)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoder_asks_for_the_hugging_face_keys_with_the_config_s_shapes() {
        let config: WhisperConfig = serde_json::from_str(
            r#"{"d_model": 384, "encoder_layers": 2, "encoder_attention_heads": 6,
                "decoder_layers": 4, "decoder_attention_heads": 6, "encoder_ffn_dim": 1536,
                "decoder_ffn_dim": 1536, "num_mel_bins": 80, "max_source_positions": 1500,
                "max_target_positions": 448, "vocab_size": 51864}"#,
        )
        .unwrap();
        let log = std::cell::RefCell::new(Vec::new());
        let say = |line: String| log.borrow_mut().push(line);
        EncoderLayout::<(), (), (), ()>::load_with::<(), _, _, _, _>(
            &config,
            EncoderPartLoaders {
                conv: |p: &str, s: ConvShape| {
                    say(format!("conv {p} {}→{} s{}", s.c_in, s.c_out, s.stride));
                    Ok(())
                },
                positions: |p: &str, r, c| {
                    say(format!("positions {p} {r}×{c}"));
                    Ok(())
                },
                encoder_layer: |p: &str| {
                    say(format!("layer {p}"));
                    Ok(())
                },
                layer_norm: |p: &str, d| {
                    say(format!("norm {p} {d}"));
                    Ok(())
                },
            },
        )
        .unwrap();
        assert_eq!(
            log.into_inner(),
            [
                "conv model.encoder.conv1 80→384 s1",
                "conv model.encoder.conv2 384→384 s2",
                "positions model.encoder.embed_positions.weight 1500×384",
                "layer model.encoder.layers.0",
                "layer model.encoder.layers.1",
                "norm model.encoder.layer_norm 384",
            ]
        );
    }
}
