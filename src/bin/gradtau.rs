//! The `gradtau` command: unlearning, auditing and training on files, and a demo on the
//! embedded digits data.

use clap::{Args, Parser, Subcommand, ValueEnum};
use gradtau::audit::report::{audit_model, AuditRow, AuditSets};
use gradtau::data::{digits, Dataset, Targets};
use gradtau::io;
use gradtau::nn::{LossKind, Model};
use gradtau::optim::LrSchedule;
use gradtau::rng::Rng;
use gradtau::unlearn::{
    self, BaselineOptions, Control, Method, NablaTauOptions, OptimizerKind, Progress, RunReport,
    TrainRecipe, UnlearnSets,
};
use gradtau::{DeviceRequest, Error, Result, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "gradtau",
    version,
    about = "Machine unlearning with ∇τ on your own model weights"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train an MLP on the embedded digits data, unlearn a random 10 % and then a whole
    /// class, and print the audit table (original / ∇τ / retrained / baselines).
    Demo(DemoArgs),
    /// Unlearn the forget set from a model given as spec + safetensors weights.
    Unlearn(UnlearnArgs),
    /// Accuracy per set and membership-inference scores of a model.
    Audit(AuditArgs),
    /// Train a model (original models and the retrain-from-scratch reference).
    Train(TrainArgs),
}

#[derive(Args)]
struct DemoArgs {
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "auto")]
    device: String,
    /// Write the tables as JSON to this file too.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum MethodArg {
    /// ∇τ, adaptive mode (default).
    NablaTau,
    /// ∇τ exactly as the authors' recipe.
    Paper,
    Finetune,
    Neggrad,
    NeggradPlus,
}

#[derive(Args)]
struct SetArgs {
    /// Forget-set inputs (.npy float32 or IDX) and labels/targets (.npy or IDX).
    #[arg(long)]
    forget_x: PathBuf,
    #[arg(long)]
    forget_y: PathBuf,
    #[arg(long)]
    retain_x: PathBuf,
    #[arg(long)]
    retain_y: PathBuf,
}

#[derive(Args)]
struct UnlearnArgs {
    /// Model spec (JSON, format gradtau.model/1).
    #[arg(long)]
    spec: PathBuf,
    /// Weights of the trained model (safetensors, names as in the spec).
    #[arg(long)]
    weights: PathBuf,
    #[command(flatten)]
    sets: SetArgs,
    /// Held-out validation inputs/labels (never trained on): ∇τ's target.
    #[arg(long)]
    val_x: PathBuf,
    #[arg(long)]
    val_y: PathBuf,
    /// Where to write the unlearned weights (safetensors).
    #[arg(long)]
    out: PathBuf,
    /// Write a JSON report (options, steps, seconds, before/after metrics).
    #[arg(long)]
    report: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = MethodArg::NablaTau)]
    method: MethodArg,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Override the number of forget-epochs E.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override the batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Override the learning rate.
    #[arg(long)]
    lr: Option<f32>,
}

#[derive(Args)]
struct AuditArgs {
    #[arg(long)]
    spec: PathBuf,
    #[arg(long)]
    weights: PathBuf,
    #[command(flatten)]
    sets: SetArgs,
    /// Test inputs/labels (non-members for the membership attack).
    #[arg(long)]
    test_x: PathBuf,
    #[arg(long)]
    test_y: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct TrainArgs {
    #[arg(long)]
    spec: PathBuf,
    /// Training inputs and labels/targets.
    #[arg(long)]
    x: PathBuf,
    #[arg(long)]
    y: PathBuf,
    /// Start from these weights instead of a fresh initialisation.
    #[arg(long)]
    init: Option<PathBuf>,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f32,
    /// adamw, adam, sgd (momentum 0.9).
    #[arg(long, default_value = "adamw")]
    optimizer: String,
    /// constant, linear or cosine.
    #[arg(long, default_value = "constant")]
    schedule: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "auto")]
    device: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(a) => demo(a),
        Command::Unlearn(a) => unlearn_cmd(a),
        Command::Audit(a) => audit_cmd(a),
        Command::Train(a) => train_cmd(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gradtau: error: {e}");
            ExitCode::from(2)
        }
    }
}

// ---------------------------------------------------------------- progress

