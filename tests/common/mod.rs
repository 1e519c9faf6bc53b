//! Shared by the reliability tests: small digits sets, the hostile specs of issue 14, and
//! running a test again in a child process (to see its real stderr, and to give it a
//! process-wide memory budget before any thread starts).
#![allow(dead_code)]

use gradtau::data::{digits, Dataset};
use std::process::Command;

/// The budget the child processes run under: hostile specs are refused without allocating,
/// and the normal models fit easily.
pub const CHILD_LIMIT: u64 = 2 << 30;

/// Forget (20), retain (200) and validation (100) samples of the digits data, disjoint.
pub fn digits_sets() -> (Dataset, Dataset, Dataset) {
    let (train, val, _) = digits::train_val_test(0).unwrap();
    let idx = |a: usize, b: usize| (a..b).collect::<Vec<_>>();
    (
        train.subset(&idx(0, 20)).unwrap(),
        train.subset(&idx(20, 220)).unwrap(),
        val.subset(&idx(0, 100)).unwrap(),
    )
}

/// The specs from the issue that aborted or panicked the host, by name: each must give
/// a resource-limit status (at compile time or when a run starts), never an abort.
pub fn hostile_specs() -> Vec<(&'static str, String)> {
    let conv = |input: &str, cin: u64, cout: u64, pad: u64| {
        format!(
            r#"{{"format": "gradtau.model/1", "input": {{"shape": {input}}},
             "nodes": [
              {{"name": "big", "op": "conv2d", "in_channels": {cin}, "out_channels": {cout}, "kernel_size": 3, "padding": {pad}}},
              {{"name": "gap", "op": "global_avg_pool"}},
              {{"name": "fc", "op": "linear", "in_features": {cout}, "out_features": 10}}],
             "loss": "cross_entropy"}}"#
        )
    };
    vec![
        ("conv padding 40000", conv("[1, 8, 8]", 1, 64, 40000)),
        ("4096-channel conv", conv("[1, 64, 64]", 1, 4096, 1)),
        (
            "linear 46000x46000",
            r#"{"format": "gradtau.model/1", "input": {"shape": [46000]},
             "nodes": [
              {"name": "big", "op": "linear", "in_features": 46000, "out_features": 46000},
              {"name": "r", "op": "relu"},
              {"name": "fc", "op": "linear", "in_features": 46000, "out_features": 10}],
             "loss": "cross_entropy"}"#
                .to_string(),
        ),
        (
            "conv padding 2^31-1",
            conv("[1, 8, 8]", 1, 1, (1 << 31) - 1),
        ),
    ]
}

/// 64 random samples shaped for `input` with labels in 0..10.
pub fn random_set(input: &[usize], n: usize, seed: u64) -> Dataset {
    let per: usize = input.iter().product();
    let mut rng = gradtau::rng::Rng::new(seed);
    let x: Vec<f32> = (0..n * per).map(|_| rng.normal()).collect();
    let mut shape = vec![n];
    shape.extend_from_slice(input);
    let y = (0..n).map(|i| (i % 10) as u32).collect();
    Dataset::classification(gradtau::Tensor::from_vec(x, &shape).unwrap(), y).unwrap()
}

/// The environment variable that marks a child run.
const CHILD: &str = "GRADTAU_RELIABILITY_CHILD";

/// True inside the child process started by [`rerun_in_child`].
pub fn is_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// Runs the test `name` of this test binary again in a child process with the memory
/// budget [`CHILD_LIMIT`] and `extra_env`, and returns its stderr after checking that it
/// passed. The caller asserts what the library must not have printed.
pub fn rerun_in_child(name: &str, extra_env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("GRADTAU_MEMORY_LIMIT", CHILD_LIMIT.to_string());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child {name} failed ({:?}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("1 passed"),
        "child {name} ran no test:\n{stdout}"
    );
    // What the child reported (counts), for a run with --nocapture.
    for line in stdout
        .lines()
        .filter(|l| l.contains("checked") || l.contains("specs:"))
    {
        println!("child: {line}");
    }
    stderr
}
