"""The feature registry: named functions from a text to one value per character.

A *feature* maps a text of ``T`` characters to a numpy array of ``T`` values: ``bool`` for a binary feature
(inside a quote or not), ``float64`` for a continuous one (parenthesis depth). :func:`find_cells` compares them with
a trace of the same text. The built-in features register themselves when :mod:`lstm_interp.features` is imported;
:func:`register_feature` and :func:`register_regex_feature` add your own.

The registry functions share this module because they share one dictionary, :data:`FEATURES`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

FeatureKind = Literal["binary", "continuous"]
FeatureFn = Callable[[str], np.ndarray]
FEATURE_KINDS: tuple[str, ...] = ("binary", "continuous")


class UnknownFeatureError(KeyError, ValueError):
    """A feature name that is not registered; catch it as ``KeyError`` or ``ValueError``."""

    def __str__(self) -> str:
        # KeyError's own __str__ shows the repr of its argument, which would quote the whole message.
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Feature:
    """A named function from a text to one value per character.

    Args:
        name: registry key, e.g. ``"inside_quotes"``.
        function: ``text -> array`` of ``len(text)`` values.
        kind: ``"binary"`` (scored with ROC AUC) or ``"continuous"`` (scored with Pearson r).
        description: one line shown in tables and error messages.
        controls: names of the registered binary features this one implies (an if condition is inside
            parentheses): :func:`~lstm_interp.find_cells` reports each unit's score on them and its score on this
            feature given them, so that a unit that only tracks the control is not taken for a cell of this one.

    Example::

        >>> from lstm_interp.features import get_feature
        >>> get_feature("paren_depth")("f(a(b))").tolist()
        [0.0, 1.0, 1.0, 2.0, 2.0, 1.0, 0.0]
    """

    name: str
    function: FeatureFn
    kind: FeatureKind
    description: str = ""
    controls: tuple[str, ...] = ()

    def __call__(self, text: str) -> np.ndarray:
        return compute_feature(self, text)


FEATURES: dict[str, Feature] = {}


def register_feature(
    name: str,
    fn: FeatureFn,
    *,
    kind: FeatureKind,
    description: str = "",
    controls: tuple[str, ...] | list[str] = (),
    replace: bool = False,
) -> Feature:
    """Add a feature to :data:`FEATURES`.

    Args:
        name: the key to register it under.
        fn: ``text -> array`` of ``len(text)`` values (bool or 0/1 for a binary feature, numbers otherwise).
        kind: ``"binary"`` or ``"continuous"``.
        description: one line; defaults to the first line of ``fn``'s docstring.
        controls: the features this one implies (see :class:`Feature`); they need not be registered yet, and are
            looked up when a unit is scored.
        replace: overwrite a feature already registered under ``name`` instead of raising.

    Returns:
        The registered :class:`Feature`.

    Raises:
        ValueError: for an empty name, an unknown ``kind``, or a name already taken (without ``replace``).
        TypeError: if ``fn`` is not callable.

    Example::

        >>> f = register_feature("is_space", lambda text: np.array([c == " " for c in text], bool), kind="binary")
        >>> f("a b").tolist()
        [False, True, False]
        >>> _ = FEATURES.pop("is_space")
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a feature name must be a non-empty string, got {name!r}")
    if kind not in FEATURE_KINDS:
        raise ValueError(f"`kind` must be one of {list(FEATURE_KINDS)}, got {kind!r}")
    if not callable(fn):
        raise TypeError(f"feature {name!r}: `fn` must be callable, got {type(fn).__name__}")
    if name in FEATURES and not replace:
        raise ValueError(f"a feature named {name!r} is already registered; pass replace=True to overwrite it")
    if not description:
        description = ((getattr(fn, "__doc__", None) or "").strip().splitlines() or [""])[0]
    controls = (controls,) if isinstance(controls, str) else tuple(controls)
    if name in controls:
        raise ValueError(f"feature {name!r} cannot be its own control")
    feature = Feature(name, fn, kind, description, controls)
    FEATURES[name] = feature
    return feature


