"""Sparse probes (``fit_probe``), their control task, figure, causal check and CLI, on planted known answers.

The planted traces are built directly: a layer's cell state is ``arctanh`` of the values wanted on screen, so the
displayed values the probe reads (``tanh(c)``) are exactly the planted ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import run_cli
from pictures import assert_picture

from lstm_interp.analysis import Probe, control_task, find_cells, fit_probe, probe_rows
from lstm_interp.analysis.probe_solver import fit_elastic_net
from lstm_interp.experiments.ablation_study import ablation_study
from lstm_interp.experiments.probe_ablation import probe_ablation
from lstm_interp.features import ConstantFeatureError, UnknownFeatureError
from lstm_interp.plots import plot_probe_curve, save_figure
from lstm_interp.plots.ablation_study import plot_ablation_study
from lstm_interp.tracing import Trace, trace, trace_segments

pytestmark = pytest.mark.usefixtures("one_thread")

LETTERS = "abcdefghijkl"


def planted_trace(shown: np.ndarray, text: str | None = None, tokens: np.ndarray | None = None) -> Trace:
    """A one-layer trace whose displayed cell values are ``shown`` (T, H), clipped into (-1, 1)."""
    cell = np.arctanh(np.clip(shown, -0.999, 0.999)).astype(np.float32)
    steps = len(shown)
    ids = torch.as_tensor(tokens if tokens is not None else np.arange(steps) % 7, dtype=torch.long)
    return Trace({"layers.0.cell": torch.from_numpy(cell)}, text=text, tokens=ids, cell="lstm", num_layers=1)


def rotation_with_flat_first_column(rng: np.random.Generator, n: int) -> np.ndarray:
    """A random rotation whose first column is ±1/sqrt(n) everywhere: a direction no single axis dominates."""
    flat = rng.choice([-1.0, 1.0], n) / np.sqrt(n)
    e1 = np.eye(n)[0]
    u = (e1 - flat) / np.linalg.norm(e1 - flat)
    householder = np.eye(n) - 2 * np.outer(u, u)  # maps e1 onto `flat`
    rest, _ = np.linalg.qr(rng.normal(size=(n - 1, n - 1)))
    spin = np.eye(n)
    spin[1:, 1:] = rest  # mixes the other 15 directions, leaves e1 alone
    return householder @ spin


def quoted_text(steps: int, seed: int = 0, chars: str = LETTERS) -> str:
    """Random characters with a '"' about every 25: quotes open and close all along the text."""
    rng = np.random.default_rng(seed)
    return "".join('"' if rng.random() < 0.04 else chars[rng.integers(len(chars))] for _ in range(steps))


# ------------------------------------------------------------------------------------------------ known answers
def test_a_distributed_feature_is_found_by_the_probe_and_by_no_single_unit():
    rng = np.random.default_rng(0)
    steps = 4000
    latent = rng.normal(size=(steps, 16))  # column 0 is the feature's direction
    planted = latent @ rotation_with_flat_first_column(rng, 16).T  # every unit carries 1/4 of it
    shown = 0.2 * np.concatenate([planted, rng.normal(size=(steps, 16))], axis=1)  # 16 more units of noise
    feature = latent[:, 0] > 0
    tr = planted_trace(shown)
    assert find_cells(tr, feature, top=1)[0].score < 0.7  # no unit alone
    probe = fit_probe(tr, feature)
    assert probe.metric == "auc" and probe.score >= 0.95
    assert probe.best_single < 0.7 and probe.best_unit[1] < 16
    top16 = {unit for _, unit, _ in probe.units[:16]}
    assert len(top16 & set(range(16))) >= 12
    assert probe.units_needed is not None and probe.units_needed >= 8
    assert probe.target == pytest.approx(0.5 + 0.95 * (probe.score - 0.5))
    scores = dict(probe.curve)
    assert scores[probe.units_needed] >= probe.target > scores[probe.units_needed - 1]  # bisection: the smallest
    assert probe.num_train + probe.num_heldout == steps and probe.num_heldout == 800 and probe.stride == 1


def test_a_single_unit_feature_needs_one_unit():
    rng = np.random.default_rng(1)
    steps = 3000
    feature = np.repeat(rng.random(steps // 30) < 0.4, 30)  # runs of 30 characters, like quotations
    shown = 0.25 * rng.normal(size=(steps, 12))
    shown[:, 3] = np.where(feature, 0.5, -0.5) + 0.25 * rng.normal(size=steps)
    probe = fit_probe(planted_trace(shown), feature)
    assert probe.units_needed == 1 and probe.units[0][:2] == ("layers.0", 3)
    assert probe.best_unit == ("layers.0", 3) and probe.best_single == pytest.approx(probe.score, abs=0.01)
    assert probe.score > 0.95


def test_a_continuous_feature_is_scored_with_r2():
    rng = np.random.default_rng(2)
    steps = 2000
    depth = np.zeros(steps)
    for t in range(1, steps):  # a slow, stationary wander, like a nesting depth
        depth[t] = 0.95 * depth[t - 1] + rng.normal()
    shown = 0.1 * rng.normal(size=(steps, 10))
    shown[:, :4] += 0.1 * depth[:, None]  # four units share it
    probe = fit_probe(planted_trace(shown), depth)
    assert probe.metric == "r2" and probe.chance == 0.0 and probe.score > 0.5
    assert {unit for _, unit, _ in probe.units[:4]} == {0, 1, 2, 3}
    assert probe.target == pytest.approx(0.95 * probe.score)
    assert probe.selectivity == pytest.approx(probe.score - probe.control_score)


def test_the_binary_fit_reaches_the_logistic_regression_optimum():
    """The proximal Newton steps minimise LogisticRegression's elastic-net objective (C = 1 / (n * alpha), both
    classes weighing half), on a feature with a quarter of positives."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 6)).astype(np.float32)
    y = (x @ np.array([1.5, -1.0, 0.5, 0.0, 0.0, 0.2]) + rng.normal(size=600)) > 1.0
    alpha, l1_ratio = 0.02, 0.5
    balance = np.where(y, 300 / y.sum(), 300 / (~y).sum())

    def objective(w: np.ndarray, b: float) -> float:
        eta = x.astype(np.float64) @ w + b
        penalty = l1_ratio * np.abs(w).sum() + (1 - l1_ratio) / 2 * w @ w
        return float(np.mean(balance * (np.logaddexp(0, eta) - y * eta)) + alpha * penalty)

    w, b = fit_elastic_net(x, y, "auc", alpha, l1_ratio)
    reference = LogisticRegression(C=1 / (600 * alpha), l1_ratio=l1_ratio, solver="saga", tol=1e-10,
                                   class_weight="balanced", max_iter=100_000).fit(x.astype(np.float64), y)  # fmt: skip
    assert 0.15 < y.mean() < 0.35
    assert objective(w, b) <= objective(reference.coef_[0], reference.intercept_[0]) + 1e-7
    np.testing.assert_allclose(w, reference.coef_[0], atol=2e-3)


