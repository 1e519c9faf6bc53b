//! The `gradtau` command: unlearning, auditing and training on files, and a demo on the
//! embedded digits data.
//!
//! Output files are never written in place: every output path is checked before the run
//! (its directory exists and takes a new file), the results go to temporary files in the
//! target directories, which are synced and then renamed over the targets, so a target is
//! always either its old contents or the complete new ones (see [`Outputs`]).

use clap::{Args, Parser, Subcommand, ValueEnum};
use gradtau::audit::report::{audit_model, AuditRow, AuditSets, TaskMetric};
use gradtau::audit::AttackScores;
use gradtau::data::digits;
use gradtau::io;
use gradtau::nn::{outputs, LossKind, Model};
use gradtau::optim::LrSchedule;
use gradtau::rng::Rng;
use gradtau::unlearn::{
    self, BaselineOptions, Control, Method, NablaTauOptions, OptimizerKind, OverlapPolicy,
    Progress, RunReport, TrainRecipe, UnlearnSets,
};
use gradtau::{DeviceRequest, Error, Result, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::File;
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
    /// Unlearn the forget set from a model given as spec + safetensors weights, or as ONNX.
    Unlearn(UnlearnArgs),
    /// Accuracy per set and membership-inference scores of a model.
    Audit(AuditArgs),
    /// Train a model (original models and the retrain-from-scratch reference).
    Train(TrainArgs),
    /// A model's outputs (or probabilities, or classes) on inputs from a file, as .npy.
    Predict(PredictArgs),
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
    #[command(flatten)]
    model: TrainedModelArgs,
    #[command(flatten)]
    sets: SetArgs,
    /// Held-out validation inputs/labels (never trained on): ∇τ's target.
    #[arg(long)]
    val_x: PathBuf,
    #[arg(long)]
    val_y: PathBuf,
    /// Where to write the unlearned model: safetensors weights, or with --onnx the ONNX file
    /// with its initializers replaced.
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
    #[arg(long, allow_hyphen_values = true)]
    lr: Option<f32>,
    /// Accept forget samples that also occur in the retain (or validation) set; refused by
    /// default.
    #[arg(long)]
    allow_overlap: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args)]
struct LimitArgs {
    /// Memory budget of the run, in bytes or with a K, M, G or T suffix (powers of 1024);
    /// default: GRADTAU_MEMORY_LIMIT, else 3/4 of the available memory.
    #[arg(long, allow_hyphen_values = true)]
    memory_limit: Option<String>,
}

impl LimitArgs {
    fn apply(&self, model: &Model) -> Result<()> {
        if let Some(text) = &self.memory_limit {
            model.set_memory_limit(Some(parse_bytes(text)?));
        }
        Ok(())
    }
}

/// `1234`, `512M`, `8G`: bytes, with an optional binary suffix.
fn parse_bytes(text: &str) -> Result<u64> {
    let t = text.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => 64,
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|_| shift < 64)
        .and_then(|n| n.checked_mul(1u64 << shift))
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            Error::invalid(format!(
                "--memory-limit {text}: expected a positive number of bytes, optionally with K, M, G or T"
            ))
        })
}

#[derive(Args)]
struct AuditArgs {
    #[command(flatten)]
    model: TrainedModelArgs,
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
    #[command(flatten)]
    limits: LimitArgs,
}

/// A trained model: a spec with safetensors weights, or an ONNX file as a server holds it.
#[derive(Args)]
struct TrainedModelArgs {
    /// Model spec (JSON, format gradtau.model/1).
    #[arg(long, required_unless_present = "onnx", conflicts_with = "onnx")]
    spec: Option<PathBuf>,
    /// Weights of the trained model (safetensors, names as in the spec).
    #[arg(long, required_unless_present = "onnx", conflicts_with = "onnx")]
    weights: Option<PathBuf>,
    /// The model as an ONNX file (opset 13+): graph and weights in one; needs --loss.
    #[arg(long, requires = "loss")]
    onnx: Option<PathBuf>,
    /// With --onnx: the loss the model was trained with (cross_entropy, mse, bce_with_logits).
    #[arg(long)]
    loss: Option<String>,
}

