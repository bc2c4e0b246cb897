"""Real Hub servers on 127.0.0.1 for the Hub tests: nothing is mocked below huggingface_hub's own HTTP client.

* :class:`OlahHub` runs `olah <https://github.com/vtuber-plan/olah>`_ (a self-hosted Hugging Face mirror, the
  PyPI package ``olah`` of the ``test`` extra) in offline mode over a folder of git repositories, one per Hub repo
  (``mirrors/models/ORG/NAME``, files committed as plain blobs with the real ``git``). It answers the download
  side of the Hub API: ``/api/models/ORG/NAME/revision/REV`` and ``/ORG/NAME/resolve/REV/FILE``.
* :class:`UploadHub` is the upload side, which olah lacks: a stdlib ``ThreadingHTTPServer`` implementing exactly
  the endpoints huggingface_hub's ``HfApi`` calls to create a repo and commit to it (``create_repo``,
  ``create_branch``, and ``create_commit``'s YAML validation, preupload and NDJSON commit). It answers every file
  as a "regular" upload (base64 inside the commit, no LFS), records every request for the tests to assert on, and
  commits what it receives into olah's git repositories, so that what was pushed can be pulled back through olah.

Without olah or git the tests are skipped on a developer's machine but FAIL under CI (``$CI`` set), as with
Chromium in ``browser.py``: the Hub tests must never pass CI by being skipped.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

STARTUP_TIMEOUT_S = 60.0
# The servers are local: never ask a proxy from the environment for them.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_GIT = ["-c", "user.name=lstm_interp tests", "-c", "user.email=tests@lstm-interp.invalid", "-c", "commit.gpgsign=false"]


def _require(tool: str, path: str | None, hint: str) -> str:
    if path is None:
        message = f"{tool} not found ({hint})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


NO_PROXY = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}  # the servers are local


def hub_env(endpoint: str, hf_home: Path, **extra: str) -> dict[str, str]:
    """The environment of a fresh client process: this endpoint, this cache, no proxy, nothing else ``HF_*``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(hf_home),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        OMP_NUM_THREADS="1",
        **NO_PROXY,
        **extra,
    )
    return env


def find_olah() -> str | None:
    """The ``olah-cli`` console script next to this Python (the venv's ``bin``), else on ``PATH``."""
    beside = Path(sys.executable).parent / "olah-cli"
    return str(beside) if beside.is_file() else shutil.which("olah-cli")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", *_GIT, *args], cwd=repo, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {out.stderr.strip()}")
    return out.stdout.strip()


@dataclass
class OlahHub:
    """A running olah serving the git repositories under ``mirrors``; ``url`` is its ``HF_ENDPOINT``."""

    url: str
    mirrors: Path
    log_dir: Path
    process: subprocess.Popen
    lock: threading.Lock = field(default_factory=threading.Lock)

    def repo_dir(self, repo_id: str) -> Path:
        return self.mirrors / "models" / repo_id

    def has_repo(self, repo_id: str) -> bool:
        return (self.repo_dir(repo_id) / ".git").is_dir()

    def create_repo(self, repo_id: str) -> Path:
        path = self.repo_dir(repo_id)
        path.mkdir(parents=True, exist_ok=True)
        if not (path / ".git").is_dir():
            git(path, "init", "-q", "-b", "main")
        return path

    def commit(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        branch: str = "main",
        message: str = "add files",
        deleted: tuple[str, ...] = (),
    ) -> str:
        """Commit ``files`` (path in repo -> content) to ``branch`` (created from ``main`` if new); returns the sha."""
        with self.lock:
            path = self.create_repo(repo_id)
            has_commits = bool(git(path, "branch", "--list"))
            if git(path, "branch", "--list", branch):
                git(path, "checkout", "-q", branch)
            elif has_commits:
                git(path, "checkout", "-q", "-b", branch, "main")
            else:
                git(path, "checkout", "-q", "--orphan", branch)
            for name, content in files.items():
                target = path / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            for name in deleted:
                (path / name).unlink(missing_ok=True)
            git(path, "add", "-A")
            git(path, "commit", "-q", "--allow-empty", "-m", message)
            sha = git(path, "rev-parse", "HEAD")
            if branch != "main" and git(path, "branch", "--list", "main"):
                git(path, "checkout", "-q", "main")
            return sha

    def add_folder(self, repo_id: str, folder: Path, *, branch: str = "main") -> str:
        """Commit every file of ``folder`` (a ``save_pretrained`` folder, say) to ``repo_id``."""
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return self.commit(repo_id, files, branch=branch, message=f"add {folder.name}")

    def git(self, repo_id: str, *args: str) -> str:
        """Run ``git ARGS`` in the repository of ``repo_id`` (``hub.git("me/x", "rev-parse", "main")``)."""
        return git(self.repo_dir(repo_id), *args)

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.rglob("*")) if p.is_file())


