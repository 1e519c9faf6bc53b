//! Reproduction of the ∇τ paper's evaluation protocol on Fashion-MNIST; writes
//! docs/REPRODUCTION.md, whose introduction states the protocol.
//!
//! ```text
//! cargo run --release --example fashion_reproduction -- [--model mlp|cnn|all]
//!     [--scenarios random3,random15,random30,class] [--out docs/fashion_results.json]
//!     [--md docs/REPRODUCTION.md] [--train-subset N] [--epochs N] [--report-only]
//!     [--methods nabla_tau_adaptive,...] [--cache DIR] [--seeds N]
//! ```
//!
//! The 60k training images are split once (seed 0) into 50k train and 10k validation (∇τ's
//! target, never trained on); t10k is the audit's test set (the attack's non-members). For
//! each model the original is trained on the train set; for each scenario the retrain
//! reference is trained on the retain set with the same recipe, and ∇τ (adaptive and paper
//! modes), fine-tuning and NegGrad+ start from the original. Every row is audited with
//! `audit_model` (forget = members, test = non-members).
//!
//! Results are merged into the JSON file by model (so the MLP and the CNN can be run
//! separately) and the Markdown report is regenerated from the whole file.

#[path = "common/report.rs"]
mod report;
use gradtau::audit::{audit_model, AuditRow, AuditSets};
use gradtau::data::{split_indices, Dataset};
use gradtau::io::{read_idx_images, read_idx_labels};
use gradtau::nn::Model;
use gradtau::optim::LrSchedule;
use gradtau::rng::Rng;
use gradtau::unlearn::{
    no_progress, train, BaselineOptions, Control, Method, NablaTauOptions, Progress, ProgressFn,
    TrainRecipe, UnlearnSets,
};
use gradtau::Tensor;
use report::machine;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

const DATA_DIR: &str = "/usr/share/datasets/fashion-mnist";
const VAL_SIZE: usize = 10_000;
/// Retain accuracy is measured on a fixed random sample of this many retain samples: the
/// full retain set (up to 48.5k) would cost as much as the rest of the audit for the CNN.
const RETAIN_AUDIT: usize = 10_000;
const SEED: u64 = 0;

const MLP_SPEC: &str = include_str!("../data/specs/fashion_mlp.json");

const CNN_SPEC: &str = include_str!("../data/specs/fashion_cnn.json");

const METHODS: [&str; 4] = [
    "nabla_tau_adaptive",
    "nabla_tau_paper",
    "finetune",
    "neggrad_plus",
];

/// The class removed in the class-removal scenario (0 = T-shirt/top).
const REMOVED_CLASS: u32 = 0;

struct Config {
    models: Vec<String>,
    scenarios: Vec<String>,
    out: PathBuf,
    md: PathBuf,
    train_subset: Option<usize>,
    epochs: Option<usize>,
    report_only: bool,
    /// Unlearning methods to run (the others keep their rows from the JSON file).
    methods: Vec<String>,
    /// Where trained originals and retrain references are kept between runs.
    cache: Option<PathBuf>,
    /// Adaptive ∇τ is also run with seeds 1..seeds (its batch order and check samples), for
    /// the seed-spread table; 1 = only seed 0, the main row.
    seeds: u64,
}

