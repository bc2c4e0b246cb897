"""Compact encodings of trace tensors for the HTML report: 8-bit colour codes, top-k predictions, base64 blobs.

Every shown value becomes one byte, the index into the page's 256-entry colour table, so recolouring in the browser
is a table lookup and a (T, H) float32 tensor costs a quarter of its size before compression. Codes are stored unit
by unit, (H, T), so the characters of one unit are contiguous: a unit change reads one slice.
"""

from __future__ import annotations

import base64
import zlib
from typing import NamedTuple

import torch
from torch import Tensor

# How each quantity maps onto the diverging scale -1..+1 that the colour table spans.
#   gate:   a sigmoid output in 0..1, shown as 2g - 1 so that 0.5 sits at the centre of the scale.
#   tanh:   an unbounded value (the LSTM cell) squashed with tanh, as in Karpathy et al. (2015).
#   signed: already in -1..1 (hidden states, tanh candidates).
QUANTITY_KINDS: dict[str, str] = {
    "cell": "tanh",
    "hidden": "signed",
    "cell_candidate": "signed",
    "new_gate": "signed",
    "input_gate": "gate",
    "forget_gate": "gate",
    "output_gate": "gate",
    "reset_gate": "gate",
    "update_gate": "gate",
}
# Selector order: the states people look at first, then the gates.
QUANTITY_ORDER = (
    "cell",
    "hidden",
    "input_gate",
    "forget_gate",
    "cell_candidate",
    "output_gate",
    "reset_gate",
    "update_gate",
    "new_gate",
)
# A deflated blob is kept only when it saves at least this fraction; incompressible data stays raw so that the
# page need not inflate it.
_MIN_SAVING = 0.1
# zlib level 1: on 8-bit activation codes it compresses within a few percent of level 6 at a sixth of the time.
_ZLIB_LEVEL = 1


class Blob(NamedTuple):
    """Bytes ready to embed: base64 text and whether it is deflated (zlib format)."""

    base64: str
    deflated: bool
    raw_size: int


def display_codes(values: Tensor, quantity: str) -> Tensor:
    """(T, H) activations -> (H, T) uint8 codes, 0 = -1 and 255 = +1 on the report's diverging scale."""
    kind = QUANTITY_KINDS[quantity]
    x = torch.nan_to_num(values.detach().to("cpu", torch.float32))
    if kind == "gate":
        x = 2 * x - 1
    elif kind == "tanh":
        x = torch.tanh(x)
    codes = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return codes.T.contiguous()


def top_variance_units(codes: Tensor, n: int) -> list[list[float]]:
    """The ``n`` units whose displayed value varies most over the text, as ``[unit, variance]`` pairs."""
    shown = codes.to(torch.float32) / 127.5 - 1  # (H, T) back on the -1..1 scale
    variance = shown.var(dim=1, unbiased=False) if shown.shape[1] > 1 else torch.zeros(shown.shape[0])
    order = torch.argsort(variance, descending=True, stable=True)[:n]
    return [[int(u), round(float(variance[u]), 5)] for u in order]


def top_predictions(log_probs: Tensor, k: int) -> tuple[bytes, bytes]:
    """(T, V) log-probabilities -> the top-``k`` character ids (little-endian uint16) and probabilities (uint8/255).

    Both are (T, k) row-major, best first; probabilities are quantised to 1/255, enough for a tooltip.
    """
    values, ids = torch.nan_to_num(log_probs.detach().to("cpu", torch.float32), nan=-1e9).topk(k, dim=-1)
    probs = (values.exp() * 255).round().clamp(0, 255).to(torch.uint8)
    return ids.numpy().astype("<u2").tobytes(), probs.numpy().tobytes()


def pack(data: bytes) -> Blob:
    """Base64 text of ``data``, deflated first when that saves at least ``_MIN_SAVING``."""
    packed = zlib.compress(data, _ZLIB_LEVEL)
    deflated = len(packed) <= (1 - _MIN_SAVING) * len(data)
    return Blob(base64.b64encode(packed if deflated else data).decode("ascii"), deflated, len(data))


def unpack(blob: Blob) -> bytes:
    """The bytes :func:`pack` was given (the page does the same with ``atob`` and ``DecompressionStream``)."""
    data = base64.b64decode(blob.base64)
    return zlib.decompress(data) if blob.deflated else data
