"""The score kernels of :func:`~lstm_interp.find_cells`: ROC AUC and Pearson r of every column of a (T, H) layer.

Both are vectorised over units (no Python loop over them). Pearson: products of the centred activations (float64,
in chunks of time steps) with the centred feature. AUC: one sort per block of columns, on a thread pool. Each value
becomes an integer key in the floats' order whose lowest bit is replaced by the class, so the sorted keys give the
Mann–Whitney U directly from the positions of the class-1 keys, with no argsort; values held by both classes are
found next to each other in the sorted keys and their pairs counted 1/2. Giving up that lowest bit means float32
values within one unit in the last place (1.2e-7 relative) count as ties. float16 and bfloat16 traces need no sort:
with at most 65,536 distinct values, per-value counts give the exact AUC, about 3x faster.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

_BLOCK = 32  # columns per work item: (32, T) float32 keys of a 100k-character trace are 12.8 MB
_CHUNK = 8192  # time steps per chunk of the correlation: (8192, 512) float32 is 16 MB


def score_columns(x: Tensor, values: np.ndarray, metric: str, name: str) -> np.ndarray:
    """(H,) the AUC or Pearson r of every column of the (T, H) tensor ``x`` with the feature ``values``."""
    raw = pearson_columns(x, values) if metric == "pearson" else auc_columns(x, values)
    bad = np.flatnonzero(np.isnan(raw)).tolist()
    if bad:
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise ValueError(f"{name} has NaN or infinite values in units {bad[:10]}{more}; scores need finite activations")
    return raw


@np.errstate(invalid="ignore", divide="ignore", over="ignore")  # a non-finite unit becomes NaN, reported by the caller
def pearson_columns(x: Tensor, values: np.ndarray) -> np.ndarray:
    """(H,) Pearson r of each column of ``x`` (T, H) with ``values`` (T,): 0 if constant, NaN if not finite."""
    T, H = x.shape
    target = values - values.mean()
    low, high = np.full(H, np.inf), np.full(H, -np.inf)
    total, covariance, squares = np.zeros(H), np.zeros(H), np.zeros(H)
    # numpy reduces over rows across all columns at once (torch's dim-0 reductions are ~20x slower here), in
    # chunks of time steps so that no float64 copy of the whole layer is made.
    for i in range(0, T, _CHUNK):
        chunk = _numpy(x[i : i + _CHUNK])
        np.minimum(low, chunk.min(axis=0), out=low)
        np.maximum(high, chunk.max(axis=0), out=high)
        total += chunk.sum(axis=0)
    mean = total / T
    for i in range(0, T, _CHUNK):
        # float64 products of centred values: float32 sums of 8192 terms were off by 3e-6 on a perfect match.
        centred = _numpy(x[i : i + _CHUNK]) - mean
        covariance += target[i : i + _CHUNK] @ centred
        centred *= centred
        squares += centred.sum(axis=0)
    r = np.clip(covariance / np.sqrt(squares * (target @ target)), -1.0, 1.0)
    r[low == high] = 0.0  # exact, unlike a variance that rounds to 1e-17 instead of 0
    r[~(np.isfinite(low) & np.isfinite(high))] = np.nan
    return r


def _numpy(x: Tensor) -> np.ndarray:
    """``x`` as a float32 (or float64) numpy array; numpy converts float16 faster than torch does on the CPU."""
    if x.dtype == torch.float16:
        return x.numpy().astype(np.float32)
    return x.numpy() if x.dtype in (torch.float32, torch.float64) else x.float().numpy()


def auc_columns(x: Tensor, labels: np.ndarray) -> np.ndarray:
    """(H,) ROC AUC of each column of ``x`` (T, H) as a detector of ``labels`` (T,): NaN if not finite."""
    sixteen_bits = x.dtype in (torch.float16, torch.bfloat16)
    dtype = x.dtype if sixteen_bits else torch.float32
    # Rows of the transposed layer are contiguous columns: one blocked transpose beats a strided copy per block.
    columns = torch.empty(x.shape[::-1], dtype=dtype).copy_(x.T)
    columns += 0.0  # -0.0 becomes 0.0, so that the two tie
    int_type = torch.int16 if sixteen_bits else torch.int32
    bits = columns.view(int_type).numpy()
    limits = _float_keys(torch.tensor([-np.inf, np.inf], dtype=dtype).view(int_type).numpy())
    kernel = _auc_counts if sixteen_bits else _auc_sorted
    starts = range(0, bits.shape[0], _BLOCK)
    workers = max(1, min(len(starts), torch.get_num_threads(), os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:  # numpy's sorts and bincounts release the GIL
        return np.concatenate(list(pool.map(lambda i: kernel(bits[i : i + _BLOCK], labels, limits), starts)))


def _float_keys(bits: np.ndarray) -> np.ndarray:
    """Turn IEEE float bit patterns (int16 or int32), in place, into signed integers in the floats' order."""
    sign_shift = bits.dtype.itemsize * 8 - 1
    bits ^= (bits >> sign_shift) & np.array(np.iinfo(bits.dtype).max, dtype=bits.dtype)  # negatives: larger is lower
    return bits


