"""Where the live explorer opens: a passage and the unit that tracks a feature of it best (``GET /api/initial``).

The page must open on something a reader can see switch, never on an empty box showing unit 0:

- **With a corpus**, a passage of the first one: of its first :data:`CORPUS_SCAN_CHARS` characters, every registered
  feature that varies there gets its busiest window (:func:`~lstm_interp.features.busiest_window`, the stretch
  where it changes most) of :data:`PASSAGE_CHARS` characters, moved to start at a line start
  (:func:`passage_bounds`); each window is traced from the zero state, as the page traces it, and its feature's best
  unit on it ranked by :func:`~lstm_interp.analysis.find_cells.row_rank` (find_cells's rule: a unit that visibly
  switches, and beats the feature's controls, first; then strength). The best-tracked feature's window is the
  passage.
- **Without one**, a built-in probe text (:data:`PROBES`, prose with dialogue and a parenthesis, and C code): of
  those whose characters the model knows at least :data:`MIN_PROBE_KNOWN` of (the others are dropped, as the trace
  skips them), the one the model predicts best (lowest loss per character). A model that knows too few of them
  opens on :data:`SAMPLE_CHARS` characters it samples itself (seed 0): a text it can always encode.

The unit shown is the page's own feature list's first: the first unit of the first feature of
:meth:`~lstm_interp.serve.explorer.Explorer.feature_rows` on the passage, in the state quantity. If that unit is flat
(no feature has a unit that visibly switches on the passage), the next candidate passage is tried; if none has one,
the page opens on the first passage and the unit whose displayed value varies most on it
(:func:`most_varied_unit`, flat units last), with no feature.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lstm_interp.analysis import find_cells
from lstm_interp.analysis.control_scores import usable_controls
from lstm_interp.analysis.find_cells import row_rank
from lstm_interp.features import FEATURES, ConstantFeatureError, busiest_window, feature_values
from lstm_interp.tracing import Trace
from lstm_interp.tracing.most_variable_units import flat_units
from lstm_interp.tracing.quantities import display_values

if TYPE_CHECKING:
    from lstm_interp.serve.explorer import Explorer

PASSAGE_CHARS = 400  # a few lines of prose: the page shows them whole, and they trace in well under a second
# busiest_window is O(chars * window) for a continuous feature: 20,000 characters keep the whole opening (windows,
# one trace per window, the rankings) to a few seconds for the 2x512 models on 2 cores.
CORPUS_SCAN_CHARS = 20_000
MIN_PROBE_KNOWN = 0.9
SAMPLE_CHARS = 300
PANEL_TOP = 3  # the units per feature the page's list asks for: the opening unit is that list's first

PROSE_PROBE = (
    '"You are late again," said the old prince, without looking up from his letters. "Sit down."\n'
    "Andrew sat down by the window (the one that looked out on the avenue) and waited.\n"
    '"I had a letter from Moscow," the prince went on. "They say the army will march in May."\n'
    "For a while neither of them spoke; then the clock struck three, and the servant came in.\n"
)
CODE_PROBE = (
    "static int count_quotes(const char *s, size_t len)\n"
    "{\n"
    "\tint n = 0;\n"
    "\n"
    "\t/* a quote after a backslash is escaped: it does not count */\n"
    "\tfor (size_t i = 0; i < len; i++) {\n"
    "\t\tif (s[i] == '\"' && (i == 0 || s[i - 1] != '\\\\'))\n"
    "\t\t\tn++;\n"
    "\t}\n"
    '\tprintk(KERN_INFO "counted %d quotes\\n", n);\n'
    "\treturn n;\n"
    "}\n"
)
PROBES = (PROSE_PROBE, CODE_PROBE)


@dataclass(frozen=True)
class Candidate:
    """A passage the page could open on, and where it comes from."""

    text: str
    source: str  # "corpus", "probe" or "sample"
    corpus: int | None = None
    span: tuple[int, int] | None = None  # [start, end) in the corpus's characters
    feature: str | None = None  # the feature whose busiest window the passage is


def passage_bounds(text: str, start: int, length: int) -> tuple[int, int]:
    """``[begin, end)``: about ``length`` characters of ``text`` from near ``start``, starting at a line start.

    The passage starts at the start of the line holding ``start`` if that is at most ``length // 2`` characters
    back (so the window's busy part stays in view), else at the next line start within ``length // 2``, else (one
    long line) at the start of the word holding ``start``. It ends at the last line end, else word end, of its
    final third, so that no word is cut; or at the end of ``text``.

    Example::

        >>> passage_bounds("one\\ntwo three four\\nfive", 6, 12)  # from its line's start to a word's end
        (4, 13)
    """
    if not 0 <= start <= len(text):
        raise ValueError(f"`start` must lie in the text's characters 0 .. {len(text)}, got {start}")
    half = length // 2
    line = text.rfind("\n", 0, start) + 1
    if start - line <= half:
        begin = line
    else:
        following = text.find("\n", start, start + half)
        if following != -1:
            begin = following + 1
        else:  # inside one long line: back to the start of the word (after the last whitespace before `start`)
            spaces = [m.end() for m in re.finditer(r"\s", text[max(0, start - half) : start])]
            begin = max(0, start - half) + spaces[-1] if spaces else start
    end = min(begin + length, len(text))
    if end < len(text):
        floor = begin + (2 * length) // 3
        cut = text.rfind("\n", floor, end)
        if cut == -1:
            cut = max(text.rfind(" ", floor, end), text.rfind("\t", floor, end))
        if cut != -1:
            end = cut
    return begin, end


def read_head(corpus: str | Path, chars: int) -> str:
    """The first ``chars`` characters of a corpus text or UTF-8 file (read as the index reads it: no newline
    translation, so that offsets are the index's)."""
    if isinstance(corpus, str):
        return corpus[:chars]
    with open(corpus, encoding="utf-8", newline="") as f:
        return f.read(chars)


def initial_state(explorer: Explorer) -> dict[str, Any]:
    """The page's opening: the passage, and the layer, quantity and unit to show on it (see the module docstring).

    It is :func:`opening_steps` run to its end.

    Returns:
        ``text``, ``source`` (``"corpus"``, ``"probe"`` or ``"sample"``), ``corpus`` and ``corpus_name`` (or
        ``None``), ``span`` (``[start, end)`` in the corpus's characters, or ``None``), ``window_feature`` (the
        feature whose busiest window it is, or ``None``), ``layer``, ``quantity``, ``unit``, ``feature`` (the
        feature the unit tracks, ``None`` for the most-variable fallback), ``row`` (its
        :meth:`~lstm_interp.analysis.CellScore.to_dict` plus ``strength``, or ``None``) and ``reason``, one
        sentence for the page.
    """
    steps = opening_steps(explorer)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def opening_steps(explorer: Explorer) -> Generator[None, None, dict[str, Any]]:
    """:func:`initial_state` in steps of one passage traced each: a generator that yields between them and returns
    the opening. The server runs one step at a time on the model's thread, so that a reader's requests made
    meanwhile are answered between steps rather than after the whole opening (seconds with a corpus on 2 cores)."""
    length = min(PASSAGE_CHARS, explorer.max_text_chars)
    candidates = (yield from _corpus_candidates(explorer, length)) if explorer.corpora else []
    if not candidates:
        candidates = yield from _probe_candidates(explorer, length)
    quantity = explorer.state_quantity
    names = [f"{layer}.{quantity}" for layer in explorer.layers]
    first: tuple[Candidate, Trace] | None = None
    for candidate in candidates:
        _, known = explorer.known(candidate.text)
        if len(known) < 2:
            continue
        yield
        result = explorer.run(known, names)
        first = first or (candidate, result)
        rows, _ = explorer.feature_rows(result, known, quantity, PANEL_TOP)
        if rows and rows[0]["units"][0]["visible"]:
            best = rows[0]["units"][0]
            return _state(explorer, candidate, best["layer"], best["unit"], rows[0]["feature"], best)
    if first is None:  # every candidate is outside the vocabulary: only a sample is left, and it is known
        candidate = _sample(explorer, length)
        first = (candidate, explorer.run(candidate.text, names))
    candidate, result = first
    layer, unit = most_varied_unit(result, quantity)
    return _state(explorer, candidate, layer, unit, None, None)


def most_varied_unit(result: Trace, quantity: str) -> tuple[str, int]:
    """The (layer, unit) whose displayed value varies most over ``result``, preferring one that is not flat
    (:func:`~lstm_interp.tracing.most_variable_units.flat_units`): what to show when no unit switches with a
    feature, rather than a solid band. Ties keep layer, then unit, order."""
    ranked = []
    for i, layer in enumerate(result.layer_names):
        shown = torch.nan_to_num(display_values(result[f"{layer}.{quantity}"], quantity), nan=0.0)  # (T, H)
        variance = shown.var(dim=0, correction=0) if len(shown) > 1 else torch.zeros(shown.shape[1])
        flat = flat_units(shown)
        ranked += [(bool(flat[u]), -float(variance[u]), i, u) for u in range(shown.shape[1])]
    _, _, i, unit = min(ranked)
    return result.layer_names[i], unit


def _state(
    explorer: Explorer, candidate: Candidate, layer: str, unit: int, feature: str | None, row: dict[str, Any] | None
) -> dict[str, Any]:
    if candidate.source == "corpus":
        assert candidate.corpus is not None and candidate.span is not None
        name = explorer.corpus_names[candidate.corpus]
        where = f"{name}, characters {candidate.span[0]}..{candidate.span[1]}"
        if candidate.feature:
            where += f", the stretch of its start where {candidate.feature} changes most"
    elif candidate.source == "probe":
        where = "a built-in probe text (no corpus given)"
    else:
        where = f"{len(candidate.text)} characters the model sampled (it knows too few of the probe texts' characters)"
    if row is not None:
        metric = "AUC" if row["metric"] == "auc" else "|r|"
        effect = "" if row["effect"] is None else f", effect {row['effect']:+.2f} on the -1..+1 scale"
        why = f"{layer}:{unit} tracks {feature} best ({metric} {row['score']:.2f}{effect})"
    else:
        why = f"no unit visibly switches with a feature here; {layer}:{unit} varies most"
    return {
        "text": candidate.text, "source": candidate.source, "corpus": candidate.corpus,
        "corpus_name": None if candidate.corpus is None else explorer.corpus_names[candidate.corpus],
        "span": None if candidate.span is None else list(candidate.span), "window_feature": candidate.feature,
        "layer": layer, "quantity": explorer.state_quantity, "unit": unit, "feature": feature, "row": row,
        "reason": f"Opened on {where}: {why}.",
    }  # fmt: skip


def _corpus_candidates(explorer: Explorer, length: int) -> Generator[None, None, list[Candidate]]:
    """Each varying feature's busiest passage of the first corpus, best-tracked feature first; then its start."""
    head = read_head(explorer.corpora[0], CORPUS_SCAN_CHARS)
    if not head:
        return []
    names = [f"{layer}.{explorer.state_quantity}" for layer in explorer.layers]
    ranked: list[tuple[tuple[int, float], Candidate]] = []
    traced: dict[tuple[int, int], tuple[str, Trace]] = {}
    for feature in FEATURES.values():
        yield  # a continuous feature's busiest window takes ~0.1-0.2 s of the 20,000 characters
        try:
            window = busiest_window(feature_values(feature, head), length)
        except ConstantFeatureError:
            continue
        span = passage_bounds(head, window.start, length)
        _, known = explorer.known(head[span[0] : span[1]])
        if len(known) < 2:
            continue
        if span not in traced:  # several features often share a window (position_in_line, chars_to_line_end)
            yield
            traced[span] = (known, explorer.run(known, names))
        result = traced[span][1]
        try:
            values = feature_values(feature, known)
        except ConstantFeatureError:  # the line-start shift moved the window off its changes
            continue
        controls, _ = usable_controls(feature, values, known)
        top = find_cells(result, values, explorer.state_quantity, 1, kind=feature.kind, label=feature.name,
                         controls=controls)[0]  # fmt: skip
        key = row_rank(top.to_dict())
        ranked.append((key, Candidate(head[span[0] : span[1]], "corpus", 0, span, feature.name)))
    ranked.sort(key=lambda pair: pair[0])  # stable: ties keep the registry's order
    start = passage_bounds(head, 0, length)
    return [c for _, c in ranked] + [Candidate(head[start[0] : start[1]], "corpus", 0, start)]


def _probe_candidates(explorer: Explorer, length: int) -> Generator[None, None, list[Candidate]]:
    """The probes the model knows enough of (unknown characters dropped), lowest loss first; then a sample."""
    scored: list[tuple[float, Candidate]] = []
    for probe in PROBES:
        _, known = explorer.known(probe)
        if len(known) < max(2, MIN_PROBE_KNOWN * len(probe)):
            continue
        known = known[:length]
        yield
        result = explorer.run(known, ["log_probs"])
        ids = explorer.vocab.encode(known)
        loss = -result["log_probs"].to(torch.float32)[:-1].gather(1, ids[1:, None].long()).mean().item()
        scored.append((loss if np.isfinite(loss) else float("inf"), Candidate(known, "probe")))
    scored.sort(key=lambda pair: pair[0])
    return [c for _, c in scored] + [_sample(explorer, length)]


def _sample(explorer: Explorer, length: int) -> Candidate:
    chars = explorer.vocab.chars
    prompt = "\n" if "\n" in chars else chars[0]
    with explorer.lock:  # generate sets the model's eval mode, like a trace
        text = explorer.model.generate(prompt, min(SAMPLE_CHARS, length), seed=0, include_prompt=False)
    return Candidate(text, "sample")
