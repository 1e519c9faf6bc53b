//! The `gradtau` command under bad input and kills: a table of bad command lines (exit
//! status, the message's subject, nothing on stderr but the command's own one-line error,
//! output files bit-identical), atomic outputs under SIGKILL, `--out` = `--weights`, and a
//! one-sample forget set end to end.

mod common;

use common::write_set;
use gradtau::data::digits;
use gradtau::io::write_npy_i32;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn workdir(tag: &str) -> PathBuf {
    common::workdir("clirel", tag)
}

fn gradtau(dir: &Path, args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradtau"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A directory with the digits sets, a spec, trained weights (`w.safetensors`) and an
/// existing output file (`out.safetensors`) holding a sentinel.
fn prepared(tag: &str) -> PathBuf {
    let dir = workdir(tag);
    let (train, val, _) = digits::train_val_test(0).unwrap();
    let idx = |a: usize, b: usize| (a..b).collect::<Vec<_>>();
    write_set(&dir, "train", &train.subset(&idx(0, 300)).unwrap());
    write_set(&dir, "forget", &train.subset(&idx(0, 20)).unwrap());
    write_set(&dir, "one", &train.subset(&idx(0, 1)).unwrap());
    write_set(&dir, "retain", &train.subset(&idx(20, 300)).unwrap());
    write_set(&dir, "val", &val.subset(&idx(0, 100)).unwrap());
    // Labels of another length than the inputs.
    write_npy_i32(dir.join("short_y.npy"), &[1, 2, 3], &[3]).unwrap();
    std::fs::write(dir.join("model.json"), digits::MLP_SPEC).unwrap();
    std::fs::write(dir.join("broken.json"), "{\"format\": ").unwrap();
    std::fs::write(dir.join("out.safetensors"), b"sentinel: must survive").unwrap();
    let out = gradtau(
        &dir,
        &strings(&[
            "train",
            "--spec",
            "model.json",
            "--x",
            "train_x.npy",
            "--y",
            "train_y.npy",
            "--out",
            "w.safetensors",
            "--epochs",
            "3",
            "--device",
            "cpu",
        ]),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn sets(forget: &str, retain: &str, val: &str) -> Vec<String> {
    let mut v = Vec::new();
    for (flag, set) in [("forget", forget), ("retain", retain), ("val", val)] {
        v.extend([
            format!("--{flag}-x"),
            format!("{set}_x.npy"),
            format!("--{flag}-y"),
            format!("{set}_y.npy"),
        ]);
    }
    v
}

fn unlearn_args(method: &str, extra: &[String]) -> Vec<String> {
    let mut v = strings(&[
        "unlearn",
        "--spec",
        "model.json",
        "--weights",
        "w.safetensors",
        "--out",
        "out.safetensors",
        "--device",
        "cpu",
        "--method",
        method,
    ]);
    v.extend(sets("forget", "retain", "val"));
    merged(v, extra)
}

/// `base` with each `--flag value` pair of `extra` replacing the same flag's value, or
/// appended (clap refuses a repeated flag).
fn merged(mut base: Vec<String>, extra: &[String]) -> Vec<String> {
    for pair in extra.chunks(2) {
        match base.iter().position(|a| *a == pair[0]) {
            Some(pos) if pair.len() == 2 => base[pos + 1] = pair[1].clone(),
            _ => base.extend_from_slice(pair),
        }
    }
    base
}

fn train_args(extra: &[String]) -> Vec<String> {
    let v = strings(&[
        "train",
        "--spec",
        "model.json",
        "--x",
        "train_x.npy",
        "--y",
        "train_y.npy",
        "--out",
        "out.safetensors",
        "--epochs",
        "1",
        "--device",
        "cpu",
    ]);
    merged(v, extra)
}

/// Every file of `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = if e.path().is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            (name, bytes)
        })
        .collect();
    v.sort();
    v
}

/// One bad command line: its arguments and a word the error must hold.
struct Case {
    args: Vec<String>,
    subject: String,
}

fn case(args: Vec<String>, subject: &str) -> Case {
    Case {
        args,
        subject: subject.to_string(),
    }
}

