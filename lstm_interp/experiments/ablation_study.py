"""``ablation_study``: does the network *use* a unit? Ablate it and measure the loss where it should matter.

The paper shows cells that correlate with quotes, line position or brace depth; correlation does not say the model
relies on them. Following Lakretz et al. (2019), each unit is ablated (set to zero, or to its mean) while the model
reads a text, and the change in loss (nats per character) is measured at **target** positions (the characters it
should help predict: closing quotes, ``\\n``, ``}``, or where a feature is on) and **everywhere else**. Against
the same measure for at least 100 random units of the same layer, each tested unit gets its percentile, with a
bootstrap confidence interval over the target positions; the top-k units of a feature can also be ablated together,
against random sets of k units.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from lstm_interp.analysis.find_cells import find_cells
from lstm_interp.features.registry import FEATURES, compute_feature, get_feature
from lstm_interp.interventions import Ablate, run_with_interventions
from lstm_interp.interventions.intervention_rules import check_quantity, unit_ranges
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.tracing.quantities import state_quantity
from lstm_interp.tracing.trace import trace
from lstm_interp.vocab import VocabularyError

Log = Callable[[str], None]
UnitLike = tuple[str | int, int]


@dataclass
class UnitEffect:
    """The effect of ablating one unit (or a set of units) on the loss, in nats per character.

    Args:
        units: ``(layer, unit)`` pairs ablated together.
        target_delta: mean change of the loss at the target positions (positive: the model got worse there).
        other_delta: mean change everywhere else.
        target_delta_ci: 95% bootstrap interval of ``target_delta`` (target positions resampled).
        percentile: the share (0-100) of the random comparison ablations whose ``target_delta`` is below this one.
        percentile_ci: 95% bootstrap interval of ``percentile`` (the same resamples for every ablation).
    """

    units: list[tuple[str, int]]
    target_delta: float
    other_delta: float
    target_delta_ci: tuple[float, float]
    percentile: float
    percentile_ci: tuple[float, float]


@dataclass
class AblationStudy:
    """What :func:`ablation_study` measured; ``to_dict()`` is its JSON, ``to_markdown()`` its table."""

    name: str
    quantity: str
    value: str
    targets: str
    num_targets: int
    num_others: int
    baseline_target_loss: float
    baseline_other_loss: float
    units: list[UnitEffect]
    random_units: list[tuple[str, int]]
    random_target_deltas: list[float]
    random_other_deltas: list[float]
    together: UnitEffect | None = None
    together_feature: str | None = None
    random_set_target_deltas: list[float] = field(default_factory=list)
    together_label: str | None = None  # what the set ablated together is, as figures and tables name it

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))

    def to_markdown(self) -> str:
        lines = [
            f"Ablating {self.quantity} units ({self.value}) on {self.name}; targets: {self.targets} "
            f"({self.num_targets:,} positions, {self.num_others:,} others). Baseline loss: "
            f"{self.baseline_target_loss:.4f} nats at targets, {self.baseline_other_loss:.4f} elsewhere.",
            "",
            "| units | Δ loss at targets (95% CI) | Δ loss elsewhere | percentile among random (95% CI) |",
            "|---|---|---|---|",
        ]
        rows = [*self.units, *([self.together] if self.together is not None else [])]
        for effect in rows:
            units = ", ".join(f"{layer}:{unit}" for layer, unit in effect.units)
            lo, hi = effect.target_delta_ci
            plo, phi = effect.percentile_ci
            lines.append(
                f"| {units} | {effect.target_delta:+.4f} ({lo:+.4f}, {hi:+.4f}) | {effect.other_delta:+.4f} | "
                f"{effect.percentile:.1f} ({plo:.1f}, {phi:.1f}) |"
            )
        spread = np.asarray(self.random_target_deltas)
        lines.append("")
        lines.append(
            f"{len(spread)} random units of the same layer(s): Δ at targets median {np.median(spread):+.4f}, "
            f"95th percentile {np.percentile(spread, 95):+.4f}, max {spread.max():+.4f}."
        )
        return "\n".join(lines)


def ablation_study(
    model: CharLSTM,
    text: str,
    units: Sequence[UnitLike],
    targets: str | Sequence[bool] | np.ndarray,
    *,
    quantity: str | None = None,
    value: str = "zero",
    reference: str | None = None,
    n_random: int = 100,
    together_feature: str | None = None,
    k: int = 5,
    n_random_sets: int = 20,
    together_units: Sequence[UnitLike] | None = None,
    together_label: str | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    log: Log | None = None,
) -> AblationStudy:
    """Ablate each of ``units`` and random units of the same layers; compare the change in loss at ``targets``.

    Args:
        model: the network.
        text: the text the loss is measured on (every character in the vocabulary).
        units: ``(layer, unit)`` pairs; a layer is ``"layers.1"`` or its index ``1``.
        targets: which predicted characters count: a string of characters (``'"'``, ``"\\n"``, ``"}"``: positions
            whose next character is one of them), a registered feature's name prefixed with ``feature:``
            (``"feature:inside_quotes"``: where it is non-zero), or a boolean mask over the text's characters
            (position ``j`` is the prediction of ``text[j]``; position 0 has none).
        quantity: what is ablated: ``"cell"``, ``"hidden"``, a gate; default the state (cell for an LSTM, hidden
            for a GRU or RNN).
        value: ``"zero"`` or ``"mean"`` (the mean over ``reference``, default ``text``).
        n_random: random units of the same layer(s) to compare with (fewer if the layers have fewer others).
        together_feature: also ablate together the top ``k`` units (by :func:`~lstm_interp.find_cells` on
            ``text``, same quantity) of this feature, against ``n_random_sets`` random sets of ``k`` units.
        together_units: ablate these ``(layer, unit)`` pairs together instead (a probe's top units, say), against
            ``n_random_sets`` random sets of as many units of their layers; ``together_feature``, if given, only
            names them in the result.
        together_label: how figures and tables name the set ablated together (default: "top k of FEATURE"
            for ``together_feature``'s find_cells units, "the k given units" for ``together_units``).
        n_bootstrap: bootstrap resamples of the target positions.
        seed: for the random units and the bootstrap.
        log: called with progress lines (``print``, say).

    Returns:
        An :class:`AblationStudy`.

    Raises:
        ValueError: units or layers the model lacks, no target position (or no other), an unknown feature,
            ``value``/``quantity``/sizes out of range, a ``reference`` an :class:`~lstm_interp.interventions.Ablate`
            refuses, text outside the vocabulary, every unit of the layers tested (no random unit is left to
            compare with), ``together_units`` the model lacks or naming a unit twice; all before any ablation runs.
        TypeError: ``model``, ``units``, ``targets``, ``seed`` or ``log`` of the wrong type.

    Example::

        >>> study = ablation_study(novel, chapter, [("layers.1", 254)], '"', together_feature="inside_quotes")
        ... # doctest: +SKIP
        >>> print(study.to_markdown())  # doctest: +SKIP
    """
    if not isinstance(model, CharLSTM):
        raise TypeError(f"`model` must be a CharLSTM, got {type(model).__name__}")
    if log is not None and not callable(log):
        raise TypeError(f"`log` must be a callable taking a line (print, say) or None, got {type(log).__name__}")
    say = log or (lambda line: None)
    cfg = model.config
    quantity = quantity or state_quantity(cfg.cell)
    check_quantity(quantity, cfg.cell, "`quantity`")
    if value not in ("zero", "mean"):
        raise ValueError(f"`value` must be 'zero' or 'mean', got {value!r}")
    for name, number, low in (("n_random", n_random, 1), ("k", k, 1), ("n_random_sets", n_random_sets, 1),
                              ("n_bootstrap", n_bootstrap, 10)):  # fmt: skip
        if isinstance(number, bool) or not isinstance(number, int) or number < low:
            raise ValueError(f"`{name}` must be an integer >= {low}, got {number!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`seed` must be an integer, got {type(seed).__name__} {seed!r}")
    if not isinstance(text, str) or len(text) < 2:
        raise ValueError(f"`text` must be a string of at least 2 characters, got {text!r:.40}")
    try:
        model._require_vocab().encode(text)  # characters outside the vocabulary fail here, before any run
    except VocabularyError as err:
        # Every character's loss is measured, so none can be skipped: the way out is another text.
        raise err.with_hint("Use only characters the model knows in `text`.") from None
    tested = _units(units, cfg.num_layers, cfg.hidden_size)
    mask, described = _target_mask(targets, text)
    if together_feature is not None:
        get_feature(together_feature)
    explicit = None if together_units is None else _units(together_units, cfg.num_layers, cfg.hidden_size)
    if explicit is not None and len(set(explicit)) != len(explicit):
        raise ValueError(f"`together_units` names a unit twice: {explicit}")
    reference_text = reference if reference is not None else text
    layers = sorted({layer for layer, _ in tested})
    # The intervention of the first unit, built now: a `reference` Ablate refuses fails before any run.
    Ablate(f"{layers[0]}.{quantity}", [0], value=value, reference=reference_text if value == "mean" else reference)
    if len(set(tested)) >= len(layers) * cfg.hidden_size:
        raise ValueError(
            f"`units` names every unit of {', '.join(layers)} ({len(tested)}), so no random unit of the same "
            "layer(s) is left to compare with; leave some units out, or ablate them together with "
            "`together_feature`"
        )
    if together_feature is not None and k > len(layers) * cfg.hidden_size:
        raise ValueError(f"`k` ({k}) is more units than {', '.join(layers)} have ({len(layers) * cfg.hidden_size})")

    base = trace(model, text, names_filter="log_probs")
    ids = base.tokens[1:]
    base_loss = -base["log_probs"][:-1].gather(1, ids[:, None])[:, 0].double().numpy()  # (T-1,): loss of text[1:]
    target, other = mask[1:], ~mask[1:]

    def deltas(ablated: list[tuple[str, int]]) -> np.ndarray:
        by_layer: dict[str, list[int]] = {}
        for layer, unit in ablated:
            by_layer.setdefault(layer, []).append(unit)
        interventions = [
            Ablate(f"{layer}.{quantity}", units_, value=value, reference=reference_text if value == "mean" else None)
            for layer, units_ in by_layer.items()
        ]
        tr = run_with_interventions(model, text, interventions, names_filter="log_probs")
        loss = -tr["log_probs"][:-1].gather(1, ids[:, None])[:, 0].double().numpy()
        return loss - base_loss

    rng = random.Random(seed)
    pool = [(layer, u) for layer in layers for u in range(cfg.hidden_size) if (layer, u) not in tested]
    chosen_random = rng.sample(pool, min(n_random, len(pool)))
    say(f"ablating {len(tested)} unit(s) and {len(chosen_random)} random units of {', '.join(layers)}")
    tested_deltas = [deltas([u]) for u in tested]
    random_deltas = np.stack([deltas([u]) for u in chosen_random])  # (R, T-1)
    weights = _bootstrap_weights(int(target.sum()), n_bootstrap, seed)  # (B, n_targets)

    effects = [
        _effect([u], d, random_deltas, target, other, weights) for u, d in zip(tested, tested_deltas, strict=True)
    ]
    together = None
    set_deltas: list[float] = []
    if together_feature is not None or explicit is not None:
        set_layers = layers
        if explicit is not None:  # given units, against random sets drawn from their own layers
            top, set_layers = explicit, sorted({layer for layer, _ in explicit})
        else:
            full = trace(model, text, names_filter=[f"{layer}.{quantity}" for layer in layers])
            table = find_cells(full, together_feature, quantity, top=k, layers=layers)
            top = [(row.layer, row.unit) for row in table.rows]
        together_label = together_label or _together_label(len(top), together_feature, explicit is not None)
        say(f"ablating {together_label} together, and {n_random_sets} random sets")
        sets = [rng.sample([(layer, u) for layer in set_layers for u in range(cfg.hidden_size)], len(top))
                for _ in range(n_random_sets)]  # fmt: skip
        set_matrix = np.stack([deltas(s) for s in sets])
        together = _effect(top, deltas(top), set_matrix, target, other, weights)
        set_deltas = set_matrix[:, target].mean(1).tolist()
    return AblationStudy(
        name=f"{len(text):,} characters",
        quantity=quantity,
        value=value,
        targets=described,
        num_targets=int(target.sum()),
        num_others=int(other.sum()),
        baseline_target_loss=float(base_loss[target].mean()),
        baseline_other_loss=float(base_loss[other].mean()),
        units=effects,
        random_units=chosen_random,
        random_target_deltas=random_deltas[:, target].mean(1).tolist(),
        random_other_deltas=random_deltas[:, other].mean(1).tolist(),
        together=together,
        together_feature=together_feature,
        random_set_target_deltas=set_deltas,
        together_label=None if together is None else together_label,
    )


def _together_label(count: int, feature: str | None, given: bool) -> str:
    return f"the {count} given units" if given else f"top {count} of {feature}"


def _units(units: object, num_layers: int, hidden_size: int) -> list[tuple[str, int]]:
    """``units`` as ``(layers.<i>, unit)`` pairs, once each names a layer and a unit the model has."""
    expected = "a list of (layer, unit) pairs, such as [('layers.1', 254)] or [(1, 254)]"
    if isinstance(units, (str, bytes)) or not isinstance(units, Sequence):
        raise TypeError(f"`units` must be {expected}, got {type(units).__name__} {units!r:.100}")
    bad = [u for u in units if isinstance(u, (str, bytes)) or not isinstance(u, Sequence) or len(u) != 2]
    if bad:
        raise TypeError(f"`units` must be {expected}, got {bad[0]!r:.100}")
    if not units:
        raise ValueError("`units` must name at least one (layer, unit)")
    layers = {f"layers.{i}" for i in range(num_layers)}
    pairs: list[tuple[str, int]] = []
    out_of_range: dict[str, list[object]] = {}
    for layer, unit in units:
        name = f"layers.{layer}" if isinstance(layer, int) and not isinstance(layer, bool) else layer
        if not isinstance(name, str) or name not in layers:
            raise ValueError(f"layer {layer!r} is not one of the model's: layers.0 .. layers.{num_layers - 1}")
        if isinstance(unit, bool) or not isinstance(unit, int) or not 0 <= unit < hidden_size:
            out_of_range.setdefault(name, []).append(unit)
        pairs.append((name, unit))
    for name, bad_units in out_of_range.items():
        shown = (
            unit_ranges(bad_units)  # type: ignore[arg-type]
            if len(bad_units) > 10 and all(isinstance(u, int) for u in bad_units)
            else ", ".join(map(repr, bad_units))
        )
        raise ValueError(
            f"unit{'s' if len(bad_units) > 1 else ''} {shown} of {name}: the layer has units 0 .. {hidden_size - 1}"
        )
    return pairs


def _target_mask(targets: str | Sequence[bool] | np.ndarray, text: str) -> tuple[np.ndarray, str]:
    """(T,) bool over the characters predicted, and a description; position 0 is never a target."""
    if isinstance(targets, str) and targets.startswith("feature:"):
        name = targets.removeprefix("feature:")
        if name not in FEATURES:
            get_feature(name)  # raises, listing the known features
        mask = np.asarray(compute_feature(name, text)) != 0
        described = f"where {name} is on"
    elif isinstance(targets, str):
        if not targets:
            raise ValueError("`targets` must name at least one character, a 'feature:NAME' or a mask, got ''")
        mask = np.array([c in targets for c in text])
        described = "next character in " + repr(targets)
    else:
        mask = np.asarray(targets) if isinstance(targets, (Sequence, np.ndarray)) else None
        if mask is None or (mask.dtype != bool and mask.size):
            what = f"an array of {mask.dtype}" if mask is not None else f"{type(targets).__name__} {targets!r:.40}"
            raise TypeError(f"`targets` must be characters, 'feature:NAME' or a boolean mask over the text, got {what}")
        mask = mask.astype(bool)
        if mask.shape != (len(text),):
            raise ValueError(f"a `targets` mask must have one entry per character ({len(text)}), got {mask.shape}")
        described = "the given mask"
    mask = mask.copy()
    mask[0] = False
    if not mask.any() or mask[1:].all():
        raise ValueError(f"`targets` ({described}) leaves no target position or no other position in the text")
    return mask, described


def _bootstrap_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """(B, n) how often each target position is drawn in each resample, over n: a resampled mean is a dot product."""
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, n, (resamples, n), generator=generator)
    ones = torch.ones(resamples, n, dtype=torch.float64)
    counts = torch.zeros(resamples, n, dtype=torch.float64).scatter_add_(1, draws, ones)
    return (counts / n).numpy()


def _effect(
    units: list[tuple[str, int]],
    delta: np.ndarray,
    comparison: np.ndarray,
    target: np.ndarray,
    other: np.ndarray,
    weights: np.ndarray,
) -> UnitEffect:
    at_target, others_at_target = delta[target], comparison[:, target]
    mean = float(at_target.mean())
    resampled = weights @ at_target  # (B,)
    resampled_others = weights @ others_at_target.T  # (B, R)
    percentiles = 100.0 * (resampled_others < resampled[:, None]).mean(1)
    return UnitEffect(
        units=units,
        target_delta=mean,
        other_delta=float(delta[other].mean()),
        target_delta_ci=(float(np.percentile(resampled, 2.5)), float(np.percentile(resampled, 97.5))),
        percentile=float(100.0 * (others_at_target.mean(1) < mean).mean()),
        percentile_ci=(float(np.percentile(percentiles, 2.5)), float(np.percentile(percentiles, 97.5))),
    )


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
