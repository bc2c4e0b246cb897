"""CharLSTMModule with a real Trainer: precision modes, cells, truncated BPTT, schedules and checkpoints."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch

from lstm_interp import ConfigError
from lstm_interp.data import CharDataModule
from lstm_interp.metrics import BitsPerCharacter
from lstm_interp.models.char_lstm_module import CharLSTMModule

TEXT = "the cat sat on the mat.\nthe dog sat on the log.\n" * 40


def datamodule(tmp_path, **kwargs) -> CharDataModule:
    kwargs = {"batch_size": 4, "seq_len": 16, "cache_dir": tmp_path / "cache", **kwargs}
    return CharDataModule(text=TEXT, **kwargs)


def trainer(tmp_path, **kwargs) -> pl.Trainer:
    kwargs = {
        "max_steps": 30,
        "limit_val_batches": 4,
        "val_check_interval": 10,
        "check_val_every_n_epoch": None,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": tmp_path,
        **kwargs,
    }
    return pl.Trainer(**kwargs)


@pytest.mark.parametrize("precision", ["32", "bf16-mixed"])
def test_fit_reduces_loss_and_logs_nats_and_bits(tmp_path, precision):
    torch.manual_seed(0)
    dm = datamodule(tmp_path)
    module = CharLSTMModule(hidden_size=32, embedding_size=8, lr=3e-2, lr_schedule="constant")
    trainer(tmp_path, precision=precision, max_steps=60).fit(module, datamodule=dm)
    metrics = module.trainer.callback_metrics
    initial_nats = math.log(len(dm.vocab))  # an untrained model is near uniform
    assert float(metrics["val/loss"]) < 0.8 * initial_nats
    assert float(metrics["val/bpc"]) == pytest.approx(float(metrics["val/loss"]) / math.log(2), rel=1e-5)
    assert module.hparams.vocab == dm.vocab.chars  # discovered from the datamodule, kept for checkpoints


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_other_cells_train(tmp_path, cell):
    torch.manual_seed(0)
    module = CharLSTMModule(cell=cell, hidden_size=16, embedding_size=8, lr=2e-2)
    trainer(tmp_path, max_steps=20).fit(module, datamodule=datamodule(tmp_path))
    assert float(module.trainer.callback_metrics["val/loss"]) < math.log(module.network.config.vocab_size)


def test_stateful_batches_carry_detached_state(tmp_path):
    torch.manual_seed(0)
    dm = datamodule(tmp_path, stateful=True)
    module = CharLSTMModule(hidden_size=8, embedding_size=4)
    seen: list[bool] = []

    class Spy(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(pl_module._carried.get("train") is not None and not bool(batch[2]))

    trainer(tmp_path, max_steps=6, callbacks=[Spy()], limit_val_batches=0).fit(module, datamodule=dm)
    assert seen[0] is False and all(seen[1:])  # zero state first, then the carried one
    h, _ = module._carried["train"][0]
    assert not h.requires_grad and h.shape == (1, 4, 8)
    # The carried state changes predictions: it is really fed back in.
    x, _, _ = next(iter(dm.train_dataloader()))
    with torch.no_grad():
        fresh, _ = module(x)
        carried, _ = module(x, module._carried["train"])
    assert not torch.allclose(fresh, carried)


def test_rmsprop_with_step_schedule(tmp_path):
    module = CharLSTMModule(
        hidden_size=8,
        embedding_size=4,
        optimizer="rmsprop",
        lr=1e-2,
        lr_schedule="step",
        lr_decay=0.5,
        lr_decay_every=5,
    )
    trainer(tmp_path, max_steps=12, limit_val_batches=0).fit(module, datamodule=datamodule(tmp_path))
    optimizer = module.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.RMSprop)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5**2)


def test_cosine_schedule_warms_up_then_decays_to_floor(tmp_path):
    module = CharLSTMModule(hidden_size=8, embedding_size=4, lr=1e-2, warmup_steps=4, min_lr_ratio=0.1)
    lrs: list[float] = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer(tmp_path, max_steps=20, limit_val_batches=0, callbacks=[Record()]).fit(
        module, datamodule=datamodule(tmp_path)
    )
    assert lrs[0] == pytest.approx(1e-2 / 4) and lrs[3] == pytest.approx(1e-2)
    assert lrs[4:] == sorted(lrs[4:], reverse=True) and lrs[-1] == pytest.approx(1e-3, rel=0.1)


def test_checkpoint_loads_with_weights_only_and_resumes(tmp_path):
    torch.manual_seed(0)
    module = CharLSTMModule(hidden_size=8, embedding_size=4)
    t = trainer(tmp_path, max_steps=5, limit_val_batches=0)
    t.fit(module, datamodule=datamodule(tmp_path))
    ckpt = tmp_path / "model.ckpt"
    t.save_checkpoint(ckpt)
    raw = torch.load(ckpt, weights_only=True)  # no pickled code in our checkpoints
    assert raw["hyper_parameters"]["vocab"] == module.hparams.vocab
    loaded = CharLSTMModule.load_from_checkpoint(ckpt, weights_only=True)
    assert loaded.generate("the ", 20, seed=1) == module.generate("the ", 20, seed=1)
    resumed = CharLSTMModule(hidden_size=8, embedding_size=4)
    t2 = trainer(tmp_path, max_steps=8, limit_val_batches=0)
    t2.fit(resumed, datamodule=datamodule(tmp_path), ckpt_path=ckpt, weights_only=True)
    assert t2.global_step == 8


class BatchLog(pl.Callback):
    """Notes (global step, first row of x, reset) for every training batch."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, tuple[int, ...], bool]] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        x, _, reset = batch
        self.seen.append((trainer.global_step, tuple(x[0].tolist()), bool(reset)))