fn bad_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let s = |v: &[&str]| strings(v);
    let methods = ["nabla-tau", "paper", "finetune", "neggrad", "neggrad-plus"];
    // Option values, per method, with and without a report.
    let bad_unlearn: &[(&[&str], &str)] = &[
        (&["--lr", "-1"], "`lr`"),
        (&["--lr", "0"], "`lr`"),
        (&["--lr", "NaN"], "`lr`"),
        (&["--lr", "inf"], "`lr`"),
        (&["--lr", "-inf"], "`lr`"),
        (&["--epochs", "0"], "`epochs`"),
        (&["--batch-size", "0"], "`batch_size`"),
        (&["--memory-limit", "0"], "--memory-limit"),
        (&["--memory-limit", "12Q"], "--memory-limit"),
        (&["--memory-limit", "lots"], "--memory-limit"),
        (&["--memory-limit", "1K"], "resource limit"),
        (&["--device", "gpu7"], "gpu7"),
    ];
    for m in methods {
        for (extra, subject) in bad_unlearn {
            for report in [false, true] {
                let mut e = s(extra);
                if report {
                    e.extend(s(&["--report", "report.json"]));
                }
                cases.push(case(unlearn_args(m, &e), subject));
            }
        }
        // Output paths that cannot be written, checked before the run.
        for (extra, subject) in [
            (&["--report", "nodir/r.json"][..], "nodir"),
            (&["--report", "."][..], "directory"),
            (&["--out", "nodir/w.safetensors"][..], "nodir"),
            (&["--out", "."][..], "directory"),
        ] {
            cases.push(case(unlearn_args(m, &s(extra)), subject));
        }
        // Bad input files.
        for (set, replace, subject) in [
            ("forget", "short", "short_y.npy"),
            ("retain", "short", "short_y.npy"),
            ("val", "short", "short_y.npy"),
            ("forget", "missing", "missing_x.npy"),
            ("val", "missing", "missing_x.npy"),
        ] {
            let mut args = unlearn_args(m, &[]);
            let flag = format!("--{set}-{}", if replace == "short" { "y" } else { "x" });
            let pos = args.iter().position(|a| *a == flag).unwrap();
            args[pos + 1] = format!(
                "{replace}_{}.npy",
                if replace == "short" { "y" } else { "x" }
            );
            cases.push(case(args, subject));
        }
        for (flag, value, subject) in [
            ("--spec", "broken.json", "JSON"),
            ("--spec", "nothere.json", "nothere.json"),
            ("--weights", "nothere.safetensors", "nothere.safetensors"),
            ("--weights", "model.json", "model.json"),
        ] {
            let mut args = unlearn_args(m, &[]);
            let pos = args.iter().position(|a| a == flag).unwrap();
            args[pos + 1] = value.to_string();
            cases.push(case(args, subject));
        }
    }
    // Overlapping sets.
    for m in ["nabla-tau", "paper", "neggrad-plus"] {
        let mut args = unlearn_args(m, &[]);
        let pos = args.iter().position(|a| a == "--retain-x").unwrap();
        args[pos + 1] = "forget_x.npy".into();
        args[pos + 3] = "forget_y.npy".into();
        cases.push(case(args, "share 20 sample"));
    }
    for m in ["nabla-tau", "paper"] {
        let mut args = unlearn_args(m, &[]);
        let pos = args.iter().position(|a| a == "--val-x").unwrap();
        args[pos + 1] = "forget_x.npy".into();
        args[pos + 3] = "forget_y.npy".into();
        cases.push(case(args, "validation set"));
    }
    // Training options, crossed with optimizer and schedule.
    let bad_train: &[(&[&str], &str)] = &[
        (&["--lr", "-1"], "`lr`"),
        (&["--lr", "0"], "`lr`"),
        (&["--lr", "nan"], "`lr`"),
        (&["--lr", "inf"], "`lr`"),
        (&["--weight-decay", "-0.5"], "`weight_decay`"),
        (&["--weight-decay", "nan"], "`weight_decay`"),
        (&["--weight-decay", "inf"], "`weight_decay`"),
        (&["--epochs", "0"], "`epochs`"),
        (&["--batch-size", "0"], "`batch_size`"),
        (&["--memory-limit", "-5"], "--memory-limit"),
        (&["--memory-limit", "2K"], "resource limit"),
        (&["--out", "nodir/x.safetensors"], "nodir"),
        (&["--x", "short_y.npy"], "short_y.npy"),
        (&["--y", "short_y.npy"], "short_y.npy"),
        (&["--init", "nothere.safetensors"], "nothere.safetensors"),
    ];
    for optimizer in ["adamw", "adam", "sgd"] {
        for schedule in ["constant", "linear", "cosine"] {
            for (extra, subject) in bad_train {
                let mut e = s(extra);
                e.extend(s(&["--optimizer", optimizer, "--schedule", schedule]));
                cases.push(case(train_args(&e), subject));
            }
        }
    }
    cases.push(case(train_args(&s(&["--optimizer", "lbfgs"])), "lbfgs"));
    cases.push(case(train_args(&s(&["--schedule", "step"])), "step"));
    // Audit.
    let mut audit = s(&[
        "audit",
        "--spec",
        "model.json",
        "--weights",
        "w.safetensors",
    ]);
    audit.extend(s(&[
        "--forget-x",
        "forget_x.npy",
        "--forget-y",
        "short_y.npy",
        "--retain-x",
        "retain_x.npy",
        "--retain-y",
        "retain_y.npy",
        "--test-x",
        "val_x.npy",
        "--test-y",
        "val_y.npy",
    ]));
    cases.push(case(audit, "short_y.npy"));
    cases
}

