"""trace_rnn: the exact trace of nn.LSTM / nn.GRU / nn.RNN modules we did not build (multi-layer, bidirectional,
proj_size, any layout), against the module's own outputs and a step-by-step cell reference."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from lstm_interp.tracing import trace_rnn
from lstm_interp.tracing.module_trace import layer_prefixes

ATOL = 1e-5


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny matrices on a shared 2-CPU machine: a second intra-op thread only waits for the first."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_rnn(
    cls: type[nn.RNNBase],
    input_size: int,
    hidden: int,
    *,
    seed: int = 0,
    weight_scale: float = 1.0,
    **kwargs: object,
) -> nn.RNNBase:
    torch.manual_seed(seed)
    rnn = cls(input_size, hidden, **kwargs).eval()
    with torch.no_grad():
        for p in rnn.parameters():
            p.mul_(weight_scale)  # larger weights saturate gates and push cells away from zero: a harder test
    return rnn


def run_module(rnn: nn.RNNBase, x: Tensor, hx: Tensor | tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, object]:
    """The module's own (T, D * width) output sequence and final state for the one sequence ``x`` (T, I)."""
    with torch.no_grad():
        out, state = rnn(x[None] if rnn.batch_first else x[:, None], hx)
    return (out[0] if rnn.batch_first else out[:, 0]), state


# ---------------------------------------------------------------------------------------------- stepwise reference
def _weights(rnn: nn.RNNBase, k: int, suffix: str) -> dict[str, Tensor]:
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
    found = {n: getattr(rnn, f"{n}_l{k}{suffix}") for n in names if hasattr(rnn, f"{n}_l{k}{suffix}")}
    gates = found["weight_hh"].shape[0]
    found.setdefault("bias_ih", torch.zeros(gates))
    found.setdefault("bias_hh", torch.zeros(gates))
    return found