# ------------------------------------------------------------------------------------------------ control task
def test_the_control_task_keeps_the_marginals_and_labels_types():
    text = quoted_text(5000, chars="abcdefghijklmnopqrstuvwxyz ")
    types = np.array([ord(c) for c in text])
    feature = np.array([c in "aeiou" for c in text])
    labels = control_task(types, feature, seed=0)
    assert labels.dtype == np.bool_ and abs(labels.mean() - feature.mean()) < 0.02
    for kind in np.unique(types):
        assert len(np.unique(labels[types == kind])) == 1  # one label per character type
    assert np.array_equal(labels, control_task(types, feature, seed=0))
    assert not np.array_equal(labels, control_task(types, feature, seed=1))
    depth = np.arange(5000) % 13 / 2.0
    values = control_task(types, depth, seed=0)
    assert set(np.unique(values)) <= set(np.unique(depth)) and len(np.unique(values)) > 1
    with pytest.raises(ValueError, match="needs at least 2"):
        control_task(np.zeros(10, dtype=int), np.arange(10) % 2 == 0)
    with pytest.raises(ValueError, match="one length"):
        control_task(types, feature[:-1])


def test_selectivity_is_small_for_a_feature_of_the_character_alone():
    rng = np.random.default_rng(4)
    text = "".join(rng.choice(list(LETTERS), 3000))
    ids = np.array([LETTERS.index(c) for c in text])
    shown = 0.6 * np.eye(12)[ids] @ np.linalg.qr(rng.normal(size=(12, 12)))[0] + 0.05 * rng.normal(size=(3000, 12))
    probe = fit_probe(planted_trace(shown, text, ids), lambda t: np.array([c in "abc" for c in t]))
    assert probe.score > 0.95 and probe.control_score > 0.9  # any labelling of characters is as easy to read
    assert abs(probe.selectivity) < 0.05
    assert probe.selectivity == pytest.approx(probe.score - probe.control_score)


