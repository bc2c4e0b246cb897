"""Issue 21 for the interventions: every wrong argument of ``Ablate``/``Clamp``/``Scale``/``Patch``,
``run_with_interventions``, ``generate``, ``steer`` and ``ablation_study`` is a clear error naming the parameter, the
value and what was expected, raised before any long work, instead of a raw TypeError/IndexError from deep inside, a
hang or a silently wrong (all-NaN, truncated, ignored) result."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from conftest import tiny_char_lstm

from lstm_interp import CharLSTM, VocabularyError, trace, trace_rnn
from lstm_interp.experiments import steer
from lstm_interp.experiments.ablation_study import ablation_study
from lstm_interp.interventions import (
    MAX_SCALE,
    Ablate,
    Clamp,
    InterventionError,
    Scale,
    check_clamp_value,
    check_scale_factor,
    clamp_range,
    generate_with_interventions,
    run_with_interventions,
)
from lstm_interp.interventions.intervention_rules import unit_ranges

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = 'ab{"x" y}\n.ab {a} "b" x.\n'
CELL = "layers.0.cell"


@pytest.fixture(scope="module")
def model() -> CharLSTM:
    return tiny_char_lstm()


def _run(model: CharLSTM, *interventions: object, **kwargs: object) -> object:
    return run_with_interventions(model, TEXT, list(interventions), **kwargs)


def _gru_trace() -> object:
    return trace(tiny_char_lstm(cell="gru", hidden_size=12), TEXT)


# Each case: what is called, the error it must raise and what the message must say. Before the fix, each raised a
# raw error from deep inside (TypeError, IndexError, AttributeError, RuntimeError, MemoryError), a misleading one,
# or nothing at all (an all-NaN trace, a truncated mask, an ignored argument).
CASES: list[tuple[str, Callable[[CharLSTM], object], type[Exception], str]] = [
    # Clamp: the value (raw TypeError/ValueError from torch.as_tensor before), and gates held to their range.
    ("clamp-str", lambda m: Clamp(CELL, [0], "abc"), InterventionError, r"`value` of Clamp.*got str 'abc'"),
    ("clamp-none", lambda m: Clamp(CELL, [0], None), InterventionError, r"one finite number, got NoneType None"),
    ("clamp-list-of-str", lambda m: Clamp(CELL, [0], ["a"]), InterventionError, r"one finite number, got \['a'\]"),
    ("clamp-sigmoid-gate-5", lambda m: _run(m, Clamp("layers.0.forget_gate", [0], 5.0)), InterventionError,
     r"'forget_gate' is a sigmoid gate, which only takes values in \[0, 1\]; got 5.0"),
    ("clamp-tanh-gate-2", lambda m: Clamp("layers.0.cell_candidate", [0], -2.0), InterventionError,
     r"'cell_candidate' is a tanh gate, which only takes values in \[-1, 1\]"),
    # steps: slices of float/str bounds (TypeError from slicing before), lists of other things, shapes.
    ("steps-float-slice", lambda m: Ablate(CELL, [0], steps=slice(1.5, None)), InterventionError,
     r"`steps` of Ablate\('layers.0.cell'\) must be None, a slice\(start, stop\) of non-negative integers.*"
     r"got slice\(1.5, None, None\)"),
    ("steps-str-slice", lambda m: Ablate(CELL, [0], steps=slice("a", None)), InterventionError, r"slice\('a'"),
    ("steps-float-stop", lambda m: Ablate(CELL, [0], steps=slice(0, 2.5)), InterventionError, r"slice\(0, 2.5"),
    ("steps-str-list", lambda m: Ablate(CELL, [0], steps=["a"]), InterventionError, r"got str 'a' in \['a'\]"),
    ("steps-bool-and-int", lambda m: Ablate(CELL, [0], steps=[True, 3]), InterventionError,
     r"all booleans or all integers\), got bool True"),
    ("steps-2d-mask", lambda m: Ablate(CELL, [0], steps=torch.ones(2, 3, dtype=torch.bool)), InterventionError,
     r"`steps` of Ablate\('layers.0.cell'\) must be one-dimensional, got shape \(2, 3\)"),
    ("steps-overflow", lambda m: Ablate(CELL, [0], steps=[10**30]), InterventionError, r"step index beyond any run"),
    ("steps-negative-at-construction", lambda m: Ablate(CELL, [0], steps=[-1]), InterventionError,
     r"got negative steps \[-1\]"),
    ("steps-mask-longer-than-run", lambda m: _run(m, Ablate(CELL, [0], steps=[True] * 100)), InterventionError,
     rf"mask of Ablate\('layers.0.cell'\) has 100 entries, but the run has only {len(TEXT)} steps"),
    ("steps-index-past-the-end", lambda m: _run(m, Ablate(CELL, [0], steps=[3, 40, 41])), InterventionError,
     rf"`steps` 40-41 of Ablate\('layers.0.cell'\) are past the end of the run, which has {len(TEXT)} steps"),
    # Ablate's reference: one check with Patch's source.
    ("ablate-reference-int", lambda m: Ablate(CELL, [0], value="mean", reference=5), InterventionError,
     r"`reference` of Ablate\('layers.0.cell', value='mean'\) must be a non-empty text, a Trace .*got int 5"),
    ("ablate-reference-empty", lambda m: Ablate(CELL, [0], value="mean", reference=""), InterventionError,
     r"must be a non-empty text.*got str ''"),
    ("ablate-reference-other-architecture", lambda m: _run(m, Ablate("layers.0.hidden", [0], value="mean",
                                                                      reference=_gru_trace())),
     InterventionError, r"the reference trace of Ablate\('layers.0.hidden'\) has 12 units, the model's has 8"),
    ("ablate-reference-with-zero", lambda m: Ablate(CELL, [0], reference="ab"), InterventionError,
     r"got `reference=` with value='zero', which does not read it"),
    ("ablate-reference-unknown-chars-only", lambda m: _run(m, Ablate(CELL, [0], value="mean", reference="ZZ")),
     InterventionError, r"the `reference` of Ablate\('layers.0.cell'\), value='mean' cannot be traced"),
    # Scale: all-NaN log-probs with no error before.
    ("scale-inf", lambda m: _run(m, Scale(CELL, [0], math.inf)), InterventionError,
     r"`factor` of Scale\('layers.0.cell'\) must be 0 or a finite number of magnitude 1e-06 to 1e\+06.*got inf"),
    ("scale-1e300", lambda m: _run(m, Scale("layers.0.hidden", [0], 1e300)), InterventionError, r"got 1e\+300"),
    ("scale-1e-300", lambda m: Scale("layers.0.hidden", [0], 1e-300), InterventionError, r"got 1e-300"),
    ("run-dtype-int8", lambda m: _run(m, Ablate(CELL, [0]), dtype=torch.int8), ValueError,
     r"`dtype` must be a floating dtype \(torch.float32, .*\), got torch.int8"),
    ("run-chunk-size-float", lambda m: _run(m, Ablate(CELL, [0]), chunk_size=2.5), TypeError,
     r"`chunk_size` must be an integer >= 1, got float 2.5"),
    ("run-chunk-size-str", lambda m: _run(m, Ablate(CELL, [0]), chunk_size="a"), TypeError, r"got str 'a'"),
    ("run-inputs-none", lambda m: run_with_interventions(m, None, [Ablate(CELL, [0])]), TypeError,
     r"`text` must be a string or a 1-D tensor of integer character ids, got NoneType None"),
    ("run-inputs-float-ids", lambda m: run_with_interventions(m, torch.tensor([0.5, 1.5]), []), TypeError,
     r"got a tensor of torch.float32"),
    ("run-inputs-negative-ids", lambda m: run_with_interventions(m, torch.tensor([0, -1]), [Ablate(CELL, [0])]),
     ValueError, r"`text` holds ids \[-1\] outside the model's vocabulary range \[0, 10\)"),
    ("run-names-filter-int", lambda m: _run(m, Ablate(CELL, [0]), names_filter=3), TypeError,
     r"`names_filter` must be a name or glob, a list of them, a predicate on the name or None, got int 3"),
    ("run-state-not-a-state", lambda m: _run(m, Ablate(CELL, [0]), state=[1, 2]), ValueError,
     r"`state` must be a list of 2 entries, one per layer, each an \(h, c\) pair of \(1, 1, 8\) tensors"),
    ("run-state-one-layer-short", lambda m: _run(m, Ablate(CELL, [0]), state=trace(m, "ab").final_state[:1]),
     ValueError, r"`state` must be a list of 2 entries"),
    ("run-interventions-str", lambda m: run_with_interventions(m, TEXT, "abc"), TypeError,
     r"`interventions` must be a list of Ablate/Clamp/Scale/Patch objects \(or one of them\), got str 'abc'"),
    ("trace-rnn-dtype-int8", lambda m: trace_rnn(torch.nn.GRU(3, 4), torch.zeros(5, 3), dtype=torch.int8),
     ValueError, r"`dtype` must be a floating dtype"),
    # generate: "got ''" for None, AttributeError for a number, a string of interventions or a bad seed.
    ("generate-prompt-none", lambda m: m.generate(None, 10), TypeError, r"`prompt` must be a non-empty string, got "
     r"NoneType None"),
    ("generate-prompt-int", lambda m: m.generate(5, 10), TypeError, r"got int 5"),
    ("generate-interventions-str", lambda m: generate_with_interventions(m, "ab", 10, "abc"), TypeError,
     r"`interventions` must be a list of Ablate/Clamp/Scale/Patch objects"),
    ("generate-interventions-ints", lambda m: generate_with_interventions(m, "ab", 10, [1]), TypeError,
     r"got \['int'\]"),
    ("generate-step-not-callable", lambda m: m.generate("ab", 10, step=3), TypeError, r"`step` must be a function"),
    ("generate-seed-str", lambda m: m.generate("ab", 10, seed="a"), TypeError,
     r"`seed` must be an integer or None, got str 'a'"),
    ("generate-unknown-char-hint", lambda m: m.generate("aZ", 10), VocabularyError,
     r"'Z'.*Use only characters the model knows in `prompt`\.$"),
    ("generate-overflow-at-run-time",
     lambda m: generate_with_interventions(m, "ab", 50, [Scale(CELL, range(8), 1e6)]),
     InterventionError, r"values became inf or NaN by step \d+ under the interventions \[Scale\('layers.0.cell', "
     r"units 0-7\)\]"),
    # steer
    ("steer-prompt-none", lambda m: steer(m, None, [Ablate(CELL, [0])], n_samples=10**6), TypeError,
     r"`prompt` must be a non-empty string, got NoneType None"),
    ("steer-prompt-int", lambda m: steer(m, 5, [Ablate(CELL, [0])], n_samples=10**6), TypeError, r"got int 5"),
    ("steer-features-none", lambda m: steer(m, "ab", [Ablate(CELL, [0])], features=None), TypeError,
     r"`features` must be a list of feature names, got NoneType None"),
    ("steer-unknown-char-hint", lambda m: steer(m, "aZ", [Ablate(CELL, [0])]), VocabularyError,
     r"Use only characters the model knows in `prompt`\.$"),
    ("ablation-units-not-pairs", lambda m: ablation_study(m, TEXT, [3], '"'), TypeError,
     r"`units` must be a list of \(layer, unit\) pairs, such as .*got 3"),
    ("ablation-units-str", lambda m: ablation_study(m, TEXT, "layers.0", '"'), TypeError, r"got str 'layers.0'"),
    ("ablation-units-none", lambda m: ablation_study(m, TEXT, None, '"'), TypeError, r"got NoneType None"),
    ("ablation-every-unit", lambda m: ablation_study(m, TEXT, [(0, u) for u in range(8)], '"'), ValueError,
     r"`units` names every unit of layers.0 \(8\), so no random unit of the same layer\(s\) is left to compare"),
    ("ablation-units-out-of-range", lambda m: ablation_study(m, TEXT, [(0, u) for u in range(3, 40)], '"'),
     ValueError, r"units 8-39 of layers.0: the layer has units 0 \.\. 7"),
    ("ablation-targets-none", lambda m: ablation_study(m, TEXT, [(0, 1)], None), TypeError,
     r"`targets` must be characters, 'feature:NAME' or a boolean mask over the text, got NoneType None"),
    ("ablation-targets-float-mask", lambda m: ablation_study(m, TEXT, [(0, 1)], [0.5] * len(TEXT)), TypeError,
     r"boolean mask over the text, got an array of float64"),
    ("ablation-seed-str", lambda m: ablation_study(m, TEXT, [(0, 1)], '"', seed="a"), TypeError,
     r"`seed` must be an integer, got str 'a'"),
    ("ablation-log-not-callable", lambda m: ablation_study(m, TEXT, [(0, 1)], '"', log=5), TypeError,
     r"`log` must be a callable"),
    ("ablation-model-str", lambda m: ablation_study("novel", TEXT, [(0, 1)], '"'), TypeError,
     r"`model` must be a CharLSTM, got str"),
    ("ablation-reference-int", lambda m: ablation_study(m, TEXT, [(0, 1)], '"', value="mean", reference=5),
     InterventionError, r"`reference` of Ablate\('layers.0.cell', value='mean'\) must be a non-empty text"),
    ("ablation-reference-ignored", lambda m: ablation_study(m, TEXT, [(0, 1)], '"', reference="ab"),
     InterventionError, r"with value='zero', which does not read it"),
    ("ablation-k-above-units", lambda m: ablation_study(m, TEXT, [(0, 1)], '"', together_feature="inside_quotes",
                                                          k=100), ValueError,
     r"`k` \(100\) is more units than layers.0 have \(8\)"),
    ("ablation-unknown-char-hint", lambda m: ablation_study(m, TEXT + "Z", [(0, 1)], '"'), VocabularyError,
     r"'Z'.*Use only characters the model knows in `text`\.$"),
    ("ablation-unknown-quantity", lambda m: ablation_study(m, TEXT, [(0, 1)], '"', quantity="foo_gate"),
     InterventionError, r"unknown quantity 'foo_gate'; an LSTM layer has \['input_gate'"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_wrong_argument_is_a_clear_error(model: CharLSTM, call, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call(model)


def test_the_cases_cover_issue_21() -> None:
    assert len(CASES) >= 19 and len({c[0] for c in CASES}) == len(CASES)


def test_the_model_is_unchanged_after_a_run_refused_for_overflow(model: CharLSTM) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InterventionError, match=r"inf or NaN by step \d+ under the interventions"):
        _run(model, Scale(CELL, range(8), MAX_SCALE))  # scaled at every step, the cell overflows float32
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# ---------------------------------------------------------------------------------------------- what is accepted
def test_one_intervention_alone_is_a_list_of_one(model: CharLSTM) -> None:
    ablate = Ablate(CELL, [0, 3])
    listed = run_with_interventions(model, TEXT, [ablate])
    alone = run_with_interventions(model, TEXT, ablate)
    assert all(torch.equal(alone[n], listed[n]) for n in listed)
    assert generate_with_interventions(model, "ab", 20, ablate, seed=1) == generate_with_interventions(
        model, "ab", 20, [ablate], seed=1
    )
    assert generate_with_interventions(model, "ab", 20, [], seed=1) == model.generate("ab", 20, seed=1)
    assert steer(model, "ab", ablate, n_samples=1, length=5).interventions == ("ablate layers.0.cell[0,3] to zero "
                                                                               "(every step)",)  # fmt: skip


def test_numpy_units_and_steps_are_read_as_lists(model: CharLSTM) -> None:
    mask = np.zeros(len(TEXT), dtype=bool)
    mask[4:9] = True
    by_numpy = run_with_interventions(model, TEXT, [Clamp(CELL, np.array([1, 2]), 0.5, steps=mask)])
    by_list = run_with_interventions(model, TEXT, [Clamp(CELL, [1, 2], 0.5, steps=slice(4, 9))])
    assert all(torch.equal(by_numpy[n], by_list[n]) for n in by_list)


def test_a_gate_clamped_at_the_ends_of_its_range_runs(model: CharLSTM) -> None:
    tr = _run(model, Clamp("layers.0.forget_gate", [0, 1], [0.0, 1.0]), Clamp("layers.1.cell_candidate", [2], -1.0))
    assert torch.equal(tr["layers.0.forget_gate"][:, :2], torch.tensor([0.0, 1.0]).expand(len(TEXT), 2))


# ---------------------------------------------------------------------------------------------- the shared rules
@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("layers.0.forget_gate", (0.0, 1.0)), ("update_gate", (0.0, 1.0)), ("new_gate", (-1.0, 1.0)),
     ("layers.1.cell_candidate", (-1.0, 1.0)), ("cell", None), ("hidden", None), ("layers.1", None)],
)  # fmt: skip
def test_clamp_range_is_the_range_of_each_gate(quantity: str, expected: tuple[float, float] | None) -> None:
    assert clamp_range(quantity) == expected


def test_the_rules_the_cli_and_the_explorer_call() -> None:
    assert check_scale_factor(0) == 0.0 and check_scale_factor(-MAX_SCALE) == -MAX_SCALE
    assert check_scale_factor(1 / MAX_SCALE) == pytest.approx(1e-6)
    for factor in (MAX_SCALE * 10, 1e-7, math.inf, True, "2"):
        with pytest.raises(InterventionError, match="`factor` of --scale"):
            check_scale_factor(factor, "--scale")
    assert check_clamp_value("layers.0.cell", 1e6).tolist() == [1e6]
    assert check_clamp_value("layers.0.input_gate", [0.0, 1.0], 2).tolist() == [0.0, 1.0]
    with pytest.raises(InterventionError, match=r"'input_gate' is a sigmoid gate"):
        check_clamp_value("layers.0.input_gate", 1.5)
    assert unit_ranges([9, 0, 1, 2, 3]) == "0-3,9" and unit_ranges([5]) == "5"
