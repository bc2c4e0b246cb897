"""The checks of the arguments every trace entry point takes: :func:`~lstm_interp.trace`,
:func:`~lstm_interp.trace_rnn` and :func:`~lstm_interp.run_with_interventions` call these, so that they refuse the
same values with the same messages, before anything runs.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence, Set

import numpy as np
import torch
from torch import Tensor

# The dtypes a trace stores its activations in (it always computes in float32).
STORAGE_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def check_dtype(dtype: object) -> torch.dtype:
    """``dtype`` once it is one of :data:`STORAGE_DTYPES`.

    Raises:
        ValueError: any other value (an integer dtype would truncate every gate to 0 or 1).
    """
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"`dtype` must be a floating dtype ({', '.join(map(str, STORAGE_DTYPES))}), got {dtype!r}")
    return dtype  # type: ignore[return-value]


def check_chunk_size(chunk_size: object) -> int:
    """``chunk_size`` once it is an integer >= 1.

    Raises:
        TypeError: not an integer. ValueError: below 1.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral):
        raise TypeError(f"`chunk_size` must be an integer >= 1, got {type(chunk_size).__name__} {chunk_size!r}")
    if chunk_size < 1:
        raise ValueError(f"`chunk_size` must be >= 1, got {chunk_size!r}")
    return int(chunk_size)


def check_names_filter(names_filter: object) -> None:
    """Raise unless ``names_filter`` is ``None``, a name or glob, a list of them or a predicate on the name.

    Raises:
        TypeError: anything else, naming it.
    """
    if names_filter is None or callable(names_filter) or isinstance(names_filter, str):
        return
    if isinstance(names_filter, (Sequence, Set)) and all(isinstance(p, str) for p in names_filter):
        return
    raise TypeError(
        "`names_filter` must be a name or glob, a list of them, a predicate on the name or None, got "
        f"{type(names_filter).__name__} {names_filter!r:.100}"
    )


def check_ids(ids: object, vocab_size: int) -> Tensor:
    """(T,) long CPU ids of ``ids`` (a tensor, array or list of integer character ids), each in ``[0, vocab_size)``.

    Raises:
        TypeError: not integer ids (floats would be truncated to other characters).
        ValueError: ids outside the vocabulary, naming them.
    """
    values = torch.as_tensor(ids) if isinstance(ids, (Tensor, np.ndarray, Sequence)) else None
    if values is None or values.dtype == torch.bool or values.dtype.is_floating_point or values.dtype.is_complex:
        what = f"a tensor of {values.dtype}" if values is not None else f"{type(ids).__name__} {ids!r:.100}"
        raise TypeError(f"`text` must be a string or a 1-D tensor of integer character ids, got {what}")
    tokens = values.to(torch.long).reshape(-1).cpu()
    bad = tokens[(tokens < 0) | (tokens >= vocab_size)]
    if len(bad):
        raise ValueError(f"`text` holds ids {bad[:10].tolist()} outside the model's vocabulary range [0, {vocab_size})")
    return tokens


def check_state(state: object, cell: str, num_layers: int, hidden_size: int) -> None:
    """Raise unless ``state`` is a trace's ``final_state`` for this architecture: one entry per layer, each a
    (1, 1, hidden_size) float tensor, an ``(h, c)`` pair of them for an LSTM.

    Raises:
        ValueError: anything else, saying what is expected.
    """
    shape = (1, 1, hidden_size)
    entry = f"an (h, c) pair of {shape} tensors" if cell == "lstm" else f"a {shape} tensor"
    ok = (
        isinstance(state, Sequence)
        and not isinstance(state, (str, bytes))
        and len(state) == num_layers
        and all(_layer_state_ok(s, cell, shape) for s in state)
    )
    if not ok:
        raise ValueError(
            f"`state` must be a list of {num_layers} entries, one per layer, each {entry} (a trace's `final_state`), "
            f"got {type(state).__name__} {state!r:.100}"
        )


def _layer_state_ok(entry: object, cell: str, shape: tuple[int, int, int]) -> bool:
    if cell == "lstm":
        if not (isinstance(entry, tuple) and len(entry) == 2):
            return False
        parts: tuple[object, ...] = entry
    else:
        parts = (entry,)
    return all(isinstance(p, Tensor) and p.is_floating_point() and tuple(p.shape) == shape for p in parts)
