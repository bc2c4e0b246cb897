"""``ResumableTrace``: the trace of a text being edited, retraced only from the first changed character.

A reader typing in the live explorer changes a character or two between traces, yet tracing the whole text again
costs time in proportion to all of it (about a second at 5,000 characters on a 2-core CPU). A recurrent network's
state at step t depends only on the characters before it, so everything before the first changed character is
unchanged, and the run can resume from the state there.

To make the result *identical* to a full retrace, not merely close, the text is traced on a fixed grid of chunks of
``every`` characters counted from its start (:func:`~lstm_interp.trace`'s ``chunk_size``), and the state after each
chunk is kept as a checkpoint. An update resumes at the last checkpoint before the first changed character and
traces the rest with the same chunks: every chunk is then the same computation, on the same numbers, as in
``trace(model, text, chunk_size=every)``, so the two agree bit for bit (matrix products of another shape may round
the last bit differently, which is why the chunk holding the change is traced again from its start rather than from
the changed character). An appended character costs at most one chunk of steps; an edit in the middle costs the
characters after it.

Memory: the kept activations (``names_filter``) for the text and an eighth more, grown by doubling, and one state
per chunk (for the 2x512 models, 8 KB each).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from lstm_interp.models.char_lstm import CharLSTM, State
from lstm_interp.tracing.trace import (
    NamesFilter,
    Trace,
    _width,
    available_names,
    encode_text,
    select_names,
    trace,
)
from lstm_interp.vocab import OnUnknown

DEFAULT_EVERY = 32


class ResumableTrace:
    """The trace of a text that changes between calls: :meth:`update` retraces from the first changed character.

    Args:
        model: the network (float32 computation, as :func:`~lstm_interp.trace`).
        names_filter: the activations to keep, as :func:`~lstm_interp.trace` takes them (``None``: all).
        every: characters per chunk, and so between checkpoints: an appended character retraces at most this many.

    Raises:
        TypeError: ``model`` is not a :class:`~lstm_interp.CharLSTM`.
        ValueError: ``every`` is not a positive integer, or ``names_filter`` matches no name.

    Example::

        >>> editing = ResumableTrace(model, names_filter=["layers.1.cell", "log_probs"])  # doctest: +SKIP
        >>> tr, start = editing.update("The cat sat")  # doctest: +SKIP
        >>> tr, start = editing.update("The cat sat on")  # doctest: +SKIP
        >>> start  # only the last chunk was traced again  # doctest: +SKIP
        0
    """

    def __init__(self, model: CharLSTM, *, names_filter: NamesFilter = None, every: int = DEFAULT_EVERY) -> None:
        if not isinstance(model, CharLSTM):
            raise TypeError(f"`model` must be a CharLSTM, got {type(model).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"`every` must be an integer >= 1 (characters per chunk), got {every!r}")
        cfg = model.config
        self.model = model
        self.names = select_names(names_filter, available_names(cfg.cell, cfg.num_layers))
        self.every = every
        self._tokens = torch.empty(0, dtype=torch.long)  # (T,) of the text last traced
        self._checkpoints: list[State] = []  # the state after chunk k, k = 0, 1, ... (whole chunks only)
        self._buffers: dict[str, Tensor] = {}  # name -> (capacity, W); rows [0, T) are the last trace's
        self._final_state: State | None = None

    def __len__(self) -> int:
        """The characters of the text last traced."""
        return len(self._tokens)

    def reset(self) -> None:
        """Forget the text: the next update traces from the start."""
        self._tokens = self._tokens[:0]
        self._checkpoints.clear()
        self._final_state = None

    def update(
        self, text: str | Tensor, *, on_unknown: OnUnknown = "error", check: Callable[[], None] | None = None
    ) -> tuple[Trace, int]:
        """Trace ``text``, reusing what is unchanged since the last update.

        Args:
            text: the whole new text (a string, or a 1-D tensor of ids).
            on_unknown: how to treat characters outside the vocabulary (see :meth:`CharVocab.encode`).
            check: called before each chunk traced; an exception it raises (a deadline's) stops the update, and the
                next one resumes from what is still valid.

        Returns:
            ``(trace, start)``: the trace of the whole text, identical to ``trace(model, text,
            chunk_size=every)``, and the first step traced again (the steps before it are the previous update's).
            The trace's tensors are views into buffers the next update writes over: clone what you keep.

        Raises:
            VocabularyError: characters the vocabulary lacks (``on_unknown="error"``).
            ValueError: an empty text.
        """
        tokens, text_str = encode_text(self.model, text, on_unknown)
        old = self._tokens
        common = min(len(old), len(tokens))
        differs = torch.nonzero(old[:common] != tokens[:common])
        same = int(differs[0, 0]) if len(differs) else common  # characters unchanged at the start
        if same == len(old) == len(tokens) and self._final_state is not None:  # the same text: nothing to trace
            return self._trace(tokens, text_str), len(tokens)
        whole = min(same // self.every, len(self._checkpoints))  # chunks to keep
        start = whole * self.every
        # What stays valid if the run below stops part way: the kept chunks, nothing after them.
        self._tokens, self._final_state = tokens[:start], None
        del self._checkpoints[whole:]
        state = self._checkpoints[-1] if whole else None
        if start == len(tokens):  # the text was cut back to a checkpoint
            self._tokens, self._final_state = tokens, state
            return self._trace(tokens, text_str), start

        def on_chunk(done: int, chunk_state: State) -> None:
            self._checkpoints.append([_copy_state(s) for s in chunk_state])
            if check is not None and start + done < len(tokens):
                check()

        if check is not None:
            check()
        part = trace(self.model, tokens[start:], names_filter=self.names, chunk_size=self.every, state=state,
                     on_chunk=on_chunk)  # fmt: skip
        if len(tokens) % self.every:  # the last chunk is partial: its state is not a checkpoint of a longer text
            self._checkpoints.pop()
        self._grow(len(tokens))
        for name in self.names:
            self._buffers[name][start : len(tokens)] = part[name]
        self._tokens, self._final_state = tokens, part.final_state
        return self._trace(tokens, text_str), start

    def _grow(self, length: int) -> None:
        """Buffers of at least ``length`` rows, the rows already there kept (doubling, so growth is amortised).

        A new buffer gets an eighth more rows than the text: growing copies the whole trace (a few milliseconds at
        5,000 characters), which would otherwise fall on the first character typed after a paste.
        """
        for name in self.names:
            buffer = self._buffers.get(name)
            if buffer is not None and len(buffer) >= length:
                continue
            capacity = max(length + length // 8, 2 * (0 if buffer is None else len(buffer)), 256)
            width = _width(name, self.model.config)
            grown = torch.empty(capacity, width, dtype=torch.float32)
            if buffer is not None:
                grown[: len(buffer)] = buffer
            self._buffers[name] = grown

    def _trace(self, tokens: Tensor, text: str | None) -> Trace:
        cfg = self.model.config
        vocab = self.model.vocab
        return Trace(
            {name: self._buffers[name][: len(tokens)] for name in self.names},
            text=text,
            tokens=tokens,
            cell=cfg.cell,
            num_layers=cfg.num_layers,
            final_state=self._final_state,
            chars=vocab.chars if vocab is not None else None,
        )


def _copy_state(state: Tensor | tuple[Tensor, ...]) -> Tensor | tuple[Tensor, ...]:
    """A layer's state, copied: the fused kernel's outputs are not reused, but a checkpoint must never change."""
    return tuple(t.clone() for t in state) if isinstance(state, tuple) else state.clone()
