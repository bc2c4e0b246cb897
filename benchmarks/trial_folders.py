"""Nothing half-done on disk (issue 11): concurrent ``save_pretrained`` and a SIGKILLed ``analyze``, before and after.

Usage::

    python benchmarks/trial_folders.py [--rounds 200] [--kills 20] [--seed 0] [--before-commit 7f83f78]

"Before" is commit ``--before-commit`` (the code before whole-folder writes), checked out with
``git worktree add /tmp/trial_before <commit>`` if that folder is not there yet, plus the two links
``lstm_interp/callbacks -> ../callbacks`` and ``lstm_interp/pretrained -> ../model_cards`` that the editable install
provides (as for ``bench_imports.py --baseline``); its processes run with it first on ``PYTHONPATH``. "After" is the
checkout this script is in. Every process prints the ``lstm_interp.__file__`` it imported, and the run stops if it is
not the expected one. This script itself never imports lstm_interp.

**Trial A, concurrent savers.** For each version and each of two pairs of models (the same shape with different
weights and vocabularies of the same size but other characters; then hidden 8 against hidden 16), a driver process
starts two writer processes (multiprocessing, ``spawn``). Each writer saves its model once to a private reference
folder, then, ``--rounds`` times, waits on a barrier with the other and the driver and calls ``save_pretrained`` of
its model into one shared folder; the driver then classifies the folder by the sha256 of ``config.json``,
``vocab.json`` and ``model.safetensors`` against the writers' references and by ``CharLSTM.from_pretrained``:
model A whole, model B whole, mixed (loads), mixed/broken (load error), refused by manifest (ManifestError). The
shared folder is deleted before every even round (both writers create it) and kept before odd ones (both replace
an existing save).

**Trial B, killed analyze.** For each version: ``analyze`` of the bundled ``novel`` model on 3,000 characters of
War and Peace with ``--baseline-text`` (100,000 other characters) ``--ngram-order 3``. One unkilled run with the
new ``--features`` into an empty folder gives the duration D and the files a new analysis has; one with the
previous ``--features`` makes the previous analysis. Then ``--kills`` tries: OUT is set to a copy of the previous
analysis, analyze with the new features is started into it and SIGKILLed after a random time in [0, D); OUT is
classified (previous complete: the same files and bytes as the copy; new complete: the new run's file set, with
comparison.json, and where there is a manifest.json, every file's sha256 as listed; mixed/partial: anything else)
and the hidden temporaries (``.*.tmp``, ``.*.partial-*``) that appeared in OUT (recursively) and beside it are
counted. Temporaries beside OUT stay there across tries; those inside OUT go when it is reset. After the last kill
OUT is left as it is, the temporaries are counted, one more unkilled analyze runs into it, and they are counted
again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEFORE_ROOT = Path("/tmp/trial_before")
MODEL_FILES = ("config.json", "vocab.json", "model.safetensors")
WAR_AND_PEACE = REPO.parent / "shared" / "data" / "war_and_peace.txt"
PREVIOUS_FEATURES = ("inside_quotes", "position_in_line")
NEW_FEATURES = ("start_of_word",)
A_CLASSES = (
    "model A whole",
    "model B whole",
    "mixed (loads)",
    "mixed/broken (load error)",
    "refused by manifest (ManifestError)",
)
B_CLASSES = ("previous complete", "new complete", "new + the previous run's stale files", "mixed/partial (other)")
ANALYZE_CODE = "from lstm_interp.cli.main import main; import sys; sys.exit(main(sys.argv[1:]))"


# --------------------------------------------------------------------------------------------------- helpers
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def content_sha256(path: Path) -> str:
    """The sha256 of what a model file says: for ``.safetensors``, of its header parsed and re-serialised with sorted
    keys plus its tensor bytes (safetensors writes the ``__metadata__`` keys in a different order from one save to
    the next, so the same weights saved twice differ in bytes); for other files, of the bytes."""
    data = path.read_bytes()
    if path.suffix != ".safetensors" or len(data) < 8:
        return hashlib.sha256(data).hexdigest()
    size = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8 : 8 + size])
    except ValueError:
        return hashlib.sha256(data).hexdigest()
    canonical = json.dumps(header, sort_keys=True).encode()
    return hashlib.sha256(canonical + data[8 + size :]).hexdigest()


def env_for(root: Path | None) -> dict[str, str]:
    """The environment of a child: ``root`` first on PYTHONPATH (before), or PYTHONPATH without it (after)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    if root is not None:
        env["PYTHONPATH"] = str(root)
    return env


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def prepare_before(commit: str) -> Path:
    """``/tmp/trial_before`` at ``commit``, with the two package links of the editable install."""
    if not (BEFORE_ROOT / "lstm_interp").is_dir():
        git("worktree", "add", "--detach", str(BEFORE_ROOT), commit)
    for link, target in (("callbacks", "../callbacks"), ("pretrained", "../model_cards")):
        path = BEFORE_ROOT / "lstm_interp" / link
        if not path.exists() and (BEFORE_ROOT / target.removeprefix("../")).is_dir():
            path.symlink_to(target)
    return BEFORE_ROOT


