"""The arguments the ``lstm-interp`` commands share: the MODEL every command that opens a model takes, text files,
and argparse types.

MODEL is whatever :func:`lstm_interp.load_pretrained` opens: a pretrained name (``novel``, ``code``, ...), a folder
written by ``save_pretrained``, a Lightning ``.ckpt`` of a ``CharLSTMModule`` or an ``org/name`` Hub repo id. A
command adds it with :func:`add_model_argument`, checks it with :func:`check_model_argument` before doing any work
(a MODEL that can be nothing exits with status 2, naming it), then opens it with ``load_pretrained(args.model)``.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Sequence
from pathlib import Path

MODEL_METAVAR = "MODEL"
MODEL_HELP = (
    "the model: a pretrained name (novel, war-and-peace, code, linux, foldoc), a save_pretrained folder, "
    "a Lightning .ckpt or an 'org/name' Hub repo id"
)


def add_model_argument(parser: argparse.ArgumentParser) -> argparse.Action:
    """Add the positional MODEL argument (``args.model``), with the same name and help in every command."""
    return parser.add_argument("model", metavar=MODEL_METAVAR, help=MODEL_HELP)


def add_revision_argument(parser: argparse.ArgumentParser) -> argparse.Action:
    """Add ``--revision``: the Hub branch, tag or commit of MODEL."""
    return parser.add_argument("--revision", default=None, help="a Hub branch, tag or commit of MODEL (default: main)")


def add_skip_unknown_argument(parser: argparse.ArgumentParser) -> argparse.Action:
    """Add ``--skip-unknown``: drop the characters outside the model's vocabulary (``on_unknown="skip"``)."""
    return parser.add_argument(
        "--skip-unknown", action="store_true", help="drop characters the model does not know instead of failing"
    )


def add_overwrite_argument(parser: argparse.ArgumentParser, writer: str = "an earlier run") -> argparse.Action:
    """Add ``--overwrite``, the one way past the refusal to replace a folder holding files ``writer`` did not write."""
    return parser.add_argument(
        "--overwrite", action="store_true",
        help=f"replace --out even if it holds files {writer} did not write (they are deleted)",
    )  # fmt: skip


# The defaults of lstm_interp.analysis.corpus_shards, without importing the analysis for --help.
DEFAULT_SHARD_CHARS, DEFAULT_PRIME_CHARS = 65_536, 1_024


def add_trainer_arguments(parser: argparse.ArgumentParser) -> None:
    """Add Lightning's own flags for a corpus pass (``--accelerator``, ``--devices``, ``--num_nodes``,
    ``--strategy``) and the shards' ``--shard-chars`` and ``--prime-chars``."""
    group = parser.add_argument_group("the pass on Lightning's engine (flags named as the Trainer's arguments)")
    group.add_argument("--accelerator", default=None, help="cpu, gpu, mps, auto, ... (Lightning's default: auto)")
    devices = "processes (or GPUs) per node: 2, auto, -1, or a list 0,1 (Lightning's default: auto)"
    group.add_argument("--devices", default=None, type=_devices, help=devices)
    group.add_argument("--num_nodes", default=None, type=positive_int, metavar="N", help="machines (default 1)")
    group.add_argument("--strategy", default=None, help="ddp, auto, ... (ddp_spawn cannot return the result)")
    group.add_argument("--shard-chars", default=DEFAULT_SHARD_CHARS, type=positive_int, metavar="N",
                       help=f"characters per shard ({DEFAULT_SHARD_CHARS:,}); results depend on it, never on the "
                            "number of processes")  # fmt: skip
    prime = f"characters before each shard its state is warmed on ({DEFAULT_PRIME_CHARS:,})"
    group.add_argument("--prime-chars", default=DEFAULT_PRIME_CHARS, type=non_negative_int, metavar="N", help=prime)


