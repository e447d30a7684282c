//! The CTC objective (see `Objective::Ctc`) and the token readout that scores every validation.
//!
//! Classes: the CTC head scores only the tokens of the training transcripts (plus the blank), not the whole
//! vocabulary: Qwen2.5's 151,936 rows would make the head ~50× the cost of the rest of a step on 2 cores.
//! Since the class embeddings are the LLM's frozen rows and nothing about a class is learned, the set can
//! grow later for free (personalisation adds the user's tokens); its cost is coverage: a token outside the
//! set cannot be emitted, and validation reports the share of its tokens the set covers.

use std::collections::HashMap;

use tinyalign_llm::LlamaModel;
use tinyalign_nn::{Merge, NnDevice, Scalar, Tape, Taped2};
use tinyalign_projector::{BatchLayout, CtcTable, Projector};
use tinyalign_quant::QMatrix;

use crate::TrainError;

/// Every distinct token id of `texts` (as the LLM tokenises them, no BOS), sorted.
pub(crate) fn transcript_classes<'a>(
    llm: &LlamaModel,
    texts: impl IntoIterator<Item = &'a str>,
) -> Vec<u32> {
    let mut ids: Vec<u32> = texts
        .into_iter()
        .flat_map(|t| llm.tokenizer.encode(t, false))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A class set with the unit-length LLM embeddings of its tokens (the pooled projector's readout) and, for a
/// CTC projector, its head's table on the training device.
pub(crate) struct ClassSet<D: NnDevice> {
    pub ids: Vec<u32>,
    index: HashMap<u32, usize>,
    /// `(classes, d)` row-major: the LLM's embeddings as they are (what sampled tables are built from).
    rows: Vec<f32>,
    /// `(classes, d)`, each row divided by its norm: the pooled readout's nearest-class product, one
    /// multi-threaded SIMD matmul per utterance (a scalar loop here made a 1,488-utterance validation over
    /// 18,034 classes take ~440 s).
    unit_table: QMatrix,
    pub table: Option<CtcTable<D>>,
}

impl<D: NnDevice> ClassSet<D> {
    pub fn new(
        ids: Vec<u32>,
        llm: &LlamaModel,
        projector: &Projector<D>,
    ) -> Result<Self, TrainError> {
        let rows = llm.embed_tokens(&ids)?;
        let table = match projector.config().ctc_classes() {
            Some(classes) => {
                if classes != ids.as_slice() {
                    return Err(TrainError::Config(
                        "the CTC projector's classes differ from the run's class set".into(),
                    ));
                }
                Some(projector.ctc_table(&rows)?)
            }
            None => None,
        };
        let d = llm.config.hidden_size;
        let mut unit_rows = rows.clone();
        for row in unit_rows.chunks_exact_mut(d) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|v| *v /= norm);
        }
        let unit_table = QMatrix::from_f32(ids.len(), d, unit_rows)
            .map_err(|e| TrainError::Model(format!("class table: {e}")))?;
        Ok(Self {
            index: ids.iter().enumerate().map(|(i, &id)| (id, i)).collect(),
            ids,
            rows,
            unit_table,
            table,
        })
    }

    /// A transcript's token ids as class indices, dropping tokens outside the set; and how many were dropped.
    pub fn labels(&self, ids: &[u32]) -> (Vec<usize>, usize) {
        let labels: Vec<usize> = ids
            .iter()
            .filter_map(|id| self.index.get(id).copied())
            .collect();
        let dropped = ids.len() - labels.len();
        (labels, dropped)
    }

    /// A head table over `count` of the classes for one training batch: every class in `labels`, then
    /// others drawn uniformly without replacement (seeded by `seed`), and the labels renumbered into it.
    /// Sampled softmax (Jean et al. 2015) for CTC: the normaliser runs over the sample, so each step costs
    /// `count` classes instead of all of them, and every class still meets the frames as a negative in a
    /// `count / classes` share of the steps. Validation and inference always score every class.
    pub fn sampled(
        &self,
        projector: &Projector<D>,
        labels: &[Vec<usize>],
        count: usize,
        seed: u64,
    ) -> Result<(CtcTable<D>, Vec<Vec<usize>>), TrainError> {
        let total = self.ids.len();
        let mut chosen: Vec<usize> = labels.iter().flatten().copied().collect();
        chosen.sort_unstable();
        chosen.dedup();
        let mut taken: std::collections::HashSet<usize> = chosen.iter().copied().collect();
        let mut rng = tinyalign_data::SplitMix::new(seed);
        let wanted = count.clamp(chosen.len(), total);
        while chosen.len() < wanted {
            let c = rng.below(total);
            if taken.insert(c) {
                chosen.push(c);
            }
        }
        let position: HashMap<usize, usize> = chosen
            .iter()
            .enumerate()
            .map(|(new, &old)| (old, new))
            .collect();
        let d = self.rows.len() / total.max(1);
        let rows: Vec<f32> = chosen
            .iter()
            .flat_map(|&c| self.rows[c * d..(c + 1) * d].iter().copied())
            .collect();
        let table = projector.ctc_table_subset(&rows)?;
        let renumbered = labels
            .iter()
            .map(|l| l.iter().map(|c| position[c]).collect())
            .collect();
        Ok((table, renumbered))
    }

    /// The nearest class (by cosine) of each row of `vectors` `(n, d)`, as token ids.
    fn nearest(&self, vectors: &[f32], d: usize) -> Vec<u32> {
        let n = vectors.len() / d;
        let mut scores = vec![0.0f32; n * self.ids.len()];
        self.unit_table
            .matmul(vectors, n, &mut scores)
            .expect("projected rows have the LLM's width, as the class rows do");
        scores
            .chunks_exact(self.ids.len().max(1))
            .map(|row| {
                let best = row
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |b, (i, &s)| if s > b.1 { (i, s) } else { b },
                    );
                self.ids[best.0]
            })
            .collect()
    }
}