def check_import(root: Path | None, expected: Path) -> str:
    """The ``lstm_interp.__file__`` a child with ``env_for(root)`` imports; stops the run if it is not ``expected``."""
    code = "import lstm_interp, lstm_interp.callbacks, lstm_interp.pretrained; print(lstm_interp.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env_for(root), cwd=tempfile.gettempdir(), capture_output=True, text=True
    )
    found = out.stdout.strip()
    if out.returncode != 0 or Path(found).resolve() != (expected / "lstm_interp" / "__init__.py").resolve():
        sys.exit(f"a child with PYTHONPATH={root} imports {found!r} (expected {expected}); stderr:\n{out.stderr}")
    return found


# ------------------------------------------------------------------------------------ trial A: concurrent savers
def _writer(index: int, spec: dict, shared: str, reference: str, rounds: int, barrier, expected_init: str) -> None:
    """A writer process: save its model to ``reference``, then ``rounds`` times to ``shared`` between barriers."""
    import torch

    torch.set_num_threads(1)
    import lstm_interp
    from lstm_interp import CharLSTM, CharLSTMConfig

    assert os.path.samefile(lstm_interp.__file__, expected_init), lstm_interp.__file__
    torch.manual_seed(spec["seed"])
    config = CharLSTMConfig(vocab_size=len(spec["chars"]), num_layers=1, hidden_size=spec["hidden"], embedding_size=4)
    model = CharLSTM(config, spec["chars"])
    model.save_pretrained(reference)
    for _ in range(rounds):
        barrier.wait()  # start together
        try:
            model.save_pretrained(shared)
        except Exception as err:  # counted; the other writer and the driver go on
            print(f"writer {index}: {type(err).__name__}: {err}", file=sys.stderr)
        barrier.wait()  # both done: the driver looks


def run_saver_driver(root_label: str, same_shape: bool, rounds: int, seed: int, work: Path) -> dict:
    """In a child interpreter of the version under test: two writers, ``rounds`` rounds; returns the counts."""
    import multiprocessing as mp

    import torch

    torch.set_num_threads(1)
    import lstm_interp
    from lstm_interp import CharLSTM

    work.mkdir(parents=True, exist_ok=True)
    shared, refs = work / "shared_model", [work / "reference_A", work / "reference_B"]
    specs = [
        {"chars": "abcdefghij", "hidden": 8, "seed": seed},
        {"chars": "klmnopqrst", "hidden": 8 if same_shape else 16, "seed": seed + 1},
    ]
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(3)
    writers = [
        ctx.Process(
            target=_writer, args=(i, specs[i], str(shared), str(refs[i]), rounds, barrier, lstm_interp.__file__)
        )
        for i in range(2)
    ]
    for w in writers:
        w.start()
    counts: Counter[str] = Counter()
    examples: dict[str, str] = {}
    ref_hashes: list[dict[str, str]] = []
    try:
        for r in range(rounds):
            if r % 2 == 0 and shared.exists():
                shutil.rmtree(shared)
            barrier.wait(timeout=600)
            barrier.wait(timeout=600)
            if not ref_hashes:
                ref_hashes = [{n: content_sha256(ref / n) for n in MODEL_FILES} for ref in refs]
            verdict, detail = classify_saved(shared, ref_hashes, CharLSTM)
            counts[verdict] += 1
            examples.setdefault(verdict, f"round {r}: {detail}")
    finally:
        for w in writers:
            w.join(timeout=60)
            if w.is_alive():
                w.kill()
    return {"version_file": lstm_interp.__file__, "root": root_label, "counts": dict(counts), "examples": examples}


