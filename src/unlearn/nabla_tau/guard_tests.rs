//! The rate guard end to end: a short run with a raised rate that overshoots goes back to
//! the previous check's weights at half the rate.

use crate::data::Dataset;
use crate::nn::Model;
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::unlearn::{
    no_progress, train, Control, Method, NablaTauOptions, Progress, TrainRecipe, UnlearnSets,
};

const FEATURES: usize = 20;
const CLASSES: usize = 4;

/// `n` standard-normal inputs labelled by a fixed linear teacher, except one in ten whose
/// label is drawn at random instead (their indices are returned too): a model learns the
/// teacher's part and memorises the rest.
fn memorisable(n: usize, teacher: &[f32], rng: &mut Rng) -> (Dataset, Vec<usize>) {
    let x = Tensor::randn(&[n, FEATURES], 1.0, rng);
    let xs = x.to_vec().unwrap();
    let mut redrawn = Vec::new();
    let y = xs
        .chunks_exact(FEATURES)
        .enumerate()
        .map(|(k, row)| {
            if rng.below(10) == 0 {
                redrawn.push(k);
                return rng.below(CLASSES) as u32;
            }
            let score = |c: usize| -> f32 {
                row.iter()
                    .enumerate()
                    .map(|(i, v)| v * teacher[i * CLASSES + c])
                    .sum()
            };
            (0..CLASSES)
                .max_by(|&a, &b| score(a).total_cmp(&score(b)))
                .unwrap() as u32
        })
        .collect();
    (Dataset::classification(x, y).unwrap(), redrawn)
}

#[test]
fn an_overshooting_short_run_goes_back_at_half_the_rate() {
    let model = Model::from_json(&format!(
        r#"{{"format": "gradtau.model/1", "input": {{"shape": [{FEATURES}]}},
         "nodes": [
          {{"name": "fc1", "op": "linear", "in_features": {FEATURES}, "out_features": 128}},
          {{"name": "act", "op": "relu"}},
          {{"name": "fc2", "op": "linear", "in_features": 128, "out_features": {CLASSES}}}],
         "loss": "cross_entropy"}}"#
    ))
    .unwrap();
    let mut rng = Rng::new(11);
    let teacher = Tensor::randn(&[FEATURES, CLASSES], 1.0, &mut rng)
        .to_vec()
        .unwrap();
    let (train_set, redrawn) = memorisable(2000, &teacher, &mut rng);
    // 2000 validation samples at about 80 % accuracy: one standard error under a point, so
    // the guard may act.
    let (val, _) = memorisable(2000, &teacher, &mut rng);
    let mut w = model.init_weights(1);
    let recipe = TrainRecipe {
        epochs: 40,
        batch_size: 64,
        lr: 3e-3,
        ..Default::default()
    };
    train(&model, &mut w, &train_set, &recipe, &mut no_progress).unwrap();
    // Forgetting the memorised labels: the model goes back to the teacher's, which these
    // samples mostly do not carry, so their accuracy falls far below validation's, past the
    // reference (retraining without them would put it there too; the guard cannot know).
    let kept: Vec<usize> = (0..2000).filter(|i| !redrawn.contains(i)).collect();
    let (forget, retain) = (
        train_set.subset(&redrawn).unwrap(),
        train_set.subset(&kept).unwrap(),
    );
    // About 200 forget samples in two batches per forget-epoch, about 27 forget-epochs:
    // under 300 steps, so the guard starts at 4 times the rate.
    let opts = NablaTauOptions::default();
    let mut seen: Vec<(usize, f32, f32)> = Vec::new();
    let report = Method::NablaTau(opts)
        .run(
            &model,
            &mut w,
            UnlearnSets {
                forget: &forget,
                retain: &retain,
                val: &val,
            },
            &mut |p: &Progress| {
                seen.push((p.step, p.lr, p.forget_loss));
                Control::Continue
            },
        )
        .unwrap();
    assert!(report.lr > 3.9e-3, "the raised rate: {report:?}");
    // Somewhere the rate halves from one step to the next (the schedule's own decay is
    // a few per cent of the first rate per forget-epoch).
    let back = seen
        .windows(2)
        .find(|p| p[1].1 < 0.6 * p[0].1)
        .unwrap_or_else(|| panic!("no rewind: {seen:?}"));
    let (before, after) = (back[0], back[1]);
    assert!(
        (after.1 / before.1 - 0.5).abs() < 0.05,
        "the rate halves: {before:?} → {after:?}"
    );
    // The forget loss after the rewind is that of the weights the run started from (the
    // first check's), give or take the batch: nearer the start's than the step before's.
    let start = seen[0].2;
    assert!(
        (after.2 - start).abs() < (before.2 - after.2).abs(),
        "the weights went back: forget loss {start} at the start, {} before, {} after",
        before.2,
        after.2
    );
}
