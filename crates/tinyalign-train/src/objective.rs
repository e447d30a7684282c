//! The configured objective's loss of a batch (EmbedLink, LLM-in-the-loop, CTC) and a validation pass: the
//! loss, the cosine to the EmbedLink targets, the token readout.

use tinyalign_nn::{Merge, NnDevice, Scalar, Tape, Taped2};
use tinyalign_projector::Projector;

use crate::batch::{Batch, Example, make_batch};
use crate::ctc_objective::{self, ClassSet, ReadoutErrors};
use crate::device::TrainDevice;
use crate::in_the_loop::LoopContext;
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

pub(crate) fn evaluate<D: TrainDevice>(
    projector: &Projector<D>,
    examples: &[Example],
    config: &TrainConfig,
    parts: &ObjectiveParts<'_, D>,
) -> Result<Validation, TrainError> {
    let (mut loss_sum, mut cos_sum, mut rows) = (0.0f64, 0.0f64, 0usize);
    let mut readout = ReadoutErrors::default();
    let d = projector.config().d_llm;
    for chunk in examples.chunks(config.optim.batch_size) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let batch = make_batch(projector, &refs)?;
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