/// A progress bar fed by the library's per-step callback.
fn progress_bar(label: &str) -> ProgressBar {
    let pb = ProgressBar::new(1);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_prefix(label.to_string());
    pb
}

fn feed(pb: &ProgressBar) -> impl FnMut(&Progress) -> Control + '_ {
    move |p: &Progress| {
        pb.set_length(p.total_steps as u64);
        pb.set_position(p.step as u64 + 1);
        let mut msg = format!("epoch {}/{}", p.epoch + 1, p.epochs);
        if p.forget_loss.is_finite() {
            msg += &format!(" forget {:.3}", p.forget_loss);
        }
        if p.retain_loss.is_finite() {
            msg += &format!(" retain {:.3}", p.retain_loss);
        }
        if p.tau.is_finite() {
            msg += &format!(" α {:.2} τ {:.3}", p.alpha, p.tau);
        }
        pb.set_message(msg);
        Control::Continue
    }
}

// ---------------------------------------------------------------- files

fn read_inputs(model: &Model, path: &Path) -> Result<Tensor> {
    let (data, shape) = io::read_array_f32(path)?;
    let n = shape.first().copied().unwrap_or(0);
    let per: usize = model.input_shape().iter().product();
    if n == 0 || data.len() != n * per {
        return Err(Error::shape(
            "inputs",
            format!(
                "{}: array of shape {shape:?} does not hold [N, {:?}] samples",
                path.display(),
                model.input_shape()
            ),
        ));
    }
    let mut s = vec![n];
    s.extend_from_slice(model.input_shape());
    Tensor::from_vec(data, &s)
}

fn read_set(model: &Model, x: &Path, y: &Path, what: &str) -> Result<Dataset> {
    let x = read_inputs(model, x)?;
    let targets = match model.loss_kind() {
        LossKind::CrossEntropy => Targets::Classes(io::read_array_labels(y)?),
        _ => {
            let (t, _) = io::read_array_f32(y)?;
            let mut s = vec![x.dim(0)];
            s.extend_from_slice(model.output_shape());
            Targets::Values(
                Tensor::from_vec(t, &s).map_err(|e| Error::Io(format!("{}: {e}", y.display())))?,
            )
        }
    };
    let d = Dataset::new(x, targets)?;
    model.check_dataset(&d, what)?;
    Ok(d)
}

fn read_model(spec: &Path) -> Result<Model> {
    let text =
        std::fs::read_to_string(spec).map_err(|e| Error::Io(format!("{}: {e}", spec.display())))?;
    Model::from_json(&text)
}

/// The weights in spec order, and the checkpoint's batch counters (PyTorch's
/// `<batchnorm node>.num_batches_tracked`), carried through to the output file.
fn read_weights(model: &Model, path: &Path) -> Result<(Vec<Tensor>, Counters)> {
    let io::Checkpoint {
        floats: mut map,
        others,
    } = io::load_checkpoint(path)?;
    let mut out = Vec::new();
    for p in model.params() {
        let (shape, data) = map.remove(&p.name).ok_or_else(|| {
            Error::Binding(format!(
                "{}: no tensor named `{}` (shape {:?})",
                path.display(),
                p.name,
                p.shape
            ))
        })?;
        if shape != p.shape {
            return Err(Error::Binding(format!(
                "{}: `{}` has shape {shape:?}, the spec says {:?}",
                path.display(),
                p.name,
                p.shape
            )));
        }
        out.push(Tensor::from_vec(data, &shape)?);
    }
    // A float copy of PyTorch's counter is not ours either; an integer one is carried.
    map.retain(|k, _| !k.ends_with(io::safetensors::NUM_BATCHES_TRACKED));
    let is_counter = |k: &str| {
        k.strip_suffix(io::safetensors::NUM_BATCHES_TRACKED)
            .and_then(|node| node.strip_suffix('.'))
            .is_some_and(|node| model.param_index(&format!("{node}.running_mean")).is_some())
    };
    let stray = map
        .keys()
        .map(|k| (k, "F32".to_string()))
        .chain(
            others
                .iter()
                .filter(|(k, _)| !is_counter(k))
                .map(|(k, t)| (k, t.dtype.clone())),
        )
        .next();
    if let Some((k, dtype)) = stray {
        return Err(Error::Binding(format!(
            "{}: tensor `{k}` ({dtype}) is not a parameter of the spec",
            path.display()
        )));
    }
    model.check_weights(&out)?;
    Ok((out, others))
}

