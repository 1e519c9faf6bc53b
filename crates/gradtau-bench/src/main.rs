//! Times one training step (forward + backward + AdamW update) of the reference models at
//! batch 128 (`--batch`) on 28x28 inputs, and the machine's float32 GEMM peak through the same GEMM the
//! library uses. `scripts/bench_torch_cpu.py` does the same with PyTorch; `scripts/bench.sh`
//! runs both and prints the comparison.
//!
//! Every result is one JSON object per line on stdout, so the script can read it:
//! - `{"kind":"step", "impl":"gradtau", "model":..., "median_ms":..., "min_ms":..., ...}`,
//!   with the step's GEMM-shaped work (`gflop_per_step`: the products of linear layers and the
//!   im2col products of convolutions, 2mnk each), its rate at the median step, that rate as a
//!   fraction of the GEMM peak measured in the same process (when `--peak-sizes` is not
//!   empty), and `peak_rss_mib`: the process's peak resident memory (VmHWM) over this
//!   model's steps (the peak is reset before each model and each run where the kernel allows).
//! - `{"kind":"gemm_peak", "impl":"gradtau", "size":..., "gflops":...}`
//! - `{"kind":"profile", "model":..., "phase":"forward"|"backward"|"optimizer", "op":..., "ms":...}`
//!   (with `--profile`: the median time of each op over the timed steps).
//! - `{"kind":"unlearn", "impl":"gradtau", "model":..., "seconds":..., "steps":...}` (with
//!   `--unlearn-runs N`): a whole ∇τ run in paper mode through the library's public API, on
//!   synthetic data the size of docs/REPRODUCTION.md's CNN scenario at 15 % (1500 forget,
//!   8500 retain, 2000 validation samples); `bench_torch_cpu.py` and `bench_jax_cpu.py` run the
//!   same loop (written once, in `bench_common.py`). `--modes paper,adaptive` adds runs in
//!   adaptive mode (its membership checks and per-epoch τ are work the paper loop does not
//!   do) on a model first trained to memorise its training set; each line carries its mode,
//!   `peak_rss_mib`, and how its time split: `median_step_s`, `setup_s` (before the first
//!   step), `checks` and `check_s` (passes between steps: τ's validation passes, adaptive
//!   mode's membership checks).
//!
//! The `text` model (`--models text`; the spam filter of docs/REPRODUCTION_TEXT.md, uniform
//! random token ids) has the whole-run benchmark only, in paper mode.
//!
//! Usage: `gradtau-bench [--models mlp,cnn,text] [--threads N] [--warmup N] [--iters N]
//! [--batch N] [--width N] [--peak-sizes 1024,2048] [--profile] [--unlearn-runs N]
//! [--modes paper,adaptive]`. `--width` sets the MLP's two hidden widths (default 256); the
//! whole runs keep the paper recipe's sizes whatever `--batch` and `--width` say.

use gradtau::backend::cpu::{matmul, Transpose};
use gradtau::data::Dataset;
use gradtau::ops::conv::Conv2dParams;
use gradtau::ops::pool::Pool2dParams;
use gradtau::optim::{Adam, AdamConfig, Optimizer};
use gradtau::rng::Rng;
use gradtau::unlearn::{no_progress, Method, NablaTauMode, NablaTauOptions, UnlearnSets};
use gradtau::{Device, DeviceRequest};
use gradtau::{Result, Tape, Tensor, Var};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const CLASSES: usize = 10;

