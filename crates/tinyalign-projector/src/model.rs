//! The projector on dfdx (training and CPU inference).

use tinyalign_nn::{
    Cpu, Initializer, LayerNorm, Linear, Merge, MultiHeadAttention, NnDevice, ParamTensor,
    Parameters, RmsNorm, Tape, Taped2, Tensor2, Weights, fork, gelu,
};
use tinyalign_weights::TensorMap;

use crate::layout::{BodyLayout, PartLoaders, ProjectorLayout};
use crate::{BatchLayout, ProjectorConfig, ProjectorError, adaptive_pool_weights};

#[derive(Debug, Clone)]
struct EncoderLayer<D: NnDevice> {
    attn_norm: LayerNorm<D>,
    attn: MultiHeadAttention<D>,
    ffn_norm: LayerNorm<D>,
    fc1: Linear<D>,
    fc2: Linear<D>,
}

/// The body as the layout describes it, with dfdx layers.
type Body<D> = BodyLayout<Linear<D>, LayerNorm<D>, EncoderLayer<D>>;

/// The projector on device `D` (the CPU unless training on a GPU).
#[derive(Debug, Clone)]
pub struct Projector<D: NnDevice = Cpu> {
    config: ProjectorConfig,
    dev: D,
    body: Body<D>,
    output_fc1: Option<Linear<D>>,
    output_fc2: Option<Linear<D>>,
    output_norm: RmsNorm<D>,
    /// The CTC head's blank: a learned vector and bias (`ctc_blank`, `d_llm → 1`); CTC projectors only.
    blank: Option<Linear<D>>,
}

/// A CTC head's frozen side on the device: the class embeddings `(d_llm, classes + 1)` already scaled by
/// `logit_scale / (d_llm · output_rms²)`, with a zero column for the blank, and the one-hot row
/// `(1, classes + 1)` that adds the blank's own logit into that last column.
#[derive(Debug, Clone)]
pub struct CtcTable<D: NnDevice = Cpu> {
    table: Tensor2<D>,
    blank_column: Tensor2<D>,
    /// Classes plus the blank.
    pub width: usize,
}

impl<D: NnDevice> Projector<D> {
    /// Builds the projector from `w`: loading every tensor (a checkpoint) or initialising it
    /// (`Weights::init`), through the same code.
    pub fn new(config: ProjectorConfig, w: &Weights<'_, D>) -> Result<Self, ProjectorError> {
        config.validate()?;
        let c = &config;
        let eps = f64::from(c.norm_eps);
        let layout = ProjectorLayout::load_with(
            c,
            PartLoaders {
                linear: |prefix: &str, d_in, d_out| -> Result<_, ProjectorError> {
                    Ok(Linear::load(&w.pp(prefix), d_in, d_out, true)?)
                },
                layer_norm: |prefix: &str, d| -> Result<_, ProjectorError> {
                    Ok(LayerNorm::load(&w.pp(prefix), d, eps)?)
                },
                encoder_layer: |prefix: &str| -> Result<_, ProjectorError> {
                    let l = w.pp(prefix);
                    Ok(EncoderLayer {
                        attn_norm: LayerNorm::load(&l.pp("self_attn_layer_norm"), c.d_model, eps)?,
                        attn: MultiHeadAttention::load(
                            &l.pp("self_attn"),
                            c.d_model,
                            c.heads,
                            true,
                        )?,
                        ffn_norm: LayerNorm::load(&l.pp("final_layer_norm"), c.d_model, eps)?,
                        fc1: Linear::load(&l.pp("fc1"), c.d_model, c.ffn_dim, true)?,
                        fc2: Linear::load(&l.pp("fc2"), c.ffn_dim, c.d_model, true)?,
                    })
                },
                rms_norm: |prefix: &str, d| -> Result<_, ProjectorError> {
                    Ok(RmsNorm::load(&w.pp(prefix), d, eps)?)
                },
            },
        )?;
        Ok(Self {
            blank: layout.ctc_blank,
            output_norm: layout.output_norm,
            dev: w.device().clone(),
            config,
            body: layout.body,
            output_fc1: layout.output_fc1,
            output_fc2: layout.output_fc2,
        })
    }

    /// A freshly initialised projector (seeded).
    pub fn init(config: ProjectorConfig, seed: u64, dev: D) -> Result<Self, ProjectorError> {
        let initializer = Initializer::new(seed);
        Self::new(config, &Weights::init(&initializer, dev))
    }

    /// A projector from a state dict (PyTorch keys, as [`Self::state_dict`] writes them).
    pub fn load(
        config: ProjectorConfig,
        weights: &TensorMap,
        dev: D,
    ) -> Result<Self, ProjectorError> {
        Self::new(config, &Weights::new(weights, dev))
    }

