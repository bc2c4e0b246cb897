"""``lstm-interp``: one console script, one subcommand per job (train, evaluate, sample, trace, analyse, publish).

A command's module is imported when it is chosen, so ``lstm-interp --help`` or ``sample`` never pays for importing
Lightning. It has ``<name>_parser(prog)`` and ``run_<name>(parser, args)``; this module parses, checks MODEL before
any work, runs the command and turns what it raises into an exit status. ``fit``/``validate``/``test`` are handed
whole to :class:`~lstm_interp.cli.char_lstm_cli.CharLSTMCLI` (a ``LightningCLI``).

Exit codes: 0 on success, 2 for a bad argument (argparse's convention, with a one-line message naming the value),
1 for an error while running (a model folder without its files, text outside the vocabulary, a folder holding
foreign files, ...), reported in one line without a traceback (``LSTM_INTERP_DEBUG=1`` shows it); 130 on Ctrl+C and
141 when the reader of stdout has gone (``| head``), as a shell reports them, quietly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NamedTuple

from lstm_interp.cli._arguments import check_model_argument

PROG = "lstm-interp"
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


class Command(NamedTuple):
    """A subcommand: its module in ``lstm_interp.cli`` (imported on use) and its one-line help."""

    module: str
    help: str


COMMANDS: dict[str, Command] = {
    "fit": Command("char_lstm_cli", "train a model from a YAML config and flags (LightningCLI)"),
    "validate": Command("char_lstm_cli", "evaluate a model on the validation split (--ckpt_path)"),
    "test": Command("char_lstm_cli", "evaluate a model on the test split (--ckpt_path)"),
    "sample": Command("models", "generate text from a model: pretrained name, folder, .ckpt, Hub repo"),
    "trace": Command("models", "record every gate, cell and hidden state over a text"),
    "demo": Command("demo", "train a small model on War and Peace in a few minutes, then sample"),
    "analyze": Command("analysis", "find interpretable cells in a text and compare with an n-gram"),
    "explore": Command("analysis", "analyse a pretrained model (novel, code, foldoc) on your text"),
    "ablate": Command("experiments", "ablate units: the loss at target characters, against random units"),
    "atlas": Command("analysis", "every unit of every layer: top contexts, histogram, features, output"),
    "index": Command("analysis", "trace a corpus into a state index (select & match), on any devices"),
    "probe": Command("experiments", "sparse probes: how many units each feature needs, and how selective"),
    "push": Command("models", "upload a model and its model card to the Hugging Face Hub, in one commit"),
    "steer": Command("experiments", "clamp, ablate or scale units while sampling and compare the texts"),
    "serve": Command("serve", "a live explorer in the browser: trace what you type, select & match"),
}
LIGHTNING_COMMANDS = ("fit", "validate", "test")
# The way out of text outside the vocabulary for the commands without --skip-unknown (the others: pass it).
UNKNOWN_CHAR_HINTS = {
    "sample": "Use only characters the model knows in --prompt.",
    "steer": "Use only characters the model knows in --prompt.",
    "ablate": "Use only characters the model knows in TEXT_FILE: the loss is measured at every one.",
    "probe": "Use only characters the model knows in TEXT_FILE: the features are computed on the text as it is.",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: ``--help``, ``--version`` and the list of subcommands."""
    from lstm_interp._version import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train character-level LSTMs with Lightning and look inside them.",
        epilog=f"Run '{PROG} COMMAND --help' for the options of a command. Start with '{PROG} demo'.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", required=True)
    for name, command in COMMANDS.items():
        # The real parsers live in the command modules; these entries only give the listing and the choices.
        subparsers.add_parser(name, help=command.help, add_help=False)
    return parser


def parser_of(name: str) -> argparse.ArgumentParser:
    """The parser of ``lstm-interp <name>`` (not of the Lightning commands, which parse their own)."""
    return getattr(_module(name), f"{name}_parser")(f"{PROG} {name}")


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"lstm_interp.cli.{COMMANDS[name].module}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lstm-interp`` with ``argv`` (default ``sys.argv[1:]``, e.g. ``["sample", "novel", "--seed", "0"]``)
    and return the exit status of the module docstring, ``SystemExit`` included, so callers in Python get a number."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if not args or args[0] not in COMMANDS:
            # Only `--help`, `--version`, a missing or an unknown command get here; all of them exit.
            build_parser().parse_args(args)
            return 2  # unreachable with a required subcommand, but keeps the return type honest
        return _run_command(args[0], args[1:])
    except SystemExit as exit_:
        return _exit_status(exit_.code)


def _run_command(name: str, argv: list[str]) -> int:
    prog = f"{PROG} {name}"
    args = None
    try:
        if name in LIGHTNING_COMMANDS:
            return _module(name).main(name, argv, prog=PROG)
        module = _module(name)
        parser = getattr(module, f"{name}_parser")(prog)
        args = parser.parse_args(argv)
        if getattr(args, "model", None) is not None:
            check_model_argument(parser, args.model)
        return getattr(module, f"run_{name}")(parser, args)
    except KeyboardInterrupt:
        # Ctrl+C is how a user stops a sample they have read enough of, or the server: one line, no traceback.
        try:
            sys.stdout.flush()  # what was printed before is still the user's
        except BrokenPipeError:
            _silence_stdout()
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()  # the reader has gone (`| head`): nothing more written to stdout may fail at exit
        return EXIT_BROKEN_PIPE
    except (OSError, ValueError) as err:
        # Missing files, malformed models and text outside the vocabulary (VocabularyError and ConfigError are
        # ValueErrors) are the user's to fix: one line says what and where; a traceback would only bury it.
        if os.environ.get("LSTM_INTERP_DEBUG"):
            raise
        print(f"{prog}: error: {_one_line(_cli_hint(name, args, err))}", file=sys.stderr)
        return 1


def _silence_stdout() -> None:
    """Point the process's stdout (its file descriptor) at ``os.devnull``, so that nothing more written to it can
    fail: Python's documented recipe for a writer whose reader has gone, without which the flush at interpreter exit
    raises a second ``BrokenPipeError`` ("Exception ignored ...")."""
    try:
        fileno = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a StringIO in tests, a closed stream): nothing will be flushed to a pipe at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fileno)
    finally:
        os.close(devnull)


def _cli_hint(name: str, args: argparse.Namespace | None, err: BaseException) -> BaseException:
    """A VocabularyError's hint rewritten with command ``name``'s way out (its Python hint names ``on_unknown``)."""
    from lstm_interp.vocab import VocabularyError

    hint = "Pass --skip-unknown to drop them." if hasattr(args, "on_unknown") else UNKNOWN_CHAR_HINTS.get(name)
    return err.with_hint(hint) if isinstance(err, VocabularyError) and hint else err


def _one_line(err: BaseException) -> str:
    message = str(err) or type(err).__name__
    # FileNotFoundError from open() carries the path separately from its message.
    filename = getattr(err, "filename", None)
    if isinstance(err, OSError) and filename is not None and str(filename) not in message:
        message = f"{message}: {filename!r}"
    return " ".join(message.split())


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit("message") means: print it and fail
    return 1


if __name__ == "__main__":
    sys.exit(main())
