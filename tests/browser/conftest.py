"""Browser tests: the real server (eventlet, as `python wsgi.py` runs it) and Debian's headless Chromium."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import REQUIRE_SERVICES, ROOT, upgrade_database

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]
SCREENSHOTS = ROOT / "docs" / "screenshots"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, tmp: Path, server: str = "eventlet", database_url: str | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url or f"sqlite:///{tmp / 'live.db'}"
        upgrade_database(self.database_url)
        self.env = os.environ | {"CAFE_SERVER": server, "DATABASE_URL": self.database_url, "PORT": str(self.port),
                                 "HOST": "127.0.0.1", "CAFE_INSTANCE_DIR": str(tmp), "SECRET_KEY": "browser-test",
                                 "PYTHONWARNINGS": "ignore"} | (extra_env or {})
        self.log = tmp / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "wsgi.py")], cwd=ROOT, env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited:\n" + self.log.read_text()[-3000:])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not start:\n" + self.log.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Per module: Playwright's sync API keeps an asyncio loop running in this thread while it is open,
    and later tests run asyncio loops of their own."""
    if not os.path.exists(CHROMIUM):
        if REQUIRE_SERVICES:
            pytest.fail(f"{CHROMIUM} is missing and CAFE_REQUIRE_SERVICES=1 demands browser tests")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); browser tests skipped")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


PHONE = {"viewport": {"width": 360, "height": 640}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


def screenshot_path(tmp_path: Path, name: str) -> Path:
    """Screenshots go to docs/screenshots/ when CAFE_SCREENSHOTS=1, otherwise to the test's temp folder."""
    if os.environ.get("CAFE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return SCREENSHOTS / name
    return tmp_path / name


def sign_in_and_create_cafe(context: Any, base_url: str, email: str, password: str, title: str,
                            timeout_ms: int = 20000) -> tuple[Any, int]:
    """In a facilitator's browser context: sign in, create a café with the default settings and open its
    control view. Returns that page and the café's id."""
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    page.goto(base_url + "/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("main button[type=submit]")
    page.goto(base_url + "/cafes/new")
    page.fill("input[name=title]", title)
    page.click("main button[type=submit]")
    page.wait_for_url("**/cafes/*")
    cafe_id = int(page.url.rsplit("/", 1)[1])
    page.goto(f"{base_url}/cafes/{cafe_id}/control")
    return page, cafe_id


def open_phone(browser: Any, base_url: str, code: str) -> tuple[Any, Any]:
    """A phone's browser context and page, joined to the café with ``code`` (in its lobby)."""
    context = browser.new_context(**PHONE)
    page = context.new_page()
    page.set_default_timeout(30000)
    page.goto(f"{base_url}/j/{code}")
    page.click("#join-form button[type=submit]")
    page.wait_for_selector("#view-lobby:not([hidden])")
    return context, page


def start_with_phones(browser: Any, control: Any, urls: list[str], code: str) -> tuple[list[Any], list[Any]]:
    """A phone joined on each of ``urls``, the round started from the ``control`` page, and each phone at its
    table with the note box open. Returns (the phones' contexts, their pages)."""
    contexts, pages = [], []
    for url in urls:
        context, page = open_phone(browser, url, code)
        contexts.append(context)
        pages.append(page)
    control.click("#btn-start")
    for page in pages:
        page.click("#im-here")
        page.wait_for_selector("#note-text")
    return contexts, pages
