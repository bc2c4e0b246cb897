"""Checks that a written figure is a real picture that shows something, for the tests of every module that draws."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.image import imread

from lstm_interp import CharLSTM, CharLSTMConfig, CharVocab


def assert_picture(path: Path, *, min_width: int = 200, min_height: int = 100, min_colours: int = 8) -> np.ndarray:
    """Assert that ``path`` is a PNG at least ``min_width`` x ``min_height`` pixels that is not blank.

    Not blank: at least ``min_colours`` distinct colours, and no single colour covers more than 98% of the image
    (a figure of white axes and a title only would fail both). Returns the (H, W, C) pixels.
    """
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4), f"{path} is not an RGB(A) image: {pixels.shape}"
    height, width = pixels.shape[:2]
    assert width >= min_width and height >= min_height, f"{path} is {width}x{height} pixels"
    rgb = (pixels[..., :3] * 255).round().astype(np.uint8).reshape(-1, 3)
    colours, counts = np.unique(rgb, axis=0, return_counts=True)
    assert len(colours) >= min_colours, f"{path} has only {len(colours)} colours: blank"
    assert counts.max() / counts.sum() < 0.98, f"{path} is {counts.max() / counts.sum():.1%} one colour: blank"
    return pixels


# ------------------------------------------------------------------------------------- a model that draws flat bands
PINNED_VOCAB = 'abcde \n"()'
SAT, SWITCH, QUOTE = 0, 1, 2  # layer-0 units of pinned_model
_ON, _OFF = 30.0, -30.0  # sigmoid(+-30) and tanh(+-30) are 1, 0 and -1 to float32 precision: exact switches
_GATE_ROW = {"input": 0, "forget": 1, "candidate": 2, "output": 3}  # PyTorch's row blocks: i, f, g, o


def pinned_text(chars: int, seed: int = 0) -> str:
    """Lines of 5-60 characters of ``PINNED_VOCAB`` with a short quote now and then (about 5% of the characters are
    inside quotes, so a quote cell is at one value 95% of the time: a sparse switch, not a flat band)."""
    rng = np.random.default_rng(seed)
    out: list[str] = []
    while len(out) < chars:
        line: list[str] = []
        for _ in range(int(rng.integers(5, 61))):
            r = rng.random()
            if r < 0.02 and len(line) > 1:
                line += ['"', *"abcde"[: int(rng.integers(1, 4))], '"']
            elif r < 0.25:
                line.append(" ")
            elif r < 0.28:
                line.append("()"[int(rng.integers(2))])
            else:
                line.append("abcde"[int(rng.integers(5))])
        out += [*line, "\n"]
    return "".join(out[:chars])


def pinned_model(*, switching: bool, hidden: int = 8, seed: int = 0) -> CharLSTM:
    """A 2-layer LSTM set by hand whose cell states are pinned at +-1, like a trained model's with sd of c = 90.

    The embedding is the identity, so an input weight on column ``k`` fires on character ``k`` alone, and every
    gate that matters has a pre-activation of +-30: an exact switch (as in ``tests/test_find_cells.py``).

    - ``SAT`` (layer 0) counts the characters since the last newline: ``c = position_in_line`` exactly, so r = 1,
      yet ``tanh(c)`` is above 0.96 from the second character of a line on: a flat blue band.
    - every other unit of both layers adds +-1 at every step, ``c = +-(t + 1)``: pinned at +-1 after two steps.
    - with ``switching``: ``SWITCH`` (layer 0) adds 0.035 per letter and 0.01 per other character since the last
      newline, so ``tanh(c)`` ramps from white to deep blue along each line, with r a little below SAT's 1; and
      ``QUOTE`` holds +1 inside quotes and -1 outside (``inside_quotes`` with AUC 1): a sparse switch.

    Output gates follow the characters (layer 0) or layer 0's h (layer 1), so the hidden states and output gates
    vary where the cells cannot.
    """
    vocab = CharVocab(PINNED_VOCAB)
    config = CharLSTMConfig(vocab_size=len(vocab), hidden_size=hidden, embedding_size=len(vocab), num_layers=2)
    torch.manual_seed(seed)
    model = CharLSTM(config, vocab).eval()
    layer0, layer1 = model.layers
    char = vocab.char_to_id
    letters = {c: 0.035 for c in "abcde"}
    # Spread evenly over the characters, so that the output gate (and h) differ from one character to the next.
    spread = np.linspace(-3.0, 3.0, len(vocab))[[3, 8, 1, 6, 0, 9, 4, 2, 7, 5]]
    output_weights = {char(c): float(w) for c, w in zip(PINNED_VOCAB, spread, strict=True)}

    def set_row(
        layer: torch.nn.LSTM, gate: str, unit: int, bias: float, weights: dict[int, float] | None = None
    ) -> None:
        row = _GATE_ROW[gate] * hidden + unit
        layer.weight_ih_l0[row] = 0.0
        layer.weight_hh_l0[row] = 0.0
        layer.bias_hh_l0[row] = 0.0
        layer.bias_ih_l0[row] = bias
        for column, weight in (weights or {}).items():
            layer.weight_ih_l0[row, column] = weight

    with torch.no_grad():
        model.embedding.weight.copy_(torch.eye(len(vocab)))
        for layer in (layer0, layer1):
            for unit in range(hidden):  # every unit: c = c + (+-1) at every step, pinned at +-1
                set_row(layer, "forget", unit, _ON)
                set_row(layer, "input", unit, _ON)
                set_row(layer, "candidate", unit, _ON if unit % 2 else _OFF)
        for unit in range(hidden):
            set_row(layer0, "output", unit, 0.0, output_weights)
        layer1.weight_hh_l0[3 * hidden : 4 * hidden] = 0.0
        layer1.weight_ih_l0[3 * hidden : 4 * hidden] = 3.0 * torch.randn(hidden, hidden)
        # SAT: reset to 0 on a newline (forget and input gates 0 there), else add 1.
        set_row(layer0, "forget", SAT, _ON, {char("\n"): -2 * _ON})
        set_row(layer0, "input", SAT, _ON, {char("\n"): -2 * _ON})
        set_row(layer0, "candidate", SAT, _ON)
        if switching:
            set_row(layer0, "forget", SWITCH, _ON, {char("\n"): -2 * _ON})
            set_row(layer0, "input", SWITCH, _ON, {char("\n"): -2 * _ON})
            steps = {char(c): math.atanh(letters.get(c, 0.01)) - math.atanh(0.01) for c in PINNED_VOCAB}
            set_row(layer0, "candidate", SWITCH, math.atanh(0.01), steps)
            # QUOTE: forget and take a new value on '"' only; the candidate reads its own sign back through h
            # (output gate 1, h = tanh(c) = +-0.76), so each quote flips it.
            set_row(layer0, "forget", QUOTE, _ON, {char('"'): -2 * _ON})
            set_row(layer0, "input", QUOTE, _OFF, {char('"'): -2 * _OFF})
            set_row(layer0, "candidate", QUOTE, _ON)
            set_row(layer0, "output", QUOTE, _ON)
            layer0.weight_hh_l0[2 * hidden + QUOTE, QUOTE] = -100.0
    return model
