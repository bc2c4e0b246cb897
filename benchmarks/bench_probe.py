"""Sparse probes (``fit_probe``) on the pretrained models: fit time, the solvers measured against each other, and a
table of best single unit against probe for every registered feature that varies on the text.

Usage::

    python benchmarks/bench_probe.py [--chars 100000] [--part fit solvers]

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

The table of single units against probes for every feature of each pretrained model is
``benchmarks/card_units.py`` (it puts it into the model cards).
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
from lstm_interp.analysis.probe import DEFAULT_ALPHA, DEFAULT_L1_RATIO, DEFAULT_MAX_ROWS
from lstm_interp.analysis.probe_solver import fit_elastic_net
from lstm_interp.features import FEATURES

REPO = Path(__file__).resolve().parents[1]
WAR_AND_PEACE = REPO / "lstm_interp" / "assets" / "war_and_peace.txt.xz"


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
    (w, b), seconds = timed(lambda: fit_elastic_net(train, y[:n_train], "auc", DEFAULT_ALPHA, DEFAULT_L1_RATIO))
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


def main() -> None:
    with threadpool_limits(1):  # numpy's and scikit-learn's BLAS: the measurements are of one core
        run()


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=100_000)
    parser.add_argument("--part", nargs="+", choices=["fit", "solvers"], default=["fit", "solvers"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, scikit-learn "
          f"{sklearn.__version__}; one thread; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    start = time.perf_counter()
    novel = load_pretrained("novel")
    with lzma.open(WAR_AND_PEACE, "rt", encoding="utf-8") as file:
        novel_text = heldout_text(file.read(), args.chars, novel.vocab.chars)
    tr, seconds = timed(lambda: trace(novel, novel_text, names_filter="layers.*.cell"))
    print(f"trace: novel, {len(novel_text):,} characters, cell states of 2 layers: {seconds:.1f} s")
    if "fit" in args.part:
        part_fit(tr, len(novel_text))
    if "solvers" in args.part:
        part_solvers(tr, len(novel_text))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
