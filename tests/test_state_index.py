"""``StateIndex``: streamed building equals one trace, the folder's checks, and LSTMVis's match on known answers.

The known answer is a hand-built one-layer LSTM whose unit 0 toggles at every '"': its cell is about +1 from an
opening quote to the character before the closing one and about -1 elsewhere (0 before the first quote), so the
spans where it is on are exactly the quoted spans, opening quote included. Unit 1 is on everywhere, the other units
never.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from conftest import tiny_char_lstm

from lstm_interp.analysis.select_cells import select_cells
from lstm_interp.analysis.state_index import Match, StateIndex
from lstm_interp.manifest import ManifestError, text_provenance
from lstm_interp.tracing import trace
from lstm_interp.vocab import CharVocab, VocabularyError

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = 'ab "x y" ab.\n{a "b" x} y "ab" .\n' * 6 + 'a "" b "x""y" a.'


def quote_model():
    model = tiny_char_lstm(num_layers=1, hidden_size=8, embedding_size=4, seed=1)
    layer, H, quote = model.layers[0], 8, model.vocab.chars.index('"')
    with torch.no_grad():
        model.embedding.weight.zero_()
        model.embedding.weight[quote, 0] = 1.0  # input dimension 0 is "this is a quote"
        layer.weight_ih_l0.zero_()
        layer.weight_hh_l0.zero_()
        layer.bias_hh_l0.zero_()
        bias = layer.bias_ih_l0
        bias.fill_(-20.0)  # every gate of every unit shut, candidate -1: units 2..7 stay at 0, never on
        for gate, (weight, offset) in enumerate([(40.0, -20.0), (-40.0, 20.0), (0.0, 1.0), (0.0, 20.0)]):
            layer.weight_ih_l0[gate * H, 0] = weight  # unit 0: i, f, g, o
            bias[gate * H] = offset
        # At a quote the forget gate shuts, the input gate opens and the candidate is tanh(1 - 10 h): the sign flips.
        layer.weight_hh_l0[2 * H, 0] = -10.0
        bias[[1, H + 1, 2 * H + 1, 3 * H + 1]] = 20.0  # unit 1: every gate open, candidate +1: c grows, always on
    return model


def quoted_spans(text: str) -> list[tuple[int, int]]:
    """[opening quote, closing quote) of every quoted passage."""
    quotes = [i for i, c in enumerate(text) if c == '"']
    return list(zip(quotes[0::2], quotes[1::2], strict=True))


def lstmvis_match(on: np.ndarray, cells: list[int], top: int, min_length=2, off_before=False, off_after=False):
    """A direct port of LSTMVis's query_similar_activations (no step or candidate cap): (start, end, inter, union)."""
    T = on.shape[1]
    count = on[cells].sum(0)
    candidates = set()
    for k in range(len(cells), 0, -1):
        clipped = np.minimum(count, k)
        t = 0
        while t < T:  # run-length encoding of the clipped count
            u = t
            while u < T and clipped[u] == clipped[t]:
                u += 1
            if clipped[t] == k and u - t >= min_length:
                candidates.add((t, u))
            t = u
    rows = []
    for start, end in candidates:
        active = on[:, start:end].all(1)
        if off_before and start > 0:
            active &= ~on[:, start - 1]
        if off_after and end < T:
            active &= ~on[:, end]
        inter = int(active[cells].sum())
        union = len(set(cells) | set(np.flatnonzero(active).tolist()))
        if inter:
            rows.append((-inter, union, -(end - start), start, end))
    return [(s, e, -i, u) for i, u, _, s, e in sorted(rows)[:top]]


@pytest.fixture(scope="module")
def quote_index(tmp_path_factory):
    return StateIndex.build(quote_model(), TEXT, tmp_path_factory.mktemp("quotes") / "index", chunk_chars=16)


def test_the_hand_built_unit_is_on_exactly_inside_quotes(quote_index):
    on = quote_index.bits("layers.0.cell")
    inside = np.zeros(len(TEXT), dtype=bool)
    for start, end in quoted_spans(TEXT):
        inside[start:end] = True
    assert (on[0] == inside).all() and on[1].all() and not on[2:].any()


