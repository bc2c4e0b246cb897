"""The character-level recurrent network: embedding -> stacked LSTM/GRU/RNN layers -> linear head.

The network is a plain ``nn.Module`` that knows nothing about training; :class:`CharLSTMModule` wraps it for
Lightning. It saves and loads itself with huggingface_hub's :class:`PyTorchModelHubMixin` conventions:
``config.json``, ``vocab.json`` and ``model.safetensors`` are the whole saved model.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Union

import torch
from huggingface_hub import HfApi, PyTorchModelHubMixin, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from lstm_interp._io import atomic_path
from lstm_interp.config import CharLSTMConfig, ConfigError
from lstm_interp.vocab import CharVocab, VocabularyError

CONFIG_NAME = "config.json"
VOCAB_NAME = "vocab.json"
WEIGHTS_NAME = "model.safetensors"

# One entry per layer: (h, c) for an LSTM, h for a GRU or RNN; each tensor is (1, B, H).
LayerState = Union[tuple[Tensor, Tensor], Tensor]  # noqa: UP007 (a runtime alias: `|` needs Python 3.10 types)
State = list[LayerState]

_RNN_CLASSES: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class RepoUnavailableError(FileNotFoundError):
    """A Hub repo (or revision) that does not exist or is not accessible, or a Hub that cannot be reached while the
    file is not cached. Unlike a file missing from a repo that exists, this is what a fallback may recover from."""


class CharLSTM(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="lstm_interp",
    tags=["char-rnn", "lstm", "interpretability", "character-level"],
    paper_url="https://arxiv.org/abs/1506.02078",
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
            x, layer_state = layer(x, None if state is None else state[i])  # (B, T, H)
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
    ) -> str:
        """Sample ``length`` characters after ``prompt``.

        Args:
            prompt: text to condition on (must be non-empty and inside the vocabulary).
            length: number of characters to sample.
            temperature: softmax temperature; lower is more conservative, ``0`` takes the most likely character.
            top_k: if set, sample only among the ``top_k`` most likely characters.
            seed: seed for a private random generator, so that sampling is reproducible and leaves the global
                RNG untouched.
            include_prompt: return ``prompt + sample`` (default) or the sample alone.

        Raises:
            VocabularyError: if the prompt has characters outside the vocabulary.
            ValueError: for an empty prompt, a negative length or temperature, or ``top_k`` < 1.
        """
        vocab = self._require_vocab()
        if not prompt:
            raise ValueError("`prompt` must be non-empty (the model needs a first character), got ''")
        if length < 0:
            raise ValueError(f"`length` must be >= 0, got {length!r}")
        if not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"`temperature` must be a finite number >= 0, got {temperature!r}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"`top_k` must be >= 1 or None, got {top_k!r}")
        tokens = vocab.encode(prompt).to(self.device)[None]  # (1, T)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, ()).item()))
        was_training = self.training
        self.eval()
        try:
            logits, state = self(tokens)
            out: list[int] = []
            for _ in range(length):
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
                out.append(next_id)
                logits, state = self(torch.tensor([[next_id]], device=self.device), state)
        finally:
            self.train(was_training)
        sample = vocab.decode(out)
        return prompt + sample if include_prompt else sample

    @torch.no_grad()
    def predict_next(self, text: str, k: int = 5) -> list[list[tuple[str, float]]]:
        """The ``k`` most likely next characters, with probabilities, after every position of ``text``.

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

    # ------------------------------------------------------------------ save / load
    def _save_pretrained(self, save_directory: Path) -> None:
        """Write ``model.safetensors``, ``config.json`` and ``vocab.json``, each atomically."""
        vocab = self._require_vocab()
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in self.state_dict().items()}
        with atomic_path(save_directory / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "library": "lstm_interp"})
        vocab.save(save_directory / VOCAB_NAME)
        self.config.save(save_directory / CONFIG_NAME)

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        map_location: str | torch.device = "cpu",
    ) -> CharLSTM:
        """Load a model saved with :meth:`save_pretrained`, from a local folder or a Hub repo id.

        Weights stored in another floating dtype (float16, say) are cast to the model's float32 parameters.

        Raises:
            RepoUnavailableError: (a ``FileNotFoundError``) if the Hub repo or revision does not exist or is not
                accessible, or the Hub cannot be reached (or ``HF_HUB_OFFLINE`` is set) and the file is not cached.
            FileNotFoundError: if the folder, or one of the three files in the folder or repo, is missing (the
                message names the file and the folder or repo).
            ConfigError | VocabularyError: if ``config.json`` / ``vocab.json`` is malformed or from another version.
            ValueError: if ``model.safetensors`` is truncated, corrupted, or does not fit the config.
        """
        source = str(pretrained_model_name_or_path)
        files = {
            name: _resolve_file(source, name, revision, cache_dir, force_download, local_files_only, token)
            for name in (CONFIG_NAME, VOCAB_NAME, WEIGHTS_NAME)
        }
        from_hub = not os.path.isdir(source)
        try:
            config = CharLSTMConfig.load(files[CONFIG_NAME])
            vocab = CharVocab.load(files[VOCAB_NAME])
        except (ConfigError, VocabularyError) as err:
            if not from_hub:  # the message already names the file in the folder
                raise
            raise type(err)(f"Hub repo {source!r} (revision {revision or 'main'!r}): {err}") from err
        model = cls(config, vocab)
        weights = repr(str(files[WEIGHTS_NAME]))
        if from_hub:
            weights = f"{WEIGHTS_NAME} of Hub repo {source!r} (revision {revision or 'main'!r}, cached at {weights})"
        try:
            state = load_file(str(files[WEIGHTS_NAME]), device=str(map_location))
        except (SafetensorError, OSError) as err:
            raise ValueError(f"weights file {weights} is corrupted or truncated: {err}") from err
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(f"weights file {weights} does not match {CONFIG_NAME}: {err}") from err
        model.to(map_location)
        model.eval()
        return model


