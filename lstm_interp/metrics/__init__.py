"""torchmetrics metrics for character-level language models."""

from lstm_interp.metrics.bits_per_character import BitsPerCharacter

__all__ = ["BitsPerCharacter"]
