//! The baselines ∇τ is judged against: fine-tuning on the retain set, NegGrad (ascent on the
//! forget set) and NegGrad+ (fixed-weight ascent on forget plus descent on retain).

use super::train::{bad_option, check_lr, check_positive, check_weight_decay};
use super::{
    apply_buffer_updates, check_divergence, check_inputs, check_overlap, report, transact,
    OverlapPolicy, Progress, ProgressFn, RunReport, StepCtx, UnlearnSets, Workload,
};
use crate::autograd::Tape;
use crate::backend::DeviceRequest;
use crate::data::BatchCycler;
use crate::error::Result;
use crate::nn::{ForwardMode, Model};
use crate::optim::{Adam, AdamConfig, LrSchedule, Optimizer};
use crate::rng::Rng;
use crate::tensor::Tensor;
use std::time::Instant;

/// Options shared by the baselines.
#[derive(Clone, Debug, PartialEq)]
pub struct BaselineOptions {
    /// Passes over the retain set (fine-tune, NegGrad+) or the forget set (NegGrad).
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f32,
    pub weight_decay: f32,
    /// NegGrad+: weight of the retain term (the forget term gets `1 - retain_weight`).
    pub retain_weight: f32,
    pub seed: u64,
    pub device: DeviceRequest,
    pub keep_partial: bool,
    /// Whether the forget and retain sets may share samples (default: refused).
    pub overlap: OverlapPolicy,
}

impl BaselineOptions {
    /// Fine-tuning: three passes over the retain set (∇τ's budget), AdamW 1e-3.
    pub fn finetune() -> Self {
        BaselineOptions {
            epochs: 3,
            batch_size: 256,
            lr: 1e-3,
            weight_decay: 0.01,
            retain_weight: 1.0,
            seed: 0,
            device: DeviceRequest::Auto,
            keep_partial: false,
            overlap: OverlapPolicy::Refuse,
        }
    }

    /// NegGrad: one pass of ascent over the forget set at a small rate.
    pub fn neggrad() -> Self {
        BaselineOptions {
            epochs: 1,
            lr: 1e-4,
            retain_weight: 0.0,
            ..Self::finetune()
        }
    }

    /// NegGrad+: three retain passes, retain weight 0.9.
    pub fn neggrad_plus() -> Self {
        BaselineOptions {
            retain_weight: 0.9,
            ..Self::finetune()
        }
    }
}

