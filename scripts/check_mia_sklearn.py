#!/usr/bin/env python3
"""Cross-checks gradtau's membership-inference attack against scikit-learn.

Runs `cargo run --release --example mia_features` (or reads a JSON file it wrote, given as
the first argument), then, for every case and every split the Rust code used, fits
scikit-learn's LogisticRegression() -- the attacker of the paper's reference code -- on the
same training rows and compares:

  * coefficient and intercept with sklearn's defaults (lbfgs, tol=1e-4) within ATOL+RTOL
    (lbfgs stops at its tolerance; Rust's Newton solver goes to the exact optimum; measured
    differences are below 1e-3 relative),
  * coefficient and intercept with a tightly converged sklearn fit (same objective) within
    1e-6 relative -- this is the real correctness check of the Rust solver,
  * test accuracy per split, exactly, against the tightly converged fit, and against the
    default fit up to samples lying within the two fits' disagreement band,
  * the mean and std of the split accuracies,
  * the log-loss attack (the same protocol on ln(loss + eps), same rows and splits): its mean
    accuracy against tightly converged sklearn fits on the transformed rows,
  * the ROC AUC of "lower loss => member" against sklearn.metrics.roc_auc_score, and the TPR
    at 1 % FPR against the last point of sklearn.metrics.roc_curve whose FPR is at most 1 %
    (NaN, sent as null, with fewer than 100 non-members).

Exit status 0 when everything agrees, 1 on any mismatch, 2 on a setup problem.
Needs: pip install scikit-learn numpy
"""
import json
import os
import subprocess
import sys
import tempfile
import warnings

try:
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score, roc_curve
except ImportError as e:  # pragma: no cover
    print(f"setup: {e}; run `pip install scikit-learn numpy`", file=sys.stderr)
    sys.exit(2)

# lbfgs stops once the largest gradient component of the mean loss is below tol=1e-4, which
# leaves coef off by about tol / curvature: 1e-3 relative on these cases, more for features of
# small variance or another SciPy release. The strict gate is the comparison with the tight fit.
ATOL = 5e-3
RTOL = 5e-3
TIGHT_RTOL = 1e-6


def close(a, b, atol, rtol):
    return abs(a - b) <= atol + rtol * max(abs(a), abs(b))


def load(argv):
    if len(argv) > 1:
        with open(argv[1]) as f:
            return json.load(f)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "mia.json")
        cmd = ["cargo", "run", "--quiet", "--release", "--example", "mia_features", "--", out]
        r = subprocess.run(cmd, cwd=root)
        if r.returncode != 0:
            print(f"setup: {' '.join(cmd)} failed ({r.returncode})", file=sys.stderr)
            sys.exit(2)
        with open(out) as f:
            return json.load(f)


def tight_fit(X, y, c):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(C=c, tol=1e-12, max_iter=100000).fit(X, y)


def check_ranking(case):
    """ROC AUC and TPR at 1 % FPR of "lower loss => member" on all the samples."""
    name, rust = case["name"], case["rust"]
    m = np.asarray(case["members"], dtype=np.float64)
    o = np.asarray(case["nonmembers"], dtype=np.float64)
    y = np.r_[np.ones(len(m)), np.zeros(len(o))]
    score = -np.r_[m, o]
    failures = 0
    auc = roc_auc_score(y, score)
    if not close(auc, rust["auc"], 1e-12, 1e-12):
        print(f"FAIL {name}: ROC AUC rust {rust['auc']} vs sklearn {auc}")
        failures += 1
    fpr, tpr, _ = roc_curve(y, score, drop_intermediate=False)
    want = float(tpr[fpr <= 0.01 + 1e-12].max()) if len(o) >= 100 else None
    got = rust["tpr_at_1pct_fpr"]
    if (want is None) != (got is None) or (want is not None and not close(got, want, 1e-12, 0)):
        print(f"FAIL {name}: TPR at 1 % FPR rust {got} vs sklearn {want}")
        failures += 1
    return failures


def check_log_loss(case, X, y):
    """The log-loss attack: tight sklearn fits on ln(x + eps), rounded to f32 as Rust does."""
    log = case["rust"]["log_loss"]
    if log is None:
        return 0
    Z = np.log(X + log["epsilon"]).astype(np.float32).astype(np.float64)
    accs = []
    for split in case["splits"]:
        tr, te = np.asarray(split["train"]), np.asarray(split["test"])
        accs.append(tight_fit(Z[tr], y[tr], case["c"]).score(Z[te], y[te]))
    if not close(float(np.mean(accs)), log["accuracy_mean"], 1e-12, 0):
        print(f"FAIL {case['name']}: log-loss attack rust {log['accuracy_mean']} vs sklearn {np.mean(accs)}")
        return 1
    return 0