fn parse_args() -> Config {
    let mut c = Config {
        models: vec!["mlp".into(), "cnn".into()],
        scenarios: ["random3", "random15", "random30", "class"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        out: "docs/fashion_results.json".into(),
        md: "docs/REPRODUCTION.md".into(),
        train_subset: None,
        epochs: None,
        report_only: false,
        methods: METHODS.iter().map(|m| m.to_string()).collect(),
        cache: None,
        seeds: 1,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let value = |i: usize| {
        args.get(i + 1)
            .cloned()
            .unwrap_or_else(|| die(&format!("{} needs a value", args[i])))
    };
    while i < args.len() {
        match args[i].as_str() {
            "--model" => {
                let v = value(i);
                c.models = if v == "all" {
                    vec!["mlp".into(), "cnn".into()]
                } else {
                    vec![v]
                };
                i += 1;
            }
            "--scenarios" => {
                c.scenarios = value(i).split(',').map(|s| s.trim().to_string()).collect();
                i += 1;
            }
            "--out" => {
                c.out = value(i).into();
                i += 1;
            }
            "--md" => {
                c.md = value(i).into();
                i += 1;
            }
            "--train-subset" => {
                c.train_subset = Some(
                    value(i)
                        .parse()
                        .unwrap_or_else(|_| die("--train-subset takes a number")),
                );
                i += 1;
            }
            "--epochs" => {
                c.epochs = Some(
                    value(i)
                        .parse()
                        .unwrap_or_else(|_| die("--epochs takes a number")),
                );
                i += 1;
            }
            "--report-only" => c.report_only = true,
            "--methods" => {
                c.methods = value(i).split(',').map(|s| s.trim().to_string()).collect();
                i += 1;
            }
            "--cache" => {
                c.cache = Some(value(i).into());
                i += 1;
            }
            "--seeds" => {
                c.seeds = value(i)
                    .parse()
                    .ok()
                    .filter(|&n| n >= 1)
                    .unwrap_or_else(|| die("--seeds takes a positive number"));
                i += 1;
            }
            a => die(&format!("unknown argument {a}")),
        }
        i += 1;
    }
    for m in &c.models {
        if m != "mlp" && m != "cnn" {
            die(&format!("--model {m}: expected mlp, cnn or all"));
        }
    }
    for m in &c.methods {
        if !METHODS.contains(&m.as_str()) {
            die(&format!("--methods {m}: expected some of {METHODS:?}"));
        }
    }
    for s in &c.scenarios {
        if scenario_fraction(s).is_none() && s != "class" {
            die(&format!(
                "scenario {s}: expected randomN (N percent) or class"
            ));
        }
    }
    c
}

fn die(msg: &str) -> ! {
    eprintln!("fashion_reproduction: {msg}");
    std::process::exit(2)
}

fn scenario_fraction(s: &str) -> Option<f64> {
    s.strip_prefix("random")
        .and_then(|p| p.parse::<f64>().ok())
        .map(|p| p / 100.0)
}

/// Per-model recipe: chosen so the original fits its training set (≈ 100 % train
/// accuracy), which is what gives a membership attack a real signal to find.
struct ModelSetup {
    spec: &'static str,
    input: Vec<usize>,
    train_size: usize,
    recipe: TrainRecipe,
}

fn setup(name: &str, cfg: &Config) -> ModelSetup {
    let steps_of = |n: usize, b: usize, e: usize| n.div_ceil(b) * e;
    let (spec, input, train_size, epochs) = match name {
        "mlp" => (MLP_SPEC, vec![784], 50_000, 60),
        _ => (CNN_SPEC, vec![1, 28, 28], 20_000, 30),
    };
    let train_size = cfg.train_subset.unwrap_or(train_size).min(50_000);
    let epochs = cfg.epochs.unwrap_or(epochs);
    let batch = 128;
    // The linear decay is over the *original's* step count and then clamps, so the retrain
    // reference (fewer samples) gets the same number of epochs with nearly the same rates.
    let recipe = TrainRecipe {
        lr: 1e-3,
        weight_decay: 0.01,
        epochs,
        batch_size: batch,
        schedule: LrSchedule::Linear {
            start: 1.0,
            end: 0.0,
            total_steps: steps_of(train_size, batch, epochs),
        },
        seed: SEED,
        ..Default::default()
    };
    ModelSetup {
        spec,
        input,
        train_size,
        recipe,
    }
}

fn load(split: &str, input: &[usize]) -> Dataset {
    let dir = Path::new(DATA_DIR);
    let (x, shape) = read_idx_images(dir.join(format!("{split}-images-idx3-ubyte.gz")))
        .unwrap_or_else(|e| {
            die(&format!(
                "{e} (install it with `apt-get install -y dataset-fashion-mnist`)"
            ))
        });
    let y = read_idx_labels(dir.join(format!("{split}-labels-idx1-ubyte.gz")))
        .unwrap_or_else(|e| die(&e.to_string()));
    let mut s = vec![shape[0]];
    s.extend_from_slice(input);
    Dataset::classification(Tensor::from_vec(x, &s).expect("image shape"), y).expect("dataset")
}

fn row_json(name: &str, r: &AuditRow, seconds: f64, extra: Value) -> Value {
    json!({
        "method": name,
        "test_accuracy": r.test_accuracy,
        "retain_accuracy": r.retain_accuracy,
        "forget_accuracy": r.forget_accuracy,
        "mia_loss": r.mia_loss,
        "mia_entropy": r.mia_entropy,
        "seconds": seconds,
        "run": extra,
    })
}

/// Per-epoch means of what the ∇τ progress callback reports (forget batch loss, α, τ).
#[derive(Default)]
struct EpochLog {
    rows: Vec<(usize, f64, f64, f32, f32, usize)>,
}

impl EpochLog {
    fn push(&mut self, p: &Progress) {
        match self.rows.last_mut() {
            Some(r) if r.0 == p.epoch => {
                r.1 += p.forget_loss as f64;
                r.2 += p.retain_loss as f64;
                r.5 += 1;
            }
            _ => self.rows.push((
                p.epoch,
                p.forget_loss as f64,
                p.retain_loss as f64,
                p.alpha,
                p.tau,
                1,
            )),
        }
    }

    fn json(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .map(|&(e, f, r, a, t, n)| json!({"epoch": e, "forget_loss": f / n as f64, "retain_loss": r / n as f64, "alpha": a, "tau": t, "steps": n}))
                .collect(),
        )
    }
}

/// Trains from `init_weights(SEED)`, or loads the weights and seconds of an earlier run from
/// the cache (`--cache`), so that reruns of the unlearning methods need no retraining.
fn trained(
    model: &Model,
    data: &Dataset,
    recipe: &TrainRecipe,
    cfg: &Config,
    key: &str,
    mut log: impl FnMut(&Progress) -> Control,
) -> (Vec<Tensor>, f64) {
    let paths = cfg.cache.as_ref().map(|d| {
        (
            d.join(format!("{key}.safetensors")),
            d.join(format!("{key}.seconds")),
        )
    });
    if let Some((w, secs)) = &paths {
        if let (Ok(mut map), Ok(text)) = (
            gradtau::io::load_safetensors(w),
            std::fs::read_to_string(secs),
        ) {
            let weights: Option<Vec<Tensor>> = model
                .params()
                .iter()
                .map(|p| {
                    map.remove(&p.name)
                        .and_then(|(shape, d)| Tensor::from_vec(d, &shape).ok())
                })
                .collect();
            if let (Some(weights), Ok(s)) = (weights, text.trim().parse::<f64>()) {
                println!("   {key}: loaded from the cache (trained in {s:.1} s)");
                return (weights, s);
            }
        }
    }
    let mut w = model.init_weights(SEED);
    let t = Instant::now();
    train(model, &mut w, data, recipe, &mut log).expect("train");
    let secs = t.elapsed().as_secs_f64();
    if let Some((wp, sp)) = &paths {
        let _ = std::fs::create_dir_all(wp.parent().expect("cache dir"));
        let data: Vec<Vec<f32>> = w.iter().map(|t| t.to_vec().expect("weights")).collect();
        gradtau::io::save_safetensors(
            wp,
            model
                .params()
                .iter()
                .zip(&data)
                .map(|(p, d)| (p.name.as_str(), p.shape.as_slice(), d.as_slice())),
        )
        .expect("cache write");
        write(sp, &format!("{secs}"));
    }
    (w, secs)
}

fn run_model(name: &str, cfg: &Config, results: &mut Value) {
    let s = setup(name, cfg);
    let model = Model::from_json(s.spec).expect("spec");
    let full = load("train", &s.input);
    let test = load("t10k", &s.input);
    let perm = Rng::new(SEED).permutation(full.len());
    let val = full.subset(&perm[..VAL_SIZE]).expect("val");
    let train_set = full
        .subset(&perm[VAL_SIZE..VAL_SIZE + s.train_size])
        .expect("train");
    println!(
        "== {name}: train {} / validation {} / test {}; recipe: AdamW lr {} wd {} batch {} epochs {} (linear decay to 0)",
        train_set.len(),
        val.len(),
        test.len(),
        s.recipe.lr,
        s.recipe.weight_decay,
        s.recipe.batch_size,
        s.recipe.epochs
    );
    let train_log = |label: String| {
        let t0 = Instant::now();
        move |p: &Progress| {
            if p.step.is_multiple_of((p.total_steps / p.epochs).max(1)) {
                println!(
                    "   {label} epoch {}/{} loss {:.4} ({:.0} s)",
                    p.epoch + 1,
                    p.epochs,
                    p.retain_loss,
                    t0.elapsed().as_secs_f64()
                );
            }
            Control::Continue
        }
    };
    let key = format!("{name}-n{}-e{}", train_set.len(), s.recipe.epochs);
    let (original, original_secs) = trained(
        &model,
        &train_set,
        &s.recipe,
        cfg,
        &format!("{key}-original"),
        train_log(format!("{name} original")),
    );
    let train_acc = audit_model(
        &model,
        &original,
        AuditSets {
            retain: &train_set,
            forget: &val,
            test: &test,
        },
        SEED,
    )
    .expect("audit");
    println!(
        "   original: {original_secs:.1} s, train accuracy {:.4}, validation {:.4}, test {:.4}",
        train_acc.retain_accuracy, train_acc.forget_accuracy, train_acc.test_accuracy
    );
    let mut scen_out = Vec::new();
    let y = train_set.y.classes().expect("labels").to_vec();
    for scen in &cfg.scenarios {
        let (fidx, ridx) = match scenario_fraction(scen) {
            Some(f) => split_indices(train_set.len(), f, &mut Rng::new(SEED ^ 0x5eed)),
            None => (
                (0..train_set.len())
                    .filter(|&i| y[i] == REMOVED_CLASS)
                    .collect(),
                (0..train_set.len())
                    .filter(|&i| y[i] != REMOVED_CLASS)
                    .collect(),
            ),
        };
        let forget = train_set.subset(&fidx).expect("forget");
        let retain = train_set.subset(&ridx).expect("retain");
        let mut r = Rng::new(SEED ^ 0xa0d1);
        let retain_audit = if retain.len() > RETAIN_AUDIT {
            let p = r.permutation(retain.len());
            retain.subset(&p[..RETAIN_AUDIT]).expect("retain sample")
        } else {
            retain.clone()
        };
        let audit_sets = AuditSets {
            retain: &retain_audit,
            forget: &forget,
            test: &test,
        };
        let audit = |w: &[Tensor]| audit_model(&model, w, audit_sets, SEED).expect("audit");
        println!(
            "-- {name} / {scen}: forget {} / retain {}",
            forget.len(),
            retain.len()
        );
        let mut rows = Vec::new();
        let show = |n: &str, a: &AuditRow, secs: f64| {
            println!(
                "   {n:<16} test {:.4} retain {:.4} forget {:.4} MIA-loss {:.4} MIA-ent {:.4} {secs:.1} s",
                a.test_accuracy, a.retain_accuracy, a.forget_accuracy, a.mia_loss, a.mia_entropy
            )
        };
        let a = audit(&original);
        show("original", &a, original_secs);
        rows.push(row_json("original", &a, original_secs, Value::Null));
        let (retrained, retrain_secs) = trained(
            &model,
            &retain,
            &s.recipe,
            cfg,
            &format!("{key}-{scen}-retrain"),
            train_log(format!("{name}/{scen} retrain")),
        );
        let a = audit(&retrained);
        show("retrain", &a, retrain_secs);
        rows.push(row_json("retrain", &a, retrain_secs, Value::Null));
        let methods = [
            (
                "nabla_tau_adaptive",
                Method::NablaTau(NablaTauOptions::default()),
            ),
            (
                "nabla_tau_paper",
                Method::NablaTau(NablaTauOptions::paper()),
            ),
            ("finetune", Method::FineTune(BaselineOptions::finetune())),
            (
                "neggrad_plus",
                Method::NegGradPlus(BaselineOptions::neggrad_plus()),
            ),
        ];
        // This scenario as an earlier run left it: rows of methods not rerun are kept.
        let old_scen = results
            .get(name)
            .and_then(|r| r["scenarios"].as_array())
            .and_then(|a| a.iter().find(|x| x["scenario"] == scen.as_str()))
            .cloned()
            .unwrap_or(Value::Null);
        let old_rows = old_scen["rows"].as_array().cloned().unwrap_or_default();
        // Runs `m` on a copy of the original; returns the result's audit and the report.
        let unlearn = |m: &Method, progress: &mut ProgressFn<'_>| {
            let mut w = original.clone();
            let sets = UnlearnSets {
                forget: &forget,
                retain: &retain,
                val: &val,
            };
            let rep = m.run(&model, &mut w, sets, progress).expect("unlearn");
            (audit(&w), rep)
        };
        for (mname, m) in methods {
            if !cfg.methods.iter().any(|x| x == mname) {
                if let Some(r) = find(&old_rows, mname) {
                    rows.push(r.clone());
                }
                continue;
            }
            let mut log = EpochLog::default();
            let (a, rep) = unlearn(&m, &mut |p: &Progress| {
                log.push(p);
                Control::Continue
            });
            show(mname, &a, rep.seconds);
            let extra = json!({
                "steps": rep.steps,
                "epochs": rep.epochs,
                "forget_stopped_at": rep.forget_stopped_at,
                "stop_reason": rep.stop_reason.name(),
                "per_epoch": if mname.starts_with("nabla") { log.json() } else { Value::Null },
            });
            if mname.starts_with("nabla") {
                println!(
                    "     steps {} of {} epochs, forget term stopped at {:?}, ended by {}",
                    rep.steps,
                    rep.epochs,
                    rep.forget_stopped_at,
                    rep.stop_reason.name()
                );
            }
            rows.push(row_json(mname, &a, rep.seconds, extra));
        }
        // Adaptive ∇τ again with other seeds, for the seed-spread table (the original and
        // the retrain reference stay the same).
        let seed_rows = if cfg.seeds > 1 && cfg.methods.iter().any(|m| m == "nabla_tau_adaptive") {
            let mut out = Vec::new();
            for seed in 1..cfg.seeds {
                let m = Method::NablaTau(NablaTauOptions {
                    seed,
                    ..NablaTauOptions::default()
                });
                let (a, rep) = unlearn(&m, &mut no_progress);
                show(&format!("  seed {seed}"), &a, rep.seconds);
                out.push(row_json(
                    "nabla_tau_adaptive",
                    &a,
                    rep.seconds,
                    json!({"seed": seed, "steps": rep.steps, "epochs": rep.epochs,
                           "forget_stopped_at": rep.forget_stopped_at,
                           "stop_reason": rep.stop_reason.name()}),
                ));
            }
            Value::Array(out)
        } else {
            old_scen["seed_rows"].clone()
        };
        scen_out.push(json!({"scenario": scen, "n_forget": forget.len(), "n_retain": retain.len(), "rows": rows, "seed_rows": seed_rows}));
    }
    results[name] = json!({
        "spec": serde_json::from_str::<Value>(s.spec).expect("spec json"),
        "train_size": train_set.len(),
        "val_size": val.len(),
        "test_size": test.len(),
        "recipe": {
            "optimizer": "AdamW", "lr": s.recipe.lr, "weight_decay": s.recipe.weight_decay,
            "batch_size": s.recipe.batch_size, "epochs": s.recipe.epochs,
            "schedule": "linear decay from 1x to 0 over the original's steps",
        },
        "original_train_accuracy": train_acc.retain_accuracy,
        "original_seconds": original_secs,
        "scenarios": merge_scenarios(results.get(name), scen_out),
    });
}

