"""A real Label Studio server for the tests: started on a free localhost port with its
own SQLite data folder, one user and a legacy API token, torn down afterwards.

The server is installed in a virtual environment of its own (label-studio pins many
packages): ``.ci/run`` installs it and sets ``SEGAL_LABEL_STUDIO`` to its
``label-studio`` executable; locally, the same variable or the default path below.
Without it the tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: Where .ci/run installs the server (and where the tests look without the variable).
DEFAULT_EXE = Path("/tmp/segal-label-studio/bin/label-studio")
ENV = "SEGAL_LABEL_STUDIO"
USER, PASSWORD = "annotator@example.com", "segal-test-password"
#: The legacy token the test user gets (``--user-token``).
TOKEN = "segaltesttoken0123456789"
START_TIMEOUT = 240.0


def executable() -> Path | None:
    """The ``label-studio`` executable to start, or ``None``."""
    given = os.environ.get(ENV)
    if given:
        path = Path(given).expanduser()
        return path if path.is_file() else None
    if DEFAULT_EXE.is_file():
        return DEFAULT_EXE
    found = shutil.which("label-studio")
    return Path(found) if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running server: its ``url``, the user's legacy ``token``, timings."""

    url: str
    token: str
    exe: Path
    data_dir: Path
    started_s: float
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def api(self, method: str, path: str, data: Any = None, token: str | None = None) -> Any:
        """``method path`` as the test user (legacy token), JSON in and out."""
        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(self.url + path, data=body, method=method)
        request.add_header("Authorization", f"Token {token or self.token}")
        if body is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = response.read()
        return json.loads(payload) if payload else None

    def get_bytes(self, path: str) -> bytes:
        """The raw body of ``GET path`` as the test user (an uploaded image)."""
        request = urllib.request.Request(self.url + path)
        request.add_header("Authorization", f"Token {self.token}")
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read()

    def personal_token(self) -> str:
        """A new personal access token (a JWT refresh token) of the test user (one per
        user: call once per server)."""
        return str(self.api("POST", "/api/token/")["token"])

    def annotate(self, task_id: int, result: list[dict[str, Any]], cancelled: bool = False) -> dict[str, Any]:
        """Submit an annotation on ``task_id`` as the test user."""
        return self.api("POST", f"/api/tasks/{task_id}/annotations/",
                        {"result": result, "was_cancelled": cancelled, "lead_time": 1.0})

    def tasks(self, project: int) -> list[dict[str, Any]]:
        return self.api("GET", f"/api/projects/{project}/export?exportType=JSON&download_all_tasks=true")

    def sdk_python(self) -> Path:
        """The server environment's Python (it has label-studio-sdk, for cross-checks)."""
        return self.exe.parent / "python"


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"label-studio exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"label-studio did not answer within {START_TIMEOUT:.0f} s:\n{log.read_text()[-3000:]}")


def start(exe: Path, data_dir: Path) -> Server:
    """Start ``exe`` on a free port with its data in ``data_dir``; returns once it answers."""
    port = free_port()
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "HOME": str(data_dir),
    }
    log = data_dir / "server.log"
    began = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
             "--username", USER, "--password", PASSWORD, "--user-token", TOKEN, "--enable-legacy-api-token",
             "--log-level", "WARNING"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=data_dir, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url, process, log, began + START_TIMEOUT)
    except BaseException:
        stop(process)
        raise
    return Server(url=url, token=TOKEN, exe=exe, data_dir=data_dir, started_s=time.monotonic() - began,
                  process=process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server and the processes it started (its own session)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def server_or_skip(tmp_root: Path) -> Iterator[Server]:
    """The session fixture's body: a running server, or a skip (a failure in CI)."""
    exe = executable()
    if exe is None:
        why = (f"no Label Studio server to test against: set {ENV} to a label-studio executable "
               f"(.ci/run installs one at {DEFAULT_EXE}: pip install label-studio in a venv of its own)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(why)
        pytest.skip(why)
    data_dir = tmp_root / "label-studio-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    server = start(exe, data_dir)
    print(f"\nlabel-studio started in {server.started_s:.1f} s at {server.url}")
    try:
        yield server
    finally:
        assert server.process is not None
        stop(server.process)

