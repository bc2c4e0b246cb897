"""``steer(model, prompt, interventions)``: what an intervention does to the text a model generates.

``n_samples`` pairs of samples are drawn after the same prompt, one of each pair with the interventions acting and
one without, sample ``i`` of both arms with the same seed (``seed + i``): the private generator of
:meth:`~lstm_interp.CharLSTM.generate` then draws the same random numbers in both, so the two texts differ only
where the intervention changed the model's next-character distribution. Over the sampled characters only (never the
prompt), each sample gives:

- ``quote_rate``: the number of ``"`` characters per sampled character (:func:`quote_rate`);
- ``mean_line_length``: the mean length of the complete lines that end in the sample (:func:`mean_line_length`);
- ``mean_<feature>``: for each feature asked for, the mean of its per-character values over the sampled positions,
  the feature being computed on ``prompt + sample`` so that it sees the context the model saw.

Each statistic reports the per-sample values of both arms, their means, the difference (with minus without) and a
95% paired bootstrap confidence interval of that difference: the sample pairs are resampled with replacement
(:data:`BOOTSTRAP_RESAMPLES` times, a fixed seed), so the CI is the same on every run of the same samples.

Example::

    >>> from lstm_interp.interventions import Clamp
    >>> clamp = Clamp("layers.1.cell", [254], 3.0, steps=slice(len(prompt), None))  # doctest: +SKIP
    >>> print(steer(novel, prompt, [clamp], n_samples=20, length=300).to_markdown())  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from lstm_interp.features import compute_feature, get_feature
from lstm_interp.interventions.generate_with_interventions import generate_with_interventions
from lstm_interp.interventions.intervention import Ablate, Clamp, Intervention, Patch, Scale, intervention_list
from lstm_interp.interventions.intervention_rules import clamp_range
from lstm_interp.interventions.run_with_interventions import resolve
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.tracing import trace
from lstm_interp.tracing.quantities import QUANTITIES

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # fixed, so that the same samples always give the same interval
CI_LEVEL = 0.95


def quote_rate(sample: str) -> float:
    """The number of ``"`` characters per character of ``sample``: ``'a"b"'`` gives 0.5.

    Raises:
        ValueError: for an empty sample (no characters to count over).
    """
    if not sample:
        raise ValueError("`sample` must be non-empty to have a quote rate, got ''")
    return sample.count('"') / len(sample)


def mean_line_length(sample: str, prompt: str = "") -> float:
    """The mean length, in characters and not counting the newline, of the complete lines that end in ``sample``.

    A line is complete when its newline is one of the sampled characters; the line the sample is still writing when
    it stops is left out, since its length is not known. The first line continues the prompt's last line, so it is
    counted from the character after the prompt's last newline (from the prompt's start if it has none): it is the
    line a reader sees. ``mean_line_length("c\\ndef\\ng", prompt="a\\nb")`` is 2.5 (lines ``bc`` and ``def``).

    Returns:
        The mean, or NaN when no line ends in the sample (a sample without a newline).
    """
    ends = [i for i, char in enumerate(sample) if char == "\n"]
    if not ends:
        return math.nan
    # Counting the open line of the prompt in: its characters are part of the first sampled line.
    carried = len(prompt) - (prompt.rfind("\n") + 1)
    lengths = [ends[0] + carried] + [b - a - 1 for a, b in itertools.pairwise(ends)]
    return float(np.mean(lengths))


@dataclass(frozen=True)
class SteerStatistic:
    """One statistic of the generated text, with and without the interventions.

    Means, the difference and the CI are over the sample pairs where both values are defined (``n_pairs``; a
    sample with no complete line has no mean line length).
    """

    name: str
    unit: str
    with_values: tuple[float, ...]
    without_values: tuple[float, ...]
    mean_with: float
    mean_without: float
    difference: float  # mean_with - mean_without
    ci_low: float
    ci_high: float
    n_pairs: int

    @classmethod
    def from_values(
        cls, name: str, unit: str, with_values: Sequence[float], without_values: Sequence[float]
    ) -> SteerStatistic:
        """The statistic of these per-sample values (NaN where a sample's value is undefined)."""
        with_ = np.asarray(with_values, dtype=np.float64)
        without = np.asarray(without_values, dtype=np.float64)
        both = np.isfinite(with_) & np.isfinite(without)
        low, high = paired_bootstrap_ci(with_[both], without[both])
        mean_with = float(with_[both].mean()) if both.any() else math.nan
        mean_without = float(without[both].mean()) if both.any() else math.nan
        return cls(
            name, unit, tuple(with_.tolist()), tuple(without.tolist()), mean_with, mean_without,
            mean_with - mean_without, low, high, int(both.sum()),
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "mean_with": _finite(self.mean_with),
            "mean_without": _finite(self.mean_without),
            "difference": _finite(self.difference),
            "ci95": [_finite(self.ci_low), _finite(self.ci_high)],
            "n_pairs": self.n_pairs,
            "with": [_finite(v) for v in self.with_values],
            "without": [_finite(v) for v in self.without_values],
        }


@dataclass(frozen=True)
class SteerResult:
    """What :func:`steer` measured: the samples of both arms and one :class:`SteerStatistic` per statistic."""

    prompt: str
    interventions: tuple[str, ...]  # one line describing each intervention
    length: int
    temperature: float
    top_k: int | None
    seed: int
    samples_with: tuple[str, ...]
    samples_without: tuple[str, ...]
    statistics: tuple[SteerStatistic, ...]

    @property
    def n_samples(self) -> int:
        return len(self.samples_with)

    def __getitem__(self, name: str) -> SteerStatistic:
        for statistic in self.statistics:
            if statistic.name == name:
                return statistic
        raise KeyError(f"no statistic {name!r}; this result has {[s.name for s in self.statistics]}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary (undefined values, NaN, become ``None``)."""
        return {
            "prompt": self.prompt,
            "interventions": list(self.interventions),
            "n_samples": self.n_samples,
            "length": self.length,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "seed": self.seed,
            "ci_level": CI_LEVEL,
            "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
            "statistics": {s.name: s.to_dict() for s in self.statistics},
            "samples": {"with": list(self.samples_with), "without": list(self.samples_without)},
        }

    def to_markdown(self) -> str:
        """A table: each statistic's mean without and with the interventions, the difference and its 95% CI."""
        lines = [
            f"Steering: {'; '.join(self.interventions)}",
            f"{self.n_samples} sample pairs of {self.length} characters, temperature {self.temperature:g}, "
            f"seeds {self.seed}..{self.seed + self.n_samples - 1}",
            "",
            "| statistic | unit | without | with | difference | 95% CI | pairs |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for s in self.statistics:
            lines.append(
                f"| {s.name} | {s.unit} | {_number(s.mean_without)} | {_number(s.mean_with)} | "
                f"{_number(s.difference, signed=True)} | [{_number(s.ci_low, signed=True)}, "
                f"{_number(s.ci_high, signed=True)}] | {s.n_pairs} |"
            )
        return "\n".join(lines)


def steer(
    model: CharLSTM,
    prompt: str,
    interventions: Sequence[Intervention] | Intervention,
    n_samples: int = 20,
    length: int = 300,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    features: Sequence[str] = (),
) -> SteerResult:
    """Sample ``n_samples`` pairs of texts with and without ``interventions`` and compare their statistics.

    Args:
        model: the network.
        prompt: the text every sample starts from (non-empty, inside the vocabulary).
        interventions: :class:`~lstm_interp.interventions.Clamp`, ``Ablate``, ``Scale`` or ``Patch`` objects (one
            alone is a list of one), as :meth:`~lstm_interp.CharLSTM.generate` takes them: their steps count from
            the prompt's first character, so ``steps=slice(len(prompt), None)`` acts on the sampled text only.
        n_samples: sample pairs to draw.
        length: characters sampled per sample.
        temperature, top_k: as for :meth:`~lstm_interp.CharLSTM.generate`.
        seed: sample ``i`` of both arms is drawn with seed ``seed + i``.
        features: registered feature names whose mean over the sampled characters to compare too.

    Returns:
        A :class:`SteerResult`, statistics in the order quote rate, mean line length, then ``features``.

    Raises:
        ValueError: ``n_samples`` or ``length`` below 1, an unknown feature (``UnknownFeatureError``), a prompt
            outside the vocabulary (``VocabularyError``) or empty; an intervention the model cannot take
            (``InterventionError``, naming it). All before anything is sampled.
        TypeError: ``interventions`` is not a non-empty list of interventions; a ``prompt`` that is not a string,
            ``features`` that are not a list of names, a ``seed`` that is not an integer.
    """
    if not isinstance(model, CharLSTM):
        raise TypeError(f"`model` must be a CharLSTM, got {type(model).__name__}")
    for name, value in (("n_samples", n_samples), ("length", length)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"`seed` must be an integer, got {type(seed).__name__} {seed!r}")
    interventions = intervention_list(interventions)
    if not interventions:
        raise TypeError("`interventions` must be a non-empty list of Ablate/Clamp/Scale/Patch, got an empty one")
    if isinstance(features, str) or not isinstance(features, Sequence):
        raise TypeError(f"`features` must be a list of feature names, got {type(features).__name__} {features!r}")
    chosen = [get_feature(name).name for name in dict.fromkeys(features)]
    # generate's own checks of the prompt (a string, non-empty, in the vocabulary), temperature and top_k, at the
    # call: a stream of no characters samples nothing.
    model.generate_stream(prompt, 0, temperature=temperature, top_k=top_k)
    acting = _resolved(model, interventions, len(prompt) + int(length))
    options = {"temperature": temperature, "top_k": top_k, "include_prompt": False}
    with_samples, without_samples = [], []
    for i in range(n_samples):
        with_samples.append(generate_with_interventions(model, prompt, length, acting, seed=seed + i, **options))
        without_samples.append(model.generate(prompt, length, seed=seed + i, **options))
    statistics = [
        SteerStatistic.from_values(
            "quote_rate", '" per character', [quote_rate(s) for s in with_samples],
            [quote_rate(s) for s in without_samples],
        ),
        SteerStatistic.from_values(
            "mean_line_length", "characters", [mean_line_length(s, prompt) for s in with_samples],
            [mean_line_length(s, prompt) for s in without_samples],
        ),
    ]  # fmt: skip
    for name in chosen:
        statistics.append(
            SteerStatistic.from_values(
                f"mean_{name}", "mean per character", [_feature_mean(name, prompt, s) for s in with_samples],
                [_feature_mean(name, prompt, s) for s in without_samples],
            )
        )  # fmt: skip
    return SteerResult(
        prompt, tuple(describe_intervention(iv) for iv in interventions), int(length), float(temperature), top_k,
        int(seed), tuple(with_samples), tuple(without_samples), tuple(statistics),
    )  # fmt: skip


def paired_bootstrap_ci(with_values: np.ndarray, without_values: np.ndarray) -> tuple[float, float]:
    """The :data:`CI_LEVEL` percentile interval of the mean paired difference, from :data:`BOOTSTRAP_RESAMPLES`
    resamples of the pairs (a fixed seed); ``(nan, nan)`` for no pairs."""
    differences = np.asarray(with_values, dtype=np.float64) - np.asarray(without_values, dtype=np.float64)
    if differences.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    picks = rng.integers(0, differences.size, size=(BOOTSTRAP_RESAMPLES, differences.size))
    means = differences[picks].mean(axis=1)
    tail = (1 - CI_LEVEL) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def describe_intervention(iv: Intervention) -> str:
    """One line: ``clamp layers.1.cell[254] = 3 (steps 12-end)``."""
    units = ",".join(map(str, iv.units[:6])) + (f",… ({len(iv.units)} units)" if len(iv.units) > 6 else "")
    target = f"{iv.name}[{units}]"
    if isinstance(iv, Clamp):
        values = iv.value.tolist()  # type: ignore[union-attr]
        shown = f"{values[0]:g}" if len(set(values)) == 1 else "(" + ", ".join(f"{v:g}" for v in values[:6]) + ")"
        what = f"clamp {target} = {shown}"
    elif isinstance(iv, Ablate):
        what = f"ablate {target} to {'zero' if iv.value == 'zero' else 'its mean'}"
    elif isinstance(iv, Scale):
        what = f"scale {target} × {iv.factor:g}"
    elif isinstance(iv, Patch):
        what = f"patch {target}"
    else:
        what = f"{type(iv).__name__} {target}"
    return f"{what} ({_steps_text(iv.steps)})"


def _steps_text(steps: object) -> str:
    if steps is None:
        return "every step"
    if isinstance(steps, slice):
        return f"steps {steps.start or 0}-{'end' if steps.stop is None else steps.stop - 1}"
    count = len(steps)  # type: ignore[arg-type]
    return f"{count} listed step{'s' if count != 1 else ''}"


def _resolved(model: CharLSTM, interventions: Sequence[Intervention], length: int) -> list[Intervention]:
    """The interventions checked against the model, a mean ablation turned into the clamp to its reference mean.

    Checked here so that a bad one fails before any sampling; the clamp has the same effect, and spares tracing the
    reference text again for every sample.
    """
    cfg = model.config
    widths = {f"layers.{i}": dict.fromkeys(QUANTITIES[cfg.cell], cfg.hidden_size) for i in range(cfg.num_layers)}
    checked = resolve(
        list(interventions), cfg.cell, widths, length,
        lambda ref, n: trace(model, ref, names_filter=n, on_unknown="skip"),
    )  # fmt: skip
    return [
        Clamp(iv.name, iv.units, _within(iv._mean, clamp_range(iv.name)), steps=iv.steps)  # type: ignore[arg-type]
        if isinstance(iv, Ablate) and iv.value == "mean" else iv
        for iv in checked
    ]  # fmt: skip


def _within(mean: Tensor, bounds: tuple[float, float] | None) -> Tensor:
    """A gate's mean inside its range: float32 rounding may put the mean of values at 1 a hair above it."""
    return mean if bounds is None else mean.clamp(*bounds)


def _feature_mean(name: str, prompt: str, sample: str) -> float:
    return float(np.mean(compute_feature(name, prompt + sample)[len(prompt) :]))


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _number(value: float, *, signed: bool = False) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value:+.4g}" if signed else f"{value:.4g}"
