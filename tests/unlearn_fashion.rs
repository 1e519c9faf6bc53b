//! ∇τ on real Fashion-MNIST images, small enough for CI: an MLP over-fitted on a 6000-image
//! subset (96.5 % training accuracy against 86 % on test images), a random 10 % forgotten, judged against retraining from scratch (the full tables
//! are docs/REPRODUCTION.md). Needs the Debian package `dataset-fashion-mnist`, which CI
//! installs; without it the test says so and skips.

use gradtau::audit::{audit_model, AuditRow, AuditSets};
use gradtau::data::{split_indices, Dataset};
use gradtau::io::{read_idx_images, read_idx_labels};
use gradtau::nn::Model;
use gradtau::optim::LrSchedule;
use gradtau::rng::Rng;
use gradtau::unlearn::{
    no_progress, train, Control, Method, NablaTauOptions, Progress, TrainRecipe, UnlearnSets,
};
use gradtau::{DeviceRequest, Tensor};
use std::path::Path;

const DIR: &str = "/usr/share/datasets/fashion-mnist";

const MLP: &str = r#"{"format": "gradtau.model/1", "input": {"shape": [784]},
 "nodes": [
  {"name": "0", "op": "linear", "in_features": 784, "out_features": 256},
  {"name": "1", "op": "relu"},
  {"name": "2", "op": "linear", "in_features": 256, "out_features": 10}],
 "loss": "cross_entropy"}"#;

/// `n` images (from `start`) of one IDX pair, flattened to 784 features.
fn load(images: &str, labels: &str, start: usize, n: usize) -> Dataset {
    let (x, shape) = read_idx_images(Path::new(DIR).join(images)).unwrap();
    let y = read_idx_labels(Path::new(DIR).join(labels)).unwrap();
    let d = shape[1] * shape[2];
    let x = Tensor::from_vec(x[start * d..(start + n) * d].to_vec(), &[n, d]).unwrap();
    Dataset::classification(x, y[start..start + n].to_vec()).unwrap()
}

fn audit(
    model: &Model,
    w: &[Tensor],
    retain: &Dataset,
    forget: &Dataset,
    test: &Dataset,
) -> AuditRow {
    audit_model(
        model,
        w,
        AuditSets {
            retain,
            forget,
            test,
        },
        0,
    )
    .unwrap()
}