def test_stateful_fit_resumed_mid_epoch_continues_with_the_next_batch(tmp_path):
    import warnings

    from lightning.pytorch.utilities.warnings import PossibleUserWarning

    data = datamodule(tmp_path, stateful=True)
    data.prepare_data()
    data.setup()
    per_epoch = len(data.train_data)
    assert per_epoch > 4, "the test needs an epoch of several batches"
    total, cut = per_epoch + 3, 3  # stop mid-way through the first epoch, end in the second

    whole = BatchLog()
    torch.manual_seed(0)
    trainer(tmp_path, max_steps=total, limit_val_batches=0, callbacks=[whole]).fit(
        CharLSTMModule(hidden_size=8, embedding_size=4), datamodule=datamodule(tmp_path, stateful=True)
    )
    first = BatchLog()
    torch.manual_seed(0)
    t = trainer(tmp_path, max_steps=cut, limit_val_batches=0, callbacks=[first])
    t.fit(CharLSTMModule(hidden_size=8, embedding_size=4), datamodule=datamodule(tmp_path, stateful=True))
    t.save_checkpoint(tmp_path / "cut.ckpt")
    rest = BatchLog()
    with warnings.catch_warnings():
        warnings.simplefilter("error", PossibleUserWarning)  # no "your dataloader is not resumable"
        trainer(tmp_path, max_steps=total, limit_val_batches=0, callbacks=[rest]).fit(
            CharLSTMModule(hidden_size=8, embedding_size=4),
            datamodule=datamodule(tmp_path, stateful=True),
            ckpt_path=tmp_path / "cut.ckpt",
            weights_only=True,
        )
    assert [b[:2] for b in first.seen + rest.seen] == [b[:2] for b in whole.seen]  # same batches at the same steps
    assert [step for step, _, reset in whole.seen if reset] == [0, per_epoch]  # each pass starts with a reset


def test_from_network_and_save_pretrained(tmp_path):
    from lstm_interp import CharLSTM

    module = CharLSTMModule(vocab="abc ", hidden_size=8, embedding_size=4)
    module.save_pretrained(str(tmp_path / "m"))
    network = CharLSTM.from_pretrained(tmp_path / "m")
    again = CharLSTMModule.from_network(network, lr=1e-3)
    assert again.hparams.lr == 1e-3
    torch.testing.assert_close(again.network.head.weight, module.network.head.weight)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"optimizer": "sgd"}, ValueError, "`optimizer` must be 'adamw' or 'rmsprop', got 'sgd'"),
        ({"lr_schedule": "linear"}, ValueError, "`lr_schedule` must be 'constant', 'cosine' or 'step', got 'linear'"),
        ({"lr": 0.0}, ValueError, "`lr` must be > 0, got 0.0"),
        ({"hidden_size": 0}, ConfigError, "`hidden_size` must be a positive integer, got 0"),
        ({"cell": "lstmx"}, ConfigError, "`cell` must be one of"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        CharLSTMModule(**kwargs)


def test_module_without_vocab_or_datamodule_explains(tmp_path):
    from torch.utils.data import DataLoader

    module = CharLSTMModule(hidden_size=8)
    loader = DataLoader([(torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long))])
    with pytest.raises(ConfigError, match="no vocabulary"):
        trainer(tmp_path, max_steps=1).fit(module, loader)


def test_bits_per_character_metric_is_exact_over_uneven_batches():
    torch.manual_seed(0)
    metric, nats = BitsPerCharacter(), BitsPerCharacter(in_nats=True)
    all_logits, all_targets = [], []
    for n in (3, 17, 1):
        logits, targets = torch.randn(n, 5, 6), torch.randint(0, 6, (n, 5))
        metric.update(logits, targets)
        nats.update(logits, targets)
        all_logits.append(logits), all_targets.append(targets)
    expected = torch.nn.functional.cross_entropy(
        torch.cat(all_logits).reshape(-1, 6), torch.cat(all_targets).reshape(-1)
    )
    assert float(nats.compute()) == pytest.approx(float(expected), rel=1e-6)
    assert float(metric.compute()) == pytest.approx(float(expected) / math.log(2), rel=1e-6)
    with pytest.raises(ValueError, match="do not match"):
        metric.update(torch.randn(2, 3, 6), torch.zeros(2, 4, dtype=torch.long))
