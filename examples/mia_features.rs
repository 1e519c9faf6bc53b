//! Writes the membership-inference attack's inputs and results for several synthetic feature
//! sets to a JSON file, so that `scripts/check_mia_sklearn.py` can refit scikit-learn's
//! `LogisticRegression()` on exactly the same rows and splits and compare — the paper's attack
//! and, where the features are losses (non-negative), the log-loss attack — and recompute the
//! ROC AUC and TPR at 1 % FPR with `sklearn.metrics`.
//!
//! Usage: `cargo run --release --example mia_features -- out.json`

use gradtau::audit::attacks::{log_epsilon, loss_attacks, roc_auc, tpr_at_fpr, AUDIT_FPR};
use gradtau::audit::mia::{mia_trace, MiaOptions};
use gradtau::rng::Rng;
use serde_json::json;

fn draw(rng: &mut Rng, n: usize, f: impl Fn(f32, &mut Rng) -> f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let z = rng.normal();
            f(z, rng)
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .ok_or("usage: mia_features OUT.json")?;
    let mut rng = Rng::new(2024);
    // Shapes of per-sample losses seen in practice: log-normal-ish, members lower.
    let cases: Vec<(&str, Vec<f32>, Vec<f32>)> = vec![
        (
            "loss_like_overlap",
            draw(&mut rng, 1200, |z, _| (-3.0 + 1.5 * z).exp()),
            draw(&mut rng, 2500, |z, _| (-1.5 + 1.8 * z).exp()),
        ),
        (
            "identical",
            draw(&mut rng, 600, |z, _| (0.8 * z).exp()),
            draw(&mut rng, 600, |z, _| (0.8 * z).exp()),
        ),
        (
            "gaussian_shift",
            draw(&mut rng, 700, |z, _| z),
            draw(&mut rng, 450, |z, _| z + 0.8),
        ),
        (
            "separated",
            draw(&mut rng, 250, |_, r| 0.1 * r.uniform()),
            draw(&mut rng, 300, |_, r| 1.0 + r.uniform()),
        ),
        (
            "tiny_losses",
            draw(&mut rng, 500, |z, _| 1e-3 * (0.5 * z).exp()),
            draw(&mut rng, 500, |z, _| 3e-3 * (0.5 * z).exp()),
        ),
        (
            "entropy_like",
            draw(&mut rng, 400, |_, r| 2.3 * r.uniform().powi(3)),
            draw(&mut rng, 800, |_, r| 2.3 * r.uniform().powf(1.5)),
        ),
        (
            "small",
            draw(&mut rng, 5, |z, _| z.abs()),
            draw(&mut rng, 9, |z, _| 1.0 + z.abs()),
        ),
    ];
    let mut out_cases = Vec::new();
    for (i, (name, members, nonmembers)) in cases.iter().enumerate() {
        let opts = MiaOptions {
            seed: 100 + i as u64,
            ..MiaOptions::default()
        };
        let t = mia_trace(members, nonmembers, &opts)?;
        eprintln!(
            "{name:>18}: n/class {:>5}  MIA {:.4} ± {:.4}",
            t.result.n_per_class, t.result.accuracy_mean, t.result.accuracy_std
        );
        // The attacks of `audit::attacks` on the same inputs; the log-loss attack subsamples
        // and splits like the trace above (same seed, same sizes).
        let log_loss = if members.iter().chain(nonmembers).all(|&v| v >= 0.0) {
            let a = loss_attacks(members, nonmembers, opts.seed)?;
            assert_eq!(a.paper.accuracy, t.result.accuracy_mean);
            json!({
                "epsilon": log_epsilon(members, nonmembers),
                "accuracy_mean": a.log_loss.accuracy,
            })
        } else {
            serde_json::Value::Null
        };
        let nan_null = |v: f64| if v.is_nan() { None } else { Some(v) };
        out_cases.push(json!({
            "name": name,
            "c": opts.c,
            "features": t.features,
            "labels": t.labels.iter().map(|&l| l as u8).collect::<Vec<_>>(),
            "splits": t.splits.iter().map(|s| json!({"train": s.train, "test": s.test})).collect::<Vec<_>>(),
            "rust": {
                "coef": t.fits.iter().map(|f| f.coef[0]).collect::<Vec<_>>(),
                "intercept": t.fits.iter().map(|f| f.intercept).collect::<Vec<_>>(),
                "converged": t.fits.iter().map(|f| f.converged).collect::<Vec<_>>(),
                "split_accuracy": t.result.split_accuracies,
                "accuracy_mean": t.result.accuracy_mean,
                "accuracy_std": t.result.accuracy_std,
                "auc": nan_null(roc_auc(members, nonmembers)),
                "tpr_at_1pct_fpr": nan_null(tpr_at_fpr(members, nonmembers, AUDIT_FPR)),
                "log_loss": log_loss,
            },
            "members": members,
            "nonmembers": nonmembers,
        }));
    }
    std::fs::write(&out, serde_json::to_string(&json!({ "cases": out_cases }))?)?;
    eprintln!("wrote {out}");
    Ok(())
}