/// Integer tensors of a checkpoint that are not weights (batch norm step counters).
type Counters = std::collections::BTreeMap<String, io::RawTensor>;

/// A zero counter per batch norm node, so that a model trained from scratch saves the
/// `state_dict` PyTorch's strict `load_state_dict` expects.
fn fresh_counters(model: &Model) -> Counters {
    model
        .params()
        .iter()
        .filter_map(|p| p.name.strip_suffix(".running_mean"))
        .map(|node| {
            (
                format!("{node}.{}", io::safetensors::NUM_BATCHES_TRACKED),
                io::RawTensor::i64_scalar(0),
            )
        })
        .collect()
}

fn write_weights(
    model: &Model,
    weights: &[Tensor],
    counters: &Counters,
    path: &Path,
) -> Result<()> {
    let data: Vec<Vec<f32>> = weights.iter().map(|w| w.to_vec()).collect::<Result<_>>()?;
    io::save_checkpoint(
        path,
        model
            .params()
            .iter()
            .zip(&data)
            .map(|(p, d)| (p.name.as_str(), p.shape.as_slice(), d.as_slice())),
        counters,
    )
}

// ---------------------------------------------------------------- commands

fn method_for(
    arg: MethodArg,
    seed: u64,
    device: DeviceRequest,
    epochs: Option<usize>,
    batch: Option<usize>,
    lr: Option<f32>,
) -> Method {
    let tune_b = |mut o: BaselineOptions| {
        o.seed = seed;
        o.device = device;
        if let Some(e) = epochs {
            o.epochs = e;
        }
        if let Some(b) = batch {
            o.batch_size = b;
        }
        if let Some(l) = lr {
            o.lr = l;
        }
        o
    };
    let tune_n = |mut o: NablaTauOptions| {
        o.seed = seed;
        o.device = device;
        o.epochs = epochs.or(o.epochs);
        o.batch_size = batch.or(o.batch_size);
        o.lr = lr.or(o.lr);
        o
    };
    match arg {
        MethodArg::NablaTau => Method::NablaTau(tune_n(NablaTauOptions::default())),
        MethodArg::Paper => Method::NablaTau(tune_n(NablaTauOptions::paper())),
        MethodArg::Finetune => Method::FineTune(tune_b(BaselineOptions::finetune())),
        MethodArg::Neggrad => Method::NegGrad(tune_b(BaselineOptions::neggrad())),
        MethodArg::NeggradPlus => Method::NegGradPlus(tune_b(BaselineOptions::neggrad_plus())),
    }
}

fn unlearn_cmd(a: UnlearnArgs) -> Result<()> {
    let device = DeviceRequest::parse(&a.device)?;
    let model = read_model(&a.spec)?;
    // Batch norm runs in eval mode in every method as the CLI sets them up (∇τ's
    // `norm_training` stays off), so the counters are written back unchanged.
    let (weights, counters) = read_weights(&model, &a.weights)?;
    let forget = read_set(&model, &a.sets.forget_x, &a.sets.forget_y, "forget")?;
    let retain = read_set(&model, &a.sets.retain_x, &a.sets.retain_y, "retain")?;
    let val = read_set(&model, &a.val_x, &a.val_y, "validation")?;
    let method = method_for(a.method, a.seed, device, a.epochs, a.batch_size, a.lr);
    let audit_sets = AuditSets {
        retain: &retain,
        forget: &forget,
        test: &val,
    };
    let before = audit_model(&model, &weights, audit_sets, a.seed)?;
    let pb = progress_bar(method.name());
    let mut w = weights.clone();
    let report = method.run(
        &model,
        &mut w,
        UnlearnSets {
            forget: &forget,
            retain: &retain,
            val: &val,
        },
        &mut feed(&pb),
    )?;
    pb.finish();
    let after = audit_model(&model, &w, audit_sets, a.seed)?;
    write_weights(&model, &w, &counters, &a.out)?;
    print_table(
        "metrics (MIA: forget vs the validation set)",
        &[
            ("before", &before, f64::NAN),
            ("after", &after, report.seconds),
        ],
    );
    eprintln!("wrote {}", a.out.display());
    if let Some(path) = a.report {
        let json = serde_json::json!({
            "method": method.name(),
            "options": format!("{method:?}"),
            "device": a.device,
            "seed": a.seed,
            "run": run_json(&report),
            "before": row_json(&before),
            "after": row_json(&after),
        });
        std::fs::write(&path, serde_json::to_string_pretty(&json).expect("json"))
            .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn audit_cmd(a: AuditArgs) -> Result<()> {
    let model = read_model(&a.spec)?;
    let (weights, _) = read_weights(&model, &a.weights)?;
    let forget = read_set(&model, &a.sets.forget_x, &a.sets.forget_y, "forget")?;
    let retain = read_set(&model, &a.sets.retain_x, &a.sets.retain_y, "retain")?;
    let test = read_set(&model, &a.test_x, &a.test_y, "test")?;
    let row = audit_model(
        &model,
        &weights,
        AuditSets {
            retain: &retain,
            forget: &forget,
            test: &test,
        },
        a.seed,
    )?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&row_json(&row)).expect("json")
        );
    } else {
        print_table("audit", &[("model", &row, f64::NAN)]);
    }
    Ok(())
}

