"""``load_pretrained`` and ``push_to_hub`` over real HTTP: olah serves downloads, a stdlib endpoint takes uploads.

Every Hub call goes through huggingface_hub's own HTTP client, in a fresh process started with the environment
under test (``HF_ENDPOINT``, ``HF_HOME``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``), because huggingface_hub reads those
once, at import (see ``_hub_client.py``). ``hub_server.py`` holds the servers.
"""

from __future__ import annotations

import copy
import hashlib
import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch
from hub_server import free_port, hub_env, start_olah, stop_olah

from lstm_interp import CharLSTM, push_to_hub
from lstm_interp.cli.main import main as cli_main

if TYPE_CHECKING:
    from hub_server import OlahHub, UploadHub

pytest_plugins = ["hub_server"]  # the fixtures `olah_hub` and `upload_hub`

ROOT = Path(__file__).resolve().parents[1]
CLIENT = Path(__file__).with_name("_hub_client.py")
TOKEN = "hf_lstm_interp_test_token"
BUNDLED = sorted(p.parent.name for p in (ROOT / "model_cards").glob("*/model.safetensors"))


# The tiny models' vocabulary: the factory's 2x8 LSTM on it has ~4.6 kB of float32 weights (olah 0.5.4 answers 500
# for binary files of 121-149 bytes).
HELLO = "hello world"


def save(model: CharLSTM, folder: Path, dtype: torch.dtype | None = None) -> Path:
    """``save_pretrained`` into ``folder``, the weights first cast to ``dtype`` (float16, as published)."""
    (copy.deepcopy(model).to(dtype) if dtype is not None else model).save_pretrained(folder)
    return folder


def run_client(steps: list[dict[str, Any]], env: dict[str, str]) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, str(CLIENT), json.dumps(steps)], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-4000:]
    results = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(steps), out.stdout + out.stderr[-4000:]
    return results


