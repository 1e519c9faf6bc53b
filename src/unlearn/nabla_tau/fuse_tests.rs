//! One forward pass over the forget and retain batches builds the step of two passes.

use super::objective::{build_step_loss, step_loss, Batch, ForgetTarget};
use crate::autograd::Tape;
use crate::backend::Device;
use crate::data::{Dataset, Targets};
use crate::nn::{ForwardMode, Model};
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::unlearn::{StepCtx, UnlearnSets};

fn mlp(loss: &str, outputs: usize, extra: &str) -> Model {
    Model::from_json(&format!(
        r#"{{"format": "gradtau.model/1", "input": {{"shape": [5]}},
         "nodes": [
          {{"name": "fc1", "op": "linear", "in_features": 5, "out_features": 7}},
          {{"name": "act", "op": "tanh"}}{extra},
          {{"name": "fc2", "op": "linear", "in_features": 7, "out_features": {outputs}}}],
         "loss": "{loss}"}}"#
    ))
    .unwrap()
}

fn set(n: usize, targets: impl Fn(&mut Rng, usize) -> Targets, rng: &mut Rng) -> Dataset {
    let x = Tensor::randn(&[n, 5], 1.0, rng);
    let y = targets(rng, n);
    Dataset::new(x, y).unwrap()
}

fn classes(rng: &mut Rng, n: usize) -> Targets {
    Targets::Classes((0..n).map(|_| rng.below(3) as u32).collect())
}

fn values(rng: &mut Rng, n: usize) -> Targets {
    Targets::Values(Tensor::randn(&[n, 2], 1.0, rng))
}

fn bits(rng: &mut Rng, n: usize) -> Targets {
    Targets::Values(
        Tensor::from_vec((0..n * 2).map(|_| rng.below(2) as f32).collect(), &[n, 2]).unwrap(),
    )
}

/// The step's loss, batch means and gradients, built in one pass or two.
fn step(
    model: &Model,
    sets: UnlearnSets<'_>,
    alpha: f32,
    target: ForgetTarget<'_>,
    fuse: bool,
) -> (f32, f32, f32, Vec<Vec<f32>>) {
    let w = model.init_weights(3);
    let mut ctx = StepCtx {
        model,
        mode: ForwardMode::EVAL,
        device: Device::Cpu,
        rng: Rng::new(5),
    };
    let forget: Vec<usize> = (0..sets.forget.len()).rev().collect();
    let retain: Vec<usize> = (0..sets.retain.len()).step_by(2).collect();
    let batch = Batch {
        step: 0,
        forget: &forget,
        retain: &retain,
    };
    let mut tape = Tape::new();
    let mut updates = Vec::new();
    let l = build_step_loss(
        &mut ctx,
        &mut tape,
        &w,
        sets,
        &batch,
        alpha,
        target,
        &mut updates,
        fuse,
    )
    .unwrap();
    let v = tape.value(l.loss).item().unwrap();
    let g = tape.backward(l.loss).unwrap();
    let grads = (0..w.len())
        .map(|k| g.get(k).unwrap().to_vec().unwrap())
        .collect();
    (v, l.forget, l.retain, grads)
}

fn assert_close(a: f32, b: f32, what: &str) {
    assert!(
        (a - b).abs() <= 1e-5 * (1.0 + a.abs().max(b.abs())),
        "{what}: {a} vs {b}"
    );
}

/// Fused and two-pass steps agree to the last bits the order of summation changes.
fn same_step(model: &Model, sets: UnlearnSets<'_>, alpha: f32, target: ForgetTarget<'_>) {
    let one = step(model, sets, alpha, target, true);
    let two = step(model, sets, alpha, target, false);
    assert_close(one.0, two.0, "loss");
    assert_close(one.1, two.1, "forget loss");
    assert_close(one.2, two.2, "retain loss");
    for (k, (a, b)) in one.3.iter().zip(&two.3).enumerate() {
        assert!(a.iter().any(|&v| v != 0.0), "parameter {k} got no gradient");
        for (&x, &y) in a.iter().zip(b) {
            assert_close(x, y, &format!("gradient of parameter {k}"));
        }
    }
}