struct Args {
    models: Vec<String>,
    threads: usize,
    warmup: usize,
    iters: usize,
    peak_sizes: Vec<usize>,
    profile: bool,
    unlearn_runs: usize,
    batch: usize,
    width: usize,
    modes: Vec<NablaTauMode>,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut a = Args {
        models: vec!["mlp".into(), "cnn".into()],
        threads: 2,
        warmup: 20,
        iters: 50,
        peak_sizes: vec![1024, 2048],
        profile: false,
        unlearn_runs: 0,
        batch: 128,
        width: 256,
        modes: vec![NablaTauMode::Paper],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--models" => a.models = value()?.split(',').map(str::to_string).collect(),
            "--threads" => a.threads = num(value()?)?.max(1),
            "--warmup" => a.warmup = num(value()?)?,
            "--iters" => a.iters = num(value()?)?,
            "--peak-sizes" => {
                a.peak_sizes = value()?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| num(s.to_string()))
                    .collect::<std::result::Result<_, _>>()?
            }
            "--profile" => a.profile = true,
            "--unlearn-runs" => a.unlearn_runs = num(value()?)?,
            "--batch" => a.batch = num(value()?)?.max(1),
            "--width" => a.width = num(value()?)?.max(1),
            "--modes" => {
                a.modes = value()?
                    .split(',')
                    .map(|m| match m {
                        "paper" => Ok(NablaTauMode::Paper),
                        "adaptive" => Ok(NablaTauMode::Adaptive),
                        _ => Err(format!("unknown mode {m} (expected paper or adaptive)")),
                    })
                    .collect::<std::result::Result<_, _>>()?
            }
            "-h" | "--help" => {
                return Err(
                    "usage: gradtau-bench [--models mlp,cnn,text] [--threads N] [--warmup N] \
                            [--iters N] [--batch N] [--width N] [--peak-sizes 1024,2048] \
                            [--profile] [--unlearn-runs N] [--modes paper,adaptive]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    for m in &a.models {
        if !["mlp", "cnn", "text"].contains(&m.as_str()) {
            return Err(format!("unknown model {m} (expected mlp, cnn or text)"));
        }
    }
    Ok(a)
}

/// PyTorch's default init for linear and conv layers: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for
/// weight and bias, so both sides start from statistically the same network (the fraction of
/// active ReLUs, and so the work in the backward pass, depends on it).
fn uniform_init(shape: &[usize], fan_in: usize, rng: &mut Rng) -> Tensor {
    let bound = 1.0 / (fan_in as f32).sqrt();
    Tensor::rand_uniform(shape, -bound, bound, rng)
}

/// Collects per-op times of one step; `None` when not profiling, so the timed path stays bare.
struct OpTimes(Option<Vec<(&'static str, &'static str, Duration)>>);

impl OpTimes {
    fn forward<T>(&mut self, op: &'static str, f: impl FnOnce() -> T) -> T {
        match &mut self.0 {
            None => f(),
            Some(v) => {
                let t0 = Instant::now();
                let r = f();
                v.push(("forward", op, t0.elapsed()));
                r
            }
        }
    }
}

trait Model {
    fn name(&self) -> &'static str;
    fn input_shape(&self) -> Vec<usize>;
    fn params(&mut self) -> &mut Vec<Tensor>;
    /// Records the forward pass up to the mean loss.
    fn forward(
        &self,
        tape: &mut Tape,
        p: &[Var],
        x: Var,
        y: &[u32],
        t: &mut OpTimes,
    ) -> Result<Var>;
    /// FLOPs of one step's GEMM-shaped products (2mnk each): linear layers, and the im2col
    /// products of convolutions.
    fn flops(&self) -> f64;
    /// Whether [`Model::flops`] is nearly all of the step's work (the MLP), so its rate is
    /// also reported under the older `gemm_*` names.
    fn gemm_bound(&self) -> bool;
}

struct Mlp {
    params: Vec<Tensor>,
    dims: [usize; 4],
    batch: usize,
}

impl Mlp {
    fn new(rng: &mut Rng, batch: usize, width: usize) -> Self {
        let dims = [784, width, width, CLASSES];
        let mut params = Vec::new();
        for w in dims.windows(2) {
            params.push(uniform_init(&[w[1], w[0]], w[0], rng));
            params.push(uniform_init(&[w[1]], w[0], rng));
        }
        Mlp {
            params,
            dims,
            batch,
        }
    }
}

impl Model for Mlp {
    fn name(&self) -> &'static str {
        "mlp"
    }
    fn input_shape(&self) -> Vec<usize> {
        vec![self.batch, 784]
    }
    fn params(&mut self) -> &mut Vec<Tensor> {
        &mut self.params
    }
    fn forward(
        &self,
        tape: &mut Tape,
        p: &[Var],
        x: Var,
        y: &[u32],
        t: &mut OpTimes,
    ) -> Result<Var> {
        let mut h = x;
        for layer in 0..3 {
            h = t.forward("linear", || {
                tape.linear(h, p[2 * layer], Some(p[2 * layer + 1]))
            })?;
            if layer < 2 {
                h = t.forward("relu", || tape.relu(h))?;
            }
        }
        let l = t.forward("cross_entropy", || tape.cross_entropy(h, y))?;
        t.forward("mean", || tape.mean(l))
    }
    fn flops(&self) -> f64 {
        // Forward x@W^T and backward dW for every layer; dX for all but the first (the input
        // needs no gradient, and neither side computes it).
        let products: Vec<f64> = self
            .dims
            .windows(2)
            .map(|w| 2.0 * self.batch as f64 * w[0] as f64 * w[1] as f64)
            .collect();
        let all: f64 = products.iter().sum();
        2.0 * all + products[1..].iter().sum::<f64>()
    }
    fn gemm_bound(&self) -> bool {
        true
    }
}