def register_regex_feature(
    name: str, pattern: str | re.Pattern[str], *, flags: int = 0, description: str = "", replace: bool = False
) -> Feature:
    """Register a binary feature that is 1 on every character inside a match of ``pattern``, else 0.

    Matches are found with :func:`re.finditer` (leftmost, non-overlapping); empty matches mark nothing.

    Args:
        name: the key to register it under.
        pattern: a regular expression (string or compiled).
        flags: :mod:`re` flags, for a string pattern.
        description: one line; defaults to ``"inside a match of /<pattern>/"``.
        replace: overwrite a feature already registered under ``name``.

    Returns:
        The registered :class:`Feature`.

    Raises:
        ValueError: for an invalid pattern, or the reasons of :func:`register_feature`.

    Example::

        >>> f = register_regex_feature("digits", r"[0-9]+")
        >>> f("a12 b3").astype(int).tolist()
        [0, 1, 1, 0, 0, 1]
        >>> _ = FEATURES.pop("digits")
    """
    try:
        regex = re.compile(pattern, flags) if isinstance(pattern, str) else pattern
    except re.error as err:
        raise ValueError(f"feature {name!r}: invalid regular expression {pattern!r}: {err}") from err

    def regex_feature(text: str) -> np.ndarray:
        return regex_spans(text, regex)

    regex_feature.__name__ = regex_feature.__qualname__ = name
    return register_feature(
        name,
        regex_feature,
        kind="binary",
        description=description or f"inside a match of /{regex.pattern}/",
        replace=replace,
    )


def regex_spans(text: str, pattern: str | re.Pattern[str], flags: int = 0) -> np.ndarray:
    """A bool array: True on every character inside a match of ``pattern`` (leftmost, non-overlapping)."""
    regex = re.compile(pattern, flags) if isinstance(pattern, str) else pattern
    spans = np.array([m.span() for m in regex.finditer(text)], dtype=np.int64).reshape(-1, 2)
    return span_mask(len(text), spans[:, 0], spans[:, 1])


def span_mask(length: int, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """A bool array of ``length``: True on ``[start, end)`` of every span (spans may touch or overlap)."""
    # A difference array turns any number of spans into one cumulative sum instead of a slice assignment each.
    delta = np.bincount(starts, minlength=length + 1) - np.bincount(ends, minlength=length + 1)
    return np.cumsum(delta[:length]) > 0


def get_feature(name: str | Feature) -> Feature:
    """The registered feature called ``name`` (a :class:`Feature` is returned as it is).

    Raises:
        UnknownFeatureError: (a ``KeyError`` and a ``ValueError``) for an unknown name; the message lists the
            known names.

    Example::

        >>> get_feature("inside_quotes").kind
        'binary'
    """
    if isinstance(name, Feature):
        return name
    try:
        return FEATURES[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), FEATURES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownFeatureError(
            f"unknown feature {name!r}{hint}; the known features are {sorted(FEATURES)}"
        ) from None


def compute_feature(feature: str | Feature | FeatureFn, text: str) -> np.ndarray:
    """Evaluate a feature on ``text`` and check what it returned.

    Args:
        feature: a registered name, a :class:`Feature`, or a plain ``text -> array`` callable.
        text: the text.

    Returns:
        A 1-D array of ``len(text)`` values: ``bool`` for a binary :class:`Feature`, a bool array stays ``bool``
        for a plain callable, and anything else becomes ``float64``.

    Raises:
        UnknownFeatureError: for an unknown name.
        TypeError: if ``text`` is not a string or ``feature`` is none of the above.
        ValueError: if the function returns the wrong shape, non-finite numbers, or (binary) values other than 0/1.

    Example::

        >>> compute_feature("position_in_line", "ab\\ncd").tolist()
        [1.0, 2.0, 0.0, 1.0, 2.0]
    """
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a string, got {type(text).__name__}")
    if isinstance(feature, str | Feature):
        feat = get_feature(feature)
        fn, label, kind = feat.function, feat.name, feat.kind
    elif callable(feature):
        fn, label, kind = feature, getattr(feature, "__name__", repr(feature)), None
    else:
        raise TypeError(f"`feature` must be a name, a Feature or a callable, got {type(feature).__name__}")
    values = np.asarray(fn(text))
    if values.shape != (len(text),):
        raise ValueError(f"feature {label!r} returned shape {values.shape} for a text of {len(text)} characters")
    if values.dtype == np.bool_ and kind != "continuous":
        return values
    if not np.issubdtype(values.dtype, np.number) and values.dtype != np.bool_:
        raise ValueError(f"feature {label!r} returned non-numeric values of dtype {values.dtype}")
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"feature {label!r} returned {int((~np.isfinite(values)).sum())} non-finite values")
    if kind == "binary":
        if not np.isin(values, (0.0, 1.0)).all():
            raise ValueError(f"binary feature {label!r} returned values other than 0 and 1: {np.unique(values)[:5]}")
        return values.astype(bool)
    return values
