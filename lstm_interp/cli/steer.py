"""``lstm-interp steer MODEL --prompt TEXT --clamp SPEC=VALUE ...``: what an intervention does to generated text.

Parses the interventions (``--clamp``, ``--ablate``, ``--scale``, each ``LAYER[.QUANTITY]:UNITS[=VALUE]`` as
:func:`~lstm_interp.cli._arguments.unit_spec` reads it), runs :func:`~lstm_interp.experiments.steer` and writes
``DIR/steer.json`` (:meth:`~lstm_interp.experiments.SteerResult.to_dict`), ``DIR/steer.png``
(:func:`~lstm_interp.plots.plot_steer`) and ``DIR/manifest.json``, the folder whole (built beside ``DIR`` and
swapped into place). The interventions act on the sampled characters only unless ``--from-prompt`` is given.

Before the model is opened it refuses, with status 2: more than ``--max-length`` characters sampled in all (2 arms x
``--samples`` x ``--length``, default :data:`~lstm_interp.cli._arguments.MAX_LENGTH`, the cap ``sample`` has), a
``--scale`` factor :func:`~lstm_interp.interventions.check_scale_factor` refuses, and a ``--clamp`` of a gate outside
its range (:func:`~lstm_interp.interventions.check_clamp_value`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from lstm_interp.cli._arguments import (
    MAX_LENGTH,
    UNIT_SPEC_FORM,
    add_model_argument,
    add_overwrite_argument,
    check_model_argument,
    check_sampled_length,
    intervention_name,
    positive_int,
    temperature,
    unit_spec,
)

KIND = "steer"
# What a steer folder holds; an existing folder holding anything else is not replaced.


def build_parser(prog: str = "lstm-interp steer") -> argparse.ArgumentParser:
    """The parser of ``lstm-interp steer``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Generate pairs of samples with and without interventions on units (same seed per pair) and compare "
            "the quote rate, the mean line length and feature means of the generated text."
        ),
        epilog=(
            "Example: lstm-interp steer novel --prompt 'He said ' --clamp layers.1.cell:254=3 --samples 20 "
            f"--length 300 --out steer_quote. Units are given as {UNIT_SPEC_FORM}; without a quantity, the layer's "
            "state (cell of an LSTM, hidden of a GRU or RNN)."
        ),
    )
    add_model_argument(parser)
    parser.add_argument("--prompt", required=True, help="the text every sample starts from")
    parser.add_argument(
        "--clamp", type=unit_spec, action="append", default=[], metavar="SPEC=VALUE", help="set units to VALUE"
    )
    parser.add_argument(
        "--ablate", type=unit_spec, action="append", default=[], metavar="SPEC", help="set units to zero"
    )
    parser.add_argument(
        "--scale", type=unit_spec, action="append", default=[], metavar="SPEC=FACTOR", help="multiply units by FACTOR"
    )
    parser.add_argument(
        "--from-prompt",
        action="store_true",
        help="act from the prompt's first character too (default: on the sampled characters only)",
    )
    parser.add_argument("--samples", type=positive_int, default=20, metavar="N", help="sample pairs (default 20)")
    parser.add_argument("--length", type=positive_int, default=300, metavar="N", help="characters per sample (300)")
    parser.add_argument(
        "--max-length", type=positive_int, default=MAX_LENGTH, metavar="N",
        help=f"the most characters sampled in all, 2 x --samples x --length (default {MAX_LENGTH:,}); raise it for "
        "a longer run",
    )  # fmt: skip
    parser.add_argument("--temperature", type=temperature, default=1.0, metavar="T", help="softmax temperature (1)")
    parser.add_argument("--top-k", type=positive_int, default=None, metavar="K", help="sample among the K most likely")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="pair i is sampled with seed S + i (0)")
    parser.add_argument(
        "--features", nargs="+", default=[], metavar="NAME", help="features whose mean over the samples to compare"
    )
    parser.add_argument("--out", "-o", type=Path, required=True, metavar="DIR", help="the folder to write")
    add_overwrite_argument(parser)
    return parser


