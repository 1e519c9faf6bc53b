//! Pieces the reproduction examples share (Fashion-MNIST, text, regression): the methods every
//! report compares, and the helpers that print a table cell and name the machine. Each
//! example includes this file with `#[path = "common/report.rs"] mod report;` — examples are
//! single programs, so a shared module is included by path rather than built as a crate.

#![allow(dead_code)] // not every example uses every helper

use gradtau::unlearn::{BaselineOptions, Method, NablaTauOptions};

/// The unlearning methods a report compares with retraining, in table order, each seeded with
/// the row's seed and otherwise at its defaults (no tuning per task).
pub fn unlearning_methods(seed: u64) -> [(&'static str, Method); 4] {
    let base = |b: BaselineOptions| BaselineOptions { seed, ..b };
    [
        (
            "∇τ adaptive",
            Method::NablaTau(NablaTauOptions {
                seed,
                ..NablaTauOptions::default()
            }),
        ),
        (
            "∇τ paper",
            Method::NablaTau(NablaTauOptions {
                seed,
                ..NablaTauOptions::paper()
            }),
        ),
        (
            "fine-tune",
            Method::FineTune(base(BaselineOptions::finetune())),
        ),
        (
            "NegGrad+",
            Method::NegGradPlus(base(BaselineOptions::neggrad_plus())),
        ),
    ]
}

/// Mean and sample standard deviation (0 for a single value).
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var.sqrt())
}

/// A table cell: the mean of `f` over the seeds' rows, scaled, with its spread when there is
/// more than one seed.
pub fn cell<R>(rows: &[R], f: fn(&R) -> f64, scale: f64, digits: usize) -> String {
    let v: Vec<f64> = rows.iter().map(|r| f(r) * scale).collect();
    let (m, sd) = mean_sd(&v);
    if v.len() > 1 {
        format!("{m:.digits$} ± {sd:.digits$}")
    } else {
        format!("{m:.digits$}")
    }
}

/// The machine a report was measured on, for its setup section.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{cpu}, {cores} cores (shared with other jobs), CPU backend, release build")
}
