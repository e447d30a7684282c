//! The configured objective's loss of a batch (EmbedLink, LLM-in-the-loop, CTC) and a validation pass: the
//! loss, the cosine to the EmbedLink targets, the token readout.

use tinyalign_nn::{Merge, NnDevice, Scalar, Tape, Taped2};
use tinyalign_projector::Projector;

use crate::batch::{Batch, Example, make_batch};
use crate::ctc_objective::{self, ClassSet, ReadoutErrors};
use crate::device::TrainDevice;
use crate::in_the_loop::LoopContext;
use crate::targets::TargetTable;
use crate::{TrainConfig, TrainError};

/// EmbedLink's loss of projector outputs `out` against the batch's targets (see `LossConfig`).
pub(crate) fn embedlink_loss<T: Tape<f32, D> + Merge<T>, D: NnDevice>(
    out: Taped2<T, D>,
    batch: &Batch<D>,
    config: &TrainConfig,
    mse_scale: f32,
) -> Scalar<T, D> {
    let mse = tinyalign_nn::masked_mse(
        tinyalign_nn::fork(&out),
        &batch.target,
        &batch.element_weights,
    );
    if config.loss.token_weight > 0.0 && !batch.labels.is_empty() {
        // Token identity: each transcript row should be nearer its own token's embedding than any other
        // token of the batch (softmax over dot products), so outputs settle on real token embeddings.
        let logits = tinyalign_nn::matmul_const(tinyalign_nn::fork(&out), &batch.candidates);
        let identity = tinyalign_nn::token_cross_entropy(logits, &batch.labels);
        let cos = tinyalign_nn::weighted_cosine_distance(out, &batch.target, &batch.row_weights);
        return mse * (config.loss.mse_weight * mse_scale)
            + cos * config.loss.cosine_weight
            + identity * config.loss.token_weight;
    }
    let cos = tinyalign_nn::weighted_cosine_distance(out, &batch.target, &batch.row_weights);
    mse * (config.loss.mse_weight * mse_scale) + cos * config.loss.cosine_weight
}

/// What the configured objective needs besides the batch: the LLM graph (LLM-in-the-loop) and the class
/// set (the CTC head's table; every objective's token readout).
pub(crate) struct ObjectiveParts<'a, D: NnDevice> {
    pub(crate) in_loop: Option<&'a LoopContext>,
    pub(crate) classes: &'a ClassSet<D>,
    /// The embedding rows EmbedLink's targets are made of (empty for CTC).
    pub(crate) targets: &'a TargetTable,
    pub(crate) mse_scale: f32,
    pub(crate) pad_id: u32,
}

/// A loss, and with CTC the host logits `(b·t_max, classes + 1)` it came from.
pub(crate) type LossAndLogits<T, D> = (Scalar<T, D>, Option<Vec<f32>>);

/// The configured objective's loss of projector outputs `out` for the batch `members`, and with CTC the
/// host logits. `class_sample_seed`: a training step's seed for CTC's sampled classes
/// (`loss.ctc_sampled_classes`); validation passes `None` and scores every class.
pub(crate) fn objective_loss<T: Tape<f32, D> + Merge<T>, D: TrainDevice>(
    projector: &Projector<D>,
    out: Taped2<T, D>,
    batch: &Batch<D>,
    members: &[&Example],
    config: &TrainConfig,
    parts: &ObjectiveParts<'_, D>,
    class_sample_seed: Option<u64>,
) -> Result<LossAndLogits<T, D>, TrainError> {
    if let Some(table) = &parts.classes.table {
        let labels: Vec<Vec<usize>> = members
            .iter()
            .map(|e| parts.classes.labels(&e.target.ids).0)
            .collect();
        let sample = config.loss.ctc_sampled_classes;
        if let Some(seed) = class_sample_seed
            && sample > 0
            && sample < parts.classes.ids.len()
        {
            let (table, labels) = parts.classes.sampled(projector, &labels, sample, seed)?;
            let labels: Vec<&[usize]> = labels.iter().map(Vec::as_slice).collect();
            let (loss, logits, _) =
                ctc_objective::batch_loss(projector, out, &batch.layout, &labels, &table);
            return Ok((loss, Some(logits)));
        }
        let labels: Vec<&[usize]> = labels.iter().map(Vec::as_slice).collect();
        let (loss, logits, _) =
            ctc_objective::batch_loss(projector, out, &batch.layout, &labels, table);
        return Ok((loss, Some(logits)));
    }
    match parts.in_loop {
        None => Ok((embedlink_loss(out, batch, config, parts.mse_scale), None)),
        Some(context) => {
            let answers: Vec<&[u32]> = members.iter().map(|e| e.answer_ids.as_slice()).collect();
            let embeds: Vec<&[f32]> = members.iter().map(|e| e.answer_embeds.as_slice()).collect();
            D::in_loop_loss(context, out, &batch.layout, &answers, &embeds)
                .map(|loss| (loss, None))
                .ok_or_else(|| TrainError::Config(LOOP_ON_CPU_ONLY.into()))
        }
    }
}

pub(crate) const LOOP_ON_CPU_ONLY: &str = "the LLM-in-the-loop objective runs on the CPU only (its LLM graph is built there): use --device cpu";