#[test]
fn random_forgetting_on_fashion_mnist_behaves_like_retraining() {
    if !Path::new(DIR).join("train-images-idx3-ubyte.gz").exists() {
        eprintln!("SKIPPED: {DIR} not found (apt-get install dataset-fashion-mnist)");
        return;
    }
    // Train on the first 6000 training images, hold out the next 2000 as ∇τ's validation
    // set; 2000 test images are the attack's non-members.
    let train_set = load(
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        0,
        6000,
    );
    let val = load(
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        6000,
        2000,
    );
    let test = load(
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        0,
        2000,
    );
    let model = Model::from_json(MLP).unwrap();
    let cpu = DeviceRequest::Exact(gradtau::Device::Cpu);
    // Long enough, with the rate decaying to 0, that the MLP memorises its training set.
    let (epochs, batch) = (40, 64);
    let recipe = TrainRecipe {
        epochs,
        batch_size: batch,
        lr: 1e-3,
        schedule: LrSchedule::Linear {
            start: 1.0,
            end: 0.0,
            total_steps: train_set.len().div_ceil(batch) * epochs,
        },
        seed: 1,
        device: cpu,
        ..Default::default()
    };
    let (fidx, ridx) = split_indices(train_set.len(), 0.1, &mut Rng::new(7));
    let forget = train_set.subset(&fidx).unwrap();
    let retain = train_set.subset(&ridx).unwrap();
    let mut original = model.init_weights(1);
    train(&model, &mut original, &train_set, &recipe, &mut no_progress).unwrap();
    let mut retrained = model.init_weights(1);
    train(&model, &mut retrained, &retain, &recipe, &mut no_progress).unwrap();
    let o = audit(&model, &original, &retain, &forget, &test);
    let r = audit(&model, &retrained, &retain, &forget, &test);
    eprintln!(
        "original: forget {:.4} test {:.4} MIA {:.4}; retrained: forget {:.4} test {:.4} MIA {:.4}",
        o.forget_accuracy,
        o.test_accuracy,
        o.mia_loss,
        r.forget_accuracy,
        r.test_accuracy,
        r.mia_loss
    );
    // A real gap to close: the original fits its training set (96.5 % measured) far better
    // than unseen data, retraining forgets by several points, and the attack sees it.
    assert!(
        o.forget_accuracy > 0.95,
        "the original fits its training set poorly: forget accuracy {}",
        o.forget_accuracy
    );
    assert!(o.forget_accuracy - r.forget_accuracy > 0.05);
    assert!(o.mia_loss - r.mia_loss > 0.03);

    // Three seeds of ∇τ, judged on their mean (one seed is one draw). Along the way, the α
    // controller (which acts here: 2000 validation samples resolve its health bar) must keep
    // α, before its linear decay to half over the run, within [α₀, α_max] = [0.4, 0.8].
    let decay = |p: &Progress| 1.0 - 0.5 * p.epoch as f32 / p.epochs as f32;
    let mut largest_alpha = 0.0f32;
    let runs: Vec<AuditRow> = (0..3)
        .map(|seed| {
            let mut w = original.clone();
            Method::NablaTau(NablaTauOptions {
                device: cpu,
                seed,
                ..Default::default()
            })
            .run(
                &model,
                &mut w,
                UnlearnSets {
                    forget: &forget,
                    retain: &retain,
                    val: &val,
                },
                &mut |p: &Progress| {
                    let base = p.alpha / decay(p);
                    assert!((0.4 - 1e-5..=0.8 + 1e-5).contains(&base), "{p:?}");
                    largest_alpha = largest_alpha.max(base);
                    Control::Continue
                },
            )
            .unwrap();
            let u = audit(&model, &w, &retain, &forget, &test);
            eprintln!(
                "∇τ seed {seed}: forget {:.4} test {:.4} MIA {:.4}",
                u.forget_accuracy, u.test_accuracy, u.mia_loss
            );
            u
        })
        .collect();
    let mean = |f: fn(&AuditRow) -> f64| runs.iter().map(f).sum::<f64>() / runs.len() as f64;
    let (forget_acc, mia, test_acc) = (
        mean(|u| u.forget_accuracy),
        mean(|u| u.mia_loss),
        mean(|u| u.test_accuracy),
    );
    // Measured: forget accuracy 96.5 → 88.2 % (retrain 83.5 %), 64 % of the gap; the loss
    // attack 0.558 → 0.538 (retrain 0.483), only 27 % of it (a 66-step run, so at 4× the
    // scheduled rate under the rate guard; before it, 61 % and 29 %). The forget set stays a few
    // points better recognised than unseen data, and its losses lower: twice the forget-epochs,
    // batches of 64 or a 3× rate each moved the attack by less than 0.01, and a wider Huber
    // clamp made it worse. Before the margin term (see nabla_tau/objective.rs) the forget
    // accuracy ended at 89.7 % (53 % of the gap) against 85.9 % on validation data; the median
    // forget loss matched the validation set's (0.008 vs 0.009) but the upper tail stayed light
    // (third quartile 0.14 vs 0.20). The issue's half-way bar is held by the digits test
    // (tests/unlearn_digits.rs); here the bars sit below what is measured, to catch a
    // regression, not to claim more than that.
    let closed = |orig: f64, target: f64, got: f64| (orig - got) / (orig - target);
    let f_closed = closed(o.forget_accuracy, r.forget_accuracy, forget_acc);
    let m_closed = closed(o.mia_loss, r.mia_loss, mia);
    eprintln!(
        "gap closed: forget accuracy {:.0} %, MIA {:.0} %",
        100.0 * f_closed,
        100.0 * m_closed
    );
    assert!(
        f_closed >= 0.5,
        "forget accuracy {forget_acc:.4}: under half-way from {:.4} to {:.4}",
        o.forget_accuracy,
        r.forget_accuracy
    );
    assert!(
        m_closed >= 0.2,
        "MIA {mia:.4}: under 20 % of the way from {:.4} to {:.4}",
        o.mia_loss,
        r.mia_loss
    );
    assert!(
        forget_acc >= r.forget_accuracy - 0.01,
        "overshot: {forget_acc:.4}"
    );
    assert!(mia >= r.mia_loss - 0.03, "overshot the attack: {mia:.4}");
    assert!(
        o.test_accuracy - test_acc <= 0.02,
        "test accuracy fell from {:.4} to {test_acc:.4}",
        o.test_accuracy
    );
}