def test_match_finds_the_quoted_spans_longest_first(quote_index):
    tr = trace(quote_model(), TEXT)
    start, end = quoted_spans(TEXT)[0]
    cells = select_cells(tr, (start, end))
    assert cells == [("layers.0", 0)]  # unit 1 is on before the span too, so it is not selected
    matches = quote_index.match(cells, top=100)
    spans = sorted(quoted_spans(TEXT), key=lambda span: (span[0] - span[1], span[0]))
    assert [(m.start, m.end) for m in matches] == [span for span in spans if span[1] - span[0] >= 2]
    first = matches[0]
    assert first.cells == (("layers.0", 0), ("layers.0", 1))  # the always-on unit is in the union
    assert first.scores == {"intersection": 1, "union": 2, "jaccard": 0.5, "length": 4}
    assert quote_index.passage(first, context=3) == ("ab ", '"x y', '" a')
    assert quote_index.text(first.start, first.end) == '"x y'
    assert len(quote_index.match(cells, top=3)) == 3
    assert quote_index.match(cells, min_length=4) == matches[: sum(m.length >= 4 for m in matches)]
    # The always-on unit with the quote unit: the quoted spans still come first (both on); then the long runs of
    # unit 1 alone between them, with a smaller intersection.
    both = quote_index.match([("layers.0", 0), (0, 1)], top=100)
    assert [(m.start, m.end) for m in both[: len(matches)]] == [(m.start, m.end) for m in matches]
    assert both[0].scores["jaccard"] == 1.0 and both[len(matches)].intersection == 1