/// Keeps earlier scenarios of the same model that this run did not redo.
fn merge_scenarios(old: Option<&Value>, new: Vec<Value>) -> Value {
    let mut out: Vec<Value> = old
        .and_then(|o| o["scenarios"].as_array())
        .map(|a| {
            a.iter()
                .filter(|s| !new.iter().any(|n| n["scenario"] == s["scenario"]))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    out.extend(new);
    let order = |s: &Value| match s["scenario"].as_str().unwrap_or("") {
        "class" => 1000.0,
        x => scenario_fraction(x).unwrap_or(999.0),
    };
    out.sort_by(|a, b| order(a).total_cmp(&order(b)));
    Value::Array(out)
}

// ------------------------------------------------------------------ report

const LABELS: [(&str, &str); 7] = [
    ("original", "original"),
    ("retrain", "retrain"),
    ("nabla_tau_adaptive", "∇τ adaptive"),
    // Rows kept from a run of the adaptive mode before its last change, for comparison.
    ("nabla_tau_adaptive_before", "∇τ adaptive (before)"),
    ("nabla_tau_paper", "∇τ paper"),
    ("finetune", "fine-tune"),
    ("neggrad_plus", "NegGrad+"),
];

fn find<'a>(rows: &'a [Value], m: &str) -> Option<&'a Value> {
    rows.iter().find(|r| r["method"] == m)
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

/// The paper's claims as checks on one ∇τ row: (name, passed, detail).
fn targets(rows: &[Value], m: &str) -> Vec<(&'static str, bool, String)> {
    let (Some(o), Some(r), Some(n), Some(ft), Some(ng)) = (
        find(rows, "original"),
        find(rows, "retrain"),
        find(rows, m),
        find(rows, "finetune"),
        find(rows, "neggrad_plus"),
    ) else {
        return Vec::new();
    };
    let dl = (f(n, "mia_loss") - f(r, "mia_loss")).abs();
    let de = (f(n, "mia_entropy") - f(r, "mia_entropy")).abs();
    let drop = f(o, "test_accuracy") - f(n, "test_accuracy");
    let df = (f(n, "forget_accuracy") - f(r, "forget_accuracy")).abs();
    let time = f(n, "seconds") / f(r, "seconds");
    // "Closer to retrain on MIA": the mean gap over both attack features.
    let gap = |x: &Value| {
        0.5 * ((f(x, "mia_loss") - f(r, "mia_loss")).abs()
            + (f(x, "mia_entropy") - f(r, "mia_entropy")).abs())
    };
    let (g, gft, gng) = (gap(n), gap(ft), gap(ng));
    vec![
        (
            "MIA ±0.03",
            dl <= 0.03 && de <= 0.03,
            format!("Δloss {dl:.3}, Δent {de:.3}"),
        ),
        (
            "test −1.5 pt",
            drop <= 0.015,
            format!(
                "{:+.2} pt (retrain {:+.2})",
                -100.0 * drop,
                100.0 * (f(r, "test_accuracy") - f(o, "test_accuracy"))
            ),
        ),
        (
            "forget ±3 pt",
            df <= 0.03,
            format!("Δ {:.2} pt", 100.0 * df),
        ),
        (
            "time ≤ 25 %",
            time <= 0.25,
            format!("{:.1} %", 100.0 * time),
        ),
        (
            "MIA beats FT, NG+",
            g < gft && g < gng,
            format!("gap {g:.3} vs {gft:.3}, {gng:.3}"),
        ),
    ]
}

fn scenario_title(s: &Value) -> String {
    let name = s["scenario"].as_str().unwrap_or("?");
    let what = match scenario_fraction(name) {
        Some(p) => format!("random {:.0} %", 100.0 * p),
        None => format!("class {REMOVED_CLASS} removed"),
    };
    format!(
        "{what} (forget {} / retain {})",
        s["n_forget"], s["n_retain"]
    )
}

fn markdown(results: &Value) -> String {
    let mut md = String::new();
    md += "# Reproduction on Fashion-MNIST\n\n";
    md += "<!-- Generated by examples/fashion_reproduction.rs from docs/fashion_results.json; do not edit by hand:\n";
    md += "     change the generator and run `cargo run --release --example fashion_reproduction -- --report-only`. -->\n\n";
    md += "The ∇τ paper judges an unlearning method by how close it lands to retraining from scratch on the retain\n";
    md += "set, the reference that has provably never seen the forget set. Its protocol compares, before and after:\n";
    md += "accuracy on the retain, forget and test sets; a membership-inference attack, a logistic regression that\n";
    md += "tries to tell forget samples (members) from test samples (non-members) by their per-sample loss or by the\n";
    md += "entropy of the softmax output, on balanced classes, scored as its mean accuracy over 10 stratified\n";
    md += "shuffle splits (0.5: it cannot tell, which is what retraining gives); the run time as a fraction of\n";
    md += "retraining's; and the same numbers for the baselines fine-tuning and NegGrad+. The validation samples\n";
    md += "that ∇τ aims at are never the attack's non-members.\n\n";
    md += "This report runs that protocol on Fashion-MNIST, with an MLP and a small CNN, for random\n";
    md += "forgetting of 3 %, 15 % and 30 % of the training set and for the removal of one class\n";
    md += &format!("(class {REMOVED_CLASS}, T-shirt/top). Both ∇τ modes run with their defaults: no tuning by the caller.\n\n");
    md += "The same protocol on text (a spam filter on the SpamAssassin corpus: a random 10 %, every mail of one\n";
    md += "sender, one corpus folder) is [REPRODUCTION_TEXT.md](REPRODUCTION_TEXT.md); on regression (a price\n";
    md += "model on ggplot2's diamonds table: a random 10 % and every diamond of one cut, with the squared error\n";
    md += "as the loss) it is [REPRODUCTION_REGRESSION.md](REPRODUCTION_REGRESSION.md).\n\n";
    md += "Regenerate (about 10 minutes each on 2 cores; `--cache DIR` keeps trained originals and retrains for reruns):\n\n";
    md += "```sh\ncargo run --release --example fashion_reproduction -- --model mlp\ncargo run --release --example fashion_reproduction -- --model cnn --train-subset 10000 --epochs 60\n```\n\n";
    md += "Each run merges its model's results into `docs/fashion_results.json` and rewrites this file from it\n";
    md += "(`--report-only` rewrites this file from the JSON without running anything).\n\n";
    md += "## Setup\n\n";
    md += "- Data: the 60k training images are split once (seed 0) into 50k train and 10k validation (∇τ's\n";
    md += "  target; never trained on). t10k is the test set: the attack's non-members. Pixels scaled to [0, 1].\n";
    md += "- Audit: `audit_model` — accuracies; MIA = logistic regression on the per-sample loss (MIA-loss) or on the\n";
    md += &format!("  softmax entropy (MIA-ent), forget = members vs test = non-members, balanced, mean over 10 stratified\n  splits; 0.5 = cannot tell. Retain accuracy on a fixed random sample of {RETAIN_AUDIT} retain samples.\n");
    md += "- Retrain: from scratch on the retain set with the original's recipe (same epochs). Fine-tune and NegGrad+:\n";
    md += "  `BaselineOptions::finetune()` / `neggrad_plus()` (3 retain passes, AdamW 1e-3, NegGrad+ retain weight 0.9).\n";
    md += "- Seconds: wall time of training (original, retrain) or of the unlearning run; the machine is shared, so\n";
    md += "  times carry noise of ±20 % or so.\n";
    if let Some(m) = results["machine"].as_str() {
        md += &format!("- Machine: {m}.\n");
    }
    for model in ["mlp", "cnn"] {
        let Some(res) = results.get(model) else {
            continue;
        };
        let rc = &res["recipe"];
        md += &format!(
            "\n## {}\n\n",
            if model == "mlp" {
                "MLP 784-256-256-10"
            } else {
                "CNN (conv 1→16 3x3 p1, relu, maxpool 2, conv 16→32 3x3 p1, relu, maxpool 2, linear 1568→10)"
            }
        );
        md += &format!(
            "Train set {} samples{}; recipe: {} lr {} weight decay {}, batch {}, {} epochs, {}. Original: train accuracy {:.2} %, {:.0} s.\n",
            res["train_size"],
            if res["train_size"].as_u64() == Some(50_000) { "" } else { " (a documented subset of the 50k, so the CNN fits the time budget of 2 shared cores)" },
            rc["optimizer"].as_str().unwrap_or("?"),
            f32_text(&rc["lr"]),
            f32_text(&rc["weight_decay"]),
            rc["batch_size"],
            rc["epochs"],
            rc["schedule"].as_str().unwrap_or("?"),
            100.0 * f(res, "original_train_accuracy"),
            f(res, "original_seconds"),
        );
        for s in res["scenarios"].as_array().into_iter().flatten() {
            let rows = s["rows"].as_array().cloned().unwrap_or_default();
            md += &format!("\n### {}\n\n", scenario_title(s));
            md += "| method | test | retain | forget | MIA-loss | MIA-ent | seconds | ∇τ steps (stop) |\n|---|---|---|---|---|---|---|---|\n";
            for (key, label) in LABELS {
                let Some(r) = find(&rows, key) else { continue };
                let steps = match r["run"]["steps"].as_u64() {
                    Some(st) if key.starts_with("nabla") => format!(
                        "{st} / {} ep{}",
                        r["run"]["epochs"],
                        r["run"]["forget_stopped_at"]
                            .as_u64()
                            .map(|e| format!(", off at ep {e}"))
                            .unwrap_or_default()
                    ),
                    _ => String::new(),
                };
                md += &format!(
                    "| {label} | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} | {:.1} | {steps} |\n",
                    100.0 * f(r, "test_accuracy"),
                    100.0 * f(r, "retain_accuracy"),
                    100.0 * f(r, "forget_accuracy"),
                    f(r, "mia_loss"),
                    f(r, "mia_entropy"),
                    f(r, "seconds"),
                );
            }
            md += "\nTargets (✓ pass, ✗ fail):\n\n| mode |";
            let t_a = targets(&rows, "nabla_tau_adaptive");
            let t_p = targets(&rows, "nabla_tau_paper");
            for (n, _, _) in &t_a {
                md += &format!(" {n} |");
            }
            md += "\n|---|";
            md += &"---|".repeat(t_a.len());
            md += "\n";
            for (label, t) in [("∇τ adaptive", &t_a), ("∇τ paper", &t_p)] {
                md += &format!("| {label} |");
                for (_, ok, d) in t.iter() {
                    md += &format!(" {} {d} |", if *ok { "✓" } else { "✗" });
                }
                md += "\n";
            }
        }
    }
    md += "\n## Summary of targets\n\n| model | scenario | mode | passed |\n|---|---|---|---|\n";
    for model in ["mlp", "cnn"] {
        let Some(res) = results.get(model) else {
            continue;
        };
        for s in res["scenarios"].as_array().into_iter().flatten() {
            let rows = s["rows"].as_array().cloned().unwrap_or_default();
            for (key, label) in [
                ("nabla_tau_adaptive", "adaptive"),
                ("nabla_tau_paper", "paper"),
            ] {
                let t = targets(&rows, key);
                let failed: Vec<&str> = t.iter().filter(|x| !x.1).map(|x| x.0).collect();
                md += &format!(
                    "| {model} | {} | {label} | {}/{}{} |\n",
                    s["scenario"].as_str().unwrap_or("?"),
                    t.len() - failed.len(),
                    t.len(),
                    if failed.is_empty() {
                        String::new()
                    } else {
                        format!(" (missed: {})", failed.join(", "))
                    }
                );
            }
        }
    }
    md += "\nTargets (the paper's claims): ∇τ's MIA (loss and entropy) within 0.03 of retrain's; test accuracy at most\n";
    md += "1.5 points below the original's; forget accuracy within 3 points of retrain's; ∇τ time at most 25 % of\n";
    md += "retraining; ∇τ closer to retrain on MIA (mean gap of the two attacks) than fine-tune and NegGrad+.\n";
    md += &seed_spread(results);
    md += READING;
    md
}

/// An f32 setting stored in the JSON file (as f64, possibly widened: 0.0010000000474974513),
/// printed as the f32 it was (0.001).
fn f32_text(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| v.to_string(), |x| (x as f32).to_string())
}

