"""``lstm-interp analyze`` and ``run_analysis``: every output file, agreement with the library, the page in Chromium,
and a clear error for each kind of bad input."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from browser import launch, open_report
from cli_run import run_cli as _run
from matplotlib.image import imread

from lstm_interp import CharLSTM, find_cells, gate_saturation, trace
from lstm_interp.comparison import char_log_probs
from lstm_interp.features import FEATURES
from lstm_interp.manifest import file_sha256, model_provenance, text_provenance
from lstm_interp.report import run_analysis, write_html_report

TEXT = 'a{b "ab c"}\n(c {"a b"} ba)\n' * 12  # 11 characters: a b c space " { } ( ) newline
BASELINE = '{a "b c"} (b a)\n' * 8
FEATURES_CHOSEN = ["inside_quotes", "brace_depth"]


@pytest.fixture(scope="module")
def model(make_model) -> CharLSTM:
    return make_model(TEXT, from_text=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, model: CharLSTM) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    model.save_pretrained(folder / "model")
    paths = {"model": folder / "model", "text": folder / "text.txt", "baseline": folder / "baseline.txt"}
    paths["text"].write_text(TEXT, encoding="utf-8")
    paths["baseline"].write_text(BASELINE, encoding="utf-8")
    return paths


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory, files: dict[str, Path]) -> tuple[Path, str]:
    """One full CLI run with a baseline, shared by the tests that read its outputs."""
    out = tmp_path_factory.mktemp("analysis") / "out"
    code, stdout, stderr = _run([
        "analyze", str(files["model"]), str(files["text"]), "--out", str(out), "--features", *FEATURES_CHOSEN,
        "--baseline-text", str(files["baseline"]), "--ngram-order", "3", "--top", "4",
    ])  # fmt: skip
    assert code == 0, stderr
    return out, stdout


def page_meta(path: Path) -> dict:
    found = re.search(r'<script type="application/json" id="report-meta">(.*?)</script>', path.read_text("utf-8"))
    assert found is not None
    return json.loads(found.group(1))


# ---------------------------------------------------------------------------------------------- the outputs
def test_every_output_exists_and_parses(analysed):
    out, stdout = analysed
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    figures = {f"figures/cell_text_{f}.png" for f in FEATURES_CHOSEN} | {
        "figures/gate_saturation.png", "figures/class_loss.png", "figures/brace_study.png",
        "figures/error_breakdown.png",
    }  # fmt: skip
    assert names == {"cells.json", "gate_saturation.json", "comparison.json", "report.html", "manifest.json"} | figures
    for figure in figures:
        assert imread(out / figure).shape[2] in (3, 4)  # a real PNG
    for name in ("cells.json", "gate_saturation.json", "comparison.json"):
        json.loads((out / name).read_text(encoding="utf-8"), parse_constant=pytest.fail)  # strict JSON: no NaN
    assert f"Wrote {len(names)} files to {out}" in stdout
    assert "gate saturation" in stdout and "forget_gate" in stdout and "best unit per feature" in stdout


def test_cells_json_agrees_with_find_cells_on_a_whole_trace(analysed, model):
    out, _ = analysed
    cells = json.loads((out / "cells.json").read_text(encoding="utf-8"))
    assert list(cells["features"]) == FEATURES_CHOSEN and cells["quantity"] == "cell" and cells["skipped"] == {}
    whole = trace(model, TEXT)  # one trace, no segments
    for name in FEATURES_CHOSEN:
        rows = cells["features"][name]["rows"]
        expected = find_cells(whole, name, top=4)
        assert [(r["layer"], r["unit"], r["metric"], r["sign"]) for r in rows] == [
            (e.layer, e.unit, e.metric, e.sign) for e in expected
        ]
        np.testing.assert_allclose([r["score"] for r in rows], [e.score for e in expected], atol=1e-6)
    assert cells["features"]["brace_depth"]["rows"][0]["metric"] == "pearson"


def test_gate_saturation_json_agrees_with_gate_saturation(analysed, model):
    out, _ = analysed
    data = json.loads((out / "gate_saturation.json").read_text(encoding="utf-8"))
    expected = gate_saturation(trace(model, TEXT)).summary()
    assert len(data["table"]) == 2 * 3
    for row in data["table"]:
        assert row["left_saturated"] == pytest.approx(expected[f"{row['layer']}/{row['gate']}/left_saturated"])
        assert row["right_saturated"] == pytest.approx(expected[f"{row['layer']}/{row['gate']}/right_saturated"])
    assert data["saturation"]["cell_mean"]["layers.1"] == pytest.approx(expected["layers.1/cell/mean"], abs=1e-6)
    assert data["saturation"]["cell_std"]["layers.0"] == pytest.approx(expected["layers.0/cell/std"], rel=1e-5)
    assert set(data["integrators"]) == {"layers.0", "layers.1"}


def test_comparison_json(analysed, model):
    out, _ = analysed
    data = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    assert data["ngram_order"] == 3 and data["num_chars"] == len(TEXT) - 1
    assert data["lstm_loss"] == pytest.approx(-char_log_probs(model, TEXT).mean(), rel=1e-6)
    classes = data["class_loss"]["classes"]
    assert sum(c["count"] for c in classes) == len(TEXT) - 1
    braces = data["brace_study"]
    assert braces["num_matched"] == 2 * 12 and data["brace_study_skipped"] is None
    assert {b["distance"] for b in braces["braces"]} == {9, 6}  # {b "ab c"} and {"a b"}
    errors = data["error_breakdown"]
    assert sum(c["count"] for c in errors["categories"]) == errors["num_errors"]
    assert errors["oracle_orders"] == list(range(1, 10))
    assert [c["name"] for c in errors["categories"]][-1] == "boost"


def test_report_opens_on_the_best_scoring_feature_match(analysed, model, tmp_path):
    out, _ = analysed
    cells = json.loads((out / "cells.json").read_text(encoding="utf-8"))
    rows = [(name, r) for name in FEATURES_CHOSEN for r in cells["features"][name]["rows"]]
    # Strength puts AUC and |r| on one scale: 2 * AUC - 1 for an AUC score, |r| itself.
    _, best = max(rows, key=lambda nr: 2 * nr[1]["score"] - 1 if nr[1]["metric"] == "auc" else nr[1]["score"])
    meta = page_meta(out / "report.html")
    assert {k: meta["open"][k] for k in ("layer", "unit", "quantity")} == {
        "layer": best["layer"], "unit": best["unit"], "quantity": "cell"
    }  # fmt: skip
    # Without `open_on` the page would open on layers.0's most variable cell unit: make sure this test tells apart.
    most_variable = meta["probes"][0]["layers"][0]["quantities"][0]["top"][0][0]
    assert (best["layer"], best["unit"]) != ("layers.0", most_variable)
    assert [f["name"] for f in meta["features"]] == FEATURES_CHOSEN
    with launch() as browser, open_report(browser, out / "report.html") as (page, log):
        state = page.evaluate("({...window.lstmReport.state})")
        assert page.locator("#layer option:checked").inner_text() == best["layer"]
        assert page.locator("#quantity option:checked").inner_text() == "cell"
        assert state["unit"] == best["unit"] and page.input_value("#unit") == str(best["unit"])
        current = page.locator("#features li.current")  # the opening unit is marked in the feature list
        assert current.count() >= 1 and f"{best['unit']}" in current.first.inner_text()
        assert page.locator("#features h3").all_inner_texts() == FEATURES_CHOSEN
        assert log.errors == [] and log.dialogs == []
        # Without `open_on` the page still opens on the first layer's most variable cell unit.
        plain = write_html_report(trace(model, TEXT[:60]), tmp_path / "plain.html")
        top = page_meta(plain)["probes"][0]["layers"][0]["quantities"][0]["top"][0][0]
        with open_report(browser, plain) as (page, log):
            state = page.evaluate("({...window.lstmReport.state})")
            assert state == {"probe": 0, "layer": 0, "quantity": 0, "unit": top, "readAt": -1}
            assert log.errors == []


def test_run_analysis_on_a_model_object(make_model, tmp_path):
    """The library path (``lstm-interp explore`` calls it): default features, no baseline, a text without braces."""
    text = 'He said "yes" and left.\nShe said "no".\n' * 4
    net = make_model(text, from_text=True, num_layers=1, seed=1)
    lines: list[str] = []
    out = run_analysis(net, text, tmp_path / "out", segment_chars=16, report_chars=50, log=lines.append)
    assert out == tmp_path / "out"
    cells = json.loads((out / "cells.json").read_text(encoding="utf-8"))
    # Code features are constant on prose: skipped with the reason, not scored as NaN.
    assert "inside_comment" in cells["skipped"] and "undefined" in cells["skipped"]["inside_comment"]
    assert set(cells["features"]) | set(cells["skipped"]) == set(FEATURES)
    # Traced 16 characters at a time, the state carried across: the same ranking and saturation as one trace.
    whole = trace(net, text)
    expected = find_cells(whole, "inside_quotes", top=10)
    rows = cells["features"]["inside_quotes"]["rows"]
    assert [(r["layer"], r["unit"]) for r in rows] == [(e.layer, e.unit) for e in expected]
    np.testing.assert_allclose([r["score"] for r in rows], [e.score for e in expected], atol=1e-6)
    table = json.loads((out / "gate_saturation.json").read_text(encoding="utf-8"))["table"]
    summary = gate_saturation(whole).summary()
    assert [r["right_saturated"] for r in table] == pytest.approx(
        [summary[f"{r['layer']}/{r['gate']}/right_saturated"] for r in table]
    )
    assert not (out / "comparison.json").exists() and not (out / "figures" / "class_loss.png").exists()
    assert len(page_meta(out / "report.html")["probes"][0]["text"]) == 50
    assert any("constant on this text, not scored" in line for line in lines)


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_gru_and_rnn_use_the_hidden_state(make_model, cell, tmp_path):
    net = make_model(TEXT, from_text=True, cell=cell, seed=2)
    out = run_analysis(net, TEXT, tmp_path / "out", features=["inside_quotes"], segment_chars=50)
    cells = json.loads((out / "cells.json").read_text(encoding="utf-8"))
    assert cells["quantity"] == "hidden"
    expected = find_cells(trace(net, TEXT), "inside_quotes", quantity="hidden", top=10)
    assert [(r["layer"], r["unit"]) for r in cells["features"]["inside_quotes"]["rows"]] == [
        (e.layer, e.unit) for e in expected
    ]
    if cell == "gru":
        data = json.loads((out / "gate_saturation.json").read_text(encoding="utf-8"))
        assert {row["gate"] for row in data["table"]} == {"reset_gate", "update_gate"}
    else:  # an Elman RNN has no gates: no table, no scatter
        assert not (out / "gate_saturation.json").exists() and not (out / "figures" / "gate_saturation.png").exists()


def test_text_without_braces_skips_the_brace_study(model, tmp_path):
    text = 'a "b c" ab\n' * 10
    out = run_analysis(model, text, tmp_path / "out", features=["inside_quotes"], baseline_text=BASELINE,
                       ngram_order=2, segment_chars=13)  # fmt: skip
    data = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    # Scored across segment boundaries exactly as in one pass.
    lstm = char_log_probs(model, text, segment_chars=len(text))
    assert data["lstm_loss"] == pytest.approx(-lstm.astype(np.float64).mean(), rel=1e-6)
    lowercase = data["class_loss"]["classes"][2]
    mask = np.array([c.islower() for c in text[1:]])
    assert lowercase["name"] == "lowercase" and lowercase["lstm_loss"] == pytest.approx(-lstm[mask].mean(), rel=1e-5)
    assert data["brace_study"] is None and "no braces at all" in data["brace_study_skipped"]
    assert not (out / "figures" / "brace_study.png").exists()
    assert (out / "figures" / "class_loss.png").is_file()


# ---------------------------------------------------------------------------------------------- bad input
def test_unknown_feature_lists_the_known_ones(files, tmp_path):
    code, _, err = _run(["analyze", str(files["model"]), str(files["text"]), "--features", "inside_quotse"])
    assert code == 2
    assert "unknown feature 'inside_quotse'" in err and "did you mean 'inside_quotes'" in err
    assert "the known features are [" in err and "'position_in_line'" in err
    with pytest.raises(ValueError, match=r"unknown feature 'nope'.*known features"):
        run_analysis(CharLSTM.from_pretrained(files["model"]), TEXT, tmp_path / "x", features=["nope"])
    assert not (tmp_path / "x").exists()


def test_constant_feature_says_undefined(files, tmp_path):
    out = tmp_path / "out"
    code, _, err = _run(["analyze", str(files["model"]), str(files["text"]), "--features", "inside_comment",
                         "--out", str(out)])  # fmt: skip
    assert code == 1
    assert "feature 'inside_comment' is constant (False) over all 324 characters" in err
    assert "correlation or AUC with any unit is undefined" in err and "nan" not in err.lower()
    assert not out.exists()  # checked before any work


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("model", "argument MODEL: '{path}' is not a folder or a file (no such path)"),
        ("text", "argument TEXT_FILE: '{path}' does not exist or is not a file"),
        ("baseline", "argument --baseline-text: '{path}' does not exist or is not a file"),
    ],
)
def test_missing_files(files, tmp_path, which, message):
    missing = tmp_path / "missing"
    paths = {k: str(v) for k, v in files.items()} | {which: str(missing)}
    code, _, err = _run(["analyze", paths["model"], paths["text"], "--baseline-text", paths["baseline"]])
    assert code == 2
    assert message.format(path=missing) in err


def test_empty_text_file(files, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    code, _, err = _run(["analyze", str(files["model"]), str(empty)])
    assert code == 2
    assert f"argument TEXT_FILE: '{empty}' is empty or has one character (0); expected a text of at least 2" in err


def test_model_folder_without_its_files(files, tmp_path):
    folder = tmp_path / "not_a_model"
    folder.mkdir()
    code, _, err = _run(["analyze", str(folder), str(files["text"]), "--out", str(tmp_path / "out")])
    assert code == 1
    assert "config.json" in err and str(folder) in err


def test_ngram_order_larger_than_the_baseline_text(files, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("ab{}", encoding="utf-8")
    code, _, err = _run([
        "analyze", str(files["model"]), str(files["text"]), "--features", "inside_quotes",
        "--baseline-text", str(short), "--ngram-order", "50", "--out", str(tmp_path / "out"),
    ])  # fmt: skip
    assert code == 1
    assert "n larger than the text: n-gram order 50 but the baseline text has 4 characters" in err
    assert "use an order of at most 4" in err
    assert not (tmp_path / "out").exists()  # checked before tracing


def test_ngram_order_needs_a_baseline(files):
    code, _, err = _run(["analyze", str(files["model"]), str(files["text"]), "--ngram-order", "3"])
    assert code == 2 and "argument --ngram-order: 3 needs --baseline-text FILE" in err


def test_text_outside_the_vocabulary(files, tmp_path, monkeypatch):
    odd = tmp_path / "odd.txt"
    odd.write_text("a{b}Z", encoding="utf-8")
    code, _, err = _run(["analyze", str(files["model"]), str(odd), "--out", str(tmp_path / "out")])
    assert code == 1 and "'Z' (first at 4)" in err
    assert "Pass --skip-unknown to drop them" in err and "on_unknown" not in err  # the flag that exists here
    monkeypatch.chdir(tmp_path)  # without --out, the folder goes under the current directory
    code, stdout, err = _run(["analyze", str(files["model"]), str(odd), "--features", "brace_depth", "--skip-unknown"])
    assert code == 0, err
    assert "skipped 1 characters" in stdout
    default = Path("lstm_interp_analysis") / "model_odd"
    assert f"Open {default / 'report.html'}" in stdout and (tmp_path / default / "cells.json").is_file()


def test_feature_of_another_length_than_the_trace(model):
    with pytest.raises(ValueError, match="feature '<array>' has 5 values but the trace has 324 characters"):
        find_cells(trace(model, TEXT), np.arange(5.0))


def test_report_open_on_an_unknown_unit(model, tmp_path):
    with pytest.raises(ValueError, match=r"`open_on` names unit 99 of 'layers\.0', which has 8 units"):
        write_html_report(trace(model, TEXT[:20]), tmp_path / "r.html", open_on={"layer": "layers.0", "unit": 99})
    assert not (tmp_path / "r.html").exists()


def test_out_pointing_at_a_file_fails_before_any_tracing(files, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("not a folder", encoding="utf-8")
    code, stdout, err = _run(["analyze", str(files["model"]), str(files["text"]), "--out", str(taken)])
    assert code == 1 and f"the output folder '{taken}' is a file" in err
    assert "tracing" not in stdout  # refused before the pass over the text


# ---------------------------------------------------------------------------------------------- whole folders
def test_the_manifest_names_model_texts_arguments_and_every_file(analysed, model):
    out, _ = analysed
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["kind"] == "analysis" and manifest["lstm_interp_version"]
    files = {p.relative_to(out).as_posix(): file_sha256(p) for p in out.rglob("*") if p.is_file()}
    del files["manifest.json"]
    assert manifest["files"] == files
    assert manifest["texts"] == {"text": text_provenance(TEXT), "baseline_text": text_provenance(BASELINE)}
    loaded = model_provenance(model)
    assert {k: manifest["model"][k] for k in ("config_sha256", "weights_sha256")} == {
        k: loaded[k] for k in ("config_sha256", "weights_sha256")
    }
    assert manifest["model"]["source"]["folder"].endswith("model")  # loaded from the folder by the CLI
    assert manifest["arguments"]["features"] == FEATURES_CHOSEN and manifest["arguments"]["top"] == 4


def test_a_rerun_leaves_nothing_of_the_older_run(model, tmp_path):
    out = tmp_path / "out"
    run_analysis(model, TEXT, out, features=["inside_quotes", "brace_depth"], baseline_text=BASELINE, ngram_order=2)
    assert (out / "comparison.json").is_file() and (out / "figures" / "cell_text_brace_depth.png").is_file()
    run_analysis(model, TEXT, out, features=["inside_quotes"])
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == [
        "cells.json", "figures/cell_text_inside_quotes.png", "figures/gate_saturation.png", "gate_saturation.json",
        "manifest.json", "report.html",
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporaries beside it


def test_a_folder_with_other_files_is_refused_untouched(files, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("months of work", encoding="utf-8")
    code, stdout, err = _run(["analyze", str(files["model"]), str(files["text"]), "--out", str(out)])
    assert code == 1 and f"the output folder '{out}' holds thesis.tex" in err and "replaced whole" in err
    assert "tracing" not in stdout and sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


def test_a_failure_midway_leaves_the_previous_folder(model, tmp_path, monkeypatch):
    out = tmp_path / "out"
    run_analysis(model, TEXT, out, features=["inside_quotes"])
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    module = importlib.import_module("lstm_interp.report.run_analysis")  # the package exports the function

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(module, "write_html_report", broken)  # fails after cells.json and the figures
    with pytest.raises(RuntimeError, match="disk on fire"):
        run_analysis(model, TEXT, out, features=["brace_depth"])
    after = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