@pytest.mark.parametrize("gather_bytes", [None, 120])
def test_match_follows_lstmvis_rules_on_a_real_index(tmp_path, make_model, monkeypatch, gather_bytes):
    """Selections of 1 to 70 cells over both layers (two 64-cell words), against the port of LSTMVis's code; with
    ``gather_bytes``, spans are cut into pieces of 3 bytes and checked a few at a time (as long spans of a long
    corpus are)."""
    if gather_bytes is not None:
        from lstm_interp.analysis import state_match

        monkeypatch.setattr(state_match, "_GATHER_BYTES", gather_bytes)
    model = make_model(weight_scale=2.5, seed=3, hidden_size=40)
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list('ab{}"\n .xy'), size=600))
    index = StateIndex.build(
        model, text, tmp_path / "index", names=["layers.0.hidden", "layers.1.hidden"], threshold=0.1
    )
    on = np.concatenate([index.bits("layers.0.hidden"), index.bits("layers.1.hidden")])  # cell 40 * layer + unit
    checked = 0
    for trial in range(14):
        size = int(rng.integers(1, 8)) if trial < 10 else int(rng.integers(60, 71))
        cells = sorted(rng.choice(80, size=size, replace=False).tolist())
        options = {"min_length": int(rng.integers(2, 4)), "off_before": trial % 3 == 1, "off_after": trial % 4 == 2}
        for top in (1, 7, 500):
            got = index.match([(cell // 40, cell % 40) for cell in cells], top=top, **options)
            # LSTMVis unites with the cells of its one source: here the layers the selection draws from.
            layers = sorted({cell // 40 for cell in cells})
            rows = [40 * layer + unit for layer in layers for unit in range(40)]
            expected = lstmvis_match(on[rows], [rows.index(cell) for cell in cells], top, **options)
            assert [(m.start, m.end, m.intersection, m.union) for m in got] == expected, (cells, top, options)
            for m in got:
                full = on[rows, m.start : m.end].all(1)
                if options["off_before"] and m.start > 0:
                    full &= ~on[rows, m.start - 1]
                if options["off_after"] and m.end < len(text):
                    full &= ~on[rows, m.end]
                assert m.cells == tuple((f"layers.{rows[i] // 40}", rows[i] % 40) for i in np.flatnonzero(full))
            checked += len(got)
    assert checked > 100


def test_building_in_segments_equals_one_trace(tmp_path, make_model):
    model = make_model(weight_scale=2.0, seed=5)
    text = ('ab "x y" ab.\n{a "b" x} y ' * 21)[:517]
    names = ["layers.0.cell", "layers.1.cell", "layers.1.forget_gate"]
    index = StateIndex.build(model, text, tmp_path / "index", names=names, chunk_chars=37)  # 40-step segments
    whole = trace(model, text)
    assert index.names == names and len(index) == len(text) and index.text() == text
    for name in names:
        values = whole[name].numpy().T
        differ = index.bits(name) != (values > 0.3)
        # Chunk boundaries round differently (below 1e-5): only values at the threshold may differ.
        assert not differ[np.abs(values - 0.3) > 1e-5].any(), name
    header = json.loads((tmp_path / "index" / "index.json").read_text())
    assert header["text"]["sha256"] == text_provenance(text)["sha256"] and header["steps"] == 517
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["kind"] == "state_index" and manifest["model"]["config_sha256"] == header["model"]["config_sha256"]
    assert sorted(manifest["files"]) == sorted(
        ["index.json", "tokens.bin", *(f"bits/{name}.bin" for name in names)]
    )  # fmt: skip


def test_bits_of_a_range_read_only_those_steps(quote_index):
    whole = quote_index.bits("layers.0.cell")
    rng = np.random.default_rng(4)
    for start, end in [(0, 1), (3, 11), (7, 8), (8, 16), (5, None), (0, None), (len(TEXT) - 3, len(TEXT) + 9)]:
        units = sorted(rng.choice(8, size=3, replace=False).tolist())
        part = quote_index.bits("layers.0.cell", units, start, end)
        assert np.array_equal(part, whole[units, start:end]), (start, end)
    assert quote_index.bits("layers.0.cell", None, 9, 9).shape == (8, 0)


def test_select_from_the_index_is_select_cells_on_the_whole_trace(tmp_path, make_model):
    """A span of the corpus selected from the bits gives the cells select_cells gives on one trace of the corpus."""
    model = make_model(weight_scale=2.5, seed=3, hidden_size=16)
    text = ('ab "x y" ab.\n{a "b" x} y ' * 12)[:300]
    index = StateIndex.build(model, text, tmp_path / "index", threshold=0.2, chunk_chars=64)
    tr = trace(model, text)
    rng = np.random.default_rng(1)
    found = 0
    for _ in range(60):
        start = int(rng.integers(0, len(text) - 1))
        end = start + int(rng.integers(1, 6))
        before, after = int(rng.integers(0, 3)), int(rng.integers(0, 2))
        end = min(end, len(text))
        want = select_cells(tr, (start, end), 0.2, before, after)
        values = np.concatenate([tr[f"layers.{i}.cell"].numpy() for i in range(2)], axis=1)
        lo, hi = max(0, start - before), min(len(text), end + after)
        if np.abs(values[lo:hi] - 0.2).min() < 1e-5:
            continue  # a value at the threshold may round either way between segmented and whole traces
        assert index.select((start, end), before, after) == want, (start, end, before, after)
        assert index.select((start, end), before, after, layer=1) == [c for c in want if c[0] == "layers.1"]
        found += len(want)
    assert found > 0, "no span selected any cell: the test checks nothing"
    with pytest.raises(ValueError, match="outside"):
        index.select((295, 301))
    with pytest.raises(ValueError, match="empty"):
        index.select((5, 5))
    with pytest.raises(ValueError, match=r"unknown layer 'layers\.9'"):
        index.select((1, 3), layer="layers.9")
    with pytest.raises(ValueError, match="not 'hidden'"):
        index.select((1, 3), quantity="hidden")


def test_size_is_one_bit_per_unit_per_character_plus_the_text(tmp_path, make_model):
    model = make_model(hidden_size=8)
    text = "ab {x}. " * 125 + "ab."  # 1003 characters: the last byte of each row is partial
    index = StateIndex.build(model, text, tmp_path / "index")
    folder = tmp_path / "index"
    for name in index.names:
        assert (folder / "bits" / f"{name}.bin").stat().st_size == 8 * 126 <= 8 * len(text) / 8 + 8
    sizes = {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
    assert sizes["tokens.bin"] == len(text)  # one byte per character: the vocabulary has at most 256
    headers = sizes["index.json"] + sizes["manifest.json"]
    assert sum(sizes.values()) == 2 * 8 * 126 + len(text) + headers and headers < 8192


def test_files_are_read_incrementally_and_indexed_end_to_end(tmp_path, monkeypatch):
    from lstm_interp.analysis import _index_files

    corpus = "Ça va, «très» bien.\nÉté: naïve café. " * 7
    model = tiny_char_lstm(corpus, from_text=True, seed=2)
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text(corpus[:101], encoding="utf-8")
    second.write_text(corpus[101:], encoding="utf-8")
    monkeypatch.setattr(_index_files, "_READ_BYTES", 5)  # reads that split the two-byte characters
    from_files = StateIndex.build(model, [first, second], tmp_path / "files", chunk_chars=24)
    monkeypatch.undo()
    from_text = StateIndex.build(model, corpus, tmp_path / "text", chunk_chars=24)
    assert from_files.text() == corpus and len(from_files) == len(corpus)
    for name in from_files.names:
        assert (from_files.bits(name) == from_text.bits(name)).all()
    assert from_files.header["text"] == from_text.header["text"]
    one = StateIndex.build(model, first, tmp_path / "one")  # a single path works too
    assert one.text() == corpus[:101]


def test_unknown_characters_fail_naming_the_file_or_are_skipped_and_counted(tmp_path, make_model):
    model = make_model()
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text("ab {x}", encoding="utf-8")
    bad.write_text("ab Q {x} QZ", encoding="utf-8")
    with pytest.raises(VocabularyError, match=re.escape(f"{bad}: 'Q' (first at 3), 'Z' (first at 10)")):
        StateIndex.build(model, [good, bad], tmp_path / "index")
    assert not (tmp_path / "index").exists()
    index = StateIndex.build(model, [good, bad], tmp_path / "index", on_unknown="skip")
    assert index.text() == "ab {x}ab  {x} " and index.header["text"]["skipped"] == {"Q": 2, "Z": 1}
    assert index.header["text"]["sha256"] == text_provenance("ab {x}ab  {x} ")["sha256"]


def test_bad_input_is_refused_before_anything_is_traced(tmp_path, make_model):
    model = make_model()
    missing, latin1 = tmp_path / "missing.txt", tmp_path / "latin1.txt"
    latin1.write_bytes(b"ab x\n" + "caf\xe9".encode("latin-1"))
    out = tmp_path / "index"
    with pytest.raises(FileNotFoundError, match=re.escape(f"corpus file {str(missing)!r} does not exist")):
        StateIndex.build(model, [latin1, missing], out)
    with pytest.raises(ValueError, match=re.escape(f"{str(latin1)!r} is not UTF-8: byte 0xe9 at byte offset 8")):
        StateIndex.build(model, [latin1], out)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        StateIndex.build(model, tmp_path, out)
    with pytest.raises(ValueError, match="the text is empty"):
        StateIndex.build(model, "", out)
    with pytest.raises(ValueError, match=r"`names` \['layers.2.cell'\]: expected per-layer names"):
        StateIndex.build(model, "ab", out, names="layers.2.cell")
    with pytest.raises(ValueError, match=r"1.5 is outside the range of 'forget_gate' \(a sigmoid gate, 0..1\)"):
        StateIndex.build(model, "ab", out, names=["layers.0.forget_gate"], threshold=1.5)
    with pytest.raises(ValueError, match="`chunk_chars` must be a positive integer, got 0"):
        StateIndex.build(model, "ab", out, chunk_chars=0)
    with pytest.raises(ValueError, match="`on_unknown` must be 'error' or 'skip'"):
        StateIndex.build(model, "ab", out, on_unknown="replace")
    with pytest.raises(ValueError, match="no character of the vocabulary"):
        StateIndex.build(model, "QQQ", out, on_unknown="skip")
    assert not out.exists()
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"notes\.txt"):
        StateIndex.build(model, "ab", out)


def test_an_index_is_replaced_whole_and_a_gru_indexes_its_hidden_state(tmp_path, make_model):
    out = tmp_path / "index"
    StateIndex.build(make_model(), "ab {x} " * 10, out)
    gru = StateIndex.build(make_model(cell="gru"), "ab x" * 5, out)
    assert gru.names == ["layers.0.hidden", "layers.1.hidden"] and StateIndex.open(out).text() == "ab x" * 5
    assert sorted(p.name for p in (out / "bits").iterdir()) == ["layers.0.hidden.bin", "layers.1.hidden.bin"]


def test_open_refuses_a_partial_or_broken_folder(tmp_path, make_model):
    out = tmp_path / "index"
    StateIndex.build(make_model(), "ab {x} " * 10, out)
    assert StateIndex.open(out, verify=True).num_steps == 70
    with pytest.raises(FileNotFoundError, match="no state index"):
        StateIndex.open(tmp_path / "nowhere")
    with pytest.raises(NotADirectoryError):
        StateIndex.open(out / "tokens.bin")
    with pytest.raises(ValueError, match=r"has no index\.json"):
        StateIndex.open(tmp_path)

    def broken(change) -> str:
        copy = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(out, copy)
        change(copy)
        with pytest.raises((ValueError, ManifestError)) as err:
            StateIndex.open(copy, verify=True)
        return str(err.value)

    assert "partial" in broken(lambda f: (f / "manifest.json").unlink())
    message = broken(lambda f: (f / "bits" / "layers.1.cell.bin").write_bytes(b"\0" * 10))
    assert "bits/layers.1.cell.bin (10 bytes, expected 72)" in message
    assert "tokens.bin (missing)" in broken(lambda f: (f / "tokens.bin").unlink())

    def edit_header(folder, **changes):
        header = json.loads((folder / "index.json").read_text())
        (folder / "index.json").write_text(json.dumps({**header, **changes}))

    assert "format_version 9 is not supported" in broken(lambda f: edit_header(f, format_version=9))
    assert "index.json is broken" in broken(lambda f: edit_header(f, steps="70"))
    assert "not valid JSON" in broken(lambda f: (f / "index.json").write_text("{"))

    def flip(folder):
        data = bytearray((folder / "bits" / "layers.0.cell.bin").read_bytes())
        data[0] ^= 1
        (folder / "bits" / "layers.0.cell.bin").write_bytes(bytes(data))

    assert "bits/layers.0.cell.bin (sha256 differs)" in broken(flip)

    # Names read from disk stay inside the folder (issue 21): no separators or "..", no links leading out.
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"\0" * 72)
    for name in ("../../outside", "/etc/passwd", "layers.1/../../x", "..", "a..b"):
        widths = json.loads((out / "index.json").read_text())["widths"]
        message = broken(lambda f, n=name, w=widths: edit_header(f, names=[n], widths={**w, n: 8}))
        assert "are not activation names" in message and repr(name) in message

    def link_out(folder):
        (folder / "bits" / "layers.1.cell.bin").unlink()
        (folder / "bits" / "layers.1.cell.bin").symlink_to(outside)

    assert "bits/layers.1.cell.bin (leads outside the folder" in broken(link_out)


def test_match_errors_name_the_bad_cell(quote_index, tmp_path, make_model):
    with pytest.raises(ValueError, match="non-empty list of"):
        quote_index.match([])
    with pytest.raises(ValueError, match=r"must be a \(layer, unit\) pair, got 'layers\.0'"):
        quote_index.match(("layers.0", 1))  # one pair, not a list of them
    with pytest.raises(ValueError, match=r"'layers.3.cell' is not indexed"):
        quote_index.match([("layers.3", 0)])
    with pytest.raises(ValueError, match=r"unit must be an integer in 0 \.\. 7"):
        quote_index.match([("layers.0", 8)])
    with pytest.raises(ValueError, match="`top` must be a positive integer, got 0"):
        quote_index.match([("layers.0", 0)], top=0)
    both = StateIndex.build(make_model(), "ab {x}", tmp_path / "both", names=["layers.0.cell", "layers.0.hidden"])
    with pytest.raises(ValueError, match=r"holds the quantities \['cell', 'hidden'\]: pass `quantity=`"):
        both.match([("layers.0", 0)])
    assert isinstance(both.match([("layers.0", 0)], quantity="hidden"), list)


def test_a_large_vocabulary_stores_two_bytes_per_character(tmp_path):
    chars = "".join(chr(0x4E00 + i) for i in range(300))
    model = tiny_char_lstm(CharVocab(chars))
    text = chars[::7] * 3
    index = StateIndex.build(model, text, tmp_path / "index")
    assert index.text() == text and (tmp_path / "index" / "tokens.bin").stat().st_size == 2 * len(text)
    assert isinstance(index.match([("layers.0", 0), ("layers.1", 3)]), list)
    assert all(isinstance(m, Match) for m in index.match([("layers.0", 0)]))