/// `lo to hi (mean m)` of some values, scaled and printed with `prec` decimals.
fn spread(v: &[f64], scale: f64, prec: usize) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min) * scale;
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max) * scale;
    let mean = v.iter().sum::<f64>() / v.len() as f64 * scale;
    format!("{lo:.prec$} to {hi:.prec$} (mean {mean:.prec$})")
}

/// The adaptive mode's results over several seeds (its batch order and the samples its
/// membership checks look at), against the same original and retrain reference.
fn seed_spread(results: &Value) -> String {
    let mut body = String::new();
    let mut seeds_seen = 0;
    for model in ["mlp", "cnn"] {
        let Some(res) = results.get(model) else {
            continue;
        };
        for s in res["scenarios"].as_array().into_iter().flatten() {
            let rows = s["rows"].as_array().cloned().unwrap_or_default();
            let (Some(main), Some(extra), Some(o), Some(r)) = (
                find(&rows, "nabla_tau_adaptive"),
                s["seed_rows"].as_array(),
                find(&rows, "original"),
                find(&rows, "retrain"),
            ) else {
                continue;
            };
            let runs: Vec<&Value> = std::iter::once(main).chain(extra).collect();
            seeds_seen = seeds_seen.max(runs.len());
            let col = |g: &dyn Fn(&Value) -> f64| runs.iter().map(|x| g(x)).collect::<Vec<_>>();
            let forget = col(&|x| (f(x, "forget_accuracy") - f(r, "forget_accuracy")).abs());
            let test = col(&|x| f(x, "test_accuracy") - f(o, "test_accuracy"));
            let mia = col(&|x| {
                (f(x, "mia_loss") - f(r, "mia_loss"))
                    .abs()
                    .max((f(x, "mia_entropy") - f(r, "mia_entropy")).abs())
            });
            let time = col(&|x| f(x, "seconds") / f(r, "seconds"));
            let mut passed = Vec::new();
            let mut missed: Vec<&str> = Vec::new();
            for x in &runs {
                let mut rs: Vec<Value> = rows
                    .iter()
                    .filter(|y| y["method"] != "nabla_tau_adaptive")
                    .cloned()
                    .collect();
                rs.push((*x).clone());
                let t = targets(&rs, "nabla_tau_adaptive");
                passed.push(t.iter().filter(|y| y.1).count().to_string());
                for (name, ok, _) in t {
                    if !ok && !missed.contains(&name) {
                        missed.push(name);
                    }
                }
            }
            body += &format!(
                "| {model} | {} | {} | {} | {} | {} | {} | {}{} |\n",
                s["scenario"].as_str().unwrap_or("?"),
                runs.len(),
                spread(&forget, 100.0, 2),
                spread(&test, 100.0, 2),
                spread(&mia, 1.0, 3),
                spread(&time, 100.0, 1),
                passed.join(", "),
                if missed.is_empty() {
                    String::new()
                } else {
                    format!(" (missed: {})", missed.join(", "))
                },
            );
        }
    }
    if body.is_empty() {
        return String::new();
    }
    let mut md = String::from("\n## Seed spread of adaptive ∇τ\n\n");
    md += &format!(
        "The adaptive mode run with seeds 0 to {} (its batch order and the samples its membership\n",
        seeds_seen - 1
    );
    md +=
        "checks look at) from the same original, judged against the same retrain reference (one\n";
    md += "seed: retraining itself varies too, which this table does not show). Regenerate with\n";
    md += "`--methods nabla_tau_adaptive --seeds 5` added to the commands above.\n\n";
    md += "| model | scenario | seeds | forget Δ to retrain (pt) | test change (pt) | worst MIA Δ | time (% of retrain) | targets met per seed |\n";
    md += "|---|---|---|---|---|---|---|---|\n";
    md + &body
}

