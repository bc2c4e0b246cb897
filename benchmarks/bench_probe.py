"""Sparse probes (``fit_probe``) on the pretrained models: fit time, the solvers measured against each other, and a
table of best single unit against probe for every registered feature that varies on the text.

Usage::

    python benchmarks/bench_probe.py [--chars 100000] [--table-rows 20000] [--part fit solvers table]

Everything runs on one core: one torch thread, and BLAS limited to one thread (``threadpoolctl``, which
scikit-learn brings).

- **fit:** ``--chars`` characters of the held-out part of War and Peace (the bundled corpus's last 10 %, in the
  model's vocabulary) traced by the pretrained ``novel`` model (2 x 512 cell states = 1,024 units), then
  ``fit_probe`` of ``inside_quotes`` (binary) and ``position_in_line`` (continuous) on every position
  (``max_rows=chars``) and at the default ``max_rows`` (50,000: every 2nd position): trace time and fit time side by
  side. A fit is the whole probe: the full fit, the refits of the curve, the control task.
- **solvers:** on the same rows (``inside_quotes``, all positions, the first 80 % to fit), one elastic-net logistic
  fit (``alpha=0.01``, ``l1_ratio=0.5``, classes balanced: the same objective) by this package's proximal Newton
  steps, by ``LogisticRegression(solver="saga", tol=1e-3, max_iter=100)`` and by
  ``SGDClassifier(penalty="elasticnet", tol=1e-3, max_iter=100)``: time, epochs, the objective reached, non-zero
  weights, held-out AUC.
- **table:** ``--chars`` characters of the held-out part of each pretrained model's corpus (War and Peace for
  ``novel``, the Linux kernel sources for ``code``), probes at ``max_rows=--table-rows`` (20,000: every 8th
  position of 100,000) for every registered feature that varies in both the training part and the held-out tail.
"""

from __future__ import annotations

import argparse
import lzma
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
from threadpoolctl import threadpool_limits

from lstm_interp import load_pretrained, trace
from lstm_interp.analysis import fit_probe, probe_rows
from lstm_interp.analysis.probe import DEFAULT_ALPHA, DEFAULT_L1_RATIO, DEFAULT_MAX_ROWS, _fit
from lstm_interp.features import FEATURES

REPO = Path(__file__).resolve().parents[1]
WAR_AND_PEACE = REPO / "lstm_interp" / "assets" / "war_and_peace.txt.xz"
LINUX = REPO.parent / "shared" / "data" / "linux_kernel.txt"


