"""``run_recurrent``: one fused recurrent layer under mixed precision, on every CPU.

Under ``precision="bf16-mixed"`` on the CPU, autocast hands ``nn.LSTM`` to oneDNN's bfloat16 kernel. CPUs without
AVX-512 (most AMD EPYC and older Intel parts) have none: PyTorch then fails with "could not create a primitive
descriptor for the LSTM forward propagation primitive". There the layer runs in float32 instead, outside autocast,
with one warning; the embedding and the output layer keep running in bfloat16, so the step is still mixed precision.
The outcome of the first attempt is remembered for the process, so the failing kernel is tried once, not per step.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

# None: not tried yet in this process; True/False: whether the CPU's bfloat16 recurrent kernels exist.
_cpu_bf16_recurrent: bool | None = None
_NO_KERNEL = "could not create a primitive descriptor"


def run_recurrent(layer: nn.RNNBase, x: Tensor, state: Tensor | tuple[Tensor, Tensor] | None) -> tuple[Tensor, object]:
    """``layer(x, state)``, falling back to float32 where the CPU has no bfloat16 kernel for it.

    Args:
        layer: an ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN``.
        x: (B, T, I) input.
        state: the layer's initial state, or ``None``.

    Returns:
        The layer's ``(output, state)``; in the fallback both are float32.

    Raises:
        RuntimeError: any other failure of the layer, unchanged.
    """
    global _cpu_bf16_recurrent
    bf16_on_cpu = (
        x.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
    )
    if not bf16_on_cpu or _cpu_bf16_recurrent is not False:
        try:
            out = layer(x, state)
        except RuntimeError as err:
            if not bf16_on_cpu or _NO_KERNEL not in str(err):
                raise
            _cpu_bf16_recurrent = False
            warnings.warn(
                "this CPU has no bfloat16 kernel for recurrent layers (oneDNN needs AVX-512), so under bf16-mixed "
                "they run in float32; the embedding and output layer stay in bfloat16. Use precision='32-true' to "
                "run everything in float32.",
                RuntimeWarning,
                stacklevel=3,
            )
        else:
            if bf16_on_cpu:
                _cpu_bf16_recurrent = True
            return out
    with torch.autocast("cpu", enabled=False):
        return layer(x.float(), _float_state(state))


def _float_state(state: Tensor | tuple[Tensor, Tensor] | None) -> Tensor | tuple[Tensor, Tensor] | None:
    if state is None:
        return None
    if isinstance(state, tuple):
        return (state[0].float(), state[1].float())
    return state.float()
