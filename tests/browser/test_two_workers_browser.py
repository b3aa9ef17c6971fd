"""Real phones and a real dashboard (Chromium) on two worker processes that serve one café through Redis
and PostgreSQL, one of which dies and comes back.

The facilitator's control view and half the phones are on worker 1, the projected dashboard and the other
half on worker 2 (as a load balancer would spread them). Checked: a note written on either worker shows
on the dashboard and on every phone at the writer's table, whichever worker each is on, once; when
worker 2 is killed (SIGKILL) and started again, its phones and the dashboard reconnect by themselves and
show the note written on worker 1 while they were away.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import sign_in_and_create_cafe, start_with_phones
from tests.conftest import _make_app
from tests.fault_phones import KillableServer
from tests.integration.test_two_workers import db_rows, workers  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

PHONES = 4


@pytest.fixture
def facilitator(postgres_url: str) -> Iterator[tuple[str, str]]:
    from cafe.extensions import db
    from cafe.services import accounts

    email, password = f"two-{uuid.uuid4().hex[:8]}@example.org", "a long passphrase"
    app = _make_app(postgres_url)
    try:
        with app.app_context():
            accounts.create_facilitator(email, password)
        yield email, password
    finally:
        app.extensions["cafe.committer"].stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _note_texts(page: Any, selector: str) -> list[str]:
    return sorted(t.strip() for t in page.locator(selector).all_inner_texts())


def test_phones_and_dashboard_on_two_workers_one_of_which_restarts(
        workers: list[KillableServer], postgres_url: str, facilitator: tuple[str, str],  # noqa: F811
        browser: Any) -> None:
    w1, w2 = workers
    email, password = facilitator
    fac = browser.new_context(viewport={"width": 1400, "height": 900})
    control, cafe_id = sign_in_and_create_cafe(fac, w1.url, email, password, "Two workers", timeout_ms=30000)
    dash = fac.new_page()                          # the same signed-in browser, on the other worker
    dash.set_default_timeout(30000)
    dash.goto(f"{w2.url}/cafes/{cafe_id}/dashboard")
    code = dash.inner_text(".join-url").strip().rstrip("/").rsplit("/", 1)[1]

    contexts, phones = start_with_phones(browser, control, [(w1, w2)[i % 2].url for i in range(PHONES)], code)
    contexts.append(fac)

    def write(page: Any, text: str) -> None:
        page.fill("#note-text", text)
        page.click("#note-form button[type=submit]")
        page.wait_for_selector(f".note:has-text('{text}') .saved")

    texts = [f"Note from phone {i} on worker {i % 2 + 1}" for i in range(PHONES)]
    for page, text in zip(phones, texts):
        write(page, text)

    def tables() -> dict[str, int]:
        """Note text -> the table its writer sat at (from the database both workers write to)."""
        rows = db_rows(postgres_url, "SELECT text, \"table\" FROM note WHERE cafe_id = %s AND deleted_at IS NULL",
                       cafe_id)
        return {text: table for text, table in rows}

    def check_everyone_sees(expected: list[str], pages: list[Any]) -> None:
        dash.wait_for_function("n => document.querySelectorAll('.sticky').length === n", arg=len(expected))
        assert _note_texts(dash, ".sticky") == sorted(expected)
        at = tables()
        for i, page in enumerate(pages):
            mine = at[texts[i]]
            wanted = sorted(t for t in expected if at[t] == mine)
            page.wait_for_function("n => document.querySelectorAll('#notes .note').length === n", arg=len(wanted))
            assert _note_texts(page, "#notes .note .note-text") == wanted, f"phone {i}"

    check_everyone_sees(texts, phones)

    w2.kill()                                      # worker 2 dies: the dashboard and phones 1, 3 lose it
    dash.wait_for_selector("#offline:not([hidden])")
    late = "Written while worker 2 was down"
    write(phones[0], late)
    w2.start()
    texts.append(late)
    check_everyone_sees(texts, phones)
    for ctx in contexts:
        ctx.close()
