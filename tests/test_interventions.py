"""``run_with_interventions`` against a step-by-step reference that applies each intervention inside its loop.

The reference below is written from the semantics in ``lstm_interp.interventions.intervention`` alone (PyTorch's
equations, one step at a time, the new value put in at the documented point), sharing no code with the library.
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstm_interp import trace, trace_rnn
from lstm_interp.interventions import Ablate, Clamp, InterventionError, Patch, Scale, run_with_interventions
from lstm_interp.interventions.intervention_rules import clamp_range
from lstm_interp.tracing.quantities import QUANTITIES

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = 'ab{"x" y}\n.ab {a} "b" x.\n'
KINDS = ("ablate", "mean", "clamp", "scale", "patch")


# ------------------------------------------------------------------------------------------------ the reference
def _replace(iv, values: torch.Tensor, t: int) -> torch.Tensor:
    """``values`` (H,) with the intervention's units replaced as it prescribes at step ``t`` (if it acts then)."""
    steps = iv.steps
    acts = (
        steps is None
        or (isinstance(steps, slice) and (steps.start or 0) <= t < (math.inf if steps.stop is None else steps.stop))
        or (isinstance(steps, list) and t in steps)
    )
    if not acts:
        return values
    values = values.clone()
    units = list(iv.units)
    if isinstance(iv, Ablate):
        values[units] = 0.0 if iv.value == "zero" else iv.reference[iv.name][:, units].mean(0)
    elif isinstance(iv, Clamp):
        values[units] = iv.value
    elif isinstance(iv, Scale):
        values[units] = values[units] * iv.factor
    elif isinstance(iv, Patch):
        values[units] = iv.source[iv.name][t, units]
    return values


def reference(model, text: str, interventions) -> dict[str, torch.Tensor]:
    """Every activation and the log-probabilities, one step at a time, interventions applied inside the step."""
    cfg = model.config
    H = cfg.hidden_size
    ids = model.vocab.encode(text)
    state = [(torch.zeros(H), torch.zeros(H)) for _ in range(cfg.num_layers)]
    out: dict[str, list[torch.Tensor]] = {}

    def put(name: str, value: torch.Tensor, t: int) -> torch.Tensor:
        for iv in interventions:
            if iv.name == name:
                value = _replace(iv, value, t)
        out.setdefault(name, []).append(value)
        return value

    for t, token in enumerate(ids.tolist()):
        x = model.embedding.weight[token]
        for i, layer in enumerate(model.layers):
            p = f"layers.{i}"
            w_ih, w_hh, b_ih, b_hh = layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0
            h, c = state[i]
            if cfg.cell == "lstm":
                pre = w_ih @ x + b_ih + w_hh @ h + b_hh
                gi = put(f"{p}.input_gate", torch.sigmoid(pre[:H]), t)
                gf = put(f"{p}.forget_gate", torch.sigmoid(pre[H : 2 * H]), t)
                gg = put(f"{p}.cell_candidate", torch.tanh(pre[2 * H : 3 * H]), t)
                go = put(f"{p}.output_gate", torch.sigmoid(pre[3 * H :]), t)
                c = put(f"{p}.cell", gf * c + gi * gg, t)
                h = put(f"{p}.hidden", go * torch.tanh(c), t)
            elif cfg.cell == "gru":
                a, b = w_ih @ x + b_ih, w_hh @ h + b_hh
                r = put(f"{p}.reset_gate", torch.sigmoid(a[:H] + b[:H]), t)
                z = put(f"{p}.update_gate", torch.sigmoid(a[H : 2 * H] + b[H : 2 * H]), t)
                n = put(f"{p}.new_gate", torch.tanh(a[2 * H :] + r * b[2 * H :]), t)
                h = put(f"{p}.hidden", (1 - z) * n + z * h, t)
            else:
                h = put(f"{p}.hidden", torch.tanh(w_ih @ x + b_ih + w_hh @ h + b_hh), t)
            state[i] = (h, c)
            x = h
        out.setdefault("log_probs", []).append(torch.log_softmax(model.head(x), dim=-1))
    return {name: torch.stack(values) for name, values in out.items()}


def make_intervention(kind: str, name: str, units: list[int], steps, model, other_text: str):
    if kind == "ablate":
        return Ablate(name, units, steps=steps)
    if kind == "mean":
        return Ablate(name, units, value="mean", reference=trace(model, other_text), steps=steps)
    if kind == "clamp":
        bounds = clamp_range(name)  # a gate is clamped inside its range, the states anywhere
        low, high = bounds if bounds is not None else (-1.0, 3.0)
        return Clamp(name, units, [low + (high - low) * ((0.37 * (u + 1)) % 1) for u in units], steps=steps)
    if kind == "scale":
        return Scale(name, units, -1.5, steps=steps)
    return Patch(name, units, trace(model, other_text), steps=steps)


