//! gradtau side of the ∇τ step benchmark (the peer of `scripts/bench_torch_cuda.py`, same
//! models, shapes, loss and optimizer). One step:
//!
//! ```text
//! L = α · ReLU(τ − mean ℓ(B_f))²  +  (1 − α) · mean ℓ(B_r)
//! ```
//!
//! forward on a forget batch and a retain batch (3x32x32 inputs, 10 classes), backward,
//! AdamW (lr 1e-3, wd 0.01); batch norm in evaluation mode (the ∇τ default). Models: the
//! small CNN and a CIFAR ResNet-18 (3x3 stem, no max-pool, 1x1 downsample convolutions),
//! both built as gradtau model specs. The median of `--steps` timed steps after `--warmup`
//! untimed ones, the device synchronised after every step.
//!
//! ```text
//! cargo run --release --features cuda --example bench_nabla_tau_step -- \
//!     --device cuda [--batch 256] [--warmup 5] [--steps 30] [--model all] [--json FILE]
//! ```
//!
//! Prints one JSON object per model on stdout (`model`, `batch`, `params`, `median_ms`,
//! `min_ms`, `steps`, `device`: the fields of the PyTorch script's results) and writes
//! `{"gradtau": version, "device": ..., "results": [...]}` to `--json`.

use gradtau::backend::cuda;
use gradtau::nn::{ForwardMode, Model};
use gradtau::optim::{Adam, AdamConfig, Optimizer};
use gradtau::rng::Rng;
use gradtau::{Device, DeviceRequest, Result, Tape, Tensor};
use serde_json::{json, Value};
use std::time::Instant;

const CLASSES: usize = 10;
const INPUT: [usize; 3] = [3, 32, 32];

/// The PyTorch script's `SmallCNN`.
fn small_cnn() -> Value {
    json!({
        "format": "gradtau.model/1",
        "input": {"shape": INPUT},
        "nodes": [
            {"name": "conv1", "op": "conv2d", "in_channels": 3, "out_channels": 32,
             "kernel_size": 3, "padding": 1},
            {"name": "relu1", "op": "relu"},
            {"name": "pool1", "op": "max_pool2d", "kernel_size": 2},
            {"name": "conv2", "op": "conv2d", "in_channels": 32, "out_channels": 64,
             "kernel_size": 3, "padding": 1},
            {"name": "relu2", "op": "relu"},
            {"name": "pool2", "op": "max_pool2d", "kernel_size": 2},
            {"name": "flatten", "op": "flatten"},
            {"name": "fc1", "op": "linear", "in_features": 64 * 8 * 8, "out_features": 128},
            {"name": "relu3", "op": "relu"},
            {"name": "fc2", "op": "linear", "in_features": 128, "out_features": CLASSES}
        ],
        "loss": "cross_entropy"
    })
}

/// Appends a bias-free 3x3 (or 1x1) convolution and its batch norm; returns the norm's name.
fn conv_bn(
    nodes: &mut Vec<Value>,
    name: &str,
    input: &str,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
) -> String {
    nodes.push(json!({
        "name": name, "op": "conv2d", "inputs": [input], "in_channels": cin,
        "out_channels": cout, "kernel_size": k, "stride": stride, "padding": k / 2,
        "bias": false
    }));
    let bn = name.replace("conv", "bn");
    nodes.push(json!({"name": bn, "op": "batchnorm2d", "num_features": cout}));
    bn
}

/// The PyTorch script's CIFAR `ResNet18` (torchvision's node names, `.` written as `_`).
fn resnet18() -> Value {
    let mut nodes = Vec::new();
    let mut x = conv_bn(&mut nodes, "conv1", "input", 3, 64, 3, 1);
    nodes.push(json!({"name": "relu", "op": "relu", "inputs": [x]}));
    x = "relu".into();
    let mut cin = 64;
    for (i, cout) in [64, 128, 256, 512].into_iter().enumerate() {
        for block in 0..2 {
            let stride = if i > 0 && block == 0 { 2 } else { 1 };
            let p = format!("layer{}_{block}", i + 1);
            let bn1 = conv_bn(&mut nodes, &format!("{p}_conv1"), &x, cin, cout, 3, stride);
            nodes.push(json!({"name": format!("{p}_relu1"), "op": "relu", "inputs": [bn1]}));
            let bn2 = conv_bn(
                &mut nodes,
                &format!("{p}_conv2"),
                &format!("{p}_relu1"),
                cout,
                cout,
                3,
                1,
            );
            let shortcut = if stride != 1 || cin != cout {
                conv_bn(
                    &mut nodes,
                    &format!("{p}_downsample_conv"),
                    &x,
                    cin,
                    cout,
                    1,
                    stride,
                )
            } else {
                x.clone()
            };
            nodes.push(json!({"name": format!("{p}_add"), "op": "add", "inputs": [bn2, shortcut]}));
            nodes.push(json!({"name": format!("{p}_out"), "op": "relu"}));
            x = format!("{p}_out");
            cin = cout;
        }
    }
    nodes.push(json!({"name": "avgpool", "op": "global_avg_pool"}));
    nodes.push(json!({"name": "fc", "op": "linear", "in_features": 512, "out_features": CLASSES}));
    json!({
        "format": "gradtau.model/1",
        "input": {"shape": INPUT},
        "nodes": nodes,
        "loss": "cross_entropy"
    })
}