    pub fn config(&self) -> &ProjectorConfig {
        &self.config
    }

    pub fn device(&self) -> &D {
        &self.dev
    }

    pub fn parameter_count(&mut self) -> usize {
        tinyalign_nn::parameter_count(self)
    }

    /// Every parameter in PyTorch layout under its key.
    pub fn state_dict(&mut self) -> TensorMap {
        tinyalign_nn::state_dict(self, "projector")
    }

    /// The layout of a batch of utterances with these frame counts (each ≥ 1).
    pub fn layout(&self, lengths: &[usize]) -> Result<BatchLayout, ProjectorError> {
        if lengths.is_empty() {
            return Err(ProjectorError::Input("an empty batch".into()));
        }
        if let Some(i) = lengths.iter().position(|&l| l == 0) {
            return Err(ProjectorError::Input(format!(
                "utterance {i} has no frames"
            )));
        }
        let stack = self.stack();
        let longest = lengths.iter().copied().max().unwrap_or(1);
        let tokens: Vec<usize> = lengths.iter().map(|&l| self.config.tokens_for(l)).collect();
        Ok(BatchLayout {
            lengths: lengths.to_vec(),
            frames: longest.div_ceil(stack) * stack,
            max_tokens: tokens.iter().copied().max().unwrap_or(1),
            tokens,
        })
    }

    fn stack(&self) -> usize {
        self.config.stack
    }

    /// Pads utterances (`frames_i × d_audio` each, row-major) into one `(b·n, d_audio)` host buffer with
    /// zeros, returning it with its layout.
    pub fn pad_batch(
        &self,
        utterances: &[&[f32]],
    ) -> Result<(Vec<f32>, BatchLayout), ProjectorError> {
        let d = self.config.d_audio;
        let mut lengths = Vec::with_capacity(utterances.len());
        for (i, u) in utterances.iter().enumerate() {
            if !u.len().is_multiple_of(d) {
                return Err(ProjectorError::Input(format!(
                    "utterance {i} has {} values, not a whole number of {d}-wide frames",
                    u.len()
                )));
            }
            if u.iter().any(|v| !v.is_finite()) {
                return Err(ProjectorError::Input(format!(
                    "utterance {i} has NaN or infinite features"
                )));
            }
            lengths.push(u.len() / d);
        }
        let layout = self.layout(&lengths)?;
        let mut data = vec![0.0; layout.batch() * layout.frames * d];
        for (i, u) in utterances.iter().enumerate() {
            data[i * layout.frames * d..i * layout.frames * d + u.len()].copy_from_slice(u);
        }
        Ok((data, layout))
    }

    /// Audio tokens for a padded batch `x` `(b·n, d_audio)` → `(b·t_max, d_llm)`; rows past an item's own
    /// token count are padding (see `layout.tokens`). Differentiable when `x` is traced.
    pub fn forward<T: Tape<f32, D> + Merge<T>>(
        &self,
        x: Taped2<T, D>,
        layout: &BatchLayout,
    ) -> Taped2<T, D> {
        let (b, n, d) = (layout.batch(), layout.frames, self.config.d_audio);
        // dfdx does not check runtime shapes in element-wise ops; a mismatch here is a caller bug.
        assert_eq!(
            tinyalign_nn::dims(&x),
            (b * n, d),
            "projector input must be (batch · frames, d_audio) as `pad_batch` lays it out"
        );
        let real_frames: Vec<bool> = (0..b * n).map(|r| r % n < layout.lengths[r / n]).collect();
        let x = tinyalign_nn::zero_rows(x, &real_frames);
        // Every kind first concatenates `stack` consecutive frames: (b·n, d) → (b·n/k, k·d). For BridgeFormer
        // this also cuts attention's cost k² times (Whisper gives 50 frames/s; 30 s would be 1500).
        let k = self.config.stack;
        let stacked = tinyalign_nn::reshape_rows(x, b * n / k, k * d);
        let stacked_layout = BatchLayout {
            lengths: layout.lengths.iter().map(|l| l.div_ceil(k)).collect(),
            frames: n / k,
            ..layout.clone()
        };
        let hidden = match &self.body {
            Body::BridgeFormer { .. } => self.encode_frames(stacked, &stacked_layout),
            Body::Stacked { fc1, fc2 } => {
                let mut h = fc1.forward(stacked);
                if let Some(fc2) = fc2 {
                    h = fc2.forward(tinyalign_nn::relu(h));
                }
                h
            }
        };
        // A CTC projector keeps every stacked frame (its layout's tokens are the stacked lengths).
        let pooled = if self.blank.is_some() {
            hidden
        } else {
            self.pool(hidden, &stacked_layout, n / k)
        };
        let projected = match (&self.output_fc1, &self.output_fc2) {
            (Some(fc1), Some(fc2)) => fc2.forward(gelu(fc1.forward(pooled))),
            _ => pooled,
        };
        self.output_norm.forward(projected) * self.config.output_rms
    }