#[test]
fn one_pass_builds_the_two_pass_step() {
    let mut rng = Rng::new(11);
    // Forget and retain from different data sets, of different sizes.
    let model = mlp("cross_entropy", 3, "");
    let (f, r, v) = (
        set(6, classes, &mut rng),
        set(9, classes, &mut rng),
        set(4, classes, &mut rng),
    );
    let sets = UnlearnSets {
        forget: &f,
        retain: &r,
        val: &v,
    };
    // Paper mode, below τ so the forget term pushes.
    same_step(&model, sets, 0.4, ForgetTarget::MeanAbove { tau: 10.0 });
    // Adaptive mode with the margin term, which reads the forget rows' logits.
    let reference = [0.2f32, 0.9, 1.5, 3.0];
    let margins = [-2.0f32, -0.5, 0.1, 0.4];
    let adaptive = ForgetTarget::RankMatched {
        reference: &reference,
        two_sided: true,
        margins: Some(&margins),
        kept_margins: None,
        nats_per_unit: 1.0,
    };
    same_step(&model, sets, 0.7, adaptive);
    // With a margin target kept per forget sample (the saturated push).
    let kept = [9.0f32, -0.5, 12.0, 0.1, 8.0, 30.0];
    let kept = ForgetTarget::RankMatched {
        reference: &reference,
        two_sided: true,
        margins: Some(&margins),
        kept_margins: Some(&kept),
        nats_per_unit: 1.0,
    };
    same_step(&model, sets, 0.7, kept);
    // Regression and multi-label targets (several values per sample).
    for (loss, targets) in [
        ("mse", values as fn(&mut Rng, usize) -> Targets),
        ("bce_with_logits", bits),
    ] {
        let model = mlp(loss, 2, "");
        let (f, r, v) = (
            set(5, targets, &mut rng),
            set(8, targets, &mut rng),
            set(3, targets, &mut rng),
        );
        let sets = UnlearnSets {
            forget: &f,
            retain: &r,
            val: &v,
        };
        same_step(&model, sets, 0.3, ForgetTarget::MeanAbove { tau: 10.0 });
        let hinge = ForgetTarget::RankMatched {
            reference: &reference,
            two_sided: false,
            margins: None,
            kept_margins: None,
            nats_per_unit: 1.0,
        };
        same_step(&model, sets, 0.5, hinge);
    }
}

#[test]
fn layers_that_see_the_whole_batch_keep_two_passes() {
    let ctx = |model, mode| StepCtx {
        model,
        mode,
        device: Device::Cpu,
        rng: Rng::new(0),
    };
    let bn = mlp(
        "cross_entropy",
        3,
        r#", {"name": "bn", "op": "batchnorm1d", "num_features": 7}"#,
    );
    let norm_training = ForwardMode {
        norm_training: true,
        dropout: false,
    };
    assert!(!ctx(&bn, norm_training).fuses());
    assert!(ctx(&bn, ForwardMode::EVAL).fuses());
    let dropout = mlp(
        "cross_entropy",
        3,
        r#", {"name": "drop", "op": "dropout", "p": 0.3}"#,
    );
    assert!(!ctx(&dropout, ForwardMode::TRAIN).fuses());
    assert!(ctx(&dropout, ForwardMode::EVAL).fuses());
    let plain = mlp("cross_entropy", 3, "");
    assert!(ctx(&plain, ForwardMode::TRAIN).fuses());

    // With batch norm in training mode the step is the two-pass one: each batch is
    // normalised with its own statistics, and both passes update the running statistics.
    let mut rng = Rng::new(2);
    let (f, r, v) = (
        set(4, classes, &mut rng),
        set(6, classes, &mut rng),
        set(3, classes, &mut rng),
    );
    let sets = UnlearnSets {
        forget: &f,
        retain: &r,
        val: &v,
    };
    let w = bn.init_weights(1);
    let run = |fuse: Option<bool>| {
        let mut c = ctx(&bn, norm_training);
        let (fi, ri) = ([0usize, 1, 2, 3], [5usize, 4, 3, 2, 1, 0]);
        let batch = Batch {
            step: 0,
            forget: &fi,
            retain: &ri,
        };
        let mut tape = Tape::new();
        let mut updates = Vec::new();
        let target = ForgetTarget::MeanAbove { tau: 10.0 };
        let l = match fuse {
            None => step_loss(
                &mut c,
                &mut tape,
                &w,
                sets,
                &batch,
                0.5,
                target,
                &mut updates,
            ),
            Some(fuse) => build_step_loss(
                &mut c,
                &mut tape,
                &w,
                sets,
                &batch,
                0.5,
                target,
                &mut updates,
                fuse,
            ),
        }
        .unwrap();
        (tape.value(l.loss).item().unwrap(), updates.len())
    };
    let (chosen, two, one) = (run(None), run(Some(false)), run(Some(true)));
    assert_eq!(chosen, two);
    assert_eq!(
        two.1, 4,
        "two passes update the running mean and variance twice"
    );
    assert_ne!(one.0, two.0, "batch statistics over both batches differ");
}
