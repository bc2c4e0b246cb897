"""One recurrent layer (one direction) run under interventions: fused kernels wherever the interventions allow.

The steps of a chunk are cut into runs by what acts on them, and each run takes the cheapest exact path:

- **plain** (nothing acts): the layer's own fused kernel.
- **edit** (hidden-state interventions, and LSTM cells or gates set to constants, each unit under at most one):
  still the fused kernel, on edited weights. A gate set to constants gets zero rows in ``W_ih`` and ``W_hh`` and the
  bias whose activation is the constant; a cell set to ``v`` gets its forget gate held at 1, its input gate at 0
  and its carried ``c`` set to ``v``. For the hidden state: ``h_{t-1}[k]`` reaches step ``t`` only through the
  column ``W_hh[:, k]``; so that column is zeroed and
  the replaced value ``v_{t-1}`` fed in as an extra input column with the same weights (the kernel computes
  ``[x_t, v_{t-1}] @ [W_ih, W_hh[:, k]]^T``). A :class:`~.Scale` by ``a`` is the column times ``a`` instead. The
  kernel's own ``h_t[k]`` is then overwritten in its output, which is all the next layer and the head read. Not
  for a GRU, whose reset gate multiplies the recurrent term (``n = tanh(W_in x + r * (W_hn h + b_hn))``), so it
  cannot move to the input side.
- **step** (a cell or gate Scale or Patch, any GRU intervention, or a unit under two interventions at once): a
  step loop that applies the interventions inside the step, in list order, and only to the intervened quantities.

The layer's weights are only read: edited copies are new tensors, and nothing is written into the module.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import _VF, Tensor, nn

from lstm_interp.interventions.intervention import Ablate, Clamp, Intervention
from lstm_interp.models.char_lstm import LayerState
from lstm_interp.tracing.layers import _gates, cell_type
from lstm_interp.tracing.quantities import LSTM_GATES
from lstm_interp.tracing.recurrence import lstm_layer_activations

Plan = list[tuple[str, tuple[int, ...], int, int]]  # (mode, active interventions, start row, stop row)


def run_intervened_layer(
    layer: nn.RNNBase,
    x: Tensor,
    state: LayerState,
    interventions: Sequence[Intervention],
    positions: Tensor,
    wanted: set[str],
) -> tuple[Tensor, LayerState, dict[str, Tensor]]:
    """Run ``layer`` over ``x`` from ``state`` with ``interventions`` (all on this layer) acting at their steps.

    Args:
        layer: a single-layer, unidirectional, ``batch_first`` module (float32).
        x: (L, I) the layer's input, already under the interventions of the layers below.
        state: the state before ``x[0]``, as the fused kernel takes it ((1, 1, width), a pair for an LSTM).
        interventions: those whose ``layer`` is this one.
        positions: (L,) the absolute step of each row (decreasing for a reverse direction).
        wanted: the quantities to return besides ``hidden`` (``{"cell", "forget_gate"}``); others are not computed.

    Returns:
        ``(hidden (L, P) under the interventions, the state after the last row, {quantity: (L, ·)})``.
    """
    cell = cell_type(layer)
    L = x.shape[0]
    active = torch.stack([iv.mask(0, int(positions.max()) + 1)[positions] for iv in interventions]) if interventions \
        else torch.zeros(0, L, dtype=torch.bool)  # fmt: skip
    hiddens: list[Tensor] = []
    acts: dict[str, list[Tensor]] = {q: [] for q in wanted}
    projected = bool(getattr(layer, "proj_size", 0))
    for mode, chosen, lo, hi in _plan(cell, interventions, active, projected):
        ivs = [interventions[i] for i in chosen]
        rows = slice(lo, hi)
        if mode == "step":
            hidden, new_state, seg = _stepwise(layer, cell, x[rows], state, ivs, active[list(chosen), lo:hi],
                                               positions[rows], wanted)  # fmt: skip
        else:
            if mode == "edit":
                hidden, new_state = _edited_kernel(layer, cell, x[rows], state, ivs, positions[rows])
            else:
                out, new_state = layer(x[rows][None], state)
                hidden = out[0]
            seg = _recomputed(layer, x[rows], hidden, state, wanted, ivs) if wanted else {}
        hiddens.append(hidden)
        for q in wanted:
            acts[q].append(seg[q])
        state = new_state
    return torch.cat(hiddens), state, {q: torch.cat(v) for q, v in acts.items()}


def _plan(cell: str, interventions: Sequence[Intervention], active: Tensor, projected: bool = False) -> Plan:
    """Cut the rows into runs of one set of active interventions (and so of one mode), without a loop over rows."""
    L = active.shape[1]
    if not len(interventions):
        return [("plain", (), 0, L)]
    # Runs are where the set of active interventions changes from one row to the next.
    changes = (active[:, 1:] != active[:, :-1]).any(0).nonzero().flatten() + 1
    starts = torch.cat([torch.zeros(1, dtype=torch.long), changes])
    stops = torch.cat([starts[1:], torch.tensor([L])])
    hidden = [iv.quantity == "hidden" or (not projected and zeroes_cell(iv)) or _constant_lstm(iv, cell)
              for iv in interventions]  # fmt: skip
    plan: Plan = []
    for lo, hi in zip(starts.tolist(), stops.tolist(), strict=True):
        chosen = tuple(int(i) for i in active[:, lo].nonzero().flatten())
        if not chosen:
            mode = "plain"
        elif cell == "gru" or not all(hidden[i] for i in chosen) or _overlapping([interventions[i] for i in chosen]):
            mode = "step"
        else:
            mode = "edit"
        plan.append((mode, chosen, lo, hi))
    return plan


def zeroes_cell(iv: Intervention) -> bool:
    """An LSTM cell set to zero: then ``h_t[k] = o_t * tanh(0) = 0`` whatever ``o_t`` is, so over a run it acts as a
    hidden zero-ablation, the cell's own recurrence cut by zeroing the carried ``c[k]`` when the run ends. (Not with
    ``proj_size``, where ``h`` mixes every cell.)"""
    return iv.quantity == "cell" and isinstance(iv, Ablate) and iv.value == "zero"


def _overlapping(interventions: Sequence[Intervention]) -> bool:
    units = [u for iv in interventions for u in iv.units]
    return len(units) != len(set(units))


def constant_values(iv: Intervention) -> Tensor | None:
    """(len(units),) the values a constant intervention sets (a Clamp, a zero or mean Ablate), or ``None``."""
    if isinstance(iv, Clamp):
        return iv.value.float().expand(len(iv.units))  # type: ignore[union-attr]
    if isinstance(iv, Ablate):
        return torch.zeros(len(iv.units)) if iv.value == "zero" else iv._mean  # type: ignore[return-value]
    return None


def _constant_lstm(iv: Intervention, cell: str) -> bool:
    """An LSTM cell or gate set to constants: the fused kernel runs it on edited weights (see ``_edited_kernel``)."""
    return cell == "lstm" and iv.quantity in (*LSTM_GATES, "cell") and constant_values(iv) is not None


def _recomputed(
    layer: nn.RNNBase, x: Tensor, hidden: Tensor, state: LayerState, wanted: set[str], ivs: Sequence[Intervention]
) -> dict[str, Tensor]:
    """The gates and cell of a run from its input and (intervened) hidden sequence: the trace's own recomputation,
    with the constant interventions of a fused run in place (a clamped gate enters the cell's recurrence; a cell
    set to constants, zeroed ones included, is that constant)."""
    constants = [iv for iv in ivs if iv.quantity != "hidden" and constant_values(iv) is not None]
    gates_set = [iv for iv in constants if iv.quantity in LSTM_GATES]
    if not gates_set:
        seg = _gates(layer, x, hidden, state, None, None)
    else:
        w_ih, w_hh, b_ih, b_hh = _gate_edits(layer, gates_set)
        h0, c0 = state
        seg = lstm_layer_activations(x, None, hidden, h0[0, 0], c0[0, 0], w_ih, w_hh, b_ih, b_hh)
    for iv in constants:
        if iv.quantity in seg:  # exactly the constant (a saturated sigmoid of a bias is only within rounding)
            seg[iv.quantity][:, list(iv.units)] = constant_values(iv).to(seg[iv.quantity])  # type: ignore[union-attr]
    return seg


def _gate_edits(layer: nn.RNNBase, ivs: Sequence[Intervention]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Copies of an LSTM layer's ``W_ih, W_hh, b_ih, b_hh`` in which each gate set to constants has zero weights
    and the bias whose activation is the constant: ``logit(p)`` for a sigmoid gate, ``atanh(v)`` for the cell
    candidate (+-inf at the ends, which the activations take to exactly 0, 1 or +-1)."""
    H = layer.hidden_size
    w_ih, w_hh = layer.weight_ih_l0.clone(), layer.weight_hh_l0.clone()
    b_ih = layer.bias_ih_l0.clone() if layer.bias else w_ih.new_zeros(4 * H)
    b_hh = layer.bias_hh_l0.clone() if layer.bias else w_ih.new_zeros(4 * H)
    for iv in ivs:
        rows = [LSTM_GATES.index(iv.quantity) * H + u for u in iv.units]
        values = constant_values(iv).to(w_ih)  # type: ignore[union-attr]
        w_ih[rows], w_hh[rows], b_hh[rows] = 0, 0, 0
        b_ih[rows] = torch.atanh(values) if iv.quantity == "cell_candidate" else torch.logit(values)
    return w_ih, w_hh, b_ih, b_hh