def _auc_sorted(bits: np.ndarray, labels: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """(B,) ROC AUC of each row of float32 ``bits`` (B, T), as int32, for ``labels`` (T,); ties count 1/2.

    ``bits`` is overwritten; ``limits`` are the keys of -inf and +inf.
    """
    T = bits.shape[1]
    n1 = int(labels.sum())
    tagged = _float_keys(bits)
    tagged &= np.int32(-2)
    tagged |= labels.astype(np.int32)  # the class rides in the lowest bit; at equal value, 0s sort first
    tagged.sort(axis=1)
    # With 0s first at ties, the i-th 1 (0-based) at sorted position p is above exactly p - i zeros. The sum of
    # the positions is an integer product (exact, and 4x faster here than collecting them with flatnonzero).
    positions = np.einsum("ij,j->i", tagged & 1, np.arange(T, dtype=np.int64))
    u = positions - n1 * (n1 - 1) / 2
    # Pairs tied in value were all counted as wins; each such pair should count 1/2. A value held by both classes
    # shows as a run of its 0-tagged key followed by a run of its 1-tagged key: neighbours differing in bit 0 only.
    boundaries = (tagged[:, 1:] ^ tagged[:, :-1]) == 1
    if boundaries.any():
        u -= _tied_pairs(tagged, boundaries) / 2
    auc = u / (n1 * (T - n1))
    # Sorted, a row's extremes tell whether it holds an infinity or a NaN (their keys lie beyond the infinities').
    auc[(tagged[:, 0] <= limits[0]) | (tagged[:, -1] >= limits[1])] = np.nan
    return auc


def _tied_pairs(tagged: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    """(B,) per sorted row of class-tagged keys, the number of (class 0, class 1) pairs of equal value.

    ``boundaries[r, j]`` marks where row ``r``'s run of 0-tagged keys of a value ends (at ``j``) and its run of
    1-tagged keys begins; the two runs' lengths come from binary searches, so the cost grows with the number of
    shared values, not with the trace.
    """
    B, T = tagged.shape
    rows, ends = np.nonzero(boundaries)
    # Offsetting each row beyond the int32 range makes the whole block one sorted array for np.searchsorted.
    flat = (tagged.astype(np.int64) + (np.arange(B, dtype=np.int64) << 33)[:, None]).ravel()
    split = rows * T + ends + 1  # the first 1-tagged key of the value
    zeros_start = np.searchsorted(flat, flat[split - 1], side="left")
    ones_end = np.searchsorted(flat, flat[split], side="right")
    return np.bincount(rows, weights=(split - zeros_start) * (ones_end - split).astype(np.float64), minlength=B)


def _auc_counts(bits: np.ndarray, labels: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """(B,) exact ROC AUC of each row of 16-bit float ``bits`` (B, T), from per-value counts instead of a sort."""
    B, T = bits.shape
    keys = _float_keys(bits)
    bins = 1 << 16
    index = (keys.astype(np.int64) + (1 << 15)) + (np.arange(B, dtype=np.int64) * bins)[:, None]
    ones = np.bincount(index[:, labels].ravel(), minlength=B * bins).reshape(B, bins)
    zeros = np.bincount(index.ravel(), minlength=B * bins).reshape(B, bins) - ones
    zeros_below = np.cumsum(zeros, axis=1) - zeros
    n1 = int(labels.sum())
    auc = (ones * (zeros_below + zeros / 2)).sum(axis=1) / (n1 * (T - n1))
    auc[(keys.min(axis=1) <= limits[0]) | (keys.max(axis=1) >= limits[1])] = np.nan
    return auc
