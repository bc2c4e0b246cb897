"""The character-level recurrent network: embedding -> stacked LSTM/GRU/RNN layers -> linear head.

The network is a plain ``nn.Module`` that knows nothing about training (:class:`CharLSTMModule` wraps it for
Lightning), interventions (:func:`lstm_interp.interventions.generate_with_interventions` samples through
:meth:`CharLSTM.generate`'s ``step``) or the Hub: it saves and opens folders by huggingface_hub's conventions
through :class:`~lstm_interp.models.model_folder.ModelFolderMixin`, and :mod:`lstm_interp.hub` imports it, never
the reverse. This module is the layers, forward, state and sampling.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator
from typing import Any, Union

import torch
from torch import Tensor, nn

from lstm_interp.config import CharLSTMConfig, ConfigError
from lstm_interp.models.model_files import LIBRARY_NAME, MODEL_TAGS, PAPER_URL
from lstm_interp.models.model_folder import ModelFolderMixin
from lstm_interp.models.recurrent_precision import run_recurrent
from lstm_interp.vocab import CharVocab, VocabularyError

# One entry per layer: (h, c) for an LSTM, h for a GRU or RNN; each tensor is (1, B, H).
LayerState = Union[tuple[Tensor, Tensor], Tensor]  # noqa: UP007 (a runtime alias: `|` needs Python 3.10 types)
State = list[LayerState]
# What generate_stream runs on each piece of input: (tokens (1, L), state, position of tokens[0, 0]) -> (logits, state).
StepFunction = Callable[[Tensor, Union[State, None], int], tuple[Tensor, State]]  # noqa: UP007 (runtime alias)

_RNN_CLASSES: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class CharLSTM(
    nn.Module,
    ModelFolderMixin,
    library_name=LIBRARY_NAME,
    tags=list(MODEL_TAGS),  # a copy: the mixin appends its own tag to the list it is given
    paper_url=PAPER_URL,
):
    """Character-level LSTM (or GRU / vanilla RNN) with a vocabulary attached.

    Each layer is its own single-layer ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (the fused kernels), so that its
    module path ``layers.<i>`` names its activations in a :func:`~lstm_interp.trace`.

    Args:
        config: sizes and cell type.
        vocab: the characters of the model (a :class:`CharVocab` or a string); needed for text in/out.

    Raises:
        ConfigError: if ``config`` is invalid.
        VocabularyError: if the vocabulary size differs from ``config.vocab_size``.

    Example::

        >>> vocab = CharVocab.from_text("hello world")
        >>> model = CharLSTM(CharLSTMConfig(vocab_size=len(vocab), hidden_size=16), vocab)
        >>> logits, state = model(vocab.encode("hello")[None])
        >>> logits.shape
        torch.Size([1, 5, 8])
    """

    def __init__(self, config: CharLSTMConfig, vocab: CharVocab | str | None = None) -> None:
        super().__init__()
        if isinstance(config, dict):  # e.g. from a parsed config.json
            config = CharLSTMConfig.from_dict(config)
        if not isinstance(config, CharLSTMConfig):
            raise ConfigError(f"`config` must be a CharLSTMConfig, got {type(config).__name__}")
        if isinstance(vocab, str):
            vocab = CharVocab(vocab)
        if vocab is not None and len(vocab) != config.vocab_size:
            raise VocabularyError(f"vocabulary has {len(vocab)} characters but config.vocab_size={config.vocab_size}")
        self.config = config
        self.vocab = vocab
        # Where the weights came from, for the manifests of what is made from them (set by the loaders).
        self.source: dict[str, Any] | None = None
        rnn_cls = _RNN_CLASSES[config.cell]
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size)
        self.layers = nn.ModuleList(
            rnn_cls(config.embedding_size if i == 0 else config.hidden_size, config.hidden_size, batch_first=True)
            for i in range(config.num_layers)
        )
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.head = nn.Linear(config.hidden_size, config.vocab_size)

    # ------------------------------------------------------------------ forward
    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Run the network.

        Args:
            tokens: character ids, (B, T).
            state: per-layer recurrent state from a previous call (carried across chunks), or ``None`` for zeros.

        Returns:
            ``(logits, state)``: logits over the next character, (B, T, V), and the new per-layer state.
        """
        if tokens.dim() != 2:
            raise ValueError(f"`tokens` must be (batch, time), got shape {tuple(tokens.shape)}")
        if state is not None and len(state) != len(self.layers):
            raise ValueError(f"`state` has {len(state)} layers, the model has {len(self.layers)}")
        x = self.embedding(tokens)  # (B, T, E)
        new_state: State = []
        for i, layer in enumerate(self.layers):
            x, layer_state = run_recurrent(layer, x, None if state is None else state[i])  # (B, T, H)
            x = self.dropout(x)
            new_state.append(layer_state)
        return self.head(x), new_state  # (B, T, V)

    @staticmethod
    def detach_state(state: State) -> State:
        """Cut the graph through a carried state (truncated backpropagation through time)."""
        return [tuple(t.detach() for t in s) if isinstance(s, tuple) else s.detach() for s in state]  # type: ignore[misc]

    # ------------------------------------------------------------------ text in, text out
    def _require_vocab(self) -> CharVocab:
        if self.vocab is None:
            raise VocabularyError("this model has no vocabulary; pass `vocab=` when building it")
        return self.vocab

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    @torch.no_grad()
    def generate(
        self,
        prompt: str = "\n",
        length: int = 200,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        include_prompt: bool = True,
        step: StepFunction | None = None,
    ) -> str:
        """Sample ``length`` characters after ``prompt``: the characters of :meth:`generate_stream`, joined.

        Args:
            prompt: text to condition on (must be non-empty and inside the vocabulary).
            length: number of characters to sample.
            temperature: softmax temperature; lower is more conservative, ``0`` takes the most likely character.
            top_k: if set, sample only among the ``top_k`` most likely characters.
            seed: seed for a private random generator, so that sampling is reproducible and leaves the global
                RNG untouched.
            include_prompt: return ``prompt + sample`` (default) or the sample alone.
            step: what runs the network on each piece of input in place of :meth:`forward`; see
                :meth:`generate_stream` (:func:`lstm_interp.interventions.generate_with_interventions` passes one).

        Raises:
            VocabularyError: if the prompt has characters outside the vocabulary.
            ValueError: for an empty prompt, a negative length or temperature, or ``top_k`` < 1.
            TypeError: a ``prompt``, ``length``, ``temperature``, ``top_k``, ``seed`` or ``step`` of the wrong type
                (the message names it).
        """
        stream = self.generate_stream(prompt, length, temperature=temperature, top_k=top_k, seed=seed, step=step)
        sample = "".join(stream)
        return prompt + sample if include_prompt else sample

    def generate_stream(
        self,
        prompt: str = "\n",
        length: int = 200,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        step: StepFunction | None = None,
    ) -> Iterator[str]:
        """Sample ``length`` characters after ``prompt``, yielding each one (not the prompt) as soon as it is drawn.

        The arguments are checked here, before the iterator is returned, so that a bad one raises at the call and
        not at the first ``next()``. The same arguments and seed give the same characters as :meth:`generate`.

        While the iterator runs (from its first ``next()``) the model is in eval mode; its train/eval mode is put
        back when the iterator is exhausted, closed with ``close()``, or garbage-collected (which a ``break`` out of
        a ``for`` loop over a temporary iterator does at once). Gradients are off during each step only, so the
        code that consumes the characters keeps its own grad mode.

        Args:
            prompt: text to condition on (must be non-empty and inside the vocabulary).
            length: number of characters to sample.
            temperature: softmax temperature; lower is more conservative, ``0`` takes the most likely character.
            top_k: if set, sample only among the ``top_k`` most likely characters.
            seed: seed for a private random generator, so that sampling is reproducible and leaves the global
                RNG untouched (without it, the seed is drawn from the global RNG at the call).
            step: ``step(tokens, state, position) -> (logits, state)``, run in place of :meth:`forward` on each
                piece of input (the prompt, then one character at a time), ``position`` being the step of
                ``tokens[0, 0]`` counted from the prompt's first character: the hook through which
                :func:`lstm_interp.interventions.generate_with_interventions` samples with units ablated, clamped,
                scaled or patched (the network knows nothing of interventions). Default: :meth:`forward`.

        Returns:
            An iterator over the ``length`` sampled characters, one string of one character each.

        Raises:
            VocabularyError: if the prompt has characters outside the vocabulary.
            ValueError: for an empty prompt, a negative length or temperature, or ``top_k`` < 1.
            TypeError: a ``prompt``, ``length``, ``temperature``, ``top_k``, ``seed`` or ``step`` of the wrong type
                (the message names it).

        Example::

            >>> model = CharLSTM(CharLSTMConfig(vocab_size=3, hidden_size=8), "ab\\n")
            >>> for char in model.generate_stream("a", 1000, seed=0):
            ...     print(char, end="", flush=True)  # the text appears as it is sampled
        """
        vocab = self._require_vocab()
        if not isinstance(prompt, str):
            raise TypeError(f"`prompt` must be a non-empty string, got {type(prompt).__name__} {prompt!r:.100}")
        if not prompt:
            raise ValueError("`prompt` must be non-empty (the model needs a first character), got ''")
        # Checked before any arithmetic, so that a string temperature says which parameter, not "'<' not supported".
        if isinstance(length, bool) or not isinstance(length, numbers.Integral):
            raise TypeError(f"`length` must be an integer, got {type(length).__name__} {length!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
            raise TypeError(f"`temperature` must be a number, got {type(temperature).__name__} {temperature!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral)):
            raise TypeError(f"`top_k` must be an integer or None, got {type(top_k).__name__} {top_k!r}")
        if length < 0:
            raise ValueError(f"`length` must be >= 0, got {length!r}")
        if not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"`temperature` must be a finite number >= 0, got {temperature!r}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"`top_k` must be >= 1 or None, got {top_k!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"`seed` must be an integer or None, got {type(seed).__name__} {seed!r}")
        try:
            tokens = vocab.encode(prompt).to(self.device)[None]  # (1, T)
        except VocabularyError as err:
            raise err.with_hint("Use only characters the model knows in `prompt`.") from None  # no on_unknown here
        if step is not None and not callable(step):
            raise TypeError(f"`step` must be a function (tokens, state, position) -> (logits, state), got {step!r:.80}")
        generator = torch.Generator(device=self.device)
        forward: StepFunction = step if step is not None else self._forward_at
        generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, ()).item()))
        return self._sample_chars(tokens, int(length), temperature, top_k, generator, forward)

    def _forward_at(self, tokens: Tensor, state: State | None, position: int) -> tuple[Tensor, State]:
        """``forward`` as a ``step`` of :meth:`generate_stream` (the position is for steps that act by step)."""
        return self(tokens, state)

    def _sample_chars(
        self,
        tokens: Tensor,
        length: int,
        temperature: float,
        top_k: int | None,
        generator: torch.Generator,
        forward: StepFunction,
    ) -> Iterator[str]:
        """The sampling loop of :meth:`generate_stream` (its arguments checked): one character per step."""
        chars = self._require_vocab().chars
        # The mode is switched inside the generator, not at the call: close() on a generator that never started does
        # not run its body, so a mode switched before the first next() could never be put back.
        was_training = self.training
        self.eval()
        try:
            # The prompt is the first step's input, each sampled character the next one's; no forward pass is run
            # after the last character, which nothing would read.
            inputs: Tensor = tokens  # (1, T), then (1, 1)
            state: State | None = None
            position = 0  # the step of inputs[0, 0]
            for _ in range(length):
                # Gradients are off per step, not across the yield: grad mode is thread-wide, and the consumer's
                # code between two characters must keep its own.
                with torch.no_grad():
                    logits, state = forward(inputs, state, position)
                    position += inputs.shape[1]
                    next_logits = logits[0, -1].float()  # (V,)
                    if temperature == 0:
                        next_id = int(next_logits.argmax())
                    else:
                        next_logits = next_logits / temperature
                        if top_k is not None and top_k < next_logits.numel():
                            kth = torch.topk(next_logits, top_k).values[-1]
                            next_logits = next_logits.masked_fill(next_logits < kth, float("-inf"))
                        probs = torch.softmax(next_logits, dim=-1)
                        next_id = int(torch.multinomial(probs, 1, generator=generator))
                yield chars[next_id]
                inputs = torch.tensor([[next_id]], device=self.device)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def predict_next(self, text: str, k: int = 5) -> list[list[tuple[str, float]]]:
        """The ``k`` most likely next characters, with probabilities, after every position of ``text``.

        (Under interventions: ``run_with_interventions(model, text, interventions)["log_probs"]``, from
        :mod:`lstm_interp.interventions`.)

        Returns:
            One list per character of ``text``: ``[(char, probability), ...]``, most likely first; entry ``t``
            predicts the character that follows ``text[: t + 1]``.
        """
        vocab = self._require_vocab()
        if not text:
            raise ValueError("`text` must be non-empty, got ''")
        if not 1 <= k <= len(vocab):
            raise ValueError(f"`k` must be between 1 and the vocabulary size {len(vocab)}, got {k!r}")
        was_training = self.training
        self.eval()
        try:
            logits, _ = self(vocab.encode(text).to(self.device)[None])
        finally:
            self.train(was_training)
        probs, ids = torch.softmax(logits[0].float(), dim=-1).topk(k, dim=-1)  # (T, k)
        chars = vocab.chars
        rows = zip(ids.tolist(), probs.tolist(), strict=True)
        return [[(chars[i], p) for i, p in zip(row_ids, row_probs, strict=True)] for row_ids, row_probs in rows]