def _edited_kernel(
    layer: nn.RNNBase, cell: str, x: Tensor, state: LayerState, ivs: Sequence[Intervention], positions: Tensor
) -> tuple[Tensor, LayerState]:
    """The fused kernel on edited weights: hidden-state interventions, each unit under one, over every row."""
    h0 = state[0] if cell == "lstm" else state
    w_ih, w_hh = layer.weight_ih_l0, layer.weight_hh_l0
    biases = [layer.bias_ih_l0, layer.bias_hh_l0] if layer.bias else []
    c0 = state[1] if cell == "lstm" else None
    projected = cell == "lstm" and bool(layer.proj_size)
    # Constants first: a gate set to constants gets zero weights and a saturating bias; a cell set to constants
    # (but a zeroed one without proj_size, handled below as a zeroed h) is kept by forget 1, input 0, c_0 = v.
    constants = [iv for iv in ivs if _constant_lstm(iv, cell) and not (zeroes_cell(iv) and not projected)]
    gates_set = [iv for iv in constants if iv.quantity in LSTM_GATES]
    cells_set = [iv for iv in constants if iv.quantity == "cell"]
    if constants:
        w_ih, w_hh, b_ih, b_hh = _gate_edits(layer, gates_set)
        H = layer.hidden_size
        c0 = c0.clone()  # type: ignore[union-attr]
        for iv in cells_set:
            units = list(iv.units)
            for gate, bias in ((1, torch.inf), (0, -torch.inf)):  # forget 1, input 0
                rows = [gate * H + u for u in units]
                w_ih[rows], w_hh[rows], b_hh[rows], b_ih[rows] = 0, 0, 0, bias
            c0[..., units] = constant_values(iv).to(c0)  # type: ignore[union-attr]
        biases = [b_ih, b_hh]
        ivs = [iv for iv in ivs if iv not in constants]
    w_hh_edit = w_hh.clone()
    h0_edit = h0.clone()
    fed: list[int] = []
    given: list[Tensor] = []  # (L, n) the replaced values of the fed units, per row
    scaled: list[tuple[list[int], float]] = []
    zeroed_cells = [u for iv in ivs if iv.quantity == "cell" for u in iv.units]
    for iv in ivs:
        units = list(iv.units)
        if iv.quantity == "cell":  # zeroed: h is 0 there, as for a hidden zero-ablation
            w_hh_edit[:, units] = 0
            fed += units
            given.append(torch.zeros(len(positions), len(units), dtype=x.dtype, device=x.device))
        elif iv.is_linear and iv.factor != 0:  # type: ignore[attr-defined]
            factor = iv.factor  # type: ignore[attr-defined]
            w_hh_edit[:, units] *= factor
            h0_edit[..., units] /= factor  # the step before the run was not scaled; the edited column scales it
            scaled.append((units, factor))
        else:
            current = torch.zeros(len(positions), len(units), dtype=x.dtype, device=x.device)
            values = torch.zeros_like(current) if iv.is_linear else iv.new_values(current, positions)
            w_hh_edit[:, units] = 0
            fed += units
            given.append(values)
    weights = [torch.cat([w_ih, w_hh[:, fed]], dim=1) if fed else w_ih, w_hh_edit]
    if biases:
        weights += biases
    if cell == "lstm" and layer.proj_size:
        weights.append(layer.weight_hr_l0)
    if fed:
        v = torch.cat(given, dim=1)  # (L, n)
        previous = torch.cat([h0[0, 0, fed][None], v[:-1]])  # v_{t-1}; before the run, the carried state
        x = torch.cat([x, previous], dim=1)
    if cell == "lstm":
        out, _, c_n = _VF.lstm(x[None], (h0_edit, c0), weights, bool(biases), 1, 0.0, False, False, True)
    else:
        rnn = _VF.rnn_tanh if layer.nonlinearity == "tanh" else _VF.rnn_relu
        out, _h_n = rnn(x[None], h0_edit, weights, bool(biases), 1, 0.0, False, False, True)
    hidden = out[0].clone()
    for units, factor in scaled:
        hidden[:, units] *= factor
    if fed:
        hidden[:, fed] = v
    h_last = hidden[-1].reshape(1, 1, -1)
    if zeroed_cells:
        c_n = c_n.clone()
        c_n[..., zeroed_cells] = 0  # what the next step reads of the zeroed cells
    return hidden, ((h_last, c_n) if cell == "lstm" else h_last)


