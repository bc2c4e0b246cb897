"""LSTMActivationMonitor on the recurrent modules Lightning users have: bidirectional taggers, classifiers fed
PackedSequences, LSTMs with proj_size, and encoder-decoders with two recurrent modules, each with a real Trainer
and read back from the saved record; and the capture of a packed batch's first sequence, unit by unit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lstm_interp.callbacks import LSTMActivationMonitor
from lstm_interp.callbacks._module_calls import run_and_capture
from lstm_interp.callbacks._probe_capture import Probe, trace_modules
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lstm_interp.data import CharDataModule
from lstm_interp.tracing.quantities import QUANTITIES

TEXT = "the cat sat on the mat.\nthe dog sat on the log.\n" * 20
VOCAB = "".join(sorted(set(TEXT)))  # CharVocab.from_text's order
PROBE = "the dog sat on the mat.\n"
PAD = len(VOCAB)  # the classifier's padding id, one past the vocabulary
ATOL = 1e-5  # the monitors below store float32, so the record is the trace itself

pytestmark = [
    pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN"),
    pytest.mark.usefixtures("one_thread"),  # tests/conftest.py
]



def ids(text: str) -> Tensor:
    return torch.tensor([VOCAB.index(c) for c in text])


@dataclass
class Recorded:
    """What a monitor left after a fit: the tensors of its last recording, its index and its folder."""

    tensors: dict[str, Tensor]
    index: dict[str, Any]
    folder: Path


def fit(tmp_path: Path, module: pl.LightningModule, monitor: LSTMActivationMonitor) -> Recorded:
    """Two training steps with the monitor recording after each; the module is left in eval mode."""
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_steps=2,
        limit_val_batches=0,
        logger=TensorBoardLogger(tmp_path, name="tb"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[monitor],
    )
    data = CharDataModule(text=TEXT, vocab=VOCAB, batch_size=4, seq_len=16, cache_dir=str(tmp_path / "cache"))
    trainer.fit(module, datamodule=data)
    folder = Path(trainer.logger.log_dir) / "lstm_interp"
    index = json.loads((folder / "index.json").read_text())
    assert [r["step"] for r in index["recordings"]] == [1, 2]
    module.eval()
    # The recording at step 2 was made after the last optimizer step: it traced the module as it is now.
    return Recorded(load_file(folder / "step_2.safetensors"), index, folder)


def assert_close(actual: Tensor, expected: Tensor) -> None:
    torch.testing.assert_close(actual.float(), expected.float(), atol=ATOL, rtol=0)


class CharModel(pl.LightningModule):
    """Next-character cross-entropy around whatever ``forward`` returns, (B, T, V)."""

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x).reshape(-1, len(VOCAB)), y.reshape(-1))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


# ---------------------------------------------------------------------------------------------- bidirectional tagger
class BiTagger(CharModel):
    """Embedding -> 2-layer bidirectional, batch_first nn.LSTM at ``encoder.lstm`` -> a tag per step (the next
    character)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(len(VOCAB), 4)
        self.encoder = nn.ModuleDict({"lstm": nn.LSTM(4, 8, num_layers=2, bidirectional=True, batch_first=True)})
        self.head = nn.Linear(16, len(VOCAB))

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.encoder["lstm"](self.embed(x))  # (B, T, 16)
        return self.head(out)


def test_bidirectional_tagger_records_both_directions_of_every_layer(tmp_path):
    module = BiTagger()
    monitor = LSTMActivationMonitor(
        PROBE, chars=VOCAB, every_n_train_steps=1, dtype=torch.float32, features=["start_of_word"]
    )
    recorded = fit(tmp_path, module, monitor)
    tensors = recorded.tensors
    layers = ["encoder.lstm.0", "encoder.lstm.0.reverse", "encoder.lstm.1", "encoder.lstm.1.reverse"]
    T = len(PROBE)
    for layer in layers:
        for quantity in QUANTITIES["lstm"]:
            assert tensors[f"probe0/{layer}.{quantity}"].shape == (T, 8)
    assert set(tensors) == {f"probe0/{layer}.{q}" for layer in layers for q in QUANTITIES["lstm"]} | {
        "probe0/tokens",
        "probe0/log_probs",
    }
    with torch.no_grad():
        out, (h_n, c_n) = module.encoder["lstm"](module.embed(ids(PROBE))[None])
        logits = module(ids(PROBE)[None])[0]
    assert_close(tensors["probe0/encoder.lstm.1.hidden"], out[0, :, :8])
    assert_close(tensors["probe0/encoder.lstm.1.reverse.hidden"], out[0, :, 8:])  # rows in the text's order
    for j, layer in enumerate(layers):
        row = 0 if layer.endswith("reverse") else -1
        assert_close(tensors[f"probe0/{layer}.hidden"][row], h_n[j, 0])
        assert_close(tensors[f"probe0/{layer}.cell"][row], c_n[j, 0])
    torch.testing.assert_close(tensors["probe0/log_probs"], logits.log_softmax(-1), atol=1e-5, rtol=0)
    assert torch.equal(tensors["probe0/tokens"], ids(PROBE))

    record = recorded.index["recordings"][-1]
    assert "encoder.lstm.1.reverse/forget_gate/right_saturated" in record["summary"]
    assert {"cell_text", "gate_saturation", "topk_predictions", "cell_heatmap"} <= set(record["files"]["figures"])
    assert (recorded.folder / record["files"]["html"]).is_file()
    assert {row["layer"] for row in record["features"]["start_of_word"]} <= set(layers)


