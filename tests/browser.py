"""Headless Chromium driven over the DevTools protocol, for pages that are applications
(Dagster's UI): open a URL, run JavaScript in it, wait for text, take a screenshot."""

from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
)  # fmt: skip


class Page:
    def __init__(self, socket: Any) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        self._socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=60))
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, script: str) -> Any:
        result = self.call("Runtime.evaluate", expression=script, returnByValue=True)
        return result.get("result", {}).get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait_for_text(self, text: str, timeout: float = 60) -> str:
        """The page's visible text once it holds ``text``."""
        deadline = time.monotonic() + timeout
        body = ""
        while time.monotonic() < deadline:
            body = self.evaluate("document.body ? document.body.innerText : ''") or ""
            if text in body:
                return body
            time.sleep(0.5)
        raise AssertionError(f"{text!r} never appeared; the page says: {body[:500]!r}")

    def click_text(self, text: str) -> bool:
        """Click the first button whose text is ``text``; whether there was one."""
        return bool(
            self.evaluate(
                "(() => { const b = [...document.querySelectorAll('button')]"
                f".find(e => e.innerText.trim() === {json.dumps(text)}); "
                "if (b) { b.click(); return true; } return false; })()"
            )
        )

    def dismiss(self, text: str, button: str, settle: float = 4.0) -> None:
        """Close a dialog that says ``text`` (with its ``button``) whenever it shows up
        within ``settle`` seconds, and wait until it is gone."""
        deadline = time.monotonic() + settle
        while True:
            body = self.evaluate("document.body ? document.body.innerText : ''") or ""
            if text in body:
                self.click_text(button)
                deadline = max(deadline, time.monotonic() + 1.0)
            elif time.monotonic() > deadline:
                return
            time.sleep(0.25)

    def screenshot(self, png: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        png.write_bytes(base64.b64decode(data))
        return png


@contextmanager
def chromium(
    profile: Path, width: int = 1600, height: int = 1000, *, offline: bool = False
) -> Iterator[Page]:
    """A headless Chromium with one page of ``width`` x ``height``; ``offline``: no host
    name resolves (a page that needs the internet shows what it lacks)."""
    from websockets.sync.client import connect

    assert CHROMIUM is not None, "Chromium is not installed"
    process = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
         f"--window-size={width},{height}",
         *(["--host-resolver-rules=MAP * ~NOTFOUND"] if offline else []), "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        port = None
        for line in process.stderr:
            found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if found:
                port = int(found.group(1))
                break
        assert port, "Chromium did not open its DevTools port"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as reply:
            targets = json.load(reply)
        target = next(t for t in targets if t["type"] == "page")
        with connect(target["webSocketDebuggerUrl"], max_size=None) as socket:
            page = Page(socket)
            page.call("Page.enable")
            page.call(
                "Emulation.setDeviceMetricsOverride",
                width=width, height=height, deviceScaleFactor=1, mobile=False,
            )  # fmt: skip
            yield page
    finally:
        process.terminate()
        process.wait(timeout=30)