def _resolve_file(
    source: str,
    filename: str,
    revision: str | None,
    cache_dir: str | os.PathLike | None,
    force_download: bool,
    local_files_only: bool,
    token: str | bool | None,
) -> Path:
    """A local path for ``filename``: inside the folder ``source``, or downloaded from the Hub repo ``source``."""
    if os.path.isdir(source):
        path = Path(source) / filename
        if not path.is_file():
            raise FileNotFoundError(f"{filename} is missing from the model folder {source!r}")
        return path
    if os.path.sep in source and not os.path.exists(source) and source.count("/") != 1:
        raise FileNotFoundError(f"model folder {source!r} does not exist")
    try:
        return Path(
            hf_hub_download(
                repo_id=source,
                filename=filename,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                local_files_only=local_files_only,
                token=token,
            )
        )
    except LocalEntryNotFoundError as err:  # first: it is also an EntryNotFoundError
        raise RepoUnavailableError(
            f"{filename} of Hub repo {source!r} is not cached and the Hub cannot be reached "
            f"(offline, or HF_HUB_OFFLINE set?): {_first_line(err)}"
        ) from err
    except EntryNotFoundError as err:
        raise FileNotFoundError(f"{filename} is missing from the Hub repo {source!r}: {_first_line(err)}") from err
    except GatedRepoError as err:  # first: it is also a RepositoryNotFoundError
        raise RepoUnavailableError(
            f"Hub repo {source!r} is gated: accept its conditions on the Hub and pass a token ({filename})"
        ) from err
    except RevisionNotFoundError as err:
        raise RepoUnavailableError(f"revision {revision!r} not found in Hub repo {source!r} ({filename})") from err
    except RepositoryNotFoundError as err:
        # Some Hub-compatible servers (olah) answer a missing *file* with RepoNotFound: ask about the repo itself.
        found = _repo_status(source, revision, token)
        if found == "file missing":
            raise FileNotFoundError(
                f"{filename} is missing from the Hub repo {source!r} (revision {revision or 'main'!r})"
            ) from err
        if found == "revision missing":
            raise RepoUnavailableError(f"revision {revision!r} not found in Hub repo {source!r} ({filename})") from err
        raise RepoUnavailableError(
            f"Hub repo {source!r} not found, or private and no valid token given (reading {filename}): "
            f"{_first_line(err)}"
        ) from err


def _repo_status(source: str, revision: str | None, token: str | bool | None) -> str:
    """After a RepoNotFound answer: ``"file missing"``, ``"revision missing"`` or ``"repo missing"``."""
    api = HfApi()
    for probe, found in ((revision or "main", "file missing"), ("main", "revision missing")):
        if found == "revision missing" and revision in (None, "main"):
            break
        try:
            api.repo_info(source, revision=probe, token=token)
            return found
        except Exception:  # a best-effort probe: any failure counts as "not found"
            continue
    return "repo missing"


def _first_line(err: BaseException) -> str:
    """The gist of a huggingface_hub error: its first two non-empty lines ("404 Client Error. Entry Not Found ...")."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[:2]) or type(err).__name__