    /// BridgeFormer's hidden states before pooling, `(b·m, d_model)` for `m` stacked frames per item (input
    /// `(b·m, stack·d_audio)`, `layout` counted in stacked frames): no positional encoding, so permuting an
    /// utterance's stacked frames permutes these rows the same way.
    pub fn encode_frames<T: Tape<f32, D> + Merge<T>>(
        &self,
        x: Taped2<T, D>,
        layout: &BatchLayout,
    ) -> Taped2<T, D> {
        let Body::BridgeFormer {
            input_fc1,
            input_fc2,
            layers,
            encoder_norm,
        } = &self.body
        else {
            return x;
        };
        let (b, n) = (layout.batch(), layout.frames);
        let key_bias: Vec<f32> = (0..b * n)
            .map(|r| {
                if r % n < layout.lengths[r / n] {
                    0.0
                } else {
                    -1e9
                }
            })
            .collect();
        let key_bias = tinyalign_nn::from_vec2(&self.dev, key_bias, b, n);
        let mut h = input_fc2.forward(gelu(input_fc1.forward(x)));
        for layer in layers {
            let attended =
                layer
                    .attn
                    .forward_batch(layer.attn_norm.forward(fork(&h)), b, n, &key_bias);
            h = h + attended;
            let ffn = layer
                .fc2
                .forward(gelu(layer.fc1.forward(layer.ffn_norm.forward(fork(&h)))));
            h = h + ffn;
        }
        encoder_norm.forward(h)
    }

    fn pool<T: Tape<f32, D>>(
        &self,
        h: Taped2<T, D>,
        layout: &BatchLayout,
        n: usize,
    ) -> Taped2<T, D> {
        let b = layout.batch();
        let weights = adaptive_pool_weights(&layout.lengths, &layout.tokens, n, layout.max_tokens);
        let weights = tinyalign_nn::from_vec3(&self.dev, weights, (b, layout.max_tokens, n));
        tinyalign_nn::mix_frames(h, &weights, b, n)
    }

    /// The CTC head's frozen side from the LLM's input embeddings of the classes, `(classes, d_llm)`
    /// row-major in the config's class order.
    pub fn ctc_table(&self, class_embeddings: &[f32]) -> Result<CtcTable<D>, ProjectorError> {
        let c = &self.config;
        let crate::ProjectorOutput::Ctc {
            classes,
            logit_scale,
        } = &c.output
        else {
            return Err(ProjectorError::Input(
                "this projector has no CTC head (it pools to T tokens)".into(),
            ));
        };
        let (k, d) = (classes.len(), c.d_llm);
        if class_embeddings.len() != k * d {
            return Err(ProjectorError::Input(format!(
                "{} class embedding values for {k} classes of width {d}",
                class_embeddings.len()
            )));
        }
        self.ctc_table_of(class_embeddings, *logit_scale)
    }

    /// The head's table over any subset of the classes (`class_embeddings` `(k, d_llm)`, the blank last at
    /// index k): training with sampled classes scores each batch against a few thousand of them.
    pub fn ctc_table_subset(
        &self,
        class_embeddings: &[f32],
    ) -> Result<CtcTable<D>, ProjectorError> {
        let crate::ProjectorOutput::Ctc { logit_scale, .. } = &self.config.output else {
            return Err(ProjectorError::Input(
                "this projector has no CTC head (it pools to T tokens)".into(),
            ));
        };
        if class_embeddings.is_empty() || !class_embeddings.len().is_multiple_of(self.config.d_llm)
        {
            return Err(ProjectorError::Input(format!(
                "{} class embedding values are not rows of width {}",
                class_embeddings.len(),
                self.config.d_llm
            )));
        }
        self.ctc_table_of(class_embeddings, *logit_scale)
    }

    fn ctc_table_of(
        &self,
        class_embeddings: &[f32],
        logit_scale: f32,
    ) -> Result<CtcTable<D>, ProjectorError> {
        let c = &self.config;
        let d = c.d_llm;
        let k = class_embeddings.len() / d;
        let width = k + 1;
        let scale = logit_scale / (d as f32 * c.output_rms * c.output_rms);
        let mut table = vec![0.0; d * width];
        for (j, row) in class_embeddings.chunks_exact(d).enumerate() {
            for (i, v) in row.iter().enumerate() {
                table[i * width + j] = v * scale;
            }
        }
        let mut blank_column = vec![0.0; width];
        blank_column[k] = 1.0;
        Ok(CtcTable {
            table: tinyalign_nn::from_vec2(&self.dev, table, d, width),
            blank_column: tinyalign_nn::from_vec2(&self.dev, blank_column, 1, width),
            width,
        })
    }

