"""Headless Chromium driven over the DevTools protocol (a WebSocket, the ``websockets`` client):
open a page, run JavaScript in it, wait for what it shows, take screenshots. Debian's chromium
ships without chromedriver, and the protocol is all a test needs."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

FLAGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",  # it writes the port it took to DevToolsActivePort
    "--remote-allow-origins=*",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    pytest.skip("chromium is not installed (apt-get install chromium)")


class Browser:
    """One headless Chromium with one page. ``evaluate`` runs an expression in the page and
    returns its value (awaiting a promise); JavaScript exceptions become ``AssertionError``."""

    WATCHED = frozenset({"Page.frameNavigated", "Runtime.consoleAPICalled", "Runtime.exceptionThrown"})

    def __init__(self, profile_dir: Path, width: int = 1400, height: int = 1000) -> None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [chromium(), *FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        port_file = profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            assert self.proc.poll() is None, f"chromium exited with {self.proc.returncode}"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(p for p in pages if p.get("type") == "page")
        self._ws: ClientConnection = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []  # navigations and console messages, for failures
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30) -> Any:
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self._ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if "method" in reply and reply["method"] in self.WATCHED:
                self.events.append(reply)
            if reply.get("id") == msg_id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply.get("result", {})

    def goto(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete'", what=f"{url} to load")

    def evaluate(self, expression: str) -> Any:
        res = self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in res:
            raise AssertionError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = self.evaluate(expression)
            if last:
                return last
            time.sleep(0.1)
        text = self.evaluate("document.body ? document.body.innerText : ''")
        raise AssertionError(
            f"timed out waiting for {what or expression} (last {last!r}); page:\n{text[:3000]}"
        )

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self._ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
