//! Plain supervised training: produces original models and the retrain-from-scratch
//! reference with a stated recipe.

use super::{
    apply_buffer_updates, check_divergence, check_inputs, report, transact, Progress, ProgressFn,
    RunReport, StepCtx, Workload,
};
use crate::autograd::Tape;
use crate::backend::DeviceRequest;
use crate::data::{BatchCycler, Dataset};
use crate::error::{Error, Result};
use crate::nn::{ForwardMode, Model};
use crate::optim::{clip_grad_norm, Adam, AdamConfig, LrSchedule, Optimizer, Sgd, SgdConfig};
use crate::rng::Rng;
use crate::tensor::Tensor;
use std::time::Instant;

/// Which optimizer a recipe uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    Sgd { momentum: f32, nesterov: bool },
    Adam,
    AdamW,
}

/// A training recipe.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainRecipe {
    pub optimizer: OptimizerKind,
    pub lr: f32,
    pub weight_decay: f32,
    pub epochs: usize,
    pub batch_size: usize,
    /// Evaluated per step over `epochs * batches per epoch` steps.
    pub schedule: LrSchedule,
    pub clip_norm: Option<f32>,
    pub seed: u64,
    pub device: DeviceRequest,
    /// Keep the partly trained weights after an error or cancellation.
    pub keep_partial: bool,
}

impl Default for TrainRecipe {
    fn default() -> Self {
        TrainRecipe {
            optimizer: OptimizerKind::AdamW,
            lr: 1e-3,
            weight_decay: 0.01,
            epochs: 10,
            batch_size: 64,
            schedule: LrSchedule::Constant,
            clip_norm: None,
            seed: 0,
            device: DeviceRequest::Exact(crate::backend::Device::Cpu),
            keep_partial: false,
        }
    }
}

/// An option outside its range: names the option, the range and the value.
pub(crate) fn bad_option(
    owner: &str,
    field: &str,
    range: &str,
    got: impl std::fmt::Display,
) -> Error {
    Error::invalid(format!(
        "{owner} option `{field}` must be {range}, got {got}"
    ))
}

/// A learning rate: finite and positive.
pub(crate) fn check_lr(owner: &str, field: &str, lr: f32) -> Result<()> {
    if lr.is_finite() && lr > 0.0 {
        Ok(())
    } else {
        Err(bad_option(owner, field, "finite and > 0", lr))
    }
}

/// A weight decay: finite and not negative.
pub(crate) fn check_weight_decay(owner: &str, wd: f32) -> Result<()> {
    if wd.is_finite() && wd >= 0.0 {
        Ok(())
    } else {
        Err(bad_option(owner, "weight_decay", "finite and >= 0", wd))
    }
}

/// A count that must be at least 1.
pub(crate) fn check_positive(owner: &str, field: &str, n: usize) -> Result<()> {
    if n > 0 {
        Ok(())
    } else {
        Err(bad_option(owner, field, ">= 1", n))
    }
}

