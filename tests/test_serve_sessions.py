"""The explorer's sessions: a keystroke retraces from the first changed character, and the page gets the same
numbers as a full retrace (``lstm_interp.serve.sessions``). The browser's side is in test_serve.py."""

from __future__ import annotations

import base64
import random
from typing import Any

import numpy as np
import pytest
from conftest import TINY_VOCAB, tiny_char_lstm

from lstm_interp.serve.api_error import ApiError
from lstm_interp.serve.explorer import EDIT_CHUNK, Explorer
from lstm_interp.serve.sessions import Sessions

SESSION = "page-0123456789abcdef"


class Page:
    """What the page does with trace responses: keep the last, splice a partial one onto it."""

    def __init__(self) -> None:
        self.codes: np.ndarray | None = None  # (H, T)
        self.top: list[Any] = []
        self.version: int | None = None
        self.partial = 0

    def apply(self, response: dict[str, Any]) -> None:
        fresh = np.frombuffer(base64.b64decode(response["values"]), dtype=np.uint8)
        fresh = fresh.reshape(response["hidden_size"], response["steps"] - response["from"])
        if response["from"] > 0:
            assert self.codes is not None
            fresh = np.concatenate([self.codes[:, : response["from"]], fresh], axis=1)
            self.top = self.top[: response["from"]] + response["top"]
            self.partial += 1
        else:
            self.top = response["top"]
        self.codes, self.version = fresh, response["version"]


def request(text: str, **more: Any) -> dict[str, Any]:
    return {"text": text, "layer": "layers.1", "quantity": "cell", **more}


def full(explorer: Explorer, text: str) -> dict[str, Any]:
    response = explorer.trace_response(request(text))
    assert response["from"] == 0 and response["version"] is None
    return response


def test_random_edits_give_the_page_the_full_retrace() -> None:
    model = tiny_char_lstm(weight_scale=2.5)
    explorer = Explorer(model, [], [0.3], 5_000)
    page = Page()
    rng = random.Random(0)
    text = "".join(rng.choice(TINY_VOCAB) for _ in range(300))
    for step in range(80):
        at = rng.randrange(len(text))
        text = rng.choice([
            text + rng.choice(TINY_VOCAB),  # typing at the end, most often
            text + rng.choice(TINY_VOCAB),
            text[:-1],
            text[:at] + rng.choice(TINY_VOCAB) + text[at + 1 :],  # an edit in the middle
            text[:at] + "Q" + text[at:],  # a character outside the vocabulary: shown, not traced
        ])  # fmt: skip
        response = explorer.trace_response(request(text, session=SESSION, base=page.version))
        page.apply(response)
        expected = full(explorer, text)
        whole = np.frombuffer(base64.b64decode(expected["values"]), dtype=np.uint8).reshape(page.codes.shape)
        assert np.array_equal(page.codes, whole), step
        assert page.top == expected["top"] and response["loss"] == expected["loss"]
        assert response["chars"] == list(text) and response["unknown"] == expected["unknown"]
    assert page.partial > 40  # most responses carried only the steps after the first change


def test_a_response_is_partial_only_when_the_page_holds_the_last() -> None:
    explorer = Explorer(tiny_char_lstm(), [], [0.3], 5_000)
    text = "ab {xy} " * 20
    first = explorer.trace_response(request(text, session=SESSION))
    assert first["from"] == 0 and first["version"] is not None
    appended = explorer.trace_response(request(text + "a", session=SESSION, base=first["version"]))
    assert appended["from"] == (len(text) // EDIT_CHUNK) * EDIT_CHUNK > 0
    assert len(appended["top"]) == len(text) + 1 - appended["from"]
    # The page dropped `appended` (a later keystroke's was on its way): it names `first`, and gets everything.
    again = explorer.trace_response(request(text + "ab", session=SESSION, base=first["version"]))
    assert again["from"] == 0 and len(again["top"]) == len(text) + 2
    # Another layer is another entry: a base from the first never matches it.
    other = explorer.trace_response(request(text, session=SESSION, base=again["version"], layer="layers.0"))
    assert other["from"] == 0
    # Under interventions the whole text comes back, and no version (the next request names no base).
    clamped = explorer.trace_response(request(
        text, session=SESSION, base=other["version"],
        interventions=[{"op": "clamp", "name": "layers.1.cell", "units": [0], "value": 0.5}],
    ))  # fmt: skip
    assert clamped["from"] == 0 and clamped["version"] is None and "base_top" in clamped


def test_sessions_are_bounded_and_evicted_least_recently_used() -> None:
    model = tiny_char_lstm()
    sessions = Sessions(model, every=8, max_sessions=2, max_entries=1)
    a = sessions.entry("session-a", ["log_probs"])
    sessions.entry("session-b", ["log_probs"])
    assert sessions.entry("session-a", ["log_probs"]) is a  # kept, and now the most recently used
    sessions.entry("session-c", ["log_probs"])  # evicts b
    assert len(sessions) == 2 and sessions.entry("session-a", ["log_probs"]) is a
    assert sessions.entry("session-a", ["layers.0.cell"]) is not a  # one entry per session: a's first is evicted
    assert sessions.entry("session-a", ["log_probs"]) is not a
    assert sessions.entry(None, ["log_probs"]) is not sessions.entry(None, ["log_probs"])  # no session: not kept
    with pytest.raises(ValueError, match="`max_sessions` must be an integer >= 1, got 0"):
        Sessions(model, max_sessions=0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"session": "short"}, "`session` must be 8 to 64 letters, digits, '-' or '_', got 'short'"),
        ({"session": "a b c d e f g h"}, "`session` must be 8 to 64"),
        ({"session": 12345678}, "`session` must be 8 to 64"),
        ({"session": SESSION, "base": "3"}, "`base` must be a trace response's version (an integer >= 1) or null"),
        ({"session": SESSION, "base": 0}, "`base` must be"),
    ],
)
def test_bad_session_fields_are_named(fields: dict[str, Any], message: str) -> None:
    explorer = Explorer(tiny_char_lstm(), [], [0.3], 5_000)
    with pytest.raises(ApiError) as raised:
        explorer.trace_job(request("ab", **fields))
    assert raised.value.status == 400 and message in str(raised.value)
