"""The Lightning wrapper around :class:`CharLSTM`: loss, metrics, optimiser and learning-rate schedule."""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor

from lstm_interp.config import CharLSTMConfig, ConfigError
from lstm_interp.metrics.bits_per_character import BitsPerCharacter
from lstm_interp.models.char_lstm import CharLSTM, State
from lstm_interp.models.checkpoint import network_from_hparams
from lstm_interp.vocab import CharVocab

_LN2 = math.log(2)


class CharLSTMModule(pl.LightningModule):
    """Train a :class:`CharLSTM` on next-character prediction.

    Logs ``train/loss`` (nats per character, every step), ``train/bpc``, and per epoch ``val/loss``,
    ``val/bpc``, ``test/loss``, ``test/bpc`` through :class:`~lstm_interp.metrics.BitsPerCharacter`, which sums
    over the whole split (and across processes) before dividing.

    Batches are ``(x, y)`` with ``x, y`` of shape (B, T), or ``(x, y, reset)`` from a stateful
    :class:`~lstm_interp.data.CharDataModule`: then the recurrent state is carried from one batch to the next
    (detached: truncated backpropagation through time, as in char-rnn) and zeroed when ``reset`` is true.

    Args:
        vocab: the characters (a string or :class:`CharVocab`). If ``None``, it is taken from the attached
            datamodule's ``vocab`` when the trainer sets the model up.
        cell, num_layers, hidden_size, embedding_size, dropout: the network (see :class:`CharLSTMConfig`).
        optimizer: ``"adamw"`` or ``"rmsprop"`` (char-rnn's choice).
        lr: peak learning rate.
        weight_decay: AdamW's decoupled weight decay (or RMSprop's L2 penalty).
        lr_schedule: ``"constant"``, ``"cosine"`` (linear warm-up, then cosine decay to ``min_lr_ratio * lr``
            over the trainer's total steps) or ``"step"`` (multiply by ``lr_decay`` every ``lr_decay_every`` steps).
        warmup_steps: linear warm-up steps for ``"cosine"``.
        min_lr_ratio: final learning rate of ``"cosine"`` as a fraction of ``lr``.
        lr_decay, lr_decay_every: the ``"step"`` schedule.

    Raises:
        ConfigError: for an invalid network setting.
        ValueError: for an unknown optimiser or schedule, or a non-positive learning rate.

    Example::

        >>> module = CharLSTMModule(vocab="abc \\n", hidden_size=32)
        >>> trainer = pl.Trainer(max_steps=100, precision="bf16-mixed")  # doctest: +SKIP
        >>> trainer.fit(module, datamodule=CharDataModule(text="abc abc\\n" * 1000))  # doctest: +SKIP
    """

    def __init__(
        self,
        vocab: str | None = None,
        cell: Literal["lstm", "gru", "rnn"] = "lstm",
        num_layers: int = 2,
        hidden_size: int = 128,
        embedding_size: int = 64,
        dropout: float = 0.0,
        optimizer: Literal["adamw", "rmsprop"] = "adamw",
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        lr_schedule: Literal["constant", "cosine", "step"] = "cosine",
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.1,
        lr_decay: float = 0.97,
        lr_decay_every: int = 1000,
    ) -> None:
        super().__init__()
        if isinstance(vocab, CharVocab):
            vocab = vocab.chars
        if optimizer not in ("adamw", "rmsprop"):
            raise ValueError(f"`optimizer` must be 'adamw' or 'rmsprop', got {optimizer!r}")
        if lr_schedule not in ("constant", "cosine", "step"):
            raise ValueError(f"`lr_schedule` must be 'constant', 'cosine' or 'step', got {lr_schedule!r}")
        if not lr > 0:
            raise ValueError(f"`lr` must be > 0, got {lr!r}")
        if warmup_steps < 0 or lr_decay_every < 1 or not 0 <= min_lr_ratio <= 1 or not 0 < lr_decay <= 1:
            raise ValueError(
                "schedule settings out of range: need warmup_steps >= 0, lr_decay_every >= 1, "
                f"0 <= min_lr_ratio <= 1, 0 < lr_decay <= 1; got {warmup_steps!r}, {lr_decay_every!r}, "
                f"{min_lr_ratio!r}, {lr_decay!r}"
            )
        # Validate the network settings now, not at setup, so a bad CLI value fails before any data is read.
        CharLSTMConfig(
            vocab_size=1,
            cell=cell,
            num_layers=num_layers,
            hidden_size=hidden_size,
            embedding_size=embedding_size,
            dropout=dropout,
        )
        self.save_hyperparameters()
        self.network: CharLSTM | None = None
        if vocab is not None:
            self._build_network(vocab)
        self.val_loss, self.val_bpc = BitsPerCharacter(in_nats=True), BitsPerCharacter()
        self.test_loss, self.test_bpc = BitsPerCharacter(in_nats=True), BitsPerCharacter()
        self._carried: dict[str, State | None] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_network(cls, network: CharLSTM, **kwargs: Any) -> CharLSTMModule:
        """Wrap an existing network (e.g. one from ``CharLSTM.from_pretrained``) to train it further."""
        cfg = network.config
        module = cls(
            vocab=network._require_vocab().chars,
            cell=cfg.cell,
            num_layers=cfg.num_layers,
            hidden_size=cfg.hidden_size,
            embedding_size=cfg.embedding_size,
            dropout=cfg.dropout,
            **kwargs,
        )
        module.network.load_state_dict(network.state_dict())  # type: ignore[union-attr]
        return module

    def _build_network(self, vocab: str | CharVocab) -> None:
        # The one place a network is shaped from hyperparameters: reading a .ckpt without Lightning uses it too.
        self.network = network_from_hparams(self.hparams, vocab)
        self.hparams["vocab"] = self.network._require_vocab().chars

    def configure_model(self) -> None:
        if self.network is not None:
            return
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        vocab = getattr(datamodule, "vocab", None)
        if vocab is None:
            raise ConfigError(
                "CharLSTMModule has no vocabulary: pass `vocab=` or fit with a datamodule that has a `vocab`"
            )
        self._build_network(vocab)

    @property
    def vocab(self) -> CharVocab:
        return self._net.vocab  # type: ignore[return-value]

    @property
    def _net(self) -> CharLSTM:
        if self.network is None:
            raise ConfigError("the network is not built yet (no vocabulary given); call trainer.fit first")
        return self.network

    # ------------------------------------------------------------------ steps
    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        return self._net(tokens, state)

    def _shared_step(self, batch: Any, stage: str) -> tuple[Tensor, int]:
        if len(batch) == 3:
            x, y, reset = batch
            state = None if bool(reset) else self._carried.get(stage)
            carry = True
        else:
            x, y = batch
            state, carry = None, False
        logits, new_state = self._net(x, state)  # (B, T, V)
        if carry:
            self._carried[stage] = CharLSTM.detach_state(new_state)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
        return loss, y.numel()

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss, _ = self._shared_step(batch, "train")
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/bpc", loss.detach() / _LN2)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, n = self._shared_step(batch, "val")
        self.val_loss.update(nll_sum=loss * n, count=n)
        self.val_bpc.update(nll_sum=loss * n, count=n)
        self.log("val/loss", self.val_loss, prog_bar=True)
        self.log("val/bpc", self.val_bpc)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        loss, n = self._shared_step(batch, "test")
        self.test_loss.update(nll_sum=loss * n, count=n)
        self.test_bpc.update(nll_sum=loss * n, count=n)
        self.log("test/loss", self.test_loss)
        self.log("test/bpc", self.test_bpc)

    def on_train_epoch_start(self) -> None:
        self._carried.pop("train", None)

    def on_validation_epoch_start(self) -> None:
        self._carried.pop("val", None)

    def on_test_epoch_start(self) -> None:
        self._carried.pop("test", None)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = self._net.parameters()
        if hp.optimizer == "adamw":
            optimizer: torch.optim.Optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        else:
            optimizer = torch.optim.RMSprop(params, lr=hp.lr, alpha=0.95, weight_decay=hp.weight_decay)
        if hp.lr_schedule == "constant":
            return optimizer
        if hp.lr_schedule == "step":
            scheduler: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.StepLR(
                optimizer, step_size=hp.lr_decay_every, gamma=hp.lr_decay
            )
        else:
            total = max(int(self.trainer.estimated_stepping_batches), 1)
            warmup, floor = hp.warmup_steps, hp.min_lr_ratio

            def cosine(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                progress = min((step - warmup) / max(total - warmup, 1), 1.0)
                return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ conveniences
    def generate(self, prompt: str = "\n", length: int = 200, **kwargs: Any) -> str:
        """Sample text; see :meth:`CharLSTM.generate`."""
        return self._net.generate(prompt, length, **kwargs)

    def save_pretrained(self, directory: str, **kwargs: Any) -> None:
        """Save the network (``config.json``, ``vocab.json``, ``model.safetensors``); see :class:`CharLSTM`."""
        self._net.save_pretrained(directory, **kwargs)
