"""``lstm-interp explore``: a pretrained model (through the Hub, or the bundled copy) analysed on a text of yours.

The Hub runs go through a real HTTP server (olah, see ``hub_server.py``) in a fresh process, as in ``test_hub.py``,
because huggingface_hub reads ``HF_ENDPOINT`` and friends when it is imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import tiny_char_lstm
from hub_server import hub_env

from lstm_interp.cli.main import main as cli_main

if TYPE_CHECKING:
    from hub_server import OlahHub

pytest_plugins = ["hub_server"]  # the fixture `olah_hub`

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = sorted(p.parent.name for p in (ROOT / "model_cards").glob("*/model.safetensors"))
TEXT = 'He said, "Well, Prince, so Genoa\nand Lucca are now just family estates."\n' * 4


def tiny_folder(tmp_path: Path) -> Path:
    model = tiny_char_lstm(TEXT, from_text=True)
    model.save_pretrained(tmp_path / "tiny")
    return tmp_path / "tiny"


def run_cli(args: list[str], env_extra: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    """``lstm-interp ARGS`` in a fresh process (huggingface_hub reads its environment at import)."""
    endpoint = env_extra.pop("HF_ENDPOINT", "http://127.0.0.1:9")  # offline runs never reach it
    env = hub_env(endpoint, tmp_path / "hf_home", **env_extra)
    code = "import sys; from lstm_interp.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path
    )


def test_explore_a_hub_repo_writes_what_analyze_writes_for_the_same_model(olah_hub: OlahHub, tmp_path):
    folder = tiny_folder(tmp_path)
    olah_hub.add_folder("org/explorable", folder)
    text_file = tmp_path / "text.txt"
    text_file.write_text(TEXT)
    features = ["--features", "inside_quotes", "position_in_line"]

    out = run_cli(
        ["explore", "org/explorable", "--text", str(text_file), "--out", str(tmp_path / "explored"), *features],
        {"HF_ENDPOINT": olah_hub.url},
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "report.html" in out.stdout
    assert cli_main(["analyze", str(folder), str(text_file), "--out", str(tmp_path / "analyzed"), *features]) == 0

    explored = json.loads((tmp_path / "explored" / "cells.json").read_text())
    analyzed = json.loads((tmp_path / "analyzed" / "cells.json").read_text())
    # The downloaded model is the one in the folder: every unit, score and sign agree.
    assert explored["features"] == analyzed["features"]
    assert (tmp_path / "explored" / "report.html").stat().st_size > 1000


def test_explore_refuses_a_missing_repo_and_a_missing_text(olah_hub: OlahHub, tmp_path):
    text_file = tmp_path / "text.txt"
    text_file.write_text(TEXT)
    out = run_cli(["explore", "org/absent", "--text", str(text_file)], {"HF_ENDPOINT": olah_hub.url}, tmp_path)
    assert out.returncode == 1 and "org/absent" in out.stderr
    out = run_cli(["explore", "novel"], {"HF_HUB_OFFLINE": "1"}, tmp_path)
    assert out.returncode == 2 and "--text" in out.stderr
    out = run_cli(["explore", "novel", "--text", str(tmp_path / "nope.txt")], {"HF_HUB_OFFLINE": "1"}, tmp_path)
    assert out.returncode == 2 and "nope.txt" in out.stderr and "does not exist" in out.stderr


@pytest.mark.parametrize("name", BUNDLED)
def test_explore_a_bundled_pretrained_model_offline(name, tmp_path):
    """The real pretrained model, offline: the bundled copy is analysed and the report written."""
    text = TEXT if name == "novel" else "static int f(int a)\n{\n\t/* add one */\n\treturn a + 1; // done\n}\n" * 4
    text_file = tmp_path / "text.txt"
    text_file.write_text(text)
    feature = "inside_quotes" if name == "novel" else "inside_comment"
    out = run_cli(
        ["explore", name, "--text", str(text_file), "--out", str(tmp_path / "out"), "--features", feature],
        {"HF_HUB_OFFLINE": "1"},
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"copy of {name!r} bundled" in out.stderr  # the one log line of the fallback
    cells = json.loads((tmp_path / "out" / "cells.json").read_text())
    best = cells["features"][feature]["rows"][0]
    # A trained model's best unit is a near-perfect detector on this text (the median unit scores about 0.6; an
    # AUC score is max(AUC, 1 - AUC), so 0.5 would hold for any unit at all).
    assert best["score"] >= 0.95 and (tmp_path / "out" / "report.html").is_file()
