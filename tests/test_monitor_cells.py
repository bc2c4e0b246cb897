"""Recurrent modules a user steps by hand: nn.LSTMCell, nn.GRUCell and nn.RNNCell called in a Python loop, and an
nn.LSTM called one step at a time. Each model is trained with a real Trainer and the monitor's record read back,
then checked against the modules' own outputs and against a stepwise reference written out here, gate by gate."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lstm_interp.callbacks import LSTMActivationMonitor
from lstm_interp.callbacks._module_calls import run_and_capture
from lstm_interp.callbacks._probe_capture import Probe, select_modules, trace_modules
from pictures import assert_picture
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lstm_interp import Ablate, Clamp, Patch, Scale, find_cells, intervene, run_with_interventions, trace_cell
from lstm_interp.analysis import select_cells
from lstm_interp.interventions import InterventionError
from lstm_interp.report import write_html_report
from lstm_interp.tracing.cell_trace import as_rnn

TEXT = 'she said "yes" and he said "no".\n' * 12
VOCAB = "".join(sorted(set(TEXT)))
PROBE = 'he said "no" and she said "yes".\n'
ATOL = 1e-5

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def ids(text: str) -> Tensor:
    return torch.tensor([VOCAB.index(c) for c in text])


def quiet_trainer(tmp_path: Path, monitor: LSTMActivationMonitor, steps: int = 2) -> pl.Trainer:
    return pl.Trainer(default_root_dir=tmp_path, max_steps=steps, limit_val_batches=0, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[monitor])  # fmt: skip


def lstm_step(cell: nn.LSTMCell, x: Tensor, h: Tensor, c: Tensor) -> dict[str, Tensor]:
    """The LSTM step written out from PyTorch's documented equations: the reference the trace must match."""
    H = cell.hidden_size
    pre = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
    i, f = torch.sigmoid(pre[..., :H]), torch.sigmoid(pre[..., H : 2 * H])
    g, o = torch.tanh(pre[..., 2 * H : 3 * H]), torch.sigmoid(pre[..., 3 * H :])
    c = f * c + i * g
    return {"input_gate": i, "forget_gate": f, "cell_candidate": g, "output_gate": o, "cell": c, "hidden": o * c.tanh()}


# --------------------------------------------------------------------------------------- seq2seq with attention
class AttentionSeq2Seq(pl.LightningModule):
    """An ``nn.LSTM`` encoder reads the characters; an ``nn.LSTMCell`` decoder at ``decoder.cell`` steps over them
    again (teacher forcing), feeding its last attention context back in (Luong's input feeding), attending over the
    encoder's outputs with dot-product attention, and predicting the next character from [h, context]."""

    def __init__(self, hidden: int = 12) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(len(VOCAB), 6)
        self.encoder = nn.LSTM(6, hidden, batch_first=True)
        self.decoder = nn.ModuleDict({"cell": nn.LSTMCell(6 + hidden, hidden)})
        self.head = nn.Linear(2 * hidden, len(VOCAB))
        self.hidden = hidden

    def forward(self, x: Tensor) -> Tensor:
        e = self.embed(x)  # (B, T, 6)
        memory, (h_n, c_n) = self.encoder(e)  # (B, T, H)
        h, c = h_n[0], c_n[0]
        context = torch.zeros_like(h)
        logits = []
        for t in range(x.shape[1]):
            h, c = self.decoder["cell"](torch.cat([e[:, t], context], dim=1), (h, c))
            weights = torch.softmax(torch.einsum("bh,bth->bt", h, memory), dim=1)
            context = torch.einsum("bt,bth->bh", weights, memory)
            logits.append(self.head(torch.cat([h, context], dim=1)))
        return torch.stack(logits, dim=1)  # (B, T, V)

    def reference(self, x: Tensor, edit: Any = None) -> dict[str, Tensor]:
        """The decoder's quantities for batch row 0, step by step from the equations; ``edit(t, step)`` may change
        a step's values in place before they are used (the reference for an intervention)."""
        cell = self.decoder["cell"]
        e = self.embed(x)
        memory, (h_n, c_n) = self.encoder(e)
        h, c = h_n[0], c_n[0]
        context = torch.zeros_like(h)
        rows: dict[str, list[Tensor]] = {}
        for t in range(x.shape[1]):
            step = lstm_step(cell, torch.cat([e[:, t], context], dim=1), h, c)
            if edit is not None:
                step = edit(t, step, cell, torch.cat([e[:, t], context], dim=1), h, c)
            h, c = step["hidden"], step["cell"]
            weights = torch.softmax(torch.einsum("bh,bth->bt", h, memory), dim=1)
            context = torch.einsum("bt,bth->bh", weights, memory)
            for q, v in step.items():
                rows.setdefault(q, []).append(v[0])
        return {q: torch.stack(v) for q, v in rows.items()}

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x).reshape(-1, len(VOCAB)), y.reshape(-1))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.01)


