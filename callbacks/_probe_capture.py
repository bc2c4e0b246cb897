"""Probe a LightningModule's recurrent modules for :class:`~lstm_interp.callbacks.LSTMActivationMonitor`.

Two ways in. A :class:`~lstm_interp.CharLSTMModule` is traced directly with :func:`~lstm_interp.trace` (which also
gives the next-character log-probabilities). Any other module is run once on the probe with a forward hook on each
chosen module, which keeps every call it gets (the first sequence of the batch; of a PackedSequence, that sequence
at its real length), with the state it received and the state it returned. Every gate is then recomputed exactly
from those inputs and the module's own weights:

- an ``nn.LSTM``/``nn.GRU``/``nn.RNN`` by :func:`~lstm_interp.trace_rnn`, for any number of layers, both
  directions of a bidirectional module and LSTMs with ``proj_size``; called one step at a time with its state
  carried, its calls are joined into one sequence;
- an ``nn.LSTMCell``/``nn.GRUCell``/``nn.RNNCell`` stepped in the user's own loop by
  :func:`~lstm_interp.trace_cell`: one row per call, each from the state that call received.

Several modules of one model (an encoder and a decoder) are each traced under their own module path, from the one
forward pass. TorchScript and compiled modules, and custom cells, are refused by name (hooks cannot follow them).

The lowest of the callback's modules: it knows nothing of the monitor's settings, only modules, probes and traces.
Traces are made and extended by :mod:`lstm_interp.tracing` alone (``trace_rnn``, ``trace_cell``, ``Trace``).
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from lstm_interp.tracing.cell_trace import CELL_CLASSES, trace_cell
from lstm_interp.tracing.module_trace import trace_rnn
from lstm_interp.tracing.trace import Trace

HiddenState = Tensor | tuple[Tensor, Tensor] | None
RNN_CLASSES = (nn.LSTM, nn.GRU, nn.RNN)


@dataclass
class Probe:
    """One probe sequence, ready to run.

    Args:
        text: the text it stands for (labels plots), if any.
        tokens: (T,) its character ids, if it was encoded from text.
        inputs: what the LightningModule's ``forward`` receives, e.g. (1, T) ids; ``None`` for a CharLSTMModule
            traced directly (its text is enough).
        labels: one string per time step (words, subwords), when the steps are not characters.
    """

    text: str | None
    tokens: Tensor | None
    inputs: Tensor | None
    labels: list[str] | None = None


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


def recurrent_modules(module: nn.Module) -> dict[str, nn.Module]:
    """Every module the monitor follows under ``module``, by path: ``nn.LSTM``, ``nn.GRU``, ``nn.RNN`` and the cell
    modules ``nn.LSTMCell``, ``nn.GRUCell``, ``nn.RNNCell`` (subclasses included)."""
    return {name: m for name, m in module.named_modules() if isinstance(m, (*RNN_CLASSES, *CELL_CLASSES))}


def unfollowable_modules(module: nn.Module) -> dict[str, str]:
    """Modules under ``module`` that look recurrent but cannot be followed, by path, each with the reason.

    TorchScript modules run their calls in TorchScript, where Python hooks do not fire; ``torch.compile`` wraps a
    module whose calls run as a compiled graph; a custom cell (a module with recurrent weights, or a name ending in
    ``LSTM``/``GRU``/``RNN``/``Cell``, of none of the followed classes) has gates the trace cannot know.
    """
    found: dict[str, str] = {}
    for name, m in module.named_modules():
        label = name or type(module).__name__
        if isinstance(m, torch.jit.ScriptModule):
            if not any(label.startswith(f"{other}.") for other in found):
                found[label] = f"a TorchScript module ({type(m).__name__}); hooks do not fire inside TorchScript"
        elif _is_compiled(m):
            found[label] = "compiled with torch.compile; its calls run as a compiled graph that hooks cannot follow"
        elif name and not isinstance(m, (*RNN_CLASSES, *CELL_CLASSES)) and _looks_recurrent(m):
            found[label] = f"a custom {type(m).__name__}, not one of the recurrent classes the trace recomputes"
    return found


def _is_compiled(m: nn.Module) -> bool:
    # torch.compile(module) returns an OptimizedModule; Lightning's from_compiled leaves a _compiler_ctx behind.
    return type(m).__name__ == "OptimizedModule" or getattr(m, "_compiler_ctx", None) is not None


def _looks_recurrent(m: nn.Module) -> bool:
    has_recurrent_weight = any(n.split(".")[-1].startswith("weight_hh") for n, _ in m.named_parameters(recurse=False))
    return has_recurrent_weight or type(m).__name__.endswith(("LSTM", "GRU", "RNN", "Cell"))


def select_modules(module: nn.Module, wanted: Sequence[str] | None) -> dict[str, nn.Module]:
    """The recurrent modules to monitor: all of them, or those whose path matches a name or glob in ``wanted``.

    Raises:
        ValueError: the module or a chosen one is TorchScript or compiled; no recurrent module at all; ``wanted``
            entries matching none (the message lists those that exist, and any custom or scripted modules seen).
    """
    found = recurrent_modules(module)
    refused = unfollowable_modules(module)
    supported = (
        "the monitor follows nn.LSTM, nn.GRU and nn.RNN modules given sequences, and nn.LSTMCell, nn.GRUCell and "
        "nn.RNNCell modules stepped one call per step (subclasses included)"
    )
    if type(module).__name__ in refused and "compiled" in refused[type(module).__name__]:
        raise ValueError(f"{type(module).__name__} is {refused[type(module).__name__]}; monitor it before compiling")
    if not found:
        seen = f"; not followed: {refused}" if refused else ""
        raise ValueError(
            f"{type(module).__name__} has no recurrent module to monitor: {supported}; "
            f"its modules are {[name for name, _ in module.named_modules() if name][:20]}{seen}"
        )
    if wanted is None:
        return found
    named = {w: path for w in wanted for path in refused if fnmatch.fnmatchcase(path, w)}
    if named:
        w, path = next(iter(named.items()))
        raise ValueError(f"`modules` entry {w!r} names {path!r}, which is {refused[path]}; {supported}")
    unmatched = [w for w in wanted if not any(fnmatch.fnmatchcase(name, w) for name in found)]
    if unmatched:
        raise ValueError(
            f"`modules` entries {unmatched!r} match no recurrent module of {type(module).__name__}; "
            f"its recurrent modules are {list(found)}"
        )
    return {name: m for name, m in found.items() if any(fnmatch.fnmatchcase(name, w) for w in wanted)}


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Evaluation mode for the duration, then each submodule's own previous mode back.

    ``module.train(was_training)`` would not do: it sets every submodule alike, undoing e.g. a frozen BatchNorm.
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


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


def next_char_log_probs(output: Any, chars: str | None) -> Tensor | None:
    """(T, V) log-probabilities if ``output`` (or its first element) is a (1, T, V) tensor with V == len(chars)."""
    if chars is None:
        return None
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    if not isinstance(output, Tensor) or output.dim() != 3 or output.shape[0] != 1 or output.shape[-1] != len(chars):
        return None
    return torch.log_softmax(output[0].detach().float(), dim=-1).cpu()


def trace_modules(pl_module: nn.Module, targets: dict[str, nn.Module], probe: Probe, chars: str | None) -> list[Trace]:
    """One trace per target module of one probe; the last one gets ``log_probs`` when the output allows it.

    A module whose steps are not the probe's tokens one to one (a decoder cell stepped a different number of times)
    is labelled by step number: its trace carries no text, ids or labels of the probe (see ``step_notes``).
    """
    assert probe.inputs is not None
    captured, output = run_and_capture(pl_module, targets, probe.inputs)
    traces = []
    for path, module in targets.items():
        joined = trace_captured(path, module, captured[path])
        steps = joined.num_steps
        # Plots label time steps with characters only where there is one time step per character.
        text = probe.text if probe.text is not None and len(probe.text) == steps else None
        tokens = probe.tokens if probe.tokens is not None and len(probe.tokens) == steps else None
        labels = probe.labels if probe.labels is not None and len(probe.labels) == steps else None
        # Without tokens the steps are numbered, not characters, so the vocabulary would label them wrongly.
        vocabulary = chars if tokens is not None else None
        labelled = Trace(dict(joined.items()), text=text, tokens=tokens if tokens is not None else torch.arange(steps),
                         cell=joined.cell, num_layers=joined.num_layers, final_state=joined.final_state,
                         layer_names=joined.layer_names, chars=vocabulary, labels=labels)  # fmt: skip
        traces.append(labelled)
    log_probs = next_char_log_probs(output, chars)
    # Only beside the characters they predict: a trace labelled by step number has no ids to score them against.
    if log_probs is not None and traces[-1].chars is not None and len(log_probs) == traces[-1].num_steps:
        traces[-1] = traces[-1].with_activation("log_probs", log_probs)
    return traces


def step_notes(index: int, probe: Probe, captured: dict[str, Captured]) -> list[str]:
    """Notes on modules that ran a different number of steps than probe ``index`` has tokens: their figures and
    report are labelled by step number, not by the probe's characters."""
    if probe.tokens is None:
        return []
    notes = []
    for path, cap in captured.items():
        if cap.steps != len(probe.tokens):
            notes.append(
                f"{path!r} ran {cap.steps} steps on probe {index}, which has {len(probe.tokens)} tokens: its figures "
                "and report label those steps by number (step 0, 1, ...), not by the probe's characters"
            )
    return notes
