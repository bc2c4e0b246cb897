"""The argparse types every ``lstm-interp`` command shares refuse bad values while parsing: status 2, one line naming
the argument and the value, before MODEL is opened (an empty folder here, which could only fail later with 1)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from cli_run import run_cli

from lstm_interp.cli._arguments import add_options, existing_file, feature_controls, feature_name, non_empty, unit_spec


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "model").mkdir()  # a folder, so MODEL passes its check; opening it would fail with status 1
    (tmp_path / "text.txt").write_text("some text to read", encoding="utf-8")
    return {"model": str(tmp_path / "model"), "text": str(tmp_path / "text.txt"), "missing": str(tmp_path / "no.txt")}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["analyze", "{model}", "{text}", "--controls", "inside_quotes=inside_parns"],
         "argument --controls: unknown feature 'inside_parns' (did you mean 'inside_parens'"),
        (["analyze", "{model}", "{text}", "--features", "inside_quotse"], "argument --features: unknown feature"),
        (["analyze", "{model}", "{text}", "--baseline-text", "{missing}"],
         "argument --baseline-text: '{missing}' does not exist or is not a file"),
        (["ablate", "{model}", "{text}", "--unit", "layers.0:1", "--target-feature", "nope"],
         "argument --target-feature: unknown feature 'nope'"),
        (["ablate", "{model}", "{text}", "--unit", "layers.0:1", "--target", '"', "--together-feature", "nope"],
         "argument --together-feature: unknown feature 'nope'"),
        (["ablate", "{model}", "{text}", "--unit", "layers.0:1", "--target", ""],
         "argument --target: must not be empty, got ''"),
        (["probe", "{model}", "{text}", "--features", "inside_quotes", "--target", ""],
         "argument --target: must not be empty, got ''"),
        (["trace", "{model}", "--text", "", "-o", "x.safetensors"], "argument --text: must not be empty, got ''"),
        (["trace", "{model}", "--file", "{missing}", "-o", "x.safetensors"],
         "argument --file: '{missing}' does not exist or is not a file"),
        (["sample", "{model}", "--prompt", ""], "argument --prompt: must not be empty, got ''"),
        (["steer", "{model}", "--prompt", "a", "--scale", "layers.0:1"], "argument --scale: 'layers.0:1' needs"),
        (["atlas", "{model}", "{text}", "{missing}"], "argument CORPUS: '{missing}' does not exist or is not a file"),
        (["index", "{model}", "{missing}"], "argument CORPUS: '{missing}' does not exist or is not a file"),
        (["serve", "{model}", "--corpus", "{missing}"], "argument --corpus: '{missing}' does not exist or is not"),
    ],
)  # fmt: skip
def test_a_bad_value_is_refused_while_parsing(paths: dict[str, str], argv: list[str], message: str) -> None:
    code, out, err = run_cli([arg.format(**paths) for arg in argv])
    assert code == 2, err
    assert message.format(**paths) in err and "Traceback" not in err and out == ""


def test_the_types_on_their_own(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a", encoding="utf-8")
    assert existing_file(str(tmp_path / "a.txt")) == tmp_path / "a.txt"
    for bad in (str(tmp_path), str(tmp_path / "b.txt")):  # a folder is not a file either
        with pytest.raises(argparse.ArgumentTypeError, match="does not exist or is not a file"):
            existing_file(bad)
    assert non_empty(" ") == " "
    assert feature_name("inside_quotes") == "inside_quotes"
    assert feature_controls("inside_if_condition= inside_parens, ,") == ("inside_if_condition", ["inside_parens"])
    assert feature_controls("inside_quotes=") == ("inside_quotes", [])
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected FEATURE=CONTROL.*got 'inside_quotes'"):
        feature_controls("inside_quotes")
    assert unit_spec("layers.1:2=0.5", op="clamp") == ("layers.1", [2], 0.5)
    with pytest.raises(argparse.ArgumentTypeError, match="takes no '=VALUE'"):
        unit_spec("layers.1:2=0.5", op="ablate")


def test_add_options_rows_show_their_defaults_and_pass_other_keywords() -> None:
    parser = argparse.ArgumentParser()
    add_options(
        parser,
        ("--big", int, 65_536, "N", "a big number"),
        ("--many", float, [0.5, 1.0], "T", "several", {"nargs": "+"}),
        ("--none", int, None, "N", "no default"),
        ("--empty", str, [], "NAME", "an empty list", {"nargs": "+"}),
        ("--pick", str, "b", None, "one of", {"choices": ["a", "b"]}),
    )
    helps = {action.dest: action.help for action in parser._actions}
    assert helps["big"] == "a big number (default 65,536)"
    assert helps["many"] == "several (default 0.5 1.0)"
    assert helps["none"] == "no default" and helps["empty"] == "an empty list"
    assert helps["pick"] == "one of (default b)"
    assert parser.parse_args(["--many", "2", "3"]).many == [2.0, 3.0]
    with pytest.raises(SystemExit):
        parser.parse_args(["--pick", "c"])