    /// CTC logits of output rows `out` `(rows, d_llm)` → `(rows, classes + 1)`, the blank last.
    /// Differentiable in `out` and the blank's parameters. Panics on a pooled projector (a caller bug:
    /// [`Self::ctc_table`] refuses those).
    pub fn ctc_logits<T: Tape<f32, D> + Merge<T>>(
        &self,
        out: Taped2<T, D>,
        table: &CtcTable<D>,
    ) -> Taped2<T, D> {
        let blank = self
            .blank
            .as_ref()
            .expect("ctc_logits needs a CTC projector");
        let classes = tinyalign_nn::matmul_const(fork(&out), &table.table);
        classes + tinyalign_nn::matmul_const(blank.forward(out), &table.blank_column)
    }

    /// Host convenience for a CTC projector: one utterance's frame vectors `(n, d_llm)`, their logits
    /// `(n, classes + 1)` and n.
    pub fn project_ctc(
        &self,
        features: &[f32],
        table: &CtcTable<D>,
    ) -> Result<(Vec<f32>, Vec<f32>, usize), ProjectorError> {
        if self.blank.is_none() {
            return Err(ProjectorError::Input(
                "this projector has no CTC head (it pools to T tokens)".into(),
            ));
        }
        let (data, layout) = self.pad_batch(&[features])?;
        let x: Tensor2<D> =
            tinyalign_nn::from_vec2(&self.dev, data, layout.frames, self.config.d_audio);
        let out = self.forward(x, &layout);
        let logits = tinyalign_nn::to_vec2(&self.ctc_logits(out.clone(), table));
        let n = layout.tokens[0];
        let (d, w) = (self.config.d_llm, table.width);
        let mut out = tinyalign_nn::to_vec2(&out);
        out.truncate(n * d);
        Ok((out, logits[..n * w].to_vec(), n))
    }

    /// Host convenience: the audio tokens of one utterance `(frames × d_audio)` → `(T, d_llm)` row-major.
    pub fn project(&self, features: &[f32]) -> Result<(Vec<f32>, usize), ProjectorError> {
        let (data, layout) = self.pad_batch(&[features])?;
        let x: Tensor2<D> =
            tinyalign_nn::from_vec2(&self.dev, data, layout.frames, self.config.d_audio);
        let out = tinyalign_nn::to_vec2(&self.forward(x, &layout));
        Ok((out, layout.tokens[0]))
    }
}