# ------------------------------------------------------------------------------------------------ exactness
def test_no_interventions_is_the_plain_trace(make_model):
    model = make_model()
    plain = trace(model, TEXT)
    for interventions in ([], [Clamp("layers.1.cell", [0], 5.0, steps=[])]):
        tr = run_with_interventions(model, TEXT, interventions)
        assert set(tr) == set(plain)
        for name in plain:
            torch.testing.assert_close(tr[name], plain[name], atol=1e-6, rtol=0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_kind_matches_the_stepwise_reference(data, make_model):
    cell = data.draw(st.sampled_from(["lstm", "gru", "rnn"]), "cell")
    num_layers = data.draw(st.integers(1, 3), "layers")
    hidden = data.draw(st.sampled_from([4, 8, 13]), "hidden")
    model = make_model(cell=cell, num_layers=num_layers, hidden_size=hidden, seed=data.draw(st.integers(0, 9)))
    length = data.draw(st.integers(2, len(TEXT)), "length")
    text, other = TEXT[:length], TEXT[::-1][:length]
    interventions = []
    for _ in range(data.draw(st.integers(1, 3), "count")):
        quantity = data.draw(st.sampled_from(QUANTITIES[cell]), "quantity")
        layer = data.draw(st.integers(0, num_layers - 1), "layer")
        units = data.draw(st.lists(st.integers(0, hidden - 1), min_size=1, max_size=3, unique=True), "units")
        steps = data.draw(
            st.one_of(
                st.none(),
                st.builds(lambda a, n: slice(a, a + n), st.integers(0, length), st.integers(0, length)),
                st.builds(lambda a: slice(a, None), st.integers(0, length)),
                st.lists(st.integers(0, length - 1), max_size=6, unique=True),
            ),
            "steps",
        )
        kind = data.draw(st.sampled_from(KINDS), "kind")
        interventions.append(make_intervention(kind, f"layers.{layer}.{quantity}", units, steps, model, other))
    got = run_with_interventions(model, text, interventions, chunk_size=data.draw(st.integers(1, 12), "chunk"))
    with torch.no_grad():
        want = reference(model, text, interventions)
    for name, values in want.items():
        torch.testing.assert_close(got[name], values, atol=1e-5, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def test_hidden_interventions_change_what_they_should(make_model):
    model = make_model(num_layers=2)
    plain = trace(model, TEXT)
    tr = run_with_interventions(model, TEXT, [Clamp("layers.1.hidden", [3], 0.7, steps=slice(5, 9))])
    assert torch.equal(tr["layers.1.hidden"][5:9, 3], torch.full((4,), 0.7))
    torch.testing.assert_close(tr["layers.1.hidden"][:5], plain["layers.1.hidden"][:5], atol=1e-6, rtol=0)
    torch.testing.assert_close(tr["layers.0.cell"], plain["layers.0.cell"], atol=1e-6, rtol=0)  # below: untouched
    assert not torch.allclose(tr["log_probs"][5:9], plain["log_probs"][5:9])  # the head reads it
    assert not torch.allclose(tr["layers.1.cell"][9:], plain["layers.1.cell"][9:])  # and so does the recurrence


def test_a_module_of_the_users_own_bidirectional_and_projected(one_thread):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=4, batch_first=True).eval()
    inputs = torch.randn(17, 3)
    plain = trace_rnn(lstm, inputs, name="enc")
    same = run_with_interventions(lstm, inputs, [], name="enc")
    for n in plain:
        torch.testing.assert_close(same[n], plain[n], atol=1e-6, rtol=0)
    tr = run_with_interventions(lstm, inputs, [Ablate("enc.0.reverse.hidden", [1, 2], steps=slice(0, 8))], name="enc")
    assert torch.equal(tr["enc.0.reverse.hidden"][:8, 1:3], torch.zeros(8, 2))
    # The reverse direction runs from the end: steps after 8 were read before the ablation, so they are unchanged.
    torch.testing.assert_close(tr["enc.0.reverse.cell"][8:], plain["enc.0.reverse.cell"][8:], atol=1e-6, rtol=0)
    torch.testing.assert_close(tr["enc.0.cell"], plain["enc.0.cell"], atol=1e-6, rtol=0)  # the forward direction
    assert not torch.allclose(tr["enc.1.cell"], plain["enc.1.cell"])  # the next layer reads both


# ------------------------------------------------------------------------------------------------ the model untouched
def test_weights_are_bitwise_unchanged_even_after_an_error(make_model):
    model = make_model(num_layers=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    short = trace(model, TEXT[:5])
    calls = [
        [Scale("layers.0.hidden", [1, 2], 3.0), Clamp("layers.1.hidden", [0], 1.0)],
        [Ablate("layers.0.cell", [0]), Scale("layers.1.forget_gate", [2], 0.0)],
        [Patch("layers.1.hidden", [0], short, steps=slice(2, None))],  # patches past its source's end: raises
    ]
    for interventions in calls:
        with contextlib.suppress(InterventionError):
            run_with_interventions(model, TEXT, interventions)
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k]), k


# ------------------------------------------------------------------------------------------------ bad input
def _wider():
    from conftest import tiny_char_lstm

    return tiny_char_lstm(hidden_size=12)