def trainer_arguments(args: argparse.Namespace) -> dict[str, object]:
    """The Trainer's arguments given on the command line (the others keep Lightning's defaults), with the
    progress bar on: one bar, on rank 0."""
    given = {name: getattr(args, name) for name in ("accelerator", "devices", "num_nodes", "strategy")}
    return {name: value for name, value in given.items() if value is not None} | {"enable_progress_bar": True}


def _devices(text: str) -> int | str:
    """``--devices``: an integer (``2``, ``-1``) or what Lightning reads as a string (``auto``, ``0,1``)."""
    try:
        return int(text)
    except ValueError:
        if text == "auto" or re.fullmatch(r"\d+(,\d+)*,?", text):
            return text
    raise argparse.ArgumentTypeError(f"expected a number of devices, 'auto' or a list such as 0,1, got {text!r}")


def check_model_argument(parser: argparse.ArgumentParser, source: str) -> None:
    """Exit with status 2 naming ``source`` if :func:`~lstm_interp.load_pretrained` can only fail on it.

    That is: not an existing path, not an ``org/name`` repo id and not a pretrained name (a name such as
    ``runs/best.ckpt`` that does not exist is refused too). Nothing is read or downloaded.
    """
    # Imported here: the argparse types below are also used by commands that never open a model (demo).
    from lstm_interp.hub.load_pretrained import ALIASES, PRETRAINED, source_kind

    try:
        source_kind(source)
    except (FileNotFoundError, ValueError):
        names = ", ".join([*PRETRAINED, *ALIASES])
        parser.error(
            f"argument {MODEL_METAVAR}: {source!r} is not a folder or a file (no such path), nor an 'org/name' Hub "
            f"repo id or a pretrained name ({names})"
        )


def check_features(parser: argparse.ArgumentParser, names: Sequence[str], argument: str) -> list[str]:
    """The registered names of the features ``names`` (each once); exit with status 2 naming an unknown one (the
    message lists the registered features)."""
    from lstm_interp.features import UnknownFeatureError, get_feature

    try:
        return [get_feature(name).name for name in dict.fromkeys(names)]
    except UnknownFeatureError as err:
        parser.error(f"argument {argument}: {err}")


def check_corpus_files(parser: argparse.ArgumentParser, paths: list[Path], argument: str) -> None:
    """Exit with status 2 naming the first of ``paths`` that is not an existing file (before the model is loaded)."""
    for path in paths:
        if not path.is_file():
            parser.error(f"argument {argument}: {str(path)!r} does not exist or is not a file")


def read_text_file(parser: argparse.ArgumentParser, path: Path, argument: str, *, min_chars: int = 1) -> str:
    """The UTF-8 text of ``path``, given as ``argument`` (``"TEXT_FILE"``, ``"--file"``, ...).

    A missing file, or one shorter than ``min_chars`` characters, exits with status 2 naming the argument and the
    path (the user typed a wrong name); bytes that are not UTF-8 raise a ``ValueError`` naming the byte.
    """
    if not path.is_file():
        parser.error(f"argument {argument}: {str(path)!r} does not exist or is not a file")
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


# The most characters a command samples without --max-length: about a minute on a laptop CPU for a small model;
# a typo such as --length 100000000000 would otherwise run for days (`sample` caps each sample, `steer` all of them).
MAX_LENGTH = 1_000_000


def check_sampled_length(
    parser: argparse.ArgumentParser, argument: str, length: int, max_length: int, *, unit: str, shown: str = ""
) -> None:
    """Exit with status 2, before the model is opened, when a command would sample ``length`` characters, more than
    ``max_length`` (its ``--max-length``, default :data:`MAX_LENGTH`).

    Args:
        argument: the flag(s) that set ``length`` (``"--length"``), named in the message.
        unit: what ``max_length`` counts (``"characters per sample"``).
        shown: how ``length`` came about (``"20 sample pairs × 300 characters × 2"``); ``length`` alone by default.
    """
    if length > max_length:
        parser.error(
            f"argument {argument}: {shown + ' = ' if shown else ''}{length} is above the limit of {max_length} "
            f"{unit}; pass --max-length {length} to allow it"
        )


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _finite_number(text: str, *, zero_allowed: bool) -> float:
    """``text`` as a finite float above 0 (or at least 0), else an argparse error quoting it."""
    bound = ">= 0" if zero_allowed else "> 0"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number {bound}, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_allowed):
        raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    return _finite_number(text, zero_allowed=False)


