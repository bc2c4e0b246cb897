"""Character vocabulary: the mapping between characters and integer ids."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from lstm_interp._io import atomic_write_text, read_json_file

OnUnknown = Literal["error", "skip", "replace"]
_FORMAT_VERSION = 1


class VocabularyError(ValueError):
    """Text holds characters that the vocabulary lacks, or a vocabulary file is malformed.

    For unknown characters, ``problem`` is what is wrong and ``hint`` the way out, a sentence naming the argument that
    exists where the error is raised (``on_unknown=`` in Python); :meth:`with_hint` gives the same error with the hint
    of another place (the CLI's ``--skip-unknown``, the monitor's ``on_unknown="skip"``).
    """

    def __init__(self, message: str, *, problem: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.problem = problem
        self.hint = hint

    def with_hint(self, hint: str) -> VocabularyError:
        """The same error with another way out, or ``self`` when it has no separate problem and hint."""
        if self.problem is None:
            return self
        return VocabularyError(f"{self.problem}. {hint}", problem=self.problem, hint=hint)


class CharVocab:
    """An ordered set of characters; id ``i`` is ``chars[i]``.

    Ids follow the order given at construction; :meth:`from_text` sorts characters by code point so that
    the same corpus always gives the same ids.

    Args:
        chars: the distinct characters, in id order (a string or a sequence of one-character strings).

    Raises:
        VocabularyError: if ``chars`` is empty, has duplicates, or holds something that is not one character.

    Example::

        >>> vocab = CharVocab.from_text("hello world")
        >>> vocab.decode(vocab.encode("hello"))
        'hello'
        >>> vocab.encode("hi!", on_unknown="skip").tolist()
        [3]
    """

    def __init__(self, chars: str | Sequence[str]) -> None:
        chars = list(chars)
        if not chars:
            raise VocabularyError("a vocabulary needs at least one character, got none")
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise VocabularyError(f"vocabulary entries must be single characters, got {bad[:5]!r}")
        seen: set[str] = set()
        dups = [c for c in chars if c in seen or seen.add(c)]  # type: ignore[func-returns-value]
        if dups:
            raise VocabularyError(f"vocabulary has duplicate characters: {sorted(set(dups))!r}")
        self._chars = "".join(chars)
        self._index = {c: i for i, c in enumerate(chars)}
        # Sorted code points and their ids let numpy encode whole arrays without a Python loop per character.
        codepoints = np.array([ord(c) for c in chars], dtype=np.int64)
        order = np.argsort(codepoints)
        self._sorted_codepoints = codepoints[order]
        self._sorted_ids = order.astype(np.int64)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_text(cls, text: str | Iterable[str]) -> CharVocab:
        """Build a vocabulary from all characters of ``text`` (a string or an iterable of strings)."""
        chars: set[str] = set()
        if isinstance(text, str):
            chars.update(text)
        else:
            for part in text:
                chars.update(part)
        if not chars:
            raise VocabularyError("cannot build a vocabulary from empty text")
        return cls(sorted(chars))

    # ------------------------------------------------------------------ properties
    @property
    def chars(self) -> str:
        """All characters in id order, as one string."""
        return self._chars

    @property
    def dtype(self) -> np.dtype:
        """The smallest unsigned numpy dtype that holds every id."""
        return np.dtype(np.uint8) if len(self) <= 256 else np.dtype(np.uint16) if len(self) <= 65536 else np.int32

    def __len__(self) -> int:
        return len(self._chars)

    def __contains__(self, char: object) -> bool:
        return char in self._index

    def __iter__(self):
        return iter(self._chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharVocab) and other._chars == self._chars

    def __hash__(self) -> int:
        return hash(self._chars)

    def __repr__(self) -> str:
        preview = self._chars if len(self) <= 40 else self._chars[:37] + "..."
        return f"CharVocab(size={len(self)}, chars={preview!r})"

    def char_to_id(self, char: str) -> int:
        """The id of one character."""
        try:
            return self._index[char]
        except KeyError:
            raise VocabularyError(f"character {char!r} is not in the vocabulary") from None

    # ------------------------------------------------------------------ encode / decode
    def unknown_chars(self, text: str) -> dict[str, int]:
        """Characters of ``text`` missing from the vocabulary, each with the position of its first occurrence."""
        missing: dict[str, int] = {}
        for char in set(text) - self._index.keys():
            missing[char] = text.index(char)
        return dict(sorted(missing.items(), key=lambda item: item[1]))

    def encode_array(self, text: str, *, on_unknown: OnUnknown = "error", replacement: str | None = None) -> np.ndarray:
        """Encode ``text`` as a numpy array of ids (``int64``).

        Args:
            text: the text to encode.
            on_unknown: what to do with characters the vocabulary lacks: ``"error"`` (default) raises a
                :class:`VocabularyError` listing them with their first positions; ``"skip"`` drops them;
                ``"replace"`` maps them to ``replacement``.
            replacement: the vocabulary character used for unknown ones when ``on_unknown="replace"``.
        """
        if on_unknown not in ("error", "skip", "replace"):
            raise ValueError(f"`on_unknown` must be 'error', 'skip' or 'replace', got {on_unknown!r}")
        if on_unknown == "replace" and (replacement is None or replacement not in self._index):
            raise VocabularyError(
                f"`replacement` must be a character of the vocabulary when on_unknown='replace', got {replacement!r}"
            )
        codepoints = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)
        pos = np.searchsorted(self._sorted_codepoints, codepoints)
        pos_clipped = np.minimum(pos, len(self._sorted_codepoints) - 1)
        known = self._sorted_codepoints[pos_clipped] == codepoints
        ids = self._sorted_ids[pos_clipped]
        if known.all():
            return ids
        if on_unknown == "error":
            missing = self.unknown_chars(text)
            shown = ", ".join(f"{c!r} (first at {p})" for c, p in list(missing.items())[:20])
            more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
            problem = f"text has {len(missing)} character(s) not in the vocabulary: {shown}{more}"
            hint = "Pass on_unknown='skip' or on_unknown='replace' (with `replacement`) to encode anyway."
            raise VocabularyError(f"{problem}. {hint}", problem=problem, hint=hint)
        if on_unknown == "skip":
            return ids[known]
        ids = ids.copy()
        ids[~known] = self._index[replacement]  # type: ignore[index]
        return ids

    def encode(self, text: str, *, on_unknown: OnUnknown = "error", replacement: str | None = None) -> torch.Tensor:
        """Encode ``text`` as a 1-D ``torch.long`` tensor of ids. See :meth:`encode_array` for the options."""
        return torch.from_numpy(self.encode_array(text, on_unknown=on_unknown, replacement=replacement))

    def decode(self, ids: Iterable[int] | torch.Tensor | np.ndarray) -> str:
        """Turn ids back into text."""
        if isinstance(ids, torch.Tensor):
            ids = ids.detach().cpu().reshape(-1).tolist()
        elif isinstance(ids, np.ndarray):
            ids = ids.reshape(-1).tolist()
        chars = self._chars
        try:
            return "".join(chars[i] for i in ids)
        except IndexError:
            bad = [i for i in ids if not 0 <= i < len(chars)]
            raise VocabularyError(f"ids {bad[:10]} are outside the vocabulary range [0, {len(chars)})") from None

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return {"format_version": _FORMAT_VERSION, "chars": list(self._chars)}

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "vocabulary") -> CharVocab:
        if not isinstance(data, dict) or "chars" not in data:
            raise VocabularyError(f"{source}: expected a JSON object with a 'chars' list, got {type(data).__name__}")
        version = data.get("format_version", _FORMAT_VERSION)
        if version != _FORMAT_VERSION:
            raise VocabularyError(f"{source}: format_version {version!r} is not supported (expected {_FORMAT_VERSION})")
        try:
            return cls(data["chars"])
        except VocabularyError as err:
            raise VocabularyError(f"{source}: {err}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the vocabulary as JSON (atomically: a temporary file renamed into place)."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False, indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharVocab:
        """Read a vocabulary written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file {str(path)!r} does not exist")
        data = read_json_file(path, "vocabulary file", VocabularyError)
        return cls.from_dict(data, source=f"vocabulary file {str(path)!r}")
