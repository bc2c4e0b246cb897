"""What a unit does to the model's output: the characters its hidden state pushes up and down through the readout
weights, and the change in loss when it is zeroed.

**Readout** (:func:`readout_effects`). The head is one linear layer on the last layer's hidden state,
``logits = W h + b`` (``CharLSTM.head``), so unit ``k`` of the last layer adds ``h[k] * W[c, k]`` to the logit of
character ``c``. A positive ``h[k]`` (blue in every picture) raises the characters with the largest ``W[c, k]`` and
lowers those with the smallest, relative to the others (softmax ignores a shift common to every logit); a negative
one does the reverse. Only last-layer units reach the head directly; for the others this is ``None``.

**Ablation** (:func:`ablation_effects`). The unit's state is set to zero at every step (``Ablate`` of ``cell`` for an
LSTM, ``hidden`` for a GRU or RNN) through :func:`~lstm_interp.run_with_interventions`, and the loss of predicting
each next character is compared with the plain run: ``delta[t] = -log p_ablated(x[t+1]) + log p(x[t+1])``, in nats.
The mean over the sample is the unit's overall effect; grouped by the next character, the characters it helps most
to predict (``hurt``: their loss rises most without it) and those it hinders (``helped``). Zeroing an LSTM's cell
for all steps also zeroes its hidden state (``h = o * tanh(0)``), so the unit's whole output is removed.

Cost: one run of the model over the sample per unit, units one after another (the interventions library takes one
set of interventions per run; a batch of units would need its support). The library's zero ablations keep the
fused kernels, so each costs about one plain forward pass of the sample: for the 2 x 512 ``novel`` model and 1,000
characters, 0.47 s per unit on one thread of the shared 2-core box under load (``benchmarks/bench_atlas.py``), 8
minutes for its 1,024 units.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from lstm_interp.interventions import Ablate, run_with_interventions
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.tracing import state_quantity, trace

__all__ = ["MIN_CHAR_COUNT", "ablation_effects", "readout_effects"]

MIN_CHAR_COUNT = 3
"""A next character must occur this often in the sample to be listed as hurt or helped (one occurrence is noise)."""

Log = Callable[[str], None]


def readout_effects(model: CharLSTM, top: int = 5) -> list[dict[str, Any]]:
    """Per unit of the last layer, the ``top`` characters whose logits its hidden state raises and lowers most.

    Returns:
        One ``{"raised": [{"char", "weight"}], "lowered": [...]}`` per unit, in unit order, ``weight`` being
        ``W[c, k]`` of the head (strongest first).

    Raises:
        ValueError: a model without a vocabulary, or ``top`` below 1.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"`top` must be a positive integer, got {top!r}")
    chars = model._require_vocab().chars
    weight = model.head.weight.detach().float().cpu()  # (V, H)
    top = min(top, weight.shape[0])
    raised = weight.topk(top, dim=0)  # (top, H)
    lowered = (-weight).topk(top, dim=0)
    effects = []
    for unit in range(weight.shape[1]):
        effects.append({
            "raised": [{"char": chars[int(c)], "weight": float(w)}
                       for w, c in zip(raised.values[:, unit], raised.indices[:, unit], strict=True)],
            "lowered": [{"char": chars[int(c)], "weight": -float(w)}
                        for w, c in zip(lowered.values[:, unit], lowered.indices[:, unit], strict=True)],
        })  # fmt: skip
    return effects


def ablation_effects(
    model: CharLSTM,
    ids: Tensor,
    layers: Sequence[str],
    *,
    units: Sequence[int] | None = None,
    top: int = 5,
    min_count: int = MIN_CHAR_COUNT,
    log: Log | None = None,
) -> dict[tuple[str, int], dict[str, Any]]:
    """Zero each unit of ``layers`` in turn over the text ``ids`` and measure the change in loss.

    Args:
        model: the network.
        ids: (M,) the sample's character ids, ``M >= 2``.
        layers: the layers whose units are ablated (``"layers.1"``, ...).
        units: the units of each layer to ablate, in turn (default every unit): a few chosen units cost a few runs.
        top: characters listed as most hurt and most helped.
        min_count: least occurrences of a next character in the sample for it to be listed.
        log: called with a progress line every 64 units.

    Returns:
        ``(layer, unit)`` -> ``{"delta_loss": mean nats, "hurt": [{"char", "delta", "count"}], "helped": [...]}``.

    Raises:
        ValueError: fewer than 2 characters, an unknown layer, or a unit outside the layers.
    """
    ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
    if len(ids) < 2:
        raise ValueError(f"the ablation sample needs at least 2 characters (one prediction), got {len(ids)}")
    known = [f"layers.{i}" for i in range(model.config.num_layers)]
    unknown = [layer for layer in layers if layer not in known]
    if unknown:
        raise ValueError(f"unknown layers {unknown}; the model's layers are {known}")
    size = model.config.hidden_size
    chosen = list(range(size)) if units is None else list(units)
    outside = [u for u in chosen if isinstance(u, bool) or not isinstance(u, int) or not 0 <= u < size]
    if outside:
        raise ValueError(f"`units` must be unit numbers in 0..{size - 1}, got {outside}")
    chars = model._require_vocab().chars
    quantity = state_quantity(model.config.cell)
    nexts = ids[1:]
    base = _losses(trace(model, ids, names_filter="log_probs"), nexts)
    counts = torch.bincount(nexts, minlength=len(chars)).double()
    listed = counts >= min_count
    say = log or (lambda line: None)
    results: dict[tuple[str, int], dict[str, Any]] = {}
    done, total = 0, len(layers) * len(chosen)
    for layer in layers:
        for unit in chosen:
            ablated = run_with_interventions(
                model, ids, [Ablate(f"{layer}.{quantity}", [unit])], names_filter="log_probs"
            )
            delta = (_losses(ablated, nexts) - base).double()  # (M - 1,) nats
            per_char = torch.bincount(nexts, weights=delta, minlength=len(chars)) / counts.clamp(min=1)
            results[layer, unit] = {
                "delta_loss": float(delta.mean()),
                "hurt": _chars(per_char, counts, listed, chars, top, largest=True),
                "helped": _chars(per_char, counts, listed, chars, top, largest=False),
            }
            done += 1
            if done % 64 == 0 or done == total:
                say(f"ablated {done:,} of {total:,} units over {len(ids):,} characters")
    return results


def _losses(tr: Any, nexts: Tensor) -> Tensor:
    """(M - 1,) float32 ``-log p(x[t+1])`` of a trace holding ``log_probs``."""
    return -tr["log_probs"][:-1].float().gather(1, nexts[:, None]).squeeze(1)


def _chars(
    per_char: Tensor, counts: Tensor, listed: Tensor, chars: str, top: int, *, largest: bool
) -> list[dict[str, Any]]:
    """The ``top`` listed characters with the largest (or most negative) mean change, only those of that sign."""
    score = torch.where(listed, per_char if largest else -per_char, float("-inf"))
    values, order = score.topk(min(top, len(score)))
    return [
        {"char": chars[int(c)], "delta": float(per_char[c]), "count": int(counts[c])}
        for v, c in zip(values, order, strict=True)
        if v > 0
    ]