def temperature(text: str) -> float:
    """An argparse type: a finite number >= 0 (0 means: always the most likely character)."""
    return _finite_number(text, zero_allowed=True)


UNIT_SPEC_FORM = "LAYER[.QUANTITY]:UNITS[=VALUE], such as 'layers.1:254' or 'layers.1.cell:254,255=2.5'"
# The most units one spec may name. A range is checked against it before it is expanded (0-999999999 would fill
# the memory); units beyond the layer's own size are refused, naming it, once the model is open.
MAX_SPEC_UNITS = 1 << 16
_UNIT_SPEC = re.compile(r"(?P<name>[A-Za-z_]\w*(?:\.\w+)+):(?P<units>[^=]+)(?:=(?P<value>.*))?")
_UNIT_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


def feature_controls(text: str) -> tuple[str, list[str]]:
    """``FEATURE=CONTROL[,CONTROL...]`` (``FEATURE=`` for none) as ``(feature, [controls])``."""
    feature, sep, controls = text.partition("=")
    if not sep or not feature.strip():
        raise argparse.ArgumentTypeError(
            f"expected FEATURE=CONTROL[,CONTROL...] (e.g. inside_if_condition=inside_parens), got {text!r}"
        )
    return feature.strip(), [c.strip() for c in controls.split(",") if c.strip()]


def unit_spec(text: str) -> tuple[str, list[int], float | None]:
    """An argparse type: ``LAYER[.QUANTITY]:UNITS[=VALUE]`` as ``(name, units, value)``.

    ``UNITS`` is a comma-separated list of unit indices and inclusive ranges (``254``, ``254,255``, ``0-7``).
    ``name`` is what was written before the colon (``layers.1`` or ``layers.1.cell``); without a quantity it means
    the model's state quantity (:mod:`lstm_interp.interventions.unit_specs` gives a spec its meaning once the model
    is known). ``value`` is ``None`` without ``=VALUE``.

    Example::

        >>> unit_spec("layers.1.cell:254,255=2.5")
        ('layers.1.cell', [254, 255], 2.5)
        >>> unit_spec("layers.0:0-2")
        ('layers.0', [0, 1, 2], None)
    """
    match = _UNIT_SPEC.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"expected {UNIT_SPEC_FORM}, got {text!r}")
    units: list[int] = []
    for part in match["units"].split(","):
        bounds = _UNIT_RANGE.fullmatch(part.strip())
        if bounds is None:
            raise argparse.ArgumentTypeError(
                f"units must be indices or ranges such as 254,255 or 0-7, got {part!r} in {text!r}"
            )
        first, last = int(bounds[1]), int(bounds[2] or bounds[1])
        if last < first:
            raise argparse.ArgumentTypeError(f"the range {part!r} in {text!r} ends before it starts")
        if len(units) + last - first + 1 > MAX_SPEC_UNITS:
            raise argparse.ArgumentTypeError(
                f"the range {part.strip()!r} in {text!r} names {last - first + 1:,} units; a spec names at most "
                f"{MAX_SPEC_UNITS:,} (no layer is wider), and a layer's units run from 0 to its hidden size - 1"
            )
        units.extend(range(first, last + 1))
    if len(set(units)) != len(units):
        raise argparse.ArgumentTypeError(f"the units of {text!r} repeat a unit: {units}")
    value = None
    if match["value"] is not None:
        try:
            value = float(match["value"])
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(
                f"the value after '=' must be a finite number, got {match['value']!r} in {text!r}"
            )
    return match["name"], units, value