def start_olah(root: Path) -> OlahHub:
    """Start olah on a free port over ``root/mirrors`` and wait until it answers; stop it with :func:`stop_olah`."""
    olah = _require("olah", find_olah(), 'pip install -e ".[test]" installs it')
    _require("git", shutil.which("git"), "apt-get install git")
    mirrors, repos, logs = root / "mirrors", root / "repos", root / "logs"
    for folder in (mirrors / "models", repos, logs):
        folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = root / "olah.toml"
    config.write_text(
        "[basic]\n"
        f'host = "127.0.0.1"\nport = {port}\n'
        f"repos-path = {json.dumps(str(repos))}\nmirrors-path = [{json.dumps(str(mirrors))}]\n"
        "metadata-cache-ttl = 0\n"
        "[accessibility]\noffline = true\n"
    )
    stdout = (logs / "stdout.txt").open("wb")
    process = subprocess.Popen(
        [olah, "-c", str(config), "--log-path", str(logs)], stdout=stdout, stderr=subprocess.STDOUT, cwd=root
    )
    stdout.close()
    hub = OlahHub(url=f"http://127.0.0.1:{port}", mirrors=mirrors, log_dir=logs, process=process)
    # Any repo will do for the readiness probe: a scratch one, which the tests never read.
    hub.commit("ready/probe", {"probe.txt": b"ready\n"})
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            with _DIRECT.open(f"{hub.url}/api/models/ready/probe/revision/main", timeout=2) as response:
                if response.status == 200:
                    return hub
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_olah(hub)
            state = f"exited with status {process.returncode}" if process.poll() is not None else "did not answer"
            pytest.fail(f"olah {state} within {STARTUP_TIMEOUT_S:.0f} s on {hub.url}; its log:\n{hub.log()[-4000:]}")
        time.sleep(0.1)


def stop_olah(hub: OlahHub) -> None:
    """Stop the olah process by its PID (SIGTERM, then SIGKILL after 10 s)."""
    if hub.process.poll() is None:
        os.kill(hub.process.pid, signal.SIGTERM)
        try:
            hub.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(hub.process.pid, signal.SIGKILL)
            hub.process.wait(timeout=10)


# ------------------------------------------------------------------------------------------------- upload side
@dataclass
class Request:
    """One request the upload endpoint received."""

    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str | None
    body: Any  # parsed JSON, a list of NDJSON lines, or None


