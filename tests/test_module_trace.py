"""trace_rnn: the exact trace of nn.LSTM / nn.GRU / nn.RNN modules we did not build (multi-layer, any layout)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lstm_interp.tracing import trace_rnn


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("num_layers", [1, 3])
def test_trace_rnn_matches_the_module(cls, batch_first, num_layers):
    torch.manual_seed(0)
    rnn = cls(5, 7, num_layers=num_layers, batch_first=batch_first)
    x = torch.randn(40, 5)
    tr = trace_rnn(rnn, x, name="enc.rnn", chunk_size=9)
    with torch.no_grad():
        out, state = rnn(x[None] if batch_first else x[:, None])
    out = out[0] if batch_first else out[:, 0]
    last = tr.layer_names[-1]
    assert tr.layer_names == (["enc.rnn"] if num_layers == 1 else [f"enc.rnn.{k}" for k in range(num_layers)])
    torch.testing.assert_close(tr[f"{last}.hidden"], out, atol=1e-5, rtol=0)
    assert tr.stack("hidden").shape == (num_layers, 40, 7)
    if cls is nn.LSTM:
        h_n, c_n = state
        for k, layer in enumerate(tr.layer_names):
            torch.testing.assert_close(tr[f"{layer}.cell"][-1], c_n[k, 0], atol=1e-5, rtol=0)
            torch.testing.assert_close(tr[f"{layer}.hidden"][-1], h_n[k, 0], atol=1e-5, rtol=0)
            recomputed = tr[f"{layer}.output_gate"] * torch.tanh(tr[f"{layer}.cell"])
            torch.testing.assert_close(recomputed, tr[f"{layer}.hidden"], atol=1e-5, rtol=0)


def test_initial_state_and_no_bias():
    torch.manual_seed(0)
    rnn = nn.LSTM(3, 4, num_layers=2, bias=False)
    x = torch.randn(12, 3)
    h0, c0 = torch.randn(2, 1, 4), torch.randn(2, 1, 4)
    tr = trace_rnn(rnn, x, name="lstm", hx=(h0, c0))
    with torch.no_grad():
        out, (_, c_n) = rnn(x[:, None], (h0, c0))
    torch.testing.assert_close(tr["lstm.1.hidden"], out[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(tr["lstm.0.cell"][-1], c_n[0, 0], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("module", "match"),
    [
        (nn.LSTM(3, 4, bidirectional=True), "bidirectional"),
        (nn.LSTM(3, 4, proj_size=2), "proj_size=2"),
    ],
)
def test_unsupported_modules_are_refused(module, match):
    with pytest.raises(ValueError, match=match):
        trace_rnn(module, torch.randn(5, 3), name="m")


def test_bad_inputs():
    with pytest.raises(TypeError, match=r"expected an nn\.LSTM, nn\.GRU or nn\.RNN, got Linear"):
        trace_rnn(nn.Linear(3, 4), torch.randn(5, 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`inputs` must be \(T, 3\)"):
        trace_rnn(nn.LSTM(3, 4), torch.randn(5, 1, 3))
    with pytest.raises(ValueError, match="match no activation name"):
        trace_rnn(nn.LSTM(3, 4), torch.randn(5, 3), name="lstm", names_filter="rnn.cell")
