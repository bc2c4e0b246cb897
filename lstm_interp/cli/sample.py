"""``lstm-interp sample MODEL``: generate text from a saved model folder, a Hub repo id or a Lightning ``.ckpt``.

:func:`load_model` is also what ``lstm-interp trace`` uses to open its MODEL argument.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

from lstm_interp.models.char_lstm import CharLSTM

DEFAULT_PROMPT = "\n"


def load_model(source: str | os.PathLike, *, map_location: str = "cpu") -> CharLSTM:
    """Open a model: a ``save_pretrained`` folder, a Lightning checkpoint (``.ckpt``) or a Hub repo id.

    Checkpoints are read with ``weights_only=True``: they hold tensors and plain values only, so nothing in them
    can run code.

    Args:
        source: the folder, the ``.ckpt`` file, or ``"user/repo"`` on the Hugging Face Hub.
        map_location: the device to load the weights onto.

    Raises:
        FileNotFoundError: if the path does not exist, or the folder lacks one of the model's files.
        ValueError: if the files are malformed (``ConfigError``/``VocabularyError`` are ValueErrors too) or the
            checkpoint holds no vocabulary.
    """
    path = Path(source)
    if path.is_file():
        return _load_checkpoint(path, map_location)
    if str(source).endswith(".ckpt"):
        raise FileNotFoundError(f"checkpoint file {str(source)!r} does not exist")
    return CharLSTM.from_pretrained(source, map_location=map_location)


def _load_checkpoint(path: Path, map_location: str) -> CharLSTM:
    # Imported here so that sampling from a model folder does not pay for importing Lightning.
    from lstm_interp.models.char_lstm_module import CharLSTMModule

    try:
        module = CharLSTMModule.load_from_checkpoint(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, EOFError) as err:
        # torch's own message is advice about `weights_only=False`, which would not help with a text file or a
        # truncated download and is unsafe for a file from elsewhere.
        raise ValueError(
            f"{str(path)!r} is not a PyTorch checkpoint, is truncated, or holds objects other than tensors and plain "
            "values (checkpoints are loaded with weights_only=True)"
        ) from err
    except (RuntimeError, KeyError, TypeError) as err:  # a checkpoint, but of another module or another version
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"{str(path)!r} is not a checkpoint of a CharLSTMModule: {reason}") from err
    if module.network is None:
        raise ValueError(f"checkpoint {str(path)!r} has no vocabulary in its hyperparameters, so no network")
    network = module.network
    network.eval()
    return network


def looks_like_hub_id(source: str) -> bool:
    """``"user/repo"``: exactly one slash, not absolute, not starting with a dot; anything else is a local path."""
    return source.count("/") == 1 and not source.startswith((".", "/", "~")) and "\\" not in source


def check_model_argument(parser: argparse.ArgumentParser, source: str) -> None:
    """Exit with status 2 naming ``source`` if it is neither an existing path nor a possible Hub repo id."""
    if not os.path.exists(source) and not looks_like_hub_id(source):
        parser.error(f"argument MODEL: {source!r} does not exist (expected a model folder or a .ckpt file)")


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


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def temperature(text: str) -> float:
    """An argparse type: a finite number >= 0 (0 means: always the most likely character)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def build_parser(prog: str = "lstm-interp sample") -> argparse.ArgumentParser:
    """The parser of ``lstm-interp sample``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Generate text from a trained character-level model and print it.",
        epilog="Example: lstm-interp sample lstm_interp_demo/model --prompt 'The ' --temperature 0.5 1.0 --seed 0",
    )
    parser.add_argument("model", metavar="MODEL", help="a save_pretrained folder, a Lightning .ckpt or a Hub repo id")
    parser.add_argument(
        "--prompt", default=None, help="text to start from (default: a newline, or the first character it knows)"
    )
    parser.add_argument("--length", type=non_negative_int, default=500, help="characters to generate (default 500)")
    parser.add_argument(
        "--temperature",
        type=temperature,
        nargs="+",
        default=[1.0],
        metavar="T",
        help="softmax temperature; several give one sample each (default 1.0; 0 = most likely character)",
    )
    parser.add_argument("--top-k", type=positive_int, default=None, metavar="K", help="sample among the K most likely")
    parser.add_argument("--seed", type=int, default=None, help="random seed, for a reproducible sample")
    return parser


def main(argv: Sequence[str], *, prog: str = "lstm-interp sample") -> int:
    """Run ``lstm-interp sample`` with ``argv`` (the arguments after ``sample``); returns the exit status.

    With one temperature the text is printed alone (ready to pipe); with several, each sample gets a header line.

    Raises:
        FileNotFoundError, ValueError: for a broken model or a prompt outside its vocabulary (the CLI prints
            them in one line and exits with status 1).
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    check_model_argument(parser, args.model)
    model = load_model(args.model)
    vocab = model._require_vocab()
    prompt = args.prompt
    if prompt is None:
        prompt = DEFAULT_PROMPT if DEFAULT_PROMPT in vocab else vocab.chars[0]
    elif prompt == "":
        parser.error("argument --prompt: must not be empty, got ''")
    for i, temp in enumerate(args.temperature):
        # A prompt the user typed is part of what they want to read; the default one is only a starting point.
        text = model.generate(
            prompt,
            args.length,
            temperature=temp,
            top_k=args.top_k,
            seed=args.seed,
            include_prompt=args.prompt is not None,
        )
        if len(args.temperature) > 1:
            if i:
                print()
            print(f"----- temperature {temp:g} -----")
        print(text)
    return 0