/// A loaded model, its weights, and for an ONNX model the file to write results into.
struct Loaded {
    model: Model,
    weights: Vec<Tensor>,
    /// The checkpoint's batch norm step counters (safetensors only), written back with it.
    counters: Counters,
    onnx: Option<gradtau::onnx::OnnxFile>,
}

impl TrainedModelArgs {
    fn load(&self) -> Result<Loaded> {
        match (&self.onnx, &self.spec, &self.weights) {
            (Some(path), _, _) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
                let loss = LossKind::parse(self.loss.as_deref().unwrap_or_default())?;
                let m = gradtau::onnx::OnnxModel::from_bytes(&bytes, loss)
                    .map_err(|e| Error::Spec(format!("{}: {e}", path.display())))?;
                Ok(Loaded {
                    model: m.model,
                    weights: m.weights,
                    counters: Counters::new(),
                    onnx: Some(m.file),
                })
            }
            (None, Some(spec), Some(weights)) => {
                let model = read_model(spec)?;
                let (weights, counters) = read_weights(&model, weights)?;
                Ok(Loaded {
                    model,
                    weights,
                    counters,
                    onnx: None,
                })
            }
            _ => Err(Error::invalid(
                "give --spec and --weights, or --onnx and --loss",
            )),
        }
    }
}

impl Loaded {
    /// Writes `weights` to `path`: into the ONNX file for an ONNX model, else safetensors.
    fn write(&self, weights: &[Tensor], path: &Path) -> Result<()> {
        match &self.onnx {
            Some(file) => {
                let bytes = file.with_weights(&self.model, weights)?;
                std::fs::write(path, bytes)
                    .map_err(|e| Error::Io(format!("{}: {e}", path.display())))
            }
            None => write_weights(&self.model, weights, &self.counters, path),
        }
    }
}

#[derive(Args)]
struct TrainArgs {
    /// Model spec (JSON); or give --onnx (and --loss) to train an ONNX model from the
    /// weights its file holds, writing an ONNX file.
    #[arg(long, required_unless_present = "onnx", conflicts_with = "onnx")]
    spec: Option<PathBuf>,
    #[arg(long, requires = "loss", conflicts_with = "init")]
    onnx: Option<PathBuf>,
    /// With --onnx: the loss (cross_entropy, mse, bce_with_logits).
    #[arg(long)]
    loss: Option<String>,
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
    #[arg(long, default_value_t = 1e-3, allow_hyphen_values = true)]
    lr: f32,
    #[arg(long, default_value_t = 0.01, allow_hyphen_values = true)]
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
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args)]
struct PredictArgs {
    #[command(flatten)]
    model: TrainedModelArgs,
    /// Inputs [N, input shape...] (.npy float32/float64, or IDX plain or gzip).
    #[arg(long)]
    x: PathBuf,
    /// Where to write the predictions (.npy): float32 [N, output shape...], or with
    /// --classes int32 [N].
    #[arg(long)]
    out: PathBuf,
    /// Write probabilities instead of raw outputs: softmax over the classes
    /// (cross_entropy), a sigmoid per output (bce_with_logits).
    #[arg(long, conflicts_with = "classes")]
    probabilities: bool,
    /// Write the most likely class of each sample (cross_entropy models).
    #[arg(long)]
    classes: bool,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    #[command(flatten)]
    limits: LimitArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(a) => demo(a),
        Command::Unlearn(a) => unlearn_cmd(a),
        Command::Audit(a) => audit_cmd(a),
        Command::Train(a) => train_cmd(a),
        Command::Predict(a) => predict_cmd(a),
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

/// The output files of one command, all replaced together at the end.
///
/// Before the run, [`Outputs::check`] makes sure each target's directory exists and takes a
/// new file, so a run is not wasted on an output that cannot be written. After the run each
/// result is written to a temporary file next to its target (same directory, so same file
/// system and the rename is atomic), synced to disk, and only when every temporary file is
/// complete are they renamed over their targets, then the directories synced. A kill or a
/// full disk before the renames leaves every target as it was (and at most a stray
/// `.gradtau-tmp-*` file, removed when the write fails normally); each rename is atomic, so a
/// target is never seen half-written.
///
/// What remains non-atomic is the pair: two renames are two system calls, and a kill between
/// them (a window of microseconds, after all writing is done) leaves the new `--out` next to
/// the old `--report`. POSIX has no multi-file rename; the alternatives (a directory swap, or
/// a manifest file) would change what the user sees on disk. The report is renamed last and
/// names the weights it describes by path and run, so a stale report is detectable.
/// `--out` equal to `--weights` is safe: the weights are read whole before the run, and the
/// old file stays until the rename.
struct Outputs {
    pending: Vec<(PathBuf, PathBuf)>,
}

impl Outputs {
    /// Checks each `(flag, path)` target: a file (or nothing yet) in an existing, writable
    /// directory.
    fn check(targets: &[(&str, &Path)]) -> Result<()> {
        for (flag, path) in targets {
            if path.is_dir() {
                return Err(Error::Io(format!(
                    "{flag} {}: is a directory, expected a file path",
                    path.display()
                )));
            }
            let dir = parent_dir(path);
            if !dir.is_dir() {
                return Err(Error::Io(format!(
                    "{flag} {}: the directory {} does not exist",
                    path.display(),
                    dir.display()
                )));
            }
            let probe = temp_path(path, "probe");
            File::create(&probe)
                .and_then(|_| std::fs::remove_file(&probe))
                .map_err(|e| {
                    Error::Io(format!(
                        "{flag} {}: cannot create a file in {}: {e}",
                        path.display(),
                        dir.display()
                    ))
                })?;
        }
        Ok(())
    }

