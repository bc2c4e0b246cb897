"""Every feature's exact value on hand-written strings, every edge pinned, and the registry's contract.

Binary expectations are written as a string of 0/1 under the text, one digit per character, so a failure shows
where the two differ.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_interp.features import (
    FEATURES,
    Feature,
    UnknownFeatureError,
    brace_depth,
    bracket_depth,
    chars_to_line_end,
    compute_feature,
    get_feature,
    indentation,
    inside_comment,
    inside_if_condition,
    inside_quotes,
    inside_string_literal,
    inside_url,
    paren_depth,
    position_in_line,
    register_feature,
    register_regex_feature,
    start_of_word,
)

BUILT_IN = {
    "inside_quotes": "binary",
    "position_in_line": "continuous",
    "chars_to_line_end": "continuous",
    "paren_depth": "continuous",
    "bracket_depth": "continuous",
    "brace_depth": "continuous",
    "indentation": "continuous",
    "inside_url": "binary",
    "start_of_word": "binary",
    "inside_comment": "binary",
    "inside_string_literal": "binary",
    "inside_if_condition": "binary",
}


def bits(values: np.ndarray) -> str:
    assert values.dtype == np.bool_
    return "".join("1" if v else "0" for v in values)


@pytest.fixture
def registry():
    """Restore the registry after a test that adds features."""
    saved = dict(FEATURES)
    yield FEATURES
    FEATURES.clear()
    FEATURES.update(saved)


# ---------------------------------------------------------------------------- text features
@pytest.mark.parametrize(
    ("text", "want"),
    [
        ('a "b" c', "0011000"),  # the opening quote is inside, the closing one outside
        ('say "x\ny" z "w', "00001111000011"),  # a quote spans a newline; an unclosed one runs on
        ('"a\n\nb"', "111001"),  # the second "\n" of a blank line closes the quote
        ('"a\n \t\nb', "1111100"),  # spaces and tabs still make the line blank
        ('"a\r\n\r\nb', "1111100"),  # so does "\r"
        ("it's “x”", "00000000"),  # apostrophes and curly quotes do not count
        ('\n\n"', "001"),
        ("", ""),
    ],
)
def test_inside_quotes(text, want):
    assert bits(inside_quotes(text)) == want


def test_inside_quotes_without_reset():
    assert bits(inside_quotes('"a\n\nb"', reset_at_blank_line=False)) == "111110"


def test_position_in_line_and_chars_to_line_end():
    assert position_in_line("ab\ncd").tolist() == [1, 2, 0, 1, 2]
    assert position_in_line("\n\nx").tolist() == [0, 0, 1]
    assert position_in_line("a\tb").tolist() == [1, 2, 3]  # a tab is one character, not a tab stop
    assert chars_to_line_end("ab\ncd").tolist() == [2, 1, 0, 2, 1]
    assert chars_to_line_end("ab\n").tolist() == [2, 1, 0]
    assert chars_to_line_end("\n\n").tolist() == [0, 0]
    for fn in (position_in_line, chars_to_line_end):
        assert fn("").shape == (0,) and fn("x").dtype == np.float64


@pytest.mark.parametrize(
    ("fn", "text", "want"),
    [
        (paren_depth, "((x))", [1, 2, 2, 1, 0]),
        (paren_depth, "(a)) (", [1, 1, 0, 0, 0, 1]),  # an unmatched ")" is dropped: depth stays >= 0
        (paren_depth, "))((", [0, 0, 1, 2]),
        (paren_depth, '[("(")]', [0, 1, 1, 2, 2, 1, 1]),  # quotes do not hide parentheses; brackets ignored
        (bracket_depth, "a[b[]]]", [0, 1, 1, 2, 1, 0, 0]),
        (bracket_depth, "{[(]", [0, 1, 1, 0]),
        (brace_depth, "{ {x} }", [1, 1, 2, 2, 1, 1, 0]),
        (brace_depth, "}{[", [0, 1, 1]),
    ],
)
def test_depths(fn, text, want):
    assert fn(text).tolist() == want


@given(st.text(alphabet="()a", max_size=60))
def test_paren_depth_matches_a_stack(text):
    depth, want = 0, []
    for char in text:
        depth = depth + 1 if char == "(" else max(depth - 1, 0) if char == ")" else depth
        want.append(depth)
    assert paren_depth(text).tolist() == want


def test_indentation():
    assert indentation("a\n\tb\n  c").tolist() == [0, 0, 8, 8, 8, 2, 2, 2]  # the "\n" belongs to its line
    assert indentation(" \tx", tab_size=4).tolist() == [4, 4, 4]  # the tab moves to the next stop, column 4
    assert indentation("  \t x").tolist() == [9] * 5
    assert indentation("    \n").tolist() == [4] * 5  # a whitespace-only line is all indentation
    assert indentation("\f x\n y").tolist() == [0, 0, 0, 0, 1, 1]  # only spaces and tabs indent
    assert indentation("").shape == (0,)
    with pytest.raises(ValueError, match="`tab_size` must be >= 1, got 0"):
        indentation("x", tab_size=0)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("see http://a.b x", "0000111111111100"),
        ("HTTPS://X.org/p?q=1. y", "1111111111111111111000"),  # the scheme is case-insensitive; trailing "." not
        ("(http://a) b", "011111111000"),  # brackets end it
        ("{(http://a.b/c)}.", "00111111111111000"),  # FOLDOC's form
        ("xhttp://a _http://b", "0000000000000000000"),  # not after a letter, digit or "_"
        ("ftp://a news:c.l;", "11111110111111110"),
        ("gopher://g telnet:t.org mailto:x@y", "1111111111011111111111101111111111"),
        ("see www.a.org, not www. or x.www.b", "0000111111111000000000000000000000"),
        ('"ftp:". http: x', "000000000000000"),  # a scheme alone, quoted or before a space, is not a URL
        ("http://\nx", "111111100"),  # "http://" alone is a URL; a newline ends it
    ],
)
def test_inside_url(text, want):
    assert bits(inside_url(text)) == want


def test_inside_url_has_the_cross_reference_control():
    # On FOLDOC a URL sits inside "{Title (http://...)}": a unit that tracks braces scores well on URLs too, so a URL
    # cell must beat inside_braces as well as no_space_run (issue 23).
    assert get_feature("inside_url").controls == ("no_space_run", "inside_braces")
    assert bits(compute_feature("inside_braces", "{a (http://b.c)} d")) == "111111111111111000"


@pytest.mark.parametrize(
    ("text", "want"),
    [("hi, you2", "10001000"), ("don't x_1", "100010100"), ("été 12ab", "10001000"), ("  ", "00"), ("a", "1")],
)
def test_start_of_word(text, want):
    assert bits(start_of_word(text)) == want


# ---------------------------------------------------------------------------- code features
@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("a/*b*/c//d\ne", "001110001100"),
        ("/**/x", "01100"),
        ("/*/ x */", "01111110"),  # "/*/" does not close the comment
        ("/* a /* b */ */", "011111111110000"),  # comments do not nest
        ("/* abc", "011111"),  # unterminated: open to the end
        ("//a\\\nb\nc", "01111100"),  # a backslash-newline continues a line comment
        ('/* " */ x', "011111000"),  # a quote inside a comment is comment
        ('"/* no */" x', "000000000000"),  # comment markers inside a string are string
        ("'/' / 2", "0000000"),  # and inside a character literal
        ("a / b // c", "0000000111"),
    ],
)
def test_inside_comment(text, want):
    assert bits(inside_comment(text)) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ('x="a\\"b";', "001111100"),  # an escaped quote stays inside; the closing quote is outside
        ('"a\\\\" b"', "11110001"),  # an escaped backslash does not escape the quote after it
        ('"/*" x', "111000"),
        ('/* " */ "s"', "00000000110"),  # a quote inside a comment opens nothing
        ('\'"\' "s"', "0000110"),  # nor does one inside a character literal
        ("'\\'' \"s\"", "00000110"),  # an escaped quote inside a character literal
        ('"ab\nc"', "111001"),  # an unterminated string ends at its line's end; the last quote opens another
        ('"a\\\nb" c', "11111000"),  # a backslash-newline continues the string
        ('"" x', "1000"),
    ],
)
def test_inside_string_literal(text, want):
    assert bits(inside_string_literal(text)) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("if (a(b)) c;", "000111110000"),  # the "(" is inside, the matching ")" outside
        ("if(x)y", "001100"),
        ("if\n  (x)", "00000110"),  # any whitespace between "if" and "("
        ("} else if (a) {", "000000000011000"),
        ("elif (x) endif(x) _if(x) ifdef(x)", "0" * 33),
        ("#if (X)\n# if (Y)", "0" * 16),  # preprocessor conditions do not count
        ("#define F if (a) b", "000000000000011000"),  # an `if` in a macro body does
        ('if (s == ")") x', "000111111111000"),  # a ")" inside a string does not close the condition
        ("if (a /* ) */ && b) c", "000111111111111111000"),  # nor one inside a comment
        ("// if (x)\ny", "00000000000"),
        ('"if (x)" z', "0000000000"),
        ("if (a", "00011"),  # unclosed: open to the end
        (")) if (a)", "000000110"),
        ("if (a &&\n b) {", "00011111111000"),
        ("if /* c */ (x)", "00000000000000"),  # a comment between `if` and "(" hides the `if` (documented)
    ],
)
def test_inside_if_condition(text, want):
    assert len(want) == len(text)
    assert bits(inside_if_condition(text)) == want


def _reference_lexer(text: str) -> tuple[str, str]:
    """(comment bits, string bits) from a character-by-character C state machine, to check the regex lexer."""
    comment, string, state = [], [], "code"
    for char in text:
        if state == "slash" and char in "*/":  # the previous character was a "/" in code
            state = "block" if char == "*" else "line"
        elif state in ("code", "slash"):
            state = {'"': "string", "'": "char", "/": "slash"}.get(char, "code")
        elif state in ("block", "star"):  # "star": inside a block comment, just after a "*"
            state = "code" if state == "star" and char == "/" else "star" if char == "*" else "block"
        elif state == "line":
            state = "code" if char == "\n" else "line_escape" if char == "\\" else "line"
        elif state == "line_escape":  # a backslash-newline continues the comment
            state = "line_escape" if char == "\\" else "line"
        elif state in ("string", "char"):
            closer = '"' if state == "string" else "'"
            state = "code" if char in (closer, "\n") else f"{state}_escape" if char == "\\" else state
        elif state in ("string_escape", "char_escape"):
            state = state.removesuffix("_escape")
        comment.append("1" if state in ("block", "star", "line", "line_escape") else "0")
        string.append("1" if state in ("string", "string_escape") else "0")
    return "".join(comment), "".join(string)


@settings(max_examples=300)
@given(st.text(alphabet="/*\"'\\\na", max_size=40))
def test_code_features_match_a_state_machine(text):
    want_comment, want_string = _reference_lexer(text)
    assert bits(inside_comment(text)) == want_comment
    assert bits(inside_string_literal(text)) == want_string


# ---------------------------------------------------------------------------- registry
def test_builtin_features_are_registered_with_their_kinds():
    assert {name: FEATURES[name].kind for name in BUILT_IN} == BUILT_IN
    text = 'if (x) { y = "a/* b"; } // http://c.d\n  [e] "f"'
    for name, feature in FEATURES.items():
        values = compute_feature(name, text)
        assert values.shape == (len(text),)
        assert values.dtype == (np.bool_ if feature.kind == "binary" else np.float64), name
        assert compute_feature(name, "").shape == (0,)
        assert feature.description, name


def test_unknown_feature_lists_the_known_ones():
    with pytest.raises(
        UnknownFeatureError, match=r"unknown feature 'inside_quote' \(did you mean 'inside_quotes'"
    ) as err:
        get_feature("inside_quote")
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)
    for name in BUILT_IN:
        assert repr(name) in str(err.value)
    with pytest.raises(KeyError, match="the known features are"):
        compute_feature("nope", "text")


def test_register_feature(registry):
    def vowels(text: str) -> np.ndarray:
        """Vowels, one per character."""
        return np.array([c in "aeiou" for c in text])

    feature = register_feature("vowel", vowels, kind="binary")
    assert get_feature("vowel") is feature and feature.description == "Vowels, one per character."
    assert bits(feature("bat")) == "010"
    with pytest.raises(ValueError, match="already registered"):
        register_feature("vowel", vowels, kind="binary")
    assert register_feature("vowel", vowels, kind="binary", replace=True, description="v").description == "v"
    with pytest.raises(ValueError, match="`kind` must be one of \\['binary', 'continuous'\\], got 'bool'"):
        register_feature("x", vowels, kind="bool")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be callable"):
        register_feature("x", "not a function", kind="binary")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty string"):
        register_feature("", vowels, kind="binary")


def test_register_regex_feature(registry):
    feature = register_regex_feature("number", r"[0-9]+(\.[0-9]+)?")
    assert isinstance(feature, Feature) and feature.kind == "binary"
    assert bits(compute_feature("number", "x 3.14 y 2")) == "0011110001"
    assert bits(register_regex_feature("stars", "x*")("axxb")) == "0110"  # empty matches mark nothing
    assert bits(register_regex_feature("word", "AB", flags=2)("ab ab")) == "11011"  # re.IGNORECASE
    with pytest.raises(ValueError, match="invalid regular expression"):
        register_regex_feature("bad", "(")


def test_compute_feature_checks_what_functions_return(registry):
    assert compute_feature(lambda t: [c == "a" for c in t], "ab").dtype == np.bool_
    assert compute_feature(lambda t: np.arange(len(t)), "ab").dtype == np.float64
    register_feature("ints", lambda t: np.ones(len(t), int), kind="binary")
    assert compute_feature("ints", "ab").dtype == np.bool_  # 0/1 numbers of a binary feature become bools
    register_feature("twos", lambda t: np.full(len(t), 2), kind="binary")
    with pytest.raises(ValueError, match="values other than 0 and 1"):
        compute_feature("twos", "ab")
    with pytest.raises(ValueError, match=r"returned shape \(1,\) for a text of 2 characters"):
        compute_feature(lambda t: np.zeros(1), "ab")
    with pytest.raises(ValueError, match="1 non-finite"):
        compute_feature(lambda t: np.array([0.0, np.nan]), "ab")
    with pytest.raises(TypeError, match="`text` must be a string"):
        compute_feature("paren_depth", b"()")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`feature` must be a name"):
        compute_feature(3, "ab")  # type: ignore[arg-type]