def char_batches() -> DataLoader:
    data = ids(TEXT)
    n = (len(data) - 1) // 16
    x, y = data[: n * 16].reshape(n, 16), data[1 : n * 16 + 1].reshape(n, 16)
    return DataLoader(TensorDataset(x, y), batch_size=4)


def test_attention_decoder_stepping_an_lstm_cell_is_recorded_exactly(tmp_path):
    module = AttentionSeq2Seq()
    monitor = LSTMActivationMonitor(PROBE, chars=VOCAB, every_n_train_steps=1, dtype=torch.float32)
    trainer = quiet_trainer(tmp_path, monitor)
    trainer.fit(module, char_batches())
    folder = tmp_path / "lstm_interp"
    index = json.loads((folder / "index.json").read_text())
    assert index["modules"] == ["encoder", "decoder.cell"]
    tensors = load_file(folder / "step_2.safetensors")
    T, H = len(PROBE), module.hidden
    module.eval()
    with torch.no_grad():
        expected = module.reference(ids(PROBE)[None])
        logits = module(ids(PROBE)[None])[0]
    for q in ("input_gate", "forget_gate", "cell_candidate", "output_gate", "cell", "hidden"):
        got = tensors[f"probe0/decoder.cell.{q}"]
        assert got.shape == (T, H)
        torch.testing.assert_close(got, expected[q], atol=ATOL, rtol=0)
    assert tensors["probe0/encoder.cell"].shape == (T, H)
    torch.testing.assert_close(tensors["probe0/log_probs"], logits.log_softmax(-1), atol=ATOL, rtol=0)
    record = index["recordings"][-1]
    figures = set(record["files"]["figures"])
    assert {"cell_text_decoder.cell", "gate_saturation_decoder.cell", "topk_predictions_decoder.cell"} <= figures
    assert_picture(folder / record["files"]["figures"]["cell_text_decoder.cell"], min_width=400, min_height=100)
    assert (folder / record["files"]["html"]).is_file()


