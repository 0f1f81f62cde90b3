"""The fleet server's REST API (docs/api.md) as plain methods returning parsed JSON.

httpx's exceptions are translated once, here: no connection (or no answer) becomes
:class:`~edgectl.errors.ServerUnreachable`, an error answer becomes :class:`~edgectl.errors.ApiError`
with the server's own one-line message. Callers never see an ``httpx`` exception.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import httpx

from edgectl.errors import ApiError, ServerUnreachable

API = "/api/v1"
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
UPLOAD_TIMEOUT = httpx.Timeout(300.0, connect=5.0)
Upload = Callable[[int, int], None]  # (bytes sent so far, total bytes)


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _api_error(response: httpx.Response) -> ApiError:
    """Build the error from ``{"error": {"code", "message"}}``, or describe what came instead."""
    what = f"{response.request.method} {response.request.url.raw_path.decode(errors='replace')}"
    try:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("detail"), str):  # a framework default
            body = {"error": {"code": response.reason_phrase, "message": f"{body['detail']}: {what}"}}
        err = body["error"]
        code, message = str(err["code"]).lower().replace(" ", "_"), str(err["message"])
    except (ValueError, KeyError, TypeError):
        code = response.reason_phrase.lower().replace(" ", "_") or "error"
        snippet = _one_line(response.text, 120)
        message = f"the fleet server answered {what} with HTTP {response.status_code}" + (
            f": {snippet}" if snippet else ""
        )
        return ApiError(response.status_code, code, message)
    if response.status_code == 401:
        message += " (pass --token or set EDGEFLEET_TOKEN)"
    elif response.status_code == 403:
        message += " (ask an admin for a token with that role: `edgectl tokens create`)"
    return ApiError(response.status_code, code, _one_line(message))


class _ProgressReader:
    """A read-only binary file that reports every chunk httpx reads from it."""

    def __init__(self, fh: IO[bytes], on_read: Callable[[int], None]) -> None:
        self._fh, self._on_read = fh, on_read

    def read(self, size: int = -1) -> bytes:
        chunk = self._fh.read(size)
        self._on_read(len(chunk))
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def fileno(self) -> int:
        return self._fh.fileno()


class FleetClient:
    """One fleet server. ``transport`` lets tests or embedders swap the network out."""

    def __init__(
        self, base_url: str, token: str | None = None, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=TIMEOUT, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FleetClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _translated(self) -> Iterator[None]:
        hint = "(start it with `fleet-server` or set --server)"
        try:
            yield
        except httpx.TimeoutException as exc:
            kind = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for an answer"
            raise ServerUnreachable(
                f"cannot reach the fleet server at {self.base_url}: timed out {kind} {hint}"
            ) from exc
        except httpx.TransportError as exc:
            reason = _one_line(str(exc)) or type(exc).__name__
            raise ServerUnreachable(
                f"cannot reach the fleet server at {self.base_url}: {reason} {hint}"
            ) from exc

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request and return the parsed JSON answer. Raises ``ClientError``."""
        with self._translated():
            response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _api_error(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(
                response.status_code,
                "bad_response",
                f"the fleet server's answer to {method} {path} is not JSON",
            ) from exc

    # -- endpoints, one per row of docs/api.md ---------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/healthz")

    def push_model(
        self,
        model: Path,
        name: str,
        version: str,
        calibration: Path | None = None,
        validation: Path | None = None,
        min_agreement: float | None = None,
        progress: Upload | None = None,
    ) -> dict[str, Any]:
        """Upload a source model (multipart), reporting bytes sent to ``progress``."""
        files = {"file": model, "calibration": calibration, "validation": validation}
        paths = {field: p for field, p in files.items() if p is not None}
        total = sum(p.stat().st_size for p in paths.values())
        sent = 0

        def on_read(n: int) -> None:
            nonlocal sent
            sent += n
            if progress is not None:
                progress(min(sent, total), total)

        data = {"name": name, "version": version}
        if min_agreement is not None:
            data["min_agreement"] = str(min_agreement)
        with ExitStack() as stack:
            parts = {
                field: (
                    p.name,
                    _ProgressReader(stack.enter_context(p.open("rb")), on_read),
                    "application/octet-stream",
                )
                for field, p in paths.items()
            }
            return self.request("POST", f"{API}/models", data=data, files=parts, timeout=UPLOAD_TIMEOUT)

    def list_models(self) -> list[dict[str, Any]]:
        return self.request("GET", f"{API}/models")

    def get_model(self, name: str, version: str) -> dict[str, Any]:
        return self.request("GET", f"{API}/models/{_seg(name)}/{_seg(version)}")

    def compile_ahead(self, name: str, version: str, profiles: list[str]) -> dict[str, Any]:
        body = {"profiles": profiles}
        return self.request("POST", f"{API}/models/{_seg(name)}/{_seg(version)}/bundles", json=body)

    DEVICE_PAGE = 1000  # the server's default page; a full page means there may be more

    def list_devices(self, group: str | None = None) -> list[dict[str, Any]]:
        """Every device (or every member of ``group``), page by page."""
        out: list[dict[str, Any]] = []
        while True:
            params: dict[str, Any] = {"limit": self.DEVICE_PAGE, "offset": len(out)}
            if group:
                params["group"] = group
            page = self.request("GET", f"{API}/devices", params=params)
            if page and out and page[0].get("device_id") == out[0].get("device_id"):
                return out  # a server from before paging answers everything every time
            out.extend(page)
            if len(page) != self.DEVICE_PAGE:
                return out

    def get_device(self, device_id: str) -> dict[str, Any]:
        return self.request("GET", f"{API}/devices/{_seg(device_id)}")

    def create_enroll_token(
        self, group: str, labels: dict[str, str] | None = None, expires_in_s: float = 3600.0, uses: int = 1
    ) -> dict[str, Any]:
        body = {"group": group, "labels": labels or {}, "expires_in_s": expires_in_s, "uses": uses}
        return self.request("POST", f"{API}/devices/enroll-tokens", json=body)

    def revoke_device(self, device_id: str) -> dict[str, Any]:
        return self.request("POST", f"{API}/devices/{_seg(device_id)}/revoke")

    def create_group(
        self,
        name: str,
        devices: list[str],
        selector: dict[str, str],
        serving: dict[str, Any] | None = None,
        offload: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create a group; a policy left out (``None``) is not sent (the server's defaults)."""
        body: dict[str, Any] = {"name": name, "devices": devices, "selector": selector}
        body.update({k: v for k, v in (("serving", serving), ("offload", offload)) if v is not None})
        return self.request("POST", f"{API}/groups", json=body)

    def update_group(
        self, name: str, serving: dict[str, Any] | None, offload: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Merge-patch a group's policies (``None``: leave that one as it is)."""
        body = {k: v for k, v in (("serving", serving), ("offload", offload)) if v is not None}
        return self.request("PATCH", f"{API}/groups/{_seg(name)}", json=body)

    def list_groups(self) -> list[dict[str, Any]]:
        return self.request("GET", f"{API}/groups")

    def create_deployment(
        self, model: str, group: str, rollout: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Deploy ``model`` to ``group``; ``rollout``: the rollout spec (``None``: the server's defaults)."""
        body: dict[str, Any] = {"model": model, "group": group}
        if rollout:
            body["rollout"] = rollout
        return self.request("POST", f"{API}/deployments", json=body)

    def list_deployments(self, limit: int | None = None) -> list[dict[str, Any]]:
        params = {"limit": limit} if limit else None
        return self.request("GET", f"{API}/deployments", params=params)

    def act_on_deployment(self, deployment_id: str, action: str) -> dict[str, Any]:
        """``pause``, ``resume``, ``abort`` or ``rollback`` a rollout."""
        return self.request("POST", f"{API}/deployments/{_seg(deployment_id)}/{_seg(action)}")

    def get_deployment(self, deployment_id: str) -> dict[str, Any]:
        return self.request("GET", f"{API}/deployments/{_seg(deployment_id)}")

    def create_token(self, name: str, role: str, expires_in_s: int | None = None) -> dict[str, Any]:
        """A new operator token; its secret is the answer's ``token`` (shown this once)."""
        body: dict[str, Any] = {"name": name, "role": role}
        if expires_in_s is not None:
            body["expires_in_s"] = expires_in_s
        return self.request("POST", f"{API}/tokens", json=body)

    def list_tokens(self) -> list[dict[str, Any]]:
        return self.request("GET", f"{API}/tokens")

    def revoke_token(self, name: str) -> dict[str, Any]:
        return self.request("DELETE", f"{API}/tokens/{_seg(name)}")

    def list_audit(self, limit: int = 50, before: int | None = None) -> list[dict[str, Any]]:
        params: dict[str, int] = {"limit": limit}
        if before is not None:
            params["before"] = before
        return self.request("GET", f"{API}/audit", params=params)


def _seg(value: str) -> str:
    """``value`` as one path segment (a device id with a slash must not change the route)."""
    return quote(value, safe="")
