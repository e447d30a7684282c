//! A run's second stage: seeded length-bucketed batches, AdamW with warm-up + cosine decay and gradient
//! clipping, NaN/inf detection, and every `validate_every` steps a validation that keeps the best projector,
//! writes a checkpoint and decides early stopping.

use std::sync::atomic::Ordering;
use std::time::Instant;

use tinyalign_nn::AdamW;
use tinyalign_projector::Projector;

use crate::batch::{Example, epoch_batches, make_batch};
use crate::device::TrainDevice;
use crate::objective::{ObjectiveParts, evaluate, objective_loss};
use crate::run_files::{
    CheckpointState, ManifestParts, read_checkpoint, save_projector, write_checkpoint,
};
use crate::run_folder::{MetricsLine, RunFolder};
use crate::trainer::{StopReason, TrainOptions};
use crate::{TrainConfig, TrainError};

/// What the loop trains and validates on, and how a saved projector is described.
pub(crate) struct LoopInputs<'a, D: TrainDevice> {
    pub(crate) train_set: &'a [Example],
    pub(crate) valid_set: &'a [Example],
    pub(crate) parts: ObjectiveParts<'a, D>,
    pub(crate) manifest: ManifestParts<'a>,
}

/// Where the loop ended.
pub(crate) struct LoopOutcome {
    pub(crate) state: CheckpointState,
    pub(crate) stopped_because: StopReason,
    /// Share of the validation transcripts' tokens in the class set (from the last validation).
    pub(crate) valid_coverage: Option<f32>,
    /// Training time over every session of the run.
    pub(crate) seconds: f64,
}