@pytest.mark.parametrize(
    ("interventions", "message"),
    [
        (lambda m: [Ablate("layers.5.cell", [0])], r"'layers\.5\.cell' names no layer of the model"),
        (lambda m: [Ablate("layers.0.reset_gate", [0])], r"unknown quantity 'reset_gate'; an LSTM layer has"),
        (lambda m: [Clamp("layers.0.cell", [8, 9], 1.0)], r"units \[8, 9\] of 'layers\.0\.cell': it has 8 units"),
        (lambda m: [Patch("layers.0.cell", [0], trace(m, "ab"))], r"patches step \d+, but its source has only 2"),
        (lambda m: [Patch("layers.0.cell", [0], trace(_wider(), TEXT))], r"has 12 units, the model's has 8"),
    ],
)
def test_bad_interventions_are_refused_before_running(make_model, interventions, message):
    model = make_model()
    with pytest.raises(InterventionError, match=message):
        run_with_interventions(model, TEXT, interventions(model))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Ablate("cell", [0]), "per-layer trace name"),
        (lambda: Ablate("layers.0.cell", []), "non-empty list"),
        (lambda: Ablate("layers.0.cell", [-1]), "non-negative integers"),
        (lambda: Ablate("layers.0.cell", [1, 1]), "repeat a unit"),
        (lambda: Ablate("layers.0.cell", [0], value="median"), "'zero' or 'mean'"),
        (lambda: Ablate("layers.0.cell", [0], value="mean"), "needs `reference=`"),
        (lambda: Clamp("layers.0.cell", [0, 1], [1.0, 2.0, 3.0]), "one per unit"),
        (lambda: Clamp("layers.0.cell", [0], float("nan")), "finite"),
        (lambda: Scale("layers.0.cell", [0], "2"), "must be a number"),
        (lambda: Patch("layers.0.cell", [0], "not a trace"), "must be a Trace"),
    ],
)
def test_bad_arguments_name_the_value(build, message):
    with pytest.raises(InterventionError, match=message):
        build()


@pytest.mark.parametrize("steps", [None, slice(3, 9), slice(5, None), [0, 4, 5, 11]])
def test_a_zeroed_cell_runs_on_the_fused_kernel_and_matches_the_reference(make_model, steps):
    # h = o * tanh(0) = 0: a zeroed cell acts as a hidden zero-ablation plus a zeroed carried c (no step loop).
    model = make_model(num_layers=2, hidden_size=13, seed=5)
    interventions = [Ablate("layers.0.cell", [2, 7], steps=steps), Ablate("layers.1.cell", [0], steps=steps)]
    got = run_with_interventions(model, TEXT, interventions, chunk_size=7)
    with torch.no_grad():
        want = reference(model, TEXT, interventions)
    for name, values in want.items():
        torch.testing.assert_close(got[name], values, atol=1e-5, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("steps", [None, slice(3, 9), [0, 4, 5, 11]])
def test_constant_clamps_of_cells_and_gates_run_on_the_fused_kernel_and_match_the_reference(make_model, steps):
    from lstm_interp.interventions.intervened_layer import _plan

    model = make_model(num_layers=2, hidden_size=13, seed=7)
    interventions = [
        Clamp("layers.0.cell", [2, 7], [2.5, -0.75], steps=steps),
        Clamp("layers.0.forget_gate", [3], 1.0, steps=steps),
        Clamp("layers.0.input_gate", [4, 5], 0.0, steps=steps),
        Clamp("layers.1.output_gate", [1], 0.3, steps=steps),
        Clamp("layers.1.cell_candidate", [6], -1.0, steps=steps),
        Ablate("layers.1.cell", [9], steps=steps),
        Ablate("layers.1.forget_gate", [0], value="mean", reference=trace(model, TEXT[::-1]), steps=steps),
    ]
    for layer in ("layers.0", "layers.1"):  # each layer's plan: no step loop (a mean is resolved when run)
        mine = [iv for iv in interventions if iv.layer == layer and getattr(iv, "value", None) != "mean"]
        active = torch.stack([iv.mask(0, len(TEXT)) for iv in mine])
        assert {mode for mode, *_ in _plan("lstm", mine, active)} <= {"plain", "edit"}
    got = run_with_interventions(model, TEXT, interventions, chunk_size=7)
    with torch.no_grad():
        want = reference(model, TEXT, interventions)
    for name, values in want.items():
        torch.testing.assert_close(got[name], values, atol=1e-5, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    assert torch.all(got["layers.0.cell"][:, 2][interventions[0].mask(0, len(TEXT))] == 2.5)


def test_a_constant_cell_clamp_of_a_projected_lstm_matches_a_stepwise_run(one_thread):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 6, proj_size=2, batch_first=True)
    inputs = torch.randn(20, 3)
    clamp = Clamp("rnn.cell", [1, 4], [1.5, 0.0], steps=slice(5, 15))
    fused = run_with_interventions(lstm, inputs, [clamp])
    looped = run_with_interventions(lstm, inputs, [clamp, Scale("rnn.cell", [0], 1.0)])  # a Scale forces the loop
    for name in fused:
        torch.testing.assert_close(fused[name], looped[name], atol=1e-5, rtol=0)
