"""``ResumableTrace``: an edited text retraced from the chunk holding its first change, bit for bit a full trace."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import TINY_VOCAB, tiny_char_lstm

from lstm_interp.tracing import trace
from lstm_interp.tracing.resumable_trace import ResumableTrace
from lstm_interp.vocab import VocabularyError


def random_text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(TINY_VOCAB) for _ in range(n))


def edit(rng: random.Random, text: str) -> str:
    """One edit a reader makes: type or delete at the end, replace, insert or delete in the middle, paste."""
    kind = rng.choice(["append", "append", "append", "backspace", "replace", "insert", "cut", "paste"])
    at = rng.randrange(len(text) + 1)
    if kind == "append":
        return text + rng.choice(TINY_VOCAB)
    if kind == "backspace" and len(text) > 1:
        return text[:-1]
    if kind == "replace" and at < len(text):
        return text[:at] + rng.choice(TINY_VOCAB) + text[at + 1 :]
    if kind == "insert":
        return text[:at] + random_text(rng, rng.randint(1, 5)) + text[at:]
    if kind == "cut" and len(text) > 10:
        return text[:at] + text[at + rng.randint(1, 9) :] or text
    return text + random_text(rng, rng.randint(20, 90))


def states_equal(a: list, b: list) -> bool:
    return all(
        all(torch.equal(x, y) for x, y in zip(sa, sb, strict=True)) if isinstance(sa, tuple) else torch.equal(sa, sb)
        for sa, sb in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("every", [1, 7, 32])
def test_random_edits_give_the_full_trace_bit_for_bit(cell: str, every: int) -> None:
    model = tiny_char_lstm(cell=cell, weight_scale=2.0)
    names = "*" if cell == "lstm" else ["layers.0.update_gate", "layers.1.hidden", "log_probs"]
    editing = ResumableTrace(model, names_filter=names, every=every)
    rng = random.Random(every)
    text = random_text(rng, 50)
    assert editing.update(text)[1] == 0
    for _ in range(60):
        previous, text = text, edit(rng, text)
        result, start = editing.update(text)
        full = trace(model, text, names_filter=names, chunk_size=every)
        assert list(result) == list(full)
        assert all(torch.equal(result[name], full[name]) for name in full), (previous, text)
        assert states_equal(result.final_state, full.final_state)
        assert result.text == text
        # It resumed at a chunk boundary at or before the first changed character, never later.
        pairs = enumerate(zip(previous, text, strict=False))  # up to the shorter
        changed = next((i for i, (a, b) in pairs if a != b), min(len(previous), len(text)))
        assert start % every == 0 or start == len(text)
        assert start <= changed or (start == len(text) == len(previous) and previous == text)
        if text.startswith(previous):  # typing at the end costs at most the last chunk
            assert start >= (len(previous) // every) * every


def test_an_appended_character_retraces_one_chunk_at_most() -> None:
    model = tiny_char_lstm()
    editing = ResumableTrace(model, names_filter="layers.1.cell", every=16)
    text = random_text(random.Random(0), 1000)
    assert editing.update(text)[1] == 0
    for extra in "ab{":
        text += extra
        _, start = editing.update(text)
        assert len(text) - start <= 16
    assert editing.update(text)[1] == len(text)  # the same text again: nothing traced


def test_typing_after_a_paste_does_not_copy_the_trace() -> None:
    # Growing the buffers copies every kept row: the first characters typed after a paste must find room.
    model = tiny_char_lstm()
    editing = ResumableTrace(model, names_filter=["layers.1.cell", "log_probs"], every=16)
    rng = random.Random(1)
    text = random_text(rng, 2000)
    editing.update(text)
    kept = {name: buffer.data_ptr() for name, buffer in editing._buffers.items()}
    for _ in range(200):
        text += rng.choice(TINY_VOCAB)
        result, _ = editing.update(text)
    assert {name: buffer.data_ptr() for name, buffer in editing._buffers.items()} == kept
    full = trace(model, text, names_filter=["layers.1.cell", "log_probs"], chunk_size=16)
    assert all(torch.equal(result[name], full[name]) for name in full)


def test_a_stopped_update_leaves_what_is_still_valid() -> None:
    """A deadline (``check`` raising) part way: the next update resumes correctly, and never from what was cut."""
    model = tiny_char_lstm(weight_scale=2.0)
    editing = ResumableTrace(model, names_filter=["layers.0.cell", "log_probs"], every=8)
    rng = random.Random(3)
    text = random_text(rng, 200)
    editing.update(text)
    calls = 0

    def deadline() -> None:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise TimeoutError("deadline")

    edited = text[:50] + "xy" + text[50:]
    with pytest.raises(TimeoutError):
        editing.update(edited, check=deadline)
    for attempt in (edited, text, edited + "ab"):
        result, _ = editing.update(attempt)
        full = trace(model, attempt, names_filter=["layers.0.cell", "log_probs"], chunk_size=8)
        assert torch.equal(result["layers.0.cell"], full["layers.0.cell"])
        assert torch.equal(result["log_probs"], full["log_probs"])


def test_bad_arguments_are_named() -> None:
    model = tiny_char_lstm()
    with pytest.raises(ValueError, match=r"`every` must be an integer >= 1 \(characters per chunk\), got 0"):
        ResumableTrace(model, every=0)
    with pytest.raises(ValueError, match="`every` must be an integer >= 1"):
        ResumableTrace(model, every=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`model` must be a CharLSTM, got Linear"):
        ResumableTrace(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="match no activation name"):
        ResumableTrace(model, names_filter="layers.9.cell")
    editing = ResumableTrace(model, names_filter="log_probs")
    with pytest.raises(VocabularyError):
        editing.update("abQ")
    with pytest.raises(ValueError, match="empty text"):
        editing.update("")
    assert editing.update("ab Qx", on_unknown="skip")[0].text == "ab x"