def test_selectivity_is_large_for_a_planted_context_feature():
    rng = np.random.default_rng(5)
    text = quoted_text(3000, seed=5)
    inside = np.cumsum([c == '"' for c in text]) % 2 == 1
    shown = 0.3 * rng.normal(size=(3000, 16))
    shown[:, :4] += np.where(inside, 0.4, -0.4)[:, None]  # the context, not the character
    ids = np.array([(LETTERS + '"').index(c) for c in text])
    probe = fit_probe(planted_trace(shown, text, ids), "inside_quotes")
    assert probe.feature == "inside_quotes" and probe.score > 0.95
    assert probe.control_score < 0.65 and probe.selectivity > 0.3
    assert probe.selectivity == pytest.approx(probe.score - probe.control_score)


# ------------------------------------------------------------------------------------------------ streams
def test_segments_give_the_same_probe_as_the_whole_trace():
    rng = np.random.default_rng(6)
    text = quoted_text(3000, seed=6)
    inside = np.cumsum([c == '"' for c in text]) % 2 == 1
    shown = 0.3 * rng.normal(size=(3000, 8))
    shown[:, 2] += np.where(inside, 0.3, -0.3)
    tr = planted_trace(shown, text)
    whole = fit_probe(tr, "inside_quotes", max_rows=1000, seed=3)
    assert whole.stride == 4 and whole.num_train + whole.num_heldout == 750  # ceil(3000 / 4) <= 1000 < 1500
    pairs = [(start, tr.time_slice(start, start + 700)) for start in range(0, 3000, 700)]
    assert fit_probe(iter(pairs), "inside_quotes", max_rows=1000, seed=3) == whole
    assert fit_probe([t for _, t in pairs], "inside_quotes", max_rows=1000, seed=3) == whole
    rows = probe_rows(iter(pairs), max_rows=1000, with_text=True)
    kept = rows.x.copy()
    assert fit_probe(rows, "inside_quotes", seed=3) == whole
    assert np.array_equal(rows.x, kept)  # the caller's rows are left as they were
    assert np.array_equal(rows.positions, np.arange(0, 3000, 4)) and rows.text == text


def test_a_model_traced_in_segments_gives_the_probe_of_the_whole_trace(make_model):
    model = make_model()
    text = quoted_text(2500, seed=7, chars="ab{} .xy\n")
    whole = fit_probe(trace(model, text, names_filter="layers.*.cell"), "inside_quotes")
    streamed = fit_probe(trace_segments(model, text, 600, names_filter="layers.*.cell"), "inside_quotes")
    assert streamed.score == pytest.approx(whole.score, abs=1e-4)
    assert streamed.units[0][:2] == whole.units[0][:2] and streamed.num_units == 16


# ------------------------------------------------------------------------------------------------ bad input
@pytest.fixture
def small() -> Trace:
    rng = np.random.default_rng(8)
    return planted_trace(0.3 * rng.normal(size=(400, 4)), quoted_text(400, seed=8))


def test_bad_features_fail_with_what_was_expected(small: Trace):
    read: list[int] = []

    def segments() -> Iterator[Trace]:
        read.append(1)
        yield small

    with pytest.raises(UnknownFeatureError, match=r"unknown feature 'inside_quote'.*did you mean 'inside_quotes'"):
        fit_probe(segments(), "inside_quote")
    assert not read  # refused before the first segment was traced
    with pytest.raises(ConstantFeatureError, match="constant"):
        fit_probe(small, np.zeros(400))
    with pytest.raises(ConstantFeatureError, match="'brace_depth' is constant"):
        fit_probe(small, "brace_depth")  # no brace in the text
    with pytest.raises(ValueError, match="has 401 values but the trace has 400 characters"):
        fit_probe(small, np.arange(401) % 2 == 0)
    with pytest.raises(ValueError, match=r"more steps \(400 so far\) than the 300"):
        fit_probe(small, np.arange(300) % 2 == 0)
    tail_only = np.arange(400) < 200
    with pytest.raises(ValueError, match=r"constant .* on the held-out tail"):
        fit_probe(small, tail_only)


