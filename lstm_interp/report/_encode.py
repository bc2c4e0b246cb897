"""Compact encodings of trace tensors for the HTML report: 8-bit colour codes, top-k predictions, 7-bit text blobs.

Every shown value becomes one byte, the index into the page's 256-entry colour table, so recolouring in the browser
is a table lookup and a (T, H) float32 tensor costs a quarter of its size before compression. Codes are stored unit
by unit, (H, T), so the characters of one unit are contiguous: a unit change reads one slice, and a page that holds
only some units embeds just their rows.

Blobs are deflated (zlib level 6) and written as *base-128 text* (:func:`b128encode`): 7 bits per byte of UTF-8,
8/7 of the bytes against base64's 4/3 and base85's 5/4, the densest a UTF-8 page allows (a multi-byte character
carries fewer bits per byte than ASCII). The page must stay valid UTF-8 (tools read it as text), so raw bytes are
not an option. The codes are neither filtered nor requantised: a delta along time makes deflate ~9% *worse* on
activation codes, and gates at 7 bits would save 7-10% of a page for values that no longer decode exactly
(``benchmarks/RESULTS.md``, "Report size"), so the page decodes exactly the bytes :func:`display_codes` made.
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from lstm_interp.tracing.quantities import display_codes

__all__ = ["Blob", "b128decode", "b128encode", "deflate", "display_codes", "pack", "top_predictions", "unpack"]

# A deflated blob is kept only when it saves at least this fraction; incompressible data stays raw so that the
# page need not inflate it.
_MIN_SAVING = 0.1
# zlib level 6 (its default): on 8-bit activation codes it is 2-5% smaller than level 1 at 2-4x the time (~1 s for
# a 15 MB page's data); level 9 gains nothing more (benchmarks/RESULTS.md, "Report size").
_ZLIB_LEVEL = 6
# The three 7-bit values that cannot stand for themselves inside a <script> of a UTF-8 page: the HTML parser turns
# NUL into U+FFFD and CR into LF, and "<" could start "</script". Each is sent as one 2-byte character together
# with the next 7-bit group (the base-122 trick), so they cost nothing extra.
_ILLEGAL = (0x00, 0x0D, 0x3C)
_PAIR_BASE = 0x100  # pairs are U+0100..U+027F: 2-byte UTF-8, printable Latin letters, never controls


class Blob(NamedTuple):
    """Bytes ready to embed: their base-128 text, whether they are deflated (zlib format), and both sizes."""

    text: str
    deflated: bool
    raw_size: int
    size: int  # bytes that ``text`` stands for (deflated or not): what the page decodes it to


def top_predictions(log_probs: Tensor, k: int) -> tuple[bytes, bytes]:
    """(T, V) log-probabilities -> the top-``k`` character ids (little-endian uint16) and probabilities (uint8/255).

    Both are (T, k) row-major, best first; probabilities are quantised to 1/255, enough for a tooltip.
    """
    values, ids = torch.nan_to_num(log_probs.detach().to("cpu", torch.float32), nan=-1e9).topk(k, dim=-1)
    probs = (values.exp() * 255).round().clamp(0, 255).to(torch.uint8)
    return ids.numpy().astype("<u2").tobytes(), probs.numpy().tobytes()


def deflate(data: bytes) -> bytes:
    """``data`` in zlib format at the report's level."""
    return zlib.compress(data, _ZLIB_LEVEL)


def pack(data: bytes) -> Blob:
    """Base-128 text of ``data``, deflated first when that saves at least ``_MIN_SAVING``."""
    packed = deflate(data)
    deflated = len(packed) <= (1 - _MIN_SAVING) * len(data)
    body = packed if deflated else data
    return Blob(b128encode(body), deflated, len(data), len(body))


def unpack(blob: Blob) -> bytes:
    """The bytes :func:`pack` was given (the page does the same in ``decodeBlob`` with ``DecompressionStream``)."""
    data = b128decode(blob.text, blob.size)
    return zlib.decompress(data) if blob.deflated else data


def b128encode(data: bytes) -> str:
    """``data`` as text safe inside a ``<script>`` of a UTF-8 page, ``ceil(8n/7)`` UTF-8 bytes (+1 at most).

    The bits, most significant first, are cut into 7-bit groups (the last padded with zeros); each group is one
    ASCII character, except a group in ``_ILLEGAL``, which is sent with the group after it as the single character
    ``U+0100 + (index << 7 | next)``. Decoding needs the byte count, as the padding is ambiguous.
    """
    n = len(data)
    if n == 0:
        return ""
    # 7 bytes = 56 bits = 8 groups: read whole 7-byte words as big-endian integers and cut each into 8 groups.
    m = -(-n // 7)
    padded = np.zeros(m * 7, np.uint8)
    padded[:n] = np.frombuffer(data, np.uint8)
    words = np.zeros((m, 8), np.uint8)
    words[:, 1:] = padded.reshape(m, 7)
    big = words.view(">u8").reshape(-1)
    shifts = np.arange(49, -1, -7, dtype=np.uint64)
    groups = ((big[:, None] >> shifts) & np.uint64(0x7F)).astype(np.uint32).reshape(-1)[: -(-8 * n // 7)]
    # Left to right, an illegal group leads a pair unless the previous pair took it as its partner: in a run of
    # consecutive illegal groups the 1st, 3rd, 5th... lead.
    illegal = np.flatnonzero((groups == _ILLEGAL[0]) | (groups == _ILLEGAL[1]) | (groups == _ILLEGAL[2]))
    if len(illegal):
        starts = np.r_[True, np.diff(illegal) != 1]
        first = np.flatnonzero(starts)
        offset = np.arange(len(illegal)) - np.repeat(first, np.diff(np.r_[first, len(illegal)]))
        at = illegal[offset % 2 == 0]
        if at[-1] == len(groups) - 1:
            groups = np.append(groups, np.uint32(0))  # a pair needs a group after it: padding the decoder cuts off
        index = np.searchsorted(np.asarray(_ILLEGAL, np.uint32), groups[at]).astype(np.uint32)
        groups[at] = _PAIR_BASE + (index << 7 | groups[at + 1])
        keep = np.ones(len(groups), bool)
        keep[at + 1] = False
        groups = groups[keep]
    return groups.astype("<u4").tobytes().decode("utf-32-le")


def b128decode(text: str, size: int) -> bytes:
    """The ``size`` bytes that :func:`b128encode` turned into ``text`` (the page's ``fromBase128`` in JavaScript)."""
    out = bytearray()
    acc = bits = 0
    for ch in text:
        c = ord(ch)
        if c < 0x80:
            acc, bits = acc << 7 | c, bits + 7
        else:
            v = c - _PAIR_BASE
            acc, bits = acc << 14 | _ILLEGAL[v >> 7] << 7 | (v & 0x7F), bits + 14
        while bits >= 8:
            bits -= 8
            out.append(acc >> bits & 0xFF)
        acc &= (1 << bits) - 1
    return bytes(out[:size])
