//! `gradtau predict`: raw outputs, probabilities and classes as .npy, from a spec with
//! safetensors weights or from an ONNX file; the ONNX path against ONNX Runtime (the outputs
//! it wrote next to each fixture, and a live session when Python's onnxruntime is present,
//! else a loud SKIPPED line); clear errors that leave the output file as it was.

#[allow(dead_code)] // this suite uses the work directory only
mod common;

use gradtau::io::{read_array_f32, read_npy_labels, save_checkpoint, write_npy_f32};
use gradtau::nn::{outputs, LossKind, Model};
use gradtau::Tensor;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The parity bar of the ONNX fixtures: max relative error (against the largest output).
const MAX_REL: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx")
}

fn fixture(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

fn gradtau(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gradtau"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// `predict --onnx` with the fixture's inputs, returning what it wrote.
fn predict_onnx(dir: &Path, file: &str, model: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(format!("{file}{}.npy", extra.join("")));
    let (onnx, x) = (
        fixture(&format!("{file}.onnx")),
        fixture(&format!("{model}.input.npy")),
    );
    let mut args = vec![
        "predict",
        "--onnx",
        &onnx,
        "--loss",
        "cross_entropy",
        "--x",
        &x,
        "--device",
        "cpu",
        "--out",
    ];
    let o = out.display().to_string();
    args.push(&o);
    args.extend_from_slice(extra);
    ok(&gradtau(dir, &args));
    out
}

#[test]
fn predict_onnx_gives_the_outputs_onnx_runtime_gave() {
    let dir = common::workdir("predict", "stored");
    for file in [
        "dense.torchscript",
        "dense.dynamo_opset20",
        "cnn.dynamo",
        "text.torchscript",
        "residual.torchscript_bn",
    ] {
        let model = file.split('.').next().unwrap();
        let (got, shape) = read_array_f32(predict_onnx(&dir, file, model, &[])).unwrap();
        let (want, want_shape) = read_array_f32(fixture(&format!("{file}.ort.npy"))).unwrap();
        assert_eq!(shape, want_shape, "{file}");
        let err = max_rel(&got, &want);
        println!("predict --onnx {file:24} max relative error vs ONNX Runtime {err:.2e}");
        assert!(err <= MAX_REL, "{file}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn predict_onnx_probabilities_and_classes_match_a_live_onnx_runtime() {
    let py = std::env::var("GRADTAU_ONNX_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_ort = Command::new(&py)
        .args(["-c", "import onnxruntime, numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_ort {
        println!("SKIPPED predict vs a live ONNX Runtime: {py} cannot import onnxruntime (pip install onnxruntime numpy)");
        return;
    }
    let dir = common::workdir("predict", "live");
    for file in ["dense.dynamo", "residual.torchscript"] {
        let model = file.split('.').next().unwrap();
        let probs = predict_onnx(&dir, file, model, &["--probabilities"]);
        let classes = predict_onnx(&dir, file, model, &["--classes"]);
        // ONNX Runtime's logits, softmax and argmax, written by Python next to ours.
        let script = format!(
            "import numpy as np, onnxruntime as ort\n\
             s = ort.InferenceSession({onnx:?}, providers=['CPUExecutionProvider'])\n\
             y = s.run(None, {{s.get_inputs()[0].name: np.load({x:?})}})[0]\n\
             e = np.exp(y - y.max(1, keepdims=True))\n\
             np.save('ort_probs.npy', (e / e.sum(1, keepdims=True)).astype(np.float32))\n\
             np.save('ort_classes.npy', y.argmax(1).astype(np.int32))\n",
            onnx = fixture(&format!("{file}.onnx")),
            x = fixture(&format!("{model}.input.npy")),
        );
        let out = Command::new(&py)
            .current_dir(&dir)
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (ours, _) = read_array_f32(&probs).unwrap();
        let (theirs, _) = read_array_f32(dir.join("ort_probs.npy")).unwrap();
        let err = max_rel(&ours, &theirs);
        println!(
            "predict --onnx {file} --probabilities: max relative error vs ONNX Runtime {err:.2e}"
        );
        assert!(err <= MAX_REL, "{file}: {err}");
        assert_eq!(
            read_npy_labels(&classes).unwrap(),
            read_npy_labels(dir.join("ort_classes.npy")).unwrap(),
            "{file}: classes"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

const SPEC: &str = r#"{"format": "gradtau.model/1", "input": {"shape": [4]},
  "nodes": [{"name": "0", "op": "linear", "in_features": 4, "out_features": 8},
            {"name": "1", "op": "tanh"},
            {"name": "2", "op": "linear", "in_features": 8, "out_features": 3}],
  "loss": "LOSS"}"#;

/// A spec with the given loss, its weights and 5 inputs, written into `dir`.
fn spec_files(dir: &Path, loss: &str) -> (Model, Vec<Tensor>, Tensor) {
    let text = SPEC.replace("LOSS", loss);
    std::fs::write(dir.join("m.json"), &text).unwrap();
    let model = Model::from_json(&text).unwrap();
    let w = model.init_weights(7);
    let data: Vec<Vec<f32>> = w.iter().map(|t| t.to_vec().unwrap()).collect();
    let params = model.params();
    save_checkpoint(
        dir.join("w.safetensors"),
        params
            .iter()
            .zip(&data)
            .map(|(p, d)| (p.name.as_str(), p.shape.as_slice(), d.as_slice())),
        &BTreeMap::new(),
    )
    .unwrap();
    let x: Vec<f32> = (0..20).map(|i| (i as f32 * 0.37).sin() * 2.0).collect();
    write_npy_f32(dir.join("x.npy"), &x, &[5, 4]).unwrap();
    (model, w, Tensor::from_vec(x, &[5, 4]).unwrap())
}

#[test]
fn predict_with_a_spec_writes_outputs_probabilities_and_classes() {
    let dir = common::workdir("predict", "spec");
    let (model, w, x) = spec_files(&dir, "cross_entropy");
    let base = [
        "predict",
        "--spec",
        "m.json",
        "--weights",
        "w.safetensors",
        "--x",
        "x.npy",
    ];
    let run = |out: &str, extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend(["--out", out]);
        args.extend_from_slice(extra);
        ok(&gradtau(&dir, &args));
    };
    run("raw.npy", &[]);
    run("probs.npy", &["--probabilities"]);
    run("classes.npy", &["--classes", "--batch-size", "2"]);
    let want = model.predict(&w, &x, 64).unwrap();
    let (raw, shape) = read_array_f32(dir.join("raw.npy")).unwrap();
    assert_eq!(shape, vec![5, 3]);
    assert_eq!(raw, want.to_vec().unwrap());
    let (probs, _) = read_array_f32(dir.join("probs.npy")).unwrap();
    let want_probs = outputs::probabilities(LossKind::CrossEntropy, &want).unwrap();
    assert_eq!(probs, want_probs.to_vec().unwrap());
    let classes = read_npy_labels(dir.join("classes.npy")).unwrap();
    let want_classes: Vec<u32> = outputs::classes(LossKind::CrossEntropy, &want)
        .unwrap()
        .into_iter()
        .map(|c| c as u32)
        .collect();
    assert_eq!(classes, want_classes);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn predict_errors_are_clear_and_leave_the_output_file_alone() {
    let dir = common::workdir("predict", "errors");
    spec_files(&dir, "mse");
    std::fs::write(dir.join("old.npy"), b"old").unwrap();
    write_npy_f32(dir.join("wrong.npy"), &[0.0; 10], &[2, 5]).unwrap();
    let spec = [
        "predict",
        "--spec",
        "m.json",
        "--weights",
        "w.safetensors",
        "--out",
        "old.npy",
    ];
    let cases: [(&[&str], &str); 4] = [
        (&["--x", "x.npy", "--probabilities"], "loss is mse"),
        (&["--x", "x.npy", "--classes"], "cross_entropy"),
        (&["--x", "wrong.npy"], "does not hold [N, [4]] samples"),
        (&["--x", "missing.npy"], "missing.npy"),
    ];
    for (extra, want) in cases {
        let mut args = spec.to_vec();
        args.extend_from_slice(extra);
        let out = gradtau(&dir, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(want), "{extra:?}: {err}");
        assert_eq!(std::fs::read(dir.join("old.npy")).unwrap(), b"old");
    }
    // Usage errors, from the argument parser.
    let both = gradtau(
        &dir,
        &[
            "predict",
            "--spec",
            "m.json",
            "--weights",
            "w.safetensors",
            "--x",
            "x.npy",
            "--out",
            "p.npy",
            "--probabilities",
            "--classes",
        ],
    );
    assert!(!both.status.success());
    assert!(String::from_utf8_lossy(&both.stderr).contains("cannot be used with"));
    let no_loss = gradtau(
        &dir,
        &[
            "predict",
            "--onnx",
            &fixture("dense.torchscript.onnx"),
            "--x",
            "x.npy",
            "--out",
            "p.npy",
        ],
    );
    assert!(!no_loss.status.success());
    assert!(String::from_utf8_lossy(&no_loss.stderr).contains("--loss"));
    assert!(!dir.join("p.npy").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