def _cell(rnn: nn.RNNBase, w: dict[str, Tensor]) -> nn.Module:
    """The nn.*Cell of one layer direction, holding its weights (not used for an LSTM with a projection)."""
    input_size, hidden = w["weight_ih"].shape[1], rnn.hidden_size
    if isinstance(rnn, nn.LSTM):
        cell: nn.Module = nn.LSTMCell(input_size, hidden)
    elif isinstance(rnn, nn.GRU):
        cell = nn.GRUCell(input_size, hidden)
    else:
        cell = nn.RNNCell(input_size, hidden, nonlinearity=rnn.nonlinearity)
    cell.load_state_dict({n: w[n] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    return cell


def _direction(rnn: nn.RNNBase, w: dict[str, Tensor], x: Tensor, steps: range, h: Tensor, c: Tensor | None):
    """One direction of one layer, one step at a time over ``steps``; rows are stored at their step."""
    H, T = rnn.hidden_size, len(x)
    rows: dict[str, list[Tensor | None]] = {}
    cell = None if "weight_hr" in w else _cell(rnn, w)

    def put(name: str, t: int, value: Tensor) -> None:
        rows.setdefault(name, [None] * T)[t] = value

    for t in steps:
        xt = x[t : t + 1]
        gi = xt @ w["weight_ih"].T + w["bias_ih"]
        gh = h @ w["weight_hh"].T + w["bias_hh"]
        if isinstance(rnn, nn.LSTM):
            i_, f_, g_, o_ = (gi + gh).chunk(4, dim=1)
            i_, f_, g_, o_ = i_.sigmoid(), f_.sigmoid(), g_.tanh(), o_.sigmoid()
            if cell is None:  # proj_size: nn.LSTMCell has none, so the step is written out
                c = f_ * c + i_ * g_
                h = (o_ * torch.tanh(c)) @ w["weight_hr"].T
            else:
                h, c = cell(xt, (h, c))
            values = {"input_gate": i_, "forget_gate": f_, "cell_candidate": g_, "output_gate": o_, "cell": c}
        elif isinstance(rnn, nn.GRU):
            r_ = (gi[:, :H] + gh[:, :H]).sigmoid()
            z_ = (gi[:, H : 2 * H] + gh[:, H : 2 * H]).sigmoid()
            n_ = (gi[:, 2 * H :] + r_ * gh[:, 2 * H :]).tanh()
            h = cell(xt, h)
            values = {"reset_gate": r_, "update_gate": z_, "new_gate": n_}
        else:
            h = cell(xt, h)
            values = {}
        for name, value in {**values, "hidden": h}.items():
            put(name, t, value)
    return {name: torch.cat(vals) for name, vals in rows.items()}  # type: ignore[arg-type]


def stepwise_reference(rnn: nn.RNNBase, x: Tensor, name: str, hx: object = None) -> dict[str, Tensor]:
    """Every quantity of every layer direction, from nn.LSTMCell / nn.GRUCell / nn.RNNCell steps: slow, plainly
    right. A reverse direction steps from the last input to the first; its rows are kept at their step."""
    out: dict[str, Tensor] = {}
    width = getattr(rnn, "proj_size", 0) or rnn.hidden_size
    directions = ("", "_reverse") if rnn.bidirectional else ("",)
    prefixes = iter(layer_prefixes(rnn, name))
    entry = 0
    with torch.no_grad():
        for k in range(rnn.num_layers):
            hiddens = []
            for suffix in directions:
                if hx is None:
                    h, c = torch.zeros(1, width), torch.zeros(1, rnn.hidden_size)
                elif isinstance(hx, tuple):
                    h, c = hx[0][entry].reshape(1, -1), hx[1][entry].reshape(1, -1)
                else:
                    h, c = hx[entry].reshape(1, -1), None
                steps = range(len(x) - 1, -1, -1) if suffix else range(len(x))
                values = _direction(rnn, _weights(rnn, k, suffix), x, steps, h, c)
                prefix = next(prefixes)
                out |= {f"{prefix}.{q}": v for q, v in values.items()}
                hiddens.append(values["hidden"])
                entry += 1
            x = torch.cat(hiddens, dim=1)
    return out


# ---------------------------------------------------------------------------------------------- exactness
@st.composite
def architectures(draw: st.DrawFn) -> dict[str, object]:
    cls = draw(st.sampled_from([nn.LSTM, nn.GRU, nn.RNN]))
    hidden = draw(st.integers(1, 8))
    kwargs: dict[str, object] = {
        "num_layers": draw(st.integers(1, 3)),
        "bidirectional": draw(st.booleans()),
        "batch_first": draw(st.booleans()),
        "bias": draw(st.booleans()),
    }
    if cls is nn.LSTM and hidden > 1 and draw(st.booleans()):
        kwargs["proj_size"] = draw(st.integers(1, hidden - 1))  # PyTorch wants proj_size < hidden_size
    if cls is nn.RNN:
        kwargs["nonlinearity"] = draw(st.sampled_from(["tanh", "relu"]))
    return {"cls": cls, "input_size": draw(st.integers(1, 6)), "hidden": hidden, **kwargs}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arch=architectures(),
    steps=st.integers(1, 25),
    chunk_size=st.integers(1, 12),
    with_hx=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_trace_rnn_equals_the_module_and_a_stepwise_reference(arch, steps, chunk_size, with_hx, seed):
    arch = dict(arch)
    # A ReLU RNN's hidden state is unbounded: with doubled weights it reaches 100 and grows the rounding differences
    # between kernels (the stepwise reference and the module's own kernel differ as much as the trace does), so its
    # weights stay as initialised, and float32 rounds its large values relatively.
    relu = arch.get("nonlinearity") == "relu"
    scale, rtol = (1.0, 1e-6) if relu else (2.0, 0.0)
    rnn = make_rnn(arch.pop("cls"), arch.pop("input_size"), arch.pop("hidden"), seed=seed, weight_scale=scale, **arch)
    entries = rnn.num_layers * (2 if rnn.bidirectional else 1)
    width = getattr(rnn, "proj_size", 0) or rnn.hidden_size
    x = torch.randn(steps, rnn.input_size)
    hx = None
    if with_hx:
        h0 = torch.randn(entries, 1, width)
        hx = (h0, torch.randn(entries, 1, rnn.hidden_size)) if isinstance(rnn, nn.LSTM) else h0
    tr = trace_rnn(rnn, x, name="enc.rnn", hx=hx, chunk_size=chunk_size)
    out, state = run_module(rnn, x, hx)

    assert tr.layer_names == layer_prefixes(rnn, "enc.rnn") and tr.num_layers == entries
    # The module's output sequence: the last layer's directions side by side, forward first.
    last = tr.layer_names[-2:] if rnn.bidirectional else tr.layer_names[-1:]
    torch.testing.assert_close(torch.cat([tr[f"{p}.hidden"] for p in last], dim=1), out, atol=ATOL, rtol=rtol)
    # h_n (and c_n) of every layer direction: a forward direction ends at the last step, a reverse one at step 0.
    h_n, c_n = state if isinstance(rnn, nn.LSTM) else (state, None)
    for j, prefix in enumerate(tr.layer_names):
        row = 0 if prefix.endswith(".reverse") else -1
        torch.testing.assert_close(tr[f"{prefix}.hidden"][row], h_n[j, 0], atol=ATOL, rtol=rtol)
        final = tr.final_state[j]
        torch.testing.assert_close((final[0] if c_n is not None else final)[0, 0], h_n[j, 0], atol=ATOL, rtol=rtol)
        if c_n is not None:
            torch.testing.assert_close(tr[f"{prefix}.cell"][row], c_n[j, 0], atol=ATOL, rtol=rtol)
            torch.testing.assert_close(final[1][0, 0], c_n[j, 0], atol=ATOL, rtol=rtol)
    # Every gate, cell and hidden state, step by step.
    reference = stepwise_reference(rnn, x, "enc.rnn", hx)
    assert set(tr) == set(reference)
    for name, expected in reference.items():
        torch.testing.assert_close(tr[name], expected, atol=ATOL, rtol=rtol, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("bidirectional", [False, True])
def test_proj_size_widths_and_the_projection(bidirectional):
    rnn = make_rnn(nn.LSTM, 5, 7, num_layers=2, proj_size=3, bidirectional=bidirectional, batch_first=True)
    x = torch.randn(30, 5)
    tr = trace_rnn(rnn, x, name="lm.lstm", chunk_size=8)
    for k, prefix in enumerate(tr.layer_names):
        assert tr[f"{prefix}.hidden"].shape == (30, 3)  # proj_size wide
        assert all(tr[f"{prefix}.{q}"].shape == (30, 7) for q in ("cell", "input_gate", "forget_gate", "output_gate"))
        w_hr = getattr(rnn, f"weight_hr_l{k // 2 if bidirectional else k}{'_reverse' * prefix.endswith('reverse')}")
        # h_t = W_hr (o_t * tanh c_t), from the traced gate and cell.
        projected = (tr[f"{prefix}.output_gate"] * torch.tanh(tr[f"{prefix}.cell"])) @ w_hr.T
        torch.testing.assert_close(projected, tr[f"{prefix}.hidden"], atol=ATOL, rtol=0)
    assert tr.final_state[0][0].shape == (1, 1, 3) and tr.final_state[0][1].shape == (1, 1, 7)


def test_bidirectional_names_rows_in_text_order_and_a_filter():
    rnn = make_rnn(nn.LSTM, 3, 4, bidirectional=True)
    x = torch.randn(9, 3)
    tr = trace_rnn(rnn, x, name="rnn")
    assert tr.layer_names == ["rnn", "rnn.reverse"]
    assert {"rnn.cell", "rnn.reverse.cell", "rnn.reverse.forget_gate"} <= set(tr)
    # Row t of the reverse direction has read x_{T-1} .. x_t: the same module run on x[t:] alone ends there.
    for t in (0, 4, 8):
        tail, _ = run_module(rnn, x[t:])
        torch.testing.assert_close(tr["rnn.reverse.hidden"][t], tail[0, 4:], atol=ATOL, rtol=0)
    only = trace_rnn(rnn, x, name="rnn", names_filter="*.reverse.cell")  # a forward prefix is no reverse's
    assert list(only) == ["rnn.reverse.cell"]
    torch.testing.assert_close(only["rnn.reverse.cell"], tr["rnn.reverse.cell"], atol=0, rtol=0)
    deep = trace_rnn(make_rnn(nn.GRU, 3, 4, num_layers=2, bidirectional=True), x, name="encoder.lstm")
    assert deep.layer_names == ["encoder.lstm.0", "encoder.lstm.0.reverse", "encoder.lstm.1", "encoder.lstm.1.reverse"]
    assert deep.stack("hidden").shape == (4, 9, 4)


def test_final_state_continues_as_hx():
    """A forward module's final_state, stacked, is the hx that carries its trace on to the next segment."""
    rnn = make_rnn(nn.LSTM, 3, 6, num_layers=2, proj_size=2)
    x = torch.randn(20, 3)
    whole = trace_rnn(rnn, x, name="lstm")
    first = trace_rnn(rnn, x[:12], name="lstm")
    hx = tuple(torch.cat([s[j] for s in first.final_state]) for j in range(2))
    second = trace_rnn(rnn, x[12:], name="lstm", hx=hx, chunk_size=3)
    for name in whole:
        torch.testing.assert_close(torch.cat([first[name], second[name]]), whole[name], atol=ATOL, rtol=0)


def test_initial_state_and_no_bias():
    rnn = make_rnn(nn.LSTM, 3, 4, num_layers=2, bias=False)
    x = torch.randn(12, 3)
    h0, c0 = torch.randn(2, 1, 4), torch.randn(2, 1, 4)
    tr = trace_rnn(rnn, x, name="lstm", hx=(h0[:, 0], c0[:, 0]))  # unbatched (layers, H) works too
    out, (_, c_n) = run_module(rnn, x, (h0, c0))
    torch.testing.assert_close(tr["lstm.1.hidden"], out, atol=ATOL, rtol=0)
    torch.testing.assert_close(tr["lstm.0.cell"][-1], c_n[0, 0], atol=ATOL, rtol=0)


def test_tracing_draws_nothing_from_the_global_generator():
    """The per-layer modules are built on the meta device: a recording must not change the training run."""
    rnn = make_rnn(nn.LSTM, 3, 4, num_layers=2, bidirectional=True, proj_size=2)
    x = torch.randn(5, 3)
    before = torch.get_rng_state()
    trace_rnn(rnn, x)
    assert torch.equal(before, torch.get_rng_state())


def test_half_precision_modules_are_traced_in_float32():
    rnn = make_rnn(nn.GRU, 3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(7, 3)
    tr = trace_rnn(rnn.half(), x.half(), name="g")
    reference = trace_rnn(rnn.float(), x.half().float(), name="g")  # the same float16 values, in float32
    assert all(t.dtype == torch.float32 for t in tr.values())
    for name in tr:
        torch.testing.assert_close(tr[name], reference[name], atol=0, rtol=0)


# ---------------------------------------------------------------------------------------------- refusals
def test_bad_modules_and_inputs_name_the_module_and_what_is_supported():
    with pytest.raises(TypeError, match=r"'head': expected an nn\.LSTM, nn\.GRU or nn\.RNN, got Linear; .*proj_size"):
        trace_rnn(nn.Linear(3, 4), torch.randn(5, 3), name="head")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`inputs` must be \(T, 3\) for 'enc', got shape \(5, 1, 3\)"):
        trace_rnn(nn.LSTM(3, 4), torch.randn(5, 1, 3), name="enc")
    with pytest.raises(ValueError, match=r"cannot trace an empty sequence through 'enc'"):
        trace_rnn(nn.LSTM(3, 4), torch.randn(0, 3), name="enc")
    with pytest.raises(ValueError, match="match no activation name"):
        trace_rnn(nn.LSTM(3, 4), torch.randn(5, 3), name="lstm", names_filter="rnn.cell")


def test_bad_initial_states_name_the_module_and_the_shape_expected():
    bi = nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2)
    good_h, good_c = torch.zeros(4, 1, 2), torch.zeros(4, 1, 4)
    message = r"`hx` h0 of 'enc' must hold one sequence's state for each of its 4 layer directions, of shape \(4, 2\)"
    with pytest.raises(ValueError, match=message + r" or \(4, 1, 2\); got \(2, 1, 2\)"):
        trace_rnn(bi, torch.randn(5, 3), name="enc", hx=(torch.zeros(2, 1, 2), good_c))
    with pytest.raises(ValueError, match=r"`hx` c0 of 'enc' .* \(4, 4\) or \(4, 1, 4\); got \(4, 3, 4\)"):
        trace_rnn(bi, torch.randn(5, 3), name="enc", hx=(good_h, torch.zeros(4, 3, 4)))
    with pytest.raises(ValueError, match=r"the `hx` of LSTM 'enc' must be a pair \(h0, c0\), got Tensor"):
        trace_rnn(bi, torch.randn(5, 3), name="enc", hx=good_h)
    with pytest.raises(ValueError, match=r"`hx` h0 of 'dec' .* got tuple"):
        trace_rnn(nn.GRU(3, 4), torch.randn(5, 3), name="dec", hx=(torch.zeros(1, 4), torch.zeros(1, 4)))
