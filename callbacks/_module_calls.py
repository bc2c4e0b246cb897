"""Every call of a monitored module during one forward pass, and its exact trace.

A forward pre-hook keeps what each call receives (the first batch row: the first sequence of an ``nn.LSTM``'s batch,
a PackedSequence's at its real length; one step's input of a cell module) and the state it starts from; a forward
hook adds the state it returned. :func:`trace_captured` then traces the calls in call order: a cell module's calls
one row each, recomputed from each call's own state (:func:`~lstm_interp.trace_cell`); an ``nn.LSTM``'s calls
joined into one sequence, each run of calls that carries the state on traced from its first call's state
(:func:`~lstm_interp.trace_rnn`). :func:`call_notes` says what was found when calls disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from lstm_interp.tracing.cell_trace import CELL_CLASSES, trace_cell
from lstm_interp.tracing.module_trace import trace_rnn
from lstm_interp.tracing.trace import Trace

HiddenState = Tensor | tuple[Tensor, Tensor] | None


@dataclass
class Call:
    """One call of a monitored module, as its first batch row saw it.

    Args:
        inputs: (T, input_size) the sequence (an ``nn.LSTM``; a PackedSequence at its real length) or (1, I) the
            one step (a cell module).
        hx: the state it received for that row (``None``: none given, zeros).
        out_state: the state it returned for that row, to tell whether the next call carries it on (``None``
            until the call has run).
        batch: the batch size of the call (0 for an unbatched input).
    """

    inputs: Tensor
    hx: HiddenState
    out_state: HiddenState
    batch: int


@dataclass
class Captured:
    """Every call of one module during one forward pass, in call order."""

    calls: list[Call] = field(default_factory=list)

    @property
    def steps(self) -> int:
        """Time steps of the joined sequence: every call's steps, end to end."""
        return sum(call.inputs.shape[0] for call in self.calls)


def run_and_capture(
    pl_module: nn.Module, targets: dict[str, nn.Module], inputs: Tensor
) -> tuple[dict[str, Captured], Any]:
    """Run ``pl_module(inputs)`` once and keep every call of each target module, in call order.

    The hooks are removed whatever happens.

    Raises:
        ValueError: a target received something other than a tensor or a PackedSequence, or was not called at
            all (each naming the module).
    """
    captured: dict[str, Captured] = {path: Captured() for path in targets}

    def make_hooks(path: str, module: nn.Module) -> tuple[Callable[..., None], Callable[..., None]]:
        # Before the call, so that an input the trace cannot follow is named here, not by the module's own error.
        def before(_: nn.Module, args: tuple, kwargs: dict) -> None:
            x = args[0] if args else kwargs["input"]
            hx = args[1] if len(args) > 1 else kwargs.get("hx")
            take = _cell_call if isinstance(module, CELL_CLASSES) else _sequence_call
            captured[path].calls.append(take(path, module, x, hx))

        def after(_: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            call = captured[path].calls[-1]
            call.out_state = _returned_state(module, output, batched=call.batch > 0)

        return before, after

    handles = []
    try:
        for path, module in targets.items():
            before, after = make_hooks(path, module)
            handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
            handles.append(module.register_forward_hook(after, with_kwargs=True))
        output = pl_module(inputs)
    finally:
        for handle in handles:
            handle.remove()
    missing = [path for path, cap in captured.items() if not cap.calls]
    if missing:
        raise ValueError(
            f"recurrent module(s) {missing} were not called when {type(pl_module).__name__} ran the probe "
            f"(input shape {tuple(inputs.shape)}); choose the modules its forward uses with `modules=`"
        )
    return captured, output


def _cell_call(path: str, cell: nn.Module, x: Any, hx: Any) -> Call:
    """One call of a cell module: (B, I) or unbatched (I,) input, state (B, H) (a pair for an LSTMCell) or None."""
    if not isinstance(x, Tensor) or x.dim() not in (1, 2):
        got = f"a tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor) else f"a {type(x).__name__}"
        raise ValueError(
            f"{path!r} ({type(cell).__name__}) received {got}; a cell module takes (batch, features) or (features,)"
        )
    batched = x.dim() == 2
    return Call(_cell_row(x, batched), _cell_row(hx, batched), None, int(x.shape[0]) if batched else 0)  # type: ignore[arg-type]


def _cell_row(t: Any, batched: bool) -> Any:
    """The first batch row of a cell's tensor (or pair of them), as (1, width)."""
    if t is None:
        return None
    if isinstance(t, (tuple, list)):
        return (_cell_row(t[0], batched), _cell_row(t[1], batched))
    return (t[0] if batched else t).detach()[None]


def _returned_state(module: nn.Module, output: Any, batched: bool) -> HiddenState:
    """The state a call returned, for its first batch row: a cell's output, an RNN's ``h_n`` (``(h_n, c_n)``)."""
    if isinstance(module, CELL_CLASSES):
        return _cell_row(output, batched)
    state = output[1]
    return _first_column(state) if batched else _detach(state)


def _sequence_call(path: str, rnn: nn.Module, x: Any, hx: Any) -> Call:
    """One call of an ``nn.LSTM``/``nn.GRU``/``nn.RNN``: the first sequence of the batch (time first) and the state
    it starts from (the state it ends in is added once it has run)."""
    if isinstance(x, PackedSequence):
        # Padded back in the caller's batch order (unsorted_indices undone), with each sequence's real length;
        # the module runs a packed sequence only over those steps, so the trace stops there too.
        padded, lengths = pad_packed_sequence(x)  # (T_max, B, I), (B,)
        seq, batch = padded[: int(lengths[0]), 0], len(lengths)
    elif isinstance(x, Tensor) and x.dim() == 2:  # unbatched: (T, I), and hx is (layers * directions, H)
        return Call(x.detach(), _detach(hx), None, 0)
    elif isinstance(x, Tensor) and x.dim() == 3:
        seq = x[0] if rnn.batch_first else x[:, 0]  # (B, T, I) or (T, B, I) -> (T, I)
        batch = x.shape[0] if rnn.batch_first else x.shape[1]
    else:
        got = f"a tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor) else f"a {type(x).__name__}"
        raise ValueError(
            f"{path!r} received {got}; the monitor traces a (batch, time, features) or (time, features) tensor, "
            "or a PackedSequence"
        )
    # hx and h_n are (layers * directions, B, H) whatever batch_first says, and in the caller's batch order even for
    # a PackedSequence (the module permutes them itself): the first sequence's is column 0.
    return Call(seq.detach(), _first_column(hx), None, int(batch))


def _first_column(hx: Any) -> HiddenState:
    if hx is None:
        return None
    if isinstance(hx, (tuple, list)):
        return (hx[0][:, :1].detach(), hx[1][:, :1].detach())
    return hx[:, :1].detach()


def _detach(hx: Any) -> HiddenState:
    if hx is None:
        return None
    if isinstance(hx, (tuple, list)):
        return (hx[0].detach(), hx[1].detach())
    return hx.detach()


def _same_state(a: HiddenState, b: HiddenState) -> bool:
    if a is None or b is None:
        return False
    if isinstance(a, tuple) and isinstance(b, tuple):
        return all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b, strict=True))
    return isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape and torch.equal(a, b)


