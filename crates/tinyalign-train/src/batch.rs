//! Examples (cached encoder features, EmbedLink targets, token ids) and the padded, length-bucketed batches
//! they are trained in.

use std::borrow::Cow;

use tinyalign_data::{AugmentPolicy, Augmentation, Manifest, Utterance};
use tinyalign_llm::LlamaModel;
use tinyalign_nn::{NnDevice, Tensor2};
use tinyalign_projector::{Projector, ProjectorConfig};

use crate::TrainError;
use crate::feature_store::FeatureFile;
use crate::features::{FeatureCache, Features};
use crate::in_the_loop::LoopContext;
use crate::prepare::Augmenter;
use crate::targets::{Target, TargetBuilder, TargetTable};

/// The example of utterance `u` (augmented by `augment`): its cached encoder features, its transcript's
/// token ids, its EmbedLink target length (the projector's T; pooled objectives only), and with `answers`
/// (LLM-in-the-loop) the answer the LLM must give.
pub(crate) fn make_example(
    cache: &mut FeatureCache,
    manifest: &Manifest,
    u: &Utterance,
    augment: Option<&Augmentation>,
    projector: &ProjectorConfig,
    targets: &TargetBuilder<'_>,
    answers: Option<(&LoopContext, &LlamaModel)>,
) -> Result<Example, TrainError> {
    let (file, _) = cache.store(manifest, u, augment)?;
    let t = projector.tokens_for(file.frames);
    let (answer_ids, answer_embeds) = match answers {
        None => (Vec::new(), Vec::new()),
        Some((context, llm)) => {
            let ids = context.answer_ids(llm, &u.text);
            let embeds = llm.embed_tokens(&ids)?;
            (ids, embeds)
        }
    };
    let target = match projector.ctc_classes() {
        Some(_) => targets.ids_only(&u.text)?,
        None => targets.target(&u.text, t)?,
    };
    Ok(Example {
        target,
        features: ExampleFeatures::File(file),
        answer_ids,
        answer_embeds,
    })
}

/// Makes the examples of a set of utterances, with their augmented copies.
pub(crate) struct ExampleBuilder<'a, 'llm> {
    pub(crate) cache: &'a mut FeatureCache,
    pub(crate) manifest: &'a Manifest,
    pub(crate) projector: &'a ProjectorConfig,
    pub(crate) targets: &'a TargetBuilder<'llm>,
    pub(crate) answers: Option<(&'a LoopContext, &'a LlamaModel)>,
    /// One JSON line per augmented copy made: `{"id", "copy", "augmentation"}` (its tag).
    pub(crate) augmentations: String,
}

impl ExampleBuilder<'_, '_> {
    /// Per utterance the clean example, then `policy.copies` augmented ones ([`Augmenter::copy`]).
    /// `progress(what, done, total)` after each utterance.
    pub(crate) fn build(
        &mut self,
        utts: &[&Utterance],
        what: &str,
        policy: &AugmentPolicy,
        progress: &mut dyn FnMut(&str, usize, usize),
    ) -> Result<Vec<Example>, TrainError> {
        let mut out = Vec::with_capacity(utts.len() * (1 + policy.copies));
        let augmenter = Augmenter::new(policy, self.manifest, utts);
        for (i, u) in utts.iter().enumerate() {
            for copy in 0..=policy.copies {
                let augment = augmenter.copy(u, copy);
                if let Some(a) = &augment {
                    let line =
                        serde_json::json!({"id": u.id, "copy": copy, "augmentation": a.tag()});
                    self.augmentations.push_str(&line.to_string());
                    self.augmentations.push('\n');
                }
                out.push(make_example(
                    self.cache,
                    self.manifest,
                    u,
                    augment.as_ref(),
                    self.projector,
                    self.targets,
                    self.answers,
                )?);
            }
            progress(what, i + 1, utts.len());
        }
        Ok(out)
    }
}

/// Where an example's features are: in the cache (training reads them batch by batch), or in memory.
#[derive(Debug, Clone)]
pub(crate) enum ExampleFeatures {
    File(FeatureFile),
    #[cfg_attr(not(test), allow(dead_code))]
    Memory(Features),
}

impl ExampleFeatures {
    pub(crate) fn frames(&self) -> usize {
        match self {
            ExampleFeatures::File(f) => f.frames,
            ExampleFeatures::Memory(f) => f.frames,
        }
    }

    pub(crate) fn load(&self) -> Result<Cow<'_, Features>, TrainError> {
        match self {
            ExampleFeatures::File(f) => f.load().map(Cow::Owned),
            ExampleFeatures::Memory(f) => Ok(Cow::Borrowed(f)),
        }
    }
}

/// One example: encoder features and the EmbedLink target.
#[derive(Debug, Clone)]
pub(crate) struct Example {
    pub(crate) features: ExampleFeatures,
    pub(crate) target: Target,
    /// LLM-in-the-loop only: the transcript's token ids then its closing quote, and their input embeddings.
    pub(crate) answer_ids: Vec<u32>,
    pub(crate) answer_embeds: Vec<f32>,
}