    fn new() -> Self {
        Outputs {
            pending: Vec::new(),
        }
    }

    /// Writes one result with `write` into a synced temporary file next to `target`.
    fn stage(&mut self, target: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        let tmp = temp_path(target, "new");
        let staged = write(&tmp).and_then(|()| {
            File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::Io(format!("{}: sync failed: {e}", tmp.display())))
        });
        if let Err(e) = staged {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        self.pending.push((tmp, target.to_path_buf()));
        Ok(())
    }

    /// Renames every staged file over its target, in staging order.
    fn commit(mut self) -> Result<()> {
        for (tmp, target) in std::mem::take(&mut self.pending) {
            std::fs::rename(&tmp, &target).map_err(|e| {
                Error::Io(format!(
                    "{}: could not replace it with {}: {e}",
                    target.display(),
                    tmp.display()
                ))
            })?;
            // The rename itself is durable once the directory is synced.
            if let Ok(d) = File::open(parent_dir(&target)) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for Outputs {
    /// Staged files that were never committed (a later write failed) are removed.
    fn drop(&mut self) {
        for (tmp, _) in &self.pending {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `dir/.name.gradtau-tmp-<pid>-<tag>`: hidden, next to the target, unique per process.
fn temp_path(target: &Path, tag: &str) -> PathBuf {
    let name = target
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    parent_dir(target).join(format!(".{name}.gradtau-tmp-{}-{tag}", std::process::id()))
}

/// Writes text through [`Outputs::stage`].
fn write_text(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

// ---------------------------------------------------------------- commands

/// What the command line overrides in a method's defaults.
#[derive(Clone, Copy, Default)]
struct Overrides {
    epochs: Option<usize>,
    batch: Option<usize>,
    lr: Option<f32>,
    overlap: OverlapPolicy,
}

fn method_for(arg: MethodArg, seed: u64, device: DeviceRequest, over: Overrides) -> Method {
    let Overrides {
        epochs,
        batch,
        lr,
        overlap,
    } = over;
    let tune_b = |mut o: BaselineOptions| {
        o.seed = seed;
        o.device = device;
        o.overlap = overlap;
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
        o.overlap = overlap;
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
    let over = Overrides {
        epochs: a.epochs,
        batch: a.batch_size,
        lr: a.lr,
        overlap: if a.allow_overlap {
            OverlapPolicy::Allow
        } else {
            OverlapPolicy::Refuse
        },
    };
    let method = method_for(a.method, a.seed, device, over);
    method.validate()?;
    let mut targets = vec![("--out", a.out.as_path())];
    if let Some(r) = &a.report {
        targets.push(("--report", r.as_path()));
    }
    Outputs::check(&targets)?;
    let loaded = a.model.load()?;
    let (model, weights) = (&loaded.model, &loaded.weights);
    a.limits.apply(model)?;
    let forget = model.read_dataset(&a.sets.forget_x, &a.sets.forget_y, "forget")?;
    let retain = model.read_dataset(&a.sets.retain_x, &a.sets.retain_y, "retain")?;
    let val = model.read_dataset(&a.val_x, &a.val_y, "validation")?;
    let audit_sets = AuditSets {
        retain: &retain,
        forget: &forget,
        test: &val,
    };
    let before = audit_model(model, weights, audit_sets, a.seed)?;
    let pb = progress_bar(method.name());
    let mut w = weights.clone();
    let report = method.run(
        model,
        &mut w,
        UnlearnSets {
            forget: &forget,
            retain: &retain,
            val: &val,
        },
        &mut feed(&pb),
    )?;
    pb.finish();
    let after = audit_model(model, &w, audit_sets, a.seed)?;
    let mut outputs = Outputs::new();
    outputs.stage(&a.out, |p| loaded.write(&w, p))?;
    if let Some(path) = &a.report {
        let json = serde_json::json!({
            "method": method.name(),
            "options": format!("{method:?}"),
            "device": a.device,
            "seed": a.seed,
            "weights": a.out.display().to_string(),
            "run": run_json(&report),
            "before": row_json(&before),
            "after": row_json(&after),
        });
        let text = serde_json::to_string_pretty(&json).expect("json");
        outputs.stage(path, |p| write_text(p, &text))?;
    }
    outputs.commit()?;
    print_table(
        "metrics (MIA: forget vs the validation set)",
        &[
            ("before", &before, f64::NAN),
            ("after", &after, report.seconds),
        ],
    );
    println!(
        "{}: {} steps of {} planned epochs, ended by {}{}",
        report.method,
        report.steps,
        report.epochs,
        report.stop_reason.name(),
        report.forget_stopped_at.map_or(String::new(), |e| format!(
            " (forget term off at epoch {e})"
        ))
    );
    eprintln!("wrote {}", a.out.display());
    if let Some(path) = &a.report {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn audit_cmd(a: AuditArgs) -> Result<()> {
    let Loaded { model, weights, .. } = a.model.load()?;
    a.limits.apply(&model)?;
    let forget = model.read_dataset(&a.sets.forget_x, &a.sets.forget_y, "forget")?;
    let retain = model.read_dataset(&a.sets.retain_x, &a.sets.retain_y, "retain")?;
    let test = model.read_dataset(&a.test_x, &a.test_y, "test")?;
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
    // The recipe is checked before any data is read (the schedule's length is set below).
    let mut recipe = TrainRecipe {
        optimizer,
        lr: a.lr,
        weight_decay: a.weight_decay,
        epochs: a.epochs,
        batch_size: a.batch_size,
        seed: a.seed,
        device: DeviceRequest::parse(&a.device)?,
        ..Default::default()
    };
    recipe.validate()?;
    Outputs::check(&[("--out", a.out.as_path())])?;
    let loaded = match (&a.onnx, &a.spec) {
        (Some(_), _) => TrainedModelArgs {
            spec: None,
            weights: None,
            onnx: a.onnx.clone(),
            loss: a.loss.clone(),
        }
        .load()?,
        (None, Some(spec)) => {
            let model = read_model(spec)?;
            let (weights, counters) = match &a.init {
                Some(p) => read_weights(&model, p)?,
                None => (model.init_weights(a.seed), fresh_counters(&model)),
            };
            Loaded {
                model,
                weights,
                counters,
                onnx: None,
            }
        }
        (None, None) => return Err(Error::invalid("give --spec, or --onnx and --loss")),
    };
    let model = &loaded.model;
    a.limits.apply(model)?;
    let data = model.read_dataset(&a.x, &a.y, "training")?;
    let mut w = loaded.weights.clone();
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
    recipe.schedule = schedule;
    let pb = progress_bar("train");
    let r = unlearn::train(model, &mut w, &data, &recipe, &mut feed(&pb))?;
    pb.finish();
    // One training-mode forward per step, as PyTorch counts `num_batches_tracked`.
    let mut loaded = loaded;
    io::advance_batch_counts(&mut loaded.counters, r.steps as u64)?;
    let mut outputs = Outputs::new();
    outputs.stage(&a.out, |p| loaded.write(&w, p))?;
    outputs.commit()?;
    eprintln!(
        "trained {} steps in {:.1} s; wrote {}",
        r.steps,
        r.seconds,
        a.out.display()
    );
    Ok(())
}

/// What `predict` writes for each sample.
#[derive(Clone, Copy)]
enum PredictionKind {
    Raw,
    Probabilities,
    Classes,
}

fn predict_cmd(a: PredictArgs) -> Result<()> {
    if a.batch_size == 0 {
        return Err(Error::invalid("--batch-size 0: expected at least 1"));
    }
    let kind = match (a.probabilities, a.classes) {
        (true, _) => PredictionKind::Probabilities,
        (_, true) => PredictionKind::Classes,
        _ => PredictionKind::Raw,
    };
    let device = DeviceRequest::parse(&a.device)?.resolve()?;
    Outputs::check(&[("--out", a.out.as_path())])?;
    let Loaded { model, weights, .. } = a.model.load()?;
    a.limits.apply(&model)?;
    // The meaning of the outputs is checked before the inputs are read and the model run.
    check_prediction_kind(&model, kind)?;
    let x = model.read_inputs(&a.x)?;
    let weights = weights
        .iter()
        .map(|w| w.to_device(device))
        .collect::<Result<Vec<_>>>()?;
    let raw = model.predict(&weights, &x, a.batch_size)?;
    let n = x.dim(0);
    let mut staged = Outputs::new();
    match kind {
        PredictionKind::Raw => staged.stage(&a.out, |p| {
            io::write_npy_f32(p, &raw.to_vec()?, raw.shape())
        })?,
        PredictionKind::Probabilities => {
            let probs = outputs::probabilities(model.loss_kind(), &raw)?;
            staged.stage(&a.out, |p| {
                io::write_npy_f32(p, &probs.to_vec()?, probs.shape())
            })?
        }
        PredictionKind::Classes => {
            let classes: Vec<i32> = outputs::classes(model.loss_kind(), &raw)?
                .into_iter()
                .map(|c| i32::try_from(c).unwrap_or(i32::MAX))
                .collect();
            staged.stage(&a.out, |p| io::write_npy_i32(p, &classes, &[n]))?
        }
    }
    staged.commit()?;
    eprintln!("wrote {} ({n} samples)", a.out.display());
    Ok(())
}

/// Refuses probabilities or classes where the model's loss gives them no meaning.
fn check_prediction_kind(model: &Model, kind: PredictionKind) -> Result<()> {
    let loss = model.loss_kind();
    let ok = match kind {
        PredictionKind::Raw => true,
        PredictionKind::Probabilities => loss != LossKind::Mse,
        PredictionKind::Classes => {
            loss == LossKind::CrossEntropy && model.output_shape().len() == 1
        }
    };
    if ok {
        return Ok(());
    }
    // The library's own message says why (computed on an empty output of the model's shape).
    let mut shape = vec![0];
    shape.extend_from_slice(model.output_shape());
    let empty = Tensor::from_vec(Vec::new(), &shape)?;
    let e = match kind {
        PredictionKind::Classes => outputs::classes(loss, &empty).err(),
        _ => outputs::probabilities(loss, &empty).err(),
    };
    Err(e.unwrap_or_else(|| Error::invalid("this model's outputs have no such meaning")))
}

// ---------------------------------------------------------------- demo

fn demo(a: DemoArgs) -> Result<()> {
    let device = DeviceRequest::parse(&a.device)?;
    if let Some(path) = &a.json {
        Outputs::check(&[("--json", path.as_path())])?;
    }
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
            let method = method_for(m, a.seed, device, Overrides::default());
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
        let text = serde_json::to_string_pretty(&tables).expect("json");
        let mut outputs = Outputs::new();
        outputs.stage(&path, |p| write_text(p, &text))?;
        outputs.commit()?;
    }
    Ok(())
}

// ---------------------------------------------------------------- output

fn print_table(title: &str, rows: &[(&str, &AuditRow, f64)]) {
    println!("\n{title}");
    let Some((_, first, _)) = rows.first() else {
        return;
    };
    if first.mia_samples == 0 {
        println!(
            "note: the membership attack needs at least {} forget and test samples; no attack score is computed (NaN)",
            gradtau::audit::report::MIN_MIA_SAMPLES
        );
    } else if first.mia_samples < 100 {
        println!(
            "note: the membership attacks ran on {} samples per side; at this size their scores are mostly noise",
            first.mia_samples
        );
    }
    let metric = first.metric.metric;
    println!(
        "task metric: {} ({} is better){}; MIA-loss / MIA-log / MIA-ent: logistic regression on the loss (the paper's), on ln(loss) and on the entropy; AUC and TPR@1% FPR: ranking by loss in the direction MIA-log learned; strongest: largest distance from chance",
        metric.name(),
        if metric.higher_is_better() { "higher" } else { "lower" },
        first
            .secondary
            .map_or(String::new(), |s| format!(", {} on the line below", s.metric.name()))
    );
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>7} {:>9} {:>9} {:>9}",
        "",
        format!("retain {}", short(metric)),
        format!("forget {}", short(metric)),
        format!("test {}", short(metric)),
        "MIA-loss",
        "MIA-log",
        "MIA-ent",
        "AUC",
        "TPR@1%",
        "strongest",
        "seconds"
    );
    for (name, r, secs) in rows {
        let s = if secs.is_finite() {
            format!("{secs:.2}")
        } else {
            "-".into()
        };
        let a = &r.attacks;
        println!(
            "{:<16} {:>10} {:>10} {:>10} {:>9.4} {:>9.4} {:>9.4} {:>7.4} {:>9.4} {:>9.4} {:>9}",
            name,
            value(r.metric.retain),
            value(r.metric.forget),
            value(r.metric.test),
            r.mia_loss,
            a.log_loss.accuracy,
            r.mia_entropy,
            a.log_loss.auc,
            a.log_loss.tpr_at_1pct_fpr,
            a.strongest_advantage(),
            s
        );
        if let Some(m) = &r.secondary {
            println!(
                "  {:<14} {:>10} {:>10} {:>10}",
                m.metric.name(),
                value(m.retain),
                value(m.forget),
                value(m.test)
            );
        }
    }
}

/// A metric's name short enough for a column header.
fn short(m: TaskMetric) -> &'static str {
    match m {
        TaskMetric::Accuracy => "acc",
        other => other.name(),
    }
}

/// A metric value in a 10-character column: fixed point, or scientific for MSEs in large units.
fn value(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

fn attack_json(a: &AttackScores) -> serde_json::Value {
    serde_json::json!({
        "accuracy": a.accuracy,
        "auc": a.auc,
        "tpr_at_1pct_fpr": a.tpr_at_1pct_fpr,
    })
}

fn row_json(r: &AuditRow) -> serde_json::Value {
    let metrics: serde_json::Map<String, serde_json::Value> = r
        .metrics()
        .map(|m| {
            (
                m.metric.name().to_string(),
                serde_json::json!({ "retain": m.retain, "forget": m.forget, "test": m.test }),
            )
        })
        .collect();
    let (strongest, advantage) = r.attacks.strongest();
    serde_json::json!({
        "metric": r.metric.metric.name(),
        "metrics": metrics,
        "retain_accuracy": r.retain_accuracy,
        "forget_accuracy": r.forget_accuracy,
        "test_accuracy": r.test_accuracy,
        "mia_loss": r.mia_loss,
        "mia_entropy": r.mia_entropy,
        "mia_samples": r.mia_samples,
        "attacks": {
            "paper": attack_json(&r.attacks.paper),
            "log_loss": attack_json(&r.attacks.log_loss),
            "threshold": attack_json(&r.attacks.threshold),
            "strongest": { "figure": strongest, "advantage": advantage },
        },
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
        "stop_reason": r.stop_reason.name(),
        "truncated": r.truncated(),
    })
}
