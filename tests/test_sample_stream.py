"""``write_samples`` and ``write_stream`` (``lstm_interp/models/sample_stream.py``): samples written as drawn."""

from __future__ import annotations

import io

import pytest

from lstm_interp.models import sample_stream
from lstm_interp.models.sample_stream import (
    FLUSH_CHARS,
    PROGRESS_MIN_LENGTH,
    default_prompt,
    write_samples,
    write_stream,
)
from lstm_interp.vocab import CharVocab, VocabularyError

pytestmark = pytest.mark.usefixtures("one_thread")


class CountingStream(io.StringIO):
    """A StringIO that records what it held at each flush."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[str] = []

    def flush(self) -> None:
        self.flushed.append(self.getvalue())


def test_default_prompt_is_a_newline_when_the_vocabulary_has_one() -> None:
    assert default_prompt(CharVocab("ab\n")) == "\n"
    assert default_prompt(CharVocab("xa")) == "x"


def test_one_temperature_writes_the_sample_alone(make_model) -> None:
    model = make_model()
    out = io.StringIO()
    write_samples(model, 30, out, seed=3)
    expected = model.generate(default_prompt(model.vocab), 30, seed=3, include_prompt=False)
    assert out.getvalue() == expected + "\n"  # the default prompt is a starting point, not written


def test_several_temperatures_get_headers_and_the_given_prompt(make_model) -> None:
    model = make_model()
    out = io.StringIO()
    write_samples(model, 12, out, prompt="ab", temperatures=[0.5, 1.0], top_k=3, seed=1)
    first = model.generate("ab", 12, temperature=0.5, top_k=3, seed=1)
    second = model.generate("ab", 12, temperature=1.0, top_k=3, seed=1)
    assert out.getvalue() == f"----- temperature 0.5 -----\n{first}\n\n----- temperature 1 -----\n{second}\n"


def test_a_prompt_outside_the_vocabulary_writes_nothing(make_model) -> None:
    out = io.StringIO()
    with pytest.raises(VocabularyError):
        write_samples(make_model(), 5, out, prompt="Z", temperatures=[0.5, 1.0])
    assert out.getvalue() == ""


@pytest.mark.parametrize(
    ("temperatures", "error", "message"),
    [([], ValueError, "`temperatures` is empty"), (0.5, TypeError, "a sequence of numbers, got float"),
     ("1", TypeError, "a sequence of numbers, got str"), ([1.0, "hot"], TypeError, "must hold numbers, got 'hot'")],
)  # fmt: skip
def test_bad_temperatures_are_refused_before_any_sampling(make_model, temperatures, error, message) -> None:
    out = io.StringIO()
    with pytest.raises(error, match=message):
        write_samples(make_model(), 5, out, temperatures=temperatures)
    assert out.getvalue() == ""


def test_write_stream_flushes_at_newlines_and_every_flush_chars() -> None:
    out = CountingStream()
    text = "ab\n" + "x" * (FLUSH_CHARS + 5)
    write_stream(iter(text), len(text), out)
    assert out.getvalue() == text
    assert out.flushed[:2] == ["ab\n", "ab\n" + "x" * FLUSH_CHARS]  # at the newline, then a full buffer


def test_long_samples_report_progress_at_each_tenth(monkeypatch: pytest.MonkeyPatch) -> None:
    quiet = io.StringIO()
    write_stream(iter("y" * (PROGRESS_MIN_LENGTH - 1)), PROGRESS_MIN_LENGTH - 1, io.StringIO(), quiet)
    assert quiet.getvalue() == ""
    monkeypatch.setattr(sample_stream, "PROGRESS_MIN_LENGTH", 20)
    progress = io.StringIO()
    write_stream(iter("y" * 20), 20, io.StringIO(), progress)
    lines = progress.getvalue().splitlines()
    assert len(lines) == 10 and lines[0].startswith("sample: 2 / 20 characters (")
    assert lines[-1].startswith("sample: 20 / 20 characters (")