/// How to read the tables: what the misses mean.
const READING: &str = "
## Reading the results

- **Class removal, test accuracy.** The test set holds the removed class, so a model that no longer
  recognises it loses about a tenth of its test accuracy; retraining itself misses the 1.5-point target
  by the same amount. The meaningful check is that ∇τ lands where retraining does (forget accuracy 0,
  test accuracy within a fraction of a point of retrain's, MIA within 0.03).
- **Class removal, the entropy attack.** Over five seeds its score for adaptive ∇τ spreads from
  0.514 to 0.538 on the MLP (retrain 0.545) and from 0.575 to 0.608 on the CNN (retrain 0.607):
  the forget samples' prediction entropy is set by nothing in the objective, only the loss of
  the removed label is. Tried and dropped: also pulling the forget samples' predictions towards
  the original model's own distribution over the kept classes (its runner-up classes,
  renormalised), as a guess at what a model that never saw the class predicts. It made the
  spread small but overshot: 0.621 to 0.630 (MLP) and 0.647 to 0.668 (CNN) at weight 2 (0.5 was
  as far off), and 0.605 to 0.612 / 0.630 to 0.649 at weight 0.1 kept on through the repair
  epochs: the attack told the forget samples apart by their entropy more easily than it does
  for the retrained model. Picking the weight that lands on retraining's score would be fitting
  to the reference.