def main(argv: Sequence[str], *, prog: str = "lstm-interp steer") -> int:
    """Run ``lstm-interp steer`` with ``argv`` (the arguments after ``steer``); returns the exit status.

    Prints the markdown table of :meth:`~lstm_interp.experiments.SteerResult.to_markdown` and the folder written.

    Raises:
        FileNotFoundError, ValueError: a broken model, a prompt outside its vocabulary, an intervention the model
            cannot take (a unit out of range), an output folder holding other files (the CLI prints them in one
            line, status 1).
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if not (args.clamp or args.ablate or args.scale):
        parser.error("give at least one intervention: --clamp SPEC=VALUE, --ablate SPEC or --scale SPEC=FACTOR")
    for flag, specs, needs_value in (("--clamp", args.clamp, True), ("--ablate", args.ablate, False),
                                     ("--scale", args.scale, True)):  # fmt: skip
        for name, units, value in specs:
            spec = f"{name}:{','.join(map(str, units))}"
            if needs_value and value is None:
                parser.error(f"argument {flag}: {spec!r} needs '=NUMBER' after the units, e.g. {spec}=2.5")
            if not needs_value and value is not None:
                parser.error(f"argument {flag}: {spec}={value:g} sets units to zero and takes no '=VALUE'")
    if args.prompt == "":
        parser.error("argument --prompt: must not be empty, got ''")
    # Both arms of every pair are sampled: the cap of `sample`, on all the characters the run draws.
    check_sampled_length(
        parser, "--samples/--length", 2 * args.samples * args.length, args.max_length,
        unit="characters sampled in all", shown=f"2 arms x {args.samples} sample pairs x {args.length} characters",
    )  # fmt: skip
    _check_values(parser, args)
    from lstm_interp.features import UnknownFeatureError, get_feature

    try:
        features = [get_feature(name).name for name in dict.fromkeys(args.features)]
    except UnknownFeatureError as err:
        parser.error(f"argument --features: {err}")
    check_model_argument(parser, args.model)
    return _steer(args, features)


def _check_values(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with status 2 for a --scale factor or a --clamp value the interventions refuse (a factor of 1e300, a
    forget gate clamped to 5), before the model is opened: the library's own rules, so the messages are its."""
    from lstm_interp.interventions.intervention_rules import InterventionError, check_clamp_value, check_scale_factor

    try:
        for name, units, value in args.scale:
            check_scale_factor(value, f"--scale {name}:{','.join(map(str, units))}")
    except InterventionError as err:
        parser.error(f"argument --scale: {err}")
    try:
        for name, _, value in args.clamp:
            check_clamp_value(name, value)  # a name without its quantity is a layer's state, which has no range
    except InterventionError as err:
        parser.error(f"argument --clamp: {err}")


def _steer(args: argparse.Namespace, features: list[str]) -> int:
    """Open the model, run :func:`~lstm_interp.experiments.steer` and write the folder."""
    from lstm_interp.experiments import steer
    from lstm_interp.hub.load_pretrained import load_pretrained
    from lstm_interp.interventions import Ablate, Clamp, Scale
    from lstm_interp.plots import plot_steer
    from lstm_interp.report.experiment_folder import check_experiment_folder, write_experiment_folder

    # Before the model is opened or anything is sampled.
    check_experiment_folder(args.out, KIND, overwrite=args.overwrite)
    model = load_pretrained(args.model)
    cell = model.config.cell
    steps = None if args.from_prompt else slice(len(args.prompt), None)
    interventions = [
        *(Clamp(intervention_name(n, cell), u, v, steps=steps) for n, u, v in args.clamp),
        *(Ablate(intervention_name(n, cell), u, steps=steps) for n, u, _ in args.ablate),
        *(Scale(intervention_name(n, cell), u, v, steps=steps) for n, u, v in args.scale),
    ]
    result = steer(
        model, args.prompt, interventions, args.samples, args.length, temperature=args.temperature,
        top_k=args.top_k, seed=args.seed, features=features,
    )  # fmt: skip
    arguments = {
        "interventions": list(result.interventions),
        "from_prompt": args.from_prompt,
        "samples": args.samples,
        "length": args.length,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "seed": args.seed,
        "features": features,
    }
    write_experiment_folder(args.out, KIND, result.to_dict(), plot_steer(result), model=model,
                            texts={"prompt": args.prompt}, arguments=arguments, overwrite=args.overwrite)  # fmt: skip
    print(result.to_markdown())
    print(f"wrote {args.out}")
    return 0
