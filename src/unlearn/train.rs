//! Plain supervised training: produces original models and the retrain-from-scratch
//! reference with a stated recipe.

use super::{
    apply_buffer_updates, check_inputs, report, transact, Progress, ProgressFn, RunReport, StepCtx,
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
    check_inputs(model, weights, &[(data, "training")])?;
    if recipe.epochs == 0 || recipe.batch_size == 0 {
        return Err(Error::invalid(
            "train: epochs and batch_size must be positive",
        ));
    }
    if !(recipe.lr.is_finite() && recipe.lr > 0.0) {
        return Err(Error::invalid(format!(
            "train: learning rate must be positive, got {}",
            recipe.lr
        )));
    }
    transact(weights, recipe.keep_partial, recipe.device, |w, dev| {
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
                return Err(Error::NonFinite(format!(
                    "training loss became {loss_value} at step {step}"
                )));
            }
            let mut grads = tape.backward(loss)?;
            if let Some(c) = recipe.clip_norm {
                clip_grad_norm(&mut grads, c)?;
            }
            opt.step(w, &grads)?;
            apply_buffer_updates(w, updates);
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
    })
}