def call_notes(path: str, module: nn.Module, captured: Captured) -> str | None:
    """What the monitor found about a module called several times, if it is worth saying: calls of different
    lengths joined into one sequence, or batch sizes that disagree (then only the first call is traced)."""
    calls = captured.calls
    if len(calls) < 2 or isinstance(module, CELL_CLASSES):
        return None
    lengths = [call.inputs.shape[0] for call in calls]
    batches = [call.batch for call in calls]
    if len(set(batches)) > 1:
        return (
            f"{path!r} was called {len(calls)} times in one forward pass with batch sizes {_listed(batches)}: calls "
            "of different batch sizes are not one sequence, so the monitor traces its first call only"
        )
    if len(set(lengths)) > 1:
        return (
            f"{path!r} was called {len(calls)} times in one forward pass with lengths {_listed(lengths)}; the monitor "
            f"joins them into one sequence of {sum(lengths)} steps, each call from the state it received"
        )
    return None


def _listed(values: list[int]) -> str:
    return str(values) if len(values) <= 12 else f"{values[:12]}[:12] of {len(values)}"


def trace_captured(path: str, module: nn.Module, captured: Captured) -> Trace:
    """The trace of every call of one module, in call order, each exact from the input and state it received.

    A cell module's calls are one row each, recomputed together from each call's own state (:func:`trace_cell`).
    An ``nn.LSTM`` called several times is cut where a call does not start from the state the last one returned
    (or is bidirectional: each call then reads its own future only); each run of calls that carry the state on is
    traced as one sequence from its first call's state, and the runs are joined. Calls of different batch sizes
    are not one sequence: only the first is traced (see :func:`call_notes`).
    """
    calls = captured.calls
    if isinstance(module, CELL_CLASSES):
        inputs = torch.cat([call.inputs for call in calls])
        H = module.hidden_size
        zeros = inputs.new_zeros(1, H)

        if isinstance(module, nn.LSTMCell):
            h_in = torch.cat([zeros if c.hx is None else c.hx[0] for c in calls])  # type: ignore[index]
            c_in = torch.cat([zeros if c.hx is None else c.hx[1] for c in calls])  # type: ignore[index]
            incoming: Any = (h_in, c_in)
        else:
            incoming = torch.cat([zeros if c.hx is None else c.hx for c in calls])  # type: ignore[misc]
        return trace_cell(module, inputs.float(), incoming=incoming, name=path)
    if len({call.batch for call in calls}) > 1:
        calls = calls[:1]
    runs: list[list[Call]] = []
    for call in calls:
        carried = runs and not module.bidirectional and _same_state(call.hx, runs[-1][-1].out_state)
        if carried:
            runs[-1].append(call)
        else:
            runs.append([call])
    traces = [trace_rnn(module, torch.cat([c.inputs for c in run]), name=path, hx=run[0].hx) for run in runs]
    return Trace.concat(traces) if len(traces) > 1 else traces[0]
