"""``run_ablation``, ``run_steer`` and ``run_probes`` (``lstm_interp/report/experiment_runs.py``): an experiment from
its arguments to its folder, checked before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lstm_interp.features import UnknownFeatureError
from lstm_interp.interventions import InterventionError
from lstm_interp.manifest import read_manifest
from lstm_interp.report.experiment_folder import write_experiment_folder
from lstm_interp.report.experiment_runs import probe_folder_names, run_ablation, run_probes, run_steer

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = 'ab "x y" ab.\n{a "b" x} y "ab" .\n' * 6


def quoted_text(steps: int, seed: int = 0, chars: str = "ab{} .xy\n") -> str:
    rng = np.random.default_rng(seed)
    return "".join('"' if rng.random() < 0.04 else chars[rng.integers(len(chars))] for _ in range(steps))


def foreign_folder(tmp_path: Path) -> Path:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    return out


def test_run_ablation_writes_the_study_and_its_manifest(make_model, tmp_path: Path) -> None:
    model = make_model(num_layers=1, hidden_size=16, seed=4)
    out = tmp_path / "ablation"
    lines: list[str] = []
    study = run_ablation(model, TEXT, [("layers.0", 3)], '"', out, n_random=4, seed=1, log=lines.append)
    assert sorted(p.name for p in out.iterdir()) == ["ablation.json", "ablation.png", "manifest.json"]
    assert json.loads((out / "ablation.json").read_text(encoding="utf-8")) == study.to_dict()
    manifest = read_manifest(out)
    assert manifest is not None and manifest["kind"] == "ablation"
    assert manifest["arguments"]["units"] == [["layers.0", 3]] and manifest["arguments"]["n_random"] == 4
    assert lines  # progress went to the log
    run_ablation(model, TEXT, [("layers.0", 3)], '"', out, n_random=4, arguments={"given": True})
    assert read_manifest(out)["arguments"] == {"given": True}  # type: ignore[index]


def test_run_ablation_refuses_a_foreign_folder_before_any_work(make_model, tmp_path: Path) -> None:
    out = foreign_folder(tmp_path)
    with pytest.raises(FileExistsError, match=r"notes\.txt"):
        run_ablation(make_model(), "no such characters", [("layers.0", 3)], '"', out)  # the text is never read
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_run_steer_builds_interventions_from_specs(make_model, tmp_path: Path) -> None:
    model = make_model()
    out = tmp_path / "steer"
    result = run_steer(model, "ab", out, clamp=[("layers.1.hidden", [0, 1], 1.0)], ablate=[("layers.0", [2], None)],
                       n_samples=2, length=6, seed=3)  # fmt: skip
    assert result.interventions == (
        "clamp layers.1.hidden[0,1] = 1 (steps 2-end)",
        "ablate layers.0.cell[2] to zero (steps 2-end)",
    )
    document = json.loads((out / "steer.json").read_text(encoding="utf-8"))
    assert document["seed"] == 3 and len(document["samples"]["with"]) == 2
    manifest = read_manifest(out)
    assert manifest is not None and manifest["arguments"] == {
        "interventions": list(result.interventions), "from_prompt": False, "samples": 2, "length": 6,
        "temperature": 1.0, "top_k": None, "seed": 3, "features": [],
    }  # fmt: skip
    again = run_steer(model, "ab", out, scale=[("layers.0.forget_gate", [3], 0.5)], from_prompt=True, n_samples=1,
                      length=4)  # fmt: skip
    assert again.interventions == ("scale layers.0.forget_gate[3] × 0.5 (every step)",)


@pytest.mark.parametrize(
    ("specs", "error", "message"),
    [({}, ValueError, "give at least one intervention"),
     ({"clamp": [("layers.1", [0], None)]}, InterventionError, "needs '=NUMBER'"),
     ({"clamp": [("layers.1", [99], 1.0)]}, InterventionError, r"units \[99\] of 'layers.1.cell'")],
)  # fmt: skip
def test_run_steer_refuses_bad_specs_before_sampling(make_model, tmp_path: Path, specs, error, message) -> None:
    with pytest.raises(error, match=message):
        run_steer(make_model(), "ab", tmp_path / "o", **specs, n_samples=1, length=3)
    assert not (tmp_path / "o").exists()
    with pytest.raises(FileExistsError, match=r"notes\.txt"):
        run_steer(make_model(), "ab", foreign_folder(tmp_path), ablate=[("layers.0", [1], None)])


def test_run_probes_writes_a_probe_and_its_figure_per_feature(make_model, tmp_path: Path) -> None:
    model = make_model()
    out = tmp_path / "probes"
    lines: list[str] = []
    text = quoted_text(800, seed=13)
    written = run_probes(model, text, ["inside_quotes", "inside_quotes"], out, max_rows=400, log=lines.append,
                         accelerator="cpu", devices=1, enable_progress_bar=False)  # fmt: skip
    assert written == ["probes.json", "inside_quotes.png"]
    assert sorted(p.name for p in out.iterdir()) == ["inside_quotes.png", "manifest.json", "probes.json"]
    results = json.loads((out / "probes.json").read_text(encoding="utf-8"))
    assert list(results) == ["inside_quotes"] and results["inside_quotes"]["quantity"] == "cell"
    assert lines[0].startswith("read cell of layers.0, layers.1 at ") and lines[1].startswith("inside_quotes (auc)")
    manifest = read_manifest(out)
    assert (
        manifest is not None and manifest["kind"] == "probe" and manifest["arguments"]["features"] == ["inside_quotes"]
    )


@pytest.mark.parametrize(
    ("features", "options", "error", "message"),
    [(["inside_quote"], {}, UnknownFeatureError, "unknown feature 'inside_quote'"),
     ([], {}, ValueError, "`features` is empty"),
     (["inside_quotes"], {"quantity": "reset_gate"}, ValueError, "`quantity` 'reset_gate' is not one of the model's"),
     (["inside_quotes"], {"causal": True, "causal_chars": 1}, ValueError, "`causal_chars` must be an integer >= 2")],
)  # fmt: skip
def test_run_probes_refuses_bad_arguments_before_the_pass(make_model, tmp_path, features, options, error, message):
    with pytest.raises(error, match=message):
        run_probes(make_model(), "ab" * 50, features, tmp_path / "o", **options)
    assert not (tmp_path / "o").exists()
    with pytest.raises(FileExistsError, match=r"notes\.txt"):
        run_probes(make_model(), "ab" * 50, ["inside_quotes"], foreign_folder(tmp_path))


def test_probe_folder_names() -> None:
    assert probe_folder_names(["a"]) == ["probes.json", "a.png", "a_ablation.png"]


def test_write_experiment_folder_takes_several_figures_and_refuses_odd_names(make_model, tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    model = make_model()
    figures = {"one.png": Figure(), "two.png": Figure()}
    out = write_experiment_folder(tmp_path / "o", "probe", {"x": 1}, figures, model=model, texts={}, arguments={},
                                  result_name="probes.json")  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "one.png", "probes.json", "two.png"]
    with pytest.raises(ValueError, match=r"plain \.png file names, got \['../up.png'\]"):
        write_experiment_folder(tmp_path / "p", "probe", {}, {"../up.png": Figure()}, model=model, texts={},
                                arguments={})  # fmt: skip
