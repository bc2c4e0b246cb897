"""``intervene``: ablate, clamp, scale or patch units of the cell modules a user steps in their own loop.

An attention decoder or a policy network calls an ``nn.LSTMCell``/``nn.GRUCell``/``nn.RNNCell`` once per step, in a
Python loop the library does not own, so :func:`~lstm_interp.run_with_interventions` (which runs the loop itself)
cannot reach it. ``intervene`` works inside the user's loop instead: while the context is open, a forward hook on
each named cell module recomputes every call from the input and state the call received, with the interventions
applied inside the step exactly where :mod:`lstm_interp.interventions.intervention` says (a gate before the cell
state is formed, a cell before ``h = o * tanh(c)``, a hidden state on the way out), and returns that in place of the
module's own output. What the user's loop does with the output (attention, the next call's state) then sees the
intervened values. A call with nothing active is left as the module computed it.

Steps count the calls of each cell module from the start of every forward pass of ``model`` (a forward pre-hook on
``model`` resets them), or from the opening of the context for calls made outside ``model``'s forward.

The model is not changed: its weights are only read, and every hook is removed when the context closes, an error
included.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lstm_interp.interventions.intervened_layer import intervened_step
from lstm_interp.interventions.intervention import Intervention, intervention_list
from lstm_interp.interventions.intervention_rules import InterventionError, check_finite_run
from lstm_interp.interventions.run_with_interventions import resolve
from lstm_interp.tracing.cell_trace import CELL_CLASSES, SUPPORTED_CELLS, trace_cell
from lstm_interp.tracing.layers import cell_type
from lstm_interp.tracing.quantities import QUANTITIES
from lstm_interp.tracing.trace import Trace


class InterventionRecord:
    """What the intervened cells did, call by call (batch row 0), since the last forward pass of the model began:
    :meth:`trace` gives it as a :class:`~lstm_interp.Trace`, every quantity under the interventions."""

    def __init__(self, cells: dict[str, nn.RNNCellBase]) -> None:
        self._cells = cells
        self._rows: dict[str, dict[str, list[Tensor]]] = {path: {} for path in cells}

    def _reset(self) -> None:
        for path in self._rows:
            self._rows[path] = {}

    def _add(self, path: str, values: dict[str, Tensor]) -> None:
        for quantity, value in values.items():
            self._rows[path].setdefault(quantity, []).append(value.reshape(-1, value.shape[-1])[0].detach().cpu())

    def trace(self, path: str) -> Trace:
        """The calls of the cell at ``path`` since the model's last forward pass began, one row per call.

        Raises:
            KeyError: ``path`` is not an intervened cell, or it has not been called.
        """
        if path not in self._rows:
            raise KeyError(f"{path!r} is not an intervened cell module; they are {list(self._rows)}")
        rows = self._rows[path]
        if not rows:
            raise KeyError(f"{path!r} has not been called since the context opened")
        kind = cell_type(self._cells[path])
        acts = {f"{path}.{q}": torch.stack(rows[q]) for q in QUANTITIES[kind]}
        steps = len(rows["hidden"])
        return Trace(acts, text=None, tokens=torch.arange(steps), cell=kind, num_layers=1, layer_names=[path])


@contextlib.contextmanager
def intervene(
    model: nn.Module, interventions: Sequence[Intervention] | Intervention, *, record: bool = False
) -> Iterator[InterventionRecord | None]:
    """Apply ``interventions`` to the cell modules of ``model`` on every call, inside the user's own loop.

    Each intervention names a cell module by its path in ``model`` and a quantity: ``"decoder.cell.forget_gate"``
    for the ``nn.LSTMCell`` at ``model.decoder.cell``. Its ``steps`` count that module's calls from the start of
    each forward pass of ``model``. Every batch row is intervened alike.

    Args:
        model: the user's module (a LightningModule, a policy, a decoder).
        interventions: :class:`~.Ablate`, :class:`~.Clamp`, :class:`~.Scale`, :class:`~.Patch`. A mean ablation's
            ``reference`` is a :class:`~lstm_interp.Trace` holding the name (a :func:`~lstm_interp.trace_cell` or a
            monitor recording) or the cell's (T, input_size) inputs, traced with the state carried from zeros. A
            Patch reads step t of its source at the cell's call t.
        record: also keep every quantity of every call of the intervened cells (batch row 0), under the
            interventions, for ``record.trace(path)``; this recomputes each call, so the loop runs slower.

    Yields:
        An :class:`InterventionRecord` when ``record`` is true, else ``None``.

    Raises:
        InterventionError: (a ``ValueError``) a name that is not a cell module of ``model`` (an ``nn.LSTM``, a
            TorchScript, compiled or custom module is named as such, with what is supported), a quantity the cell
            lacks, units out of range, a reference that cannot be traced; all before any hook is placed. Raised
            from the call too when the interventions drive the cell to inf or NaN.
        TypeError: ``model`` is not an ``nn.Module``, or ``interventions`` not a list of interventions.

    Example::

        >>> with intervene(seq2seq, [Ablate("decoder.cell.cell", [3])], record=True) as record:  # doctest: +SKIP
        ...     logits = seq2seq(source, target)
        >>> record.trace("decoder.cell")["decoder.cell.cell"][:, 3]  # zero at every call  # doctest: +SKIP
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
    interventions = intervention_list(interventions)
    cells = _cells(model, interventions)
    resolved: dict[str, list[Intervention]] = {}
    for path, cell in cells.items():
        mine = [iv for iv in interventions if iv.layer == path]
        widths = {path: dict.fromkeys(QUANTITIES[cell_type(cell)], cell.hidden_size)}
        resolved[path] = resolve(mine, cell_type(cell), widths, None,
                                 lambda ref, name, cell=cell, path=path: _reference(cell, path, ref, name))  # fmt: skip
    counters = dict.fromkeys(cells, 0)
    kept = InterventionRecord(cells) if record else None

    def reset(*_: Any) -> None:
        for path in counters:
            counters[path] = 0
        if kept is not None:
            kept._reset()

    handles = [model.register_forward_pre_hook(reset)]
    try:
        for path, cell in cells.items():
            hook = _hook(path, cell, resolved[path], counters, kept)
            handles.append(cell.register_forward_hook(hook, with_kwargs=True))
        yield kept
    finally:
        for handle in handles:
            handle.remove()


