"""trace_segments: a long text one segment at a time, exactly the trace of the whole."""

from __future__ import annotations

import pytest
import torch

from lstm_interp import trace
from lstm_interp.tracing import Trace, trace_segments
from lstm_interp.vocab import VocabularyError

TEXT = '{a "b"}\nxy. "a" {b {x}}\n' * 9


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("segment", [1, 7, 64, 10_000])
def test_segments_concatenate_to_the_whole_trace(make_model, cell, segment):
    model = make_model(cell=cell, weight_scale=2.0)
    whole = trace(model, TEXT)
    parts = list(trace_segments(model, TEXT, segment))
    assert [start for start, _ in parts] == list(range(0, len(TEXT), segment))
    joined = Trace.concat([tr for _, tr in parts])
    assert joined.text == TEXT and torch.equal(joined.tokens, whole.tokens) and list(joined) == list(whole)
    for name in whole:
        torch.testing.assert_close(joined[name], whole[name], atol=1e-5, rtol=0)
    final = whole.final_state[-1]
    torch.testing.assert_close(
        joined.final_state[-1][0] if cell == "lstm" else joined.final_state[-1],
        final[0] if cell == "lstm" else final,
        atol=1e-5,
        rtol=0,
    )


def test_bad_input_fails_at_the_call_before_any_segment(make_model):
    model = make_model()
    with pytest.raises(VocabularyError, match="'Z'"):
        trace_segments(model, "ab" * 50 + "Z", 10)  # the unknown character is in the last segment
    with pytest.raises(ValueError, match="match no activation name"):
        trace_segments(model, TEXT, 10, names_filter="layers.*.nonsense")
    with pytest.raises(ValueError, match="`segment_chars` must be a positive integer, got 0"):
        trace_segments(model, TEXT, 0)
    with pytest.raises(ValueError, match="empty text"):
        trace_segments(model, "", 10)


def test_segments_of_ids_and_a_filter(make_model):
    model = make_model()
    ids = model.vocab.encode(TEXT)
    parts = [tr for _, tr in trace_segments(model, ids, 50, names_filter="layers.1.cell")]
    assert all(list(tr) == ["layers.1.cell"] for tr in parts) and sum(tr.num_steps for tr in parts) == len(TEXT)
    assert "".join(tr.text for tr in parts) == TEXT  # decoded from the ids with the model's vocabulary