struct Args {
    device: Device,
    batch: usize,
    warmup: usize,
    steps: usize,
    models: Vec<String>,
    json: Option<String>,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut a = Args {
        device: Device::Cpu,
        batch: 256,
        warmup: 5,
        steps: 30,
        models: vec!["small_cnn".into(), "resnet18".into()],
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let count = |v: String| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--device" => {
                a.device = DeviceRequest::parse(&value()?)
                    .and_then(DeviceRequest::resolve)
                    .map_err(|e| e.to_string())?
            }
            "--batch" => a.batch = count(value()?)?,
            "--warmup" => a.warmup = count(value()?)?,
            "--steps" => a.steps = count(value()?)?,
            "--model" => {
                a.models = match value()?.as_str() {
                    "all" => a.models,
                    m @ ("small_cnn" | "resnet18") => vec![m.to_string()],
                    m => return Err(format!("--model {m}: expected small_cnn, resnet18 or all")),
                }
            }
            "--json" => a.json = Some(value()?),
            "-h" | "--help" => {
                return Err(
                    "usage: bench_nabla_tau_step [--device cpu|cuda|cuda:N] [--batch N] \
                     [--warmup N] [--steps N] [--model small_cnn|resnet18|all] [--json FILE]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other} (see --help)")),
        }
    }
    if a.batch == 0 || a.steps == 0 {
        return Err("--batch and --steps must be positive".into());
    }
    Ok(a)
}

/// Waits for the device's queued work, so a step's time includes its kernels.
fn sync(dev: Device) -> Result<()> {
    match dev {
        Device::Cpu => Ok(()),
        Device::Cuda(i) => cuda::synchronize(i),
    }
}

/// One ∇τ step on `weights` (in place). The loss stays on the device: reading it would add
/// a synchronisation the PyTorch loop does not have.
#[allow(clippy::too_many_arguments)]
fn step(
    model: &Model,
    weights: &mut [Tensor],
    opt: &mut Adam,
    forget: (&Tensor, &[u32]),
    retain: (&Tensor, &[u32]),
    tau: f32,
    alpha: f32,
    rng: &mut Rng,
) -> Result<()> {
    let mut tape = Tape::new();
    let mut mean_loss = |tape: &mut Tape, (x, y): (&Tensor, &[u32])| {
        let f = model.forward(tape, weights, x.clone(), ForwardMode::EVAL, rng)?;
        let l = tape.cross_entropy(f.out, y)?;
        tape.mean(l)
    };
    let lf = mean_loss(&mut tape, forget)?;
    let lr = mean_loss(&mut tape, retain)?;
    // α · ReLU(τ − lf)² + (1 − α) · lr
    let gap = tape.scale(lf, -1.0)?;
    let gap = tape.add_scalar(gap, tau)?;
    let hinge = tape.relu(gap)?;
    let sq = tape.square(hinge)?;
    let a = tape.scale(sq, alpha)?;
    let b = tape.scale(lr, 1.0 - alpha)?;
    let loss = tape.add(a, b)?;
    let grads = tape.backward(loss)?;
    opt.step(weights, &grads)
}

fn bench(name: &str, spec: &Value, a: &Args) -> Result<Value> {
    let model = Model::from_json(&spec.to_string())?;
    let dev = a.device;
    let mut weights = model
        .init_weights(0)
        .iter()
        .map(|w| w.to_device(dev))
        .collect::<Result<Vec<_>>>()?;
    let mut rng = Rng::new(0);
    let mut shape = vec![a.batch];
    shape.extend_from_slice(&INPUT);
    let xf = Tensor::randn(&shape, 1.0, &mut rng).to_device(dev)?;
    let xr = Tensor::randn(&shape, 1.0, &mut rng).to_device(dev)?;
    let yf: Vec<u32> = (0..a.batch).map(|_| rng.below(CLASSES) as u32).collect();
    let yr: Vec<u32> = (0..a.batch).map(|_| rng.below(CLASSES) as u32).collect();
    let mut opt = Adam::new(AdamConfig {
        weight_decay: 0.01,
        ..AdamConfig::adamw(1e-3)
    });
    // τ well above the forget loss so the ascent term is active, as in the PyTorch script.
    let (tau, alpha) = (5.0, 0.5);
    let mut run = |rng: &mut Rng| {
        step(
            &model,
            &mut weights,
            &mut opt,
            (&xf, &yf),
            (&xr, &yr),
            tau,
            alpha,
            rng,
        )
    };
    for _ in 0..a.warmup {
        run(&mut rng)?;
    }
    sync(dev)?;
    let mut times = Vec::with_capacity(a.steps);
    for _ in 0..a.steps {
        let t0 = Instant::now();
        run(&mut rng)?;
        sync(dev)?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let n = times.len();
    let median = if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
    };
    let params: usize = model
        .params()
        .iter()
        .filter(|p| p.trainable)
        .map(|p| p.numel())
        .sum();
    if weights.iter().any(|w| !w.all_finite().unwrap_or(false)) {
        eprintln!("warning: {name}: the weights became non-finite during the benchmark");
    }
    Ok(json!({
        "model": name,
        "batch": a.batch,
        "params": params,
        "median_ms": median,
        "min_ms": times[0],
        "steps": a.steps,
        "device": dev.to_string(),
    }))
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let mut results = Vec::new();
    for name in &args.models {
        let spec = if name == "small_cnn" {
            small_cnn()
        } else {
            resnet18()
        };
        match bench(name, &spec, &args) {
            Ok(r) => {
                println!("{r}");
                results.push(r);
            }
            Err(e) => {
                eprintln!("{name} on {}: {e}", args.device);
                std::process::exit(1);
            }
        }
    }
    if let Some(path) = &args.json {
        let doc = json!({
            "gradtau": env!("CARGO_PKG_VERSION"),
            "device": args.device.to_string(),
            "results": results,
        });
        if let Err(e) = std::fs::write(path, doc.to_string()) {
            eprintln!("writing {path}: {e}");
            std::process::exit(1);
        }
    }
}
