"""``lstm-interp probe MODEL TEXT_FILE --features F1 F2 --out DIR``: how many units does each feature need?

It parses the command line, opens MODEL with :func:`~lstm_interp.load_pretrained`, reads the text's units once
(:func:`~lstm_interp.analysis.probe_rows` over :func:`~lstm_interp.trace_segments`, so memory stays bounded) and
fits one sparse probe per feature (:func:`~lstm_interp.analysis.fit_probe`); with ``--causal`` it also ablates each
probe's top units together against random sets (:func:`~lstm_interp.experiments.probe_ablation.probe_ablation`), on
the last ``--causal-chars`` characters of the text (the held-out part, when the text is long enough).

``DIR`` gets ``probes.json`` (one entry per feature: ``Probe.to_dict()``, and ``causal`` with ``--causal``), a
figure per feature (``<feature>.png``, :func:`~lstm_interp.plots.plot_probe_curve`; ``<feature>_ablation.png`` with
``--causal``) and ``manifest.json``, written as one folder the way
:func:`~lstm_interp.report.experiment_folder.write_experiment_folder` writes one (built beside ``DIR`` and swapped
into place; a folder holding files a probe run did not write is refused before any work, unless ``--overwrite``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lstm_interp.cli._arguments import (
    add_model_argument,
    add_overwrite_argument,
    add_trainer_arguments,
    check_model_argument,
    positive_float,
    positive_int,
    read_text_file,
    trainer_arguments,
)

KIND = "probe"
RESULT_NAME = "probes.json"
DEFAULT_MAX_ROWS = 50_000  # lstm_interp.analysis.probe.DEFAULT_MAX_ROWS, without importing the analysis for --help


def build_parser(prog: str = "lstm-interp probe") -> argparse.ArgumentParser:
    """The parser of ``lstm-interp probe``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Fit a sparse (elastic-net) probe of each feature on every unit, held out on the text's last part: its "
            "score, the best single unit's, how many top units reach 95% of it, and its selectivity against a "
            "control task (random labels per character); with --causal, ablate each probe's top units together "
            "against random sets of as many units."
        ),
        epilog=(
            "Example: lstm-interp probe novel chapter.txt --features inside_quotes position_in_line --causal "
            "--out quote_probes"
        ),
    )
    add_model_argument(parser)
    parser.add_argument("text_file", type=Path, metavar="TEXT_FILE", help="the UTF-8 text to probe on")
    parser.add_argument("--features", nargs="+", required=True, metavar="NAME", help="registered features to probe")
    parser.add_argument("--quantity", default=None, help="the quantity probed (default: the state, cell of an LSTM)")
    parser.add_argument("--layers", nargs="+", default=None, metavar="LAYER", help="layers.1 or 1 (default: all)")
    parser.add_argument("--chars", type=positive_int, default=None, metavar="N", help="use the first N characters")
    parser.add_argument("--max-rows", type=positive_int, default=DEFAULT_MAX_ROWS, metavar="N",
                        help=f"the most positions kept, evenly spaced ({DEFAULT_MAX_ROWS:,})")  # fmt: skip
    parser.add_argument("--heldout", type=_share, default=0.2, metavar="SHARE",
                        help="the share of the text held out, at its end (0.2)")  # fmt: skip
    parser.add_argument("--alpha", type=positive_float, nargs="+", default=[0.01], metavar="A",
                        help="penalty strength; several: chosen on a validation slice (0.01)")  # fmt: skip
    parser.add_argument("--l1-ratio", type=_l1_ratio, default=0.5, metavar="R", help="L1 share of the penalty (0.5)")
    parser.add_argument("--seed", type=int, default=0, help="control task, random units and bootstrap (0)")
    parser.add_argument("--causal", action="store_true", help="ablate each probe's top --k units against random sets")
    parser.add_argument("--k", type=positive_int, default=5, help="top units ablated together (5)")
    parser.add_argument("--random-sets", type=positive_int, default=100, metavar="N", help="random k-sets (100)")
    parser.add_argument("--random", type=positive_int, default=100, metavar="N", help="random single units (100)")
    parser.add_argument("--target", default=None, metavar="CHARS",
                        help="--causal targets: predicted characters (default: where the feature is on)")  # fmt: skip
    parser.add_argument("--causal-chars", type=positive_int, default=10_000, metavar="N",
                        help="--causal runs the model --random + --random-sets + --k + 2 times over the last N "
                        "characters of the text, in its held-out part (10,000)")  # fmt: skip
    parser.add_argument("--out", "-o", type=Path, required=True, metavar="DIR", help="the folder to write")
    add_overwrite_argument(parser)
    add_trainer_arguments(parser)
    return parser


