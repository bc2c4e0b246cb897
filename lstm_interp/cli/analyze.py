"""``lstm-interp analyze MODEL TEXT_FILE``: :func:`~lstm_interp.report.run_analysis` on a text file."""

from __future__ import annotations

import argparse
from pathlib import Path

from lstm_interp.cli._arguments import (
    add_corpus_pass_options,
    add_model_argument,
    add_options,
    add_output_options,
    check_features,
    corpus_pass_arguments,
    feature_controls,
    positive_int,
    read_text_file,
)

DEFAULT_NGRAM_ORDER = 9  # lstm_interp.report.run_analysis.DEFAULT_NGRAM_ORDER, without importing the analysis


def build_parser(prog: str) -> argparse.ArgumentParser:
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
    """The options ``analyze`` shares with ``explore``: output folder, features, baseline, sizes, the pass."""
    add_output_options(parser, "an earlier analysis", default_help="lstm_interp_analysis/<model>_<text>")
    add = parser.add_argument
    add("--features", nargs="+", default=None, metavar="NAME",
        help="the features to match units to (default: every registered feature that varies on the text)")  # fmt: skip
    add("--controls", type=feature_controls, nargs="+", default=None, metavar="FEATURE=CONTROL",
        help="score FEATURE's units also against these controls, comma-separated (FEATURE= for none); by default "
        "each feature's registered controls, e.g. inside_if_condition=inside_parens")  # fmt: skip
    add("--baseline-text", type=Path, default=None, metavar="FILE",
        help="train an n-gram on this text (the model's training text) and compare it with the model")  # fmt: skip
    add("--ngram-order", type=positive_int, default=None, metavar="N",
        help=f"the baseline n-gram's order (default {DEFAULT_NGRAM_ORDER}; needs --baseline-text)")  # fmt: skip
    add_options(
        parser,
        ("--top", positive_int, 10, "K", "units listed per feature"),
        ("--report-chars", positive_int, 2000, "N", "characters of the text shown on the HTML page"),
    )
    add_corpus_pass_options(parser)


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
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
        controls=controls, overwrite=args.overwrite, log=print, **corpus_pass_arguments(args),
    )  # fmt: skip
    if written is not None:  # rank 0 of a pass over several processes
        files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
        print(f"Wrote {len(files)} files to {out}: {', '.join(files)}\nOpen {out / 'report.html'}")
    return 0
