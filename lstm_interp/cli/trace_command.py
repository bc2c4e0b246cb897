"""``lstm-interp trace MODEL``: run a model over a text, save every gate/cell/hidden state to ``.safetensors``.

The file is a :class:`~lstm_interp.tracing.Trace` (``Trace.load(path)`` reads it back): one (T, H) tensor per
name such as ``layers.0.forget_gate``, plus the character ids and the text in its metadata.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from lstm_interp.cli._arguments import (
    add_model_argument,
    add_skip_unknown_argument,
    check_model_argument,
    positive_int,
    read_text_file,
)
from lstm_interp.hub.load_pretrained import load_pretrained
from lstm_interp.tracing import Trace, trace
from lstm_interp.tracing.trace import DEFAULT_CHUNK_SIZE

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def build_parser(prog: str = "lstm-interp trace") -> argparse.ArgumentParser:
    """The parser of ``lstm-interp trace``."""
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
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="storage dtype (default float32)")
    parser.add_argument("--chunk-size", type=positive_int, default=DEFAULT_CHUNK_SIZE, metavar="N", help="characters "
                        f"per chunk; memory is the trace plus one chunk (default {DEFAULT_CHUNK_SIZE})")  # fmt: skip
    add_skip_unknown_argument(parser)
    return parser


def _read_text(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    if args.text is not None:
        if not args.text:
            parser.error("argument --text: must not be empty, got ''")
        return args.text
    return read_text_file(parser, args.file, "--file")


def summarize(result: Trace, path: Path) -> str:
    """A few lines on what was written: the file, the text length, and each name with its shape and dtype."""
    size_mib = path.stat().st_size / 2**20
    lines = [
        f"Wrote {path} ({size_mib:.2f} MiB): {len(result.tokens)} characters, {result.cell} with "
        f"{result.num_layers} layer(s), {len(result)} activation(s)"
    ]
    width = max(len(name) for name in result)
    for name, tensor in result.items():
        lines.append(f"  {name:<{width}}  {tuple(tensor.shape)}  {str(tensor.dtype).removeprefix('torch.')}")
    return "\n".join(lines)


def main(argv: Sequence[str], *, prog: str = "lstm-interp trace") -> int:
    """Run ``lstm-interp trace`` with ``argv`` (the arguments after ``trace``); returns the exit status.

    Raises:
        FileNotFoundError, ValueError: for a broken model, text outside its vocabulary or ``--names`` that match
            nothing (the CLI prints them in one line and exits with status 1).
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    check_model_argument(parser, args.model)
    if args.output.is_dir():
        parser.error(f"argument --output: {str(args.output)!r} is a folder; give a file name ending in .safetensors")
    text = _read_text(parser, args)
    result = trace(load_pretrained(args.model), text, names_filter=args.names, dtype=DTYPES[args.dtype],
                   chunk_size=args.chunk_size, on_unknown="skip" if args.skip_unknown else "error")  # fmt: skip
    result.save(args.output)
    print(summarize(result, args.output))
    return 0
