"""``lstm-interp fit|validate|test``: a ``LightningCLI`` for :class:`CharLSTMModule` on a :class:`CharDataModule`.

Everything the model, the data and the trainer accept is a flag (``--model.hidden_size 256``,
``--data.files book.txt``, ``--trainer.max_steps 5000``) or a key of a YAML file given with ``--config``; see
``configs/`` in the repository. The model's vocabulary is never given: it is linked from the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_only

from lstm_interp.data import CharDataModule
from lstm_interp.models.char_lstm_module import CharLSTMModule
from lstm_interp.vocab import CharVocab

MODEL_DIRNAME = "model"


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
        super().__init__(model_class, datamodule_class, args=args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab", "model.vocab", apply_on="instantiate", compute_fn=vocab_chars)

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        # LightningCLI warns when `args` is given while sys.argv has arguments too; `lstm-interp` always passes
        # what is left of sys.argv after the subcommand name, so that warning would fire on every run.
        if isinstance(args, (dict, Namespace)):
            self.config = parser.parse_object(args)
        else:
            self.config = parser.parse_args(args)

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


def main(subcommand: str, args: Sequence[str], *, prog: str = "lstm-interp") -> int:
    """Run ``lstm-interp <subcommand> <args>`` through :class:`CharLSTMCLI`; returns 0 (errors raise or exit).

    Args:
        subcommand: ``"fit"``, ``"validate"`` or ``"test"``.
        args: the arguments after the subcommand.
        prog: the program name shown in usage and error messages.
    """
    CharLSTMCLI(args=[subcommand, *args], parser_kwargs={"prog": prog})
    return 0
