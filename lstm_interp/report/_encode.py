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

from lstm_interp.tracing import display_values

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
    """(T, H) activations -> (H, T) uint8 codes, 0 = -1 and 255 = +1 on the report's diverging scale.

    The mapping onto -1..+1 is the one every view uses (:func:`~lstm_interp.tracing.display_values`); NaN shows as 0.
    """
    x = torch.nan_to_num(display_values(values.detach().cpu(), quantity), nan=0.0)
    codes = ((x + 1) * 127.5).round().to(torch.uint8)
    return codes.T.contiguous()


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