def _stepwise(
    layer: nn.RNNBase,
    cell: str,
    x: Tensor,
    state: LayerState,
    ivs: Sequence[Intervention],
    active: Tensor,
    positions: Tensor,
    wanted: set[str],
) -> tuple[Tensor, LayerState, dict[str, Tensor]]:
    """A step loop applying ``ivs`` (active at every row of the run) inside each step, in list order."""
    bias_hh = layer.bias_hh_l0 if layer.bias else None
    pre_x = x @ layer.weight_ih_l0.T  # (L, G·H): the input side of every step at once
    if layer.bias:
        pre_x = pre_x + layer.bias_ih_l0 + (layer.bias_hh_l0 if cell != "gru" else 0)
    w_hr = layer.weight_hr_l0 if cell == "lstm" and layer.proj_size else None
    nonlinearity = getattr(layer, "nonlinearity", "tanh")
    records: dict[str, list[Tensor]] = {q: [] for q in {*wanted, "hidden"}}
    h = state[0][0, 0] if cell == "lstm" else state[0, 0]  # type: ignore[index]
    c = state[1][0, 0] if cell == "lstm" else None
    for t in range(len(x)):
        step = intervened_step(cell, pre_x[t], h, c, layer.weight_hh_l0, bias_hh, ivs, positions[t], w_hr=w_hr,
                               nonlinearity=nonlinearity)  # fmt: skip
        h, c = step["hidden"], step.get("cell")
        for q in records:
            records[q].append(step[q])
    new_state: LayerState = (h.reshape(1, 1, -1), c.reshape(1, 1, -1)) if c is not None else h.reshape(1, 1, -1)
    stacked = {q: torch.stack(v) for q, v in records.items()}
    return stacked.pop("hidden"), new_state, stacked