# ---------------------------------------------------------------------------------------------- packed classifier
class PackedClassifier(pl.LightningModule):
    """Classifies variable-length sequences padded with ``PAD``: packs them, reads the bidirectional nn.LSTM ``rnn``'s
    final states (both directions), one logit pair per sequence."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(len(VOCAB) + 1, 4, padding_idx=PAD)
        self.rnn = nn.LSTM(4, 8, bidirectional=True, batch_first=True)
        self.head = nn.Linear(16, 2)

    def forward(self, x: Tensor) -> Tensor:
        lengths = (x != PAD).sum(dim=1).cpu()
        packed = pack_padded_sequence(self.embed(x), lengths, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.rnn(packed)
        return self.head(torch.cat([h_n[0], h_n[1]], dim=1))  # (B, 2)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, _ = batch
        # Variable lengths: row r keeps its first T - 3r characters, the rest is padding.
        keep = x.shape[1] - 3 * torch.arange(len(x))[:, None]
        x = torch.where(torch.arange(x.shape[1]) < keep, x, PAD)
        label = (x == VOCAB.index("d")).any(dim=1).long()  # does the sequence hold a "d"?
        return nn.functional.cross_entropy(self(x), label)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_packed_classifier_is_traced_over_the_real_length(tmp_path):
    module = PackedClassifier()
    padded = torch.cat([ids(PROBE), torch.full((5,), PAD)])  # the forward packs it to its len(PROBE) real steps
    monitor = LSTMActivationMonitor(
        probe_tensors=[padded, ids("the cat.\n")], every_n_train_steps=1, dtype=torch.float32, html=False
    )
    recorded = fit(tmp_path, module, monitor)
    tensors = recorded.tensors
    T = len(PROBE)
    assert tensors["probe0/rnn.cell"].shape == tensors["probe0/rnn.reverse.forget_gate"].shape == (T, 8)
    # The padded ids are not one per traced step, so the steps are numbered; the unpadded probe keeps its ids.
    assert torch.equal(tensors["probe0/tokens"], torch.arange(T))
    assert torch.equal(tensors["probe1/tokens"], ids("the cat.\n"))
    with torch.no_grad():
        x = module.embed(padded[None])
        _, (h_n, c_n) = module.rnn(pack_padded_sequence(x, [T], batch_first=True))
    # The final states of the packed run, which stops at the real length (the padded one would not).
    assert_close(tensors["probe0/rnn.hidden"][-1], h_n[0, 0])
    assert_close(tensors["probe0/rnn.cell"][-1], c_n[0, 0])
    assert_close(tensors["probe0/rnn.reverse.hidden"][0], h_n[1, 0])
    assert_close(tensors["probe0/rnn.reverse.cell"][0], c_n[1, 0])
    assert "probe0/log_probs" not in tensors  # a classifier's output is no next-character distribution
    assert "rnn.reverse/input_gate/left_saturated" in recorded.index["recordings"][-1]["summary"]


class Packer(nn.Module):
    """Packs a padded batch (sorted or not) for ``rnn`` with the given initial state, and pads the output back."""

    def __init__(self, rnn: nn.RNNBase, lengths: list[int], hx: Any, enforce_sorted: bool) -> None:
        super().__init__()
        self.rnn, self.lengths, self.hx, self.enforce_sorted = rnn, lengths, hx, enforce_sorted

    def forward(self, x: Tensor) -> Tensor:
        packed = pack_padded_sequence(x, self.lengths, batch_first=True, enforce_sorted=self.enforce_sorted)
        out, _ = self.rnn(packed, self.hx)
        return pad_packed_sequence(out, batch_first=True)[0]


@pytest.mark.parametrize(
    ("lengths", "enforce_sorted"),
    [([4, 9, 6], False), ([9, 6, 4], True), ([9], True)],
)
def test_the_first_sequence_of_a_packed_batch_at_its_real_length(lengths, enforce_sorted):
    torch.manual_seed(0)
    rnn = nn.GRU(3, 5, num_layers=2, bidirectional=True, batch_first=True).eval()
    hx = torch.randn(4, len(lengths), 5)  # in the caller's batch order: the module permutes it itself
    model = Packer(rnn, lengths, hx, enforce_sorted).eval()
    x = torch.randn(len(lengths), max(lengths), 3)
    captured, output = run_and_capture(model, {"enc.gru": rnn}, x)
    assert captured["enc.gru"].calls[0].inputs.shape == (lengths[0], 3)
    torch.testing.assert_close(captured["enc.gru"].calls[0].inputs, x[0, : lengths[0]], atol=0, rtol=0)

    (tr,) = trace_modules(model, {"enc.gru": rnn}, Probe(None, None, x), chars=None)
    assert tr.num_steps == lengths[0] and tr.text is None and torch.equal(tr.tokens, torch.arange(lengths[0]))
    # The module's own packed output for sequence 0, both directions (the reverse one starts at its real end).
    torch.testing.assert_close(tr["enc.gru.1.hidden"], output[0, : lengths[0], :5], atol=ATOL, rtol=0)
    torch.testing.assert_close(tr["enc.gru.1.reverse.hidden"], output[0, : lengths[0], 5:], atol=ATOL, rtol=0)


def test_probe_labels_are_kept_only_when_their_length_matches_the_trace():
    class Truncating(nn.Module):
        """Drops the last two steps by packing: the trace is two steps shorter than the probe."""

        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(len(VOCAB), 3)
            self.lstm = nn.LSTM(3, 4, batch_first=True)

        def forward(self, x: Tensor) -> Tensor:
            packed = pack_padded_sequence(self.embed(x), [x.shape[1] - 2] * len(x), batch_first=True)
            return pad_packed_sequence(self.lstm(packed)[0], batch_first=True)[0]

    model = Truncating().eval()
    targets = {"lstm": model.lstm}
    with torch.no_grad():
        (short,) = trace_modules(model, targets, Probe(PROBE, ids(PROBE), ids(PROBE)[None]), chars=VOCAB)
        (whole,) = trace_modules(model, targets, Probe(PROBE[:-2], ids(PROBE[:-2]), ids(PROBE)[None]), chars=VOCAB)
    assert short.num_steps == len(PROBE) - 2
    assert short.text is None and short.chars is None and torch.equal(short.tokens, torch.arange(len(PROBE) - 2))
    assert whole.text == PROBE[:-2] and whole.chars == VOCAB and torch.equal(whole.tokens, ids(PROBE[:-2]))


# ---------------------------------------------------------------------------------------------- proj_size
class ProjectedLM(CharModel):
    """Embedding -> 2-layer nn.LSTM with proj_size=3 at ``lm.lstm`` -> linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(len(VOCAB), 4)
        self.lm = nn.ModuleDict({"lstm": nn.LSTM(4, 8, num_layers=2, proj_size=3, batch_first=True)})
        self.head = nn.Linear(3, len(VOCAB))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.lm["lstm"](self.embed(x))[0])