def test_interventions_on_the_decoder_cell_act_inside_the_users_loop_exactly():
    module = AttentionSeq2Seq().eval()
    x = ids(PROBE)[None].repeat(2, 1)  # two rows, both intervened alike
    with torch.no_grad():
        plain = module(x)

    def ablated_cell(t, step, cell, inp, h, c):  # cell 3 zeroed from step 5 on, before h = o * tanh(c)
        if t >= 5:
            step["cell"] = step["cell"].clone()
            step["cell"][:, 3] = 0
            step["hidden"] = step["output_gate"] * step["cell"].tanh()
        return step

    def clamped_forget(t, step, cell, inp, h, c):  # forget gates 0-1 held at 0.25, then the step recomputed
        f = step["forget_gate"].clone()
        f[:, [0, 1]] = 0.25
        new_c = f * c + step["input_gate"] * step["cell_candidate"]
        return {**step, "forget_gate": f, "cell": new_c, "hidden": step["output_gate"] * new_c.tanh()}

    cases = [
        ([Ablate("decoder.cell.cell", [3], steps=slice(5, None))], ablated_cell, "cell"),
        ([Clamp("decoder.cell.forget_gate", [0, 1], 0.25)], clamped_forget, "forget_gate"),
    ]
    for interventions, edit, quantity in cases:
        with torch.no_grad():
            expected = module.reference(x, edit)
            with intervene(module, interventions):
                out = module(x)
            recorded = run_and_capture(module, {"decoder.cell": module.decoder["cell"]}, x)[0]
        assert not module.decoder["cell"]._forward_hooks and not module._forward_pre_hooks
        hidden = torch.cat([call.out_state[0] for call in recorded["decoder.cell"].calls])  # type: ignore[index]
        torch.testing.assert_close(hidden, module.reference(x)["hidden"], atol=ATOL, rtol=0)  # hooks gone
        with torch.no_grad(), intervene(module, interventions, record=True) as record:
            module(x)
        traced = record.trace("decoder.cell")
        torch.testing.assert_close(traced[f"decoder.cell.{quantity}"], expected[quantity], atol=ATOL, rtol=0)
        torch.testing.assert_close(traced["decoder.cell.hidden"], expected["hidden"], atol=ATOL, rtol=0)
        assert not torch.allclose(out, plain) and torch.allclose(out[0], out[1])

    # Scale and Patch against the library's own stepwise reference: the cell run as a one-layer module.
    cell = module.decoder["cell"]
    inputs = torch.randn(20, cell.input_size)
    source = trace_cell(cell, torch.randn(20, cell.input_size), name="decoder.cell")

    class Loop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder = module.decoder

        def forward(self, xs: Tensor) -> Tensor:
            state = None
            hs = []
            for t in range(len(xs)):
                state = self.decoder["cell"](xs[t][None], state)
                hs.append(state[0][0])
            return torch.stack(hs)

    loop = Loop()
    for iv, as_module in [
        (Scale("decoder.cell.hidden", [2, 7], 0.5, steps=[3, 4, 9]), Scale("rnn.hidden", [2, 7], 0.5, steps=[3, 4, 9])),
        (Patch("decoder.cell.cell", [1], source, steps=slice(10, 15)), Patch("rnn.cell", [1], _renamed(source),
                                                                             steps=slice(10, 15))),
    ]:  # fmt: skip
        with torch.no_grad(), intervene(loop, [iv]):
            got = loop(inputs)
        want = run_with_interventions(as_rnn(cell), inputs, [as_module])["rnn.hidden"]
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def _renamed(source: Any) -> Any:
    """``source`` with its ``decoder.cell.*`` names as a module traced under the name ``rnn`` has them."""
    from lstm_interp.tracing import Trace

    acts = {name.replace("decoder.cell.", "rnn."): source[name] for name in source}
    return Trace(acts, text=None, tokens=source.tokens, cell=source.cell, num_layers=1, layer_names=["rnn"])


def test_intervene_refuses_what_it_cannot_follow_by_name():
    module = AttentionSeq2Seq()
    cases = [
        ("encoder.cell", r"'encoder' is an LSTM given whole sequences; run it with run_with_interventions"),
        ("decoder.lstm.cell", r"has no module 'decoder.lstm'; its cell modules are \['decoder.cell'\]"),
        ("decoder.cell.update_gate", r"unknown quantity 'update_gate'; an LSTM layer has"),
    ]
    for name, message in cases:
        with pytest.raises(InterventionError, match=message), intervene(module, [Ablate(name, [0])]):
            pass
    message = r"units \[12\] of 'decoder.cell.cell': it has 12 units"
    with pytest.raises(InterventionError, match=message), intervene(module, [Ablate("decoder.cell.cell", [12])]):
        pass
    for replacement, message in [
        (torch.jit.script(nn.LSTMCell(18, 12)), r"'decoder.cell' is a TorchScript module.*nn.LSTMCell, nn.GRUCell"),
        (MyCell(), r"'decoder.cell' is a MyCell, not a cell module"),
    ]:
        module.decoder["cell"] = replacement
        with pytest.raises(InterventionError, match=message), intervene(module, [Ablate("decoder.cell.cell", [0])]):
            pass
    assert not module._forward_pre_hooks


