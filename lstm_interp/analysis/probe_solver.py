"""The fit behind :func:`~lstm_interp.analysis.fit_probe`: an elastic net on standardised units, logistic for a
yes/no feature (class-balanced), least squares for a number.

The objective and why these steps are used rather than ``LogisticRegression(solver="saga")`` are in
:mod:`lstm_interp.analysis.probe`'s docstring (``benchmarks/bench_probe.py`` measures them side by side): a
continuous feature is fitted by scikit-learn's ``ElasticNet`` (coordinate descent on the precomputed Gram matrix); a
binary one by proximal Newton steps, as glmnet does, each a weighted ``ElasticNet`` fit of the logistic loss's
quadratic expansion, then a backtracking line search on the true objective.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["SOLVERS", "fit_elastic_net", "fit_targets", "standardize"]

_NEWTON_STEPS, _NEWTON_TOL = 25, 1e-5  # stop when a step lowers the objective by less than this share
_CD_TOL, _CD_MAX_ITER = 1e-4, 10_000
_WEIGHT_FLOOR = 1e-5  # glmnet's floor on p(1-p): a confident row keeps a little weight
_CHUNK = 8192

SOLVERS = {
    "auc": f"proximal Newton (IRLS, tol {_NEWTON_TOL:g}) with sklearn ElasticNet(precompute=True, tol={_CD_TOL:g})",
    "r2": f"sklearn ElasticNet(precompute=True, tol={_CD_TOL:g})",
}


def standardize(x: np.ndarray, n_train: int) -> np.ndarray:
    """``x`` standardised in place per column with the first ``n_train`` rows' mean and deviation."""
    total, squares = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for i in range(0, n_train, _CHUNK):  # float64 sums of float32 chunks: no float64 copy of the whole block
        chunk = x[i : min(i + _CHUNK, n_train)].astype(np.float64)
        total += chunk.sum(axis=0)
        squares += (chunk * chunk).sum(axis=0)
    mean = total / n_train
    deviation = np.sqrt(np.maximum(squares / n_train - mean * mean, 0.0))
    deviation[deviation < 1e-6] = 1.0  # a unit constant on the training part stays 0 there: weight 0
    x -= mean.astype(np.float32)
    x /= deviation.astype(np.float32)
    return x


def fit_targets(values: np.ndarray, metric: str, n_train: int) -> np.ndarray:
    """Binary labels as they are; a continuous target standardised with the training part's mean and deviation,
    so that one ``alpha`` means the same for every feature (R² does not change)."""
    if metric == "auc":
        return values.astype(bool)
    train = values[:n_train]
    return ((values - train.mean()) / train.std()).astype(np.float32)


def fit_elastic_net(
    x: np.ndarray, y: np.ndarray, metric: str, alpha: float, l1_ratio: float
) -> tuple[np.ndarray, float]:
    """``(weights, intercept)`` of the elastic-net probe on ``x`` (N, K); see the module docstring."""
    from sklearn.exceptions import ConvergenceWarning  # scikit-learn is imported by the probes only
    from sklearn.linear_model import ElasticNet

    enet = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, precompute=True, tol=_CD_TOL, max_iter=_CD_MAX_ITER)
    if metric == "r2":
        enet.fit(x, y)
        return enet.coef_.astype(np.float64), float(enet.intercept_)
    target = y.astype(np.float64)
    positives = target.sum()
    # Both classes weigh half (class_weight="balanced"): the intercept starts at its optimum for w = 0, logit(1/2).
    balance = np.where(y, len(y) / (2 * positives), len(y) / (2 * (len(y) - positives)))
    w, b = np.zeros(x.shape[1]), 0.0

    def objective(w: np.ndarray, b: float) -> float:
        eta = (x @ w.astype(np.float32)).astype(np.float64) + b
        penalty = l1_ratio * np.abs(w).sum() + (1 - l1_ratio) / 2 * (w @ w)
        return float(np.mean(balance * (np.logaddexp(0.0, eta) - target * eta))) + alpha * penalty

    loss = objective(w, b)
    enet.set_params(warm_start=True)
    for _ in range(_NEWTON_STEPS):
        eta = (x @ w.astype(np.float32)).astype(np.float64) + b
        p = np.exp(-np.logaddexp(0.0, -eta))
        curvature = np.maximum(p * (1 - p), _WEIGHT_FLOOR)
        # The quadratic expansion of the mean weighted logistic loss is (1/2n) sum weight * (working - eta')²;
        # ElasticNet rescales sample weights to sum to n, hence alpha * n / sum(weight) for the same penalty.
        weight = balance * curvature
        working = eta + (target - p) / curvature
        enet.set_params(alpha=alpha * len(target) / weight.sum())
        enet.coef_ = w.astype(np.float32)
        with warnings.catch_warnings():  # an inexact step is fine: the line search below only accepts descent
            warnings.simplefilter("ignore", ConvergenceWarning)
            enet.fit(x, working.astype(np.float32), sample_weight=weight)
        new_w, new_b, step = enet.coef_.astype(np.float64), float(enet.intercept_), 1.0
        while (trial := objective(w + step * (new_w - w), b + step * (new_b - b))) > loss and step > 1e-3:
            step /= 2
        if trial > loss:
            break  # no descent left at float precision: the optimum
        w, b, gain, loss = w + step * (new_w - w), b + step * (new_b - b), loss - trial, trial
        if gain <= _NEWTON_TOL * loss:
            break
    return w, b
