//! ONNX files exported from PyTorch (tests/fixtures/onnx, made by
//! scripts/make_onnx_fixtures.py with both of PyTorch's exporters) give the same outputs in
//! gradtau as in ONNX Runtime, before and after unlearning: before, against the outputs
//! ONNX Runtime wrote next to each file; after, by running ONNX Runtime (Python
//! `onnxruntime`, installed by .ci/run) on the file gradtau wrote back. Without
//! onnxruntime the second half skips loudly.

use gradtau::data::Dataset;
use gradtau::io::read_array_f32;
use gradtau::nn::LossKind;
use gradtau::onnx::OnnxModel;
use gradtau::tensor::Tensor;
use gradtau::unlearn::{no_progress, Method, NablaTauMode, NablaTauOptions, UnlearnSets};
use std::path::{Path, PathBuf};
use std::process::Command;

const FIXTURES: [&str; 12] = [
    "mlp.torchscript",
    "mlp.dynamo",
    "cnn.torchscript",
    "cnn.dynamo",
    "residual.torchscript",
    "residual.dynamo",
    "residual.torchscript_bn",
    "text.torchscript",
    "text.dynamo",
    "dense.torchscript",
    "dense.dynamo",
    "dense.dynamo_opset20",
];

/// The parity bar of the issue: max relative error (against the largest output) ≤ 1e-4.
const MAX_REL: f32 = 1e-4;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
}

fn inputs(model: &str) -> Tensor {
    let (x, shape) = read_array_f32(dir().join(format!("{model}.input.npy"))).unwrap();
    Tensor::from_vec(x, &shape).unwrap()
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn load(name: &str) -> (OnnxModel, Vec<u8>) {
    let bytes = std::fs::read(dir().join(format!("{name}.onnx"))).unwrap();
    let m = OnnxModel::from_bytes(&bytes, LossKind::CrossEntropy)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    (m, bytes)
}

#[test]
fn gradtau_matches_onnx_runtime_on_every_exported_file() {
    for name in FIXTURES {
        let (m, _) = load(name);
        let model = name.split('.').next().unwrap();
        let x = inputs(model);
        let got = m
            .model
            .predict(&m.weights, &x, 64)
            .unwrap()
            .to_vec()
            .unwrap();
        let (want, _) = read_array_f32(dir().join(format!("{name}.ort.npy"))).unwrap();
        let err = max_rel(&got, &want);
        println!("{name:26} before unlearning: max relative error vs ONNX Runtime {err:.2e}");
        assert!(err <= MAX_REL, "{name}: {err}");
    }
}

fn onnxruntime() -> Option<String> {
    let py = std::env::var("GRADTAU_ONNX_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import onnxruntime, numpy"])
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(py)
}

/// Unlearns a few samples on the imported model (paper-mode ∇τ, a handful of steps), writes
/// the file back, and has ONNX Runtime run the written file.
#[test]
fn the_unlearned_file_runs_in_onnx_runtime_with_gradtau_outputs() {
    let Some(py) = onnxruntime() else {
        println!("SKIPPED ONNX Runtime parity after unlearning: python3 cannot import onnxruntime (pip install onnxruntime numpy)");
        return;
    };
    let out_dir = std::env::temp_dir().join(format!("gradtau-onnx-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    for name in FIXTURES {
        let (m, _) = load(name);
        let model = name.split('.').next().unwrap();
        let x = inputs(model);
        let n = x.dim(0);
        // Labels: the model's own predictions, so forget/retain/val are consistent sets.
        let logits = m.model.predict(&m.weights, &x, 64).unwrap();
        let classes = gradtau::nn::outputs::classes(LossKind::CrossEntropy, &logits).unwrap();
        let all = Dataset::classification(x.clone(), classes.iter().map(|&c| c as u32).collect())
            .unwrap();
        let forget = all.subset(&[0, 1]).unwrap();
        let retain = all.subset(&(2..n).collect::<Vec<_>>()).unwrap();
        let method = Method::NablaTau(NablaTauOptions {
            mode: NablaTauMode::Paper,
            max_steps: Some(3),
            lr: Some(1e-2),
            ..Default::default()
        });
        let mut w = m.weights.clone();
        let sets = UnlearnSets {
            forget: &forget,
            retain: &retain,
            val: &retain,
        };
        method
            .run(&m.model, &mut w, sets, &mut no_progress)
            .unwrap();
        let changed = w
            .iter()
            .zip(&m.weights)
            .any(|(a, b)| a.to_vec().unwrap() != b.to_vec().unwrap());
        assert!(changed, "{name}: unlearning changed no weight");
        let written = m.to_bytes(&w).unwrap();
        let path = out_dir.join(format!("{name}.onnx"));
        std::fs::write(&path, &written).unwrap();
        let ours = m.model.predict(&w, &x, 64).unwrap().to_vec().unwrap();
        let script = format!(
            "import numpy as np, onnxruntime as ort\n\
             s = ort.InferenceSession({path:?}, providers=['CPUExecutionProvider'])\n\
             x = np.load({input:?})\n\
             i = s.get_inputs()[0]\n\
             x = x.astype(np.int64) if 'int' in i.type else x\n\
             y = s.run(None, {{i.name: x}})[0].astype(np.float32)\n\
             print(' '.join(repr(float(v)) for v in y.ravel()))\n",
            path = path.display().to_string(),
            input = dir()
                .join(format!("{model}.input.npy"))
                .display()
                .to_string(),
        );
        let out = Command::new(&py).args(["-c", &script]).output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs: Vec<f32> = String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        let err = max_rel(&ours, &theirs);
        println!("{name:26} after unlearning:  max relative error vs ONNX Runtime {err:.2e}");
        assert!(err <= MAX_REL, "{name} after unlearning: {err}");
    }
    let _ = std::fs::remove_dir_all(&out_dir);
}
