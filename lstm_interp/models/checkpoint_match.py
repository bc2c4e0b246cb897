"""``match_checkpoint``: a Lightning checkpoint held against the arguments of a run that resumes or evaluates it.

``lstm-interp fit|validate|test --ckpt_path FILE`` calls it right after parsing, before anything is built or written
(:class:`~lstm_interp.cli.char_lstm_cli.CharLSTMCLI`). The rules, in one place:

- The file is read with :func:`~lstm_interp.models.checkpoint.read_checkpoint`: a text file, random bytes, a
  truncated or empty file is a ``ValueError`` naming the file and the problem.
- A model or data argument left out (set by no flag, ``--config`` file or environment variable) is taken from the
  checkpoint (:attr:`CheckpointMatch.adopted`), so a resume needs no flag repeated.
- One that was given and differs from the checkpoint's value is a conflict (:attr:`CheckpointMatch.conflicts`): for
  ``fit`` every model and data argument counts; ``validate``/``test`` may evaluate on other data, so only model
  arguments do. The data module's sources (``text``, ``files``, ``dataset``, ``corpus``) are one setting;
  ``cache_dir`` and ``num_workers`` say how a run reads its corpus, and are neither compared nor adopted.
- ``fit`` from a checkpoint already at ``max_steps`` has nothing to train (:meth:`CheckpointMatch.nothing_to_train`).
- Once the data module has worked out its vocabulary, one that differs from the checkpoint's is a ``ValueError``
  naming the file, both sizes and the characters in one and not the other (:meth:`CheckpointMatch.check_vocab`):
  Lightning would fail on the embedding's size with a raw "size mismatch", or, for as many characters in another
  order, load them and silently mean other letters.

``last``, ``best``, ``hpc``, ``registry...`` and URLs are left to Lightning, which resolves them once the trainer
exists: :func:`match_checkpoint` returns ``None`` for them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lstm_interp.models.checkpoint import read_checkpoint

# `--ckpt_path` values that Lightning resolves itself once the trainer exists, rather than paths of files.
LIGHTNING_CKPT_NAMES = ("last", "best", "hpc")
# The data module's sources (CharDataModule's `text`, `files`, `dataset`, `corpus`): exactly one is given, so they
# are compared as one setting.
DATA_SOURCES = ("text", "files", "dataset", "corpus")
# Data arguments that say how a run reads the corpus, not what the model is trained on: a resumed fit on another
# machine may well cache elsewhere or use more workers, so they are neither compared nor taken from the checkpoint.
DATA_RUN_OPTIONS = ("cache_dir", "num_workers")

Arguments = Mapping[str, Any]


@dataclass(frozen=True)
class CheckpointMatch:
    """What :func:`match_checkpoint` found: the values to take from the checkpoint, and what contradicts it.

    Args:
        path: the checkpoint file.
        adopted: ``{"model": {...}, "data": {...}}``, the checkpoint's values of the arguments not given (groups
            with nothing to adopt are left out).
        conflicts: ``("group.key=<trained>", "group.key=<asked>")`` for each given argument that differs.
        vocab: the characters the checkpoint was trained on (``None`` if it does not say).
        global_step: the step it was saved at (``None`` if it does not say).
    """

    path: str
    adopted: dict[str, dict[str, Any]] = field(default_factory=dict)
    conflicts: tuple[tuple[str, str], ...] = ()
    vocab: str | None = None
    global_step: int | None = None

    def conflict_message(self) -> str | None:
        """One line naming every conflict with both values and the ways out, or ``None`` without conflicts."""
        if not self.conflicts:
            return None
        trained = ", ".join(had for had, _ in self.conflicts)
        asked = ", ".join(want for _, want in self.conflicts)
        return (
            f"--ckpt_path {self.path!r} was trained with {trained}, but the command line asks for {asked}; leave "
            "those out (flags or --config keys) to resume with the checkpoint's values, or train a new model "
            "without --ckpt_path"
        )

    def nothing_to_train(self, max_steps: object) -> str | None:
        """The message for a fit to ``max_steps`` from a checkpoint already there, else ``None``.

        Lightning would train 0 steps and the CLI would still save the model and a log folder: a run that looks like
        training happened. Called before anything is built, so nothing need be written.
        """
        step = self.global_step
        if isinstance(step, int) and isinstance(max_steps, int) and 0 <= max_steps <= step:
            return (
                f"checkpoint {self.path!r} is already at step {step} and --trainer.max_steps is {max_steps}: nothing "
                "to train, nothing saved (raise --trainer.max_steps to train further)"
            )
        return None

    def check_vocab(self, chars: str, data: Arguments, *, fitting: bool) -> None:
        """Raise if the data's vocabulary ``chars`` is not the checkpoint's (same characters in the same order).

        Args:
            chars: the data module's characters (``datamodule.vocab.chars``).
            data: the data arguments, to name the data's source in the message.
            fitting: ``fit`` (the way out is the training corpus) rather than ``validate``/``test``.

        Raises:
            ValueError: naming the file, both sizes and the characters in one and not the other.
        """
        trained = self.vocab
        if trained is None or chars == trained:
            return
        only_trained, only_data = set(trained) - set(chars), set(chars) - set(trained)
        if only_trained or only_data:
            difference = f"only the checkpoint has {_some(only_trained)}, only the data has {_some(only_data)}"
        else:
            difference = "the same characters in another order"
        if fitting:
            way_out = "use the corpus it was trained on, or train a new model without --ckpt_path"
        else:
            way_out = "evaluate it on text of its vocabulary (--data.vocab with its characters, --data.on_unknown skip)"
        raise ValueError(
            f"checkpoint {self.path!r} was trained on a vocabulary of {len(trained)} characters, but the data "
            f"({source_of(data)}) has {len(chars)}: {difference}; {way_out}"
        )


def match_checkpoint(
    path: str | os.PathLike,
    config: Mapping[str, Arguments],
    given: Mapping[str, Arguments | None] | None = None,
    *,
    fitting: bool = True,
) -> CheckpointMatch | None:
    """Hold the checkpoint at ``path`` against a run's arguments (module docstring).

    Args:
        path: the ``--ckpt_path`` value.
        config: the run's parsed arguments by group: ``{"model": {...}, "data": {...}}``.
        given: the same groups holding only the arguments set by flags, ``--config`` files or the environment
            (``None``, or a missing group: none were).
        fitting: ``fit``, where data arguments must match too; ``validate``/``test`` may use other data.

    Returns:
        A :class:`CheckpointMatch`, or ``None`` for a name Lightning resolves itself (``last``, ``best``, ``hpc``,
        ``registry...``, a URL) that is not a file here.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not a Lightning checkpoint of a ``CharLSTMModule`` (see ``read_checkpoint``).
        TypeError: ``config`` without a ``"model"`` mapping.

    Example::

        >>> match = match_checkpoint("run.ckpt", {"model": {"hidden_size": 64}, "data": {}})  # doctest: +SKIP
        >>> match.adopted  # doctest: +SKIP
        {'model': {'hidden_size': 512}}
    """
    if not isinstance(config, Mapping) or not isinstance(config.get("model"), Mapping):
        raise TypeError(f"`config` must map 'model' (and 'data') to the parsed arguments, got {config!r:.200}")
    path = os.fspath(path)
    lightning_name = path in LIGHTNING_CKPT_NAMES or path.startswith("registry")
    if "://" in path or (lightning_name and not os.path.isfile(path)):
        return None
    given = given or {}
    checkpoint = read_checkpoint(path)
    hparams = checkpoint["hyper_parameters"]
    adopted: dict[str, dict[str, Any]] = {}
    conflicts: list[tuple[str, str]] = []
    # `model.vocab` is not a parser value (it is linked from the data): it is held against the data's in check_vocab.
    model = config["model"]
    keys = [key for key in hparams if key in model]
    adopted["model"] = _resolve("model", model, given.get("model"), hparams, keys, conflicts)
    data_hparams = checkpoint.get("datamodule_hyper_parameters")
    data = config.get("data")
    if isinstance(data_hparams, Mapping) and isinstance(data, Mapping):
        # Resuming trains on the same data; validate and test may well evaluate a checkpoint on other data.
        data_conflicts = conflicts if fitting else []
        given_data = given.get("data")
        excluded = (*DATA_SOURCES, *DATA_RUN_OPTIONS)
        keys = [key for key in data_hparams if key in data and key not in excluded]
        adopted["data"] = _resolve("data", data, given_data, data_hparams, keys, data_conflicts)
        adopted["data"].update(_resolve_source(given_data, data_hparams, data_conflicts))
    vocab, step = hparams.get("vocab"), checkpoint.get("global_step")
    return CheckpointMatch(
        path=path,
        adopted={group: values for group, values in adopted.items() if values},
        conflicts=tuple(conflicts),
        vocab=vocab if isinstance(vocab, str) else None,
        global_step=step if isinstance(step, int) and not isinstance(step, bool) else None,
    )


def source_of(data: Arguments) -> str:
    """The data's source as its flag, e.g. ``data.files='book.txt'`` (a text is shown by its length).

    Example::

        >>> source_of({"files": "book.txt"}), source_of({"text": "abc"})
        ("data.files='book.txt'", 'a text of 3 characters')
    """
    for key in DATA_SOURCES:
        value = data.get(key)
        if value is not None:
            return f"a text of {len(value)} characters" if key == "text" else f"data.{key}={_plain(value)!r}"
    return "no source"


def _plain(value: Any) -> Any:
    """A parsed or checkpointed value in one form for comparing and printing: tuples as lists, paths as strings."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _comparable(key: str, value: Any) -> Any:
    """``_plain(value)``, with ``files`` as a list of normalised paths: ``a.txt``, ``./a.txt`` and ``[a.txt]`` agree."""
    value = _plain(value)
    if key == "files" and value is not None:
        items = [value] if isinstance(value, str) else value
        return [os.path.normpath(item) if isinstance(item, str) else item for item in items]
    return value


