"""``run_with_interventions``: a full :class:`~lstm_interp.Trace` of a network whose units are ablated, clamped,
scaled or patched while it runs (semantics in :mod:`lstm_interp.interventions.intervention`).

It takes a :class:`~lstm_interp.CharLSTM` and a text (the trace then holds ``log_probs`` too, computed from the
intervened top layer), or an ``nn.LSTM``/``nn.GRU``/``nn.RNN`` of the user's own model and its inputs, through the
same path as :func:`~lstm_interp.trace_rnn` (any number of layers, either direction, ``proj_size``). Layers that
nothing acts on run on their fused kernels, as in a plain trace; a layer with interventions is run by
:func:`~lstm_interp.interventions.intervened_layer.run_intervened_layer`, which keeps the fused kernel for
hidden-state interventions and loops over steps only where a cell or gate is intervened.

The model is never changed: its weights are bitwise the same after every call, one that raises included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from lstm_interp.interventions.intervened_layer import run_intervened_layer
from lstm_interp.interventions.intervention import Ablate, Intervention, InterventionError, Patch, intervention_list
from lstm_interp.interventions.intervention_rules import check_finite_run, check_quantity, unit_ranges
from lstm_interp.models.char_lstm import CharLSTM, LayerState, State
from lstm_interp.tracing.layers import _gates, cell_type, traced_precision, zero_state
from lstm_interp.tracing.module_trace import _initial_state, check_inputs, layer_prefixes, output_size, split_layers
from lstm_interp.tracing.quantities import QUANTITIES
from lstm_interp.tracing.trace import (
    DEFAULT_CHUNK_SIZE,
    NamesFilter,
    Trace,
    _float32_copy,
    available_names,
    encode_text,
    select_names,
    start_state,
    trace,
)
from lstm_interp.tracing.trace_arguments import check_chunk_size, check_dtype
from lstm_interp.vocab import OnUnknown


@torch.no_grad()
def run_with_interventions(
    model: CharLSTM | nn.RNNBase,
    inputs: str | Tensor,
    interventions: Sequence[Intervention] | Intervention | None,
    *,
    names_filter: NamesFilter = None,
    dtype: torch.dtype = torch.float32,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    state: State | None = None,
    on_unknown: OnUnknown = "error",
    name: str = "rnn",
    hx: Tensor | tuple[Tensor, Tensor] | None = None,
) -> Trace:
    """Trace ``model`` over ``inputs`` with ``interventions`` acting, recording every activation under them.

    Args:
        model: a :class:`~lstm_interp.CharLSTM` (names ``layers.<i>.<quantity>``), or an ``nn.LSTM``/``nn.GRU``/
            ``nn.RNN`` (names as :func:`~lstm_interp.trace_rnn` gives them under ``name``).
        inputs: the text (or (T,) ids) for a CharLSTM; the (T, input_size) sequence for a module.
        interventions: :class:`~.Ablate`, :class:`~.Clamp`, :class:`~.Scale`, :class:`~.Patch` objects (one alone
            is read as a list of one); an empty list (or ``None``) gives the plain trace.
        names_filter, dtype, chunk_size, state, on_unknown: as for :func:`~lstm_interp.trace` (CharLSTM).
        name, hx: as for :func:`~lstm_interp.trace_rnn` (a module).

    Returns:
        The :class:`~lstm_interp.Trace` under the interventions (with ``log_probs`` for a CharLSTM).

    Raises:
        InterventionError: (a ``ValueError``) for a name the model does not have, units out of range, a patch
            source shorter than the steps it patches, steps past the end of the text; raised before anything runs.
            Raised too, naming the interventions, when they drive the network to inf or NaN while it runs (a
            result would be all NaN).
        TypeError: ``interventions`` is not a list of interventions.
        VocabularyError, ValueError: as :func:`~lstm_interp.trace` and :func:`~lstm_interp.trace_rnn` raise them.

    Example::

        >>> tr = run_with_interventions(model, text, [Ablate("layers.1.cell", [254])])  # doctest: +SKIP
        >>> nll = -tr["log_probs"][:-1].gather(1, tr.tokens[1:, None])  # doctest: +SKIP
    """
    interventions = intervention_list(interventions)
    check_dtype(dtype)
    check_chunk_size(chunk_size)
    if isinstance(model, CharLSTM):
        if not interventions:
            return trace(model, inputs, names_filter=names_filter, dtype=dtype, chunk_size=chunk_size, state=state,
                         on_unknown=on_unknown)  # fmt: skip
        return _run_char_lstm(model, inputs, list(interventions), names_filter, dtype, chunk_size, state, on_unknown)
    if isinstance(model, nn.RNNBase):
        return _run_module(model, inputs, list(interventions), names_filter, dtype, name, hx)
    raise TypeError(f"`model` must be a CharLSTM or an nn.LSTM/nn.GRU/nn.RNN, got {type(model).__name__}")


def resolve(
    interventions: Sequence[Intervention],
    cell: str,
    widths: dict[str, dict[str, int]],
    length: int | None,
    reference_trace: object,
) -> list[Intervention]:
    """Check every intervention against the model and compute the reference means of mean ablations.

    Args:
        cell: the model's cell type.
        widths: layer prefix -> quantity -> width.
        length: the number of steps of the run, for checking patch sources (``None`` in generation: unknown).
        reference_trace: ``callable(reference, name) -> Trace`` tracing a reference text without interventions.
    """
    resolved = []
    for iv in interventions:
        where = f"{type(iv).__name__}({iv.name!r})"
        if iv.layer not in widths:
            raise InterventionError(f"{iv.name!r} names no layer of the model; its layers are {list(widths)}")
        check_quantity(iv.quantity, cell, repr(iv.name))
        width = widths[iv.layer][iv.quantity]
        if max(iv.units) >= width:
            bad = [u for u in iv.units if u >= width]
            raise InterventionError(
                f"units {unit_ranges(bad) if len(bad) > 10 else bad} of {iv.name!r}: it has {width} units "
                f"(0-{width - 1})"
            )
        for role, source in iv.source_traces():
            if source[iv.name].shape[1] != width:
                raise InterventionError(
                    f"{iv.name!r} of {role} has {source[iv.name].shape[1]} units, the model's has {width}: "
                    "a trace of another architecture"
                )
        if length is not None:
            iv.check_run_length(length)
        if isinstance(iv, Patch) and length is not None:
            patched = iv.mask(0, length).nonzero().flatten()
            if len(patched) and int(patched.max()) >= iv.source.num_steps:  # type: ignore[union-attr]
                raise InterventionError(
                    f"Patch({iv.name!r}) patches step {int(patched.max())}, but its source has only "
                    f"{iv.source.num_steps} steps"  # type: ignore[union-attr]
                )
        if isinstance(iv, Ablate) and iv.value == "mean":
            reference = iv.reference
            if isinstance(reference, Trace):
                ref = reference
            else:
                try:
                    ref = reference_trace(reference, iv.name)  # type: ignore[operator]
                except (TypeError, ValueError) as err:  # an empty text, one of unknown characters only, ...
                    raise InterventionError(
                        f"the `reference` of {where}, value='mean' cannot be traced (characters outside the vocabulary "
                        f"are skipped): {err}"
                    ) from err
            if iv.name not in ref:
                raise InterventionError(f"the reference trace of {where} has no {iv.name!r}")
            iv = iv.with_mean(ref[iv.name][:, list(iv.units)].float().mean(0))
        resolved.append(iv)
    return resolved


def _run_char_lstm(
    model: CharLSTM,
    text: str | Tensor,
    interventions: list[Intervention],
    names_filter: NamesFilter,
    dtype: torch.dtype,
    chunk_size: int,
    state: State | None,
    on_unknown: OnUnknown,
) -> Trace:
    cfg = model.config
    tokens, text_str = encode_text(model, text, on_unknown, verb="run")
    T = len(tokens)
    prefixes = [f"layers.{i}" for i in range(cfg.num_layers)]
    widths = {p: dict.fromkeys(QUANTITIES[cfg.cell], cfg.hidden_size) for p in prefixes}
    resolved = resolve(
        interventions, cfg.cell, widths, T, lambda ref, n: trace(model, ref, names_filter=n, on_unknown="skip")
    )
    names = select_names(names_filter, available_names(cfg.cell, cfg.num_layers))
    keep = set(names)
    store = {n: torch.empty(T, cfg.embedding_size if n == "embedding" else cfg.vocab_size if n == "log_probs"
                            else cfg.hidden_size, dtype=dtype) for n in names}  # fmt: skip
    net = _float32_copy(model)
    device = net.device
    state = start_state(model, state, device)
    ids = tokens.to(device)
    was_training = model.training
    net.eval()
    try:
        with traced_precision(device):
            for start in range(0, T, chunk_size):
                rows = slice(start, min(start + chunk_size, T))
                x = net.embedding(ids[rows])  # (L, E)
                if "embedding" in keep:
                    store["embedding"][rows] = x.to("cpu", dtype)
                positions = torch.arange(rows.start, rows.stop)
                for i, (layer, prefix) in enumerate(zip(net.layers, prefixes, strict=True)):
                    x, state[i] = _layer_chunk(layer, prefix, x, state[i], resolved, positions, keep, store, rows)
                log_probs = torch.log_softmax(net.head(x), dim=-1) if "log_probs" in keep else x
                check_finite_run([log_probs, *_tensors(state)], interventions, f"by step {rows.stop - 1}")
                if "log_probs" in keep:
                    store["log_probs"][rows] = log_probs.to("cpu", dtype)
    finally:
        model.train(was_training)
    return Trace(store, text=text_str, tokens=tokens, cell=cfg.cell, num_layers=cfg.num_layers, final_state=state,
                 chars=model.vocab.chars if model.vocab is not None else None)  # fmt: skip


def intervened_forward(
    model: CharLSTM, interventions: Sequence[Intervention] | Intervention, length: int
) -> Callable[[Tensor, State | None, int], tuple[Tensor, State]]:
    """``forward(tokens (1, L), state, position) -> (log_probs (1, L, V), state)``: the model one piece at a time
    under ``interventions``, ``position`` being the step of ``tokens[0, 0]`` (for generation; checked now, for a run
    of ``length`` steps)."""
    cfg = model.config
    prefixes = [f"layers.{i}" for i in range(cfg.num_layers)]
    widths = {p: dict.fromkeys(QUANTITIES[cfg.cell], cfg.hidden_size) for p in prefixes}
    interventions = intervention_list(interventions)
    resolved = resolve(
        interventions, cfg.cell, widths, length,
        lambda ref, n: trace(model, ref, names_filter=n, on_unknown="skip"),
    )  # fmt: skip
    net = _float32_copy(model)

    def forward(tokens: Tensor, state: State | None, position: int) -> tuple[Tensor, State]:
        device = net.device
        if state is None:
            state = [zero_state(cfg.cell, cfg.hidden_size, device) for _ in range(cfg.num_layers)]
        state = list(state)
        ids = tokens.reshape(-1).to(device)
        positions = torch.arange(position, position + len(ids))
        with traced_precision(device):
            x = net.embedding(ids)
            for i, (layer, prefix) in enumerate(zip(net.layers, prefixes, strict=True)):
                x, state[i] = _layer_chunk(layer, prefix, x, state[i], resolved, positions, set(), {}, slice(0))
            log_probs = torch.log_softmax(net.head(x), dim=-1)
            check_finite_run([log_probs, *_tensors(state)], interventions, f"by step {int(positions[-1])}")
            return log_probs[None], state

    return forward


def _tensors(state: State) -> list[Tensor]:
    """Every tensor of a per-layer state (an LSTM layer's is a pair)."""
    return [t for layer in state for t in (layer if isinstance(layer, tuple) else (layer,))]


def _layer_chunk(
    layer: nn.RNNBase,
    prefix: str,
    x: Tensor,
    state: LayerState,
    interventions: list[Intervention],
    positions: Tensor,
    keep: set[str],
    store: dict[str, Tensor],
    rows: slice,
) -> tuple[Tensor, LayerState]:
    """One layer over one chunk (or one direction over a whole sequence): its hidden output and new state."""
    mine = [iv for iv in interventions if iv.layer == prefix]
    wanted = {n[len(prefix) + 1 :] for n in keep if n.startswith(prefix + ".") and "." not in n[len(prefix) + 1 :]}
    if mine:
        hidden, new_state, acts = run_intervened_layer(layer, x, state, mine, positions, wanted - {"hidden"})
    else:
        out, new_state = layer(x[None], state)
        hidden = out[0]
        acts = _gates(layer, x, hidden, state, None, None) if wanted - {"hidden"} else {}
    acts["hidden"] = hidden
    for quantity in wanted:
        store[f"{prefix}.{quantity}"][rows] = acts[quantity].detach().to("cpu", store[f"{prefix}.{quantity}"].dtype)
    return hidden, new_state


def _run_module(
    rnn: nn.RNNBase,
    inputs: Tensor,
    interventions: list[Intervention],
    names_filter: NamesFilter,
    dtype: torch.dtype,
    name: str,
    hx: Tensor | tuple[Tensor, Tensor] | None,
) -> Trace:
    """The trace_rnn path: layer after layer, each direction over the whole sequence (a reverse one flipped)."""
    T = check_inputs(rnn, inputs, name, verb="run")
    cell = cell_type(rnn)
    prefixes = layer_prefixes(rnn, name)
    width = {q: output_size(rnn) if q == "hidden" else rnn.hidden_size for q in QUANTITIES[cell]}
    widths = {p: dict(width) for p in prefixes}
    from lstm_interp.tracing.module_trace import trace_rnn

    resolved = resolve(interventions, cell, widths, T, lambda ref, n: _module_reference(trace_rnn, rnn, ref, n, name))
    names = select_names(names_filter, [f"{p}.{q}" for p in prefixes for q in QUANTITIES[cell]])
    keep = set(names)
    store = {n: torch.empty(T, widths[n.rsplit(".", 1)[0]][n.rsplit(".", 1)[1]], dtype=dtype) for n in names}
    device = rnn.weight_hh_l0.device
    layers = split_layers(rnn)
    state = _initial_state(hx, rnn, name, device)
    directions = 2 if rnn.bidirectional else 1
    x = inputs.to(device, torch.float32)
    forward_steps = torch.arange(T)
    final: list[LayerState] = []
    with traced_precision(device):
        for k in range(0, len(layers), directions):
            outputs = []
            for d in range(directions):
                i = k + d
                sequence, positions = (x, forward_steps) if d == 0 else (x.flip(0), forward_steps.flip(0))
                local: dict[str, Tensor] = {n: torch.empty_like(store[n]) for n in keep if _owner(n, prefixes) == i}
                hidden, last = _layer_chunk(layers[i], prefixes[i], sequence, state[i], resolved, positions,
                                            set(local), local, slice(0, T))  # fmt: skip
                for n, values in local.items():
                    store[n] = values.flip(0) if d == 1 else values
                outputs.append(hidden.flip(0) if d == 1 else hidden)
                final.append(last)
            x = torch.cat(outputs, dim=1)
    check_finite_run([x, *_tensors(final)], interventions, "in the run")
    return Trace(store, text=None, tokens=torch.arange(T), cell=cell, num_layers=len(prefixes), final_state=final,
                 layer_names=prefixes)  # fmt: skip


def _owner(name: str, prefixes: list[str]) -> int:
    """The index of the layer (direction) a name belongs to: its prefix is everything before the quantity."""
    return prefixes.index(name.rsplit(".", 1)[0])


def _module_reference(trace_rnn, rnn: nn.RNNBase, reference: object, name: str, prefix: str) -> Trace:
    if not isinstance(reference, Tensor):
        raise InterventionError(
            f"the reference of a mean ablation of a module must be a Trace or a (T, input_size) tensor, got "
            f"{type(reference).__name__}"
        )
    return trace_rnn(rnn, reference, name=prefix, names_filter=name)
