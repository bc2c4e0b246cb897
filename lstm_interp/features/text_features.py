"""Features of plain text: quotes, line position, bracket depth, indentation, URLs, word starts.

Convention, unless a feature says otherwise: the value at position ``t`` describes the state *after reading*
``text[t]``, which is all an LSTM's cell at step ``t`` can know. So an opening delimiter is already inside
(``"`` that opens a quote is 1, ``(`` has the depth it opens), a closing one is already outside, and a newline is
at position 0 of the next line. The look-ahead features (:func:`chars_to_line_end`, :func:`indentation`) and the
regex spans (:func:`inside_url`) are the exceptions, and say so.

Every function takes the text and returns a numpy array of ``len(text)`` values: ``bool`` for binary features,
``float64`` for counts. None loops over characters in Python; they run in milliseconds on 100,000 characters.
"""

from __future__ import annotations

import re

import numpy as np

from lstm_interp.features.registry import regex_spans, register_feature

# A URL: a scheme (http, https, ftp, gopher, telnet, news, mailto, wais, file) and a colon, or "www." and a name,
# not inside a word; it runs to whitespace or a character that brackets or quotes it (FOLDOC writes "(http://...)}"),
# and trailing sentence punctuation is not part of it. On FOLDOC (../shared/data/foldoc.txt) this finds 2,759 URLs,
# 1.85% of its characters: 1,776 http, 692 ftp, 222 news, 46 https, 12 gopher, 8 telnet, 2 www., 1 mailto.
_URL_END = r"""\s<>(){}\[\]"'"""
URL_PATTERN = re.compile(
    rf"(?<![\w.\-/@])(?:(?:https?|ftp|gopher|telnet|news|mailto|wais|file):(?=[^{_URL_END}])|www\.(?=[\w-]))"
    rf"(?:[^{_URL_END}]*[^{_URL_END}.,;:!?])?",
    re.IGNORECASE,
)
_NEWLINE, _QUOTE, _SPACE, _TAB, _CR = 10, 34, 32, 9, 13
NO_SPACE_RUN = 8  # the shortest run without whitespace that no_space_run marks


def _codepoints(text: str) -> np.ndarray:
    """(T,) the code point of every character; surrogates pass through so that any str works."""
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)


def clamped_depth(opens: np.ndarray, closes: np.ndarray) -> np.ndarray:
    """Nesting depth after each character, where a closer at depth 0 is ignored (depth never goes below 0).

    The running sum of +1 (opener) / -1 (closer) reflected at 0 equals the plain running sum minus its running
    minimum (when that is negative): the closed form of a stack that drops unmatched closers.
    """
    total = np.cumsum(opens.astype(np.int64) - closes.astype(np.int64))
    return (total - np.minimum(np.minimum.accumulate(total), 0)).astype(np.float64)


def inside_quotes(text: str, reset_at_blank_line: bool = True) -> np.ndarray:
    """Inside a double quote: an odd number of ``"`` read since the start of the paragraph.

    The opening ``"`` is inside (1) and the closing ``"`` outside (0). Only the ASCII ``"`` (U+0022) counts;
    there are no escapes and newlines do not end a quote. With ``reset_at_blank_line`` a blank line (a ``\\n``
    followed, after nothing but spaces, tabs or ``\\r``, by another ``\\n``) closes any open quote at that second
    ``\\n``: prose opens a quote again at each paragraph of a long speech without closing the previous one, and
    without the reset one such paragraph would invert the rest of the book.

    Example::

        >>> inside_quotes('a "b" c').astype(int).tolist()
        [0, 0, 1, 1, 0, 0, 0]
    """
    codes = _codepoints(text)
    quotes = np.cumsum(codes == _QUOTE)
    if reset_at_blank_line and len(codes):
        index = np.arange(len(codes))
        substantive = (codes != _SPACE) & (codes != _TAB) & (codes != _CR)
        last_substantive = np.maximum.accumulate(np.where(substantive, index, -1))  # at or before t
        before = np.concatenate(([-1], last_substantive[:-1]))  # strictly before t
        resets = (codes == _NEWLINE) & (before >= 0) & (codes[np.maximum(before, 0)] == _NEWLINE)
        # The quote count is non-decreasing, so the count at the last reset is a running maximum.
        quotes = quotes - np.maximum.accumulate(np.where(resets, quotes, 0))
    return (quotes % 2).astype(bool)


