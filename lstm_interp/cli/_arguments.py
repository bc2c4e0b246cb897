"""The arguments the ``lstm-interp`` commands share: MODEL, text files, a corpus pass, and argparse types.

MODEL is whatever :func:`lstm_interp.load_pretrained` opens. Every ``check_*`` here exits with status 2 and one line
naming the argument and its value.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODEL_HELP = (
    "the model: a pretrained name (novel, war-and-peace, code, linux, foldoc), a save_pretrained folder, "
    "a Lightning .ckpt or an 'org/name' Hub repo id"
)
# (flag, type, default, metavar, help): an option written on one row; see add_options.
Option = tuple[Any, ...]  # (flag, type, default, metavar, help[, {argparse keyword: value}])
# The defaults of lstm_interp.analysis.corpus_shards, without importing the analysis for --help.
DEFAULT_SHARD_CHARS, DEFAULT_PRIME_CHARS = 65_536, 1_024
# The most characters a command samples without --max-length: about a minute on a laptop CPU for a small model;
# a typo such as --length 100000000000 would otherwise run for days (`sample` caps each sample, `steer` all of them).
MAX_LENGTH = 1_000_000


def command_parser(prog: str, description: str, example: str | None, *, model: bool = True) -> argparse.ArgumentParser:
    """A command's parser: its description, its example as the epilog and (unless ``model=False``) MODEL."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=example and f"Example: {example}")
    if model:
        parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    return parser


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *rows: Option) -> None:
    """Add an option per row; the help ends with ``(default X)`` unless it is ``None`` (the help says what then).
    A row's optional sixth item holds argparse's other keywords (``nargs``, ``required``, ``action``, ...)."""
    for flag, kind, default, metavar, text, *more in rows:
        shown = " ".join(map(str, default)) if isinstance(default, list) else default
        shown = f"{default:,}" if isinstance(default, int) and default >= 10_000 else shown
        suffix = "" if default is None or default == [] else f" (default {shown})"
        parser.add_argument(flag, type=kind, default=default, metavar=metavar, help=text + suffix, **dict(*more))


def add_output_options(
    parser: argparse.ArgumentParser, writer: str, *, default: Path | None = None, default_help: str | None = None
) -> None:
    """Add ``--out`` (required without a ``default`` or ``default_help``) and ``--overwrite``, the one way past the
    refusal to replace a folder holding files ``writer`` did not write."""
    shown = default_help or default
    parser.add_argument("--out", "-o", type=Path, default=default, required=shown is None, metavar="DIR",
                        help="the folder to write" + (f" (default: {shown})" if shown else ""))  # fmt: skip
    overwrite = f"replace --out even if it holds files {writer} did not write (they are deleted)"
    parser.add_argument("--overwrite", action="store_true", help=overwrite)


def add_corpus_pass_options(parser: argparse.ArgumentParser, *, skip_unknown: bool = True) -> None:
    """Add ``--revision``, ``--skip-unknown`` (unless the command needs the text as it is) and a pass on Lightning's
    engine: the Trainer's own flags and the shards' sizes."""
    parser.add_argument("--revision", default=None, help="a Hub branch, tag or commit of MODEL (default: main)")
    if skip_unknown:
        add_skip_unknown_argument(parser)
    group = parser.add_argument_group("the pass on Lightning's engine (flags named as the Trainer's arguments)")
    group.add_argument("--accelerator", default=None, help="cpu, gpu, mps, auto, ... (Lightning's default: auto)")
    devices = "processes (or GPUs) per node: 2, auto, -1, or a list 0,1 (Lightning's default: auto)"
    group.add_argument("--devices", default=None, type=_devices, help=devices)
    group.add_argument("--num_nodes", default=None, type=positive_int, metavar="N", help="machines (default 1)")
    group.add_argument("--strategy", default=None, help="ddp, auto, ... (ddp_spawn cannot return the result)")
    add_options(
        group,
        ("--shard-chars", positive_int, DEFAULT_SHARD_CHARS, "N",
         "characters per shard; results depend on it, never on the number of processes"),
        ("--prime-chars", non_negative_int, DEFAULT_PRIME_CHARS, "N", "characters before each shard its state is "
         "warmed on"),
    )  # fmt: skip


def add_skip_unknown_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--skip-unknown``: ``on_unknown="skip"``, dropping the characters outside the model's vocabulary."""
    parser.add_argument("--skip-unknown", dest="on_unknown", action="store_const", const="skip", default="error",
                        help="drop characters the model does not know instead of failing")  # fmt: skip


