"""``lstm-interp fit|validate|test``: a ``LightningCLI`` for :class:`CharLSTMModule` on a :class:`CharDataModule`.

Everything the model, the data and the trainer accept is a flag (``--model.hidden_size 256``,
``--data.files book.txt``, ``--trainer.max_steps 5000``) or a key of a YAML file given with ``--config``; see
``configs/`` in the repository. The model's vocabulary is never given: it is linked from the data.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_only

from lstm_interp.data import CharDataModule
from lstm_interp.models.char_lstm_module import CharLSTMModule
from lstm_interp.models.checkpoint import read_checkpoint
from lstm_interp.vocab import CharVocab

MODEL_DIRNAME = "model"
# `--ckpt_path` values that Lightning resolves itself once the trainer exists, rather than paths of files.
LIGHTNING_CKPT_NAMES = ("last", "best", "hpc")
# The data module's sources: exactly one is given, so they are compared as one setting.
DATA_SOURCES = ("text", "files", "dataset", "corpus")
# Data arguments that say how this run reads the corpus, not what the model is trained on: a resumed fit on another
# machine may well cache elsewhere or use more workers, so they are neither compared nor taken from the checkpoint.
DATA_RUN_OPTIONS = ("cache_dir", "num_workers")


def vocab_chars(vocab: CharVocab) -> str:
    """The characters of a vocabulary, as the string :class:`CharLSTMModule` takes (and keeps in its hparams)."""
    return vocab.chars


class CharLSTMCLI(LightningCLI):
    """``LightningCLI`` with the vocabulary linked from the data to the model and the network saved after ``fit``.

    - ``model.vocab`` is computed from ``data.vocab`` once the data module exists, so one source of text sets
      both and the two can never disagree.
    - After ``fit``, the trained network is written with ``save_pretrained`` to ``<trainer.log_dir>/model``
      (``config.json``, ``vocab.json``, ``model.safetensors``) and the path is printed; ``lstm-interp sample``
      and :meth:`CharLSTM.from_pretrained` read that folder.
    - Checkpoints given with ``--ckpt_path`` are loaded with ``weights_only=True`` unless ``--weights_only false``
      is passed: a checkpoint of this module holds only tensors and plain values, and loading no pickled code
      is the safe default.
    - ``--ckpt_path`` is checked against the request right after parsing, before anything is built or written:

      - The file is read with :func:`~lstm_interp.models.checkpoint.read_checkpoint`; a text file, random bytes,
        a truncated or empty file is a ``ValueError`` naming the file and the problem.
      - A model or data argument left out (set by no flag, ``--config`` file or environment variable) is taken
        from the checkpoint, so a resume needs no flag repeated. For ``fit``, and for model arguments of
        ``validate``/``test``, one that was given and differs from the checkpoint's value exits with status 2 and
        a message listing every such field with both values; ``validate``/``test`` may evaluate on other data.
        ``data.cache_dir`` and ``data.num_workers`` say how this run reads the corpus and are neither compared nor
        taken from the checkpoint.
      - ``fit`` from a checkpoint already at ``--trainer.max_steps`` prints so and exits with status 0, having
        written nothing (no log folder, no saved model).
      - Once the data module has worked out its vocabulary, one that differs from the checkpoint's is a
        ``ValueError`` naming the file, both sizes and characters in one and not the other, before training.

      ``--ckpt_path last``/``best``/``hpc``/``registry...`` and URLs are left to Lightning, which resolves them.
    - The optimiser and schedule are the module's own (``--model.optimizer``, ``--model.lr_schedule``), so
      LightningCLI's generic ``--optimizer``/``--lr_scheduler`` groups are left out unless asked for.

    Args:
        model_class: the LightningModule (default :class:`CharLSTMModule`).
        datamodule_class: the LightningDataModule (default :class:`CharDataModule`).
        args: the command line, e.g. ``["fit", "--config", "configs/tiny.yaml"]``; ``None`` reads ``sys.argv``.
        **kwargs: passed to ``LightningCLI``; ``save_config_kwargs`` defaults to ``{"overwrite": True}`` and
            ``auto_configure_optimizers`` to ``False``.

    Example::

        >>> args = ["fit", "--data.corpus", "war_and_peace", "--trainer.max_steps", "10"]
        >>> cli = CharLSTMCLI(args=args)  # doctest: +SKIP
        >>> cli.trainer.log_dir  # doctest: +SKIP
        'lightning_logs/version_0'
    """

    def __init__(
        self,
        model_class: type[CharLSTMModule] = CharLSTMModule,
        datamodule_class: type[CharDataModule] = CharDataModule,
        *,
        args: ArgsType = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("auto_configure_optimizers", False)
        self.saved_model_dir: Path | None = None
        # The `--ckpt_path` file and its vocabulary, kept from the check after parsing for the one after the data
        # module exists (the vocabulary is only known then).
        self._resumed: tuple[str, str | None] | None = None
        super().__init__(model_class, datamodule_class, args=args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab", "model.vocab", apply_on="instantiate", compute_fn=vocab_chars)

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        # LightningCLI warns when `args` is given while sys.argv has arguments too; `lstm-interp` always passes
        # what is left of sys.argv after the subcommand name, so that warning would fire on every run.
        parse = parser.parse_object if isinstance(args, (dict, Namespace)) else parser.parse_args
        self.config = parse(args)
        subcommand = self.config.get("subcommand")
        if subcommand is not None and self.config[subcommand].get("ckpt_path"):
            # Parsed again without the defaults, what is left is what the flags, --config files and environment set:
            # the arguments a resume must not contradict (the others it takes from the checkpoint).
            given = parse(args, defaults=False)[subcommand]
            # Here rather than in `before_instantiate_classes`: LightningCLI's `_parse_ckpt_path` runs between them.
            self._match_checkpoint(subcommand, given)

    def _parse_ckpt_path(self) -> None:
        # LightningCLI's own version torch.loads the `--ckpt_path` file with no word of which file failed ("KeyError:
        # 101" for a text file) and overwrites the model arguments given on the command line with the checkpoint's;
        # `_match_checkpoint`, run from `parse_arguments`, does its job with clear errors.
        return

    def _match_checkpoint(self, subcommand: str, given: Namespace) -> None:
        """Check the ``--ckpt_path`` checkpoint against the ``given`` arguments and take from it the ones not given."""
        config = self.config[subcommand]
        path = os.fspath(config["ckpt_path"])
        lightning_name = path in LIGHTNING_CKPT_NAMES or path.startswith("registry")
        if "://" in path or (lightning_name and not os.path.isfile(path)):
            return  # Lightning resolves these once the trainer exists (fsspec URLs, the callbacks' checkpoints)
        checkpoint = read_checkpoint(path)  # FileNotFoundError, ValueError: main() reports them in one line
        hparams = checkpoint["hyper_parameters"]
        adopted: dict[str, dict[str, Any]] = {}
        conflicts: list[tuple[str, str]] = []
        # `model.vocab` is not a parser value (it is linked from the data); it is checked in after_instantiate_classes.
        keys = [key for key in hparams if key in config["model"]]
        adopted["model"] = _resolve("model", config["model"], given.get("model"), hparams, keys, conflicts)
        data_hparams = checkpoint.get("datamodule_hyper_parameters")
        if isinstance(data_hparams, Mapping):
            # Resuming trains on the same data; validate and test may well evaluate a checkpoint on other data.
            data_conflicts = conflicts if subcommand == "fit" else []
            data, given_data = config["data"], given.get("data")
            excluded = (*DATA_SOURCES, *DATA_RUN_OPTIONS)
            keys = [key for key in data_hparams if key in data and key not in excluded]
            adopted["data"] = _resolve("data", data, given_data, data_hparams, keys, data_conflicts)
            adopted["data"].update(_resolve_source(given_data, data_hparams, data_conflicts))
        if conflicts:
            trained = ", ".join(had for had, _ in conflicts)
            asked = ", ".join(want for _, want in conflicts)
            self._argument_error(
                f"--ckpt_path {path!r} was trained with {trained}, but the command line asks for {asked}; leave "
                "those out (flags or --config keys) to resume with the checkpoint's values, or train a new model "
                "without --ckpt_path"
            )
        adopted = {group: values for group, values in adopted.items() if values}
        if adopted:
            self.config = self.parser.parse_object({subcommand: adopted}, self.config)
        vocab = hparams.get("vocab")
        self._resumed = (path, vocab if isinstance(vocab, str) else None)
        step, max_steps = checkpoint.get("global_step"), self.config[subcommand]["trainer"].get("max_steps")
        if subcommand == "fit" and isinstance(step, int) and isinstance(max_steps, int) and 0 <= max_steps <= step:
            # Lightning would train 0 steps and this CLI would still save the model and a log folder: a run that
            # looks like training happened. Nothing has been built yet, so nothing is written.
            print(
                f"checkpoint {path!r} is already at step {step} and --trainer.max_steps is {max_steps}: nothing to "
                "train, nothing saved (raise --trainer.max_steps to train further)"
            )
            raise SystemExit(0)

    def _argument_error(self, message: str) -> NoReturn:
        """Exit with status 2 and one line, as for any bad argument (jsonargparse's own error adds the whole usage)."""
        print(f"{self.parser.prog} {self.config.get('subcommand')}: error: {message}", file=sys.stderr)
        raise SystemExit(2)

    def after_instantiate_classes(self) -> None:
        if self._resumed is None or self.datamodule is None:
            return
        path, trained = self._resumed
        chars = self.datamodule.vocab.chars
        if trained is None or chars == trained:
            return
        # Checked here, before the trainer loads the weights: Lightning would fail on the embedding's size with a raw
        # "size mismatch", or, for as many characters in another order, load them and silently mean other letters.
        only_trained, only_data = set(trained) - set(chars), set(chars) - set(trained)
        if only_trained or only_data:
            difference = f"only the checkpoint has {_some(only_trained)}, only the data has {_some(only_data)}"
        else:
            difference = "the same characters in another order"
        source = _source_of(self.config[self.subcommand]["data"])
        if self.subcommand == "fit":
            way_out = "use the corpus it was trained on, or train a new model without --ckpt_path"
        else:
            way_out = "evaluate it on text of its vocabulary (--data.vocab with its characters, --data.on_unknown skip)"
        raise ValueError(
            f"checkpoint {path!r} was trained on a vocabulary of {len(trained)} characters, but the data ({source}) "
            f"has {len(chars)}: {difference}; {way_out}"
        )

    def before_instantiate_classes(self) -> None:
        if self.subcommand is None:
            return
        config = self.config[self.subcommand]
        if "weights_only" in config and config["weights_only"] is None:
            config["weights_only"] = True

    def after_fit(self) -> None:
        # `log_dir` broadcasts, so every rank asks for it; only rank zero writes.
        log_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        self.saved_model_dir = log_dir / MODEL_DIRNAME
        self._save_and_report(self.saved_model_dir)

    @rank_zero_only
    def _save_and_report(self, directory: Path) -> None:
        self.model.save_pretrained(str(directory))
        print(f"\nSaved the trained model to {directory}")
        checkpoint = self.trainer.checkpoint_callback
        if isinstance(checkpoint, ModelCheckpoint):
            for label, path in (
                ("best checkpoint", checkpoint.best_model_path),
                ("last checkpoint", checkpoint.last_model_path),
            ):
                if path:
                    print(f"  {label}: {path}")
        print(f"Sample from it with: lstm-interp sample {directory} --seed 0")


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
    config: Namespace,
    given: Namespace | None,
    saved: Mapping[str, Any],
    keys: Sequence[str],
    conflicts: list[tuple[str, str]],
) -> dict[str, Any]:
    """The checkpoint's values for the ``keys`` not in ``given``, and conflicts appended for the given ones.

    Args:
        group: ``"model"`` or ``"data"``, for the messages.
        config: the group's parsed arguments.
        given: the group's arguments set by flags, --config files or the environment (None: none were).
        saved: the group's values in the checkpoint.
        keys: the arguments to look at.
        conflicts: ``("group.key=trained", "group.key=asked")`` pairs are appended to it.
    """
    adopted = {}
    for key in keys:
        want, had = config[key], saved[key]
        if given is None or key not in given:
            adopted[key] = had
        elif _comparable(key, want) != _comparable(key, had):
            conflicts.append((f"{group}.{key}={_plain(had)!r}", f"{group}.{key}={_plain(want)!r}"))
    return adopted


