"""A small client of Label Studio's REST API (standard library only).

Why not ``label-studio-sdk``: its current releases pin ``opencv-python-headless<4.13``
and ``numpy`` below what SegAL installs (``pip install label-studio-sdk`` downgrades
both) and pull in some 45 packages (pandas, nltk, black, Faker, ...); its Python API
also changed incompatibly between 1.x and 2.x. The handful of endpoints used here are
the same across Label Studio 1.x releases.

Tokens: a *legacy* token (``Authorization: Token ...``) or a *personal access token*
(a JWT refresh token, what current Label Studio versions hand out): it is exchanged at
``/api/token/refresh/`` for a short-lived access token (``Authorization: Bearer ...``),
renewed once when the server answers 401.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from segal_core import SegalError

__all__ = ["LabelStudio", "LabelStudioError", "NotFound", "TokenRefused", "Unreachable"]


class LabelStudioError(SegalError):
    """Label Studio refused or failed a request (one line naming the option to fix)."""


class Unreachable(LabelStudioError):
    """No Label Studio answers at ``url=``."""


class TokenRefused(LabelStudioError):
    """The server answered 401 or 403: ``token=`` is wrong or lacks the rights."""


class NotFound(LabelStudioError):
    """404: the project (or task) does not exist or is not visible to this token."""


def _is_refresh_jwt(token: str) -> bool:
    """A personal access token: a JWT whose payload says ``token_type: refresh``."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(payload, dict) and payload.get("token_type") == "refresh"


def _detail(body: bytes) -> str:
    """The server's own words from an error body (``detail`` or validation errors)."""
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip().splitlines()
        return text[0][:200] if text else ""
    if isinstance(data, dict):
        errors = data.get("validation_errors")
        if errors:
            return json.dumps(errors)[:300]
        return str(data.get("detail") or data)[:300]
    return str(data)[:300]