def test_proj_size_lstm_records_h_wide_cells_and_projected_hidden_states(tmp_path):
    module = ProjectedLM()
    monitor = LSTMActivationMonitor(PROBE, chars=VOCAB, every_n_train_steps=1, dtype=torch.float32)
    recorded = fit(tmp_path, module, monitor)
    tensors = recorded.tensors
    T = len(PROBE)
    lstm = module.lm["lstm"]
    with torch.no_grad():
        out, (h_n, c_n) = lstm(module.embed(ids(PROBE))[None])
    for k in range(2):
        prefix = f"probe0/lm.lstm.{k}"
        assert tensors[f"{prefix}.cell"].shape == tensors[f"{prefix}.forget_gate"].shape == (T, 8)
        assert tensors[f"{prefix}.hidden"].shape == (T, 3)
        projected = (tensors[f"{prefix}.output_gate"] * torch.tanh(tensors[f"{prefix}.cell"])) @ getattr(
            lstm, f"weight_hr_l{k}"
        ).T
        assert_close(projected, tensors[f"{prefix}.hidden"])  # h_t = W_hr (o_t * tanh c_t)
        assert_close(tensors[f"{prefix}.hidden"][-1], h_n[k, 0])
        assert_close(tensors[f"{prefix}.cell"][-1], c_n[k, 0])
    assert_close(tensors["probe0/lm.lstm.1.hidden"], out[0])
    record = recorded.index["recordings"][-1]
    assert {"cell_text", "gate_saturation", "topk_predictions", "cell_heatmap"} <= set(record["files"]["figures"])
    assert (recorded.folder / record["files"]["html"]).is_file()