/// conv 1->16 3x3 pad 1, relu, maxpool 2, conv 16->32 3x3 pad 1, relu, maxpool 2, flatten,
/// linear 1568 -> 10, run as the library's `Model` runs that spec: each max-pool before the
/// ReLU it follows (identical values and gradients, a quarter of the ReLU work; see
/// `nn::model::relu_pool_swaps`).
struct Cnn {
    params: Vec<Tensor>,
    batch: usize,
}

impl Cnn {
    fn new(rng: &mut Rng, batch: usize) -> Self {
        let params = vec![
            uniform_init(&[16, 1, 3, 3], 9, rng),
            uniform_init(&[16], 9, rng),
            uniform_init(&[32, 16, 3, 3], 16 * 9, rng),
            uniform_init(&[32], 16 * 9, rng),
            uniform_init(&[CLASSES, 32 * 7 * 7], 32 * 7 * 7, rng),
            uniform_init(&[CLASSES], 32 * 7 * 7, rng),
        ];
        Cnn { params, batch }
    }
}

impl Model for Cnn {
    fn name(&self) -> &'static str {
        "cnn"
    }
    fn input_shape(&self) -> Vec<usize> {
        vec![self.batch, 1, 28, 28]
    }
    fn params(&mut self) -> &mut Vec<Tensor> {
        &mut self.params
    }
    fn forward(
        &self,
        tape: &mut Tape,
        p: &[Var],
        x: Var,
        y: &[u32],
        t: &mut OpTimes,
    ) -> Result<Var> {
        let same = Conv2dParams {
            stride: (1, 1),
            padding: (1, 1),
        };
        let mut h = x;
        for layer in 0..2 {
            h = t.forward("conv2d", || {
                tape.conv2d(h, p[2 * layer], Some(p[2 * layer + 1]), same)
            })?;
            h = t.forward("max_pool2d", || tape.max_pool2d(h, Pool2dParams::square(2)))?;
            h = t.forward("relu", || tape.relu(h))?;
        }
        h = t.forward("flatten", || tape.flatten(h))?;
        h = t.forward("linear", || tape.linear(h, p[4], Some(p[5])))?;
        let l = t.forward("cross_entropy", || tape.cross_entropy(h, y))?;
        t.forward("mean", || tape.mean(l))
    }
    fn flops(&self) -> f64 {
        // Per sample, as (m, n, k) of W @ col: conv1 16 x 784 x 9 (forward and dW; its input
        // needs no gradient), conv2 32 x 196 x 144 (forward, dW, dcol), linear 10 x 1 x 1568
        // (forward, dW, dX).
        let per = 2.0 * (2.0 * 16.0 * 784.0 * 9.0 + 3.0 * 32.0 * 196.0 * 144.0 + 3.0 * 15680.0);
        per * self.batch as f64
    }
    fn gemm_bound(&self) -> bool {
        false
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs warm-up and timed steps; prints the step line and, when asked, the per-op profile.
fn bench_model(model: &mut dyn Model, args: &Args, peak: Option<f64>, rng: &mut Rng) -> Result<()> {
    reset_peak_rss();
    let shape = model.input_shape();
    let n: usize = shape.iter().product();
    let x = Tensor::from_vec((0..n).map(|_| rng.normal()).collect(), &shape)?;
    let y: Vec<u32> = (0..shape[0]).map(|_| rng.below(CLASSES) as u32).collect();
    let mut opt = Adam::new(AdamConfig::adamw(1e-3));
    let mut tape = Tape::new();
    tape.set_profiling(args.profile);
    let mut step_times = Vec::with_capacity(args.iters);
    let mut op_times: BTreeMap<(&'static str, &'static str, usize), Vec<f64>> = BTreeMap::new();
    let mut last_loss = f32::NAN;
    for i in 0..args.warmup + args.iters {
        let mut times = OpTimes(args.profile.then(Vec::new));
        let t0 = Instant::now();
        let p: Vec<Var> = model
            .params()
            .iter()
            .enumerate()
            .map(|(k, t)| tape.var(t.clone(), k))
            .collect();
        let xv = tape.constant(x.clone());
        let loss = model.forward(&mut tape, &p, xv, &y, &mut times)?;
        last_loss = tape.value(loss).item()?;
        let tb = Instant::now();
        let grads = tape.backward(loss)?;
        let backward = tb.elapsed();
        let to = Instant::now();
        opt.step(model.params(), &grads)?;
        let optimizer = to.elapsed();
        let step = t0.elapsed();
        if i < args.warmup {
            tape.take_profile();
            continue;
        }
        step_times.push(ms(step));
        if let Some(mut v) = times.0 {
            v.extend(
                tape.take_profile()
                    .into_iter()
                    .map(|(op, d)| ("backward", op, d)),
            );
            v.push(("optimizer", "adamw", optimizer));
            v.push(("total", "backward", backward));
            // The index keeps repeated ops (three linears) apart, in execution order.
            for (idx, (phase, op, d)) in v.into_iter().enumerate() {
                op_times.entry((phase, op, idx)).or_default().push(ms(d));
            }
        }
    }
    let min = step_times.iter().copied().fold(f64::INFINITY, f64::min);
    let med = median(&mut step_times);
    let mut line = json!({
        "kind": "step",
        "impl": "gradtau",
        "model": model.name(),
        "batch": model.input_shape()[0],
        "threads": args.threads,
        "warmup": args.warmup,
        "iters": args.iters,
        "median_ms": med,
        "min_ms": min,
        "final_loss": last_loss,
    });
    let f = model.flops();
    let rate = f / (med * 1e-3) / 1e9;
    line["gflop_per_step"] = json!(f / 1e9);
    line["gflops_at_median"] = json!(rate);
    if let Some(p) = peak {
        line["peak_gflops"] = json!(p);
        line["peak_fraction"] = json!(rate / p);
    }
    if model.gemm_bound() {
        line["gemm_gflop_per_step"] = json!(f / 1e9);
        line["gemm_gflops_at_median"] = json!(rate);
    }
    if let Some(m) = peak_rss_mib() {
        line["peak_rss_mib"] = json!(m);
    }
    println!("{line}");
    let mut rows: Vec<_> = op_times.into_iter().collect();
    rows.sort_by_key(|((_, _, idx), _)| *idx);
    for ((phase, op, idx), mut v) in rows {
        println!(
            "{}",
            json!({"kind": "profile", "impl": "gradtau", "model": model.name(),
                   "phase": phase, "op": op, "index": idx, "ms": median(&mut v)})
        );
    }
    Ok(())
}

/// Best-of-a-few GFLOP/s of a square sgemm, through the library's own GEMM entry point.
fn gemm_peak(size: usize, rng: &mut Rng) -> f64 {
    let a: Vec<f32> = (0..size * size).map(|_| rng.normal()).collect();
    let b: Vec<f32> = (0..size * size).map(|_| rng.normal()).collect();
    let mut c = vec![0.0f32; size * size];
    let flops = 2.0 * (size as f64).powi(3);
    // Enough repetitions for ~a second of work at 100 GFLOP/s, at least three.
    let reps = ((1e11 / flops) as usize).clamp(3, 50);
    let mut best = f64::INFINITY;
    for _ in 0..reps + 1 {
        let t0 = Instant::now();
        matmul(
            size,
            size,
            size,
            1.0,
            &a,
            Transpose::No,
            &b,
            Transpose::No,
            0.0,
            &mut c,
        );
        best = best.min(t0.elapsed().as_secs_f64());
    }
    std::hint::black_box(&c);
    flops / best / 1e9
}

fn run(args: &Args) -> Result<()> {
    let mut rng = Rng::new(0x6772_6164);
    let mut peak: Option<f64> = None;
    for &size in &args.peak_sizes {
        let g = gemm_peak(size, &mut rng);
        peak = Some(peak.map_or(g, |p| p.max(g)));
        println!(
            "{}",
            json!({"kind": "gemm_peak", "impl": "gradtau", "size": size,
                   "threads": args.threads, "gflops": g})
        );
    }
    for name in &args.models {
        let mut model: Box<dyn Model> = match name.as_str() {
            "mlp" => Box::new(Mlp::new(&mut rng, args.batch, args.width)),
            "cnn" => Box::new(Cnn::new(&mut rng, args.batch)),
            // The text model has a whole-run benchmark only.
            _ => continue,
        };
        if args.iters > 0 {
            bench_model(model.as_mut(), args, peak, &mut rng)?;
        }
    }
    for name in &args.models {
        for _ in 0..args.unlearn_runs {
            // Adaptive runs unlearn from a model trained on `memorisable` features first,
            // which token ids are not.
            for &mode in args
                .modes
                .iter()
                .filter(|&&m| name != "text" || m == NablaTauMode::Paper)
            {
                bench_unlearn(name, mode)?;
            }
        }
    }
    Ok(())
}

/// Set sizes of the full-run benchmark (docs/REPRODUCTION.md's CNN scenario at 15 %).
const UNLEARN_FORGET: usize = 1500;
const UNLEARN_RETAIN: usize = 8500;
const UNLEARN_VAL: usize = 2000;

/// The benchmark's models as model specs (the same networks as `Mlp` and `Cnn`, and as
/// examples/fashion_reproduction.rs; `text`: the spam filter of docs/REPRODUCTION_TEXT.md).
fn spec(model: &str) -> &'static str {
    match model {
        "mlp" => include_str!("../../../data/specs/fashion_mlp.json"),
        "text" => include_str!("../../../data/specs/spam_mlp.json"),
        _ => include_str!("../../../data/specs/fashion_cnn.json"),
    }
}

