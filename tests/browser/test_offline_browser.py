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