#[test]
fn bad_command_lines_fail_cleanly_and_touch_no_file() {
    let dir = prepared("table");
    let before = snapshot(&dir);
    let cases = bad_cases();
    for c in &cases {
        let out = gradtau(&dir, &c.args);
        let err = String::from_utf8_lossy(&out.stderr);
        let line = c.args.join(" ");
        assert_eq!(out.status.code(), Some(2), "{line}\n{err}");
        assert!(
            err.contains(&c.subject),
            "{line}: `{}` not in:\n{err}",
            c.subject
        );
        // The command's own error line is all there is: no panic, no library output.
        assert_eq!(err.lines().count(), 1, "{line}:\n{err}");
        assert!(err.starts_with("gradtau: error: "), "{line}:\n{err}");
        assert_eq!(snapshot(&dir), before, "{line}: files changed");
    }
    println!("{} bad command lines checked", cases.len());
    assert!(cases.len() >= 250, "only {} cases", cases.len());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn hostile_specs_are_refused_by_the_cli() {
    let dir = prepared("hostile");
    let before = snapshot(&dir);
    let big = |pad: u64, cout: u64| {
        format!(
            r#"{{"format": "gradtau.model/1", "input": {{"shape": [64]}},
             "nodes": [
              {{"name": "r", "op": "reshape", "shape": [1, 8, 8]}},
              {{"name": "big", "op": "conv2d", "in_channels": 1, "out_channels": {cout}, "kernel_size": 3, "padding": {pad}}},
              {{"name": "gap", "op": "global_avg_pool"}},
              {{"name": "fc", "op": "linear", "in_features": {cout}, "out_features": 10}}]}}"#
        )
    };
    let specs = [
        big(40000, 64),
        big((1 << 31) - 1, 1),
        big(20, 4096),
        r#"{"format": "gradtau.model/1", "input": {"shape": [64]},
           "nodes": [{"name": "big", "op": "linear", "in_features": 64, "out_features": 46000},
                     {"name": "fc", "op": "linear", "in_features": 46000, "out_features": 46000}]}"#
            .to_string(),
    ];
    for (i, spec) in specs.iter().enumerate() {
        let name = format!("hostile{i}.json");
        std::fs::write(dir.join(&name), spec).unwrap();
        let snap = snapshot(&dir);
        for batch in ["64", "1000"] {
            let mut args = train_args(&strings(&["--batch-size", batch, "--memory-limit", "1G"]));
            args[2] = name.clone();
            let out = Command::new(env!("CARGO_BIN_EXE_gradtau"))
                .current_dir(&dir)
                .args(&args)
                .env("GRADTAU_MEMORY_LIMIT", (1u64 << 30).to_string())
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{spec}\n{err}");
            assert!(err.contains("resource limit"), "{spec}\n{err}");
            assert!(err.contains("`big") || err.contains("`fc"), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert_eq!(snapshot(&dir), snap);
        }
    }
    assert_eq!(before.len() + specs.len(), snapshot(&dir).len());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn out_equal_to_weights_and_a_one_sample_forget_set() {
    let dir = prepared("same");
    std::fs::copy(dir.join("w.safetensors"), dir.join("same.safetensors")).unwrap();
    let old = std::fs::read(dir.join("same.safetensors")).unwrap();
    let mut args = strings(&[
        "unlearn",
        "--spec",
        "model.json",
        "--weights",
        "same.safetensors",
        "--out",
        "same.safetensors",
        "--report",
        "r.json",
        "--device",
        "cpu",
        "--method",
        "finetune",
        "--epochs",
        "1",
    ]);
    args.extend(sets("one", "retain", "val"));
    let out = gradtau(&dir, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = std::fs::read(dir.join("same.safetensors")).unwrap();
    assert_ne!(new, old);
    assert_eq!(new.len(), old.len());
    gradtau::io::load_safetensors(dir.join("same.safetensors")).unwrap();
    // The audit ran with one forget sample and says what it could not compute.
    assert!(
        stdout.contains("membership attack needs at least"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("r.json")).unwrap()).unwrap();
    assert_eq!(report["after"]["mia_samples"], 0);
    // No temporary file is left behind.
    assert!(snapshot(&dir)
        .iter()
        .all(|(n, _)| !n.contains("gradtau-tmp")));
    // ∇τ on one sample, end to end.
    let mut args = unlearn_args("nabla-tau", &[]);
    let pos = args.iter().position(|a| a == "--forget-x").unwrap();
    args[pos + 1] = "one_x.npy".into();
    args[pos + 3] = "one_y.npy".into();
    let out = gradtau(&dir, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A model whose weights file is large (17 MB) next to its one training step, so random
/// kill moments often fall inside the write.
const WIDE: &str = r#"{"format": "gradtau.model/1", "input": {"shape": [64]},
 "nodes": [
  {"name": "0", "op": "linear", "in_features": 64, "out_features": 2048},
  {"name": "1", "op": "relu"},
  {"name": "2", "op": "linear", "in_features": 2048, "out_features": 2048},
  {"name": "3", "op": "relu"},
  {"name": "4", "op": "linear", "in_features": 2048, "out_features": 10}],
 "loss": "cross_entropy"}"#;

#[test]
fn a_killed_run_leaves_the_old_file_or_the_complete_new_one() {
    let dir = prepared("kill");
    std::fs::write(dir.join("wide.json"), WIDE).unwrap();
    let args = |out: &str| {
        strings(&[
            "train",
            "--spec",
            "wide.json",
            "--x",
            "forget_x.npy",
            "--y",
            "forget_y.npy",
            "--out",
            out,
            "--epochs",
            "1",
            "--batch-size",
            "20",
            "--device",
            "cpu",
            "--seed",
            "5",
        ])
    };
    let t0 = Instant::now();
    let out = gradtau(&dir, &args("reference.safetensors"));
    let full = t0.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let old = b"the previous weights".to_vec();
    let target = dir.join("target.safetensors");
    // Kill moments spread over the whole run (from 0 to 1.2 times its length), from a fixed
    // sequence; bounded in count and time.
    let mut rng = gradtau::rng::Rng::new(99);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut old_seen, mut new_seen, mut runs) = (0, 0, 0);
    while runs < 40 && Instant::now() < deadline {
        std::fs::write(&target, &old).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_gradtau"))
            .current_dir(&dir)
            .args(args("target.safetensors"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f32(1.2 * rng.uniform()));
        let _ = child.kill();
        let _ = child.wait();
        let now = std::fs::read(&target).unwrap();
        if now == old {
            old_seen += 1;
        } else {
            assert!(
                now == reference,
                "run {runs}: the target is neither the old file nor the complete new one ({} bytes)",
                now.len()
            );
            new_seen += 1;
        }
        runs += 1;
    }
    println!("{runs} kills: {old_seen} left the old file, {new_seen} the new one");
    assert!(runs >= 10);
    std::fs::remove_dir_all(&dir).ok();
}
