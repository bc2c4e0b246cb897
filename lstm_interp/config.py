"""The one configuration dataclass of the network; ``config.json`` round-trips through it."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from lstm_interp._io import atomic_write_text, read_json_file

CellType = Literal["lstm", "gru", "rnn"]
CELL_TYPES: tuple[str, ...] = ("lstm", "gru", "rnn")
# Bumped when the saved layout changes in a way older code cannot read.
FORMAT_VERSION = 1


class ConfigError(ValueError):
    """A configuration value, or a ``config.json`` file, is invalid."""


@dataclass
class CharLSTMConfig:
    """Sizes and cell type of a :class:`~lstm_interp.CharLSTM`.

    Args:
        vocab_size: number of distinct characters (size of the embedding and of the output layer).
        cell: recurrent cell: ``"lstm"``, ``"gru"`` or ``"rnn"`` (tanh Elman RNN).
        num_layers: stacked recurrent layers.
        hidden_size: units per layer (``H``).
        embedding_size: size of the learned character embedding fed to layer 0.
        dropout: dropout on every layer's output (between layers and before the output layer), as in char-rnn.
        format_version: version of the saved layout; loading refuses versions this code does not know.

    Raises:
        ConfigError: for an unknown cell type, a non-positive size, or dropout outside [0, 1).

    Example::

        >>> config = CharLSTMConfig(vocab_size=65, hidden_size=256)
        >>> CharLSTMConfig.from_dict(config.to_dict()) == config
        True
    """

    vocab_size: int
    cell: CellType = "lstm"
    num_layers: int = 2
    hidden_size: int = 128
    embedding_size: int = 64
    dropout: float = 0.0
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.cell not in CELL_TYPES:
            raise ConfigError(f"`cell` must be one of {list(CELL_TYPES)}, got {self.cell!r}")
        for name in ("vocab_size", "num_layers", "hidden_size", "embedding_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"`{name}` must be a positive integer, got {value!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"`dropout` must be a number in [0, 1), got {self.dropout!r}")
        if self.format_version != FORMAT_VERSION:
            raise ConfigError(
                f"`format_version` {self.format_version!r} is not supported by this version of lstm_interp "
                f"(it reads format_version {FORMAT_VERSION}); upgrade lstm_interp or re-save the model"
            )

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> CharLSTMConfig:
        """Build a config from a dict; unknown keys are an error (they signal a file from another version)."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown keys {unknown} (known: {sorted(known)}); is it from another version?")
        if "vocab_size" not in data:
            raise ConfigError(f"{source}: missing required key 'vocab_size'")
        try:
            return cls(**data)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``config.json`` atomically."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharLSTMConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} does not exist")
        data = read_json_file(path, "config file", ConfigError)
        return cls.from_dict(data, source=f"config file {str(path)!r}")
