"""What ``import lstm_interp`` loads, and how long ``load_pretrained("novel")`` takes without a network.

Usage::

    python benchmarks/bench_imports.py [--repeats 3] [--baseline DIR]

``--baseline DIR`` runs every case a second time against the package in ``DIR`` (a checkout of another revision,
put first on ``PYTHONPATH``), so that before and after are measured side by side in one run, with their ratios.

Every measurement runs in a fresh interpreter (a module imported once stays imported):

* the number of modules ``import lstm_interp`` adds to ``sys.modules``, and whether Lightning, matplotlib,
  huggingface_hub and torch are among them; the same for ``from lstm_interp import load_pretrained`` and for
  ``lstm-interp --help``;
* the wall time of a process running ``load_pretrained("novel")`` with the Hub out of reach (``HF_ENDPOINT`` on a
  closed port of 127.0.0.1; ``HF_HOME`` an empty temporary folder, so nothing is cached), with ``HF_HUB_OFFLINE=1``
  and without it, and, without it, against an endpoint that accepts connections and never answers (the probe's worst
  case: it waits its whole second). Each row gives the whole process (interpreter start, imports, load) and the
  ``load_pretrained`` call alone, best and median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("lightning", "matplotlib", "huggingface_hub", "torch")

IMPORT_CASES = {
    "import lstm_interp": "import lstm_interp",
    "from lstm_interp import load_pretrained": "from lstm_interp import load_pretrained",
    "lstm-interp --help": (
        "import contextlib, io\nfrom lstm_interp.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])"
    ),
}

LOAD_CODE = """
import json, logging, sys, time
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
start = time.perf_counter()
from lstm_interp import load_pretrained
imported = time.perf_counter()
model = load_pretrained("novel")
done = time.perf_counter()
print(json.dumps({"import_s": imported - start, "load_s": done - imported, "hidden": model.config.hidden_size}))
"""


def with_path(env: dict[str, str], root: Path | None) -> dict[str, str]:
    """``env`` with ``root`` first on ``PYTHONPATH`` (the package of another checkout), or unchanged."""
    if root is None:
        return env
    return env | {"PYTHONPATH": os.pathsep.join([str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def modules_after(code: str, root: Path | None = None) -> tuple[int, list[str]]:
    """``(modules added, heavy packages among sys.modules)`` after running ``code`` in a fresh interpreter."""
    script = (
        "import json, sys\nbefore = set(sys.modules)\n"
        f"{code}\n"
        f"added = set(sys.modules) - before\nheavy = {HEAVY!r}\n"
        "print(json.dumps({'count': len(added), 'heavy': [h for h in heavy if h in sys.modules]}))\n"
    )
    env = with_path(dict(os.environ), root)
    # Run outside the repository: `python -c` puts the working directory first on sys.path, ahead of PYTHONPATH.
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env, cwd=tempfile.gettempdir()
    )
    if out.returncode != 0:
        raise RuntimeError(f"{code!r} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.splitlines()[-1])
    return result["count"], result["heavy"]


def closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hub_env(endpoint: str, hf_home: Path, offline: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(hf_home),
        HF_HUB_DISABLE_TELEMETRY="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def time_load(endpoint: str, offline: bool, root: Path | None = None, limit: float = 120.0) -> tuple[float, float, int]:
    """``(whole process s, load_pretrained s, warning lines)`` of one run, with a fresh empty HF_HOME.

    A run still going after ``limit`` seconds is killed and counts as ``inf`` (printed as ``>limit``).
    """
    with tempfile.TemporaryDirectory(prefix="bench_imports_hf_home_") as hf_home:
        start = time.perf_counter()
        try:
            out = subprocess.run(
                [sys.executable, "-c", LOAD_CODE],
                capture_output=True,
                text=True,
                env=with_path(hub_env(endpoint, Path(hf_home), offline), root),
                cwd=hf_home,
                timeout=limit,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return math.inf, math.inf, 0
        wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"load_pretrained('novel') failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.splitlines()[-1])
    warnings = [line for line in out.stderr.splitlines() if line.startswith("WARNING")]
    return wall, result["load_s"], len(warnings)


def summary(values: list[float]) -> str:
    """``best / median`` (``>limit`` for killed runs)."""
    return " / ".join(f"{v:5.2f}" if math.isfinite(v) else " kill" for v in (min(values), statistics.median(values)))


def main() -> None:
    """Print the import table, then the timing table (each for this checkout and, with --baseline, the other)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per load case (default 3)")
    parser.add_argument("--baseline", type=Path, default=None, help="a checkout of another revision to compare with")
    parser.add_argument("--limit", type=float, default=120.0, help="seconds before a load run is killed (120)")
    args = parser.parse_args()
    roots: dict[str, Path | None] = {"this checkout": None}
    if args.baseline is not None:
        roots["baseline"] = args.baseline.resolve()
    print(f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs")
    print()
    print(f"{'entry point':<42} {'version':<14} {'modules added':>13}  heavy packages loaded")
    for label, code in IMPORT_CASES.items():
        for version, root in roots.items():
            count, loaded = modules_after(code, root)
            print(f"{label:<42} {version:<14} {count:>13}  {', '.join(loaded) or 'none'}")
    print()
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        cases = {
            "closed port, HF_HUB_OFFLINE=1": (f"http://127.0.0.1:{closed_port()}", True),
            "closed port, HF_HUB_OFFLINE unset": (f"http://127.0.0.1:{closed_port()}", False),
            "silent endpoint, HF_HUB_OFFLINE unset": (f"http://127.0.0.1:{silent.getsockname()[1]}", False),
        }
        print(f'load_pretrained("novel"), nothing cached, {args.repeats} runs: best / median seconds')
        print(f"{'case':<40} {'version':<14} {'whole process':>15} {'load_pretrained':>17}  warnings")
        for label, (endpoint, offline) in cases.items():
            medians = {}
            for version, root in roots.items():
                runs = [time_load(endpoint, offline, root, args.limit) for _ in range(args.repeats)]
                walls, loads, warnings = zip(*runs, strict=True)
                medians[version] = statistics.median(loads)
                print(
                    f"{label:<40} {version:<14} {summary(list(walls)):>15} {summary(list(loads)):>17}  "
                    f"{', '.join(map(str, sorted(set(warnings))))}"
                )
            if len(medians) == 2:
                ratio = medians["baseline"] / max(medians["this checkout"], 1e-9)
                # A killed baseline: the ratio is at least the limit over this checkout's time.
                floor = args.limit / medians["this checkout"]
                shown = f"{ratio:.1f}x" if math.isfinite(ratio) else f">{floor:.0f}x"
                note = "(baseline / this checkout, medians; kill = over --limit)"
                print(f"{'':<40} {'ratio':<14} {'':>15} {shown:>17}  {note}")


if __name__ == "__main__":
    main()