def _resolve_source(
    given: Namespace | None, saved: Mapping[str, Any], conflicts: list[tuple[str, str]]
) -> dict[str, Any]:
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


def _source_of(data: Namespace) -> str:
    """The data's source as its flag, e.g. ``data.files='book.txt'`` (a text is shown by its length)."""
    for key in DATA_SOURCES:
        value = data.get(key)
        if value is not None:
            return f"a text of {len(value)} characters" if key == "text" else f"data.{key}={_plain(value)!r}"
    return "no source"


def _some(chars: set[str], limit: int = 10) -> str:
    """Up to ``limit`` of ``chars``, sorted, as one quoted string (``'AB\\n'``), or ``nothing``."""
    if not chars:
        return "nothing"
    shown = "".join(sorted(chars)[:limit])
    return f"{shown!r}" + (f" and {len(chars) - limit} more" if len(chars) > limit else "")


def main(subcommand: str, args: Sequence[str], *, prog: str = "lstm-interp") -> int:
    """Run ``lstm-interp <subcommand> <args>`` through :class:`CharLSTMCLI`; returns 0 (errors raise or exit).

    Args:
        subcommand: ``"fit"``, ``"validate"`` or ``"test"``.
        args: the arguments after the subcommand.
        prog: the program name shown in usage and error messages.
    """
    CharLSTMCLI(args=[subcommand, *args], parser_kwargs={"prog": prog})
    return 0