def corpus_pass_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of :func:`add_corpus_pass_options`: the Trainer's arguments given (the others keep Lightning's
    defaults), with one progress bar, on rank 0."""
    given = {name: getattr(args, name) for name in ("accelerator", "devices", "num_nodes", "strategy")}
    given |= {"on_unknown": getattr(args, "on_unknown", None)}
    shards = {"shard_chars": args.shard_chars, "prime_chars": args.prime_chars, "enable_progress_bar": True}
    return {name: value for name, value in given.items() if value is not None} | shards


def _devices(text: str) -> int | str:
    """``--devices``: an integer (``2``, ``-1``) or what Lightning reads as a string (``auto``, ``0,1``)."""
    try:
        return int(text)
    except ValueError:
        if text == "auto" or re.fullmatch(r"\d+(,\d+)*,?", text):
            return text
    raise argparse.ArgumentTypeError(f"expected a number of devices, 'auto' or a list such as 0,1, got {text!r}")


def check_model_argument(parser: argparse.ArgumentParser, source: str) -> None:
    """Refuse ``source`` if :func:`~lstm_interp.load_pretrained` can only fail on it (nothing is read)."""
    from lstm_interp.hub.load_pretrained import ALIASES, PRETRAINED, source_kind

    try:
        source_kind(source)
    except (FileNotFoundError, ValueError):
        parser.error(
            f"argument MODEL: {source!r} is not a folder or a file (no such path), nor an 'org/name' Hub repo id or "
            f"a pretrained name ({', '.join([*PRETRAINED, *ALIASES])})"
        )


def read_text_file(parser: argparse.ArgumentParser, path: Path, argument: str, *, min_chars: int = 1) -> str:
    """The UTF-8 text of ``path`` (an :func:`existing_file`); a shorter one is refused, bytes not UTF-8 are a
    ``ValueError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{str(path)!r} is not valid UTF-8 text (byte {err.start}): {err.reason}") from err
    if len(text) < min_chars:
        too_short = {1: "is empty", 2: "is empty or has one character"}.get(min_chars, f"has < {min_chars} characters")
        parser.error(
            f"argument {argument}: {str(path)!r} {too_short} ({len(text)}); "
            f"expected a text of at least {min_chars} character{'s' if min_chars > 1 else ''}"
        )
    return text


def check_sampled_length(
    parser: argparse.ArgumentParser, argument: str, length: int, max_length: int, *, unit: str, shown: str = ""
) -> None:
    """Refuse sampling ``length`` characters (``shown``: how) above ``--max-length``, before the model is opened."""
    if length > max_length:
        parser.error(
            f"argument {argument}: {shown + ' = ' if shown else ''}{length} is above the limit of {max_length} "
            f"{unit}; pass --max-length {length} to allow it"
        )


def number_type(kind: Callable[[str], Any], expected: str, ok: Callable[[Any], bool]) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` where ``ok`` holds for it, else an error quoting ``text`` and ``expected``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}") from None
        if not ok(value):  # NaN fails every comparison, so it is refused too
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value

    return parse


positive_int = number_type(int, "an integer >= 1", lambda value: value >= 1)
non_negative_int = number_type(int, "an integer >= 0", lambda value: value >= 0)
positive_float = number_type(float, "a finite number > 0", lambda value: 0 < value < math.inf)
temperature = number_type(float, "a finite number >= 0 (0: the most likely character)", lambda v: 0 <= v < math.inf)


def existing_file(text: str) -> Path:
    """An argparse type: the path of a file that exists, checked before any model is opened."""
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text!r} does not exist or is not a file")
    return Path(text)


def non_empty(text: str) -> str:
    """An argparse type: a string of at least one character (a prompt, a text, target characters)."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty, got ''")
    return text


def feature_name(text: str) -> str:
    """An argparse type: a registered feature's name; an unknown one is refused, listing them (imported when
    parsing, not for ``--help``)."""
    from lstm_interp.features import UnknownFeatureError, get_feature

    try:
        return get_feature(text).name
    except UnknownFeatureError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def feature_controls(text: str) -> tuple[str, list[str]]:
    """An argparse type: ``FEATURE=CONTROL[,CONTROL...]`` (``FEATURE=`` for none) as ``(feature, [controls])``, each a
    :func:`feature_name`."""
    feature, sep, controls = text.partition("=")
    if not sep or not feature.strip():
        raise argparse.ArgumentTypeError(
            f"expected FEATURE=CONTROL[,CONTROL...] (e.g. inside_if_condition=inside_parens), got {text!r}"
        )
    return feature_name(feature.strip()), [feature_name(c.strip()) for c in controls.split(",") if c.strip()]


def unit_spec(text: str, op: str | None = None) -> tuple[str, list[int], float | None]:
    """An argparse type: ``LAYER[.QUANTITY]:UNITS[=VALUE]``, read by
    :func:`~lstm_interp.interventions.unit_specs.parse_unit_spec`; with ``op`` (``steer --clamp``, ``--ablate``,
    ``--scale``), checked for it by :func:`~lstm_interp.interventions.unit_specs.check_unit_spec` too."""
    from lstm_interp.interventions.unit_specs import check_unit_spec, parse_unit_spec

    try:
        spec = parse_unit_spec(text)
        if op is not None:
            check_unit_spec(op, spec, label=f"--{op}")
        return spec
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