impl BaselineOptions {
    /// Checks every field (each run calls it first); errors name the field and its range.
    pub fn validate(&self) -> Result<()> {
        const O: &str = "baseline";
        check_positive(O, "epochs", self.epochs)?;
        check_positive(O, "batch_size", self.batch_size)?;
        check_lr(O, "lr", self.lr)?;
        check_weight_decay(O, self.weight_decay)?;
        if !(0.0..=1.0).contains(&self.retain_weight) {
            return Err(bad_option(
                O,
                "retain_weight",
                "in [0, 1]",
                self.retain_weight,
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    FineTune,
    NegGrad,
    NegGradPlus,
}

fn run(
    model: &Model,
    weights: &mut Vec<Tensor>,
    sets: UnlearnSets<'_>,
    o: &BaselineOptions,
    kind: Kind,
    progress: &mut ProgressFn<'_>,
) -> Result<RunReport> {
    o.validate()?;
    let name = match kind {
        Kind::FineTune => "finetune",
        Kind::NegGrad => "neggrad",
        Kind::NegGradPlus => "neggrad_plus",
    };
    match kind {
        Kind::FineTune => check_inputs(model, weights, &[(sets.retain, "retain")])?,
        Kind::NegGrad => check_inputs(model, weights, &[(sets.forget, "forget")])?,
        Kind::NegGradPlus => check_inputs(
            model,
            weights,
            &[(sets.forget, "forget"), (sets.retain, "retain")],
        )?,
    }
    if kind == Kind::NegGradPlus {
        check_overlap((sets.forget, "forget"), (sets.retain, "retain"), o.overlap)?;
    }
    let longest = match kind {
        Kind::FineTune => sets.retain.len(),
        Kind::NegGrad => sets.forget.len(),
        Kind::NegGradPlus => sets.forget.len().max(sets.retain.len()),
    };
    let batches = if kind == Kind::NegGradPlus { 2 } else { 1 };
    model.check_memory(
        Workload::training(o.batch_size.min(longest), batches, 2),
        name,
    )?;
    let probe = if kind == Kind::FineTune {
        sets.retain
    } else {
        sets.forget
    };
    transact(
        weights,
        o.keep_partial,
        o.device,
        (model, probe),
        |w, dev| {
            let start = Instant::now();
            let mut rng = Rng::new(o.seed);
            let mut forget = BatchCycler::new(sets.forget.len(), o.batch_size, rng.fork());
            let mut retain = BatchCycler::new(sets.retain.len(), o.batch_size, rng.fork());
            let per_epoch = if kind == Kind::NegGrad {
                forget.batches_per_pass()
            } else {
                retain.batches_per_pass()
            };
            let total = per_epoch * o.epochs;
            let mut ctx = StepCtx {
                model,
                mode: ForwardMode::EVAL,
                device: dev,
                rng: rng.fork(),
            };
            let mut opt = Adam::new(AdamConfig {
                weight_decay: o.weight_decay,
                ..AdamConfig::adamw(o.lr)
            });
            let sched = LrSchedule::Linear {
                start: 1.0,
                end: 0.1,
                total_steps: total,
            };
            let mut tape = Tape::new();
            for step in 0..total {
                let lr = sched.lr(o.lr, step);
                opt.set_lr(lr);
                let mut updates = Vec::new();
                let (mut fv, mut rv) = (f32::NAN, f32::NAN);
                let forget_term = if kind == Kind::FineTune {
                    None
                } else {
                    let idx = forget.next_batch().to_vec();
                    let lf = ctx.mean_loss(&mut tape, w, sets.forget, &idx, &mut updates)?;
                    fv = tape.value(lf).item()?;
                    let wgt = if kind == Kind::NegGrad {
                        1.0
                    } else {
                        1.0 - o.retain_weight
                    };
                    Some(tape.scale(lf, -wgt)?)
                };
                let retain_term = if kind == Kind::NegGrad {
                    None
                } else {
                    let idx = retain.next_batch().to_vec();
                    let lr_ = ctx.mean_loss(&mut tape, w, sets.retain, &idx, &mut updates)?;
                    rv = tape.value(lr_).item()?;
                    let wgt = if kind == Kind::FineTune {
                        1.0
                    } else {
                        o.retain_weight
                    };
                    Some(tape.scale(lr_, wgt)?)
                };
                let loss = match (forget_term, retain_term) {
                    (Some(a), Some(b)) => tape.add(a, b)?,
                    (Some(a), None) | (None, Some(a)) => a,
                    (None, None) => unreachable!("every baseline has a term"),
                };
                let losses = [
                    ("forget", (kind != Kind::FineTune).then_some(fv)),
                    ("retain", (kind != Kind::NegGrad).then_some(rv)),
                ];
                // No update from a non-finite loss.
                check_divergence(model, name, step, &losses, &[])?;
                let grads = tape.backward(loss)?;
                opt.step(w, &grads)?;
                apply_buffer_updates(w, updates);
                check_divergence(model, name, step, &[], w)?;
                report(
                    progress,
                    &Progress {
                        method: name,
                        epoch: step / per_epoch,
                        epochs: o.epochs,
                        step,
                        total_steps: total,
                        forget_loss: fv,
                        retain_loss: rv,
                        alpha: if kind == Kind::FineTune {
                            0.0
                        } else {
                            1.0 - o.retain_weight
                        },
                        tau: f32::NAN,
                        lr,
                    },
                )?;
            }
            Ok(RunReport {
                method: name.into(),
                epochs: o.epochs,
                steps: total,
                lr: o.lr,
                seconds: start.elapsed().as_secs_f64(),
                final_alpha: f32::NAN,
                final_tau: f32::NAN,
                forget_stopped_at: None,
                stop_reason: super::StopReason::Budget,
            })
        },
    )
}

/// Fine-tuning on the retain set only.
pub fn finetune(
    model: &Model,
    weights: &mut Vec<Tensor>,
    sets: UnlearnSets<'_>,
    o: &BaselineOptions,
    progress: &mut ProgressFn<'_>,
) -> Result<RunReport> {
    run(model, weights, sets, o, Kind::FineTune, progress)
}

/// Gradient ascent on the forget set only.
pub fn neggrad(
    model: &Model,
    weights: &mut Vec<Tensor>,
    sets: UnlearnSets<'_>,
    o: &BaselineOptions,
    progress: &mut ProgressFn<'_>,
) -> Result<RunReport> {
    run(model, weights, sets, o, Kind::NegGrad, progress)
}

/// Fixed-weight ascent on forget plus descent on retain.
pub fn neggrad_plus(
    model: &Model,
    weights: &mut Vec<Tensor>,
    sets: UnlearnSets<'_>,
    o: &BaselineOptions,
    progress: &mut ProgressFn<'_>,
) -> Result<RunReport> {
    run(model, weights, sets, o, Kind::NegGradPlus, progress)
}