def _resolve(
    group: str,
    config: Arguments,
    given: Arguments | None,
    saved: Arguments,
    keys: Sequence[str],
    conflicts: list[tuple[str, str]],
) -> dict[str, Any]:
    """The checkpoint's values for the ``keys`` not in ``given``; a conflict is appended for each given one that
    differs (``("group.key=trained", "group.key=asked")``)."""
    adopted = {}
    for key in keys:
        want, had = config[key], saved[key]
        if given is None or key not in given:
            adopted[key] = had
        elif _comparable(key, want) != _comparable(key, had):
            conflicts.append((f"{group}.{key}={_plain(had)!r}", f"{group}.{key}={_plain(want)!r}"))
    return adopted


def _resolve_source(given: Arguments | None, saved: Arguments, conflicts: list[tuple[str, str]]) -> dict[str, Any]:
    """The checkpoint's data source when none is given, or a conflict when another one is.

    The sources are one setting: taking ``files`` from the checkpoint next to a given ``corpus`` would give the data
    module two. A ``text`` (never saved) or a dataset object (saved as nothing) cannot be compared, so is accepted.
    """
    had = {key: saved[key] for key in DATA_SOURCES if saved.get(key) is not None}
    want = {key: given[key] for key in DATA_SOURCES if given is not None and given.get(key) is not None}
    if not want:
        return had
    if had and {k: _comparable(k, v) for k, v in want.items()} != {k: _comparable(k, v) for k, v in had.items()}:
        conflicts.append(
            (
                ", ".join(f"data.{key}={_plain(value)!r}" for key, value in had.items()),
                ", ".join(f"data.{key}={_plain(value)!r}" for key, value in want.items()),
            )
        )
    return {}


def _some(chars: set[str], limit: int = 10) -> str:
    """Up to ``limit`` of ``chars``, sorted, as one quoted string (``'AB\\n'``), or ``nothing``."""
    if not chars:
        return "nothing"
    shown = "".join(sorted(chars)[:limit])
    return f"{shown!r}" + (f" and {len(chars) - limit} more" if len(chars) > limit else "")


__all__ = [
    "DATA_RUN_OPTIONS",
    "DATA_SOURCES",
    "LIGHTNING_CKPT_NAMES",
    "CheckpointMatch",
    "match_checkpoint",
    "source_of",
]
