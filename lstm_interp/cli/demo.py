"""``lstm-interp demo``: the first thing to run, :func:`lstm_interp.demo.run_demo`, then its closing summary."""

from __future__ import annotations

import argparse
from pathlib import Path

from lstm_interp import demo
from lstm_interp.cli._arguments import add_options, command_parser, positive_float, positive_int, temperature
from lstm_interp.demo import DEFAULT_BATCH_SIZE, DEFAULT_HIDDEN_SIZE, DEFAULT_LR, DEFAULT_MAX_MINUTES, DEFAULT_MAX_STEPS


def demo_parser(prog: str) -> argparse.ArgumentParser:
    # Each option is a keyword of run_demo, dashes for underscores.
    parser = command_parser(
        prog,
        "Train a small character-level LSTM on the bundled War and Peace (a few minutes on a CPU), save it, report "
        "its validation loss and print samples.",
        None,
        model=False,
    )
    add_options(
        parser,
        ("--output-dir", Path, Path(demo.DEFAULT_OUTPUT_DIR), "DIR", "where everything goes"),
        ("--max-steps", positive_int, DEFAULT_MAX_STEPS, "N", "training steps"),
        ("--max-minutes", positive_float, DEFAULT_MAX_MINUTES, "M", "stop training after this long, steps or not"),
        ("--seed", int, 0, "S", "random seed"),
        ("--hidden-size", positive_int, DEFAULT_HIDDEN_SIZE, "H", "units per layer"),
        ("--num-layers", positive_int, 2, "L", "LSTM layers"),
        ("--embedding-size", positive_int, 32, "E", "character embedding size"),
        ("--batch-size", positive_int, DEFAULT_BATCH_SIZE, "B", "sequences per batch"),
        ("--seq-len", positive_int, 100, "T", "characters per sequence"),
        ("--lr", positive_float, DEFAULT_LR, "LR", "peak learning rate"),
        ("--val-every", positive_int, 100, "N", "validate every N steps"),
        ("--sample-length", positive_int, 400, "N", "characters per sample"),
        ("--accelerator", str, "auto", "NAME", "Lightning accelerator: auto, cpu, gpu, ..."),
        ("--precision", str, "auto", "P", "Lightning precision, e.g. 32-true; auto: bf16-mixed where native"),
        ("--threads", positive_int, None, "N", "CPU threads; by default the cores not busy with other work"),
        ("--cache-dir", Path, None, "DIR", "where the encoded corpus is cached; by default ~/.cache/lstm_interp"),
    )
    add = parser.add_argument
    add("--temperatures", type=temperature, nargs="+", default=[0.5, 1.0], metavar="T", help="one sample each "
        "(default 0.5 1)")  # fmt: skip
    add("--no-stateful", dest="stateful", action="store_false", help="train on shuffled windows, each from a zero "
        "state, instead of streams carried from batch to batch")  # fmt: skip
    add("--train-on", choices=["book", "dialogue"], default="book", help="the whole book, or only its paragraphs "
        "with dialogue (validation is the book's last 10%% either way)")  # fmt: skip
    add("--no-progress-bar", action="store_true", help="hide the progress bar (for logs and CI)")
    return parser


def run_demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    options = vars(args)
    progress_bar = not options.pop("no_progress_bar")
    print(demo.summary(demo.run_demo(options.pop("output_dir"), progress_bar=progress_bar, **options)))
    return 0