class MyCell(nn.Module):
    """A hand-written LSTM cell: not one of the classes whose gates the trace knows."""

    def __init__(self) -> None:
        super().__init__()
        self.weight_ih = nn.Parameter(torch.randn(48, 18))
        self.weight_hh = nn.Parameter(torch.randn(48, 12))

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        i, f, g, o = (x @ self.weight_ih.T + state[0] @ self.weight_hh.T).chunk(4, 1)
        c = f.sigmoid() * state[1] + i.sigmoid() * g.tanh()
        return o.sigmoid() * c.tanh(), c


def test_the_monitor_refuses_scripted_compiled_and_custom_cells_by_path():
    module = AttentionSeq2Seq()
    module.decoder["cell"] = MyCell()
    message = r"`modules` entry 'decoder.\*' names 'decoder.cell', which is a custom MyCell"
    with pytest.raises(ValueError, match=message):
        select_modules(module, ["decoder.*"])
    assert list(select_modules(module, None)) == ["encoder"]  # the others are still followed
    module.encoder = nn.Identity()
    with pytest.raises(ValueError, match=r"AttentionSeq2Seq has no recurrent module to monitor: .*"
                                         r"not followed: \{'decoder.cell': 'a custom MyCell"):  # fmt: skip
        select_modules(module, None)
    module.decoder["cell"] = torch.jit.script(nn.LSTMCell(18, 12))
    with pytest.raises(ValueError, match=r"'decoder.cell': 'a TorchScript module \(RecursiveScriptModule\); hooks"):
        select_modules(module, None)
    module.decoder["cell"] = torch.compile(nn.LSTMCell(18, 12))
    with pytest.raises(ValueError, match=r"names 'decoder.cell', which is compiled with torch.compile"):
        select_modules(module, ["decoder.cell"])