fn train_cmd(a: TrainArgs) -> Result<()> {
    let model = read_model(&a.spec)?;
    let data = read_set(&model, &a.x, &a.y, "training")?;
    let (mut w, mut counters) = match &a.init {
        Some(p) => read_weights(&model, p)?,
        None => (model.init_weights(a.seed), fresh_counters(&model)),
    };
    let optimizer = match a.optimizer.as_str() {
        "adamw" => OptimizerKind::AdamW,
        "adam" => OptimizerKind::Adam,
        "sgd" => OptimizerKind::Sgd {
            momentum: 0.9,
            nesterov: false,
        },
        o => {
            return Err(Error::invalid(format!(
                "--optimizer {o}: expected adamw, adam or sgd"
            )))
        }
    };
    let steps = data.len().div_ceil(a.batch_size.max(1)) * a.epochs;
    let schedule = match a.schedule.as_str() {
        "constant" => LrSchedule::Constant,
        "linear" => LrSchedule::Linear {
            start: 1.0,
            end: 0.0,
            total_steps: steps,
        },
        "cosine" => LrSchedule::Cosine {
            min_factor: 0.0,
            total_steps: steps,
        },
        s => {
            return Err(Error::invalid(format!(
                "--schedule {s}: expected constant, linear or cosine"
            )))
        }
    };
    let recipe = TrainRecipe {
        optimizer,
        lr: a.lr,
        weight_decay: a.weight_decay,
        epochs: a.epochs,
        batch_size: a.batch_size,
        schedule,
        seed: a.seed,
        device: DeviceRequest::parse(&a.device)?,
        ..Default::default()
    };
    let pb = progress_bar("train");
    let r = unlearn::train(&model, &mut w, &data, &recipe, &mut feed(&pb))?;
    pb.finish();
    // One training-mode forward per step, as PyTorch counts `num_batches_tracked`.
    io::advance_batch_counts(&mut counters, r.steps as u64)?;
    write_weights(&model, &w, &counters, &a.out)?;
    eprintln!(
        "trained {} steps in {:.1} s; wrote {}",
        r.steps,
        r.seconds,
        a.out.display()
    );
    Ok(())
}

// ---------------------------------------------------------------- demo