def intervened_step(
    cell: str,
    pre_x: Tensor,
    h: Tensor,
    c: Tensor | None,
    weight_hh: Tensor,
    bias_hh: Tensor | None,
    interventions: Sequence[Intervention],
    position: Tensor,
    *,
    w_hr: Tensor | None = None,
    nonlinearity: str = "tanh",
) -> dict[str, Tensor]:
    """One step of an LSTM, GRU or RNN with ``interventions`` applied inside it, in list order, for one row (H,) or
    a batch of rows (B, H) at once (every row at the same step ``position``).

    Args:
        pre_x: (..., G·H) the input side of the step, ``x @ W_ih.T`` plus ``b_ih`` (and ``b_hh`` but for a GRU,
            whose ``b_hh`` sits inside the reset gate's product).
        h, c: the state the step starts from (``c`` for an LSTM only).
        interventions: those acting at this step, on this layer.
        position: () the absolute step, for step-dependent values (a :class:`~.Patch`).
        w_hr: an LSTM's projection (``proj_size``), if any.

    Returns:
        Every quantity of the step under the interventions, ``hidden`` (and an LSTM's ``cell``) included.
    """
    H = weight_hh.shape[0] // {"lstm": 4, "gru": 3, "rnn": 1}[cell]

    acting = {iv.quantity for iv in interventions}

    def apply(quantity: str, value: Tensor) -> Tensor:
        if quantity not in acting:  # most quantities of a step are not intervened: no copy, no loop
            return value
        for iv in interventions:
            if iv.quantity != quantity:
                continue
            units = list(iv.units)
            current = value[..., units].reshape(-1, len(units))
            value = value.clone()
            value[..., units] = iv.new_values(current, position.reshape(1).expand(len(current))).reshape(
                value[..., units].shape
            )
        return value

    if cell == "lstm":
        pre = pre_x + h @ weight_hh.T
        gates = {
            "input_gate": apply("input_gate", pre[..., :H].sigmoid()),
            "forget_gate": apply("forget_gate", pre[..., H : 2 * H].sigmoid()),
            "cell_candidate": apply("cell_candidate", pre[..., 2 * H : 3 * H].tanh()),
            "output_gate": apply("output_gate", pre[..., 3 * H :].sigmoid()),
        }
        assert c is not None
        c = apply("cell", gates["forget_gate"] * c + gates["input_gate"] * gates["cell_candidate"])
        hidden = gates["output_gate"] * c.tanh()
        if w_hr is not None:
            hidden = hidden @ w_hr.T
        return {**gates, "cell": c, "hidden": apply("hidden", hidden)}
    if cell == "gru":
        gh = h @ weight_hh.T + (bias_hh if bias_hh is not None else 0)
        r = apply("reset_gate", (pre_x[..., :H] + gh[..., :H]).sigmoid())
        z = apply("update_gate", (pre_x[..., H : 2 * H] + gh[..., H : 2 * H]).sigmoid())
        n = apply("new_gate", (pre_x[..., 2 * H :] + r * gh[..., 2 * H :]).tanh())
        return {"reset_gate": r, "update_gate": z, "new_gate": n, "hidden": apply("hidden", (1 - z) * n + z * h)}
    pre = pre_x + h @ weight_hh.T
    return {"hidden": apply("hidden", pre.tanh() if nonlinearity == "tanh" else pre.relu())}
