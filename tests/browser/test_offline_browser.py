"""A phone that loses its connection keeps its notes and sends them once when it is back."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import PHONE, LiveServer
from tests.browser.test_harvest_browser import make_facilitator

pytestmark = pytest.mark.browser


def test_notes_written_offline_arrive_once(live_server: LiveServer, browser: Any, tmp_path: Path) -> None:
    email, password = make_facilitator(live_server)
    fac = browser.new_context(viewport={"width": 1400, "height": 900})
    page = fac.new_page()
    page.set_default_timeout(20000)
    page.goto(live_server.url + "/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("main button[type=submit]")
    page.goto(live_server.url + "/cafes/new")
    page.fill("input[name=title]", "Offline test")
    page.click("main button[type=submit]")
    page.wait_for_url("**/cafes/*")
    cafe_id = int(page.url.rsplit("/", 1)[1])
    page.goto(f"{live_server.url}/cafes/{cafe_id}/control")
    dash = fac.new_page()
    dash.set_default_timeout(20000)
    dash.goto(f"{live_server.url}/cafes/{cafe_id}/dashboard")
    join_url = dash.inner_text(".join-url").strip()

    ctx = browser.new_context(**PHONE)
    phone = ctx.new_page()
    phone.set_default_timeout(20000)
    phone.goto(join_url)
    phone.click("#join-form button[type=submit]")
    phone.wait_for_selector("#view-lobby:not([hidden])")
    page.click("#btn-start")
    phone.click("#im-here")

    ctx.set_offline(True)
    phone.wait_for_selector("#connection.offline")
    for text in ("Written offline one", "Written offline two"):
        phone.fill("#note-text", text)
        phone.click("#note-form button[type=submit]")
    assert phone.locator(".note.pending").count() == 2
    assert "waiting to send" in phone.inner_text("#notes")
    # the notes survive a reload while offline (kept in the browser's storage)
    ctx.set_offline(False)
    phone.reload()
    phone.wait_for_selector("#connection.online")
    phone.wait_for_function("() => document.querySelectorAll('#notes .saved').length === 2")
    assert phone.locator(".note.pending").count() == 0
    dash.wait_for_function("() => document.querySelectorAll('.sticky').length === 2")
    texts = sorted(dash.locator(".sticky").all_inner_texts())
    assert texts == ["Written offline one", "Written offline two"]
    # and the server holds each exactly once
    response = fac.request.get(f"{live_server.url}/cafes/{cafe_id}/notes.csv")
    assert response.text().count("Written offline one") == 1 and response.text().count("Written offline two") == 1

    # an edit and a delete made offline wait on the phone too, and happen once it is back
    ctx.set_offline(True)
    phone.wait_for_selector("#connection.offline")
    phone.once("dialog", lambda d: d.accept("Edited while offline"))
    phone.locator(".note", has_text="Written offline one").get_by_role("button", name="Edit").click()
    phone.wait_for_selector(".note:has-text('Edited while offline') .waiting")
    phone.once("dialog", lambda d: d.accept())
    phone.locator(".note", has_text="Written offline two").get_by_role("button", name="Delete").click()
    assert phone.locator(".note", has_text="Written offline two").count() == 0
    assert sorted(dash.locator(".sticky").all_inner_texts()) == ["Written offline one", "Written offline two"]
    ctx.set_offline(False)
    phone.reload()                                   # kept in the browser's storage across a reload
    phone.wait_for_selector("#connection.online")
    dash.wait_for_function("() => document.querySelectorAll('.sticky').length === 1")
    assert dash.locator(".sticky").all_inner_texts() == ["Edited while offline"]
    phone.wait_for_selector(".note:has-text('Edited while offline') .saved")


def test_a_phone_told_the_server_is_busy_asks_again_by_itself(live_server: LiveServer, browser: Any) -> None:
    """A crowd joining at once can leave a join waiting too long: the server answers ``busy`` (nothing done).
    The phone says so and asks again by itself a moment later; the person does not have to tap again.
    The first join is answered ``busy`` in the websocket itself (Playwright's websocket routing), before
    it reaches the server."""
    import json
    import re

    import requests

    from cafe import create_app
    from cafe.config import TestConfig
    from cafe.services import accounts

    with create_app(TestConfig(database_url=live_server.database_url)).app_context():
        _token, secret = accounts.create_token(accounts.create_facilitator("busy@example.org", "a long passphrase").id)
    created = requests.post(live_server.url + "/api/cafes", json={"title": "Busy test"},
                            headers={"Authorization": f"Bearer {secret}"}, timeout=10)
    assert created.status_code == 201, created.text
    join_code = created.json()["join_code"]

    joins = {"answered_busy": 0, "passed_on": 0}

    def route(ws: Any) -> None:
        server = ws.connect_to_server()

        def from_phone(message: str | bytes) -> None:
            match = re.match(r"^42(\d+)\[\"participant_join\"", message) if isinstance(message, str) else None
            if match and joins["answered_busy"] == 0:
                joins["answered_busy"] += 1
                answer = {"ok": False, "error": {"code": "busy",
                                                 "message": "The server is busy; your phone will try again."}}
                ws.send(f"43{match.group(1)}" + json.dumps([answer]))
                return
            if match:
                joins["passed_on"] += 1
            server.send(message)

        ws.on_message(from_phone)
        server.on_message(lambda message: ws.send(message))

    ctx = browser.new_context(**PHONE)
    ctx.route_web_socket(re.compile(r".*/socket\.io/.*"), route)
    phone = ctx.new_page()
    phone.set_default_timeout(20000)
    phone.goto(f"{live_server.url}/j/{join_code}")
    phone.click("#join-form button[type=submit]")
    phone.wait_for_selector("#join-error:has-text('your phone will try again')")
    phone.wait_for_selector("#view-lobby:not([hidden])")      # no second tap
    assert joins == {"answered_busy": 1, "passed_on": 1}
    assert phone.locator("#join-error").is_hidden()
    ctx.close()