impl TrainRecipe {
    /// Checks every field (each run calls it first); errors name the field and its range.
    pub fn validate(&self) -> Result<()> {
        const O: &str = "train";
        check_lr(O, "lr", self.lr)?;
        check_weight_decay(O, self.weight_decay)?;
        check_positive(O, "epochs", self.epochs)?;
        check_positive(O, "batch_size", self.batch_size)?;
        if let OptimizerKind::Sgd { momentum, .. } = self.optimizer {
            if !(0.0..1.0).contains(&momentum) {
                return Err(bad_option(O, "momentum", "in [0, 1)", momentum));
            }
        }
        if let Some(c) = self.clip_norm {
            if !(c.is_finite() && c > 0.0) {
                return Err(bad_option(O, "clip_norm", "finite and > 0 (or unset)", c));
            }
        }
        let factor_ok = |f: f32| f.is_finite() && f >= 0.0;
        match self.schedule {
            LrSchedule::Constant => {}
            LrSchedule::Linear { start, end, .. } => {
                for (field, f) in [("schedule start", start), ("schedule end", end)] {
                    if !factor_ok(f) {
                        return Err(bad_option(O, field, "finite and >= 0", f));
                    }
                }
            }
            LrSchedule::Cosine { min_factor, .. } => {
                if !(min_factor.is_finite() && (0.0..=1.0).contains(&min_factor)) {
                    return Err(bad_option(
                        O,
                        "schedule min_factor",
                        "in [0, 1]",
                        min_factor,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Parameter-sized states the recipe's optimizer keeps.
    fn optimizer_moments(&self) -> usize {
        match self.optimizer {
            OptimizerKind::Sgd { momentum, .. } => usize::from(momentum != 0.0),
            OptimizerKind::Adam | OptimizerKind::AdamW => 2,
        }
    }
}

/// Builds the optimizer a recipe names.
pub fn make_optimizer(
    kind: OptimizerKind,
    lr: f32,
    weight_decay: f32,
) -> Result<Box<dyn Optimizer>> {
    Ok(match kind {
        OptimizerKind::Sgd { momentum, nesterov } => Box::new(Sgd::new(SgdConfig {
            momentum,
            nesterov,
            weight_decay,
            ..SgdConfig::new(lr)
        })?),
        OptimizerKind::Adam => Box::new(Adam::new(AdamConfig {
            weight_decay,
            ..AdamConfig::adam(lr)
        })),
        OptimizerKind::AdamW => Box::new(Adam::new(AdamConfig {
            weight_decay,
            ..AdamConfig::adamw(lr)
        })),
    })
}

/// Trains `weights` on `data` with `recipe` (transactional).
pub fn train(
    model: &Model,
    weights: &mut Vec<Tensor>,
    data: &Dataset,
    recipe: &TrainRecipe,
    progress: &mut ProgressFn<'_>,
) -> Result<RunReport> {
    recipe.validate()?;
    check_inputs(model, weights, &[(data, "training")])?;
    model.check_memory(
        Workload::training(
            recipe.batch_size.min(data.len()),
            1,
            recipe.optimizer_moments(),
        ),
        "train",
    )?;
    let probe = (model, data);
    transact(
        weights,
        recipe.keep_partial,
        recipe.device,
        probe,
        |w, dev| {
            let start = Instant::now();
            let mut rng = Rng::new(recipe.seed);
            let mut batches = BatchCycler::new(data.len(), recipe.batch_size, rng.fork());
            let per_epoch = batches.batches_per_pass();
            let total = per_epoch * recipe.epochs;
            let mut opt = make_optimizer(recipe.optimizer, recipe.lr, recipe.weight_decay)?;
            let mut ctx = StepCtx {
                model,
                mode: ForwardMode::TRAIN,
                device: dev,
                rng: rng.fork(),
            };
            let mut tape = Tape::new();
            for step in 0..total {
                let lr = recipe.schedule.lr(recipe.lr, step);
                opt.set_lr(lr);
                let idx = batches.next_batch().to_vec();
                let mut updates = Vec::new();
                let loss = ctx.mean_loss(&mut tape, w, data, &idx, &mut updates)?;
                let loss_value = tape.value(loss).item()?;
                if !loss_value.is_finite() {
                    // No update from a non-finite loss.
                    check_divergence(model, "train", step, &[("training", Some(loss_value))], w)?;
                }
                let mut grads = tape.backward(loss)?;
                if let Some(c) = recipe.clip_norm {
                    clip_grad_norm(&mut grads, c)?;
                }
                opt.step(w, &grads)?;
                apply_buffer_updates(w, updates);
                check_divergence(model, "train", step, &[], w)?;
                report(
                    progress,
                    &Progress {
                        method: "train",
                        epoch: step / per_epoch,
                        epochs: recipe.epochs,
                        step,
                        total_steps: total,
                        forget_loss: f32::NAN,
                        retain_loss: loss_value,
                        alpha: 0.0,
                        tau: f32::NAN,
                        lr,
                    },
                )?;
            }
            Ok(RunReport {
                method: "train".into(),
                epochs: recipe.epochs,
                steps: total,
                lr: recipe.lr,
                seconds: start.elapsed().as_secs_f64(),
                final_alpha: f32::NAN,
                final_tau: f32::NAN,
                forget_stopped_at: None,
                stop_reason: super::StopReason::Budget,
            })
        },
    )
}