# --------------------------------------------------------------------------------------- a GRUCell policy
class Policy(pl.LightningModule):
    """Float observations (B, T, 3) in, a GRUCell at ``gru`` stepped over them, two action logits per step; the
    state is reset where an episode ends (a done flag in the last channel), as reinforcement-learning loops do."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.gru = nn.GRUCell(3, 10)
        self.actor = nn.Linear(10, 2)

    def forward(self, obs: Tensor) -> Tensor:
        h = torch.zeros(obs.shape[0], 10)
        logits = []
        for t in range(obs.shape[1]):
            h = self.gru(obs[:, t], h)
            logits.append(self.actor(h))
            h = h * (1 - (obs[:, t, 2:3] > 0.9).float())  # the episode ended: start the next from zeros
        return torch.stack(logits, dim=1)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        obs, actions = batch
        return nn.functional.cross_entropy(self(obs).reshape(-1, 2), actions.reshape(-1))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def observations(T: int) -> Tensor:
    t = torch.arange(T, dtype=torch.float32)
    done = (t % 25 == 24).float()
    return torch.stack([torch.sin(t / 5), torch.cos(t / 11), done], dim=1)  # (T, 3)


def test_gru_cell_policy_on_float_observations_gets_the_series_figure(tmp_path):
    obs = observations(32 * 8).reshape(32, 8, 3)
    actions = (obs[..., 0] > 0).long()
    monitor = LSTMActivationMonitor(probe_tensors=[observations(120)[None]], every_n_train_steps=2,
                                    dtype=torch.float32)  # fmt: skip
    module = Policy()
    quiet_trainer(tmp_path, monitor).fit(module, DataLoader(TensorDataset(obs, actions), batch_size=8))
    folder = tmp_path / "lstm_interp"
    pixels = assert_picture(folder / "step_2_series.png", min_width=600, min_height=200)
    assert len(np.unique(pixels[len(pixels) // 2 :].reshape(-1, pixels.shape[2]), axis=0)) > 8
    tensors = load_file(folder / "step_2.safetensors")
    module.eval()
    probe = observations(120)
    # The stepwise reference, from PyTorch's GRU equations, with the resets the loop makes.
    g = module.gru
    h = torch.zeros(10)
    rows: dict[str, list[Tensor]] = {"reset_gate": [], "update_gate": [], "new_gate": [], "hidden": []}
    with torch.no_grad():
        for t in range(120):
            gi, gh = g.weight_ih @ probe[t] + g.bias_ih, g.weight_hh @ h + g.bias_hh
            r, z = torch.sigmoid(gi[:10] + gh[:10]), torch.sigmoid(gi[10:20] + gh[10:20])
            n = torch.tanh(gi[20:] + r * gh[20:])
            h = (1 - z) * n + z * h
            for q, v in zip(rows, (r, z, n, h), strict=True):
                rows[q].append(v)
            h = h * (1 - float(probe[t, 2] > 0.9))
        own = module(probe[None])
    for q, values in rows.items():
        torch.testing.assert_close(tensors[f"probe0/gru.{q}"], torch.stack(values), atol=ATOL, rtol=0)
    torch.testing.assert_close(module.actor(tensors["probe0/gru.hidden"]), own[0], atol=ATOL, rtol=0)

    # An update gate clamped shut inside the policy's loop, against the same reference with z held at 0.
    clamp = Clamp("gru.update_gate", [4], 0.0, steps=slice(30, 60))
    with torch.no_grad(), intervene(module, [clamp], record=True) as record:
        module(probe[None])
    traced = record.trace("gru")
    z = traced["gru.update_gate"]
    assert torch.all(z[30:60, 4] == 0) and torch.all(z[:30, 4] > 0)
    torch.testing.assert_close(traced["gru.hidden"][:30], tensors["probe0/gru.hidden"][:30], atol=ATOL, rtol=0)
    new, before = traced["gru.new_gate"][30:60, 4], traced["gru.hidden"][30:60, 4]
    torch.testing.assert_close(before, new, atol=ATOL, rtol=0)  # z = 0: h' = n


# --------------------------------------------------------------------------------------- nn.LSTM one step at a time
class Stepper(nn.Module):
    """An nn.LSTM (2 layers) called one character at a time with its state carried, and reset at ``reset_at``."""

    def __init__(self, reset_at: int | None = None, shrink_at: int | None = None, prefix: int = 0) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.embed = nn.Embedding(len(VOCAB), 4)
        self.lstm = nn.LSTM(4, 6, num_layers=2, batch_first=True)
        self.reset_at, self.shrink_at, self.prefix = reset_at, shrink_at, prefix

    def forward(self, x: Tensor) -> Tensor:
        e = self.embed(x)
        state = None
        outs = []
        if self.prefix:
            out, state = self.lstm(e[:, : self.prefix])
            outs.append(out[:1])
        for t in range(self.prefix, x.shape[1]):
            if t == self.reset_at:
                state = None
            if t == self.shrink_at:
                e, state = e[:1], (state[0][:, :1], state[1][:, :1])  # type: ignore[index]
            out, state = self.lstm(e[:, t : t + 1], state)
            outs.append(out[:1])
        return torch.cat(outs, dim=1)


def test_an_lstm_called_one_step_at_a_time_is_joined_into_one_exact_sequence():
    x = ids(PROBE)[None].repeat(3, 1)
    for model in (Stepper(), Stepper(reset_at=10)):
        model.eval()
        with torch.no_grad():
            (tr,) = trace_modules(model, {"lstm": model.lstm}, Probe(PROBE, ids(PROBE), x), VOCAB)
            out = model(x)
        assert tr.num_steps == len(PROBE) and tr.text == PROBE
        torch.testing.assert_close(tr["lstm.1.hidden"], out[0], atol=ATOL, rtol=0)
        if model.reset_at:  # the layer-0 state starts again from zeros: its first hidden state after the reset
            fresh, _ = model.lstm(model.embed(x[:1, 10:11]))
            torch.testing.assert_close(tr["lstm.1.hidden"][10], fresh[0, 0], atol=ATOL, rtol=0)


def test_calls_that_disagree_are_described_when_the_fit_starts(tmp_path):
    class Wrapped(pl.LightningModule):
        def __init__(self, stepper: Stepper) -> None:
            super().__init__()
            self.net = stepper
            self.head = nn.Linear(6, len(VOCAB))

        def forward(self, x: Tensor) -> Tensor:
            return self.head(self.net(x))

        def training_step(self, batch: Any, batch_idx: int) -> Tensor:
            x, y = batch
            return nn.functional.cross_entropy(self(x[:1]).reshape(-1, len(VOCAB)), y[:1].reshape(-1))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    # Calls of one length and batch size, the state carried: one sequence, nothing to say.
    monitor = LSTMActivationMonitor(PROBE, chars=VOCAB, every_n_train_steps=1, dtype=torch.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_trainer(tmp_path / "a", monitor, steps=1).fit(Wrapped(Stepper()), char_batches())
    assert not [w for w in caught if "was called" in str(w.message) or "ran " in str(w.message)]
    tensors = load_file(tmp_path / "a" / "lstm_interp" / "step_1.safetensors")
    assert tensors["probe0/net.lstm.1.hidden"].shape == (len(PROBE), 6)
    # A first call over 10 characters, then one at a time: joined, and said.
    monitor = LSTMActivationMonitor(PROBE, chars=VOCAB, every_n_train_steps=1, dtype=torch.float32)
    message = (rf"'net.lstm' was called {len(PROBE) - 9} times in one forward pass with lengths \[10, 1, 1, 1, "
               rf".*joins them into one sequence of {len(PROBE)} steps")  # fmt: skip
    with pytest.warns(UserWarning, match=message):
        quiet_trainer(tmp_path / "b", monitor, steps=1).fit(Wrapped(Stepper(prefix=10)), char_batches())
    # A probe of two rows, the batch cut to one half-way: not one sequence.
    monitor = LSTMActivationMonitor(probe_tensors=[ids(PROBE)[None].repeat(2, 1)], every_n_train_steps=1)
    with pytest.warns(UserWarning, match=r"batch sizes \[2, 2, 2, 2, 2, 1, 1.*traces its first call only"):
        quiet_trainer(tmp_path / "c", monitor, steps=1).fit(Wrapped(Stepper(shrink_at=5)), char_batches())


def test_a_decoder_stepping_fewer_times_than_the_probe_is_labelled_by_step(tmp_path):
    class Short(AttentionSeq2Seq):
        """Decodes all but the last four characters."""

        def forward(self, x: Tensor) -> Tensor:
            return super().forward(x[:, :-4])

        def training_step(self, batch: Any, batch_idx: int) -> Tensor:
            x, y = batch
            return nn.functional.cross_entropy(self(x).reshape(-1, len(VOCAB)), y[:, :-4].reshape(-1))

    module = Short()
    monitor = LSTMActivationMonitor(PROBE, chars=VOCAB, every_n_train_steps=1, dtype=torch.float32)
    message = (rf"'decoder.cell' ran {len(PROBE) - 4} steps on probe 0, which has {len(PROBE)} tokens: its figures "
               "and report label those steps by number")  # fmt: skip
    with pytest.warns(UserWarning, match=message):
        quiet_trainer(tmp_path, monitor, steps=1).fit(module, char_batches())
    module.eval()
    with torch.no_grad():
        modules = {"encoder": module.encoder, "decoder.cell": module.decoder["cell"]}
        traces = trace_modules(module, modules, Probe(PROBE, ids(PROBE), ids(PROBE)[None]), VOCAB)
    decoder = traces[1]
    assert decoder.text is None and decoder.chars is None and decoder.labels is None
    assert torch.equal(decoder.tokens, torch.arange(len(PROBE) - 4))
    index = json.loads((tmp_path / "lstm_interp" / "index.json").read_text())
    assert index["recordings"][-1]["files"]["figures"]


# --------------------------------------------------------------------------------------- other paths
def test_cell_traces_go_through_find_cells_select_cells_and_the_html_report(tmp_path):
    module = AttentionSeq2Seq().eval()
    text = TEXT[:200]
    with torch.no_grad():
        (_, decoder) = trace_modules(module, {"encoder": module.encoder, "decoder.cell": module.decoder["cell"]},
                                     Probe(text, ids(text), ids(text)[None]), VOCAB)  # fmt: skip
    assert decoder.layer_names == ["decoder.cell"] and decoder.text == text
    result = find_cells(decoder, "inside_quotes", "cell", top=3)
    assert len(result.rows) == 3 and {row.layer for row in result.rows} == {"decoder.cell"}
    start = text.index('"') + 1
    chosen = select_cells(decoder, (start, start + 3), quantity="cell", threshold=0.0)
    assert all(layer == "decoder.cell" for layer, _ in chosen)
    page = write_html_report(decoder, tmp_path / "decoder.html", chars=VOCAB)
    assert "decoder.cell" in page.read_text(encoding="utf-8")


def test_trace_cell_checks_its_inputs_and_carries_state_like_a_loop():
    cell = nn.LSTMCell(3, 5)
    xs = torch.randn(12, 3)
    h0, c0 = torch.randn(5), torch.randn(5)
    state, hs = (h0[None], c0[None]), []
    for t in range(12):
        state = cell(xs[t][None], state)
        hs.append(state[0][0])
    tr = trace_cell(cell, xs, hx=(h0, c0), name="dec")
    torch.testing.assert_close(tr["dec.hidden"], torch.stack(hs).detach(), atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match=r"`inputs` must be \(T, 3\) for 'dec', got shape \(12, 4\)"):
        trace_cell(cell, torch.randn(12, 4), name="dec")
    with pytest.raises(ValueError, match=r"`hx` of LSTMCell 'dec' must be a pair \(h, c\), got Tensor"):
        trace_cell(cell, xs, hx=h0, name="dec")
    with pytest.raises(ValueError, match=r"`incoming` h of 'dec' must be \(12, 5\), got \(11, 5\)"):
        trace_cell(cell, xs, incoming=(torch.zeros(11, 5), torch.zeros(12, 5)), name="dec")
    with pytest.raises(ValueError, match="not both"):
        trace_cell(cell, xs, hx=(h0, c0), incoming=(torch.zeros(12, 5), torch.zeros(12, 5)), name="dec")
    with pytest.raises(TypeError, match=r"'dec' is a LSTM; the cell trace follows nn.LSTMCell, nn.GRUCell"):
        trace_cell(nn.LSTM(3, 5), xs, name="dec")


def test_a_cell_called_without_state_or_unbatched_starts_from_zeros_as_the_module_does():
    class Unbatched(nn.Module):
        """A GRUCell and an RNNCell fed (features,) inputs, the first call of each without a state."""

        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(3)
            self.gru, self.rnn = nn.GRUCell(3, 4), nn.RNNCell(4, 5, nonlinearity="relu")

        def forward(self, xs: Tensor) -> Tensor:
            h = g = None
            outs = []
            for x in xs[0]:
                h = self.gru(x, h)
                g = self.rnn(h, g)
                outs.append(g)
            return torch.stack(outs)

    model = Unbatched().eval()
    xs = torch.randn(1, 15, 3)
    with torch.no_grad():
        gru, rnn = trace_modules(model, {"gru": model.gru, "rnn": model.rnn}, Probe(None, None, xs), None)
        out = model(xs)
        first = model.gru(xs[0, 0])  # no state: zeros
    assert gru.num_steps == rnn.num_steps == 15
    torch.testing.assert_close(gru["gru.hidden"][0], first, atol=ATOL, rtol=0)
    torch.testing.assert_close(rnn["rnn.hidden"], out, atol=ATOL, rtol=0)