- **The paper's recipe barely forgets an over-fitted model.** Its α₀ (5/3 of the forget fraction)
  decays to 0 while the retain term dominates: on random forgetting the MLP's forget accuracy stays within
  2.5 points of the original's
  and the MIA moves less than half-way to retrain's. That is why the default is the adaptive mode.
- **The CNN** is trained on a 10k subset so that five trainings per scenario fit on two cores; it
  reaches 94 % train accuracy rather than memorising, so the membership signal to remove is small
  (original MIA about 0.52) and differences of a few forget samples move the forget accuracy by
  points. Before the α controller, adaptive ∇τ ended 3.1 to 3.7 points above retrain's forget
  accuracy at 15 % and 30 %: the forget accuracy stalled 2 to 3 points above the validation
  accuracy (at 15 %: 94.4 → 92.1 in 5 forget-epochs, then no further), while the validation
  accuracy stayed within two standard errors of where it started (within one at 15 %). A larger α fixes that (α₀ = 0.8:
  forget 90.2 / 90.6 at 15 % / 30 %, retrain 88.6 / 88.8), but the MLP cannot take it: α₀ = 0.6
  already costs it 1.6 / 2.0 test points at 15 % / 30 % (target 1.5). The controller tells the two
  apart by the validation accuracy the stop test measures anyway. The MLP's falls far enough that
  its α never moves (its results are bit-identical with and without the controller); the CNN's
  holds better: at 15 % its α reaches the 0.8 ceiling at the check of epoch 10; at 30 % it
  never moves, the faster learning rate of the last bullet doing that work. Also tried and dropped: no learning-rate decay, α decaying to 0, normalising the forget push per
  batch, sign-only pushes, batch 128, and α steered by the retain batches' error rate; each was
  worse on one model or the other.
