"""``steer`` (lstm_interp/experiments/steer.py), ``plot_steer``, the ``lstm-interp steer`` command and the shared
``unit_spec`` parser: paired samples, statistics by hand, exact zeros for an intervention that never acts, errors."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_cli
from pictures import assert_picture

from lstm_interp import CharLSTM
from lstm_interp.cli._arguments import unit_spec
from lstm_interp.experiments import SteerResult, SteerStatistic, steer
from lstm_interp.experiments.steer import mean_line_length, paired_bootstrap_ci, quote_rate
from lstm_interp.features import UnknownFeatureError, compute_feature
from lstm_interp.interventions import Ablate, Clamp, InterventionError, Scale, generate_with_interventions
from lstm_interp.manifest import read_manifest
from lstm_interp.plots import plot_steer, save_figure

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = 'ab "x'
LENGTH = 80
SAMPLED = slice(len(PROMPT), None)


@pytest.fixture(scope="module")
def model(make_model) -> CharLSTM:
    return make_model()


@pytest.fixture(scope="module")
def clamped(model: CharLSTM) -> SteerResult:
    """Every top-layer hidden unit held at +1 on the sampled text: the head then sees one constant input."""
    clamp = Clamp("layers.1.hidden", range(8), 1.0, steps=SAMPLED)
    return steer(model, PROMPT, [clamp], n_samples=6, length=LENGTH, seed=3, features=["inside_quotes"])


# ---------------------------------------------------------------------------------------------- statistics by hand
def test_quote_rate_counts_quotes_per_character() -> None:
    assert quote_rate('a"b"') == 0.5
    assert quote_rate("abc") == 0.0
    assert quote_rate('"') == 1.0
    with pytest.raises(ValueError, match="non-empty"):
        quote_rate("")


def test_mean_line_length_counts_complete_lines_from_the_prompts_last_newline() -> None:
    assert mean_line_length("c\ndef\ng", prompt="a\nb") == 2.5  # lines "bc" and "def"; "g" is unfinished
    assert mean_line_length("ab\ncdef\n", prompt="x\n") == 3.0  # the prompt ends a line: 2 and 4
    assert mean_line_length("\n\n", prompt="xy") == 1.0  # "xy" (2), then an empty line (0)
    assert mean_line_length("abc\n") == 3.0
    assert math.isnan(mean_line_length("no newline", prompt="a\nb"))


def test_paired_bootstrap_ci() -> None:
    assert paired_bootstrap_ci(np.array([3.0, 4.0, 5.0]), np.array([1.0, 2.0, 3.0])) == (2.0, 2.0)
    low, high = paired_bootstrap_ci(np.arange(10.0), np.zeros(10))
    assert 1.0 < low < 4.5 < high < 8.0
    assert paired_bootstrap_ci(np.arange(10.0), np.zeros(10)) == (low, high)  # a fixed RNG
    assert all(math.isnan(v) for v in paired_bootstrap_ci(np.array([]), np.array([])))


def test_a_statistic_uses_the_pairs_where_both_values_are_defined() -> None:
    stat = SteerStatistic.from_values("mean_line_length", "characters", [math.nan, 1.0, 5.0], [2.0, 3.0, 3.0])
    assert stat.n_pairs == 2 and stat.mean_with == 3.0 and stat.mean_without == 3.0 and stat.difference == 0.0
    assert stat.to_dict()["with"] == [None, 1.0, 5.0]
    json.dumps(stat.to_dict(), allow_nan=False)


# ---------------------------------------------------------------------------------------------- steer
def test_an_intervention_that_never_acts_gives_identical_arms(model: CharLSTM) -> None:
    never = Clamp("layers.1.hidden", range(8), 1.0, steps=[])
    result = steer(model, PROMPT, [never], n_samples=4, length=LENGTH, features=["inside_quotes", "position_in_line"])
    assert result.samples_with == result.samples_without  # same seeds: only the intervention could differ
    assert len(set(result.samples_with)) == 4  # seed + i: the pairs differ from one another
    for stat in result.statistics:
        assert stat.with_values == stat.without_values
        assert stat.difference == 0.0 and (stat.ci_low, stat.ci_high) == (0.0, 0.0)
    assert [s.name for s in result.statistics] == [
        "quote_rate", "mean_line_length", "mean_inside_quotes", "mean_position_in_line",
    ]  # fmt: skip


def test_a_strong_clamp_changes_the_text_and_the_statistics(clamped: SteerResult) -> None:
    assert all(a != b for a, b in zip(clamped.samples_with, clamped.samples_without, strict=True))
    assert all(len(s) == LENGTH for s in (*clamped.samples_with, *clamped.samples_without))
    changed = [s for s in clamped.statistics if s.difference != 0]
    assert changed, clamped.to_markdown()
    # The quote rate moves well beyond its sampling noise: the interval of the difference excludes zero.
    quotes = clamped["quote_rate"]
    assert quotes.ci_low > 0 or quotes.ci_high < 0, clamped.to_markdown()


def test_statistics_are_those_of_the_samples_by_hand(clamped: SteerResult) -> None:
    quotes = clamped["quote_rate"]
    assert quotes.with_values == tuple(s.count('"') / LENGTH for s in clamped.samples_with)
    assert quotes.mean_without == pytest.approx(np.mean([s.count('"') / LENGTH for s in clamped.samples_without]))
    assert quotes.difference == pytest.approx(quotes.mean_with - quotes.mean_without)
    assert quotes.ci_low <= quotes.difference <= quotes.ci_high
    lines = clamped["mean_line_length"]
    assert lines.without_values == tuple(mean_line_length(s, PROMPT) for s in clamped.samples_without)
    inside = clamped["mean_inside_quotes"]
    sample = clamped.samples_with[0]
    assert inside.with_values[0] == pytest.approx(compute_feature("inside_quotes", PROMPT + sample)[5:].mean())


def test_samples_are_those_generate_gives_with_the_same_seeds(model: CharLSTM, clamped: SteerResult) -> None:
    clamp = Clamp("layers.1.hidden", range(8), 1.0, steps=SAMPLED)
    assert clamped.samples_with[2] == generate_with_interventions(
        model, PROMPT, LENGTH, [clamp], seed=5, include_prompt=False
    )
    assert clamped.samples_without[2] == model.generate(PROMPT, LENGTH, seed=5, include_prompt=False)


def test_a_mean_ablation_samples_as_generate_does(model: CharLSTM) -> None:
    ablate = Ablate("layers.0.cell", [1, 4], value="mean", reference='ab "xy" {a}\n' * 5, steps=SAMPLED)
    result = steer(model, PROMPT, [ablate], n_samples=2, length=40)
    sampled = generate_with_interventions(model, PROMPT, 40, [ablate], seed=1, include_prompt=False)
    assert result.samples_with[1] == sampled
    assert result.interventions == ("ablate layers.0.cell[1,4] to its mean (steps 5-end)",)


def test_result_is_json_safe_and_reads_as_a_table(clamped: SteerResult) -> None:
    document = json.loads(json.dumps(clamped.to_dict(), allow_nan=False))
    assert document["n_samples"] == 6 and document["samples"]["with"] == list(clamped.samples_with)
    assert document["statistics"]["quote_rate"]["ci95"] == [clamped["quote_rate"].ci_low, clamped["quote_rate"].ci_high]
    table = clamped.to_markdown()
    assert "clamp layers.1.hidden[0,1,2,3,4,5,… (8 units)] = 1 (steps 5-end)" in table
    assert table.count("\n| ") == 4  # the header and three statistics
    with pytest.raises(KeyError, match="no statistic 'nope'"):
        clamped["nope"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_samples": 0}, ValueError, r"`n_samples` must be an integer >= 1, got 0"),
        ({"length": 0}, ValueError, r"`length` must be an integer >= 1, got 0"),
        ({"interventions": []}, TypeError, "non-empty list"),
        ({"interventions": [1]}, TypeError, r"got \['int'\]"),
        ({"features": ["nope"]}, UnknownFeatureError, "unknown feature 'nope'"),
        ({"prompt": ""}, ValueError, "`prompt` must be non-empty"),
        ({"prompt": "é"}, ValueError, "é"),
        ({"interventions": [Scale("layers.2.cell", [0], 0.5)]}, InterventionError, "names no layer"),
        ({"interventions": [Clamp("layers.0.cell", [8], 1.0)]}, InterventionError, r"units \[8\]"),
        ({"temperature": -1.0}, ValueError, "temperature"),
    ],
)
def test_bad_arguments_fail_before_any_sampling(model: CharLSTM, kwargs: dict, error: type, match: str) -> None:
    arguments = {"prompt": PROMPT, "interventions": [Clamp("layers.1.cell", [0], 1.0)], "n_samples": 10**6, **kwargs}
    with pytest.raises(error, match=match):  # a million samples would never return: it fails at once
        steer(model, arguments.pop("prompt"), arguments.pop("interventions"), **arguments)


# ---------------------------------------------------------------------------------------------- figure
def test_plot_steer_draws_every_statistic(clamped: SteerResult, tmp_path: Path) -> None:
    fig = plot_steer(clamped)
    assert len(fig.axes) == 2 * len(clamped.statistics)
    assert "clamp layers.1.hidden" in fig.get_suptitle()
    assert_picture(save_figure(fig, tmp_path / "steer.png"))
    with pytest.raises(TypeError, match="SteerResult"):
        plot_steer(clamped.to_dict())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory, model: CharLSTM) -> Path:
    folder = tmp_path_factory.mktemp("steer") / "model"
    model.save_pretrained(folder)
    return folder


def test_cli_writes_json_figure_and_manifest(model_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "fresh" / "steer"
    code, stdout, stderr = run_cli([
        "steer", str(model_folder), "--prompt", PROMPT, "--clamp", "layers.1.hidden:0-7=1", "--ablate", "layers.0:2",
        "--samples", "3", "--length", "40", "--seed", "7", "--features", "inside_quotes", "--out", str(out),
    ])  # fmt: skip
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "steer.json", "steer.png"]
    document = json.loads((out / "steer.json").read_text(encoding="utf-8"))
    assert document["interventions"] == [
        "clamp layers.1.hidden[0,1,2,3,4,5,… (8 units)] = 1 (steps 5-end)",
        "ablate layers.0.cell[2] to zero (steps 5-end)",  # layers.0 means the LSTM's cell state
    ]
    assert set(document["statistics"]) == {"quote_rate", "mean_line_length", "mean_inside_quotes"}
    assert document["seed"] == 7 and len(document["samples"]["without"]) == 3
    assert_picture(out / "steer.png")
    manifest = read_manifest(out)
    assert (
        manifest is not None and manifest["kind"] == "steer" and set(manifest["files"]) == {"steer.json", "steer.png"}
    )
    assert "| quote_rate |" in stdout and f"wrote {out}" in stdout
    # --from-prompt: the interventions act from the first character; the folder, a steer folder, is replaced.
    code, _, stderr = run_cli([
        "steer", str(model_folder), "--prompt", PROMPT, "--scale", "layers.0.forget_gate:3=0.5", "--from-prompt",
        "--samples", "1", "--length", "10", "--out", str(out),
    ])  # fmt: skip
    assert code == 0, stderr
    assert json.loads((out / "steer.json").read_text())["interventions"] == [
        "scale layers.0.forget_gate[3] × 0.5 (every step)"
    ]


@pytest.mark.parametrize(
    ("flags", "code", "message"),
    [
        ([], 2, "give at least one intervention"),
        (["--clamp", "layers.1:0"], 2, "'layers.1:0' needs '=NUMBER'"),
        (["--scale", "layers.1:0"], 2, "argument --scale"),
        (["--ablate", "layers.1:0=2"], 2, "takes no '=VALUE'"),
        (["--clamp", "cell254=1"], 2, "expected LAYER[.QUANTITY]:UNITS[=VALUE]"),
        (["--clamp", "layers.1:0=1", "--features", "nope"], 2, "argument --features: unknown feature 'nope'"),
        (["--clamp", "layers.1:0=1", "--samples", "0"], 2, "argument --samples"),
        (["--clamp", "layers.1:99=1"], 1, "units [99] of 'layers.1.cell'"),
        (["--clamp", "layers.1:0=1", "--prompt", "é"], 1, "--prompt"),
        # Issue 21: each of these ran (or crashed) before.
        (["--clamp", "layers.0.forget_gate:0=5"], 2,
         "argument --clamp: `value` of Clamp('layers.0.forget_gate'): 'forget_gate' is a sigmoid gate, which only "
         "takes values in [0, 1]; got 5.0"),
        (["--scale", "layers.0:0=1e300"], 2,
         "argument --scale: `factor` of --scale layers.0:0 must be 0 or a finite number of magnitude 1e-06 to 1e+06"),
        (["--clamp", "layers.1:0=1", "--samples", "200000"], 2,
         "argument --samples/--length: 2 arms x 200000 sample pairs x 5 characters = 2000000 is above the limit of "
         "1000000 characters sampled in all; pass --max-length 2000000 to allow it"),
        (["--clamp", "layers.1.foo_gate:0=1"], 1,
         "'layers.1.foo_gate': unknown quantity 'foo_gate'; an LSTM layer has ['input_gate', 'forget_gate', "),
        (["--clamp", "layers.1:0-999999999=1"], 2,
         "the range '0-999999999' in 'layers.1:0-999999999=1' names 1,000,000,000 units"),
        (["--clamp", "layers.1:0-99=1"], 1, "units 8-99 of 'layers.1.cell': it has 8 units (0-7)"),
    ],
)  # fmt: skip
def test_cli_errors(model_folder: Path, tmp_path: Path, flags: list[str], code: int, message: str) -> None:
    prompt = [] if "--prompt" in flags else ["--prompt", PROMPT]
    status, _, err = run_cli(
        ["steer", str(model_folder), *prompt, *flags, "--length", "5", "--out", str(tmp_path / "o")]
    )
    assert status == code, err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_cli_max_length_lets_a_longer_run_through(model_folder: Path, tmp_path: Path) -> None:
    flags = ["--clamp", "layers.1:0=1", "--samples", "3", "--length", "4", "--out", str(tmp_path / "o")]
    code, _, err = run_cli(["steer", str(model_folder), "--prompt", PROMPT, *flags, "--max-length", "23"])
    assert code == 2 and "2 arms x 3 sample pairs x 4 characters = 24 is above the limit of 23" in err
    code, _, err = run_cli(["steer", str(model_folder), "--prompt", PROMPT, *flags, "--max-length", "24"])
    assert code == 0, err


def test_cli_refuses_a_folder_of_other_files(model_folder: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = run_cli(
        ["steer", str(model_folder), "--prompt", PROMPT, "--clamp", "layers.1:0=1", "--out", str(tmp_path)]
    )
    assert code == 1 and "notes.txt" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# ---------------------------------------------------------------------------------------------- unit_spec
def test_unit_spec_is_the_librarys_parser_as_an_argparse_type() -> None:
    # The forms themselves are tested with parse_unit_spec (tests/test_unit_specs.py).
    assert unit_spec("layers.1.cell:254,255=2.5") == ("layers.1.cell", [254, 255], 2.5)
    with pytest.raises(argparse.ArgumentTypeError, match=r"ends before it starts") as caught:
        unit_spec("layers.1:5-3")
    assert "'layers.1:5-3'" in str(caught.value)