/// One validation: the objective's mean loss, the mean cosine similarity to the EmbedLink targets
/// (transcript rows, pooled projectors only, so runs of the pooled objectives compare on one scale), and
/// the token readout's errors (every objective).
pub(crate) struct Validation {
    pub(crate) loss: f32,
    pub(crate) cosine: Option<f32>,
    pub(crate) readout: ReadoutErrors,
}

/// Padded logits of a CTC chunk are `examples × longest × (classes + 1)` floats, held several times over
/// (device, host, weights): with tens of thousands of classes and 30 s utterances a training-sized chunk
/// would take gigabytes. Validation chunks stop at this many logits (64 MB), or at `batch_size` examples.
const EVALUATION_LOGITS: usize = 1 << 24;

/// Consecutive chunks of `examples` for validation: at most `batch_size` each, and for a CTC projector at
/// most [`EVALUATION_LOGITS`] padded logits. Scores do not depend on the chunking (losses are weighted by
/// chunk size; the projector is padding-invariant).
fn evaluation_chunks<'e, D: TrainDevice>(
    projector: &Projector<D>,
    examples: &'e [Example],
    batch_size: usize,
    parts: &ObjectiveParts<'_, D>,
) -> Vec<&'e [Example]> {
    let width = parts.classes.table.as_ref().map_or(0, |t| t.width);
    let rows: Vec<usize> = examples
        .iter()
        .map(|e| projector.config().tokens_for(e.features.frames()))
        .collect();
    chunk_bounds(&rows, batch_size, width, EVALUATION_LOGITS)
        .into_iter()
        .map(|r| &examples[r])
        .collect()
}

/// Splits items of `rows` rows each, in order, into runs of at most `batch_size` items whose padded size
/// (items × longest × `width`) stays within `budget`; an item alone over the budget gets a run of its own.
fn chunk_bounds(
    rows: &[usize],
    batch_size: usize,
    width: usize,
    budget: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut chunks = Vec::new();
    let (mut start, mut longest) = (0, 0);
    for (i, &r) in rows.iter().enumerate() {
        let grown = longest.max(r);
        let count = i - start;
        if count > 0 && (count >= batch_size || (count + 1) * grown * width > budget) {
            chunks.push(start..i);
            (start, longest) = (i, r);
        } else {
            longest = grown;
        }
    }
    if start < rows.len() {
        chunks.push(start..rows.len());
    }
    chunks
}

pub(crate) fn evaluate<D: TrainDevice>(
    projector: &Projector<D>,
    examples: &[Example],
    config: &TrainConfig,
    parts: &ObjectiveParts<'_, D>,
) -> Result<Validation, TrainError> {
    let (mut loss_sum, mut cos_sum, mut rows) = (0.0f64, 0.0f64, 0usize);
    let mut readout = ReadoutErrors::default();
    let d = projector.config().d_llm;
    for chunk in evaluation_chunks(projector, examples, config.optim.batch_size, parts) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let batch = make_batch(projector, &refs, parts.targets)?;
        let projected = projector.forward(batch.x.clone(), &batch.layout);
        // A pooled projector's rows are read on the host (readout, cosine); a CTC one's logits are.
        let pooled_out = parts
            .classes
            .table
            .is_none()
            .then(|| tinyalign_nn::to_vec2(&projected));
        let (loss, logits) =
            objective_loss(projector, projected, &batch, &refs, config, parts, None)?;
        loss_sum += f64::from(tinyalign_nn::scalar_value(&loss)) * chunk.len() as f64;
        let transcripts: Vec<&[u32]> = refs.iter().map(|e| e.target.ids.as_slice()).collect();
        if let (Some(logits), Some(table)) = (logits, &parts.classes.table) {
            readout.add(ctc_objective::ctc_readout_errors(
                parts.classes,
                &logits,
                table.width,
                &batch.layout,
                &transcripts,
            ));
        }
        let Some(out) = pooled_out else { continue };
        readout.add(ctc_objective::pooled_readout_errors(
            parts.classes,
            &out,
            d,
            &batch.layout,
            &transcripts,
            parts.pad_id,
        ));
        let target = tinyalign_nn::to_vec2(&batch.target);
        for (r, &w) in batch.row_weights.iter().enumerate() {
            if w == 1.0 {
                let (a, b) = (&out[r * d..(r + 1) * d], &target[r * d..(r + 1) * d]);
                let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                cos_sum += f64::from(dot / (norm(a) * norm(b)));
                rows += 1;
            }
        }
    }
    Ok(Validation {
        loss: (loss_sum / examples.len() as f64) as f32,
        cosine: (rows > 0).then(|| (cos_sum / rows as f64) as f32),
        readout,
    })
}

#[cfg(test)]
mod tests {
    use super::chunk_bounds;

    #[test]
    fn validation_chunks_respect_the_batch_size_and_the_logits_budget() {
        // Without a CTC head (width 0) only the batch size counts.
        assert_eq!(chunk_bounds(&[5; 7], 3, 0, 10), [0..3, 3..6, 6..7]);
        // 4 classes + blank, budget 100 logits: 4 items of 5 rows fit (4·5·5), a 5th does not.
        assert_eq!(chunk_bounds(&[5; 6], 16, 5, 100), [0..4, 4..6]);
        // A long item shrinks its chunk; an item alone over the budget still gets evaluated.
        assert_eq!(
            chunk_bounds(&[2, 2, 10, 2, 50], 16, 5, 100),
            [0..2, 2..4, 4..5]
        );
        assert!(chunk_bounds(&[], 4, 5, 100).is_empty());
    }
}
