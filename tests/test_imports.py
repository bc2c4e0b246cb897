"""What importing lstm_interp costs: which heavy packages each entry point pulls in, read from ``sys.modules``.

Each check runs in a fresh interpreter (a module imported once stays imported), and asserts on the modules loaded,
not on timings: ``import lstm_interp`` loads none of Lightning, matplotlib or huggingface_hub (PEP 562 lazy
exports), and ``lstm-interp --help`` or ``lstm-interp sample MODEL`` never import Lightning.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import lstm_interp

HEAVY = ("lightning", "matplotlib", "huggingface_hub")


def loaded_after(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; return which of HEAVY (and torch) it imported, and what it printed."""
    body = "".join(f"    {line}\n" for line in code.splitlines())
    script = (
        f"import contextlib, io, json, sys\nout = io.StringIO()\nwith contextlib.redirect_stdout(out):\n{body}"
        f"names = [*{HEAVY!r}, 'torch']\n"
        "print(json.dumps({'loaded': [n for n in names if n in sys.modules], 'stdout': out.getvalue()}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_import_lstm_interp_loads_no_heavy_package():
    result = loaded_after("import lstm_interp\nprint(lstm_interp.__version__)")
    assert result["loaded"] == [], result
    assert result["stdout"].strip() == lstm_interp.__version__


def test_a_lazy_name_imports_only_what_it_needs():
    result = loaded_after("from lstm_interp import load_pretrained\nprint(load_pretrained.__module__)")
    assert result["stdout"].strip() == "lstm_interp.hub.load_pretrained"
    assert "lightning" not in result["loaded"] and "matplotlib" not in result["loaded"], result


def test_every_exported_name_resolves_and_is_listed():
    assert set(lstm_interp.__all__) <= set(dir(lstm_interp))
    for name in lstm_interp.__all__:
        assert getattr(lstm_interp, name) is not None, name
    assert lstm_interp.CharLSTMModule.__name__ == "CharLSTMModule"
    with pytest.raises(AttributeError, match="module 'lstm_interp' has no attribute 'nope'"):
        lstm_interp.nope  # noqa: B018 (the attribute access is the test)


def test_hub_exports_stay_functions_after_their_modules_are_imported():
    """``load_pretrained`` and ``push_to_hub`` are also module names in ``lstm_interp.hub``: the functions win."""
    code = (
        "import lstm_interp.hub.push_to_hub, lstm_interp.hub.load_pretrained\n"
        "import lstm_interp, lstm_interp.hub\n"
        "from lstm_interp import load_pretrained, push_to_hub\n"
        "print(callable(load_pretrained), callable(push_to_hub), callable(lstm_interp.hub.push_to_hub))\n"
    )
    result = loaded_after(code)
    assert result["stdout"].split() == ["True", "True", "True"]
    assert "lightning" not in result["loaded"] and "matplotlib" not in result["loaded"], result


def test_models_stage_imports_neither_lightning_nor_the_hub_stage():
    code = (
        "import sys\n"
        "import lstm_interp.models, lstm_interp.models.char_lstm, lstm_interp.models.checkpoint\n"
        "print('lstm_interp.hub' in sys.modules)\n"
        "from lstm_interp.models import CharLSTMModule\n"
        "print(CharLSTMModule.__name__)\n"
    )
    result = loaded_after(code)
    assert result["stdout"].split() == ["False", "CharLSTMModule"]  # Lightning comes with CharLSTMModule only


def test_cli_help_imports_no_lightning():
    result = loaded_after("from lstm_interp.cli.main import main\nprint('exit', main(['--help']))")
    assert "sample" in result["stdout"] and result["stdout"].splitlines()[-1] == "exit 0", result
    assert not {"lightning", "matplotlib", "torch"} & set(result["loaded"]), result


def test_cli_sample_imports_no_lightning(make_model, tmp_path: Path):
    folder = tmp_path / "model"
    make_model().save_pretrained(folder)
    code = (
        "from lstm_interp.cli.main import main\n"
        f"print('exit', main(['sample', {str(folder)!r}, '--length', '10', '--seed', '0']))\n"
    )
    result = loaded_after(code)
    assert result["stdout"].splitlines()[-1] == "exit 0", result
    assert "lightning" not in result["loaded"] and "matplotlib" not in result["loaded"], result


def test_the_explorer_and_the_corpus_passes_import_no_lightning_until_a_pass_runs():
    # Lightning takes seconds to import; the explorer opens its cached indexes, and answers, without it.
    code = "import lstm_interp.serve.app\nimport lstm_interp.analysis\nfrom lstm_interp.analysis import corpus_pass"
    result = loaded_after(code)
    assert "lightning" not in result["loaded"], result
