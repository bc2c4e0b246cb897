"""The package installs as designed: `callbacks/` ships as `lstm_interp.callbacks` and `model_cards/` as
`lstm_interp.pretrained`, editable and from a wheel."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import lstm_interp

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED_FILES = {"config.json", "vocab.json", "model.safetensors", "README.md", "results.json"}


def test_public_api_is_exported():
    for name in lstm_interp.__all__:
        assert hasattr(lstm_interp, name), name
    callbacks = importlib.import_module("lstm_interp.callbacks")
    assert Path(callbacks.__file__).parent.name == "callbacks"


def test_editable_install_maps_callbacks_folder():
    """In the development install, `lstm_interp.callbacks` is the repository's top-level `callbacks/` folder."""
    out = subprocess.run(
        [sys.executable, "-c", "import lstm_interp.callbacks as c; print(c.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",  # not the repo root, so nothing is found through the working directory
    )
    assert Path(out.stdout.strip()) == ROOT / "callbacks" / "__init__.py"


def test_wheel_ships_callbacks_and_bundled_corpus(tmp_path):
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)], check=True
    )
    (wheel,) = tmp_path.glob("lstm_interp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "lstm_interp/callbacks/__init__.py" in names
    subpackages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "lstm_interp").rglob("__init__.py")}
    missing = sorted(f"{pkg}/__init__.py" for pkg in subpackages if f"{pkg}/__init__.py" not in names)
    assert not missing, f"add these packages to [tool.setuptools] packages: {missing}"
    assert "lstm_interp/assets/war_and_peace.txt.xz" in names
    assert {"lstm_interp/report/report.js", "lstm_interp/report/template.html"} <= names
    assert not any(n.startswith(("callbacks/", "tests/", "model_cards/")) for n in names)
    # The pretrained models ship inside the wheel (one copy in the repository: model_cards/ is lstm_interp.pretrained).
    assert {"lstm_interp/pretrained/__init__.py", "lstm_interp/pretrained/template.md"} <= names
    cards = ROOT / "model_cards"
    bundled = [p for p in cards.glob("*/*") if p.name in PRETRAINED_FILES] + list(cards.glob("*/images/*.png"))
    wanted = sorted(f"lstm_interp/pretrained/{p.relative_to(cards).as_posix()}" for p in bundled)
    missing = [name for name in wanted if name not in names]
    assert not missing, f"add these to [tool.setuptools.package-data] 'lstm_interp.pretrained': {missing}"
    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "-q", "--target", str(target), str(wheel)], check=True)
    # The wheel's copy must win over the editable install: PYTHONPATH comes before the editable finder.
    code = (
        "import importlib.resources as r, lstm_interp, lstm_interp.callbacks, lstm_interp.data as d; "
        "print(lstm_interp.__file__); print(lstm_interp.callbacks.__file__); "
        "print(d.BUNDLED_CORPORA['war_and_peace']); print(r.files('lstm_interp.pretrained') / 'template.md')"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd="/")
    for line in out.stdout.split():
        assert Path(line).is_relative_to(target), line
        assert Path(line).exists()