/// Token edit distance (Levenshtein) between `reference` and `hypothesis`.
pub(crate) fn token_edits(reference: &[u32], hypothesis: &[u32]) -> usize {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut row = vec![i + 1; hypothesis.len() + 1];
        for (j, h) in hypothesis.iter().enumerate() {
            row[j + 1] = (prev[j] + usize::from(r != h))
                .min(prev[j + 1] + 1)
                .min(row[j] + 1);
        }
        prev = row;
    }
    prev[hypothesis.len()]
}

/// The batch's CTC loss: the mean over utterances of `−log p(labels | frames) / labels`, as a scalar whose
/// value is that mean and whose gradient is CTC's exact one (Graves et al. 2006, eq. 16, computed on the
/// host by `ctc::ctc_loss` and fed back as a constant weighting of the logits). Utterances too short for
/// their labels, or without labels, do not count. Also returns the host logits `(b·t_max, classes + 1)`.
pub fn batch_loss<T: Tape<f32, D> + Merge<T>, D: NnDevice>(
    projector: &Projector<D>,
    out: Taped2<T, D>,
    layout: &BatchLayout,
    labels: &[&[usize]],
    table: &CtcTable<D>,
) -> (Scalar<T, D>, Vec<f32>, usize) {
    let logits = projector.ctc_logits(out, table);
    let host = tinyalign_nn::values2(&logits);
    let (width, t_max) = (table.width, layout.max_tokens);
    let mut weights = vec![0.0f32; host.len()];
    let mut per_utterance = Vec::new();
    for (i, labels) in labels.iter().enumerate() {
        let frames = layout.tokens[i];
        let rows = i * t_max * width..(i * t_max + frames) * width;
        if labels.is_empty() {
            continue;
        }
        if let Some(ctc) =
            crate::ctc::ctc_loss(&host[rows.clone()], frames, width, width - 1, labels)
        {
            per_utterance.push((rows, ctc, labels.len()));
        }
    }
    let used = per_utterance.len();
    let mut value = 0.0f64;
    for (rows, ctc, n) in per_utterance {
        let share = 1.0 / (n * used) as f32;
        value += ctc.loss / (n * used) as f64;
        for (w, g) in weights[rows].iter_mut().zip(&ctc.grad) {
            *w = g * share;
        }
    }
    let linear: f64 = host
        .iter()
        .zip(&weights)
        .map(|(x, w)| f64::from(*x) * f64::from(*w))
        .sum();
    let (rows, cols) = tinyalign_nn::dims(&logits);
    let weights = tinyalign_nn::from_vec2(projector.device(), weights, rows, cols);
    // Σ logits ⊙ ∂L/∂logits has the right gradient; the constant makes its value the loss.
    let loss = tinyalign_nn::weighted_sum(logits, &weights) + (value - linear) as f32;
    (loss, host, used)
}

/// What the token readout of a batch got right: token edits against the transcripts and reference tokens.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReadoutErrors {
    pub edits: usize,
    pub reference_tokens: usize,
    pub uncovered_tokens: usize,
}

impl ReadoutErrors {
    /// One transcript's readout `hypothesis` against its token ids `reference`.
    fn of<D: NnDevice>(classes: &ClassSet<D>, reference: &[u32], hypothesis: &[u32]) -> Self {
        Self {
            edits: token_edits(reference, hypothesis),
            reference_tokens: reference.len(),
            uncovered_tokens: classes.labels(reference).1,
        }
    }

    pub fn add(&mut self, other: ReadoutErrors) {
        self.edits += other.edits;
        self.reference_tokens += other.reference_tokens;
        self.uncovered_tokens += other.uncovered_tokens;
    }

