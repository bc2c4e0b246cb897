"""``lstm-interp trace MODEL``: every gate/cell/hidden state over a text, into a :class:`~lstm_interp.tracing.Trace`."""

from __future__ import annotations

import argparse
from pathlib import Path

from lstm_interp.cli._arguments import add_model_argument, add_skip_unknown_argument, positive_int, read_text_file

DTYPES = ("bfloat16", "float16", "float32")
DEFAULT_CHUNK_SIZE = 2048  # lstm_interp.tracing.trace.DEFAULT_CHUNK_SIZE, without importing torch for --help


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Record every gate, cell and hidden state of a model over a text, into a .safetensors file.",
        epilog=(
            "Example: lstm-interp trace lstm_interp_demo/model --file chapter1.txt --output chapter1.safetensors "
            "--names 'layers.*.cell' 'layers.*.forget_gate'. Read it back with lstm_interp.Trace.load(path)."
        ),
    )
    add_model_argument(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the text to trace")
    source.add_argument("--file", type=Path, metavar="PATH", help="a UTF-8 text file to trace")
    parser.add_argument("--output", "-o", type=Path, required=True, metavar="OUT", help="the .safetensors to write")
    parser.add_argument("--names", nargs="+", metavar="PATTERN", default=None, help="keep only these activations: "
                        "names or globs such as 'layers.*.cell' (default: all)")  # fmt: skip
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="storage dtype (default float32)")
    parser.add_argument("--chunk-size", type=positive_int, default=DEFAULT_CHUNK_SIZE, metavar="N", help="characters "
                        f"per chunk; memory is the trace plus one chunk (default {DEFAULT_CHUNK_SIZE})")  # fmt: skip
    add_skip_unknown_argument(parser)
    return parser


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.output.is_dir():
        parser.error(f"argument --output: {str(args.output)!r} is a folder; give a file name ending in .safetensors")
    if args.text == "":
        parser.error("argument --text: must not be empty, got ''")
    text = args.text if args.text is not None else read_text_file(parser, args.file, "--file")
    import torch

    from lstm_interp.hub.load_pretrained import load_pretrained
    from lstm_interp.tracing import trace

    result = trace(load_pretrained(args.model), text, names_filter=args.names, dtype=getattr(torch, args.dtype),
                   chunk_size=args.chunk_size, on_unknown=args.on_unknown)  # fmt: skip
    result.save(args.output)
    print(f"Wrote {args.output} ({args.output.stat().st_size / 2**20:.2f} MiB): {result.describe()}")
    return 0