/// Batches of similar length (less padding), in a seeded order that depends only on (seed, epoch).
pub(crate) fn epoch_batches(
    examples: &[Example],
    batch_size: usize,
    seed: u64,
    epoch: u64,
) -> Vec<Vec<usize>> {
    let mut by_length: Vec<usize> = (0..examples.len()).collect();
    by_length.sort_by_key(|&i| (examples[i].features.frames(), i));
    let mut batches: Vec<Vec<usize>> = by_length
        .chunks(batch_size)
        .map(<[usize]>::to_vec)
        .collect();
    tinyalign_data::seeded_shuffle(
        &mut batches,
        seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    batches
}

/// A padded batch on the projector's device: features `(b·n, d_audio)`, targets `(b·t_max, d_llm)`, per-row
/// weights.
pub(crate) struct Batch<D: NnDevice> {
    pub(crate) x: Tensor2<D>,
    pub(crate) layout: tinyalign_projector::BatchLayout,
    pub(crate) target: Tensor2<D>,
    pub(crate) row_weights: Vec<f32>,
    pub(crate) element_weights: Tensor2<D>,
    /// The distinct target embeddings of the batch, transposed `(d, k)`, and for each transcript row the
    /// index of its own: the token-identity term's candidates and labels.
    pub(crate) candidates: Tensor2<D>,
    pub(crate) labels: Vec<(usize, usize)>,
}

pub(crate) fn make_batch<D: NnDevice>(
    projector: &Projector<D>,
    examples: &[&Example],
    table: &TargetTable,
) -> Result<Batch<D>, TrainError> {
    let loaded = examples
        .iter()
        .map(|e| e.features.load())
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&[f32]> = loaded.iter().map(|f| f.data.as_slice()).collect();
    let (data, layout) = projector.pad_batch(&refs)?;
    let dev = projector.device();
    let (d_audio, d_llm) = (projector.config().d_audio, projector.config().d_llm);
    let t_max = layout.max_tokens;
    let mut target = vec![0.0; examples.len() * t_max * d_llm];
    let mut row_weights = vec![0.0; examples.len() * t_max];
    for (i, e) in examples.iter().enumerate() {
        e.target.fill(
            table,
            t_max,
            &mut target[i * t_max * d_llm..(i + 1) * t_max * d_llm],
            &mut row_weights[i * t_max..(i + 1) * t_max],
        );
    }
    let element_weights: Vec<f32> = row_weights
        .iter()
        .flat_map(|&w| std::iter::repeat_n(w, d_llm))
        .collect();
    let rows = examples.len() * t_max;
    // Candidates are distinct tokens, so distinct rows (two tokens with bit-identical embeddings would be
    // two candidates; no transcript token of the LLMs here has a twin).
    let mut index: std::collections::HashMap<u32, usize> = Default::default();
    let mut candidates: Vec<&[f32]> = Vec::new();
    let mut labels = Vec::new();
    for (r, &w) in row_weights.iter().enumerate() {
        if w <= 0.0 {
            continue;
        }
        let id = examples[r / t_max].target.id_at(table, r % t_max);
        let next = index.len();
        let k = *index.entry(id).or_insert(next);
        if k == next {
            candidates.push(&target[r * d_llm..(r + 1) * d_llm]);
        }
        if w == 1.0 {
            labels.push((r, k));
        }
    }
    let k = candidates.len().max(1);
    let mut candidates_t = vec![0.0; d_llm * k];
    for (j, row) in candidates.iter().enumerate() {
        for (i, v) in row.iter().enumerate() {
            candidates_t[i * k + j] = *v;
        }
    }
    Ok(Batch {
        candidates: tinyalign_nn::from_vec2(dev, candidates_t, d_llm, k),
        labels,
        x: tinyalign_nn::from_vec2(dev, data, layout.batch() * layout.frames, d_audio),
        layout,
        target: tinyalign_nn::from_vec2(dev, target, rows, d_llm),
        row_weights,
        element_weights: tinyalign_nn::from_vec2(dev, element_weights, rows, d_llm),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The token-identity term's candidates are the batch's distinct target rows (padding included) and
    /// each transcript row's label points at its own embedding.
    #[test]
    fn token_identity_candidates_are_the_distinct_target_rows() {
        let (d_audio, d_llm) = (8, 4);
        let config = ProjectorConfig {
            tokens: tinyalign_projector::TokenCount::Fixed { tokens: 3 },
            d_model: 8,
            ffn_dim: 16,
            heads: 2,
            layers: 1,
            ..ProjectorConfig::bridgeformer(d_audio, d_llm, 1.0)
        };
        let projector = Projector::init(config, 0, tinyalign_nn::cpu()).unwrap();
        let (a, b, pad) = (
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 0.5, 0.5],
        );
        // Tokens 7 and 8 say "a" and "b"; 0 is the padding token, weighted 0.1.
        let table = TargetTable::new(&[7, 8, 0], [a, b, pad].concat(), 0, 0.1);
        let example = |ids: &[u32]| Example {
            features: ExampleFeatures::Memory(Features {
                frames: 12,
                width: d_audio,
                data: vec![0.1; 12 * d_audio],
            }),
            target: Target {
                rows: 3,
                truncated: 0,
                ids: ids.to_vec(),
            },
            answer_ids: Vec::new(),
            answer_embeds: Vec::new(),
        };
        // Utterance 0 says "a b", utterance 1 "b" then padding.
        let first = example(&[7, 8]);
        let second = example(&[8]);
        let batch = make_batch(&projector, &[&first, &second], &table).unwrap();
        assert_eq!(
            batch.row_weights,
            [1.0, 1.0, 0.1, 1.0, 0.1, 0.1],
            "transcript rows 1, padding rows pad_weight"
        );
        assert_eq!(
            tinyalign_nn::to_vec2(&batch.target),
            [a, b, pad, b, pad, pad].concat(),
            "each position holds its token's row"
        );
        assert_eq!(
            tinyalign_nn::shape2(&batch.candidates),
            (4, 3),
            "a, b and the pad row"
        );
        assert_eq!(batch.labels, [(0, 0), (1, 1), (3, 1)]);
        let columns = tinyalign_nn::to_vec2(&batch.candidates);
        let column = |j: usize| (0..4).map(|i| columns[i * 3 + j]).collect::<Vec<f32>>();
        assert_eq!(
            (column(0), column(1), column(2)),
            (a.to_vec(), b.to_vec(), pad.to_vec())
        );
    }
}
