"""Experiment runs: an ablation study, a steering run or a set of sparse probes, from its arguments to its folder.

What ``lstm-interp ablate``, ``steer`` and ``probe`` do once their arguments are parsed, as library calls: each
function checks its output folder first (a refused folder costs no work), runs the experiment of
:mod:`lstm_interp.experiments` or :mod:`lstm_interp.analysis`, draws its figures and writes the folder whole with
:func:`~lstm_interp.report.experiment_folder.write_experiment_folder` (built beside it and swapped into place):

- :func:`run_ablation`: ``ablation.json``, ``ablation.png``;
- :func:`run_steer`: ``steer.json``, ``steer.png``; the interventions come as unit specs
  (:mod:`lstm_interp.interventions.unit_specs`);
- :func:`run_probes`: ``probes.json`` (one entry per feature), ``<feature>.png`` and, with ``causal=True``,
  ``<feature>_ablation.png``; the units are read in one :func:`~lstm_interp.analysis.corpus_pass`, on the
  processes or devices the Trainer's arguments ask for.

Each folder also gets ``manifest.json``: the model, the texts and ``arguments`` (the command line, for the CLI).

Example::

    >>> study = run_ablation(novel, chapter, [("layers.1", 254)], '"', "quote_ablation")  # doctest: +SKIP
    >>> print(study.to_markdown())  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lstm_interp.analysis.corpus_shards import DEFAULT_PRIME_CHARS, DEFAULT_SHARD_CHARS
from lstm_interp.analysis.probe import DEFAULT_ALPHA, DEFAULT_L1_RATIO, DEFAULT_MAX_ROWS, fit_probe
from lstm_interp.analysis.probe_rows import corpus_probe_rows
from lstm_interp.experiments.ablation_study import AblationStudy, ablation_study
from lstm_interp.experiments.probe_ablation import probe_ablation
from lstm_interp.experiments.steer import SteerResult, steer
from lstm_interp.features import get_feature
from lstm_interp.interventions.unit_specs import UnitSpec, spec_interventions
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.plots.ablation_study import plot_ablation_study
from lstm_interp.plots.probe_curve import plot_probe_curve
from lstm_interp.plots.steer import plot_steer
from lstm_interp.report.experiment_folder import check_experiment_folder, write_experiment_folder
from lstm_interp.tracing.quantities import quantities_of, state_quantity

ABLATION_KIND, STEER_KIND, PROBE_KIND = "ablation", "steer", "probe"
PROBE_RESULT_NAME = "probes.json"

Log = Callable[[str], None]


def probe_folder_names(features: Sequence[str]) -> list[str]:
    """The files a probe run of ``features`` may write besides its manifest: ``probes.json`` and, per feature,
    ``<feature>.png`` and ``<feature>_ablation.png``."""
    return [PROBE_RESULT_NAME, *(f"{name}{end}.png" for name in features for end in ("", "_ablation"))]


def run_ablation(
    model: CharLSTM,
    text: str,
    units: Sequence[tuple[str | int, int]],
    targets: str,
    out: str | os.PathLike,
    *,
    arguments: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    **options: Any,
) -> AblationStudy:
    """Run :func:`~lstm_interp.experiments.ablation_study` and write its folder (``ablation.json``, ``.png``).

    Args:
        model, text, units, targets: as for :func:`~lstm_interp.experiments.ablation_study`.
        out: the folder to write.
        arguments: what made it, for the manifest (default: ``units``, ``targets`` and ``options``).
        overwrite: replace ``out`` even if it holds files an ablation run did not write.
        **options: ``ablation_study``'s keywords (``quantity``, ``value``, ``n_random``, ``together_feature``,
            ``k``, ``seed``, ``log``, ...).

    Returns:
        The :class:`~lstm_interp.experiments.AblationStudy`.

    Raises:
        FileExistsError: ``out`` holds foreign files (before any work).
        ValueError, TypeError: anything ``ablation_study`` refuses, before any ablation runs.
    """
    check_experiment_folder(out, ABLATION_KIND, overwrite=overwrite)
    study = ablation_study(model, text, units, targets, **options)
    if arguments is None:
        arguments = {"units": [list(unit) for unit in units], "targets": targets,
                     **{key: value for key, value in options.items() if key != "log"}}  # fmt: skip
    write_experiment_folder(out, ABLATION_KIND, study.to_dict(), plot_ablation_study(study), model=model,
                            texts={"text": text}, arguments=arguments, overwrite=overwrite)  # fmt: skip
    return study


def run_steer(
    model: CharLSTM,
    prompt: str,
    out: str | os.PathLike,
    *,
    clamp: Sequence[UnitSpec] = (),
    ablate: Sequence[UnitSpec] = (),
    scale: Sequence[UnitSpec] = (),
    from_prompt: bool = False,
    n_samples: int = 20,
    length: int = 300,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    features: Sequence[str] = (),
    overwrite: bool = False,
) -> SteerResult:
    """Build the interventions of unit specs, run :func:`~lstm_interp.experiments.steer` and write its folder.

    Args:
        model, prompt: the network and the text every sample starts from.
        out: the folder to write (``steer.json``, ``steer.png``, ``manifest.json``).
        clamp, ablate, scale: ``(name, units, value)`` specs (:mod:`~lstm_interp.interventions.unit_specs`).
        from_prompt: act from the prompt's first character; by default on the sampled characters only.
        n_samples, length, temperature, top_k, seed, features: as for ``steer``.
        overwrite: replace ``out`` even if it holds files a steer run did not write.

    Returns:
        The :class:`~lstm_interp.experiments.SteerResult`.

    Raises:
        FileExistsError: ``out`` holds foreign files (before any work).
        InterventionError: no spec at all, or a spec the model cannot take (a unit out of range, an unknown
            quantity), before anything is sampled.
        ValueError, TypeError: anything ``steer`` refuses (a prompt outside the vocabulary, ...).

    Example::

        >>> run_steer(novel, "He said ", "steer_quote", clamp=[("layers.1", [254], 3.0)])  # doctest: +SKIP
    """
    check_experiment_folder(out, STEER_KIND, overwrite=overwrite)
    if not isinstance(prompt, str):
        raise TypeError(f"`prompt` must be a string, got {type(prompt).__name__} {prompt!r:.40}")
    if not (clamp or ablate or scale):
        raise ValueError("give at least one intervention: `clamp`, `ablate` or `scale` specs")
    # The steps count from the prompt's first character: from its end, the interventions act on sampled text only.
    steps = None if from_prompt else slice(len(prompt), None)
    interventions = spec_interventions(model.config.cell, clamp=clamp, ablate=ablate, scale=scale, steps=steps)
    result = steer(model, prompt, interventions, n_samples, length, temperature=temperature, top_k=top_k, seed=seed,
                   features=list(features))  # fmt: skip
    arguments = {"interventions": list(result.interventions), "from_prompt": from_prompt, "samples": n_samples,
                 "length": length, "temperature": temperature, "top_k": top_k, "seed": seed,
                 "features": list(features)}  # fmt: skip
    write_experiment_folder(out, STEER_KIND, result.to_dict(), plot_steer(result), model=model,
                            texts={"prompt": prompt}, arguments=arguments, overwrite=overwrite)  # fmt: skip
    return result


def run_probes(
    model: CharLSTM,
    text: str,
    features: Sequence[str],
    out: str | os.PathLike,
    *,
    quantity: str | None = None,
    layers: Sequence[str | int] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    heldout: float = 0.2,
    alpha: float | Sequence[float] = DEFAULT_ALPHA,
    l1_ratio: float = DEFAULT_L1_RATIO,
    seed: int = 0,
    causal: bool = False,
    k: int = 5,
    n_random_sets: int = 100,
    n_random: int = 100,
    targets: str | None = None,
    causal_chars: int = 10_000,
    arguments: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    log: Log | None = None,
    shard_chars: int = DEFAULT_SHARD_CHARS,
    prime_chars: int = DEFAULT_PRIME_CHARS,
    **trainer_kwargs: Any,
) -> list[str] | None:
    """Fit one sparse probe per feature on the units of ``text`` (read once) and write the probe folder.

    Args:
        model, text: the network and the text it reads; its last ``heldout`` share is held out.
        features: registered feature names, one probe each (a name given twice is probed once).
        out: the folder to write.
        quantity: the quantity probed (default: the state, cell of an LSTM). layers: the layers (default: all).
        max_rows, heldout, alpha, l1_ratio, seed: as for :func:`~lstm_interp.analysis.fit_probe`.
        causal: also ablate each probe's top ``k`` units together against ``n_random_sets`` random sets (and each
            alone against ``n_random`` random units), on the last ``causal_chars`` characters of ``text``, at
            ``targets`` (predicted characters; default: where the feature is on).
        arguments: what made it, for the manifest (default: these options).
        overwrite: replace ``out`` even if it holds files a probe run did not write.
        log: called with a line per step (the rows read, each probe's summary and ablation table).
        shard_chars, prime_chars, trainer_kwargs: the corpus pass (``devices=2``, ...).

    Returns:
        The files written besides ``manifest.json`` (``probes.json`` first) on rank 0; ``None`` on the other ranks
        of a pass over several processes.

    Raises:
        FileExistsError: ``out`` holds foreign files (before any work).
        UnknownFeatureError: an unregistered feature. ValueError: an unknown quantity, ``causal_chars`` < 2, a
            feature constant on the text or its held-out part, text outside the vocabulary.

    Example::

        >>> run_probes(novel, chapter, ["inside_quotes"], "quote_probes", causal=True)  # doctest: +SKIP
        ['probes.json', 'inside_quotes.png', 'inside_quotes_ablation.png']
    """
    names = [get_feature(name).name for name in dict.fromkeys(features)]
    if not names:
        raise ValueError("`features` is empty; give at least one registered feature to probe")
    check_experiment_folder(out, PROBE_KIND, overwrite=overwrite, names=probe_folder_names(names))
    quantity = quantity or state_quantity(model.config.cell)
    if quantity not in quantities_of(model.config.cell):
        raise ValueError(f"`quantity` {quantity!r} is not one of the model's: {quantities_of(model.config.cell)}")
    if causal and (isinstance(causal_chars, bool) or not isinstance(causal_chars, int) or causal_chars < 2):
        raise ValueError(f"`causal_chars` must be an integer >= 2, got {causal_chars!r}")
    say = log or (lambda line: None)
    rows = corpus_probe_rows(model, text, quantity, layers, max_rows=max_rows, with_text=True, shard_chars=shard_chars,
                             prime_chars=prime_chars, **trainer_kwargs)  # fmt: skip
    if rows is None:  # not rank 0 of a pass over several processes: rank 0 fits and writes
        return None
    say(f"read {quantity} of {', '.join(rows.layers)} at {len(rows.positions):,} of {rows.num_steps:,} positions")
    results: dict[str, dict[str, Any]] = {}
    figures = {}
    for name in names:
        probe = fit_probe(rows, name, quantity=quantity, heldout=heldout, alpha=alpha, l1_ratio=l1_ratio, seed=seed)
        say(probe.summary())
        results[name] = probe.to_dict()
        figures[f"{name}.png"] = plot_probe_curve(probe)
        if causal:
            study = probe_ablation(model, text[-causal_chars:], probe, k=k, targets=targets,
                                   n_random_sets=n_random_sets, n_random=n_random, seed=seed, log=log)  # fmt: skip
            results[name]["causal"] = study.to_dict()
            figures[f"{name}_ablation.png"] = plot_ablation_study(study)
            say(study.to_markdown())
    if arguments is None:
        arguments = {"features": names, "quantity": quantity, "layers": None if layers is None else list(layers),
                     "max_rows": max_rows, "heldout": heldout, "alpha": alpha, "l1_ratio": l1_ratio, "seed": seed,
                     "causal": causal, "k": k, "random_sets": n_random_sets, "random": n_random,
                     "target": targets, "causal_chars": causal_chars}  # fmt: skip
    write_experiment_folder(out, PROBE_KIND, results, figures, model=model, texts={"text": text},
                            arguments=arguments, overwrite=overwrite, result_name=PROBE_RESULT_NAME)  # fmt: skip
    return [PROBE_RESULT_NAME, *figures]


__all__ = [
    "ABLATION_KIND",
    "PROBE_KIND",
    "PROBE_RESULT_NAME",
    "STEER_KIND",
    "probe_folder_names",
    "run_ablation",
    "run_probes",
    "run_steer",
]