def classify_saved(folder: Path, refs: list[dict[str, str]], model_cls) -> tuple[str, str]:
    """One of A_CLASSES (or 'missing'), and what was seen."""
    if not folder.is_dir():
        return "missing", "no folder"
    hashes = {n: content_sha256(folder / n) if (folder / n).is_file() else None for n in MODEL_FILES}
    owner = {n: "".join("AB"[i] for i in range(2) if refs[i][n] == hashes[n]) or "-" for n in MODEL_FILES}
    seen = ", ".join(f"{n}={owner[n]}" for n in MODEL_FILES)
    manifest = folder / "manifest.json"
    if manifest.is_file():
        listed = json.loads(manifest.read_text(encoding="utf-8")).get("files", {})
        agree = all((folder / n).is_file() and listed.get(n) == sha256(folder / n) for n in MODEL_FILES)
        seen += f", manifest {'agrees' if agree else 'disagrees'}"
    try:
        model_cls.from_pretrained(str(folder))
        error = None
    except Exception as err:  # any load error is a finding
        error = err
    for i, label in enumerate(("model A whole", "model B whole")):
        if all(hashes[n] == refs[i][n] for n in MODEL_FILES):
            return (label, seen) if error is None else (f"{label} but load error", f"{seen}; {error!r}")
    if error is None:
        return "mixed (loads)", seen
    if type(error).__name__ == "ManifestError":
        return "refused by manifest (ManifestError)", f"{seen}; {str(error)[:160]}"
    return "mixed/broken (load error)", f"{seen}; {type(error).__name__}: {str(error)[:160]}"


def trial_savers(root: Path | None, label: str, same_shape: bool, rounds: int, seed: int, work: Path) -> dict:
    args = [sys.executable, str(Path(__file__).resolve()), "--_driver", label, "--rounds", str(rounds)]
    args += ["--seed", str(seed), "--_work", str(work), "--_same-shape" if same_shape else "--_other-shape"]
    out = subprocess.run(args, env=env_for(root), cwd=tempfile.gettempdir(), capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"saver driver ({label}) failed:\n{out.stderr[-4000:]}")
    result = json.loads(out.stdout.splitlines()[-1])
    result["stderr_lines"] = [line for line in out.stderr.splitlines() if line.startswith("writer ")]
    return result


# ------------------------------------------------------------------------------------ trial B: killed analyze
def analyze_args(model: Path, text: Path, out: Path, base: Path, features: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-c", ANALYZE_CODE, "analyze", str(model), str(text), "--out", str(out),
            "--baseline-text", str(base), "--ngram-order", "3", "--features", *features]  # fmt: skip


def run_analyze(args: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    out = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"analyze failed:\n{out.stderr[-4000:]}")
    return time.perf_counter() - start


