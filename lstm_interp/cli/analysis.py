"""``lstm-interp analyze``, ``explore``, ``atlas`` and ``index``: passes over a text or corpus on Lightning's engine.

They call :func:`~lstm_interp.report.run_analysis`, :func:`~lstm_interp.report.atlas_pages.run_atlas` and
:meth:`~lstm_interp.analysis.StateIndex.build` (or :func:`~lstm_interp.analysis.index_cache.cached_index`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lstm_interp.cli._arguments import (
    MODEL_HELP,
    add_corpus_pass_options,
    add_options,
    add_output_options,
    command_parser,
    corpus_pass_arguments,
    existing_file,
    feature_controls,
    feature_name,
    non_negative_int,
    positive_int,
    read_text_file,
)

# The library's defaults, repeated so that --help imports no torch (tests/test_cli_defaults.py holds them equal).
DEFAULT_NGRAM_ORDER = 9  # lstm_interp.report.run_analysis
DEFAULT_K, DEFAULT_WINDOW, DEFAULT_BINS = 20, 40, 40  # lstm_interp.analysis.unit_atlas, as the next line
DEFAULT_FEATURE_CHARS, DEFAULT_ABLATION_CHARS, DEFAULT_SEGMENT_CHARS = 20_000, 1_000, 16_384


def analyze_parser(prog: str) -> argparse.ArgumentParser:
    parser = command_parser(
        prog,
        "Find the units that track each feature of a text (find_cells), measure gate saturation, write figures and "
        "an HTML page; with --baseline-text, compare the model with an n-gram character by character (loss by "
        "character class, closing braces by distance, error breakdown).",
        "lstm-interp analyze lstm_interp_demo/model chapter2.txt --features inside_quotes position_in_line "
        "--baseline-text war_and_peace_train.txt --ngram-order 9. The features are listed by an unknown --features "
        "name.",
    )
    parser.add_argument("text_file", type=existing_file, metavar="TEXT_FILE", help="the UTF-8 text to analyse")
    _add_analysis_options(parser)
    return parser


def explore_parser(prog: str) -> argparse.ArgumentParser:
    parser = command_parser(
        prog,
        "Analyse a pretrained model on a text: the units that track each feature, gate saturation, figures and an "
        "HTML page (what `lstm-interp analyze` writes).",
        "lstm-interp explore novel --text chapter.txt --features inside_quotes position_in_line; lstm-interp "
        "explore code --text driver.c --features inside_comment brace_depth.",
        model=False,
    )
    parser.add_argument("model", metavar="NAME", help=MODEL_HELP)
    parser.add_argument("--text", dest="text_file", type=existing_file, required=True, metavar="FILE",
                        help="the UTF-8 text to analyse")  # fmt: skip
    _add_analysis_options(parser)
    return parser


def _add_analysis_options(parser: argparse.ArgumentParser) -> None:
    add_output_options(parser, "an earlier analysis", default_help="lstm_interp_analysis/<model>_<text>")
    add_options(
        parser,
        ("--features", feature_name, None, "NAME", "the features to match units to (default: every registered feature "
         "that varies on the text)", {"nargs": "+"}),
        ("--controls", feature_controls, None, "FEATURE=CONTROL", "score FEATURE's units also against these controls, "
         "comma-separated (FEATURE= for none); by default each feature's registered controls, e.g. "
         "inside_if_condition=inside_parens", {"nargs": "+"}),
        ("--baseline-text", existing_file, None, "FILE", "train an n-gram on this text (the model's training text) and "
         "compare it with the model"),
        ("--ngram-order", positive_int, None, "N", f"the baseline n-gram's order (default {DEFAULT_NGRAM_ORDER}; needs "
         "--baseline-text)"),
        ("--top", positive_int, 10, "K", "units listed per feature"),
        ("--report-chars", positive_int, 2000, "N", "characters of the text shown on the HTML page"),
    )  # fmt: skip
    add_corpus_pass_options(parser)


def run_analyze(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.ngram_order is not None and args.baseline_text is None:
        parser.error(
            f"argument --ngram-order: {args.ngram_order} needs --baseline-text FILE (the n-gram's training text)"
        )
    text = read_text_file(parser, args.text_file, "TEXT_FILE", min_chars=2)
    baseline = args.baseline_text and read_text_file(parser, args.baseline_text, "--baseline-text", min_chars=2)
    from lstm_interp.hub.load_pretrained import load_pretrained, source_name
    from lstm_interp.report.run_analysis import run_analysis

    out = args.out or Path("lstm_interp_analysis") / f"{source_name(args.model)}_{args.text_file.stem or 'text'}"
    written = run_analysis(
        load_pretrained(args.model, args.revision), text, out, baseline_text=baseline,
        features=args.features and list(dict.fromkeys(args.features)), controls=args.controls and dict(args.controls),
        ngram_order=args.ngram_order or DEFAULT_NGRAM_ORDER, top=args.top, report_chars=args.report_chars,
        title=f"{Path(args.model).name or args.model}: {args.text_file.name}",
        overwrite=args.overwrite, log=print, **corpus_pass_arguments(args),
    )  # fmt: skip
    if written is not None:  # rank 0 of a pass over several processes
        files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
        print(f"Wrote {len(files)} files to {out}: {', '.join(files)}\nOpen {out / 'report.html'}")
    return 0


run_explore = run_analyze


def atlas_parser(prog: str) -> argparse.ArgumentParser:
    parser = command_parser(
        prog,
        "Describe every unit of every layer from one streaming pass over a corpus: its top and bottom contexts "
        "coloured by its value, its histogram and saturation, its gate habits, its best features with their "
        "controls (on the corpus's first characters), what it does to the output (readout weights; the loss when "
        "it is zeroed, on the first characters). Writes atlas.json, a sortable index.html and one page per unit.",
        "lstm-interp atlas novel book.txt --out atlas_novel/, then open atlas_novel/index.html",
    )
    add = parser.add_argument
    add("corpus", type=existing_file, nargs="+", metavar="CORPUS", help="UTF-8 text files, read end to end")
    add_output_options(parser, "an earlier atlas", default_help="lstm_interp_atlas/<model>_<corpus>")
    add("--layers", nargs="+", default=None, metavar="LAYER", help="layers to describe, e.g. layers.1 (default: all)")
    add("--quantity", default=None, help="the quantity described (default the state: cell of an LSTM, else hidden)")
    add_options(
        parser,
        ("--top-k", positive_int, DEFAULT_K, "K", "top and bottom contexts per unit"),
        ("--window", positive_int, DEFAULT_WINDOW, "N", "characters either side of a context; a kept peak dominates "
         "them"),
        ("--bins", positive_int, DEFAULT_BINS, "N", "histogram bins over -1..+1"),
        ("--feature-chars", non_negative_int, DEFAULT_FEATURE_CHARS, "N", "score features on the first N characters; "
         "0: none"),
        ("--ablation-chars", non_negative_int, DEFAULT_ABLATION_CHARS, "N", "zero each unit over the first N "
         "characters, one run per unit; 0: none"),
        ("--segment-chars", positive_int, DEFAULT_SEGMENT_CHARS, "N", "characters traced at a time"),
        ("--features", feature_name, None, "NAME", "registered features to score (default: all)", {"nargs": "+"}),
    )  # fmt: skip
    add("--title", default=None, help="the pages' title (default: Unit atlas: <model>)")
    add_corpus_pass_options(parser)
    return parser


def run_atlas(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from lstm_interp.hub.load_pretrained import load_pretrained, source_name
    from lstm_interp.report import atlas_pages

    out = args.out or Path("lstm_interp_atlas") / f"{source_name(args.model)}_{args.corpus[0].stem or 'corpus'}"
    atlas_pages.check_atlas_folder(out, overwrite=args.overwrite)
    written = atlas_pages.run_atlas(
        load_pretrained(args.model, args.revision), list(args.corpus), out,
        title=args.title or f"Unit atlas: {Path(args.model.rstrip('/')).name or args.model}", overwrite=args.overwrite,
        log=print, layers=args.layers, quantity=args.quantity, k=args.top_k, window=args.window, bins=args.bins,
        feature_chars=args.feature_chars, ablation_chars=args.ablation_chars, features=args.features,
        segment_chars=args.segment_chars, **corpus_pass_arguments(args),
    )  # fmt: skip
    if written is not None:  # rank 0
        print(f"Open {out / 'index.html'}")
    return 0


def index_parser(prog: str) -> argparse.ArgumentParser:
    parser = command_parser(
        prog,
        "Trace a corpus and write its state index (each unit on or off at each character), the search behind "
        "select & match, as a folder.",
        None,
    )
    add = parser.add_argument
    add("corpus", nargs="+", type=existing_file, metavar="CORPUS", help="UTF-8 text files, indexed end to end")
    add_output_options(parser, "an earlier index", default_help="the index cache, where serve finds it")
    add_options(parser, ("--threshold", float, 0.3, "THETA", "a unit is on where its value is above it"))
    add("--names", nargs="+", default=None, metavar="NAME",
        help="the quantities to index, e.g. layers.1.hidden (default: every layer's state)")  # fmt: skip
    add_corpus_pass_options(parser)
    return parser


def run_index(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from lstm_interp.analysis import StateIndex
    from lstm_interp.analysis.index_cache import cached_index
    from lstm_interp.hub.load_pretrained import load_pretrained

    model = load_pretrained(args.model, args.revision)
    options = {"threshold": args.threshold, "names": args.names, **corpus_pass_arguments(args)}
    if args.out is None:
        index = cached_index(model, list(args.corpus), **options)
    else:
        index = StateIndex.build(model, list(args.corpus), args.out, overwrite=args.overwrite, **options)
    if index is not None:  # rank 0
        print(f"wrote {index.path}: {index.num_steps:,} characters, names {index.names}")
    return 0
