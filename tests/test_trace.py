"""The trace must equal what the fused kernels compute, step by step, for any size, depth and text."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import tiny_char_lstm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstm_interp import CharLSTM, CharLSTMConfig, CharVocab, Trace, VocabularyError, trace
from lstm_interp.tracing import available_names, linear_scan

ALPHABET = 'ab{}()"\n ;xyz'
VOCAB = CharVocab(ALPHABET)


def make_model(cell: str = "lstm", layers: int = 2, hidden: int = 8, embedding: int = 5, seed: int = 0) -> CharLSTM:
    # Larger weights than the default init drive gates towards saturation and cells far from zero: a harder test.
    return tiny_char_lstm(
        VOCAB, cell=cell, num_layers=layers, hidden_size=hidden, embedding_size=embedding, seed=seed, weight_scale=2.0
    )


def reference_lstm(model: CharLSTM, text: str) -> dict[str, torch.Tensor]:
    """A per-character loop with nn.LSTMCell: slow, obviously right."""
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        x = model.embedding(VOCAB.encode(text))
        for i, layer in enumerate(model.layers):
            H = layer.hidden_size
            cell = torch.nn.LSTMCell(x.shape[1], H)
            cell.load_state_dict({k.removesuffix("_l0"): v for k, v in layer.state_dict().items()})
            h, c = torch.zeros(1, H), torch.zeros(1, H)
            rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("i", "f", "g", "o", "c", "h")}
            for t in range(len(x)):
                pre = x[t : t + 1] @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
                i_, f_, g_, o_ = pre.chunk(4, dim=1)
                h, c = cell(x[t : t + 1], (h, c))
                values = (i_.sigmoid(), f_.sigmoid(), g_.tanh(), o_.sigmoid(), c, h)
                for key, value in zip("ifgoch", values, strict=True):
                    rows[key].append(value)
            names = ("input_gate", "forget_gate", "cell_candidate", "output_gate", "cell", "hidden")
            for key, name in zip("ifgoch", names, strict=True):
                out[f"layers.{i}.{name}"] = torch.cat(rows[key])
            x = out[f"layers.{i}.hidden"]
    return out


def reference_gru(model: CharLSTM, text: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        x = model.embedding(VOCAB.encode(text))
        for i, layer in enumerate(model.layers):
            H = layer.hidden_size
            cell = torch.nn.GRUCell(x.shape[1], H)
            cell.load_state_dict({k.removesuffix("_l0"): v for k, v in layer.state_dict().items()})
            h = torch.zeros(1, H)
            rs, zs, ns, hs = [], [], [], []
            for t in range(len(x)):
                gi = x[t : t + 1] @ cell.weight_ih.T + cell.bias_ih
                gh = h @ cell.weight_hh.T + cell.bias_hh
                r = (gi[:, :H] + gh[:, :H]).sigmoid()
                z = (gi[:, H : 2 * H] + gh[:, H : 2 * H]).sigmoid()
                n = (gi[:, 2 * H :] + r * gh[:, 2 * H :]).tanh()
                h = cell(x[t : t + 1], h)
                rs.append(r), zs.append(z), ns.append(n), hs.append(h)
            for name, rows in zip(("reset_gate", "update_gate", "new_gate", "hidden"), (rs, zs, ns, hs), strict=True):
                out[f"layers.{i}.{name}"] = torch.cat(rows)
            x = out[f"layers.{i}.hidden"]
    return out


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    layers=st.integers(1, 3),
    hidden=st.integers(1, 24),
    embedding=st.integers(1, 12),
    text=st.text(alphabet=ALPHABET, min_size=1, max_size=90),
    chunk_size=st.integers(1, 100),
    seed=st.integers(0, 2**16),
)
def test_lstm_trace_matches_stepwise_reference_and_fused_state(layers, hidden, embedding, text, chunk_size, seed):
    model = make_model("lstm", layers, hidden, embedding, seed)
    tr = trace(model, text, chunk_size=chunk_size)
    ref = reference_lstm(model, text)
    for name, expected in ref.items():
        torch.testing.assert_close(tr[name], expected, atol=1e-5, rtol=0, msg=name)
    with torch.no_grad():
        logits, state = model(VOCAB.encode(text)[None])
    for i, (h_n, c_n) in enumerate(state):
        torch.testing.assert_close(tr[f"layers.{i}.hidden"][-1], h_n[0, 0], atol=1e-5, rtol=0)
        torch.testing.assert_close(tr[f"layers.{i}.cell"][-1], c_n[0, 0], atol=1e-5, rtol=0)
        torch.testing.assert_close(tr.final_state[i][1], c_n, atol=1e-5, rtol=0)
    torch.testing.assert_close(tr["log_probs"], torch.log_softmax(logits[0], -1), atol=1e-5, rtol=0)


@settings(max_examples=10, deadline=None)
@given(layers=st.integers(1, 3), hidden=st.integers(1, 16), text=st.text(alphabet=ALPHABET, min_size=1, max_size=60))
def test_gru_trace_matches_stepwise_reference(layers, hidden, text):
    model = make_model("gru", layers, hidden)
    tr = trace(model, text, chunk_size=7)
    for name, expected in reference_gru(model, text).items():
        torch.testing.assert_close(tr[name], expected, atol=1e-5, rtol=0, msg=name)


def test_rnn_trace_holds_hidden_states_of_every_layer():
    model = make_model("rnn", 2, 6)
    text = "ab{(x)}\n" * 5
    tr = trace(model, text, chunk_size=3)
    assert set(tr) == {"embedding", "layers.0.hidden", "layers.1.hidden", "log_probs"}
    with torch.no_grad():
        x = model.embedding(VOCAB.encode(text))[None]
        h0, _ = model.layers[0](x)
        h1, _ = model.layers[1](h0)
    torch.testing.assert_close(tr["layers.0.hidden"], h0[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(tr["layers.1.hidden"], h1[0], atol=1e-6, rtol=0)


def test_long_text_with_integrator_cells_stays_exact_across_chunks():
    """Forget gates near 1 make cells sum over thousands of steps: errors would accumulate if chunking were wrong.

    Cells reach magnitudes of hundreds here, where float32 itself cannot hold 1e-5 absolute; so the trace is held
    to the float64 truth at least as well as the fused float32 kernel is, and to the kernel within float32 rounding.
    """
    model = make_model("lstm", 2, 16)
    with torch.no_grad():
        for layer in model.layers:
            layer.bias_ih_l0[16:32] = 6.0  # forget-gate bias: f ~ 0.998
    text = ('ab "xyz" {(a;b)}\n' * 300)[:5000]
    tr = trace(model, text, chunk_size=512)
    with torch.no_grad():
        _, state = model(VOCAB.encode(text)[None])
        _, state64 = copy.deepcopy(model).double()(VOCAB.encode(text)[None])
    for i, (h_n, c_n) in enumerate(state):
        assert c_n.abs().max() > 5  # the cells really did integrate
        c_trace, c_true = tr[f"layers.{i}.cell"][-1].double(), state64[i][1][0, 0]
        kernel_error = (c_n[0, 0].double() - c_true).abs().max()
        assert (c_trace - c_true).abs().max() <= 2 * kernel_error + 1e-5
        torch.testing.assert_close(tr[f"layers.{i}.cell"][-1], c_n[0, 0], atol=1e-5, rtol=3e-5)
        torch.testing.assert_close(tr[f"layers.{i}.hidden"][-1], h_n[0, 0], atol=1e-5, rtol=0)
        recomputed_h = tr[f"layers.{i}.output_gate"] * torch.tanh(tr[f"layers.{i}.cell"])
        torch.testing.assert_close(recomputed_h, tr[f"layers.{i}.hidden"], atol=1e-5, rtol=0)


def test_linear_scan_equals_sequential_loop():
    torch.manual_seed(1)
    decay, update, initial = (
        torch.rand(101, 7, dtype=torch.float64),
        torch.randn(101, 7, dtype=torch.float64),
        torch.randn(7, dtype=torch.float64),
    )
    expected, y = [], initial
    for t in range(101):
        y = decay[t] * y + update[t]
        expected.append(y)
    torch.testing.assert_close(linear_scan(decay, update, initial, block=8), torch.stack(expected))


def test_names_filter_string_glob_list_and_callable():
    model = make_model()
    text = "ab;xy"
    assert list(trace(model, text, names_filter="layers.1.cell")) == ["layers.1.cell"]
    assert list(trace(model, text, names_filter="layers.*.forget_gate")) == [
        "layers.0.forget_gate",
        "layers.1.forget_gate",
    ]
    assert list(trace(model, text, names_filter=["log_probs", "layers.0.hidden"])) == ["layers.0.hidden", "log_probs"]
    assert list(trace(model, text, names_filter=lambda n: n.endswith("output_gate"))) == [
        "layers.0.output_gate",
        "layers.1.output_gate",
    ]
    full = trace(model, text)
    assert list(full) == available_names("lstm", 2)
    torch.testing.assert_close(trace(model, text, names_filter="layers.1.cell")["layers.1.cell"], full["layers.1.cell"])


@pytest.mark.parametrize("bad", ["layers.7.cell", ["layers.0.cell", "nothing"], lambda n: False])
def test_names_filter_that_matches_nothing_lists_the_names(bad):
    with pytest.raises(ValueError, match=r"match(ed)? no activation name.*layers\.0\.input_gate"):
        trace(make_model(), "ab", names_filter=bad)


def test_float16_storage_halves_memory_and_stays_close():
    model = make_model()
    text = "ab{x}\n" * 20
    full = trace(model, text)
    half = trace(model, text, dtype=torch.float16)
    assert half["layers.0.cell"].dtype == torch.float16
    assert half["layers.0.cell"].element_size() * 2 == full["layers.0.cell"].element_size()
    torch.testing.assert_close(half["layers.0.cell"].float(), full["layers.0.cell"], atol=2e-3, rtol=1e-3)


def test_trace_restores_training_mode_and_turns_dropout_off():
    torch.manual_seed(0)
    model = CharLSTM(CharLSTMConfig(vocab_size=len(VOCAB), hidden_size=8, dropout=0.5), VOCAB)
    model.train()
    a = trace(model, "ab;xy{}")
    b = trace(model, "ab;xy{}")
    assert model.training
    torch.testing.assert_close(a["log_probs"], b["log_probs"])


def test_state_carries_between_traces():
    model = make_model()
    whole = trace(model, "ab{xy}\nab;")
    first = trace(model, "ab{xy}")
    second = trace(model, "\nab;", state=first.final_state)
    torch.testing.assert_close(second["layers.1.cell"], whole["layers.1.cell"][6:], atol=1e-6, rtol=0)


def test_trace_of_ids_and_stack():
    model = make_model(layers=3)
    tr = trace(model, VOCAB.encode("xyz ab"))
    assert tr.text == "xyz ab"
    assert tr.stack("cell").shape == (3, 6, 8)
    with pytest.raises(KeyError, match="reset_gate"):
        tr.stack("reset_gate")


def test_save_and_load_round_trip(tmp_path):
    model = make_model()
    tr = trace(model, 'a "xy"\n', names_filter="layers.*")
    path = tr.save(tmp_path / "trace.safetensors")
    loaded = Trace.load(path)
    assert loaded.text == tr.text and loaded.cell == "lstm" and loaded.num_layers == 2
    assert list(loaded) == list(tr) or set(loaded) == set(tr)
    for name in tr:
        torch.testing.assert_close(loaded[name], tr[name])
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_input_errors():
    model = make_model()
    with pytest.raises(ValueError, match="empty text"):
        trace(model, "")
    with pytest.raises(VocabularyError, match=r"'Q' \(first at 2\)"):
        trace(model, "abQ")
    assert len(trace(model, "abQ", on_unknown="skip").tokens) == 2
    with pytest.raises(ValueError, match="chunk_size"):
        trace(model, "ab", chunk_size=0)
    with pytest.raises(ValueError, match="dtype"):
        trace(model, "ab", dtype=torch.int32)


# ---------------------------------------------------------------------------------------------------- operations
def test_concat_and_time_slice_are_inverse(tmp_path):
    model = make_model()
    text = 'a "xy" {b}\n;z' * 3
    whole = trace(model, text)
    cut = 11
    first, second = whole.time_slice(0, cut), whole.time_slice(cut)
    assert first.text == text[:cut] and second.num_steps == len(text) - cut
    assert first.final_state is None and second.final_state is whole.final_state  # only a slice reaching the end
    joined = Trace.concat([first, second])
    assert joined.text == text and joined.chars == VOCAB.chars and joined.layer_names == whole.layer_names
    for name in whole:
        assert torch.equal(joined[name], whole[name])
    assert whole.time_slice(-3).text == text[-3:]
    with pytest.raises(ValueError, match="steps 5:5 of a trace of 39 steps are empty"):
        whole.time_slice(5, 5)
    with pytest.raises(TypeError, match="must be integers"):
        whole.time_slice(1.5)  # type: ignore[arg-type]


def test_concat_keeps_shared_names_and_refuses_other_architectures():
    lstm, gru = make_model(), make_model(cell="gru")
    cells = trace(lstm, "ab", names_filter="layers.*.cell")
    everything = trace(lstm, "xy")
    assert list(Trace.concat([cells, everything])) == list(cells)
    with pytest.raises(ValueError, match="only traces of one architecture can be concatenated"):
        Trace.concat([everything, trace(gru, "xy")])
    with pytest.raises(ValueError, match="`traces` is empty"):
        Trace.concat([])


def test_with_activation_select_and_state_quantity():
    tr = trace(make_model(), "ab{}")
    extra = tr.with_activation("scores", torch.ones(4, 2))
    assert "scores" in extra and "scores" not in tr  # a new trace; the old one is unchanged
    with pytest.raises(ValueError, match=r"'scores' needs 4 rows, one per step of the trace; got shape \(3, 2\)"):
        tr.with_activation("scores", torch.ones(3, 2))
    assert list(tr.select("layers.*.cell")) == ["layers.0.cell", "layers.1.cell"]
    assert tr.state_quantity == "cell" and trace(make_model(cell="gru"), "ab").state_quantity == "hidden"
    with pytest.raises(ValueError, match="every activation needs 4 rows"):
        Trace({"x": torch.ones(3, 1)}, text=None, tokens=torch.arange(4), cell="lstm", num_layers=1)
    with pytest.raises(ValueError, match="`text` has 2 characters but `tokens` has 4 steps"):
        Trace({}, text="ab", tokens=torch.arange(4), cell="lstm", num_layers=1)


def test_saved_trace_keeps_its_vocabulary(tmp_path):
    tr = trace(make_model(), "a{b}")
    assert Trace.load(tr.save(tmp_path / "t.safetensors")).chars == VOCAB.chars


def test_load_names_the_path_and_the_problem(tmp_path):
    good = trace(make_model(), "ab{}").save(tmp_path / "good.safetensors")
    data = good.read_bytes()
    cases = {
        "empty.safetensors": (b"", r"is empty \(0 bytes\)"),
        "truncated.safetensors": (data[: len(data) // 2], "is truncated or not a safetensors file"),
        "random.safetensors": (bytes(range(256)) * 4, "is truncated or not a safetensors file"),
    }
    for name, (content, problem) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=rf"trace file '.*{name}' {problem}"):
            Trace.load(tmp_path / name)
    with pytest.raises(IsADirectoryError, match=r"is a folder; expected a \.safetensors file"):
        Trace.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Trace.load(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    save_file({"tokens": torch.arange(2)}, str(tmp_path / "meta.safetensors"),
              metadata={"format": "lstm_interp.trace", "text": "{not json", "cell": "lstm", "num_layers": "1"})
    with pytest.raises(ValueError, match=r"'.*meta.safetensors' has broken metadata \(JSONDecodeError"):
        Trace.load(tmp_path / "meta.safetensors")


def test_describe_names_every_activation_with_its_shape_and_dtype() -> None:
    tr = trace(make_model(layers=2, hidden=8), "ab{}x", names_filter=["layers.*.cell", "layers.1.hidden"])
    lines = tr.describe().splitlines()
    assert lines[0] == "5 characters, lstm with 2 layer(s), 3 activation(s)"
    assert [line.split()[0] for line in lines[1:]] == list(tr)
    assert all(line.split()[1:] == ["(5,", "8)", "float32"] for line in lines[1:])
    half = Trace({"layers.0.cell": tr["layers.0.cell"].half()}, text="ab{}x", tokens=tr.tokens, cell="lstm",
                 num_layers=2)  # fmt: skip
    assert half.describe().splitlines()[1].endswith("(5, 8)  float16")