def test_layers_quantities_and_text_the_trace_lacks(small: Trace):
    feature = np.arange(400) % 3 == 0
    with pytest.raises(ValueError, match=r"unknown layer 'layers.2'; the trace's layers are \['layers.0'\]"):
        fit_probe(small, feature, layers=["layers.2"])
    with pytest.raises(ValueError, match=r"quantity 'hidden' is not in this trace .* it holds \['cell'\]"):
        fit_probe(small, feature, quantity="hidden")
    no_text = Trace(dict(small), text=None, tokens=small.tokens, cell="lstm", num_layers=1)
    with pytest.raises(ValueError, match="holds no text"):
        fit_probe(no_text, "inside_quotes")
    with pytest.raises(ValueError, match="at least 100 positions, got 60"):
        fit_probe(small.time_slice(0, 60), feature[:60])
    with pytest.raises(ValueError, match="starts at step 300, expected 200"):
        fit_probe([(0, small.time_slice(0, 200)), (300, small.time_slice(300))], feature)
    with pytest.raises(TypeError, match="Trace or an iterable"):
        fit_probe(3, feature)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"heldout": 1.0}, "`heldout` must be a share"),
        ({"max_rows": 50}, "`max_rows` must be an integer >= 100"),
        ({"alpha": 0.0}, "`alpha` must be a positive number"),
        ({"alpha": []}, "`alpha` must be a positive number"),
        ({"l1_ratio": 0.0}, r"`l1_ratio` must be in \(0, 1\]"),
    ],
)
def test_bad_options(small: Trace, option: dict, message: str):
    with pytest.raises(ValueError, match=message):
        fit_probe(small, np.arange(400) % 3 == 0, **option)


def test_several_alphas_are_chosen_on_a_validation_slice():
    rng = np.random.default_rng(9)
    feature = np.repeat(rng.random(100) < 0.5, 20)
    shown = 0.3 * rng.normal(size=(2000, 8))
    shown[:, 1] += np.where(feature, 0.3, -0.3)
    probe = fit_probe(planted_trace(shown), feature, alpha=[0.001, 0.01, 0.1])
    assert [a for a, _ in probe.validation] == [0.1, 0.01, 0.001]  # largest (sparsest) first
    best = max(s for _, s in probe.validation)
    assert probe.alpha == next(a for a, s in probe.validation if s >= best - 0.005)


# ------------------------------------------------------------------------------------------------ figure, causal
def test_the_figure(tmp_path: Path):
    rng = np.random.default_rng(10)
    feature = np.repeat(rng.random(100) < 0.5, 20)
    shown = 0.3 * rng.normal(size=(2000, 8))
    shown[:, :3] += np.where(feature, 0.2, -0.2)[:, None]
    probe = fit_probe(planted_trace(shown), feature)
    assert_picture(save_figure(plot_probe_curve(probe), tmp_path / "probe.png"), min_width=600)
    json.dumps(probe.to_dict(), allow_nan=False)
    with pytest.raises(TypeError, match="must be a Probe"):
        plot_probe_curve(probe.to_dict())  # type: ignore[arg-type]


def test_probe_ablation_ablates_the_top_units_together(make_model):
    model = make_model()
    text = quoted_text(800, seed=11, chars="ab{} .xy\n")
    probe = fit_probe(trace(model, text), "inside_quotes")
    study = probe_ablation(model, text, probe, k=3, n_random_sets=6, n_random=4)
    assert isinstance(probe, Probe) and study.together is not None
    assert study.together.units == probe.top_units(3) and study.together_feature == "inside_quotes"
    assert [effect.units for effect in study.units] == [[unit] for unit in probe.top_units(3)]
    assert len(study.random_set_target_deltas) == 6 and study.targets == "where inside_quotes is on"
    assert study.together_label == "the probe's top 3 for inside_quotes"  # not find_cells' top 3: the figure says so
    left = plot_ablation_study(study).axes[0]
    assert any(t.get_text().startswith("the probe's top 3 for inside_quotes:") for t in left.texts)
    array_probe = fit_probe(trace(model, text), np.array([c == "a" for c in text]))
    with pytest.raises(ValueError, match="not registered: pass `targets`"):
        probe_ablation(model, text, array_probe)
    with pytest.raises(ValueError, match="`k` must be a positive integer"):
        probe_ablation(model, text, probe, k=0)


