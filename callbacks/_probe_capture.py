"""Probe a LightningModule's recurrent modules for :class:`~lstm_interp.callbacks.LSTMActivationMonitor`.

Two ways in. A :class:`~lstm_interp.CharLSTMModule` is traced directly with :func:`~lstm_interp.trace` (which also
gives the next-character log-probabilities). Any other module is run once on the probe with a forward pre-hook on
each chosen ``nn.LSTM``/``nn.GRU``/``nn.RNN``: the hook keeps what the module receives (the first sequence of the
batch; of a PackedSequence, that sequence at its real length), and :func:`~lstm_interp.tracing.trace_rnn` then
recomputes every gate exactly from that input and the module's own weights, for any number of layers, both
directions of a bidirectional module and LSTMs with ``proj_size``. Several modules of one model (an encoder and a
decoder) are each traced under their own module path, from the one forward pass.

The lowest of the callback's modules: it knows nothing of the monitor's settings, only modules, probes and traces.
Traces are made and extended by :mod:`lstm_interp.tracing` alone (``trace_rnn``, ``Trace.with_activation``).
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from lstm_interp.tracing.module_trace import trace_rnn
from lstm_interp.tracing.trace import Trace

HiddenState = Tensor | tuple[Tensor, Tensor] | None


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
class _Captured:
    inputs: Tensor  # (T, input_size): the first batch row, time first, at its real length
    hx: HiddenState
    calls: int = 1


def recurrent_modules(module: nn.Module) -> dict[str, nn.RNNBase]:
    """Every ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` under ``module``, by module path."""
    return {name: m for name, m in module.named_modules() if isinstance(m, (nn.LSTM, nn.GRU, nn.RNN))}


def select_modules(module: nn.Module, wanted: Sequence[str] | None) -> dict[str, nn.RNNBase]:
    """The recurrent modules to monitor: all of them, or those whose path matches a name or glob in ``wanted``.

    Raises:
        ValueError: no recurrent module at all, or ``wanted`` entries matching none (the message lists those
            that exist).
    """
    found = recurrent_modules(module)
    if not found:
        raise ValueError(
            f"{type(module).__name__} has no nn.LSTM, nn.GRU or nn.RNN module to monitor; "
            f"its modules are {[name for name, _ in module.named_modules() if name][:20]}"
        )
    if wanted is None:
        chosen = found
    else:
        unmatched = [w for w in wanted if not any(fnmatch.fnmatchcase(name, w) for name in found)]
        if unmatched:
            raise ValueError(
                f"`modules` entries {unmatched!r} match no recurrent module of {type(module).__name__}; "
                f"its recurrent modules are {list(found)}"
            )
        chosen = {name: m for name, m in found.items() if any(fnmatch.fnmatchcase(name, w) for w in wanted)}
    return chosen


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
    pl_module: nn.Module, targets: dict[str, nn.RNNBase], inputs: Tensor
) -> tuple[dict[str, _Captured], Any]:
    """Run ``pl_module(inputs)`` once and keep what each target module receives on its first call.

    The hooks are removed whatever happens.

    Raises:
        ValueError: a target received something other than a tensor or a PackedSequence, or was not called at
            all (each naming the module).
    """
    captured: dict[str, _Captured] = {}

    def make_hook(path: str, rnn: nn.RNNBase) -> Callable[[nn.Module, tuple, dict], None]:
        def hook(_: nn.Module, args: tuple, kwargs: dict) -> None:
            if path in captured:
                captured[path].calls += 1
                return
            x = args[0] if args else kwargs["input"]
            hx = args[1] if len(args) > 1 else kwargs.get("hx")
            captured[path] = _first_sequence(path, rnn, x, hx)

        return hook

    handles = []
    try:
        for path, rnn in targets.items():
            handles.append(rnn.register_forward_pre_hook(make_hook(path, rnn), with_kwargs=True))
        output = pl_module(inputs)
    finally:
        for handle in handles:
            handle.remove()
    missing = [path for path in targets if path not in captured]
    if missing:
        raise ValueError(
            f"recurrent module(s) {missing} were not called when {type(pl_module).__name__} ran the probe "
            f"(input shape {tuple(inputs.shape)}); choose the modules its forward uses with `modules=`"
        )
    return captured, output


def _first_sequence(path: str, rnn: nn.RNNBase, x: Any, hx: Any) -> _Captured:
    """The first sequence of the batch ``x`` (time first) and its initial state, as the module runs them."""
    if isinstance(x, PackedSequence):
        # Padded back in the caller's batch order (unsorted_indices undone), with each sequence's real length;
        # the module runs a packed sequence only over those steps, so the trace stops there too.
        padded, lengths = pad_packed_sequence(x)  # (T_max, B, I), (B,)
        seq = padded[: int(lengths[0]), 0]
    elif isinstance(x, Tensor) and x.dim() == 2:  # unbatched: (T, I), and hx is (layers * directions, H)
        return _Captured(x.detach(), _detach(hx))
    elif isinstance(x, Tensor) and x.dim() == 3:
        seq = x[0] if rnn.batch_first else x[:, 0]  # (B, T, I) or (T, B, I) -> (T, I)
    else:
        got = f"a tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor) else f"a {type(x).__name__}"
        raise ValueError(
            f"{path!r} received {got}; the monitor traces a (batch, time, features) or (time, features) tensor, "
            "or a PackedSequence"
        )
    if hx is not None:
        # hx is (layers * directions, B, H) whatever batch_first says, and in the caller's batch order even for a
        # PackedSequence (the module permutes it by sorted_indices itself): the first sequence's is column 0.
        hx = tuple(h[:, :1] for h in hx) if isinstance(hx, tuple) else hx[:, :1]
    return _Captured(seq.detach(), _detach(hx))


def _detach(hx: HiddenState) -> HiddenState:
    if hx is None:
        return None
    if isinstance(hx, tuple):
        return (hx[0].detach(), hx[1].detach())
    return hx.detach()


def next_char_log_probs(output: Any, chars: str | None) -> Tensor | None:
    """(T, V) log-probabilities if ``output`` (or its first element) is a (1, T, V) tensor with V == len(chars)."""
    if chars is None:
        return None
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    if not isinstance(output, Tensor) or output.dim() != 3 or output.shape[0] != 1 or output.shape[-1] != len(chars):
        return None
    return torch.log_softmax(output[0].detach().float(), dim=-1).cpu()


def trace_modules(pl_module: nn.Module, targets: dict[str, nn.RNNBase], probe: Probe, chars: str | None) -> list[Trace]:
    """One trace per target module of one probe; the last one gets ``log_probs`` when the output allows it."""
    assert probe.inputs is not None
    captured, output = run_and_capture(pl_module, targets, probe.inputs)
    traces = []
    for path, rnn in targets.items():
        cap = captured[path]
        if cap.calls > 1:
            rank_zero_warn(
                f"{path!r} was called {cap.calls} times in one forward pass; the monitor traces its first call only"
            )
        steps = cap.inputs.shape[0]
        # Plots label time steps with characters only where there is one time step per character.
        text = probe.text if probe.text is not None and len(probe.text) == steps else None
        tokens = probe.tokens if probe.tokens is not None and len(probe.tokens) == steps else None
        labels = probe.labels if probe.labels is not None and len(probe.labels) == steps else None
        # Without tokens the steps are numbered, not characters, so the vocabulary would label them wrongly.
        vocabulary = chars if tokens is not None else None
        traces.append(
            trace_rnn(rnn, cap.inputs, name=path, hx=cap.hx, text=text, tokens=tokens, chars=vocabulary, labels=labels)
        )
    log_probs = next_char_log_probs(output, chars)
    if log_probs is not None and len(log_probs) == traces[-1].num_steps:
        traces[-1] = traces[-1].with_activation("log_probs", log_probs)
    return traces
