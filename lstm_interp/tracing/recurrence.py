"""Exact recomputation of every gate of one recurrent layer from its input and its hidden-state sequence.

The fused ``nn.LSTM``/``nn.GRU`` kernels return the hidden sequence but not the gates. Given that hidden sequence,
every gate at every time step depends only on quantities we already have (the layer input ``x_t`` and the
previous hidden state ``h_{t-1}``), so all gates come out of one batched matmul instead of ``T`` small ones.
The LSTM cell state then follows the *linear* recurrence ``c_t = f_t * c_{t-1} + i_t * g_t``, which is solved in
blocks of :data:`SCAN_BLOCK` steps (:func:`linear_scan`).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Steps per block of the cell-state scan: near sqrt(chunk) balances the in-block and across-block loops.
SCAN_BLOCK = 32


def linear_scan(decay: Tensor, update: Tensor, initial: Tensor, block: int = SCAN_BLOCK) -> Tensor:
    """Solve ``y_t = decay_t * y_{t-1} + update_t`` for all ``t`` with ``y_{-1} = initial``.

    The steps are cut into ``T / block`` blocks. First every block is scanned from a zero start, all blocks at
    once (``block`` elementwise steps over (T / block, H) slices); then the value entering each block is carried
    across blocks (``T / block`` elementwise steps over H); finally each block adds its carry times the running
    product of its decays. About ``2 * sqrt(T)`` small steps instead of ``T``, and three passes over the data.

    Args:
        decay: (T, H) multipliers (an LSTM's forget gate).
        update: (T, H) additions (an LSTM's ``input_gate * cell_candidate``).
        initial: (H,) the value before the first step.
        block: steps per block.

    Returns:
        (T, H), the values of the sequential loop up to float rounding in a different order.
    """
    T, H = decay.shape
    if T == 0:
        return update.clone()
    nb = -(-T // block)
    pad = nb * block - T
    if pad:
        # Decay 1 and update 0 leave the real steps unchanged.
        decay = torch.cat([decay, decay.new_ones(pad, H)])
        update = torch.cat([update, update.new_zeros(pad, H)])
    d = decay.reshape(nb, block, H)
    u = update.reshape(nb, block, H)
    y = torch.empty_like(u)  # block-local scan from a zero start
    y[:, 0] = u[:, 0]
    for k in range(1, block):
        torch.addcmul(u[:, k], d[:, k], y[:, k - 1], out=y[:, k])
    running = torch.cumprod(d, dim=1)  # product of decays since the start of the block
    carries = torch.empty(nb, H, dtype=y.dtype, device=y.device)
    carry = initial.to(y.dtype)
    for j in range(nb):
        carries[j] = carry
        carry = torch.addcmul(y[j, -1], running[j, -1], carry)
    y.addcmul_(running, carries[:, None, :])
    return y.reshape(nb * block, H)[:T]


def lstm_gates(pre: Tensor, hidden_size: int) -> dict[str, Tensor]:
    """Turn LSTM pre-activations (T, 4H), in PyTorch's ``i, f, g, o`` order, into gates, in place."""
    H = hidden_size
    pre[:, : 2 * H].sigmoid_()
    pre[:, 2 * H : 3 * H].tanh_()
    pre[:, 3 * H :].sigmoid_()
    return {
        "input_gate": pre[:, :H],
        "forget_gate": pre[:, H : 2 * H],
        "cell_candidate": pre[:, 2 * H : 3 * H],
        "output_gate": pre[:, 3 * H :],
    }


def lstm_layer_activations(
    x: Tensor | None,
    input_projection: Tensor | None,
    hidden: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None,
    bias_hh: Tensor | None,
    stacked_weight: Tensor | None = None,
) -> dict[str, Tensor]:
    """All gates and the cell state of one LSTM layer over one chunk.

    With ``proj_size = P`` the hidden state is ``h_t = W_hr (o_t * tanh c_t)``, P wide, and it is what
    ``weight_hh`` (4H, P) multiplies, so the gates come out of the same product; without it, P = H.

    Args:
        x: (T, I) layer input, or ``None`` when ``input_projection`` is given.
        input_projection: (T, 4H) precomputed ``x @ weight_ih.T + bias_ih + bias_hh`` (e.g. gathered from a
            per-character table for an embedding input), or ``None``.
        hidden: (T, P) the layer's hidden sequence, as the fused kernel returned it.
        h0: (P,) and c0: (H,), the state before the chunk.
        weight_ih, weight_hh, bias_ih, bias_hh: the layer's parameters (PyTorch layout, gates ``i, f, g, o``).
        stacked_weight: ``torch.cat([weight_ih, weight_hh], 1).T`` (I + P, 4H), if the caller keeps it across chunks.

    Returns:
        ``input_gate``, ``forget_gate``, ``cell_candidate``, ``output_gate`` and ``cell``, each (T, H).
    """
    # From the weights, not the hidden sequence: with a projection the hidden state is narrower than the cell.
    H = weight_hh.shape[0] // 4
    h_prev = torch.cat([h0[None], hidden[:-1]])  # (T, P)
    if input_projection is not None:
        pre = torch.addmm(input_projection, h_prev, weight_hh.T)  # (T, 4H)
    else:
        assert x is not None
        bias = _bias_sum(bias_ih, bias_hh, 4 * H, hidden)
        # One matmul for both products: [x_t, h_{t-1}] @ [W_ih; W_hh]^T.
        if stacked_weight is None:
            stacked_weight = torch.cat([weight_ih, weight_hh], dim=1).T
        pre = torch.addmm(bias, torch.cat([x, h_prev], dim=1), stacked_weight)
    gates = lstm_gates(pre, H)
    gates["cell"] = linear_scan(gates["forget_gate"], gates["input_gate"] * gates["cell_candidate"], c0)
    return gates


def gru_layer_activations(
    x: Tensor,
    hidden: Tensor,
    h0: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None,
    bias_hh: Tensor | None,
) -> dict[str, Tensor]:
    """``reset_gate``, ``update_gate`` and ``new_gate`` of one GRU layer over one chunk, each (T, H), from its
    hidden sequence (each step's previous state is the row before it, ``h0`` for the first)."""
    h_prev = torch.cat([h0[None], hidden[:-1]])
    return gru_gates(x, h_prev, weight_ih, weight_hh, bias_ih, bias_hh)


def gru_gates(
    x: Tensor,
    h_prev: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None,
    bias_hh: Tensor | None,
) -> dict[str, Tensor]:
    """``reset_gate``, ``update_gate`` and ``new_gate`` of GRU steps, each (N, H), from each step's input (N, I) and
    the state it received (N, H): the rows need not be one sequence (the calls of an ``nn.GRUCell``).

    PyTorch's GRU: ``r = σ(W_ir x + b_ir + W_hr h + b_hr)``, ``z = σ(W_iz x + b_iz + W_hz h + b_hz)``,
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``.
    """
    H = h_prev.shape[1]
    gi = torch.addmm(_bias_sum(bias_ih, None, 3 * H, h_prev), x, weight_ih.T)  # (N, 3H)
    gh = torch.addmm(_bias_sum(bias_hh, None, 3 * H, h_prev), h_prev, weight_hh.T)  # (N, 3H)
    rz = (gi[:, : 2 * H] + gh[:, : 2 * H]).sigmoid_()
    reset, update = rz[:, :H], rz[:, H:]
    new = torch.addcmul(gi[:, 2 * H :], reset, gh[:, 2 * H :]).tanh_()
    return {"reset_gate": reset, "update_gate": update, "new_gate": new}


def _bias_sum(bias_a: Tensor | None, bias_b: Tensor | None, size: int, like: Tensor) -> Tensor:
    bias = like.new_zeros(size)
    if bias_a is not None:
        bias = bias + bias_a
    if bias_b is not None:
        bias = bias + bias_b
    return bias