def test_ablation_study_takes_explicit_units_together(make_model):
    model = make_model()
    text = quoted_text(600, seed=12, chars="ab{} .xy\n")
    chosen = [("layers.1", 2), ("layers.1", 5)]
    study = ablation_study(model, text, [(1, 2)], '"', together_units=chosen, n_random_sets=4, n_random=3,
                           n_bootstrap=20)  # fmt: skip
    assert study.together is not None and study.together.units == chosen and len(study.random_set_target_deltas) == 4
    with pytest.raises(ValueError, match=r"layer 'layers\.7' is not one of the model's"):
        ablation_study(model, text, [(1, 2)], '"', together_units=[("layers.7", 0)])


# ------------------------------------------------------------------------------------------------ the CLI
@pytest.fixture
def saved(make_model, tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "model"
    make_model().save_pretrained(folder)
    text = tmp_path / "text.txt"
    text.write_text(quoted_text(1500, seed=13, chars="ab{}{} .xy\n"), encoding="utf-8")
    return folder, text


def test_the_cli_writes_probes_figures_and_a_manifest(saved: tuple[Path, Path], tmp_path: Path):
    model, text = saved
    out = tmp_path / "probes"
    argv = ["probe", str(model), str(text), "--features", "inside_quotes", "brace_depth", "--out", str(out)]
    code, stdout, err = run_cli(argv)
    assert code == 0, err
    assert "inside_quotes (auc): probe" in stdout and "brace_depth (r2): probe" in stdout
    results = json.loads((out / "probes.json").read_text(encoding="utf-8"))
    assert set(results) == {"inside_quotes", "brace_depth"}
    assert results["inside_quotes"]["metric"] == "auc" and results["brace_depth"]["metric"] == "r2"
    assert {"score", "units", "units_needed", "curve", "best_single", "control_score", "selectivity"} <= set(
        results["inside_quotes"]
    )
    for name in ("inside_quotes.png", "brace_depth.png"):
        assert_picture(out / name, min_width=600)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["kind"] == "probe" and set(manifest["files"]) == {"probes.json", "inside_quotes.png",
                                                                      "brace_depth.png"}  # fmt: skip
    assert run_cli(argv)[0] == 0  # its own earlier output is replaced
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    code, _, err = run_cli(argv)
    assert code == 1 and "notes.txt" in err and "--overwrite" in err
    assert (out / "notes.txt").exists() and (out / "probes.json").exists()
    assert run_cli([*argv, "--overwrite"])[0] == 0 and not (out / "notes.txt").exists()


def test_the_cli_causal_check_and_bad_arguments(saved: tuple[Path, Path], tmp_path: Path):
    model, text = saved
    out = tmp_path / "causal"
    code, _, err = run_cli(["probe", str(model), str(text), "--features", "inside_quotes", "--causal", "--k", "2",
                            "--random-sets", "5", "--random", "3", "--out", str(out)])  # fmt: skip
    assert code == 0, err
    causal = json.loads((out / "probes.json").read_text(encoding="utf-8"))["inside_quotes"]["causal"]
    top = json.loads((out / "probes.json").read_text(encoding="utf-8"))["inside_quotes"]["units"][:2]
    assert causal["together"]["units"] == [[row["layer"], row["unit"]] for row in top]
    assert len(causal["random_set_target_deltas"]) == 5
    assert_picture(out / "inside_quotes_ablation.png", min_width=600)
    code, _, err = run_cli(["probe", str(model), str(text), "--features", "inside_quote", "--out", str(out)])
    assert code == 2 and "unknown feature 'inside_quote'" in err
    code, _, err = run_cli(["probe", str(model), str(text), "--features", "inside_quotes", "--quantity", "reset_gate",
                            "--out", str(out)])  # fmt: skip
    assert code == 2 and "'reset_gate' is not one of the model's" in err
    code, _, err = run_cli(["probe", str(model), str(text), "--features", "inside_quotes", "--heldout", "1.5",
                            "--out", str(out)])  # fmt: skip
    assert code == 2 and "--heldout" in err
