"""``lstm-interp analyze MODEL_DIR TEXT_FILE``: interpretable cells, gate saturation and an n-gram comparison.

The work is :func:`~lstm_interp.cli.run_analysis.run_analysis` (importable from here too), so that other commands
and notebooks can run it on a :class:`~lstm_interp.CharLSTM` they already hold; this module parses the command
line, reads the files and prints where everything went.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from lstm_interp.cli.run_analysis import DEFAULT_NGRAM_ORDER, run_analysis
from lstm_interp.cli.sample import load_model, positive_int
from lstm_interp.features import FEATURES, UnknownFeatureError, get_feature
from lstm_interp.models.char_lstm import CharLSTM

__all__ = ["add_analysis_options", "build_parser", "default_out_dir", "main", "run_analysis", "run_command"]


def build_parser(prog: str = "lstm-interp analyze") -> argparse.ArgumentParser:
    """The parser of ``lstm-interp analyze``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Find the units that track each feature of a text (find_cells), measure gate saturation, write figures "
            "and an HTML page; with --baseline-text, compare the model with an n-gram character by character "
            "(loss by character class, closing braces by distance, error breakdown)."
        ),
        epilog=(
            "Example: lstm-interp analyze lstm_interp_demo/model chapter2.txt --features inside_quotes "
            "position_in_line --baseline-text war_and_peace_train.txt --ngram-order 9. "
            f"Features: {', '.join(sorted(FEATURES))}."
        ),
    )
    parser.add_argument("model", metavar="MODEL_DIR", help="a folder written by CharLSTM.save_pretrained")
    parser.add_argument("text_file", type=Path, metavar="TEXT_FILE", help="the UTF-8 text to analyse")
    add_analysis_options(parser)
    return parser


def add_analysis_options(parser: argparse.ArgumentParser) -> None:
    """The options ``analyze`` shares with ``explore``: output folder, features, baseline, sizes."""
    parser.add_argument(
        "--out",
        "-o",
        type=Path,
        default=None,
        metavar="DIR",
        help="the folder to write (default: lstm_interp_analysis/<model>_<text>, printed at the end)",
    )
    parser.add_argument(
        "--features",
        nargs="+",
        default=None,
        metavar="NAME",
        help="the features to match units to (default: every registered feature that varies on the text)",
    )
    parser.add_argument("--top", type=positive_int, default=10, metavar="K", help="units listed per feature (10)")
    parser.add_argument(
        "--baseline-text",
        type=Path,
        default=None,
        metavar="FILE",
        help="train an n-gram on this text (the model's training text) and compare it with the model",
    )
    parser.add_argument(
        "--ngram-order",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"the baseline n-gram's order (default {DEFAULT_NGRAM_ORDER}; needs --baseline-text)",
    )
    parser.add_argument(
        "--report-chars",
        type=positive_int,
        default=2000,
        metavar="N",
        help="characters of the text shown on the HTML page (default 2000)",
    )
    parser.add_argument(
        "--skip-unknown", action="store_true", help="drop characters the model does not know instead of failing"
    )


def default_out_dir(model: str, text_file: Path) -> Path:
    """``lstm_interp_analysis/<model folder name>_<text file stem>`` in the current directory."""
    return Path("lstm_interp_analysis") / f"{Path(model).name or 'model'}_{text_file.stem or 'text'}"


def _read(parser: argparse.ArgumentParser, path: Path, argument: str) -> str:
    if not path.is_file():
        parser.error(f"argument {argument}: {str(path)!r} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{str(path)!r} is not valid UTF-8 text (byte {err.start}): {err.reason}") from err
    if len(text) < 2:
        parser.error(
            f"argument {argument}: {str(path)!r} is empty or has one character ({len(text)}); "
            "expected a text of at least 2 characters"
        )
    return text


def main(argv: Sequence[str], *, prog: str = "lstm-interp analyze") -> int:
    """Run ``lstm-interp analyze`` with ``argv`` (the arguments after ``analyze``); returns the exit status.

    Bad arguments exit with status 2 (argparse): a missing MODEL_DIR, TEXT_FILE or baseline file, an empty text,
    an unknown feature name (the message lists the known ones), ``--ngram-order`` without ``--baseline-text``.

    Raises:
        FileNotFoundError, ValueError: for a broken model folder, text outside the vocabulary, a feature constant on
            the text, an n-gram order larger than the baseline text (the CLI prints them in one line, status 1).
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if not Path(args.model).exists():
        parser.error(f"argument MODEL_DIR: {args.model!r} does not exist (expected a folder saved by save_pretrained)")
    return run_command(parser, args, lambda: load_model(args.model), Path(args.model).name)


def run_command(
    parser: argparse.ArgumentParser, args: argparse.Namespace, load: Callable[[], CharLSTM], model_label: str
) -> int:
    """Check the shared options of ``args``, load the model with ``load()`` and run the analysis; print the files.

    ``args`` needs ``text_file`` and the options of :func:`add_analysis_options`; ``model_label`` names the model in
    the default output folder and the page title.
    """
    if args.features is not None:
        try:
            features = [get_feature(name) for name in dict.fromkeys(args.features)]
        except UnknownFeatureError as err:
            parser.error(f"argument --features: {err}")
    if args.ngram_order is not None and args.baseline_text is None:
        parser.error(
            f"argument --ngram-order: {args.ngram_order} needs --baseline-text FILE (the n-gram's training text)"
        )
    text = _read(parser, args.text_file, "TEXT_FILE")
    baseline = _read(parser, args.baseline_text, "--baseline-text") if args.baseline_text is not None else None
    out = args.out if args.out is not None else default_out_dir(model_label, args.text_file)
    model = load()
    if args.skip_unknown:
        vocab = model._require_vocab()
        kept = "".join(c for c in text if c in vocab)
        if len(kept) != len(text):
            print(f"skipped {len(text) - len(kept):,} characters the model does not know")
        text = kept
    run_analysis(
        model,
        text,
        out,
        features=features if args.features is not None else None,
        baseline_text=baseline,
        ngram_order=args.ngram_order or DEFAULT_NGRAM_ORDER,
        top=args.top,
        report_chars=args.report_chars,
        title=f"{model_label}: {args.text_file.name}",
        log=print,
    )
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    print(f"Wrote {len(files)} files to {out}: {', '.join(files)}")
    print(f"Open {out / 'report.html'}")
    return 0
