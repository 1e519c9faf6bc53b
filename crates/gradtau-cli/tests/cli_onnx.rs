//! The ONNX path of the command-line tool, end to end: a PyTorch-exported ONNX classifier
//! (tests/fixtures/onnx/mlp.torchscript.onnx, 784-32-10) is trained on Fashion-MNIST images
//! with `gradtau train --onnx`, then unlearned with one `gradtau unlearn --onnx` command; the
//! audit in the report shows the forgetting, and ONNX Runtime serves the written file with
//! the accuracies the report states. Skips loudly without Fashion-MNIST (Debian package
//! dataset-fashion-mnist) or, for the ONNX Runtime half, without Python's onnxruntime.

use gradtau::io::{read_array_f32, read_array_labels, write_npy_f32, write_npy_i32};
use std::path::{Path, PathBuf};
use std::process::Command;

const FASHION: &str = "/usr/share/datasets/fashion-mnist";
const TRAIN: usize = 3000;
const FORGET: usize = 300;
const VAL: usize = 1000;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx/mlp.torchscript.onnx")
}

/// Rows `range` of Fashion-MNIST's `kind` split as .npy files `<name>_x.npy`, `<name>_y.npy`.
fn write_rows(dir: &Path, kind: &str, range: std::ops::Range<usize>, name: &str) {
    let (x, _) = read_array_f32(format!("{FASHION}/{kind}-images-idx3-ubyte.gz")).unwrap();
    let y = read_array_labels(format!("{FASHION}/{kind}-labels-idx1-ubyte.gz")).unwrap();
    let n = range.len();
    let xs = &x[range.start * 784..range.end * 784];
    let ys: Vec<i32> = y[range].iter().map(|&l| l as i32).collect();
    write_npy_f32(dir.join(format!("{name}_x.npy")), xs, &[n, 784]).unwrap();
    write_npy_i32(dir.join(format!("{name}_y.npy")), &ys, &[n]).unwrap();
}

fn gradtau(dir: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_gradtau"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gradtau {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_exported_onnx_classifier_is_unlearned_with_one_command() {
    if !Path::new(FASHION)
        .join("train-images-idx3-ubyte.gz")
        .exists()
    {
        println!("SKIPPED ONNX CLI test: Fashion-MNIST not in {FASHION} (apt-get install dataset-fashion-mnist)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("gradtau-cli-onnx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    write_rows(&dir, "train", 0..TRAIN, "train");
    write_rows(&dir, "train", 0..FORGET, "forget");
    write_rows(&dir, "train", FORGET..TRAIN, "retain");
    write_rows(&dir, "t10k", 0..VAL, "val");
    let fixture = fixture().display().to_string();
    // An original model: the exported network trained to over-fit these 3000 images.
    gradtau(
        &dir,
        &[
            "train",
            "--onnx",
            &fixture,
            "--loss",
            "cross_entropy",
            "--x",
            "train_x.npy",
            "--y",
            "train_y.npy",
            "--epochs",
            "30",
            "--out",
            "trained.onnx",
            "--device",
            "cpu",
        ],
    );
    // The deletion request: one command, ONNX in, ONNX out.
    gradtau(
        &dir,
        &[
            "unlearn",
            "--onnx",
            "trained.onnx",
            "--loss",
            "cross_entropy",
            "--forget-x",
            "forget_x.npy",
            "--forget-y",
            "forget_y.npy",
            "--retain-x",
            "retain_x.npy",
            "--retain-y",
            "retain_y.npy",
            "--val-x",
            "val_x.npy",
            "--val-y",
            "val_y.npy",
            "--out",
            "unlearned.onnx",
            "--report",
            "report.json",
            "--device",
            "cpu",
        ],
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let get = |row: &str, k: &str| report[row][k].as_f64().unwrap();
    let (before, after) = (
        get("before", "forget_accuracy"),
        get("after", "forget_accuracy"),
    );
    println!(
        "forget accuracy {before:.4} → {after:.4}; validation {:.4} → {:.4}; MIA-loss {:.4} → {:.4}",
        get("before", "test_accuracy"),
        get("after", "test_accuracy"),
        get("before", "mia_loss"),
        get("after", "mia_loss")
    );
    // The original recognises its training images better than unseen ones; afterwards the
    // forget set is closer to unseen data on both counts.
    assert!(
        before > get("before", "test_accuracy") + 0.02,
        "the original did not over-fit"
    );
    assert!(after < before, "forget accuracy did not fall");
    assert!(
        (get("after", "mia_loss") - 0.5).abs() < (get("before", "mia_loss") - 0.5).abs(),
        "the membership attack did not move towards chance"
    );

    let py = std::env::var("GRADTAU_ONNX_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_ort = Command::new(&py)
        .args(["-c", "import onnxruntime, numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_ort {
        println!("SKIPPED serving the unlearned file with ONNX Runtime: no onnxruntime for {py}");
        return;
    }
    let script = "import numpy as np, onnxruntime as ort\n\
        s = ort.InferenceSession('unlearned.onnx', providers=['CPUExecutionProvider'])\n\
        i = s.get_inputs()[0].name\n\
        for name in ('forget', 'val'):\n\
        \x20   x = np.load(name + '_x.npy').reshape(-1, 1, 28, 28)\n\
        \x20   y = np.load(name + '_y.npy')\n\
        \x20   print(float((s.run(None, {i: x})[0].argmax(1) == y).mean()))\n";
    let out = Command::new(&py)
        .current_dir(&dir)
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acc: Vec<f64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    println!(
        "ONNX Runtime on the unlearned file: forget {:.4}, validation {:.4}",
        acc[0], acc[1]
    );
    assert!(
        (acc[0] - after).abs() < 1e-9,
        "ONNX Runtime's forget accuracy {} vs the report's {after}",
        acc[0]
    );
    assert!((acc[1] - get("after", "test_accuracy")).abs() < 1e-9);
    let _ = std::fs::remove_dir_all(&dir);
}