def main(argv):
    data = load(argv)
    failures = 0
    worst = {"coef_default": 0.0, "coef_tight": 0.0}
    for case in data["cases"]:
        name = case["name"]
        X = np.asarray(case["features"], dtype=np.float64).reshape(-1, 1)
        y = np.asarray(case["labels"], dtype=np.int64)
        rust = case["rust"]
        accs = []
        for k, split in enumerate(case["splits"]):
            tr = np.asarray(split["train"])
            te = np.asarray(split["test"])
            # Stratification: class proportions of the test part match the whole.
            share = y[te].mean()
            if abs(share - y.mean()) > 1.0 / len(te) + 1e-12:
                print(f"FAIL {name} split {k}: test part has {share:.3f} members")
                failures += 1
            if set(tr) & set(te):
                print(f"FAIL {name} split {k}: train and test overlap")
                failures += 1
            default = LogisticRegression(C=case["c"]).fit(X[tr], y[tr])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                tight = LogisticRegression(C=case["c"], tol=1e-12, max_iter=100000).fit(X[tr], y[tr])
            rc, ri = rust["coef"][k], rust["intercept"][k]
            for label, fit, atol, rtol in (
                ("default", default, ATOL, RTOL),
                ("tight", tight, 0.0, TIGHT_RTOL),
            ):
                sc, si = float(fit.coef_[0, 0]), float(fit.intercept_[0])
                err = max(abs(rc - sc), abs(ri - si)) / max(1.0, abs(sc), abs(si))
                worst["coef_" + label] = max(worst["coef_" + label], err)
                if not (close(rc, sc, atol, rtol) and close(ri, si, atol, rtol)):
                    print(
                        f"FAIL {name} split {k} vs sklearn {label}: "
                        f"rust coef {rc:.9g} intercept {ri:.9g}, "
                        f"sklearn coef {sc:.9g} intercept {si:.9g}"
                    )
                    failures += 1
            acc_rust = rust["split_accuracy"][k]
            acc_tight = tight.score(X[te], y[te])
            if acc_rust != acc_tight:
                print(f"FAIL {name} split {k}: accuracy rust {acc_rust} vs sklearn (tight) {acc_tight}")
                failures += 1
            # Samples whose side of the boundary legitimately depends on how far lbfgs went.
            d_default = default.decision_function(X[te])
            d_tight = tight.decision_function(X[te])
            ambiguous = int(np.sum(np.sign(d_default) != np.sign(d_tight)))
            acc_default = default.score(X[te], y[te])
            if abs(acc_rust - acc_default) * len(te) > ambiguous + 1e-9:
                print(
                    f"FAIL {name} split {k}: accuracy rust {acc_rust} vs sklearn (default) "
                    f"{acc_default} with only {ambiguous} ambiguous samples"
                )
                failures += 1
            accs.append(acc_tight)
        mean, std = float(np.mean(accs)), float(np.std(accs))
        if not (close(mean, rust["accuracy_mean"], 1e-12, 0) and close(std, rust["accuracy_std"], 1e-12, 0)):
            print(f"FAIL {name}: mean/std rust {rust['accuracy_mean']}/{rust['accuracy_std']} vs {mean}/{std}")
            failures += 1
        failures += check_ranking(case)
        failures += check_log_loss(case, X, y)
        log = rust["log_loss"]
        print(
            f"{name:>18}: {len(case['splits'])} splits, n/class {len(y) // 2:>5}, MIA {mean:.4f} ± {std:.4f}, "
            f"log-loss MIA {'-' if log is None else format(log['accuracy_mean'], '.4f')}, "
            f"AUC {rust['auc']:.4f}, TPR@1% {'-' if rust['tpr_at_1pct_fpr'] is None else format(rust['tpr_at_1pct_fpr'], '.4f')}"
        )
    print(
        f"largest relative coef/intercept difference: vs sklearn default {worst['coef_default']:.2e}, "
        f"vs tightly converged sklearn {worst['coef_tight']:.2e}"
    )
    if failures:
        print(f"{failures} mismatches")
        return 1
    print("OK: Rust logistic regression, MIA, log-loss attack, ROC AUC and TPR agree with scikit-learn")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