def snapshot(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file (hidden temporaries included)."""
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def is_temporary(name: str) -> bool:
    return name.startswith(".") and (name.endswith(".tmp") or ".partial-" in name)


def temporaries(out: Path) -> set[str]:
    """The hidden temporaries inside ``out`` (recursively) and beside it in its parent."""
    found = {f"beside/{p.name}" for p in out.parent.iterdir() if is_temporary(p.name)}
    if out.is_dir():
        found |= {f"inside/{p.relative_to(out).as_posix()}" for p in out.rglob("*") if is_temporary(p.name)}
    return found


def classify_analysis(out: Path, previous: dict[str, str], new: dict[str, str]) -> tuple[str, str]:
    """One of B_CLASSES, and what differs. ``previous``/``new``: the files of the previous analysis and of the new
    one made unkilled into an empty folder (relative path -> sha256). A manifest.json is compared by what it lists
    (it holds a time stamp): it must list exactly the other files, with their sha256."""
    files = {k: v for k, v in snapshot(out).items() if not any(is_temporary(part) for part in k.split("/"))}
    if files == previous:
        return "previous complete", ""
    manifest_ok = None
    if "manifest.json" in files:
        try:
            listed = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["files"]
            manifest_ok = listed == {k: v for k, v in files.items() if k != "manifest.json"}
        except (ValueError, KeyError):
            manifest_ok = False
    body = {k: v for k, v in files.items() if k != "manifest.json"}
    new_body = {k: v for k, v in new.items() if k != "manifest.json"}
    expects_manifest = "manifest.json" in new
    manifest_fine = manifest_ok is True if expects_manifest else manifest_ok is None
    missing = sorted(set(new_body) - set(body))
    extra = sorted(set(body) - set(new_body))
    old_bytes = sorted(k for k in set(body) & set(new_body) if body[k] != new_body[k])
    if not missing and not old_bytes and manifest_fine and "comparison.json" in body:
        if not extra:
            return "new complete", ""
        if all(previous.get(k) == body[k] for k in extra):
            return "new + the previous run's stale files", f"stale {extra}"
    detail = f"missing {missing}, extra {extra}, not the new bytes {old_bytes}, manifest ok {manifest_ok}"
    return "mixed/partial (other)", detail


def trial_kills(root: Path | None, label: str, kills: int, rng: random.Random, work: Path) -> dict:
    env = env_for(root)
    work.mkdir(parents=True, exist_ok=True)
    text, base = work / "text.txt", work / "baseline.txt"
    novel = REPO / "model_cards" / "novel"
    corpus = WAR_AND_PEACE.read_text(encoding="utf-8")
    text.write_text(corpus[1_000_000:1_003_000], encoding="utf-8")
    base.write_text(corpus[:100_000], encoding="utf-8")
    reference, prev_copy, parent = work / "reference_new", work / "previous", work / "runs"
    duration = run_analyze(analyze_args(novel, text, reference, base, NEW_FEATURES), env, work)
    new = snapshot(reference)
    run_analyze(analyze_args(novel, text, prev_copy, base, PREVIOUS_FEATURES), env, work)
    previous = snapshot(prev_copy)
    parent.mkdir()
    out = parent / "out"
    counts: Counter[str] = Counter()
    details: list[str] = []
    tries_with_temps, landed = 0, 0
    for k in range(kills):
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(prev_copy, out)
        before_try = temporaries(out)
        delay = rng.uniform(0, duration)
        proc = subprocess.Popen(
            analyze_args(novel, text, out, base, NEW_FEATURES), env=env, cwd=work,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            landed += 1
        verdict, detail = classify_analysis(out, previous, new)
        counts[verdict] += 1
        new_temps = temporaries(out) - before_try
        tries_with_temps += bool(new_temps)
        if detail or new_temps:
            details.append(f"try {k} (kill at {delay:.1f} s): {verdict} {detail} temporaries {sorted(new_temps)}")
    left_after_kills = temporaries(out)
    final_verdict_before = classify_analysis(out, previous, new)[0]
    run_analyze(analyze_args(novel, text, out, base, NEW_FEATURES), env, work)
    left_after_rerun = temporaries(out)
    final_verdict, final_detail = classify_analysis(out, previous, new)
    return {
        "label": label,
        "duration_s": duration,
        "counts": dict(counts),
        "landed": landed,
        "tries_with_temps": tries_with_temps,
        "left_after_kills": sorted(left_after_kills),
        "left_after_rerun": sorted(left_after_rerun),
        "out_after_kills": final_verdict_before,
        "rerun_verdict": final_verdict + (f" ({final_detail})" if final_detail else ""),
        "details": details,
    }


# --------------------------------------------------------------------------------------------------- report
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200, help="rounds of two concurrent saves per case (200)")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLed analyze runs per version (20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times and the models' weights (0)")
    parser.add_argument("--before-commit", default="7f83f78", help="the commit measured as 'before' (7f83f78)")
    parser.add_argument("--_driver", help=argparse.SUPPRESS)
    parser.add_argument("--_work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_same-shape", dest="same_shape", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_other-shape", dest="same_shape", action="store_false", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._driver:
        result = run_saver_driver(args._driver, args.same_shape, args.rounds, args.seed, args._work)
        print(json.dumps(result))
        return

    command = "python benchmarks/trial_folders.py " + " ".join(sys.argv[1:])
    before_root = prepare_before(args.before_commit)
    versions = {
        "before": (before_root, check_import(before_root, before_root)),
        "after": (None, check_import(None, REPO)),
    }
    after_commit = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--short", "--untracked-files=no", "lstm_interp", "callbacks", "model_cards")
    print(f"before: {args.before_commit} -> {versions['before'][1]}")
    print(f"after:  {after_commit}{' + uncommitted edits' if dirty else ''} -> {versions['after'][1]}")
    if dirty:
        print("  uncommitted:", dirty.replace("\n", "; "))
    rng = random.Random(args.seed)
    savers: dict[tuple[str, bool], dict] = {}
    kills: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="trial_folders_") as tmp:
        for same_shape in (True, False):
            for name, (root, _) in versions.items():
                start = time.perf_counter()
                work = Path(tmp) / f"savers_{name}_{'same' if same_shape else 'other'}"
                savers[name, same_shape] = trial_savers(root, name, same_shape, args.rounds, args.seed, work)
                case = "same shape" if same_shape else "hidden 8 vs 16"
                took = time.perf_counter() - start
                print(f"trial A {name} {case}: {savers[name, same_shape]['counts']} ({took:.0f} s)", flush=True)
        for name, (root, _) in versions.items():
            start = time.perf_counter()
            kills[name] = trial_kills(root, name, args.kills, rng, Path(tmp) / f"kills_{name}")
            print(f"trial B {name}: {kills[name]['counts']} ({time.perf_counter() - start:.0f} s)", flush=True)

    print()
    print(f"Command: `{command}`")
    print()
    print(f"| trial | before ({args.before_commit}) | after ({after_commit}) |")
    print("| --- | ---: | ---: |")
    for same_shape, case in ((True, "same shape"), (False, "hidden 8 vs 16")):
        classes = list(A_CLASSES) + sorted(
            {c for v in versions for c in savers[v, same_shape]["counts"]} - set(A_CLASSES)
        )
        for c in classes:
            row = [savers[v, same_shape]["counts"].get(c, 0) for v in versions]
            print(f"| A: 2 savers, {case}, {args.rounds} rounds: {c} | {row[0]} | {row[1]} |")
    rows = [(f"B: {args.kills} SIGKILLed analyze: {c}", lambda r, c=c: r["counts"].get(c, 0)) for c in B_CLASSES]
    rows += [
        ("B: kills that landed before the run ended", lambda r: r["landed"]),
        ("B: tries leaving new hidden temporaries", lambda r: r["tries_with_temps"]),
        ("B: temporaries present after the last kill", lambda r: len(r["left_after_kills"])),
        ("B: temporaries after one more unkilled analyze", lambda r: len(r["left_after_rerun"])),
        ("B: that unkilled analyze's folder", lambda r: r["rerun_verdict"]),
        ("B: unkilled analyze duration D (s)", lambda r: f"{r['duration_s']:.1f}"),
    ]
    for title, get in rows:
        print(f"| {title} | {get(kills['before'])} | {get(kills['after'])} |")
    print()
    print("Details:")
    for (name, same_shape), result in savers.items():
        for verdict, example in result["examples"].items():
            print(f"  A {name} {'same' if same_shape else 'other'} shape, first '{verdict}': {example}")
        for line in result["stderr_lines"][:5]:
            print(f"  A {name} {'same' if same_shape else 'other'} shape, {line}")
    for name, result in kills.items():
        for line in result["details"]:
            print(f"  B {name} {line}")
        print(f"  B {name} temporaries after the last kill: {result['left_after_kills']}")
        print(f"  B {name} temporaries after the unkilled rerun: {result['left_after_rerun']}")


if __name__ == "__main__":
    main()
