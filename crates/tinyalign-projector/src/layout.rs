//! The projector's parameters described once: which state-dict prefix each part is and the shape the config
//! implies. The dfdx model (training, CPU inference) and the wgpu model fill the same structure through their
//! own loaders, so a new projector kind's weights are written here and nowhere else.

use crate::{ProjectorConfig, ProjectorKind};

/// The body of a projector kind. `L`: a biased linear layer, `N`: a LayerNorm, `E`: a pre-norm transformer
/// encoder layer (`layers.{i}`: `self_attn_layer_norm`, `self_attn.{q,k,v,out}_proj` with biases,
/// `final_layer_norm`, `fc1`, `fc2`).
#[derive(Debug, Clone)]
pub enum BodyLayout<L, N, E> {
    /// The paper's BridgeFormer: `input_proj.fc{1,2}` → encoder layers → `encoder_layer_norm`.
    BridgeFormer {
        /// `stack · d_audio → d_model`
        input_fc1: L,
        /// `d_model → d_model`
        input_fc2: L,
        layers: Vec<E>,
        encoder_norm: N,
    },
    /// SLAM-ASR's baselines on stacked frames: `proj.fc1` (→ ReLU → `proj.fc2`).
    Stacked { fc1: L, fc2: Option<L> },
}

/// Every parameter of a projector. `R`: an RMSNorm.
#[derive(Debug, Clone)]
pub struct ProjectorLayout<L, N, E, R> {
    pub body: BodyLayout<L, N, E>,
    /// BridgeFormer only: `output_proj.fc1` (`d_model → d_model`) and `output_proj.fc2` (`d_model → d_llm`).
    pub output_fc1: Option<L>,
    pub output_fc2: Option<L>,
    /// `output_norm`: `d_llm` gains.
    pub output_norm: R,
    /// CTC projectors only: `ctc_blank`, `d_llm → 1`.
    pub ctc_blank: Option<L>,
}

/// How a backend makes each kind of part: `linear(prefix, d_in, d_out)` (always with a bias),
/// `layer_norm(prefix, d)`, `encoder_layer(prefix)` (its sizes are the config's `d_model`, `heads`,
/// `ffn_dim`) and `rms_norm(prefix, d)`.
pub struct PartLoaders<FL, FN, FE, FR> {
    pub linear: FL,
    pub layer_norm: FN,
    pub encoder_layer: FE,
    pub rms_norm: FR,
}

impl<FL, FN, FE, FR> std::fmt::Debug for PartLoaders<FL, FN, FE, FR> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartLoaders")
    }
}

impl<L, N, E, R> ProjectorLayout<L, N, E, R> {
    /// Asks the loaders for each part `config`'s kind has, with the shapes it implies.
    pub fn load_with<Err, FL, FN, FE, FR>(
        config: &ProjectorConfig,
        mut parts: PartLoaders<FL, FN, FE, FR>,
    ) -> Result<Self, Err>
    where
        FL: FnMut(&str, usize, usize) -> Result<L, Err>,
        FN: FnMut(&str, usize) -> Result<N, Err>,
        FE: FnMut(&str) -> Result<E, Err>,
        FR: FnMut(&str, usize) -> Result<R, Err>,
    {
        let c = config;
        let stacked = c.stack * c.d_audio;
        let linear = &mut parts.linear;
        let (body, output_fc1, output_fc2) = match c.kind {
            ProjectorKind::BridgeFormer => {
                let input_fc1 = linear("input_proj.fc1", stacked, c.d_model)?;
                let input_fc2 = linear("input_proj.fc2", c.d_model, c.d_model)?;
                let layers = (0..c.layers)
                    .map(|i| (parts.encoder_layer)(&format!("layers.{i}")))
                    .collect::<Result<_, _>>()?;
                let encoder_norm = (parts.layer_norm)("encoder_layer_norm", c.d_model)?;
                let body = BodyLayout::BridgeFormer {
                    input_fc1,
                    input_fc2,
                    layers,
                    encoder_norm,
                };
                let fc1 = linear("output_proj.fc1", c.d_model, c.d_model)?;
                let fc2 = linear("output_proj.fc2", c.d_model, c.d_llm)?;
                (body, Some(fc1), Some(fc2))
            }
            ProjectorKind::Mlp => {
                let fc1 = linear("proj.fc1", stacked, c.d_model)?;
                let fc2 = Some(linear("proj.fc2", c.d_model, c.d_llm)?);
                (BodyLayout::Stacked { fc1, fc2 }, None, None)
            }
            ProjectorKind::Linear => {
                let fc1 = linear("proj.fc1", stacked, c.d_llm)?;
                (BodyLayout::Stacked { fc1, fc2: None }, None, None)
            }
        };
        let ctc_blank = match c.ctc_classes() {
            Some(_) => Some(linear("ctc_blank", c.d_llm, 1)?),
            None => None,
        };
        Ok(Self {
            body,
            output_fc1,
            output_fc2,
            output_norm: (parts.rms_norm)("output_norm", c.d_llm)?,
            ctc_blank,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parts and shapes each kind asks for, in the order asked: the state dict's keys, as PyTorch
    /// names them (tests/fixtures/projector/tinyalign_projector.py).
    #[test]
    fn each_kind_asks_for_its_parts_with_the_config_s_shapes() {
        let asked = |config: &ProjectorConfig| {
            let log = std::cell::RefCell::new(Vec::new());
            let layout = ProjectorLayout::<(), (), (), ()>::load_with::<(), _, _, _, _>(
                config,
                PartLoaders {
                    linear: |p: &str, i, o| {
                        log.borrow_mut().push(format!("linear {p} {i}→{o}"));
                        Ok(())
                    },
                    layer_norm: |p: &str, d| {
                        log.borrow_mut().push(format!("layer_norm {p} {d}"));
                        Ok(())
                    },
                    encoder_layer: |p: &str| {
                        log.borrow_mut().push(format!("encoder_layer {p}"));
                        Ok(())
                    },
                    rms_norm: |p: &str, d| {
                        log.borrow_mut().push(format!("rms_norm {p} {d}"));
                        Ok(())
                    },
                },
            )
            .unwrap();
            drop(layout);
            log.into_inner()
        };
        let bridge = ProjectorConfig::bridgeformer(384, 896, 0.05);
        let (k, dm) = (bridge.stack * 384, bridge.d_model);
        let mut expected = vec![
            format!("linear input_proj.fc1 {k}→{dm}"),
            format!("linear input_proj.fc2 {dm}→{dm}"),
        ];
        expected.extend((0..bridge.layers).map(|i| format!("encoder_layer layers.{i}")));
        expected.extend([
            format!("layer_norm encoder_layer_norm {dm}"),
            format!("linear output_proj.fc1 {dm}→{dm}"),
            format!("linear output_proj.fc2 {dm}→896"),
            "rms_norm output_norm 896".to_string(),
        ]);
        assert_eq!(asked(&bridge), expected);

        let ctc = ProjectorConfig {
            output: crate::ProjectorOutput::Ctc {
                classes: vec![5, 9],
                logit_scale: 16.0,
            },
            ..bridge.clone()
        };
        assert!(asked(&ctc).contains(&"linear ctc_blank 896→1".to_string()));
        let linear = ProjectorConfig {
            kind: ProjectorKind::Linear,
            ..bridge
        };
        assert_eq!(
            asked(&linear),
            vec![
                format!("linear proj.fc1 {k}→896"),
                "rms_norm output_norm 896".to_string()
            ]
        );
    }
}