def heldout_text(raw: str, chars: int, vocab: str) -> str:
    """The first ``chars`` characters of the last 10 % of ``raw`` (the models' test split), in ``vocab``."""
    return "".join(c for c in raw[int(len(raw) * 0.9) :] if c in vocab)[:chars]


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def objective(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> float:
    """The mean class-balanced logistic loss plus the elastic-net penalty every solver below minimises."""
    eta = (x @ w.astype(np.float32)).astype(np.float64) + b
    balance = np.where(y, len(y) / (2 * y.sum()), len(y) / (2 * (~y).sum()))
    penalty = DEFAULT_L1_RATIO * np.abs(w).sum() + (1 - DEFAULT_L1_RATIO) / 2 * (w @ w)
    return float(np.mean(balance * (np.logaddexp(0, eta) - y * eta)) + DEFAULT_ALPHA * penalty)


def part_fit(tr, chars: int) -> None:  # type: ignore[no-untyped-def]
    print(f"\n## fit: novel, {chars:,} characters, {tr.num_layers} x {tr['layers.0.cell'].shape[1]} cell states")
    print(f"{'feature':18s} {'max_rows':>9s} {'rows':>7s} {'fit s':>7s} {'score':>7s} {'units':>6s} {'needed':>6s}")
    for feature in ("inside_quotes", "position_in_line"):
        for max_rows in (chars, DEFAULT_MAX_ROWS):
            probe, seconds = timed(lambda: fit_probe(tr, feature, max_rows=max_rows))  # noqa: B023
            rows = probe.num_train + probe.num_heldout
            print(f"{feature:18s} {max_rows:9,d} {rows:7,d} {seconds:7.1f} {probe.score:7.4f} {len(probe.units):6d} "
                  f"{probe.units_needed!s:>6s}")  # fmt: skip


def part_solvers(tr, chars: int) -> None:  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.metrics import roc_auc_score

    rows = probe_rows(tr, "cell", max_rows=chars, with_text=True)
    y = FEATURES["inside_quotes"](rows.text)[rows.positions]
    n_train = len(y) - round(0.2 * len(y))
    x = rows.x
    mean, deviation = x[:n_train].mean(0), x[:n_train].std(0)
    deviation[deviation < 1e-6] = 1
    x = (x - mean) / deviation
    train, test = x[:n_train], x[n_train:]
    print(f"\n## solvers: inside_quotes, {n_train:,} training rows x {x.shape[1]:,} units, alpha {DEFAULT_ALPHA}, "
          f"l1_ratio {DEFAULT_L1_RATIO}")  # fmt: skip
    print(f"{'solver':52s} {'time s':>7s} {'epochs':>6s} {'converged':>9s} {'objective':>10s} {'nonzero':>7s} "
          f"{'AUC':>7s}")  # fmt: skip
    (w, b), seconds = timed(lambda: _fit(train, y[:n_train], "auc", DEFAULT_ALPHA, DEFAULT_L1_RATIO))
    results = [("proximal Newton + ElasticNet (lstm_interp)", seconds, "-", "yes", w, b)]
    saga = LogisticRegression(C=1 / (n_train * DEFAULT_ALPHA), l1_ratio=DEFAULT_L1_RATIO, solver="saga", tol=1e-3,
                              max_iter=100, class_weight="balanced", random_state=0)  # fmt: skip
    sgd = SGDClassifier(loss="log_loss", penalty="elasticnet", alpha=DEFAULT_ALPHA, l1_ratio=DEFAULT_L1_RATIO,
                        tol=1e-3, max_iter=100, class_weight="balanced", random_state=0)  # fmt: skip
    for label, model in (("LogisticRegression(saga, tol 1e-3, max_iter 100)", saga),
                         ("SGDClassifier(elasticnet, tol 1e-3, max_iter 100)", sgd)):  # fmt: skip
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _, seconds = timed(lambda: model.fit(train, y[:n_train]))  # noqa: B023
        converged = "no" if any("converge" in str(warning.message) for warning in caught) else "yes"
        epochs = str(int(np.max(model.n_iter_)))
        results.append((label, seconds, epochs, converged, model.coef_[0].astype(np.float64), model.intercept_[0]))
    for label, seconds, epochs, converged, w, b in results:
        auc = roc_auc_score(y[n_train:], test @ w.astype(np.float32) + b)
        print(f"{label:52s} {seconds:7.1f} {epochs:>6s} {converged:>9s} {objective(train, y[:n_train], w, b):10.6f} "
              f"{int((w != 0).sum()):7d} {auc:7.4f}")  # fmt: skip


def part_table(name: str, text: str, table_rows: int) -> None:
    model = load_pretrained(name)
    tr, seconds = timed(lambda: trace(model, text, names_filter="layers.*.cell"))
    print(f"\n## {name}: {len(text):,} characters of the held-out part (traced in {seconds:.0f} s); "
          f"max_rows {table_rows:,}")  # fmt: skip
    print("| feature | metric | probe | units | units needed | best single (unit) | control | selectivity | fit s |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = probe_rows(tr, "cell", max_rows=table_rows, with_text=True)
    for feature in FEATURES:
        try:
            probe, seconds = timed(lambda: fit_probe(rows, feature))  # noqa: B023
        except ValueError as err:  # constant on the text, or on one part of it
            print(f"| {feature} | skipped: {str(err)[:90]} |")
            continue
        layer, unit = probe.best_unit
        print(f"| {feature} | {probe.metric} | {probe.score:.3f} | {len(probe.units)} | {probe.units_needed} | "
              f"{probe.best_single:.3f} ({layer}:{unit}) | {probe.control_score:.3f} | {probe.selectivity:+.3f} | "
              f"{seconds:.1f} |")  # fmt: skip


def main() -> None:
    with threadpool_limits(1):  # numpy's and scikit-learn's BLAS: the measurements are of one core
        run()


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=100_000)
    parser.add_argument("--table-rows", type=int, default=20_000)
    parser.add_argument("--part", nargs="+", choices=["fit", "solvers", "table"], default=["fit", "solvers", "table"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, scikit-learn "
          f"{sklearn.__version__}; one thread; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    start = time.perf_counter()
    novel = load_pretrained("novel")
    with lzma.open(WAR_AND_PEACE, "rt", encoding="utf-8") as file:
        novel_text = heldout_text(file.read(), args.chars, novel.vocab.chars)
    tr = None
    if {"fit", "solvers"} & set(args.part):
        tr, seconds = timed(lambda: trace(novel, novel_text, names_filter="layers.*.cell"))
        print(f"trace: novel, {len(novel_text):,} characters, cell states of 2 layers: {seconds:.1f} s")
    if "fit" in args.part:
        part_fit(tr, len(novel_text))
    if "solvers" in args.part:
        part_solvers(tr, len(novel_text))
    del tr
    if "table" in args.part:
        part_table("novel", novel_text, args.table_rows)
        code = load_pretrained("code")
        part_table("code", heldout_text(LINUX.read_text(encoding="utf-8"), args.chars, code.vocab.chars),
                   args.table_rows)  # fmt: skip
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
