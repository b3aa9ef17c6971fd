"""A whole café in real headless Chromium: a facilitator and three phones."""
from __future__ import annotations

import csv
import re
import io
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import PHONE, LiveServer, screenshot_path

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)>"


def _fail_on_dialog(page: Any, dialogs: list[str]) -> None:
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))


def test_facilitator_and_three_phones_run_two_rounds(live_server: LiveServer, browser: Any, tmp_path: Path) -> None:
    dialogs: list[str] = []
    fac = browser.new_context(viewport={"width": 1600, "height": 900})
    page = fac.new_page()
    page.set_default_timeout(15000)
    _fail_on_dialog(page, dialogs)

    # First visit: the one-time setup page.
    page.goto(live_server.url + "/")
    assert page.url.endswith("/setup")
    page.fill("input[name=email]", "host@example.org")
    page.fill("input[name=password]", "a long passphrase")
    page.click("main button[type=submit]")
    page.click("text=New café")
    page.fill("input[name=title]", "Eastside health assembly")
    page.fill("textarea[name=questions]", "What would make our neighbourhood healthier?\nWhat can we start this year?")
    page.fill("input[name=rounds]", "2")
    page.fill("input[name=seats_per_table]", "2")
    page.uncheck("input[name=hosts]")
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r".*/cafes/\d+$"))
    cafe_url = page.url
    cafe_id = int(cafe_url.rsplit("/", 1)[1])

    dash = fac.new_page()
    dash.set_default_timeout(15000)
    _fail_on_dialog(dash, dialogs)
    dash.goto(f"{live_server.url}/cafes/{cafe_id}/dashboard")
    dash.wait_for_selector(".qr-svg")
    join_url = dash.inner_text(".join-url").strip()
    assert "/j/" in join_url
    control = fac.new_page()
    control.set_default_timeout(15000)
    control.goto(f"{live_server.url}/cafes/{cafe_id}/control")

    phones = []
    for name in ("Amina", "", "Chidi"):
        ctx = browser.new_context(**PHONE)
        phone = ctx.new_page()
        phone.set_default_timeout(15000)
        _fail_on_dialog(phone, dialogs)
        phone.goto(join_url)
        phone.wait_for_selector("#view-join:not([hidden])")
        if name:
            phone.fill("#name", name)
        phone.click("#join-form button[type=submit]")
        phone.wait_for_selector("#view-lobby:not([hidden])")
        phones.append(phone)
    dash.wait_for_function("() => document.getElementById('joined').textContent.indexOf('3') === 0")
    assert "Guest 2" in dash.inner_text("#lobby-names")

    # Round 1: every phone says which table to go to.
    control.click("#btn-start")
    first_tables = []
    for phone in phones:
        phone.wait_for_selector("#view-table:not([hidden])")
        text = phone.inner_text(".go-to")
        assert text.startswith("Go to table ")
        first_tables.append(int(text.rsplit(" ", 1)[1]))
    assert sorted(set(first_tables)) == [1, 2]
    phones[0].screenshot(path=str(screenshot_path(tmp_path, "phone-table.png")))

    # A note typed on a phone appears on the dashboard; so does a hostile one, as text.
    phones[0].click("#im-here")
    phones[0].fill("#note-text", "Open the clinic on Saturdays")
    phones[0].click("#note-form button[type=submit]")
    dash.wait_for_selector("text=Open the clinic on Saturdays")
    phones[0].fill("#note-text", XSS)
    phones[0].click("#note-form button[type=submit]")
    dash.wait_for_function("(t) => Array.from(document.querySelectorAll('.sticky')).some(e => e.textContent === t)",
                           arg=XSS)
    phones[0].wait_for_selector(".note .saved")
    phones[0].screenshot(path=str(screenshot_path(tmp_path, "phone-notes.png")))
    dash.screenshot(path=str(screenshot_path(tmp_path, "dashboard.png")))

    # Round 2 moves people: the two who shared a table in round 1 are split up.
    control.click("#btn-end-round")
    dash.wait_for_function("() => document.getElementById('phase').textContent.indexOf('over') > 0")
    control.click("#btn-start")
    second_tables = []
    for phone in phones:
        phone.wait_for_selector("#view-table:not([hidden]) #table-card[data-round='2']")
        second_tables.append(int(phone.inner_text(".go-to").rsplit(" ", 1)[1]))
    together_before = {(i, j) for i in range(3) for j in range(i + 1, 3) if first_tables[i] == first_tables[j]}
    together_after = {(i, j) for i in range(3) for j in range(i + 1, 3) if second_tables[i] == second_tables[j]}
    assert together_before and not together_before & together_after
    dash.wait_for_function("() => document.getElementById('phase').textContent.indexOf('2') > 0")

    # The CSV holds the note (and the hostile text, literally).
    response = fac.request.get(f"{live_server.url}/cafes/{cafe_id}/notes.csv")
    assert response.ok
    rows = list(csv.DictReader(io.StringIO(response.text().lstrip("\ufeff"))))
    assert {r["text"] for r in rows} == {"Open the clinic on Saturdays", XSS}
    assert dialogs == []