def _cells(model: nn.Module, interventions: list[Intervention]) -> dict[str, nn.RNNCellBase]:
    """The cell module each intervention names, by path, or a refusal naming what the path is instead."""
    modules = dict(model.named_modules())
    cells: dict[str, nn.RNNCellBase] = {}
    for iv in interventions:
        module = modules.get(iv.layer)
        where = f"{type(iv).__name__}({iv.name!r})"
        if module is None:
            known = [p for p, m in modules.items() if isinstance(m, CELL_CLASSES)]
            raise InterventionError(
                f"{where}: {type(model).__name__} has no module {iv.layer!r}; its cell modules are {known}"
            )
        if isinstance(module, torch.jit.ScriptModule) or type(module).__name__ == "OptimizedModule":
            kind = "a TorchScript" if isinstance(module, torch.jit.ScriptModule) else "a compiled (torch.compile)"
            raise InterventionError(
                f"{where}: {iv.layer!r} is {kind} module, whose calls hooks cannot follow; intervene supports "
                f"{SUPPORTED_CELLS} (script or compile the model after intervening)"
            )
        if isinstance(module, (nn.LSTM, nn.GRU, nn.RNN)):
            raise InterventionError(
                f"{where}: {iv.layer!r} is an {type(module).__name__} given whole sequences; run it with "
                "run_with_interventions(module, inputs, ...). intervene supports " + SUPPORTED_CELLS
            )
        if not isinstance(module, CELL_CLASSES):
            raise InterventionError(
                f"{where}: {iv.layer!r} is a {type(module).__name__}, not a cell module the interventions know the "
                f"gates of; intervene supports {SUPPORTED_CELLS}"
            )
        cells[iv.layer] = module
    return cells


def _reference(cell: nn.RNNCellBase, path: str, reference: object, name: str) -> Any:
    """A mean ablation's reference inputs, traced through the cell with the state carried from zeros."""
    if not isinstance(reference, Tensor):
        raise InterventionError(
            f"the reference of a mean ablation of cell module {path!r} must be a Trace or its (T, input_size) inputs, "
            f"got {type(reference).__name__}"
        )
    return trace_cell(cell, reference, name=path, names_filter=name)


def _hook(
    path: str, cell: nn.RNNCellBase, ivs: list[Intervention], counters: dict[str, int], kept: InterventionRecord | None
) -> Any:
    """The forward hook of one cell: the call recomputed under the interventions active at its step (and, when
    recording, every call recomputed and kept)."""
    kind = cell_type(cell)

    def hook(_: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        step = counters[path]
        counters[path] = step + 1
        active = [iv for iv in ivs if bool(iv.mask(step, step + 1)[0])]
        if not active and kept is None:
            return None
        x = args[0] if args else kwargs["input"]
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
        h_out = output[0] if kind == "lstm" else output
        dtype = h_out.dtype
        if hx is None:
            zeros = x.new_zeros(*x.shape[:-1], cell.hidden_size, dtype=torch.float32)
            hx = (zeros, zeros) if kind == "lstm" else zeros
        h = (hx[0] if kind == "lstm" else hx).float()
        c = hx[1].float() if kind == "lstm" else None
        pre_x = x.float() @ cell.weight_ih.float().T
        if cell.bias:
            pre_x = pre_x + cell.bias_ih.float() + (cell.bias_hh.float() if kind != "gru" else 0)
        bias_hh = cell.bias_hh.float() if cell.bias else None
        with torch.autocast(x.device.type, enabled=False):
            values = intervened_step(kind, pre_x, h, c, cell.weight_hh.float(), bias_hh, active, torch.tensor(step),
                                     nonlinearity=getattr(cell, "nonlinearity", "tanh"))  # fmt: skip
        if kept is not None:
            kept._add(path, values)
        if not active:
            return None
        new_h = values["hidden"]
        check_finite_run([new_h] + ([values["cell"]] if kind == "lstm" else []), active, f"at call {step} of {path!r}")
        if kind == "lstm":
            return new_h.to(dtype), values["cell"].to(output[1].dtype)
        return new_h.to(dtype)

    return hook
