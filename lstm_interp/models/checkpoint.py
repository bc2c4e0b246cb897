"""Read the :class:`CharLSTM` out of a Lightning checkpoint (``.ckpt``) of a :class:`CharLSTMModule`, without Lightning.

A checkpoint written by Lightning for a :class:`~lstm_interp.CharLSTMModule` is a dict holding, among the trainer's
state, ``hyper_parameters`` (the module's ``__init__`` arguments: ``vocab``, ``cell``, ``num_layers``,
``hidden_size``, ``embedding_size``, ``dropout``, ...) and ``state_dict`` (the module's tensors; the network's are
prefixed ``network.``). That is all a :class:`CharLSTM` needs, so :func:`load_checkpoint` builds one from them with
:func:`network_from_hparams` (the same function the module builds its network with) and plain ``torch.load``:
``lstm-interp sample run.ckpt`` does not pay for importing Lightning.

The file is read with ``torch.load(weights_only=True)``: only tensors and plain values are accepted, so nothing in a
checkpoint from elsewhere can run code. :func:`read_checkpoint` is the one place it is opened; ``lstm-interp fit
--ckpt_path`` uses it too, to compare the checkpoint with the command line before anything is built, and every way a
file can fail to be a checkpoint (text, random bytes, cut short, pickled objects) gets a message naming the file.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Mapping
from typing import Any

import torch

from lstm_interp.config import CharLSTMConfig, ConfigError
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.vocab import CharVocab, VocabularyError

# The hyperparameters of CharLSTMModule that shape its network, in CharLSTMConfig's order.
NETWORK_HPARAMS = ("cell", "num_layers", "hidden_size", "embedding_size", "dropout")
# The prefix of the network's entries in the module's state dict (the attribute `CharLSTMModule.network`).
NETWORK_PREFIX = "network."
# The first bytes of what torch.save writes (a zip archive), and of its legacy format (a pickle, protocol 2 or more).
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_MAGIC = b"\x80"


def network_from_hparams(hparams: Mapping[str, Any], vocab: str | CharVocab | None = None) -> CharLSTM:
    """A freshly initialised :class:`CharLSTM` shaped by the hyperparameters of a :class:`CharLSTMModule`.

    Args:
        hparams: the module's hyperparameters (``module.hparams``, or a checkpoint's ``hyper_parameters``); the keys
            ``cell``, ``num_layers``, ``hidden_size``, ``embedding_size``, ``dropout`` are read, and ``vocab``
            unless given.
        vocab: the characters; default ``hparams["vocab"]``.

    Raises:
        ConfigError: if a key is missing, or a value is out of range (the message names it).
        VocabularyError: if there is no vocabulary, or it is malformed.

    Example::

        >>> network_from_hparams({"vocab": "ab\\n", "cell": "gru", "num_layers": 1, "hidden_size": 8,
        ...                       "embedding_size": 4, "dropout": 0.0}).config.cell
        'gru'
    """
    missing = [key for key in NETWORK_HPARAMS if key not in hparams]
    if missing:
        raise ConfigError(
            f"hyperparameters lack {missing} (expected those of a CharLSTMModule: {list(NETWORK_HPARAMS)})"
        )
    vocab = hparams.get("vocab") if vocab is None else vocab
    if vocab is None:
        raise VocabularyError("hyperparameters have no vocabulary (`vocab` is None), so no network can be built")
    vocab = vocab if isinstance(vocab, CharVocab) else CharVocab(vocab)
    config = CharLSTMConfig(vocab_size=len(vocab), **{key: hparams[key] for key in NETWORK_HPARAMS})
    return CharLSTM(config, vocab)


def read_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The dict of a Lightning checkpoint of a :class:`CharLSTMModule`, read with ``weights_only=True``.

    The one place a checkpoint file is opened: :func:`load_checkpoint` builds a network from what it returns, and
    ``lstm-interp fit|validate|test --ckpt_path`` checks it against the command line before anything is built.

    Args:
        path: the ``.ckpt`` file.
        map_location: the device to load the tensors onto.

    Returns:
        The checkpoint as Lightning wrote it; it has a ``hyper_parameters`` and a ``state_dict`` mapping, and
        usually ``global_step``, ``epoch`` and ``datamodule_hyper_parameters``.

    Raises:
        FileNotFoundError: if ``path`` is not a file.
        ValueError: if the file is not a PyTorch checkpoint (a text file, random bytes, an empty file), is truncated,
            or holds objects other than tensors and plain values; or if it has no ``hyper_parameters`` or no
            ``state_dict``. Every message names the file and says which of these it is.

    Example::

        >>> read_checkpoint("lightning_logs/version_0/checkpoints/last.ckpt")["global_step"]  # doctest: +SKIP
        5000
    """
    name = repr(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file {name} does not exist")
    with open(path, "rb"):  # a file that cannot be read at all (permissions, ...) says so in its own words
        pass
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        # On bytes that are not a checkpoint torch fails in many ways (UnpicklingError, EOFError, KeyError, an
        # OSError or RuntimeError from the zip reader, ...). Its own message is advice about `weights_only=False`,
        # which would not help with a text file or a truncated download, and is unsafe for a file from elsewhere.
        raise ValueError(
            f"{name} is not a PyTorch checkpoint, is truncated, or holds objects other than tensors and plain "
            f"values (checkpoints are loaded with weights_only=True): {_load_failure(path, err)}"
        ) from err
    _module_parts(checkpoint, name)
    return checkpoint


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> CharLSTM:
    """The trained :class:`CharLSTM` inside a Lightning checkpoint of a :class:`CharLSTMModule`, in eval mode.

    Args:
        path: the ``.ckpt`` file (``ModelCheckpoint``'s, or ``trainer.save_checkpoint``'s).
        map_location: the device to load the weights onto.

    Raises:
        FileNotFoundError: if ``path`` is not a file.
        ValueError: if the file is not a PyTorch checkpoint, is truncated, or holds objects other than tensors and
            plain values; if it is not a checkpoint of a ``CharLSTMModule``; or if its hyperparameters hold no
            vocabulary. Every message names the file.

    Example::

        >>> model = load_checkpoint("lstm_interp_demo/checkpoints/last.ckpt")  # doctest: +SKIP
        >>> model.generate("The ", 50, seed=0)  # doctest: +SKIP
    """
    name = repr(os.fspath(path))
    checkpoint = read_checkpoint(path, map_location=map_location)
    hparams, state = checkpoint["hyper_parameters"], checkpoint["state_dict"]
    if hparams.get("vocab") is None:
        raise ValueError(f"checkpoint {name} has no vocabulary in its hyperparameters, so no network")
    try:
        network = network_from_hparams(hparams)
    except ValueError as err:  # ConfigError, VocabularyError: a checkpoint of another version, or edited
        raise ValueError(f"{name} is not a checkpoint of a CharLSTMModule: {_gist(err)}") from err
    weights = {
        key.removeprefix(NETWORK_PREFIX): value for key, value in state.items() if key.startswith(NETWORK_PREFIX)
    }
    try:
        network.load_state_dict(weights, strict=True)
    except RuntimeError as err:  # "Error(s) in loading state_dict ...:" then the first mismatch
        raise ValueError(f"{name} is not a checkpoint of a CharLSTMModule: {_gist(err, lines=2)}") from err
    return network.to(map_location).eval()


def _load_failure(path: str | os.PathLike, err: BaseException) -> str:
    """Why ``torch.load`` failed on ``path``, in words: torch's own message ("101", "[Errno 22] Invalid argument")
    rarely says whether the file is text, cut short or something else."""
    with open(path, "rb") as file:
        head = file.read(64)
    if not head:
        return "the file is empty"
    if head.startswith(ZIP_MAGIC) and not zipfile.is_zipfile(path):
        # torch.save writes a zip archive, whose directory is at its end: a copy or download cut short loses it.
        return (
            f"it starts like a checkpoint (a zip archive) but its end is missing, so it is truncated or damaged "
            f"({os.path.getsize(path)} bytes)"
        )
    if not head.startswith((ZIP_MAGIC, PICKLE_MAGIC)):  # neither today's format nor the legacy pickle one
        if all(32 <= byte < 127 or byte in b"\t\n\r" for byte in head):
            return f"it is a text file (it starts with {head[:40].decode('ascii')!r}), not a checkpoint"
        return f"it starts with the bytes {head[:8]!r}, not those of a checkpoint (a zip archive, {ZIP_MAGIC!r})"
    message = str(err)
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", message)
    if refused:
        return f"it holds a {refused[1]}, which a weights_only load refuses"
    _, found, reason = message.partition("WeightsUnpickler error:")
    return _gist(ValueError(reason)) if found and reason.strip() else _gist(err)


def _module_parts(checkpoint: Any, name: str) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """``(hyper_parameters, state_dict)`` of a Lightning checkpoint, or a ValueError naming what is missing."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(
            f"{name} is not a checkpoint of a CharLSTMModule: it holds a {type(checkpoint).__name__}, "
            "expected a Lightning checkpoint (a dict with 'hyper_parameters' and 'state_dict')"
        )
    missing = [key for key in ("hyper_parameters", "state_dict") if not isinstance(checkpoint.get(key), Mapping)]
    if missing:
        raise ValueError(
            f"{name} is not a checkpoint of a CharLSTMModule: it has no {' or '.join(repr(k) for k in missing)} "
            f"(keys: {sorted(map(str, checkpoint))[:8]})"
        )
    return checkpoint["hyper_parameters"], checkpoint["state_dict"]


def _gist(err: BaseException, *, lines: int = 1) -> str:
    """The first ``lines`` non-empty lines of an error's message, on one line (torch's run to many lines)."""
    gist = " ".join([line.strip() for line in str(err).splitlines() if line.strip()][:lines]) or type(err).__name__
    return gist if len(gist) <= 300 else gist[:299] + "…"