# ---------------------------------------------------------------------------------------------- encoder-decoder
class EncoderDecoder(CharModel):
    """A bidirectional 2-layer nn.LSTM ``encoder``; its final states, bridged, start the nn.LSTM ``decoder``,
    which reads the (teacher-forced) characters again."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(len(VOCAB), 4)
        self.encoder = nn.LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=True)
        self.bridge = nn.Linear(12, 8)
        self.decoder = nn.LSTM(4, 8, batch_first=True)
        self.head = nn.Linear(8, len(VOCAB))

    def start(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _, (h_n, c_n) = self.encoder(x)
        h0 = torch.tanh(self.bridge(torch.cat([h_n[-2], h_n[-1]], dim=1)))[None]  # (1, B, 8)
        c0 = self.bridge(torch.cat([c_n[-2], c_n[-1]], dim=1))[None]
        return h0, c0

    def forward(self, x: Tensor) -> Tensor:
        e = self.embed(x)
        out, _ = self.decoder(e, self.start(e))
        return self.head(out)


def test_encoder_and_decoder_each_under_their_own_path_in_one_recording(tmp_path):
    module = EncoderDecoder()
    monitor = LSTMActivationMonitor(PROBE, chars=VOCAB, every_n_train_steps=1, dtype=torch.float32)
    recorded = fit(tmp_path, module, monitor)
    tensors = recorded.tensors
    T = len(PROBE)
    encoder = ["encoder.0", "encoder.0.reverse", "encoder.1", "encoder.1.reverse"]
    for layer in encoder:
        assert tensors[f"probe0/{layer}.cell"].shape == (T, 6)
    assert tensors["probe0/decoder.cell"].shape == tensors["probe0/decoder.output_gate"].shape == (T, 8)
    with torch.no_grad():
        e = module.embed(ids(PROBE))[None]
        enc_out, (h_n, _) = module.encoder(e)
        hx = module.start(e)
        dec_out, (_, dec_c) = module.decoder(e, hx)
        logits = module(ids(PROBE)[None])[0]
    assert_close(tensors["probe0/encoder.1.hidden"], enc_out[0, :, :6])
    assert_close(tensors["probe0/encoder.1.reverse.hidden"], enc_out[0, :, 6:])
    assert_close(tensors["probe0/encoder.0.reverse.hidden"][0], h_n[1, 0])
    # The decoder's captured initial state (the bridged encoder state) is the one it was traced from.
    assert_close(tensors["probe0/decoder.hidden"], dec_out[0])
    assert_close(tensors["probe0/decoder.cell"][-1], dec_c[0, 0])
    torch.testing.assert_close(tensors["probe0/log_probs"], logits.log_softmax(-1), atol=1e-5, rtol=0)

    record = recorded.index["recordings"][-1]
    assert recorded.index["modules"] == ["encoder", "decoder"]
    assert {"encoder.1.reverse/forget_gate/right_saturated", "decoder/forget_gate/right_saturated"} <= set(
        record["summary"]
    )
    figures = set(record["files"]["figures"])
    assert {"cell_text_encoder", "cell_text_decoder", "gate_saturation_encoder", "topk_predictions_decoder"} <= figures
    assert "topk_predictions_encoder" not in figures  # the log-probabilities belong to the module nearest the output


def test_a_module_given_something_else_is_refused_by_path_with_what_is_supported():
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(3, 4)

        def forward(self, x: Tensor) -> Tensor:
            return self.lstm(x[None, None])[0]  # a 4-D input: not one PyTorch takes either

    model = Odd()
    message = (
        r"'lstm' received a tensor of shape \(1, 1, 5, 3\); the monitor traces a \(batch, time, features\) or "
        r"\(time, features\) tensor, or a PackedSequence"
    )
    with pytest.raises(ValueError, match=message):
        run_and_capture(model, {"lstm": model.lstm}, torch.randn(5, 3))
    assert not model.lstm._forward_pre_hooks and not model.lstm._forward_hooks
