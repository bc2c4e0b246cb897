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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lstm_interp.tracing.cell_trace import CELL_CLASSES
from lstm_interp.tracing.trace import Trace

from ._module_calls import Captured, run_and_capture, trace_captured

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