/// The text model's vocabulary (its embedding's rows) and classes.
const TEXT_VOCAB: usize = 16384;
const TEXT_CLASSES: usize = 2;

/// `n` samples of standard-normal inputs with uniform random labels; for the text model,
/// token ids drawn uniformly from its vocabulary.
fn synthetic(model: &str, n: usize, sample_shape: &[usize], rng: &mut Rng) -> Result<Dataset> {
    let mut shape = vec![n];
    shape.extend_from_slice(sample_shape);
    let (x, classes) = if model == "text" {
        let ids = (0..shape.iter().product::<usize>())
            .map(|_| rng.below(TEXT_VOCAB) as f32)
            .collect();
        (Tensor::from_vec(ids, &shape)?, TEXT_CLASSES)
    } else {
        (Tensor::randn(&shape, 1.0, rng), CLASSES)
    };
    let y = (0..n).map(|_| rng.below(classes) as u32).collect();
    Dataset::classification(x, y)
}

/// Resets the process's peak resident memory (VmHWM) to its current size (Linux 4.0+; a
/// no-op elsewhere, where the peak then covers the whole process so far), after handing the
/// allocator's free memory back to the system, so that what the benchmarks before this one
/// freed (a CNN's data sets, say) does not count in its peak.
fn reset_peak_rss() {
    gradtau::backend::cpu::pool::release_free_memory();
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident memory since the last reset, in MiB (Linux only).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// One whole ∇τ run (paper mode: fixed schedule, E = ⌊3 · 34 / 6⌋ = 17 forget-epochs of 6
/// steps, τ on the validation set at the start and every 5 epochs; adaptive mode: the
/// library's default, with its membership checks), timed from the call to its return,
/// weights copied in and out included.
///
/// Paper mode runs on fresh weights and random labels, like the PyTorch and JAX loops. Adaptive
/// mode would stop at its first check there (nothing was learnt, so nothing looks
/// remembered), so it first trains the model on `memorisable` data and unlearns from that
/// (training not timed). Its line says how the time splits: the steps, the set-up before
/// the first step (reference losses of the validation set) and the membership checks, read
/// from the gaps between progress callbacks (a gap longer than twice the median step is a
/// step followed by a check).
fn bench_unlearn(name: &str, mode: NablaTauMode) -> Result<()> {
    let model = gradtau::nn::Model::from_json(spec(name))?;
    let mut rng = Rng::new(0x756e_6c65);
    let mut weights = model.init_weights(1);
    // Forget-set and validation accuracy of the trained model (adaptive mode only).
    let mut fitted = None;
    let (forget, retain, val, base) = match mode {
        NablaTauMode::Paper => (
            synthetic(name, UNLEARN_FORGET, model.input_shape(), &mut rng)?,
            synthetic(name, UNLEARN_RETAIN, model.input_shape(), &mut rng)?,
            synthetic(name, UNLEARN_VAL, model.input_shape(), &mut rng)?,
            NablaTauOptions::paper(),
        ),
        _ => {
            let shape = model.input_shape();
            let features: usize = shape.iter().product();
            let teacher = Tensor::randn(&[features, CLASSES], 1.0, &mut rng);
            let train = memorisable(UNLEARN_FORGET + UNLEARN_RETAIN, shape, &teacher, &mut rng)?;
            let val = memorisable(UNLEARN_VAL, shape, &teacher, &mut rng)?;
            gradtau::unlearn::train(
                &model,
                &mut weights,
                &train,
                &gradtau::unlearn::TrainRecipe {
                    epochs: MEMORISE_EPOCHS,
                    batch_size: 128,
                    ..Default::default()
                },
                &mut no_progress,
            )?;
            let (forget, retain) = split(&train, UNLEARN_FORGET)?;
            fitted = Some((
                accuracy(&model, &weights, &forget)?,
                accuracy(&model, &weights, &val)?,
            ));
            (forget, retain, val, NablaTauOptions::default())
        }
    };
    let method = Method::NablaTau(NablaTauOptions {
        device: DeviceRequest::Exact(Device::Cpu),
        mode,
        ..base
    });
    let mut callbacks: Vec<Instant> = Vec::new();
    let mut record = |_: &gradtau::unlearn::Progress| {
        callbacks.push(Instant::now());
        gradtau::unlearn::Control::Continue
    };
    reset_peak_rss();
    let t0 = Instant::now();
    let report = method.run(
        &model,
        &mut weights,
        UnlearnSets {
            forget: &forget,
            retain: &retain,
            val: &val,
        },
        &mut record,
    )?;
    let seconds = t0.elapsed().as_secs_f64();
    let split = TimeSplit::from_callbacks(t0, &callbacks, seconds);
    println!(
        "{}",
        json!({"kind": "unlearn", "impl": "gradtau", "model": name,
               "mode": if mode == NablaTauMode::Paper { "paper" } else { "adaptive" },
               "seconds": seconds, "steps": report.steps, "epochs": report.epochs,
               "stop_reason": format!("{:?}", report.stop_reason),
               "median_step_s": split.median_step, "setup_s": split.setup,
               "checks": split.checks, "check_s": split.check_seconds,
               "trained_forget_acc": fitted.map(|f| f.0), "trained_val_acc": fitted.map(|f| f.1),
               "peak_rss_mib": peak_rss_mib(),
               "forget": UNLEARN_FORGET, "retain": UNLEARN_RETAIN, "val": UNLEARN_VAL})
    );
    Ok(())
}

/// Epochs of training before an adaptive run: enough for the MLP to fit every training label
/// (the redrawn ones included) while its validation accuracy stays far lower.
const MEMORISE_EPOCHS: usize = 15;

/// Standard-normal inputs labelled by a fixed linear `teacher` (`[features, classes]`), with
/// one label in five redrawn at random: the teacher's part generalises, the redrawn part
/// can only be memorised, so a trained model knows its training samples from unseen ones.
fn memorisable(
    n: usize,
    sample_shape: &[usize],
    teacher: &Tensor,
    rng: &mut Rng,
) -> Result<Dataset> {
    let mut shape = vec![n];
    shape.extend_from_slice(sample_shape);
    let x = Tensor::randn(&shape, 1.0, rng);
    let (xs, ts) = (x.to_vec()?, teacher.to_vec()?);
    let features = xs.len() / n.max(1);
    let y = xs
        .chunks_exact(features.max(1))
        .map(|row| {
            if rng.below(5) == 0 {
                return rng.below(CLASSES) as u32;
            }
            let score = |c: usize| -> f32 {
                row.iter()
                    .enumerate()
                    .map(|(i, v)| v * ts[i * CLASSES + c])
                    .sum()
            };
            (0..CLASSES)
                .max_by(|&a, &b| score(a).total_cmp(&score(b)))
                .unwrap_or(0) as u32
        })
        .collect();
    Dataset::classification(x, y)
}

/// Accuracy of `weights` on `data` (class labels).
fn accuracy(model: &gradtau::nn::Model, weights: &[Tensor], data: &Dataset) -> Result<f64> {
    let all: Vec<usize> = (0..data.len()).collect();
    let (x, y) = data.gather(&all)?;
    let labels = y.classes().unwrap_or_default().to_vec();
    gradtau::audit::metrics::accuracy(&model.predict(weights, &x, 512)?, &labels)
}

/// The first `n` samples of `data`, and the rest.
fn split(data: &Dataset, n: usize) -> Result<(Dataset, Dataset)> {
    let part = |idx: Vec<usize>| -> Result<Dataset> {
        let (x, y) = data.gather(&idx)?;
        Dataset::new(x, y)
    };
    Ok((part((0..n).collect())?, part((n..data.len()).collect())?))
}

/// Where a run's time went, read from the instants of its progress callbacks (one per step).
struct TimeSplit {
    median_step: f64,
    setup: f64,
    checks: usize,
    check_seconds: f64,
}

impl TimeSplit {
    fn from_callbacks(t0: Instant, at: &[Instant], seconds: f64) -> TimeSplit {
        let mut gaps: Vec<f64> = at.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        let median_step = if gaps.is_empty() {
            f64::NAN
        } else {
            median(&mut gaps.clone())
        };
        // A step's gap holds the step; a longer one holds the step and a check after it.
        let long: Vec<f64> = gaps.drain(..).filter(|&g| g > 2.0 * median_step).collect();
        let first = at.first().map_or(seconds, |&t| (t - t0).as_secs_f64());
        TimeSplit {
            median_step,
            setup: (first - median_step.min(first)).max(0.0),
            checks: long.len(),
            check_seconds: long.iter().map(|g| g - median_step).sum(),
        }
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    // The kernels read the variable once, at their first parallel call; nothing has run yet.
    std::env::set_var("MATMUL_NUM_THREADS", args.threads.to_string());
    if let Err(e) = run(&args) {
        eprintln!("gradtau-bench: {e}");
        std::process::exit(1);
    }
}