# ------------------------------------------------------------------------------------------------- the repos
@pytest.fixture(scope="module")
def repos(
    olah_hub: OlahHub, tmp_path_factory: pytest.TempPathFactory, make_model: Callable[..., CharLSTM]
) -> dict[str, Path]:
    """Model folders, and the olah repos made from them: good, float16, and broken in every way we report."""
    root = tmp_path_factory.mktemp("repos")
    tiny = save(make_model(HELLO, from_text=True), root / "tiny")
    tiny16 = save(make_model(HELLO, from_text=True), root / "tiny16", torch.float16)
    olah_hub.add_folder("org/tiny", tiny)
    olah_hub.add_folder("org/tiny-fp16", tiny16)
    olah_hub.add_folder("org/untouched", tiny)  # never downloaded: offline, it is not cached
    files = {p.name: p.read_bytes() for p in tiny.iterdir()}
    weights = files["model.safetensors"]
    olah_hub.commit("org/no-weights", {k: v for k, v in files.items() if k != "model.safetensors"})
    # A header length far beyond the file, and a file cut in half: both sizes stay well above 149 bytes.
    olah_hub.commit("org/corrupt", {**files, "model.safetensors": (2**40).to_bytes(8, "little") + weights[8:]})
    olah_hub.commit("org/truncated", {**files, "model.safetensors": weights[: len(weights) // 2]})
    # Same-shape weights of another model beside the first one's manifest: what two concurrent savers made.
    olah_hub.commit("org/mixed", {**files, "model.safetensors": (tiny16 / "model.safetensors").read_bytes()})
    future = json.loads(files["config.json"]) | {"format_version": 99}
    olah_hub.commit("org/future", {**files, "config.json": json.dumps(future).encode()})
    bundled = root / "bundled"
    save(make_model(HELLO, from_text=True), bundled / "novel", torch.float16)
    return {"tiny": tiny, "tiny16": tiny16, "bundled": bundled, "root": root}


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hf_home")


@pytest.fixture(scope="module")
def online(olah_hub: OlahHub, repos: dict[str, Path], hf_home: Path) -> dict[str, dict[str, Any]]:
    """One process, a fresh cache, olah as HF_ENDPOINT: every online case, by label."""
    tiny, tiny16, bundled = str(repos["tiny"]), str(repos["tiny16"]), str(repos["bundled"])
    cases = {
        "repo": {"source": "org/tiny", "reference": tiny},
        "fp16": {"source": "org/tiny-fp16", "reference": tiny16},
        "fp16 as fp16": {"source": "org/tiny-fp16", "kwargs": {"dtype": "float16"}},
        "missing repo": {"source": "org/nope"},
        "missing file": {"source": "org/no-weights"},
        "missing revision": {"source": "org/tiny", "kwargs": {"revision": "v9"}},
        "corrupt": {"source": "org/corrupt"},
        "truncated": {"source": "org/truncated"},
        "future": {"source": "org/future"},
        "mixed": {"source": "org/mixed"},
        "cache only": {"source": "org/untouched", "kwargs": {"local_files_only": True}},
        "fallback": {"source": "novel", "bundled_root": bundled, "reference": tiny16},
        "fallback alias": {"source": "war-and-peace", "bundled_root": bundled, "reference": tiny16},
        "no bundled copy": {"source": "code", "bundled_root": bundled},
        "no fallback with revision": {"source": "novel", "kwargs": {"revision": "main"}, "bundled_root": bundled},
    }
    results = run_client([{"op": "load", **case} for case in cases.values()], hub_env(olah_hub.url, hf_home))
    return dict(zip(cases, results, strict=True))


def test_load_repo_id_downloads_identical_model(online):
    assert online["repo"]["ok"], online["repo"]
    assert online["repo"]["equal"] and online["repo"]["vocab_equal"]
    assert online["repo"]["dtype"] == "float32" and not online["repo"]["training"]
    assert online["repo"]["logs"] == []


def test_float16_weights_load_as_float32_unless_asked(online):
    assert online["fp16"]["ok"] and online["fp16"]["equal"], online["fp16"]
    assert online["fp16"]["dtype"] == "float32"
    assert online["fp16 as fp16"]["dtype"] == "float16"


@pytest.mark.parametrize(
    ("case", "error", "words"),
    [
        ("missing repo", "RepoUnavailableError", ["Hub repo 'org/nope' not found", "config.json"]),
        ("missing file", "FileNotFoundError", ["model.safetensors is missing from the Hub repo 'org/no-weights'"]),
        ("missing revision", "RepoUnavailableError", ["revision 'v9' not found in Hub repo 'org/tiny'"]),
        ("corrupt", "ValueError", ["model.safetensors of Hub repo 'org/corrupt'", "corrupted or truncated"]),
        ("truncated", "ValueError", ["model.safetensors of Hub repo 'org/truncated'", "corrupted or truncated"]),
        ("future", "ConfigError", ["Hub repo 'org/future'", "config.json", "`format_version` 99 is not supported"]),
        ("mixed", "ManifestError", ["Hub repo 'org/mixed' (revision 'main')", "model.safetensors (sha256 differs)"]),
        ("cache only", "RepoUnavailableError", ["config.json of Hub repo 'org/untouched' is not cached"]),
    ],
)
def test_errors_name_repo_and_file(online, case, error, words):
    result = online[case]
    assert not result["ok"] and result["type"] == error, result
    for word in words:
        assert word in result["message"], result["message"]
    assert result["logs"] == []


def test_missing_file_is_not_reported_as_missing_repo(online):
    """olah answers a missing file with RepoNotFound; a second question tells the repo exists."""
    assert "RepoUnavailableError" not in online["missing file"]["types"]
    assert "not found" not in online["missing file"]["message"]


@pytest.mark.parametrize("case", ["fallback", "fallback alias"])
def test_short_name_falls_back_to_bundled_copy_with_one_log_line(online, case):
    result = online[case]
    assert result["ok"] and result["equal"] and result["dtype"] == "float32", result
    (line,) = result["logs"]
    assert line.startswith("WARNING: Hub repo 'lstm-interp/char-lstm-war-and-peace' unavailable")
    assert "bundled" in line and "\n" not in line


def test_short_name_without_bundled_copy_or_with_revision_raises(online):
    assert online["no bundled copy"]["type"] == "RepoUnavailableError"
    assert "lstm-interp/char-lstm-linux-kernel" in online["no bundled copy"]["message"]
    assert "bundles no copy of 'code'" in online["no bundled copy"]["message"]
    assert online["no fallback with revision"]["type"] == "RepoUnavailableError"
    assert online["no fallback with revision"]["logs"] == []


def test_offline_loads_from_cache_and_explains_what_is_not_cached(online, olah_hub, repos, hf_home, tmp_path):
    assert online["repo"]["ok"]  # the cache in hf_home now holds org/tiny
    empty_cache = tmp_path / "empty_cache"
    empty_cache.mkdir()
    steps = [
        {"op": "load", "source": "org/tiny", "reference": str(repos["tiny"])},
        {"op": "load", "source": "org/tiny", "kwargs": {"cache_dir": str(empty_cache)}},
        {"op": "load", "source": "org/untouched"},
        {"op": "load", "source": "novel", "bundled_root": str(repos["bundled"]), "reference": str(repos["tiny16"])},
    ]
    cached, empty, untouched, fallback = run_client(steps, hub_env(olah_hub.url, hf_home, HF_HUB_OFFLINE="1"))
    assert cached["ok"] and cached["equal"], cached
    for result, repo in ((empty, "org/tiny"), (untouched, "org/untouched")):
        assert result["type"] == "RepoUnavailableError", result
        assert f"config.json of Hub repo {repo!r} is not cached" in result["message"]
        assert "HF_HUB_OFFLINE" in result["message"]
    assert fallback["ok"] and fallback["equal"] and len(fallback["logs"]) == 1, fallback


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_loads_with_unreachable_hub(name, tmp_path):
    """The real bundled copy (model_cards/<name>/): Hub unreachable, or offline -> bundled copy, one log line.

    The first model meets a closed port (one probe, refused, then the bundled copy), the others ``HF_HUB_OFFLINE=1``.
    """
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    extra = {} if name == BUNDLED[0] else {"HF_HUB_OFFLINE": "1"}
    step = {"op": "load", "source": name, "reference": str(ROOT / "model_cards" / name)}
    (result,) = run_client([step], hub_env(endpoint, tmp_path / "hf_home", **extra))
    assert result["ok"] and result["equal"] and result["dtype"] == "float32", result
    (line,) = result["logs"]
    assert "unavailable" in line and f"copy of {name!r} bundled" in line


# ------------------------------------------------------------------------------------------------- the quick probe
@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An endpoint that accepts connections and never answers, as a Hub behind a dead link does."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("hub", ["closed port", "silent"])
def test_short_name_probes_an_unreachable_hub_once_then_falls_back(hub, repos, silent_endpoint, tmp_path):
    """HF_HUB_OFFLINE unset and no Hub: the one probe fails, nothing is cached, the bundled copy loads, one warning."""
    endpoint = silent_endpoint if hub == "silent" else f"http://127.0.0.1:{free_port()}"
    step = {"op": "load", "source": "novel", "bundled_root": str(repos["bundled"]), "reference": str(repos["tiny16"])}
    (result,) = run_client([step], hub_env(endpoint, tmp_path / "hf_home"))
    assert result["ok"] and result["equal"] and result["dtype"] == "float32", result
    (line,) = result["logs"]
    reason = "did not answer within 1 s" if hub == "silent" else "cannot be reached"
    assert line.startswith("WARNING: Hub repo 'lstm-interp/char-lstm-war-and-peace' unavailable"), line
    assert f"the Hub at {endpoint} {reason}" in line and "the model is not cached" in line and "bundled" in line


@pytest.fixture
def novel_hub(tmp_path: Path, make_model: Callable[..., CharLSTM]) -> Iterator[tuple[OlahHub, Path]]:
    """A second olah whose official ``novel`` repo holds a tiny model unlike the bundled copy (another seed)."""
    from lstm_interp.hub import PRETRAINED

    hub = start_olah(tmp_path / "olah")
    try:
        published = save(make_model(HELLO, from_text=True, seed=1), tmp_path / "published")
        hub.add_folder(PRETRAINED["novel"], published)
        yield hub, published
    finally:
        stop_olah(hub)


def test_short_name_reads_the_cache_when_the_probe_fails(novel_hub, repos, tmp_path):
    hub, published = novel_hub
    hf_home = tmp_path / "hf_home"
    step = {"op": "load", "source": "novel", "bundled_root": str(repos["bundled"]), "reference": str(published)}
    (online,) = run_client([step], hub_env(hub.url, hf_home))
    assert online["ok"] and online["equal"] and online["logs"] == [], online  # downloaded: no fallback
    (offline,) = run_client([step], hub_env(f"http://127.0.0.1:{free_port()}", hf_home))
    assert offline["ok"] and offline["equal"] and offline["logs"] == [], offline  # the cached copy, not the bundled


# ------------------------------------------------------------------------------------------------- push -> pull
@pytest.fixture
def results_folder(tmp_path: Path, make_model: Callable[..., CharLSTM]) -> Path:
    """A model folder with results.json and an image, as model_cards/<name>/ will be."""
    folder = save(make_model(HELLO, from_text=True), tmp_path / "novel")
    (folder / "images").mkdir()
    (folder / "images" / "learning_curve.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300))
    results = {
        "name": "novel",
        "license": "mit",
        "dataset": {"name": "War and Peace (Maude translation)", "split": [0.8, 0.1, 0.1], "characters": 3196211},
        "metrics": {"test_loss_nats": 1.25, "val_loss_nats": 1.24, "paper_lstm_nats": 1.077},
        "training": {"steps": 10, "learning_curve": "images/learning_curve.png"},
    }
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def commits(hub: UploadHub) -> list[Any]:
    return [r for r in hub.requests if r.path.startswith("/api/models/") and "/commit/" in r.path]


def test_push_then_pull_over_http(upload_hub, olah_hub, results_folder, tmp_path):
    pushes = [
        {"source": str(results_folder), "repo_id": "me/pushed", "kwargs": {"dtype": "float16"}},
        {
            "source": str(results_folder),
            "repo_id": "me/pushed",
            "kwargs": {"revision": "dev", "commit_message": "to dev", "private": True},
        },
        {"source": str(results_folder), "repo_id": "me/private", "kwargs": {"private": True, "create_pr": True}},
    ]
    env = hub_env(upload_hub.url, tmp_path / "push_home", HF_TOKEN=TOKEN)
    results = run_client([{"op": "push", **push} for push in pushes], env)
    assert all(r["ok"] for r in results), results
    main_url, dev_url, pr_url = (r["url"] for r in results)
    main_sha = olah_hub.git("me/pushed", "rev-parse", "main")
    assert main_url == f"{upload_hub.url}/me/pushed/commit/{main_sha}"
    assert dev_url.endswith(olah_hub.git("me/pushed", "rev-parse", "dev"))
    assert pr_url == f"{upload_hub.url}/me/private/discussions/1"

    # One commit per push, with every file, regular (base64) uploads, and the token on every request.
    assert len(commits(upload_hub)) == 3
    first = commits(upload_hub)[0]
    paths = [line["value"]["path"] for line in first.body if line["key"] == "file"]
    expected = ["config.json", "vocab.json", "model.safetensors", "README.md", "results.json"]
    assert paths == [*expected, "images/learning_curve.png", "manifest.json"]
    # The pushed manifest describes the pushed files (float16 weights, the card rendered for the repo).
    manifest = json.loads(olah_hub.git("me/pushed", "show", "main:manifest.json"))
    assert manifest["kind"] == "model" and manifest["arguments"] == {"repo_id": "me/pushed"}
    assert sorted(manifest["files"]) == sorted(p for p in paths if p != "manifest.json")
    results_sha = hashlib.sha256((results_folder / "results.json").read_bytes()).hexdigest()
    assert manifest["files"]["results.json"] == results_sha  # copied as it is
    assert first.body[0] == {"key": "header", "value": {"summary": "Upload lstm_interp model", "description": ""}}
    assert {r.authorization for r in upload_hub.requests} == {f"Bearer {TOKEN}"}
    creates = [r.body for r in upload_hub.requests if r.path == "/api/repos/create"]
    assert [c.get("visibility") for c in creates] == ["public", "private", "private"]
    assert upload_hub.private == {"me/pushed": False, "me/private": True}  # an existing repo keeps its visibility
    dev = commits(upload_hub)[1]
    assert dev.path == "/api/models/me/pushed/commit/dev" and dev.body[0]["value"]["summary"] == "to dev"
    assert "POST /api/models/me/pushed/branch/dev" in upload_hub.paths()
    assert commits(upload_hub)[2].query == {"create_pr": ["1"]}

    # The card was rendered for the target repo from results.json.
    card = olah_hub.git("me/pushed", "show", "main:README.md")
    assert "library_name: lstm_interp" in card and "## Results" in card and "## Training" in card
    assert 'load_pretrained("me/pushed")' in card and "stored as float16" in card

    # Pull both branches back through olah.
    steps = [
        {"op": "load", "source": "me/pushed", "reference": str(results_folder), "reference_dtype": "float16"},
        {"op": "load", "source": "me/pushed", "kwargs": {"revision": "dev"}, "reference": str(results_folder)},
    ]
    pulled_main, pulled_dev = run_client(steps, hub_env(olah_hub.url, tmp_path / "pull_home"))
    assert pulled_main["ok"] and pulled_main["equal"] and pulled_main["dtype"] == "float32", pulled_main
    assert pulled_dev["ok"] and pulled_dev["equal"], pulled_dev


def test_cli_push_then_pull_over_http(upload_hub, olah_hub, results_folder, tmp_path):
    args = ["push", str(results_folder), "me/cli", "--private", "--revision", "exp", "--commit-message", "from CLI"]
    env = hub_env(upload_hub.url, tmp_path / "push_home", HF_TOKEN=TOKEN)
    out = subprocess.run(
        [sys.executable, "-m", "lstm_interp.cli.main", *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-4000:]
    sha = olah_hub.git("me/cli", "rev-parse", "exp")
    assert out.stdout.strip() == f"{upload_hub.url}/me/cli/commit/{sha}"
    (create,) = [r.body for r in upload_hub.requests if r.path == "/api/repos/create"]
    assert create == {"name": "cli", "organization": "me", "visibility": "private"}
    (commit,) = commits(upload_hub)
    assert commit.path == "/api/models/me/cli/commit/exp"
    assert commit.body[0]["value"]["summary"] == "from CLI"
    assert commit.authorization == f"Bearer {TOKEN}"
    steps = [{"op": "load", "source": "me/cli", "kwargs": {"revision": "exp"}, "reference": str(results_folder)}]
    (pulled,) = run_client(steps, hub_env(olah_hub.url, tmp_path / "pull_home"))
    assert pulled["ok"] and pulled["equal"], pulled


def test_model_methods_publish_through_push_to_hub_with_the_same_card(upload_hub, olah_hub, results_folder, tmp_path):
    """``CharLSTM.push_to_hub`` (huggingface_hub's own, through the network's ``save_pretrained``) and
    ``save_pretrained(push_to_hub=True)``: one commit each, the template's card naming the repo."""
    saved = tmp_path / "saved"
    code = (
        "from lstm_interp.models.char_lstm import CharLSTM\n"
        f"model = CharLSTM.from_pretrained({str(results_folder)!r})\n"
        "print(model.push_to_hub('me/method', commit_message='by method'))\n"
        f"print(model.save_pretrained({str(saved)!r}, repo_id='me/saved', push_to_hub=True, private=True))\n"
    )
    env = hub_env(upload_hub.url, tmp_path / "push_home", HF_TOKEN=TOKEN)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    method_url, saved_url = out.stdout.split()
    assert method_url == f"{upload_hub.url}/me/method/commit/{olah_hub.git('me/method', 'rev-parse', 'main')}"
    assert saved_url == f"{upload_hub.url}/me/saved/commit/{olah_hub.git('me/saved', 'rev-parse', 'main')}"
    method, save_push = commits(upload_hub)
    for commit in (method, save_push):
        paths = [line["value"]["path"] for line in commit.body if line["key"] == "file"]
        assert sorted(paths) == ["README.md", "config.json", "manifest.json", "model.safetensors", "vocab.json"]
    assert method.body[0]["value"]["summary"] == "by method" and upload_hub.private["me/saved"] is True
    card = olah_hub.git("me/method", "show", "main:README.md")
    assert "This model comes with [lstm_interp](https://pypi.org/project/lstm-interp/)" in card
    assert 'load_pretrained("me/method")' in card and "PytorchModelHubMixin" not in card
    # The card pushed is the card save_pretrained wrote next to the files.
    assert olah_hub.git("me/saved", "show", "main:README.md") == (saved / "README.md").read_text().strip()


# ------------------------------------------------------------------------------------------------- no network
def test_push_refuses_a_broken_model_before_any_request(tmp_path, make_model):
    folder = save(make_model(HELLO, from_text=True), tmp_path / "m")
    (folder / "model.safetensors").write_bytes(b"\0" * 400)
    with pytest.raises(ValueError, match="corrupted or truncated"):
        push_to_hub(folder, "me/broken")
    (folder / "vocab.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"vocab\.json is missing from the model folder"):
        push_to_hub(folder, "me/broken")
    with pytest.raises(ValueError, match=r"`dtype` must be a floating torch\.dtype"):
        push_to_hub(folder, "me/broken", dtype=torch.int8)


def test_cli_push_rejects_bad_arguments(tmp_path, capsys):
    assert cli_main(["push", str(tmp_path / "nowhere"), "me/x"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert cli_main(["push", str(tmp_path), "no-slash"]) == 2
    assert "expected 'org/name', got 'no-slash'" in capsys.readouterr().err
    assert cli_main(["push", "--help"]) == 0
    assert "--commit-message" in capsys.readouterr().out


def test_load_pretrained_rejects_unknown_names_and_dtypes(tmp_path, make_model):
    from lstm_interp import load_pretrained

    with pytest.raises(ValueError, match="unknown pretrained model 'nvel': expected one of 'novel'"):
        load_pretrained("nvel")
    with pytest.raises(FileNotFoundError, match=r"model folder '\./nowhere' does not exist"):
        load_pretrained("./nowhere")
    with pytest.raises(FileNotFoundError, match=r"model folder '.*nowhere' does not exist"):
        load_pretrained(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"`dtype` must be a floating torch\.dtype"):
        load_pretrained("novel", dtype=torch.int64)
    folder = save(make_model(HELLO, from_text=True), tmp_path / "m")
    with pytest.raises(ValueError, match="`revision` applies to Hub repos"):
        load_pretrained(folder, revision="main")
    assert load_pretrained(str(folder)).head.weight.dtype == torch.float32
    assert load_pretrained(folder, dtype=torch.float64).head.weight.dtype == torch.float64


def test_source_name_is_the_last_part_without_ckpt():
    from lstm_interp.hub.load_pretrained import source_name

    assert [source_name(s) for s in ("novel", "runs/best.ckpt", "me/my-model/", Path("a/b"), "/", ".ckpt")] == [
        "novel", "best", "my-model", "b", "model", "model",
    ]  # fmt: skip
    with pytest.raises(TypeError, match="a model is named by a string or a path, got int"):
        source_name(3)  # type: ignore[arg-type]