class LabelStudio:
    """One Label Studio server, as one user.

    :param url: the server's address (``http://localhost:8080``), from ``url=``.
    :param token: a legacy token or a personal access token, from ``token=``.
    :param timeout: seconds per request.
    """

    def __init__(self, url: str, token: str, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.token = token.strip()
        self.timeout = timeout
        self._access: str | None = None

    # -- plumbing ----------------------------------------------------------------------

    def _auth(self, renew: bool = False) -> str:
        if not _is_refresh_jwt(self.token):
            return f"Token {self.token}"
        if self._access is None or renew:
            answer = self._send("POST", "/api/token/refresh/", json.dumps({"refresh": self.token}).encode(),
                                "application/json", auth=None)
            access = answer.get("access") if isinstance(answer, dict) else None
            if not isinstance(access, str):
                raise TokenRefused(f"--oracle-opt token=: {self.url} gave no access token for this personal "
                                   "access token; create a new one in Label Studio (Account & Settings)")
            self._access = access
        return f"Bearer {self._access}"

    def _send(self, method: str, path: str, body: bytes | None, ctype: str | None, auth: str | None,
              raw: bool = False) -> Any:
        request = urllib.request.Request(self.url + path, data=body, method=method)
        request.add_header("Accept", "application/json")
        if ctype:
            request.add_header("Content-Type", ctype)
        if auth:
            request.add_header("Authorization", auth)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            self._refuse(exc.code, _detail(exc.read()), method, path)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                raise Unreachable(
                    f"--oracle-opt url={self.url}: Label Studio did not answer {method} {path.split('?')[0]} "
                    f"within {self.timeout:g} s; try again, or allow longer with --oracle-opt timeout=SECONDS"
                ) from None
            raise Unreachable(
                f"--oracle-opt url={self.url}: no Label Studio answers there ({reason}); start the server "
                "(label-studio start) or fix url= (or LABEL_STUDIO_URL), then resume: segal run --resume RUN"
            ) from None
        if raw:
            return payload
        if not payload:
            return None
        try:
            return json.loads(payload)
        except ValueError:
            raise LabelStudioError(
                f"--oracle-opt url={self.url}: the server there does not answer like Label Studio "
                f"({method} {path} gave no JSON); point url= at Label Studio's address"
            ) from None

    def _refuse(self, status: int, detail: str, method: str, path: str) -> NoReturn:
        if status == 401:
            raise TokenRefused(
                f"--oracle-opt token=: Label Studio at {self.url} refused the token ({detail or 'HTTP 401'}); "
                "copy an access token from Account & Settings into token= (or LABEL_STUDIO_API_KEY)"
            )
        if status == 403:
            raise TokenRefused(
                f"--oracle-opt token=: this user may not {method} {path} on {self.url} ({detail or 'HTTP 403'}); "
                "use the token of a user with access to the project"
            )
        if status == 404:
            raise NotFound(f"{method} {path}: not found on {self.url}")
        raise LabelStudioError(f"Label Studio at {self.url}: {method} {path} failed (HTTP {status}: {detail})")

    def request(self, method: str, path: str, *, data: Any = None, params: Mapping[str, Any] | None = None,
                body: bytes | None = None, ctype: str | None = None, raw: bool = False) -> Any:
        """``method`` ``path`` (``/api/...``) with a JSON ``data`` body or a prepared
        ``body``; returns the decoded JSON (or bytes with ``raw``)."""
        if params:
            path = f"{path}?{urllib.parse.urlencode(params, doseq=True)}"
        if data is not None:
            body, ctype = json.dumps(data).encode(), "application/json"
        try:
            return self._send(method, path, body, ctype, self._auth(), raw=raw)
        except TokenRefused:
            if not _is_refresh_jwt(self.token):
                raise
            return self._send(method, path, body, ctype, self._auth(renew=True), raw=raw)

    # -- the endpoints SegAL uses --------------------------------------------------------

    def projects(self) -> list[dict[str, Any]]:
        """Every project this user sees."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = self.request("GET", "/api/projects/", params={"page": page, "page_size": 100})
            if isinstance(answer, list):  # an old server without pagination
                return answer
            out.extend(answer.get("results", []))
            if not answer.get("next"):
                return out
            page += 1

    def project(self, project_id: int) -> dict[str, Any]:
        return self.request("GET", f"/api/projects/{project_id}/")

    def create_project(self, title: str, description: str, config: str) -> dict[str, Any]:
        return self.request("POST", "/api/projects/",
                            data={"title": title, "description": description, "label_config": config})

    def upload(self, project_id: int, files: Sequence[tuple[str, bytes]]) -> list[str]:
        """Upload image files into the project's storage without making tasks of them;
        returns each file's path as a task's image URL (``/data/upload/...``), in order."""
        boundary = uuid.uuid4().hex
        parts: list[bytes] = []
        for i, (name, content) in enumerate(files):
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="file{i}"; filename="{name}"\r\n'
                f"Content-Type: image/png\r\n\r\n".encode() + content + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        answer = self.request("POST", f"/api/projects/{project_id}/import", params={"commit_to_project": "false"},
                              body=body, ctype=f"multipart/form-data; boundary={boundary}")
        ids = answer.get("file_upload_ids") if isinstance(answer, dict) else None
        if not isinstance(ids, list) or len(ids) != len(files):
            raise LabelStudioError(f"Label Studio at {self.url}: uploading {len(files)} images returned "
                                   f"{len(ids) if isinstance(ids, list) else 'no'} file ids")
        listed = self.request("GET", f"/api/projects/{project_id}/file-uploads", params={"ids": json.dumps(ids)})
        by_id = {item["id"]: item["file"] for item in listed}
        base = urllib.parse.urlsplit(self.url).path.rstrip("/")
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise LabelStudioError(f"Label Studio at {self.url}: uploaded files {missing} are not listed")
        return [f"{base}/data/{by_id[i].lstrip('/')}" for i in ids]

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> None:
        """Create tasks (with their predictions) from JSON."""
        self.request("POST", f"/api/projects/{project_id}/import", data=tasks)

    def export(self, project_id: int, all_tasks: bool) -> list[dict[str, Any]]:
        """The project's tasks with their annotations (``all_tasks``: also those
        without any), images not bundled."""
        answer = self.request("GET", f"/api/projects/{project_id}/export", params={
            "exportType": "JSON", "download_all_tasks": "true" if all_tasks else "false",
            "download_resources": "false"})
        if not isinstance(answer, list):
            raise LabelStudioError(f"Label Studio at {self.url}: the export of project {project_id} is not a "
                                   "list of tasks")
        return answer
