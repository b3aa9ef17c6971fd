"""The real pages (Chromium) when the workers' Redis dies and comes back: the projected dashboard on worker 2
and a phone on worker 2 show the note a phone on worker 1 wrote while Redis was down, without a reload.

Redis is a server of this test's own (see ``tests/integration/test_message_queue_outage.py``); the pages
stay connected to their workers throughout, so only the ``resync`` event can bring them the note.
"""
from __future__ import annotations

import time
from typing import Any

import pytest

from tests.browser.conftest import sign_in_and_create_cafe, start_with_phones
from tests.browser.test_two_workers_browser import facilitator  # noqa: F401  (the fixture)
from tests.fault_phones import KillableServer
from tests.integration.test_message_queue_outage import (QUIET, RESYNC_WAIT, PrivateRedis, private_redis,  # noqa: F401
                                                         two_workers)
from tests.integration.test_two_workers import db_rows

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


def test_pages_show_what_was_written_while_redis_was_down(
        two_workers: list[KillableServer], private_redis: PrivateRedis, postgres_url: str,  # noqa: F811
        facilitator: tuple[str, str], browser: Any) -> None:  # noqa: F811
    w1, w2 = two_workers
    email, password = facilitator
    fac = browser.new_context(viewport={"width": 1400, "height": 900})
    control, cafe_id = sign_in_and_create_cafe(fac, w1.url, email, password, "Redis outage", timeout_ms=30000)
    dash = fac.new_page()
    dash.set_default_timeout(30000)
    dash.goto(f"{w2.url}/cafes/{cafe_id}/dashboard")
    code = dash.inner_text(".join-url").strip().rstrip("/").rsplit("/", 1)[1]
    contexts, phones = start_with_phones(browser, control, [w1.url, w2.url], code)
    contexts.append(fac)

    def write(text: str) -> None:
        phones[0].fill("#note-text", text)
        phones[0].click("#note-form button[type=submit]")
        phones[0].wait_for_selector(f".note:has-text('{text}') .saved")     # stored and acknowledged

    def stickies(n: int, timeout_ms: float) -> None:
        dash.wait_for_function("n => document.querySelectorAll('.sticky').length === n", arg=n, timeout=timeout_ms)

    write("Clean water at the market")
    stickies(1, 15000)
    private_redis.kill()
    late = "Written while Redis was down"
    write(late)
    time.sleep(QUIET)
    assert dash.locator(".sticky").count() == 1, "the note crossed without Redis: this test proves nothing"
    private_redis.start()
    stickies(2, RESYNC_WAIT * 1000)
    assert dash.locator(f".sticky:has-text('{late}')").count() == 1
    assert dash.locator("#offline").is_hidden()          # the dashboard never lost its own worker
    tables = dict(db_rows(postgres_url, "SELECT text, \"table\" FROM note WHERE cafe_id = %s", cafe_id))
    seat = db_rows(postgres_url, "SELECT DISTINCT \"table\" FROM seat WHERE cafe_id = %s", cafe_id)
    assert [(tables[late],)] == seat                     # two phones, one table: worker 2's phone shows it too
    phones[1].wait_for_selector(f"#notes .note:has-text('{late}')", timeout=RESYNC_WAIT * 1000)
    for ctx in contexts:
        ctx.close()
