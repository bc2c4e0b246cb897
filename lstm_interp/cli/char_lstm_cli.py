"""``lstm-interp fit|validate|test``: a ``LightningCLI`` for :class:`CharLSTMModule` on a :class:`CharDataModule`.

Everything the model, the data and the trainer accept is a flag (``--model.hidden_size 256``) or a key of a YAML
file given with ``--config`` (``configs/`` in the repository).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_only

from lstm_interp.data import CharDataModule
from lstm_interp.models.char_lstm_module import CharLSTMModule
from lstm_interp.models.checkpoint_match import CheckpointMatch, match_checkpoint
from lstm_interp.vocab import CharVocab

MODEL_DIRNAME = "model"


class CharLSTMCLI(LightningCLI):
    """``LightningCLI`` with the vocabulary linked from the data to the model and the network saved after ``fit``.

    - ``model.vocab`` is computed from ``data.vocab``, so one source of text sets both.
    - After ``fit``, ``save_pretrained`` writes the network to ``<trainer.log_dir>/model`` and the path is printed.
    - ``--ckpt_path`` is loaded with ``weights_only=True`` unless ``--weights_only false``, and held against the
      request before anything is built, by :func:`~lstm_interp.models.checkpoint_match.match_checkpoint`: arguments
      left out come from the checkpoint, contradicting ones exit with status 2 naming both values, and a ``fit``
      with nothing left to train exits with status 0 having written nothing.
    - The optimiser and schedule are the module's own (``--model.optimizer``), so LightningCLI's generic groups are
      left out unless asked for (``auto_configure_optimizers``).

    Example::

        >>> args = ["fit", "--data.corpus", "war_and_peace", "--trainer.max_steps", "10"]
        >>> cli = CharLSTMCLI(args=args)  # doctest: +SKIP
        >>> cli.saved_model_dir  # doctest: +SKIP
        PosixPath('lightning_logs/version_0/model')
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
        # The `--ckpt_path` match, kept from the check after parsing for the one after the data module exists (the
        # vocabulary is only known then).
        self._resumed: CheckpointMatch | None = None
        super().__init__(model_class, datamodule_class, args=args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab", "model.vocab", apply_on="instantiate", compute_fn=_vocab_chars)

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
        """Hold the ``--ckpt_path`` checkpoint against the ``given`` arguments; take from it the ones not given."""
        config = self.config[subcommand]
        match = match_checkpoint(
            config["ckpt_path"], {group: _plain(config.get(group)) for group in ("model", "data")},
            {group: _plain(given.get(group)) for group in ("model", "data")}, fitting=subcommand == "fit",
        )  # fmt: skip
        if match is None:
            return  # Lightning resolves it once the trainer exists (fsspec URLs, the callbacks' checkpoints)
        message = match.conflict_message()
        if message is not None:
            # One line and status 2, as for any bad argument (jsonargparse's own error adds the whole usage).
            print(f"{self.parser.prog} {subcommand}: error: {message}", file=sys.stderr)
            raise SystemExit(2)
        if match.adopted:
            self.config = self.parser.parse_object({subcommand: match.adopted}, self.config)
        self._resumed = match
        message = match.nothing_to_train(self.config[subcommand]["trainer"].get("max_steps"))
        if subcommand == "fit" and message is not None:
            print(message)  # nothing has been built yet, so nothing is written
            raise SystemExit(0)

    def after_instantiate_classes(self) -> None:
        # Checked here, before the trainer loads the weights: the vocabulary is known once the data module exists.
        if self._resumed is not None and self.datamodule is not None:
            data = _plain(self.config[self.subcommand]["data"])
            self._resumed.check_vocab(self.datamodule.vocab.chars, data, fitting=self.subcommand == "fit")

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
            for label, path in (("best", checkpoint.best_model_path), ("last", checkpoint.last_model_path)):
                if path:
                    print(f"  {label} checkpoint: {path}")
        print(f"Sample from it with: lstm-interp sample {directory} --seed 0")


def _plain(group: Any) -> dict[str, Any] | None:
    """A group of parsed arguments (a jsonargparse ``Namespace``) as a plain dict, or ``None``."""
    return group.as_dict() if isinstance(group, Namespace) else None


def _vocab_chars(vocab: CharVocab) -> str:
    return vocab.chars  # the string CharLSTMModule takes (and keeps in its hparams)


def main(subcommand: str, args: Sequence[str], *, prog: str = "lstm-interp") -> int:
    """Run ``lstm-interp fit|validate|test <args>`` through :class:`CharLSTMCLI`; returns 0 (errors raise or exit)."""
    CharLSTMCLI(args=[subcommand, *args], parser_kwargs={"prog": prog})
    return 0