/// Trains `projector` until the step budget, the time budget, early stopping or an interruption; resumes
/// from the run's checkpoint when `options.resume` and there is one.
pub(crate) fn training_loop<D: TrainDevice>(
    config: &TrainConfig,
    options: &TrainOptions,
    run: &RunFolder,
    mut projector: Projector<D>,
    inputs: &LoopInputs<'_, D>,
    say: &dyn Fn(String),
) -> Result<LoopOutcome, TrainError> {
    let mut opt = AdamW::new(config.optim.weight_decay, Some(config.optim.grad_clip));
    let checkpoint_dir = run.checkpoint_dir();
    let mut state = CheckpointState::default();
    if options.resume
        && let Some((resumed, weights)) = read_checkpoint(&checkpoint_dir, &mut opt)?
    {
        state = resumed;
        projector = Projector::load(
            inputs.manifest.config.clone(),
            &weights,
            projector.device().clone(),
        )
        .map_err(|e| TrainError::Model(format!("checkpoint does not fit this config: {e}")))?;
        say(format!("resuming at step {}", state.step));
    }
    let mut metrics = run.metrics(state.step)?;
    let train_set = inputs.train_set;
    let batches_per_epoch = train_set.len().div_ceil(config.optim.batch_size) as u64;
    let started = Instant::now();
    let mut valid_coverage = None;
    let seconds_before = state.seconds;
    let first_step = state.step;
    let mut recent_loss = Vec::new();
    let diverged = |what: String, step: u64| {
        TrainError::Diverged(format!(
            "{what} at step {step}; the last good checkpoint is in {}",
            checkpoint_dir.display()
        ))
    };
    let stopped_because = loop {
        if state.step >= config.optim.max_steps {
            break StopReason::MaxSteps;
        }
        if options.stop.load(Ordering::SeqCst)
            || options.interrupt_at_step.is_some_and(|s| state.step >= s)
        {
            break StopReason::Interrupted;
        }
        let epoch = state.step / batches_per_epoch;
        let order = epoch_batches(train_set, config.optim.batch_size, config.optim.seed, epoch);
        let members: Vec<&Example> = order[(state.step % batches_per_epoch) as usize]
            .iter()
            .map(|&i| &train_set[i])
            .collect();
        let batch = make_batch(&projector, &members, inputs.parts.targets)?;
        let out = projector.forward(tinyalign_nn::traced(&batch.x), &batch.layout);
        let class_sample_seed = config.optim.seed ^ state.step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let (total, _) = objective_loss(
            &projector,
            out,
            &batch,
            &members,
            config,
            &inputs.parts,
            Some(class_sample_seed),
        )?;
        let value = tinyalign_nn::scalar_value(&total);
        if !value.is_finite() {
            return Err(diverged(format!("loss is {value}"), state.step));
        }
        let mut grads = tinyalign_nn::backward(total);
        let lr = config.lr_at_time(state.step, seconds_before + started.elapsed().as_secs_f64());
        let report = opt.step(&mut projector, &mut grads, lr);
        if !report.grad_norm.is_finite() {
            let what = format!("gradient norm is {}", report.grad_norm);
            return Err(diverged(what, state.step));
        }
        state.step += 1;
        recent_loss.push(value);
        let elapsed = seconds_before + started.elapsed().as_secs_f64();
        let out_of_time = config.optim.max_seconds > 0.0 && elapsed >= config.optim.max_seconds;
        let mut line = MetricsLine {
            step: state.step,
            epoch,
            loss: value,
            lr,
            grad_norm: report.grad_norm,
            seconds: elapsed,
            valid_loss: None,
            valid_cosine: None,
            valid_readout_error: None,
        };
        let validate = state.step.is_multiple_of(config.optim.validate_every)
            || state.step == config.optim.max_steps
            || out_of_time;
        if !validate {
            metrics.append(&line)?;
            continue;
        }
        let validation = evaluate(&projector, inputs.valid_set, config, &inputs.parts)?;
        let readout_error = validation.readout.rate();
        line.valid_loss = Some(validation.loss);
        line.valid_cosine = validation.cosine;
        line.valid_readout_error = Some(readout_error);
        let improved = state.record_validation(validation.loss, readout_error, validation.cosine);
        if improved {
            save_projector(run.dir(), &mut projector, &inputs.manifest.manifest(&state))?;
        }
        state.seconds = elapsed;
        write_checkpoint(&checkpoint_dir, &mut projector, &opt, &state)?;
        let train_mean = recent_loss.iter().sum::<f32>() / recent_loss.len().max(1) as f32;
        recent_loss.clear();
        let steps_this_session = (state.step - first_step).max(1) as f64;
        let mut eta = (config.optim.max_steps - state.step) as f64
            * started.elapsed().as_secs_f64()
            / steps_this_session;
        if config.optim.max_seconds > 0.0 {
            eta = eta.min((config.optim.max_seconds - elapsed).max(0.0));
        }
        say(format!(
            "step {:>5}/{}  train {train_mean:.4}  valid {:.4}{}  readout {:.1}% TER{}  lr {lr:.2e}  {elapsed:.0} s  ETA {eta:.0} s",
            state.step,
            config.optim.max_steps,
            validation.loss,
            validation
                .cosine
                .map(|c| format!("  cos {c:.3}"))
                .unwrap_or_default(),
            100.0 * readout_error,
            if improved { " *" } else { "" }
        ));
        valid_coverage = Some(validation.readout.coverage());
        metrics.append(&line)?;
        if config.optim.patience > 0 && state.bad_validations >= config.optim.patience {
            break StopReason::EarlyStopping;
        }
        if out_of_time {
            break StopReason::TimeBudget;
        }
    };
    if stopped_because == StopReason::Interrupted {
        state.seconds = seconds_before + started.elapsed().as_secs_f64();
        write_checkpoint(&checkpoint_dir, &mut projector, &opt, &state)?;
        say(format!(
            "interrupted at step {}: checkpoint written; continue with --resume",
            state.step
        ));
    }
    Ok(LoopOutcome {
        state,
        stopped_because,
        valid_coverage,
        seconds: seconds_before + started.elapsed().as_secs_f64(),
    })
}