impl<D: NnDevice> Parameters<D> for Projector<D> {
    fn visit(&mut self, f: &mut dyn FnMut(&str, ParamTensor<'_, D>)) {
        match &mut self.body {
            Body::BridgeFormer {
                input_fc1,
                input_fc2,
                layers,
                encoder_norm,
            } => {
                input_fc1.visit(f);
                input_fc2.visit(f);
                for layer in layers {
                    layer.attn_norm.visit(f);
                    layer.attn.visit(f);
                    layer.ffn_norm.visit(f);
                    layer.fc1.visit(f);
                    layer.fc2.visit(f);
                }
                encoder_norm.visit(f);
            }
            Body::Stacked { fc1, fc2 } => {
                fc1.visit(f);
                if let Some(fc2) = fc2 {
                    fc2.visit(f);
                }
            }
        }
        for fc in [&mut self.output_fc1, &mut self.output_fc2]
            .into_iter()
            .flatten()
        {
            fc.visit(f);
        }
        self.output_norm.visit(f);
        if let Some(blank) = &mut self.blank {
            blank.visit(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ProjectorKind, TokenCount};
    use proptest::prelude::*;

    fn lcg(n: usize, seed: u64) -> Vec<f32> {
        tinyalign_testkit::lcg64(n, seed, 1.0)
    }

    /// Small sizes so the properties run quickly; the structure is the real one.
    fn small(kind: ProjectorKind, tokens: TokenCount) -> ProjectorConfig {
        let base = match kind {
            ProjectorKind::BridgeFormer => ProjectorConfig::bridgeformer(12, 10, 0.05),
            other => ProjectorConfig::stacked(other, 12, 10, 0.05),
        };
        ProjectorConfig {
            d_model: 16,
            heads: 2,
            ffn_dim: 24,
            stack: if kind == ProjectorKind::BridgeFormer {
                2
            } else {
                3
            },
            tokens,
            ..base
        }
    }

    const KINDS: [ProjectorKind; 3] = [
        ProjectorKind::BridgeFormer,
        ProjectorKind::Mlp,
        ProjectorKind::Linear,
    ];

    fn run(p: &Projector, data: Vec<f32>, layout: &BatchLayout) -> Vec<f32> {
        let x = tinyalign_nn::from_vec2(
            p.device(),
            data,
            layout.batch() * layout.frames,
            p.config().d_audio,
        );
        tinyalign_nn::to_vec2(&p.forward(x, layout))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// An utterance's tokens are the same alone and in a batch whose padding holds garbage.
        #[test]
        fn padding_never_changes_the_output(kind in 0usize..3, len in 1usize..40, other in 1usize..60, per_second: bool, seed: u64) {
            let tokens = if per_second { TokenCount::PerSecond { per_second: 20.0, min: 2, max: 12 } } else { TokenCount::Fixed { tokens: 6 } };
            let p = Projector::init(small(KINDS[kind], tokens), seed, tinyalign_nn::cpu()).unwrap();
            let d = p.config().d_audio;
            let (a, b) = (lcg(len * d, seed ^ 1), lcg(other * d, seed ^ 2));
            let (alone, alone_layout) = p.pad_batch(&[&a]).unwrap();
            let alone_out = run(&p, alone, &alone_layout);
            let (mut both, layout) = p.pad_batch(&[&a, &b]).unwrap();
            for r in 0..layout.batch() * layout.frames {
                if r % layout.frames >= layout.lengths[r / layout.frames] {
                    both[r * d..(r + 1) * d].iter_mut().for_each(|v| *v = 1e4);
                }
            }
            let both_out = run(&p, both, &layout);
            let (t, d_llm) = (layout.tokens[0], p.config().d_llm);
            prop_assert_eq!(t, alone_layout.tokens[0]);
            for (x, y) in alone_out[..t * d_llm].iter().zip(&both_out[..t * d_llm]) {
                prop_assert!((x - y).abs() < 1e-5, "{:?} len {} with {}: {} vs {}", KINDS[kind], len, other, x, y);
            }
        }

        /// Without positional encoding, permuting an utterance's frames permutes BridgeFormer's hidden rows.
        #[test]
        fn bridgeformer_is_permutation_equivariant_before_pooling(len in 2usize..30, seed: u64) {
            // Stacking off, so "frames" here are Whisper frames.
            let config = ProjectorConfig { stack: 1, ..small(ProjectorKind::BridgeFormer, TokenCount::Fixed { tokens: 4 }) };
            let p = Projector::init(config, seed, tinyalign_nn::cpu()).unwrap();
            let d = p.config().d_audio;
            let frames = lcg(len * d, seed);
            let perm: Vec<usize> = (0..len).map(|i| (i * 7 + 3) % len).collect();
            prop_assume!(perm.iter().collect::<std::collections::HashSet<_>>().len() == len);
            let permuted: Vec<f32> = perm.iter().flat_map(|&i| frames[i * d..(i + 1) * d].to_vec()).collect();
            let layout = p.layout(&[len]).unwrap();
            let hidden = |data: Vec<f32>| tinyalign_nn::to_vec2(&p.encode_frames(tinyalign_nn::from_vec2(p.device(), data, len, d), &layout));
            let (h, hp) = (hidden(frames), hidden(permuted));
            let m = p.config().d_model;
            for (row, &src) in perm.iter().enumerate() {
                for c in 0..m {
                    prop_assert!((hp[row * m + c] - h[src * m + c]).abs() < 1e-4);
                }
            }
        }

        /// Any length ≥ 1 gives T finite tokens at the LLM's embedding scale.
        #[test]
        fn any_length_gives_t_tokens(kind in 0usize..3, len in 1usize..300) {
            let tokens = TokenCount::PerSecond { per_second: 10.0, min: 1, max: 20 };
            let p = Projector::init(small(KINDS[kind], tokens), 7, tinyalign_nn::cpu()).unwrap();
            let (out, t) = p.project(&lcg(len * 12, len as u64)).unwrap();
            prop_assert_eq!(t, ((len as f32 / 50.0 * 10.0).round() as usize).clamp(1, 20));
            prop_assert_eq!(out.len(), t * 10);
            for row in out.chunks_exact(10) {
                let rms = (row.iter().map(|v| v * v).sum::<f32>() / 10.0).sqrt();
                prop_assert!((rms - 0.05).abs() < 1e-3, "row RMS {} (target 0.05)", rms);
            }
        }
    }

    /// A CTC projector of `kind` over 5 classes, with embedding rows for them.
    fn ctc_projector(kind: ProjectorKind, seed: u64) -> (Projector, Vec<f32>) {
        let config = ProjectorConfig {
            output: crate::ProjectorOutput::Ctc {
                classes: vec![3, 8, 9, 20, 41],
                logit_scale: 12.0,
            },
            ..small(kind, TokenCount::Fixed { tokens: 4 })
        };
        let p = Projector::init(config, seed, tinyalign_nn::cpu()).unwrap();
        (p, lcg(5 * 10, seed ^ 9).iter().map(|v| v * 0.05).collect())
    }

    /// Logits against a plain-Rust reference: κ·(o·e_k)/(d·rms²) per class, then w·o + b for the blank;
    /// one row per stacked frame; padding changes nothing; the blank's parameters learn.
    #[test]
    fn ctc_head_matches_a_reference_and_learns() {
        for kind in KINDS {
            let (mut p, embeddings) = ctc_projector(kind, 4);
            let table = p.ctc_table(&embeddings).unwrap();
            let features = lcg(23 * 12, 6);
            let (out, logits, n) = p.project_ctc(&features, &table).unwrap();
            assert_eq!(n, 23usize.div_ceil(p.config().stack), "{kind:?}");
            assert_eq!((out.len(), logits.len()), (n * 10, n * 6));
            let state = p.state_dict();
            let (w, b) = (
                &state.get("ctc_blank.weight").unwrap().data,
                state.get("ctc_blank.bias").unwrap().data[0],
            );
            let scale = 12.0 / (10.0 * 0.05 * 0.05);
            for (o, row) in out.chunks_exact(10).zip(logits.chunks_exact(6)) {
                for (k, e) in embeddings.chunks_exact(10).enumerate() {
                    let want = scale * o.iter().zip(e).map(|(x, y)| x * y).sum::<f32>();
                    assert!((row[k] - want).abs() < 1e-3 * want.abs().max(1.0));
                }
                let blank = o.iter().zip(w).map(|(x, y)| x * y).sum::<f32>() + b;
                assert!((row[5] - blank).abs() < 1e-4);
            }
            // In a batch with a longer utterance, the first keeps its rows.
            let other = lcg(40 * 12, 7);
            let (data, layout) = p.pad_batch(&[&features, &other]).unwrap();
            assert_eq!(layout.tokens, [n, 40usize.div_ceil(p.config().stack)]);
            let batched = run(&p, data.clone(), &layout);
            for (x, y) in batched[..n * 10].iter().zip(&out) {
                assert!((x - y).abs() < 1e-5, "{kind:?}: {x} vs {y}");
            }
            // Any loss of the logits reaches the blank's parameters.
            let x = tinyalign_nn::from_vec2(p.device(), data, layout.batch() * layout.frames, 12);
            let logits = p.ctc_logits(p.forward(tinyalign_nn::traced(&x), &layout), &table);
            let (rows, width) = tinyalign_nn::dims(&logits);
            let weights = tinyalign_nn::from_vec2(p.device(), lcg(rows * width, 8), rows, width);
            let mut grads = tinyalign_nn::backward(tinyalign_nn::weighted_sum(logits, &weights));
            let mut missing = Vec::new();
            p.visit(&mut |key, t| {
                if !tinyalign_nn::has_nonzero_grad(&t, &mut grads) {
                    missing.push(key.to_string());
                }
            });
            assert!(missing.is_empty(), "{kind:?}: no gradient for {missing:?}");
        }
        // A pooled projector has no head; a wrong-sized table is refused.
        let pooled = Projector::init(
            small(ProjectorKind::Mlp, TokenCount::Fixed { tokens: 4 }),
            0,
            tinyalign_nn::cpu(),
        )
        .unwrap();
        assert!(pooled.ctc_table(&[0.0; 50]).is_err());
        assert!(
            ctc_projector(ProjectorKind::Mlp, 1)
                .0
                .ctc_table(&[0.0; 49])
                .is_err()
        );
        let unsorted = ProjectorConfig {
            output: crate::ProjectorOutput::Ctc {
                classes: vec![4, 2],
                logit_scale: 1.0,
            },
            ..small(ProjectorKind::Mlp, TokenCount::Fixed { tokens: 4 })
        };
        assert!(unsorted.validate().is_err());
    }

    #[test]
    fn state_dict_round_trips_and_names_pytorch_keys() {
        for kind in KINDS {
            let mut p = Projector::init(
                small(kind, TokenCount::Fixed { tokens: 5 }),
                3,
                tinyalign_nn::cpu(),
            )
            .unwrap();
            let state = p.state_dict();
            let count = p.parameter_count();
            assert_eq!(count, state.iter().map(|(_, t)| t.numel()).sum::<usize>());
            let mut loaded =
                Projector::load(p.config().clone(), &state, tinyalign_nn::cpu()).unwrap();
            let x = lcg(17 * 12, 5);
            assert_eq!(p.project(&x).unwrap(), loaded.project(&x).unwrap());
            assert_eq!(loaded.parameter_count(), count);
            if kind == ProjectorKind::BridgeFormer {
                let fc1 = state.get("layers.1.self_attn.q_proj.weight").unwrap();
                assert_eq!(fc1.shape, [16, 16]);
                assert_eq!(
                    state.get("input_proj.fc1.weight").unwrap().shape,
                    [16, 24],
                    "(out, in) as PyTorch, in = 2 stacked frames"
                );
            }
            // A checkpoint of another size is refused, naming the tensor.
            let other = ProjectorConfig {
                d_llm: 11,
                ..p.config().clone()
            };
            let err = Projector::load(other, &state, tinyalign_nn::cpu())
                .unwrap_err()
                .to_string();
            assert!(err.contains("weight"), "{err}");
        }
    }

    #[test]
    fn default_sizes_and_bad_input() {
        let mut p = Projector::init(
            ProjectorConfig::bridgeformer(384, 576, 0.1),
            0,
            tinyalign_nn::cpu(),
        )
        .unwrap();
        let params = p.parameter_count();
        assert!(
            (1_000_000..5_000_000).contains(&params),
            "{params} parameters"
        );
        assert!(p.project(&[]).is_err());
        assert!(p.project(&[0.0; 385]).is_err());
        assert!(p.project(&[f32::NAN; 384]).is_err());
        let bad = ProjectorConfig {
            heads: 3,
            ..ProjectorConfig::bridgeformer(384, 576, 0.1)
        };
        assert!(Projector::init(bad, 0, tinyalign_nn::cpu()).is_err());
    }

    /// One AdamW step on an MSE to a target moves the output towards it, and every parameter gets a gradient.
    #[test]
    fn training_step_reduces_the_loss_and_reaches_every_parameter() {
        for kind in KINDS {
            let mut p = Projector::init(
                small(kind, TokenCount::Fixed { tokens: 4 }),
                11,
                tinyalign_nn::cpu(),
            )
            .unwrap();
            let utterances = [lcg(20 * 12, 1), lcg(9 * 12, 2)];
            let refs: Vec<&[f32]> = utterances.iter().map(Vec::as_slice).collect();
            let (data, layout) = p.pad_batch(&refs).unwrap();
            let x = tinyalign_nn::from_vec2(p.device(), data, layout.batch() * layout.frames, 12);
            let target = tinyalign_nn::from_vec2(
                p.device(),
                lcg(layout.batch() * layout.max_tokens * 10, 3)
                    .iter()
                    .map(|v| v * 0.05)
                    .collect(),
                layout.batch() * layout.max_tokens,
                10,
            );
            let rows = layout.batch() * layout.max_tokens;
            let mask = tinyalign_nn::from_vec2(p.device(), vec![1.0; rows * 10], rows, 10);
            let loss = |p: &Projector| {
                tinyalign_nn::masked_mse(
                    p.forward(tinyalign_nn::traced(&x), &layout),
                    &target,
                    &mask,
                )
            };
            let mut opt = tinyalign_nn::AdamW::new(0.0, Some(1.0));
            let before = loss(&p);
            let value_before = tinyalign_nn::scalar_value(&before);
            let mut grads = tinyalign_nn::backward(before);
            let mut missing = Vec::new();
            p.visit(&mut |key, t| {
                if !tinyalign_nn::has_nonzero_grad(&t, &mut grads) {
                    missing.push(key.to_string());
                }
            });
            assert!(missing.is_empty(), "{kind:?}: no gradient for {missing:?}");
            for _ in 0..5 {
                let l = loss(&p);
                let mut g = tinyalign_nn::backward(l);
                opt.step(&mut p, &mut g, 1e-2);
            }
            let after = tinyalign_nn::scalar_value(&loss(&p));
            assert!(
                after < value_before,
                "{kind:?}: loss {value_before} → {after}"
            );
        }
    }

    /// The same projector, batch and loss on the CPU (host kernels) and on CUDA (dfdx's ops, cuBLAS): the
    /// outputs, the loss and every parameter's gradient agree, and so do the weights after three AdamW
    /// steps. Needs a GPU: `cargo test -p tinyalign-projector --features cuda cuda`.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_training_matches_the_cpu() {
        use tinyalign_nn::{AdamW, Cuda, NnDevice, Scalar};
        let config = ProjectorConfig {
            d_model: 64,
            heads: 4,
            ffn_dim: 128,
            layers: 2,
            stack: 4,
            tokens: TokenCount::PerSecond {
                per_second: 5.0,
                min: 2,
                max: 12,
            },
            ..ProjectorConfig::bridgeformer(40, 48, 0.05)
        };
        let cuda = tinyalign_nn::cuda(0).expect("a CUDA device");
        let mut cpu_p = Projector::init(config.clone(), 7, tinyalign_nn::cpu()).unwrap();
        let mut gpu_p: Projector<Cuda> =
            Projector::load(config.clone(), &cpu_p.state_dict(), cuda.clone()).unwrap();
        let d = config.d_audio;
        let utterances: Vec<Vec<f32>> = [37usize, 120, 81]
            .iter()
            .enumerate()
            .map(|(i, &frames)| lcg(frames * d, 100 + i as u64))
            .collect();
        let refs: Vec<&[f32]> = utterances.iter().map(Vec::as_slice).collect();
        let (data, layout) = cpu_p.pad_batch(&refs).unwrap();
        let rows = layout.batch() * layout.max_tokens;
        let target = lcg(rows * config.d_llm, 200);
        let weights: Vec<f32> = (0..rows)
            .flat_map(|r| {
                let keep = f32::from(u8::from(
                    r % layout.max_tokens < layout.tokens[r / layout.max_tokens],
                ));
                std::iter::repeat_n(keep, config.d_llm)
            })
            .collect();
        /// What one training step computed, on the host.
        struct Seen {
            output: Vec<f32>,
            loss: f32,
            gradients: Vec<(String, Vec<f32>)>,
        }
        fn step<D: NnDevice>(
            p: &mut Projector<D>,
            opt: &mut AdamW<D>,
            (data, layout, target, weights): (&[f32], &BatchLayout, &[f32], &[f32]),
        ) -> Seen {
            let dev = p.device().clone();
            let (n, d) = (layout.batch() * layout.frames, p.config().d_audio);
            let x = tinyalign_nn::from_vec2(&dev, data.to_vec(), n, d);
            let rows = target.len() / p.config().d_llm;
            let t = tinyalign_nn::from_vec2(&dev, target.to_vec(), rows, p.config().d_llm);
            let w = tinyalign_nn::from_vec2(&dev, weights.to_vec(), rows, p.config().d_llm);
            let inference = tinyalign_nn::to_vec2(&p.forward(x.clone(), layout));
            let out = p.forward(tinyalign_nn::traced(&x), layout);
            let loss: Scalar<_, D> = tinyalign_nn::masked_mse(out, &t, &w);
            let value = tinyalign_nn::scalar_value(&loss);
            let mut grads = tinyalign_nn::backward(loss);
            let host_grads = tinyalign_nn::parameter_gradients(p, &mut grads);
            opt.step(p, &mut grads, 1e-3);
            Seen {
                output: inference,
                loss: value,
                gradients: host_grads,
            }
        }
        let close = |what: &str, a: &[f32], b: &[f32], tolerance: f32| {
            let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
            let worst = a
                .iter()
                .zip(b)
                .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                worst <= tolerance * scale,
                "{what}: max difference {worst} against max |value| {scale}"
            );
        };
        let (mut cpu_opt, mut gpu_opt) = (AdamW::new(0.01, Some(1.0)), AdamW::new(0.01, Some(1.0)));
        for i in 0..3 {
            let inputs = (
                data.as_slice(),
                &layout,
                target.as_slice(),
                weights.as_slice(),
            );
            let (on_cpu, on_gpu) = (
                step(&mut cpu_p, &mut cpu_opt, inputs),
                step(&mut gpu_p, &mut gpu_opt, inputs),
            );
            close(
                &format!("step {i} output"),
                &on_cpu.output,
                &on_gpu.output,
                1e-4,
            );
            close(
                &format!("step {i} loss"),
                &[on_cpu.loss],
                &[on_gpu.loss],
                1e-5,
            );
            assert_eq!(on_cpu.gradients.len(), on_gpu.gradients.len());
            for ((key, a), (_, b)) in on_cpu.gradients.iter().zip(&on_gpu.gradients) {
                close(&format!("step {i} gradient of {key}"), a, b, 1e-3);
            }
        }
        let (after_cpu, after_gpu) = (cpu_p.state_dict(), gpu_p.state_dict());
        for (key, tensor) in after_cpu.iter() {
            close(
                &format!("{key} after 3 steps"),
                &tensor.data,
                &after_gpu.get(key).unwrap().data,
                1e-3,
            );
        }
    }
}