    pub fn rate(&self) -> f32 {
        self.edits as f32 / self.reference_tokens.max(1) as f32
    }

    pub fn coverage(&self) -> f32 {
        1.0 - self.uncovered_tokens as f32 / self.reference_tokens.max(1) as f32
    }
}

/// Token readout of a CTC batch: greedy path of each utterance's logits, collapsed, against its token ids.
pub(crate) fn ctc_readout_errors<D: NnDevice>(
    classes: &ClassSet<D>,
    logits: &[f32],
    width: usize,
    layout: &BatchLayout,
    transcripts: &[&[u32]],
) -> ReadoutErrors {
    let mut total = ReadoutErrors::default();
    for (i, ids) in transcripts.iter().enumerate() {
        let start = i * layout.max_tokens * width;
        let rows = &logits[start..start + layout.tokens[i] * width];
        let hypothesis: Vec<u32> = tinyalign_projector::greedy_segments(rows, width)
            .iter()
            .map(|s| classes.ids[s.class])
            .collect();
        total.add(ReadoutErrors::of(classes, ids, &hypothesis));
    }
    total
}

/// Token readout of a pooled batch: each transcript row read as its nearest class; padding tokens read
/// as the pad token are dropped (they are the target there).
pub(crate) fn pooled_readout_errors<D: NnDevice>(
    classes: &ClassSet<D>,
    out: &[f32],
    d: usize,
    layout: &BatchLayout,
    transcripts: &[&[u32]],
    pad_id: u32,
) -> ReadoutErrors {
    let mut total = ReadoutErrors::default();
    for (i, ids) in transcripts.iter().enumerate() {
        let start = i * layout.max_tokens * d;
        let mut hypothesis = classes.nearest(&out[start..start + layout.tokens[i] * d], d);
        hypothesis.retain(|&id| id != pad_id);
        total.add(ReadoutErrors::of(classes, ids, &hypothesis));
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinyalign_projector::{ProjectorConfig, ProjectorKind, ProjectorOutput, TokenCount};

    fn lcg(n: usize, seed: u64) -> Vec<f32> {
        tinyalign_testkit::lcg64(n, seed, 1.0)
    }

    /// The pooled readout's nearest class (one SIMD matmul) is the brute-force argmax of the cosine.
    #[test]
    fn nearest_class_is_the_plain_argmax_of_the_dot_product() {
        let (classes, d) = (300, 24);
        let rows = lcg(classes * d, 4);
        let mut unit = rows.clone();
        for row in unit.chunks_exact_mut(d) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            row.iter_mut().for_each(|v| *v /= norm);
        }
        let set = ClassSet::<tinyalign_nn::Cpu> {
            ids: (1000..1000 + classes as u32).collect(),
            index: HashMap::new(),
            rows,
            unit_table: QMatrix::from_f32(classes, d, unit.clone()).unwrap(),
            table: None,
        };
        let vectors = lcg(17 * d, 5);
        let expected: Vec<u32> = vectors
            .chunks_exact(d)
            .map(|v| {
                let dots: Vec<f64> = unit
                    .chunks_exact(d)
                    .map(|e| e.iter().zip(v).map(|(a, b)| f64::from(a * b)).sum())
                    .collect();
                let best = (0..classes)
                    .max_by(|&a, &b| dots[a].total_cmp(&dots[b]))
                    .unwrap();
                1000 + best as u32
            })
            .collect();
        assert_eq!(set.nearest(&vectors, d), expected);
    }

    /// The batch loss's value is the mean of per-utterance CTC losses over their label counts (computed
    /// here from the logits by `ctc::ctc_loss` directly), an utterance too short for its labels does not
    /// count, and AdamW steps on it lower it.
    #[test]
    fn batch_loss_is_the_mean_per_token_ctc_and_trains() {
        let config = ProjectorConfig {
            d_model: 16,
            heads: 2,
            ffn_dim: 24,
            layers: 1,
            stack: 2,
            tokens: TokenCount::Fixed { tokens: 4 },
            output: ProjectorOutput::Ctc {
                classes: vec![5, 6, 7],
                logit_scale: 8.0,
            },
            ..ProjectorConfig::bridgeformer(12, 10, 0.05)
        };
        assert_eq!(config.kind, ProjectorKind::BridgeFormer);
        let mut p = Projector::init(config, 3, tinyalign_nn::cpu()).unwrap();
        let embeddings: Vec<f32> = lcg(30, 4).iter().map(|v| v * 0.05).collect();
        let table = p.ctc_table(&embeddings).unwrap();
        let utterances = [lcg(20 * 12, 1), lcg(14 * 12, 2), lcg(2 * 12, 3)];
        let refs: Vec<&[f32]> = utterances.iter().map(Vec::as_slice).collect();
        let (data, layout) = p.pad_batch(&refs).unwrap();
        // 10, 7 and 1 frames; the last cannot hold two labels.
        let labels: [&[usize]; 3] = [&[0, 1, 1, 2], &[2, 0], &[1, 0]];
        let x = tinyalign_nn::from_vec2(p.device(), data, layout.batch() * layout.frames, 12);
        let loss_of = |p: &Projector| {
            let out = p.forward(tinyalign_nn::traced(&x), &layout);
            batch_loss(p, out, &layout, &labels, &table)
        };
        let (loss, host, used) = loss_of(&p);
        assert_eq!(used, 2);
        let width = table.width;
        let mut want = 0.0;
        for (i, labels) in labels.iter().take(2).enumerate() {
            let (frames, start) = (layout.tokens[i], i * layout.max_tokens * width);
            let ctc = crate::ctc::ctc_loss(
                &host[start..start + frames * width],
                frames,
                width,
                width - 1,
                labels,
            )
            .unwrap();
            want += ctc.loss / labels.len() as f64 / 2.0;
        }
        let value = tinyalign_nn::scalar_value(&loss);
        assert!((f64::from(value) - want).abs() < 1e-4, "{value} vs {want}");
        let mut opt = tinyalign_nn::AdamW::new(0.0, Some(1.0));
        for _ in 0..20 {
            let mut grads = tinyalign_nn::backward(loss_of(&p).0);
            opt.step(&mut p, &mut grads, 1e-2);
        }
        let after = tinyalign_nn::scalar_value(&loss_of(&p).0);
        assert!(after < value * 0.8, "{value} → {after}");
    }

    /// A sampled table holds the batch's classes and a seeded sample of the rest, and scores a frame
    /// exactly as the full table does on the columns it keeps.
    #[test]
    fn sampled_classes_keep_the_labels_and_the_full_tables_logits() {
        let classes: Vec<u32> = (100..140).collect();
        let config = ProjectorConfig {
            d_model: 16,
            heads: 2,
            ffn_dim: 24,
            layers: 1,
            stack: 2,
            output: ProjectorOutput::Ctc {
                classes: classes.clone(),
                logit_scale: 8.0,
            },
            ..ProjectorConfig::bridgeformer(12, 10, 0.05)
        };
        let p = Projector::init(config, 3, tinyalign_nn::cpu()).unwrap();
        let rows: Vec<f32> = lcg(400, 9).iter().map(|v| v * 0.05).collect();
        let set = ClassSet {
            index: classes.iter().enumerate().map(|(i, &id)| (id, i)).collect(),
            ids: classes,
            rows: rows.clone(),
            unit_table: QMatrix::from_f32(40, 10, rows.clone()).unwrap(),
            table: Some(p.ctc_table(&rows).unwrap()),
        };
        let labels = vec![vec![3, 17, 3], vec![39]];
        let (table, renumbered) = set.sampled(&p, &labels, 8, 5).unwrap();
        assert_eq!(table.width, 9, "8 classes and the blank");
        let (again, _) = set.sampled(&p, &labels, 8, 5).unwrap();
        let (other, _) = set.sampled(&p, &labels, 8, 6).unwrap();
        let out = tinyalign_nn::from_vec2(&tinyalign_nn::cpu(), lcg(30, 2), 3, 10);
        let full = tinyalign_nn::to_vec2(&p.ctc_logits(out.clone(), set.table.as_ref().unwrap()));
        let sampled = tinyalign_nn::to_vec2(&p.ctc_logits(out.clone(), &table));
        assert_eq!(
            sampled,
            tinyalign_nn::to_vec2(&p.ctc_logits(out.clone(), &again))
        );
        assert_ne!(sampled, tinyalign_nn::to_vec2(&p.ctc_logits(out, &other)));
        // Each label keeps its logits under its new number; the blank stays last.
        for (old, new) in labels.iter().flatten().zip(renumbered.iter().flatten()) {
            for r in 0..3 {
                assert_eq!(sampled[r * 9 + new], full[r * 41 + old]);
            }
        }
        for r in 0..3 {
            assert_eq!(sampled[r * 9 + 8], full[r * 41 + 40]);
        }
        // Asking for more than there are keeps them all; fewer than the labels keeps the labels.
        assert_eq!(set.sampled(&p, &labels, 100, 0).unwrap().0.width, 41);
        assert_eq!(set.sampled(&p, &labels, 1, 0).unwrap().0.width, 4);
    }

    #[test]
    fn token_edits_count_levenshtein() {
        assert_eq!(token_edits(&[1, 2, 3], &[1, 2, 3]), 0);
        assert_eq!(token_edits(&[1, 2, 3], &[1, 3]), 1);
        assert_eq!(token_edits(&[1, 2, 3], &[4, 1, 2, 5]), 2);
        assert_eq!(token_edits(&[], &[7, 7]), 2);
        assert_eq!(token_edits(&[7, 7], &[]), 2);
    }
}