fn demo(a: DemoArgs) -> Result<()> {
    let device = DeviceRequest::parse(&a.device)?;
    // 70 % train, 10 % validation (∇τ's target), 20 % test (the audit's non-members).
    let (train, val, test) = digits::train_val_test(a.seed)?;
    let model = Model::from_json(digits::MLP_SPEC)?;
    let recipe = TrainRecipe {
        epochs: 60,
        batch_size: 32,
        lr: 1e-3,
        seed: a.seed,
        device,
        ..Default::default()
    };
    println!("gradtau demo: UCI digits (8x8, 10 classes), MLP 64-128-128-10");
    println!(
        "train {} / validation {} / test {} samples; device {}",
        train.len(),
        val.len(),
        test.len(),
        device.resolve()?
    );
    let mut original = model.init_weights(a.seed);
    let pb = progress_bar("original");
    let t = Instant::now();
    unlearn::train(&model, &mut original, &train, &recipe, &mut feed(&pb))?;
    pb.finish();
    let original_secs = t.elapsed().as_secs_f64();
    let mut tables = Vec::new();
    let y = train.y.classes().expect("digits has labels");
    let scenarios: Vec<(String, Vec<usize>, Vec<usize>)> = vec![
        {
            let mut r = Rng::new(a.seed ^ 0xf0f0);
            let (f, k) = gradtau::data::split_indices(train.len(), 0.1, &mut r);
            ("random 10 % forgotten".to_string(), f, k)
        },
        (
            "class 3 forgotten".to_string(),
            (0..train.len()).filter(|&i| y[i] == 3).collect(),
            (0..train.len()).filter(|&i| y[i] != 3).collect(),
        ),
    ];
    for (title, fidx, ridx) in scenarios {
        let forget = train.subset(&fidx)?;
        let retain = train.subset(&ridx)?;
        let sets = UnlearnSets {
            forget: &forget,
            retain: &retain,
            val: &val,
        };
        let audit_sets = AuditSets {
            retain: &retain,
            forget: &forget,
            test: &test,
        };
        let mut rows: Vec<(String, AuditRow, f64)> = vec![(
            "original".into(),
            audit_model(&model, &original, audit_sets, a.seed)?,
            original_secs,
        )];
        let mut retrained = model.init_weights(a.seed);
        let pb = progress_bar("retrain");
        let t = Instant::now();
        unlearn::train(&model, &mut retrained, &retain, &recipe, &mut feed(&pb))?;
        pb.finish();
        rows.push((
            "retrained".into(),
            audit_model(&model, &retrained, audit_sets, a.seed)?,
            t.elapsed().as_secs_f64(),
        ));
        let methods = [
            ("∇τ (adaptive)", MethodArg::NablaTau),
            ("∇τ (paper)", MethodArg::Paper),
            ("fine-tune", MethodArg::Finetune),
            ("NegGrad+", MethodArg::NeggradPlus),
        ];
        for (name, m) in methods {
            let method = method_for(m, a.seed, device, None, None, None);
            let pb = progress_bar(method.name());
            let mut w = original.clone();
            let r: RunReport = method.run(&model, &mut w, sets, &mut feed(&pb))?;
            pb.finish();
            rows.push((
                name.into(),
                audit_model(&model, &w, audit_sets, a.seed)?,
                r.seconds,
            ));
        }
        let refs: Vec<(&str, &AuditRow, f64)> =
            rows.iter().map(|(n, r, s)| (n.as_str(), r, *s)).collect();
        print_table(
            &format!("{title}: forget {} / retain {}", forget.len(), retain.len()),
            &refs,
        );
        tables.push(serde_json::json!({
            "scenario": title,
            "rows": rows.iter().map(|(n, r, s)| { let mut j = row_json(r); j["method"] = n.clone().into(); j["seconds"] = (*s).into(); j }).collect::<Vec<_>>(),
        }));
    }
    if let Some(path) = a.json {
        std::fs::write(&path, serde_json::to_string_pretty(&tables).expect("json"))
            .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

// ---------------------------------------------------------------- output

fn print_table(title: &str, rows: &[(&str, &AuditRow, f64)]) {
    println!("\n{title}");
    println!(
        "{:<16} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9}",
        "", "retain", "forget", "test", "MIA-loss", "MIA-ent", "seconds"
    );
    for (name, r, secs) in rows {
        let s = if secs.is_finite() {
            format!("{secs:.2}")
        } else {
            "-".into()
        };
        println!(
            "{:<16} {:>8.4} {:>8.4} {:>8.4} {:>9.4} {:>9.4} {:>9}",
            name,
            r.retain_accuracy,
            r.forget_accuracy,
            r.test_accuracy,
            r.mia_loss,
            r.mia_entropy,
            s
        );
    }
}

fn row_json(r: &AuditRow) -> serde_json::Value {
    serde_json::json!({
        "retain_accuracy": r.retain_accuracy,
        "forget_accuracy": r.forget_accuracy,
        "test_accuracy": r.test_accuracy,
        "mia_loss": r.mia_loss,
        "mia_entropy": r.mia_entropy,
    })
}

fn run_json(r: &RunReport) -> serde_json::Value {
    serde_json::json!({
        "method": r.method,
        "epochs": r.epochs,
        "steps": r.steps,
        "lr": r.lr,
        "seconds": r.seconds,
        "forget_stopped_at": r.forget_stopped_at,
        "truncated": r.truncated,
    })
}