def position_in_line(text: str) -> np.ndarray:
    """Characters read since the last newline: 0 at a ``\\n``, 1 at the first character of a line.

    The text starts as if a newline preceded it, so its first character is at 1. Equals the 1-based column of
    ``text[t]`` (every character, tab included, is one column).

    Example::

        >>> position_in_line("ab\\ncd").tolist()
        [1.0, 2.0, 0.0, 1.0, 2.0]
    """
    codes = _codepoints(text)
    index = np.arange(len(codes))
    last_newline = np.maximum.accumulate(np.where(codes == _NEWLINE, index, -1))
    return (index - last_newline).astype(np.float64)


def chars_to_line_end(text: str) -> np.ndarray:
    """Characters from ``text[t]`` to the next newline, counting ``text[t]`` and not the newline (look-ahead).

    0 at a ``\\n``, 1 at the last character of a line; the end of the text ends the last line like a newline.

    Example::

        >>> chars_to_line_end("ab\\ncd").tolist()
        [2.0, 1.0, 0.0, 2.0, 1.0]
    """
    codes = _codepoints(text)
    index = np.arange(len(codes))
    next_newline = np.minimum.accumulate(np.where(codes == _NEWLINE, index, len(codes))[::-1])[::-1]
    return (next_newline - index).astype(np.float64)


def paren_depth(text: str) -> np.ndarray:
    """Open round parentheses after reading ``text[t]``: ``(`` counts at itself, ``)`` is already closed.

    A ``)`` with nothing open is ignored (the depth never goes below 0). Every parenthesis counts, including
    those inside quotes, strings or comments.

    Example::

        >>> paren_depth("(a)) (").tolist()
        [1.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    """
    codes = _codepoints(text)
    return clamped_depth(codes == ord("("), codes == ord(")"))


def bracket_depth(text: str) -> np.ndarray:
    """Open square brackets ``[`` ``]`` after reading ``text[t]``, with the rules of :func:`paren_depth`.

    Braces are separate (:func:`brace_depth`); round parentheses and braces do not affect it.

    Example::

        >>> bracket_depth("a[b[]]]").tolist()
        [0.0, 1.0, 1.0, 2.0, 1.0, 0.0, 0.0]
    """
    codes = _codepoints(text)
    return clamped_depth(codes == ord("["), codes == ord("]"))


def brace_depth(text: str) -> np.ndarray:
    """Open curly braces ``{`` ``}`` after reading ``text[t]``, with the rules of :func:`paren_depth`.

    Example::

        >>> brace_depth("{ {x} }").tolist()
        [1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 0.0]
    """
    codes = _codepoints(text)
    return clamped_depth(codes == ord("{"), codes == ord("}"))


def indentation(text: str, tab_size: int = 8) -> np.ndarray:
    """Width in columns of the leading spaces and tabs of the line holding ``text[t]`` (look-ahead).

    Every character of a line, its ending ``\\n`` included, gets the same value, so the first characters of a
    line already carry its indentation. A space is one column; a tab moves to the next multiple of ``tab_size``
    columns (as :meth:`str.expandtabs`; 8, like the Linux kernel). Only spaces and tabs indent; a line of only
    whitespace has the width of all of it.

    Raises:
        ValueError: if ``tab_size`` < 1.

    Example::

        >>> indentation("a\\n\\tb\\n  c").tolist()
        [0.0, 0.0, 8.0, 8.0, 8.0, 2.0, 2.0, 2.0]
    """
    if tab_size < 1:
        raise ValueError(f"`tab_size` must be >= 1, got {tab_size!r}")
    # One match per line (re.M anchors after every "\n"), so the loop runs per line, not per character.
    widths = np.array([len(m.group().expandtabs(tab_size)) for m in re.finditer(r"^[ \t]*", text, re.M)])
    codes = _codepoints(text)
    line = np.cumsum(codes == _NEWLINE) - (codes == _NEWLINE)  # the "\n" belongs to the line it ends
    return widths[line].astype(np.float64)


def inside_url(text: str) -> np.ndarray:
    """Inside a URL (:data:`URL_PATTERN`, case-insensitive): a span, not a state.

    A URL starts at a scheme and its colon (``http:``, ``https:``, ``ftp:``, ``gopher:``, ``telnet:``, ``news:``,
    ``mailto:``, ``wais:``, ``file:``) followed by a character of the URL, or at ``www.`` followed by a name; the
    scheme must not follow a letter, digit, ``_``, ``.``, ``-``, ``/`` or ``@``. It ends before whitespace, a bracket
    of any kind, ``<``/``>`` or a quote, and trailing ``. , ; : ! ?`` are not part of it: in
    ``{(http://a.org/x)}.`` the URL is ``http://a.org/x``. A URL with parentheses inside it ends at the first one.

    Example::

        >>> inside_url("see http://a.b, x").astype(int).tolist()
        [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    """
    return regex_spans(text, URL_PATTERN)


