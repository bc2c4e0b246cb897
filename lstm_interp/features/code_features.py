"""Features of C source code: comments, string literals, ``if (...)`` conditions.

They read the text with a small C lexer, so that a ``"`` inside a comment opens no string, a ``/*`` inside a string
opens no comment, and a ``'"'`` character literal is neither. Like :mod:`~lstm_interp.features.text_features`, the
value at ``t`` is the state *after reading* ``text[t]``: an opening delimiter counts only once it is complete
(the ``/`` of ``/*`` is still code, the ``*`` is comment) and a closing one is outside as soon as it is complete
(the ``*`` of ``*/`` is still comment, its ``/`` is code; the closing ``"`` of a string is code).

The lexer's tokens, tried at each position in this order (the leftmost token wins, as in a real lexer):

- block comment ``/* ... */``; ``/*/`` does not close it; unterminated, it runs to the end of the text;
- line comment ``// ...`` up to, not including, the next ``\\n``; a backslash right before the ``\\n``
  continues it onto the next line, as in C;
- string literal ``"..."``: ``\\`` escapes the next character (``\\"``, ``\\\\``, a backslash-newline); an
  unescaped newline ends an unterminated string before the ``\\n``;
- character literal ``'...'``, with the same escapes: neither a string nor a comment, and its content is inert.

Not modelled: trigraphs, raw strings, and comments or strings produced by macros.
"""

from __future__ import annotations

import re

import numpy as np

from lstm_interp.features.registry import register_feature, span_mask

_C_TOKENS = re.compile(
    r"""
      (?P<block>/\*.*?(?:(?P<block_closed>\*/)|\Z))
    | (?P<line>//(?:\\\n|[^\n])*)
    | (?P<string>"(?:\\(?:.|\Z)|[^"\\\n])*(?P<string_closed>")?)
    | (?P<char>'(?:\\(?:.|\Z)|[^'\\\n])*'?)
    """,
    re.DOTALL | re.VERBOSE,
)
# `if` as a whole word, optional whitespace (newlines included), then "(".
_IF_OPEN = re.compile(r"\bif\s*\(")


def _tokens(text: str) -> dict[str, np.ndarray]:
    """Per kind of token (``block``, ``line``, ``string``, ``char``), an (n, 3) array: start, end, closed.

    ``end`` is exclusive; ``closed`` is 1 when a block comment ends with ``*/`` or a string with ``"``.
    """
    rows: dict[str, list[tuple[int, int, int]]] = {"block": [], "line": [], "string": [], "char": []}
    for match in _C_TOKENS.finditer(text):
        kind = next(k for k in rows if match.group(k) is not None)
        closed = match.group(f"{kind}_closed") is not None if kind in ("block", "string") else False
        rows[kind].append((*match.span(), int(closed)))
    return {kind: np.array(r, dtype=np.int64).reshape(-1, 3) for kind, r in rows.items()}


def inside_comment(text: str) -> np.ndarray:
    """Inside a C comment (``/* */`` or ``//``) after reading ``text[t]``.

    For ``/* c */``: the first ``/`` is 0, everything from the ``*`` to the ``*`` of ``*/`` is 1, the last
    ``/`` is 0. For ``// c``: the first ``/`` is 0, the rest of the line is 1, the ending ``\\n`` is 0. Comment
    markers inside string or character literals are ignored; see the module docstring for the lexer's rules.

    Example::

        >>> inside_comment("a/*b*/c//d\\ne").astype(int).tolist()
        [0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0]
    """
    tokens = _tokens(text)
    block, line = tokens["block"], tokens["line"]
    # A finished "*/" is outside from its "/"; an unterminated comment keeps its last character inside.
    block_end = block[:, 1] - block[:, 2]
    starts = np.concatenate([block[:, 0], line[:, 0]]) + 1
    ends = np.concatenate([block_end, line[:, 1]])
    return span_mask(len(text), starts, ends)


def inside_string_literal(text: str) -> np.ndarray:
    """Inside a C string literal ``"..."`` after reading ``text[t]``.

    The opening ``"`` is 1 and everything up to the closing ``"``, which is 0. Escaped quotes (``\\"``) and
    backslashes (``\\\\``) stay inside. A ``"`` inside a comment or a character literal (``'"'``) opens nothing.
    An unterminated string ends at the end of its line: its characters are 1, the ``\\n`` is 0.

    Example::

        >>> inside_string_literal('x="a\\\\"b";').astype(int).tolist()
        [0, 0, 1, 1, 1, 1, 1, 0, 0]
    """
    strings = _tokens(text)["string"]
    return span_mask(len(text), strings[:, 0], strings[:, 1] - strings[:, 2])


def inside_if_condition(text: str) -> np.ndarray:
    """Inside the condition of a C ``if``: from its ``(`` (1) to just before the matching ``)`` (0).

    An ``if`` counts when it is a whole word in code (not in a comment, string or character literal), is
    followed by optional whitespace and ``(`` (so ``if(`` and ``else if (`` count, ``elif``, ``endif`` and
    ``ifdef`` do not), and is not a preprocessor ``#if``/``# if`` (only spaces or tabs between ``#`` and ``if``).
    The ``if`` keyword and the spaces before ``(`` are 0. Parentheses are matched in code only, so a ``)`` in a
    string inside the condition does not close it; an unmatched ``(`` leaves the condition open to the end of
    the text. A comment between ``if`` and ``(`` hides the ``if``.

    Example::

        >>> inside_if_condition("if (a(b)) c;").astype(int).tolist()
        [0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    """
    tokens = _tokens(text)
    literal_spans = np.concatenate(list(tokens.values()))
    in_literal = span_mask(len(text), literal_spans[:, 0], literal_spans[:, 1])
    # Match every code parenthesis once with a stack: Python work per parenthesis, not per character.
    match_of: dict[int, int] = {}
    stack: list[int] = []
    for match in re.finditer(r"[()]", text):
        pos = match.start()
        if in_literal[pos]:
            continue
        if text[pos] == "(":
            stack.append(pos)
        elif stack:
            match_of[stack.pop()] = pos
    starts, ends = [], []
    for match in _IF_OPEN.finditer(text):
        open_paren = match.end() - 1
        if in_literal[match.start()] or in_literal[open_paren]:
            continue
        previous = match.start() - 1
        while previous >= 0 and text[previous] in " \t":
            previous -= 1
        if previous >= 0 and text[previous] == "#":
            continue
        starts.append(open_paren)
        ends.append(match_of.get(open_paren, len(text)))
    return span_mask(len(text), np.array(starts, np.int64), np.array(ends, np.int64))


for _fn in (inside_comment, inside_string_literal, inside_if_condition):
    # An if condition lies inside parentheses, so a parenthesis unit is the control that an if cell must beat.
    controls = ("inside_parens",) if _fn is inside_if_condition else ()
    register_feature(_fn.__name__, _fn, kind="binary", controls=controls, replace=True)  # replace: reload is harmless
