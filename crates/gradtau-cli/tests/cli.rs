//! The `gradtau` command on real files: train → unlearn (with a JSON report) → audit, and a
//! clear error with no output file when an input is bad.

mod common;

use common::write_set;
use gradtau::data::{digits, split_indices};
use gradtau::io::{write_npy_f32, write_npy_i32};
use gradtau::rng::Rng;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workdir(tag: &str) -> PathBuf {
    common::workdir("cli", tag)
}

fn gradtau(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gradtau"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// Runs `gradtau` with `args` followed by `--<flag>-x <set>_x.npy --<flag>-y <set>_y.npy`
/// for each `(flag, set)`.
fn gradtau_with_sets(dir: &Path, args: &[&str], sets: &[(&str, &str)]) -> std::process::Output {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    for (flag, set) in sets {
        all.extend([
            format!("--{flag}-x"),
            format!("{set}_x.npy"),
            format!("--{flag}-y"),
            format!("{set}_y.npy"),
        ]);
    }
    let argv: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
    gradtau(dir, &argv)
}

/// `gradtau train` of `model.json` on `train_x.npy` / `train_y.npy` into `orig.safetensors`
/// (batch 32, CPU); panics with the tool's stderr if it fails.
fn train_original(dir: &Path, epochs: &str) {
    let out = gradtau(
        dir,
        &[
            "train",
            "--spec",
            "model.json",
            "--x",
            "train_x.npy",
            "--y",
            "train_y.npy",
            "--out",
            "orig.safetensors",
            "--epochs",
            epochs,
            "--batch-size",
            "32",
            "--device",
            "cpu",
        ],
    );
    assert!(
        out.status.success(),
        "train failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `gradtau unlearn` of `orig.safetensors` with the forget, retain and val sets into
/// `new.safetensors` and `report.json` (seed 1, CPU); returns its stdout, panics with its
/// stderr if it fails.
fn unlearn_original(dir: &Path) -> String {
    let out = gradtau_with_sets(
        dir,
        &[
            "unlearn",
            "--spec",
            "model.json",
            "--weights",
            "orig.safetensors",
            "--out",
            "new.safetensors",
            "--report",
            "report.json",
            "--device",
            "cpu",
            "--seed",
            "1",
        ],
        &[("forget", "forget"), ("retain", "retain"), ("val", "val")],
    );
    assert!(
        out.status.success(),
        "unlearn failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn train_unlearn_audit_on_files() {
    let dir = workdir("flow");
    let (train, val, test) = digits::train_val_test(3).unwrap();
    let (f, r) = split_indices(train.len(), 0.1, &mut Rng::new(3));
    write_set(&dir, "train", &train);
    write_set(&dir, "forget", &train.subset(&f).unwrap());
    write_set(&dir, "retain", &train.subset(&r).unwrap());
    write_set(&dir, "val", &val);
    write_set(&dir, "test", &test);
    std::fs::write(dir.join("model.json"), digits::MLP_SPEC).unwrap();

    train_original(&dir, "60");
    let stdout = unlearn_original(&dir);
    assert!(
        stdout.contains("before") && stdout.contains("after"),
        "{stdout}"
    );
    assert!(stdout.contains("task metric: accuracy"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["method"], "nabla_tau");
    assert!(report["run"]["steps"].as_u64().unwrap() > 0);
    assert!(report["run"]["seconds"].as_f64().unwrap() >= 0.0);
    // Why the run ended, named as in the printed summary.
    let reason = report["run"]["stop_reason"].as_str().unwrap();
    assert!(["budget", "forgotten"].contains(&reason), "{reason}");
    assert!(stdout.contains(&format!("ended by {reason}")), "{stdout}");
    // The rate the run started from: adaptive mode's rule gives 1e-3 to 3e-3, and up to 4
    // times that to a random-forgetting run of under 300 steps (this one's).
    let lr = report["run"]["lr"].as_f64().unwrap();
    assert!((1e-3..=4.0 * 3e-3 + 1e-9).contains(&lr), "lr {lr}");
    for k in [
        "retain_accuracy",
        "forget_accuracy",
        "mia_loss",
        "mia_entropy",
    ] {
        let (b, a) = (
            report["before"][k].as_f64().unwrap(),
            report["after"][k].as_f64().unwrap(),
        );
        assert!(
            (0.0..=1.0).contains(&b) && (0.0..=1.0).contains(&a),
            "{k}: {b} {a}"
        );
    }
    assert_eq!(
        report["before"]["forget_accuracy"].as_f64().unwrap(),
        1.0,
        "the original memorised its forget set"
    );

    let out = gradtau_with_sets(
        &dir,
        &[
            "audit",
            "--spec",
            "model.json",
            "--weights",
            "new.safetensors",
            "--json",
        ],
        &[("forget", "forget"), ("retain", "retain"), ("test", "test")],
    );
    assert!(
        out.status.success(),
        "audit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(row["test_accuracy"].as_f64().unwrap() > 0.9, "{row}");
    // The metric is named and its values are the accuracies; every attack reports its scores.
    assert_eq!(row["metric"], "accuracy", "{row}");
    assert_eq!(row["metrics"]["accuracy"]["test"], row["test_accuracy"]);
    assert_eq!(row["attacks"]["paper"]["accuracy"], row["mia_loss"]);
    for attack in ["paper", "log_loss", "threshold"] {
        let auc = row["attacks"][attack]["auc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&auc), "{attack}: {row}");
    }
    let strongest = row["attacks"]["strongest"]["advantage"].as_f64().unwrap();
    assert!((0.0..=0.5).contains(&strongest), "{row}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A regression set: y = sin(2 x0) + x1 x2 / 2 + noise, so that a wide MLP trained long enough
/// fits its training rows' noise and knows them from unseen rows.
fn write_regression_set(dir: &Path, name: &str, rows: usize, rng: &mut Rng) {
    const FEATURES: usize = 8;
    let x: Vec<f32> = (0..rows * FEATURES).map(|_| rng.normal()).collect();
    let y: Vec<f32> = x
        .chunks_exact(FEATURES)
        .map(|r| (2.0 * r[0]).sin() + 0.5 * r[1] * r[2] + 0.3 * rng.normal())
        .collect();
    write_npy_f32(dir.join(format!("{name}_x.npy")), &x, &[rows, FEATURES]).unwrap();
    write_npy_f32(dir.join(format!("{name}_y.npy")), &y, &[rows, 1]).unwrap();
}

const REGRESSION_SPEC: &str = r#"{"format": "gradtau.model/1", "input": {"shape": [8]},
 "nodes": [
  {"name": "0", "op": "linear", "in_features": 8, "out_features": 128},
  {"name": "1", "op": "relu"},
  {"name": "2", "op": "linear", "in_features": 128, "out_features": 128},
  {"name": "3", "op": "relu"},
  {"name": "4", "op": "linear", "in_features": 128, "out_features": 1}],
 "loss": "mse"}"#;

#[test]
fn a_regression_model_forgets_through_the_command_line() {
    // Train, unlearn and audit an over-fitted regression model the way a user would: the
    // same commands as for a classifier, float targets, the report naming the metric.
    let dir = workdir("regression");
    let mut rng = Rng::new(5);
    for (name, rows) in [("forget", 50), ("retain", 450), ("val", 400), ("test", 600)] {
        write_regression_set(&dir, name, rows, &mut rng);
    }
    // Training runs on forget and retain together, as the original model did.
    let cat = |part: &str| -> Vec<f32> {
        let (mut a, _) =
            gradtau::io::read_array_f32(dir.join(format!("forget_{part}.npy"))).unwrap();
        a.extend(
            gradtau::io::read_array_f32(dir.join(format!("retain_{part}.npy")))
                .unwrap()
                .0,
        );
        a
    };
    write_npy_f32(dir.join("train_x.npy"), &cat("x"), &[500, 8]).unwrap();
    write_npy_f32(dir.join("train_y.npy"), &cat("y"), &[500, 1]).unwrap();
    std::fs::write(dir.join("model.json"), REGRESSION_SPEC).unwrap();
    train_original(&dir, "300");
    let stdout = unlearn_original(&dir);
    assert!(stdout.contains("task metric: mse"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let (before, after) = (&report["before"], &report["after"]);
    assert_eq!(before["metric"], "mse", "{report}");
    let mse = |r: &serde_json::Value, set: &str| r["metrics"]["mse"][set].as_f64().unwrap();
    let auc = |r: &serde_json::Value| r["attacks"]["threshold"]["auc"].as_f64().unwrap();
    // The original memorised its forget rows: their error is far below unseen rows'.
    assert!(
        mse(before, "forget") * 20.0 < mse(before, "test"),
        "{before}"
    );
    assert!(auc(before) > 0.9, "{before}");
    // Unlearnt: the forget rows' error comes up to within a factor of two of unseen rows',
    // the loss attack loses most of its edge, and the test error moves little.
    assert!(mse(after, "forget") * 2.0 > mse(before, "test"), "{after}");
    assert!(
        auc(after) < auc(before) - 0.2,
        "AUC {} -> {}",
        auc(before),
        auc(after)
    );
    assert!(mse(after, "test") < 1.25 * mse(before, "test"), "{after}");
    let reason = report["run"]["stop_reason"].as_str().unwrap();
    assert!(["budget", "forgotten"].contains(&reason), "{reason}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() {
    let dir = workdir("bad");
    let (train, val, _) = digits::train_val_test(4).unwrap();
    let sub = train.subset(&(0..100).collect::<Vec<_>>()).unwrap();
    write_set(&dir, "forget", &sub);
    write_set(&dir, "retain", &sub);
    write_set(&dir, "val", &val);
    write_npy_i32(dir.join("bad_y.npy"), &[11; 100], &[100]).unwrap();
    std::fs::write(dir.join("model.json"), digits::MLP_SPEC).unwrap();
    let out = gradtau(
        &dir,
        &[
            "train",
            "--spec",
            "model.json",
            "--x",
            "forget_x.npy",
            "--y",
            "forget_y.npy",
            "--out",
            "w.safetensors",
            "--epochs",
            "1",
            "--device",
            "cpu",
        ],
    );
    assert!(out.status.success());

    let run = |y: &str, spec: &str| {
        gradtau_with_sets(
            &dir,
            &[
                "unlearn",
                "--spec",
                spec,
                "--weights",
                "w.safetensors",
                "--out",
                "never.safetensors",
                "--device",
                "cpu",
                "--forget-x",
                "forget_x.npy",
                "--forget-y",
                y,
            ],
            &[("retain", "retain"), ("val", "val")],
        )
    };
    let out = run("bad_y.npy", "model.json");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("label 11") && err.contains("forget"), "{err}");
    assert!(!dir.join("never.safetensors").exists());

    std::fs::write(
        dir.join("broken.json"),
        digits::MLP_SPEC.replace("\"relu\"", "\"relu6\""),
    )
    .unwrap();
    let out = run("forget_y.npy", "broken.json");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("node `1`") && err.contains("relu6"), "{err}");
    assert!(!dir.join("never.safetensors").exists());
    std::fs::remove_dir_all(&dir).ok();
}