def inside_parens(text: str) -> np.ndarray:
    """Inside round parentheses: :func:`paren_depth` above 0 (the ``(`` is inside, the closing ``)`` is not).

    The control of ``inside_if_condition``: every if condition is inside parentheses, so a unit that merely tracks
    parentheses also scores well on if conditions.

    Example::

        >>> inside_parens("f(a(b)) x").astype(int).tolist()
        [0, 1, 1, 1, 1, 1, 0, 0, 0]
    """
    return paren_depth(text) > 0


def inside_braces(text: str) -> np.ndarray:
    """Inside curly braces: :func:`brace_depth` above 0 (the ``{`` is inside, the closing ``}`` is not).

    A control of ``inside_url``: FOLDOC writes a link as a cross-reference, ``{Home (http://a.org/)}``, and a wiki
    as ``[http://a.org title]``, so a unit that tracks "inside a cross-reference" also scores well on URLs. On the
    foldoc model the best ``inside_url`` unit by AUC alone (0.997) was such a unit: as red inside ``{luser}`` as
    inside a URL.

    Example::

        >>> inside_braces("a {b {c}} d").astype(int).tolist()
        [0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    """
    return brace_depth(text) > 0


def dialogue_line(text: str) -> np.ndarray:
    """On a line of dialogue: every character of a line (its ``\\n`` included) that a quotation touches.

    A line counts when any of its characters is :func:`inside_quotes` or is a ``"``. The control of
    ``inside_quotes``: every quotation lies on dialogue lines, so a unit that only knows "this line is dialogue"
    (its narration included) also scores well on quotes.

    Example::

        >>> dialogue_line('a "b"\\nc\\n').astype(int).tolist()
        [1, 1, 1, 1, 1, 1, 0, 0]
    """
    codes = _codepoints(text)
    touched = inside_quotes(text) | (codes == _QUOTE)
    line = np.cumsum(codes == _NEWLINE) - (codes == _NEWLINE)  # the "\n" belongs to the line it ends
    return np.bincount(line, weights=touched, minlength=int(line[-1]) + 1 if len(line) else 0)[line] > 0


def no_space_run(text: str, min_length: int = NO_SPACE_RUN) -> np.ndarray:
    """Inside a run of at least ``min_length`` (8) characters without whitespace: a long "word".

    The control of ``inside_url``: a URL is such a run, and so are long identifiers, paths and numbers.

    Example::

        >>> no_space_run("a abcdefgh b").astype(int).tolist()
        [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    """
    return regex_spans(text, rf"\S{{{min_length},}}")


def start_of_word(text: str) -> np.ndarray:
    """``text[t]`` is a word character and ``text[t-1]`` is not (or ``t == 0``).

    Word characters are those of the regex ``\\w``: Unicode letters, digits and ``_``. So ``don't`` has two
    starts (``d`` and ``t``) and ``x_1`` one.

    Example::

        >>> start_of_word("hi, you2").astype(int).tolist()
        [1, 0, 0, 0, 1, 0, 0, 0]
    """
    starts = np.array([m.start() for m in re.finditer(r"\w+", text)], dtype=np.int64)
    mask = np.zeros(len(text), dtype=bool)
    mask[starts] = True
    return mask


# The controls a feature implies (see Feature.controls): a unit is a cell for the feature only if it tracks the
# feature better than these.
CONTROLS: dict[str, tuple[str, ...]] = {
    "inside_quotes": ("dialogue_line",),
    "inside_url": ("no_space_run", "inside_braces"),
}

for _fn, _kind in (
    (inside_quotes, "binary"),
    (position_in_line, "continuous"),
    (chars_to_line_end, "continuous"),
    (paren_depth, "continuous"),
    (bracket_depth, "continuous"),
    (brace_depth, "continuous"),
    (indentation, "continuous"),
    (inside_url, "binary"),
    (start_of_word, "binary"),
    (inside_parens, "binary"),
    (inside_braces, "binary"),
    (dialogue_line, "binary"),
    (no_space_run, "binary"),
):
    # replace: reloading the module is harmless
    register_feature(_fn.__name__, _fn, kind=_kind, controls=CONTROLS.get(_fn.__name__, ()), replace=True)
