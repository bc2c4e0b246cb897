"""``lstm-interp analyze MODEL TEXT_FILE``: interpretable cells, gate saturation and an n-gram comparison.

Parses the command line, reads the files, opens MODEL with :func:`~lstm_interp.load_pretrained` and calls
:func:`~lstm_interp.report.run_analysis`, which does the work and writes the folder; then it prints where everything
went. ``explore`` is the same command with the text given as ``--text``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from lstm_interp.cli._arguments import (
    add_model_argument,
    add_overwrite_argument,
    add_revision_argument,
    add_skip_unknown_argument,
    add_trainer_arguments,
    check_features,
    check_model_argument,
    feature_controls,
    positive_int,
    read_text_file,
    trainer_arguments,
)

DEFAULT_NGRAM_ORDER = 9  # lstm_interp.report.run_analysis.DEFAULT_NGRAM_ORDER, without importing the analysis


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
            "`lstm-interp analyze --help` lists the options; the features are listed by an unknown --features name."
        ),
    )
    add_model_argument(parser)
    parser.add_argument("text_file", type=Path, metavar="TEXT_FILE", help="the UTF-8 text to analyse")
    add_analysis_options(parser)
    return parser


def add_analysis_options(parser: argparse.ArgumentParser) -> None:
    """The options ``analyze`` shares with ``explore``: output folder, features, baseline, sizes, revision."""
    parser.add_argument("--out", "-o", type=Path, default=None, metavar="DIR", help="the folder to write (default: "
                        "lstm_interp_analysis/<model>_<text>, printed at the end)")  # fmt: skip
    parser.add_argument("--features", nargs="+", default=None, metavar="NAME", help="the features to match units "
                        "to (default: every registered feature that varies on the text)")  # fmt: skip
    parser.add_argument("--controls", type=feature_controls, nargs="+", default=None, metavar="FEATURE=CONTROL",
                        help="score FEATURE's units also against these controls, comma-separated (FEATURE= for none); "
                        "by default each feature's registered controls, e.g. inside_if_condition=inside_parens",
                        )  # fmt: skip
    parser.add_argument("--top", type=positive_int, default=10, metavar="K", help="units listed per feature (10)")
    parser.add_argument("--baseline-text", type=Path, default=None, metavar="FILE", help="train an n-gram on this "
                        "text (the model's training text) and compare it with the model")  # fmt: skip
    parser.add_argument("--ngram-order", type=positive_int, default=None, metavar="N", help="the baseline n-gram's "
                        f"order (default {DEFAULT_NGRAM_ORDER}; needs --baseline-text)")  # fmt: skip
    parser.add_argument("--report-chars", type=positive_int, default=2000, metavar="N",
                        help="characters of the text shown on the HTML page (default 2000)")  # fmt: skip
    add_revision_argument(parser)
    add_overwrite_argument(parser, "an earlier analysis")
    add_skip_unknown_argument(parser)
    add_trainer_arguments(parser)


def main(argv: Sequence[str], *, prog: str = "lstm-interp analyze") -> int:
    """Run ``lstm-interp analyze`` with ``argv`` (the arguments after ``analyze``); returns the exit status.

    Bad arguments exit with status 2 (argparse): a MODEL that can be nothing, a missing TEXT_FILE or baseline file,
    an empty text, an unknown feature name (the message lists the known ones), ``--ngram-order`` without
    ``--baseline-text``.

    Raises:
        FileNotFoundError, ValueError: for a broken model, text outside the vocabulary, a feature constant on
            the text, an n-gram order larger than the baseline text (the CLI prints them in one line, status 1).
    """
    parser = build_parser(prog)
    return run_command(parser, parser.parse_args(argv))


def run_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Check ``args`` (``model``, ``text_file`` and the options of :func:`add_analysis_options`), open the model,
    run the analysis and print the files it wrote."""
    check_model_argument(parser, args.model)
    features = None if args.features is None else check_features(parser, args.features, "--features")
    if args.ngram_order is not None and args.baseline_text is None:
        parser.error(
            f"argument --ngram-order: {args.ngram_order} needs --baseline-text FILE (the n-gram's training text)"
        )
    controls = None if args.controls is None else dict(args.controls)
    for feature, names in (controls or {}).items():
        check_features(parser, [feature, *names], "--controls")
    text = read_text_file(parser, args.text_file, "TEXT_FILE", min_chars=2)
    baseline = None
    if args.baseline_text is not None:
        baseline = read_text_file(parser, args.baseline_text, "--baseline-text", min_chars=2)
    from lstm_interp.hub.load_pretrained import load_pretrained, source_name
    from lstm_interp.report.run_analysis import run_analysis

    out = args.out or Path("lstm_interp_analysis") / f"{source_name(args.model)}_{args.text_file.stem or 'text'}"
    written = run_analysis(
        load_pretrained(args.model, args.revision), text, out, features=features, baseline_text=baseline,
        ngram_order=args.ngram_order or DEFAULT_NGRAM_ORDER, top=args.top, report_chars=args.report_chars,
        title=f"{Path(args.model).name or args.model}: {args.text_file.name}",
        on_unknown="skip" if args.skip_unknown else "error", controls=controls, overwrite=args.overwrite, log=print,
        shard_chars=args.shard_chars, prime_chars=args.prime_chars, **trainer_arguments(args),
    )  # fmt: skip
    if written is None:  # not rank 0 of a pass over several processes: rank 0 wrote the folder
        return 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    print(f"Wrote {len(files)} files to {out}: {', '.join(files)}")
    print(f"Open {out / 'report.html'}")
    return 0