- **The stop test on the CNN.** The retrained model's own threshold attack (forget vs validation
  losses, 1500 / 2048 samples) scores 0.523 at 15 %, above the 0.515 margin: the margin is the
  median of what sampling noise produces, so even a model that never saw the forget set fails it
  about half the time. The test errs towards forgetting longer; on these runs the forget term
  stays on for the whole budget.
- **Time at 30 %, and the learning rate.** At the paper's rate of 1e-3, adaptive ∇τ needed 16
  forget-epochs at 30 % to bring the CNN's forget accuracy within 3 points of retrain's, and
  took 26 to 31 % of retraining's time (11.8 to 13.0 s against 45.1 s re-measured and 42.0 s
  cached): 16 epochs of 3000 forget + 3000 retain samples are already 23 % of retraining's
  60 × 7000 sample passes, and the membership checks add about a tenth more. With 12 epochs the
  forget accuracy stalled 3.1 points above retrain's. Adaptive mode now scales the rate with the
  forget fraction (1e-3 × 10 × fraction, kept within [1e-3, 3e-3]) and runs at least 12 epochs:
  at 30 % the CNN ends 2.6 points above retrain's forget accuracy (was 2.7) in 9.5 to 9.9 s over
  several runs, 23 to 24 % of the cached 42.0 s. Since then the CNN runs each max-pool before
  its ReLU (bit-identical weights: every cached CNN model retrained to the same bytes), and all
  the CNN rows of the table were re-measured: 7.5 s against 37.4 s (20 %); ∇τ's batches of 256
  gained more (24 %) than training's 128 (11 % against the cached 42.0 s, 17 % against the
  45.1 s re-measured earlier). The MLP ends 2.6 points above (was 2.8), 0.8 test
  points below the original (was 1.1), at the price of retain accuracy (97.5 %, was 98.6 %;
  retraining's 99.5 %). At 15 % (rate 1.5e-3) the MLP's forget gap shrinks from 2.8 to 2.2
  points and the CNN's MIA-loss moves from 0.513 to 0.510 (retrain 0.507). Measured and not
  taken: 4e-3 with 10 epochs cost the MLP 1.65 test points at 30 %; 3e-3 with 10 epochs left its
  forget accuracy 2.9 points above retrain's; 3e-3 at 3 % cost it 1.4 test points and 4.5 retain
  points to move a forget gap already inside the target from 1.1 to 0.1 points, which is why
  small forget sets keep 1e-3. The MLP's training
  step at batch 128 is overhead-bound, which is why its time ratios are lower.
- **Short runs: a raised rate under a guard, and kept margin targets.** Adaptive ∇τ now raises
  the rate of a random-forgetting run planned for fewer than 300 steps by 300 / steps (at most
  4×), going back to the previous check's weights at half the rate whenever a check finds the
  forget accuracy more than one standard error below validation's, and, where its checks see
  the whole forget set (at most 2048 samples), pulls forget margins above a saturated target
  (above 7) down to the target each sample kept from the last check (docs/REPRODUCTION_TEXT.md,
  where the spam filters' 57-step runs needed both). Here the MLP's runs have 300 to 708 steps
  and keep their rate; only its 3 % runs get the kept push: forget 90.72 → 90.32 % (retrain
  90.07), test 89.64 → 89.28 %, MIA-loss 0.504 → 0.503 (means of 5 seeds). The CNN's runs have
  100 to 144 steps, so 3×, 2.9× and 2.1× the rate at 3, 15 and 30 %, and its 3 % runs get the kept
  push too; the guard never acted. Means of 5 seeds, before → after (retrain): at 3 %, forget
  90.40 → 90.60 % (92.00), test 87.85 → 87.66 %, MIA-loss 0.505 → 0.508 (0.502); at 15 %, forget
  90.88 → 90.08 % (88.40), test 87.90 → 87.28 %, retain 93.5 → 92.2 %, MIA-loss 0.514 → 0.511
  (0.505); at 30 %, forget 91.01 → 89.73 % (88.80), test 87.72 → 87.01 %, retain 93.8 → 91.6 %,
  MIA-loss 0.515 → 0.513 (0.509). The CNN forgets more at 15 and 30 % for 0.6 and 0.7 test points,
  and its entropy attack moves away from retrain's (seed 0 at 15 %: Δ 0.003 → 0.014), so at 15 %
  its MIA gap no longer beats fine-tuning's and NegGrad+'s on any seed (seed 0: 0.009 against
  0.008 and 0.009; at 3 %, 0.015 against 0.018 and 0.014). That
  re-measurement ran while other jobs loaded the machine (the class-removal runs, whose code
  path and results are unchanged, took 1.7 to 2 times their earlier times), and the CNN at 30 %
  missed the 25 % time bar on every seed (31.6 to 35.1 %). Re-measured on a quiet machine, the
  CNN's retraining references included (retrained to the same bytes; 27.5 s at 30 %), its 144
  steps take 16.9 to 18.9 % of retraining's time, and every CNN figure but the times is as
  before.
- **Seeds.** Over seeds 0 to 4 (the seed-spread table), 21 of the 30 random-forgetting runs
  meet every target after the change of the last bullet (the CNN at 15 % misses on the MIA's
  comparison with the baselines on every seed, at 3 % on two seeds; the MLP at 30 % on test
  accuracy on two); before it, 24 of 30 did, as follows. The table was re-measured after ∇τ's step went to one forward pass for
  both batches and the convolutions to direct kernels: both change results in the last bits,
  so every seed's run takes another path. The six misses are all within about one standard
  error of a bar. The MLP at 30 % ends 1.50 and 1.75 test points below the original on seeds 2
  and 3 (bar 1.5; retraining itself is 1.32 below). The CNN at 3 % ends with its forget
  accuracy 3.33 and 3.00 points below retraining's on seeds 1 and 4 (10 and 9 of 300
  samples). The CNN ends 3.27 points above at 15 % on seed 4 and 3.07 above at 30 % on seed 1.
  The previous measurement had one miss of 30 (the CNN at 15 % on seed 4, 3.2 points above).
  At 15 % and 30 % the forget gaps are 0.8 to 2.8 points for the MLP (means 1.6 and 2.1) and
  1.0 to 3.3 for the CNN (means 2.5 and 2.2). Before the margin term (next bullet) they were
  2.0 to 3.7 (means 2.6 to 3.0), and the 3-point target held on three of five seeds per model
  and scenario. Time and the MIA hold on every seed of random forgetting. On class removal the
  entropy attack's gap reaches 0.030 (MLP) and 0.034 (CNN) on some seeds. Part of the spread is
  measurement noise: one standard error of an accuracy near 89 % is 0.8 points on 1500 forget
  samples, 0.6 on 3000 and 1.8 on the CNN's 300 at 3 %, and the retrain reference is a single
  run.
- **The margin term.** Before it, the forget accuracy stalled 2 to 3 points above the
  validation accuracy (CNN at 15 %: 91 to 92 % against 88 to 89 % at every check) while the
  threshold attack on the losses was near its noise margin: the forget losses were distributed
  like unseen data's, but the ascent had made the forget samples less confident without
  changing their predicted class. Adaptive mode now also rank-matches the classification
  margins (labelled logit minus the largest other) to the validation margins, for the ranks
  whose reference margin is below 0.5 (unseen samples there are wrong or nearly so), with
  weight 0.3 next to the loss term, and only while the last check still recognised the forget
  set by its accuracy. Measured over five seeds at 15 % and 30 %: the forget target went from
  12 to 19 of 20 runs; the cost is 0.2 to 0.3 test points on the MLP (mean at 30 %: 1.24 below
  the original, was 0.91) and 0.1 to 0.2 on the CNN. Weight 0.5 and 1.0 forgot more (CNN 30 %
  means 1.8 and 1.3 points) but cost the MLP up to 2.1 and 2.8 test points at 30 %. Without the
  cap (every rank pushed), weight 1 cost the CNN 0.7 to 1.5 test points and weight 0.2 left it
  3.3 points above retraining's forget accuracy on one seed at 15 %; a cap of 2 forgot less
  than 0.5 (CNN at 15 %, weight 1: mean 1.2 against 1.0 points), a cap of 0 forgot about as
  much and cost the digits test more (2.0 test points below the original on average, past
  its bar). Pushing on after the forget set stops being recognised took the CNN's forget
  accuracy at 3 % to the validation level: on average 2.5 points below retraining's 91.3 %
  with the paper's 97 epochs and 1.3 below with the 50-epoch cap of the next bullet, against
  0.7 below with the switch (that reference sits 3 points above retraining's own test
  accuracy: one draw of 300 samples). Matching losses in log space instead (a push that does
  not fade on confident samples) forgot less and damaged more (CNN at 15 %: mean 3.3 points,
  0.3 to 0.6 test points).
- **Adaptive mode's other changes with it.** The default number of forget-epochs is capped at
  50: the paper's E reaches 97 on the CNN at 3 %, whose forgetting was done well before; its
  time fell from 11.3 % to 4.9 % of retraining's. A passed stop test is confirmed on validation
  samples the checks never looked at: on the MLP at 3 % one run had stopped with its check
  sample 1.1 points below where it started and the test set 2.0 points below. And the α
  controller acts only when the checks' validation sample resolves a 2-point drop at two
  standard errors (2048 samples here; the digits test's 179 do not, and with variants of the
  margin term raising α there cost one seed up to 4.4 test points). Tried and not taken: 4.5
  instead of 3 times the paper's E (the CNN's 15 % gaps fell to 0.8 to 2.2 points, but the
  digits test lost 3.6 test points on one seed).
