"""``char_class``: which of nine disjoint classes a character belongs to, for splitting a loss by character class.

The classes, tried in this order (the first that holds wins; with these definitions at most one can hold, except
that the listed quote characters are also Unicode punctuation, and quotes win):

==============  =================================================================================================
``newline``     a line break: ``\\n``, ``\\r``, ``\\v``, ``\\f``, ``\\x1c``-``\\x1e``, ``\\x85``, U+2028, U+2029
                (exactly the characters :meth:`str.splitlines` splits on)
``whitespace``  any other character for which :meth:`str.isspace` is true: space, tab, no-break space, ...
``lowercase``   Unicode category ``Ll`` (lowercase letter)
``uppercase``   Unicode category ``Lu`` or ``Lt`` (uppercase or titlecase letter)
``digit``       Unicode category ``Nd`` (decimal digit)
``quote``       ``"``, ``'``, ````` `` ````` and every character of category ``Pi`` or ``Pf`` (initial / final quote:
                ``“ ” ‘ ’ « »`` ...), plus the low quotes ``„`` and ``‚`` (which Unicode files as opening brackets)
``bracket``     every other character of category ``Ps`` or ``Pe`` (opening / closing punctuation):
                ``( ) [ ] { }`` and their Unicode relatives; ``<`` and ``>`` are math symbols, not brackets
``punctuation`` every other punctuation (``Pc``, ``Pd``, ``Po``: ``. , ; : ! ? - _ * / # % & @ \\``) or symbol
                (``Sm``, ``Sc``, ``Sk``, ``So``: ``+ = < > | ~ ^ $``)
``other``       everything else: letters without case (``Lo``, ``Lm``), other numbers, marks, control characters
==============  =================================================================================================
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

CHAR_CLASSES: tuple[str, ...] = (
    "newline",
    "whitespace",
    "lowercase",
    "uppercase",
    "digit",
    "quote",
    "bracket",
    "punctuation",
    "other",
)
CLASS_DESCRIPTIONS: dict[str, str] = {
    "newline": "line break (\\n, \\r, and the others str.splitlines splits on)",
    "whitespace": "other whitespace (space, tab, ...)",
    "lowercase": "lowercase letter (Unicode Ll)",
    "uppercase": "uppercase or titlecase letter (Lu, Lt)",
    "digit": "decimal digit (Nd)",
    "quote": "quote: \" ' ` and Unicode Pi/Pf quotes, „ ‚",
    "bracket": "bracket: ( ) [ ] { } and other Unicode Ps/Pe",
    "punctuation": "other punctuation (Pc, Pd, Po) and symbols (S*)",
    "other": "anything else (caseless letters, marks, control characters, ...)",
}
LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_QUOTES = frozenset("\"'`\u201e\u201a")


@lru_cache(maxsize=4096)
def char_class(char: str) -> str:
    """The class of one character, one of :data:`CHAR_CLASSES` (definitions in the module docstring).

    Args:
        char: a string of exactly one character.

    Raises:
        ValueError: if ``char`` is not a single character.

    Example::

        >>> [char_class(c) for c in 'aZ7 \\n"{.é']
        ['lowercase', 'uppercase', 'digit', 'whitespace', 'newline', 'quote', 'bracket', 'punctuation', 'lowercase']
    """
    if not isinstance(char, str) or len(char) != 1:
        raise ValueError(f"`char` must be a single character, got {char!r}")
    if char in LINE_BREAKS:
        return "newline"
    if char.isspace():
        return "whitespace"
    category = unicodedata.category(char)
    if category == "Ll":
        return "lowercase"
    if category in ("Lu", "Lt"):
        return "uppercase"
    if category == "Nd":
        return "digit"
    if char in _QUOTES or category in ("Pi", "Pf"):
        return "quote"
    if category in ("Ps", "Pe"):
        return "bracket"
    if category[0] in "PS":
        return "punctuation"
    return "other"