class UploadHub:
    """The upload endpoints of the Hub API that ``HfApi.create_repo``/``create_branch``/``create_commit`` call.

    A stdlib ``ThreadingHTTPServer`` in a thread, on 127.0.0.1. Every file is answered as a ``regular`` upload in
    the preupload step, so huggingface_hub sends it base64-encoded inside the NDJSON commit; the commit goes into
    ``olah``'s git repositories. ``requests`` records every request; unknown endpoints answer 404 and are recorded
    too, so that a test fails naming what huggingface_hub asked for.
    """

    def __init__(self, olah: OlahHub) -> None:
        self.olah = olah
        self.requests: list[Request] = []
        self.private: dict[str, bool] = {}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hub._handle(self)

            def do_GET(self) -> None:
                hub._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="upload-hub", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]

    # -------------------------------------------------------------------------------------------- routing
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        content_type = handler.headers.get("Content-Type", "")
        if "ndjson" in content_type:
            body: Any = [json.loads(line) for line in raw.splitlines() if line.strip()]
        else:
            body = json.loads(raw) if raw else None
        request = Request(handler.command, url.path, parse_qs(url.query), handler.headers.get("Authorization"), body)
        self.requests.append(request)
        routes = [
            ("POST", r"/api/repos/create", self._create_repo),
            ("POST", r"/api/validate-yaml", self._validate_yaml),
            ("POST", r"/api/models/(?P<repo>[^/]+/[^/]+)/branch/(?P<rev>.+)", self._create_branch),
            ("POST", r"/api/models/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>.+)", self._preupload),
            ("POST", r"/api/models/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>.+)", self._commit),
        ]
        for method, pattern, route in routes:
            match = re.fullmatch(pattern, url.path)
            if handler.command == method and match:
                try:
                    status, payload, headers = route(request, **{k: unquote(v) for k, v in match.groupdict().items()})
                except Exception as err:  # answer, so that the test sees the error rather than a reset connection
                    status, payload, headers = 500, {"error": f"{type(err).__name__}: {err}"}, {}
                break
        else:
            status, payload, headers = 404, {"error": f"not implemented here: {handler.command} {url.path}"}, {}
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _repo_missing(self, repo: str) -> tuple[int, dict, dict] | None:
        if self.olah.has_repo(repo):
            return None
        return 404, {"error": f"Repository {repo} not found"}, {"X-Error-Code": "RepoNotFound"}

    # -------------------------------------------------------------------------------------------- endpoints
    def _create_repo(self, request: Request) -> tuple[int, dict, dict]:
        body = request.body
        repo = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        if self.olah.has_repo(repo):
            return 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo}"}, {}
        # As on the Hub, a new repo starts with one commit on main, holding `.gitattributes`.
        self.olah.commit(repo, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})
        self.private[repo] = body.get("visibility") == "private"
        return 200, {"url": f"{self.url}/{repo}", "name": repo}, {}

    def _validate_yaml(self, request: Request) -> tuple[int, dict, dict]:
        match = re.match(r"^---\s*\n(.*?)\n---\s*$", request.body["content"], re.DOTALL | re.MULTILINE)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as err:
            return 400, {"errors": [{"message": f"invalid YAML: {err}"}]}, {}
        if not isinstance(metadata, dict):
            return 400, {"errors": [{"message": "metadata must be a mapping"}]}, {}
        return 200, {"errors": [], "warnings": []}, {}

    def _create_branch(self, request: Request, repo: str, rev: str) -> tuple[int, dict, dict]:
        if missing := self._repo_missing(repo):
            return missing
        path = self.olah.repo_dir(repo)
        if git(path, "branch", "--list", rev):
            return 409, {"error": f"Reference already exists: {rev}"}, {}
        with self.olah.lock:
            git(path, "branch", rev, "main")
        return 200, {}, {}

    def _preupload(self, request: Request, repo: str, rev: str) -> tuple[int, dict, dict]:
        if missing := self._repo_missing(repo):
            return missing
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in request.body["files"]]
        return 200, {"files": files}, {}

    def _commit(self, request: Request, repo: str, rev: str) -> tuple[int, dict, dict]:
        if missing := self._repo_missing(repo):
            return missing
        header = next(line["value"] for line in request.body if line["key"] == "header")
        files, deleted = {}, []
        for line in request.body:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "deletedFile":
                deleted.append(value["path"])
            elif line["key"] != "header":
                return 400, {"error": f"{line['key']} lines are not supported by this endpoint"}, {}
        pr = "create_pr" in request.query
        branch = f"pr/{len(git(self.olah.repo_dir(repo), 'branch', '--list', 'pr/*').splitlines()) + 1}" if pr else rev
        message = header["summary"] + (f"\n\n{header['description']}" if header.get("description") else "")
        sha = self.olah.commit(repo, files, branch=branch, message=message, deleted=tuple(deleted))
        return (
            200,
            {
                "commitUrl": f"{self.url}/{repo}/commit/{sha}",
                "commitOid": sha,
                "pullRequestUrl": f"{self.url}/{repo}/discussions/{branch.split('/')[-1]}" if pr else None,
            },
            {},
        )


# ------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def olah_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OlahHub]:
    """An olah Hub mirror on 127.0.0.1, shared by a test module; stopped by its PID at the end."""
    hub = start_olah(tmp_path_factory.mktemp("olah"))
    try:
        yield hub
    finally:
        stop_olah(hub)


@pytest.fixture
def upload_hub(olah_hub: OlahHub) -> Iterator[UploadHub]:
    """The upload endpoint, committing into ``olah_hub``'s repositories."""
    hub = UploadHub(olah_hub)
    try:
        yield hub
    finally:
        hub.close()