- **Tried before the margin term.** Random forgetting runs its whole forget-epoch budget on these
  models (the stop test rarely passes), so more epochs buy more forgetting at the cost of time:
  25 forget-epochs instead of 17 moved the CNN's 15 % spread to 1.3 to 3.1 points (mean 2.4) at
  16.5 % of retraining's time. A stronger late push trades the other way: with α held at its
  start instead of decaying to half, the CNN's means fell to 2.0 (15 %) and 2.4 (30 %) points,
  but the MLP lost 1.3 to 2.0 test points at 30 % (three of five seeds past the 1.5 bar);
  decaying to three quarters, the MLP lost 1.8 on one seed at 30 % and the CNN still missed the
  forget target on one seed at 15 % and one at 30 %. The α controller was tried faster too: a
  gain of 1.0 instead of 0.5 changed the means by under 0.2 points and cost the MLP 1.6 test
  points on one seed at 30 %; membership checks every 12 steps instead of 25 brought the CNN's
  means to 2.6 (15 %) and 2.4 (30 %) points, left the MLP unchanged, but on the digits data let
  α climb until one seed lost 3 test points.
";

fn main() {
    let cfg = parse_args();
    let mut results: Value = std::fs::read_to_string(&cfg.out)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_else(|| json!({}));
    if !cfg.report_only {
        results["machine"] = machine().into();
        for m in cfg.models.clone() {
            run_model(&m, &cfg, &mut results);
            write(
                &cfg.out,
                &serde_json::to_string_pretty(&results).expect("json"),
            );
            write(&cfg.md, &markdown(&results));
        }
    }
    write(&cfg.md, &markdown(&results));
    println!("wrote {} and {}", cfg.out.display(), cfg.md.display());
}

fn write(path: &Path, text: &str) {
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    std::fs::write(path, text).unwrap_or_else(|e| die(&format!("{}: {e}", path.display())));
}