def main(argv: Sequence[str], *, prog: str = "lstm-interp probe") -> int:
    """Run ``lstm-interp probe`` with ``argv``; returns the exit status (bad arguments exit with 2, argparse).

    Raises:
        FileNotFoundError, ValueError: a broken model, text outside the vocabulary, a feature constant on the text
            or on its held-out part, a folder holding foreign files (the CLI prints them in one line, status 1).
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    check_model_argument(parser, args.model)
    from lstm_interp.features import UnknownFeatureError, get_feature

    try:
        features = [get_feature(name).name for name in dict.fromkeys(args.features)]
    except UnknownFeatureError as err:
        parser.error(f"argument --features: {err}")
    if args.target == "":
        parser.error("argument --target: give at least one character, got ''")
    text = read_text_file(parser, args.text_file, "TEXT_FILE", min_chars=2)[: args.chars]
    from lstm_interp.analysis.probe import fit_probe
    from lstm_interp.analysis.probe_rows import corpus_probe_rows
    from lstm_interp.hub.load_pretrained import load_pretrained
    from lstm_interp.manifest import check_replaceable
    from lstm_interp.tracing import state_quantity
    from lstm_interp.tracing.quantities import quantities_of

    owned = [RESULT_NAME, *(f"{name}{end}.png" for name in features for end in ("", "_ablation"))]
    check_replaceable(args.out, KIND, owned, overwrite=args.overwrite)
    model = load_pretrained(args.model)
    quantity = args.quantity or state_quantity(model.config.cell)
    if quantity not in quantities_of(model.config.cell):
        parser.error(f"argument --quantity: {quantity!r} is not one of the model's: {quantities_of(model.config.cell)}")
    layers = None if args.layers is None else [int(layer) if layer.isdigit() else layer for layer in args.layers]
    rows = corpus_probe_rows(model, text, quantity, layers, max_rows=args.max_rows, with_text=True,
                             shard_chars=args.shard_chars, prime_chars=args.prime_chars, **trainer_arguments(args))
    if rows is None:  # not rank 0 of a pass over several processes: rank 0 fits and writes
        return 0
    print(f"read {quantity} of {', '.join(rows.layers)} at {len(rows.positions):,} of {rows.num_steps:,} positions")
    results: dict[str, dict[str, Any]] = {}
    figures = {}
    from lstm_interp.plots.probe_curve import plot_probe_curve

    for name in features:
        probe = fit_probe(rows, name, quantity=quantity, heldout=args.heldout, alpha=args.alpha,
                          l1_ratio=args.l1_ratio, seed=args.seed)  # fmt: skip
        print(probe.summary())
        results[name] = probe.to_dict()
        figures[f"{name}.png"] = plot_probe_curve(probe)
        if args.causal:
            from lstm_interp.experiments.probe_ablation import probe_ablation
            from lstm_interp.plots.ablation_study import plot_ablation_study

            study = probe_ablation(model, text[-args.causal_chars :], probe, k=args.k, targets=args.target,
                                   n_random_sets=args.random_sets, n_random=args.random, seed=args.seed,
                                   log=print)  # fmt: skip
            results[name]["causal"] = study.to_dict()
            figures[f"{name}_ablation.png"] = plot_ablation_study(study)
            print(study.to_markdown())
    arguments = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    _write_folder(args.out, results, figures, model, text, arguments, args.overwrite)
    print(f"Wrote {args.out}/{RESULT_NAME}, {', '.join(figures)} and manifest.json")
    return 0


def _write_folder(out: Path, results: dict[str, Any], figures: dict[str, Any], model: Any, text: str,
                  arguments: dict[str, Any], overwrite: bool) -> None:  # fmt: skip
    """``write_experiment_folder``'s steps, with one figure per feature instead of one in all."""
    from lstm_interp._io import atomic_folder, atomic_write_text
    from lstm_interp.manifest import check_replaceable, write_manifest
    from lstm_interp.plots.save import save_figure

    owned = [RESULT_NAME, *figures]
    check_replaceable(out, KIND, owned, overwrite=overwrite)  # again: the folder may have changed meanwhile
    with atomic_folder(out) as staging:
        atomic_write_text(staging / RESULT_NAME, json.dumps(results, indent=1, allow_nan=False) + "\n")
        for name, figure in figures.items():
            save_figure(figure, staging / name)
        write_manifest(staging, KIND, model=model, texts={"text": text}, arguments=arguments)


def _share(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be a share between 0 and 1, got {text!r}")
    return value


def _l1_ratio(text: str) -> float:
    """An argparse type: a number in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1] (1 is the lasso), got {text!r}")
    return value
