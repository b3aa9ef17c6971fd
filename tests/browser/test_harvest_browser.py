"""The harvest in real headless Chromium: themes on the wall, phones vote, the chart and the report show it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import PHONE, LiveServer, screenshot_path

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)>"
NOTES = {
    0: ["More buses on Sunday", "A bus shelter near the clinic"],
    1: ["Open the clinic on Saturdays", "Longer clinic opening hours"],
    2: ["More buses in the evening", "Clinic open late on Thursdays", XSS],
}


def make_facilitator(server: LiveServer) -> tuple[str, str]:
    from cafe import create_app
    from cafe.config import TestConfig
    from cafe.services import accounts

    app = create_app(TestConfig(database_url=server.database_url))
    with app.app_context():
        accounts.create_facilitator("host@example.org", "a long passphrase")
    return "host@example.org", "a long passphrase"


def test_phones_vote_and_the_dashboard_and_report_show_the_result(live_server: LiveServer, browser: Any,
                                                                   tmp_path: Path) -> None:
    live_server.env["CAFE_THEME_MODEL"] = "tfidf"
    live_server.stop()
    live_server.start()
    email, password = make_facilitator(live_server)
    fac = browser.new_context(viewport={"width": 1600, "height": 900})
    page = fac.new_page()
    page.set_default_timeout(20000)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    page.goto(live_server.url + "/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("main button[type=submit]")
    page.goto(live_server.url + "/cafes/new")
    page.fill("input[name=title]", "Kigali health assembly")
    page.fill("textarea[name=questions]", "What should our health centre do first?")
    page.fill("input[name=rounds]", "1")
    page.fill("input[name=seats_per_table]", "2")
    page.uncheck("input[name=hosts]")
    page.click("main button[type=submit]")
    page.wait_for_url("**/cafes/*")
    cafe_id = int(page.url.rsplit("/", 1)[1])
    control = page
    control.goto(f"{live_server.url}/cafes/{cafe_id}/control")
    dash = fac.new_page()
    dash.set_default_timeout(20000)
    dash.goto(f"{live_server.url}/cafes/{cafe_id}/dashboard")
    join_url = dash.inner_text(".join-url").strip()

    phones = []
    for _ in range(3):
        ctx = browser.new_context(**PHONE)
        phone = ctx.new_page()
        phone.set_default_timeout(20000)
        phone.goto(join_url)
        phone.click("#join-form button[type=submit]")
        phone.wait_for_selector("#view-lobby:not([hidden])")
        phones.append(phone)
    control.click("#btn-start")
    for index, phone in enumerate(phones):
        phone.click("#im-here")
        for text in NOTES[index]:
            phone.fill("#note-text", text)
            phone.click("#note-form button[type=submit]")
        phone.wait_for_function("(n) => document.querySelectorAll('#notes .saved').length >= n",
                                arg=len(NOTES[index]))
    control.click("#btn-end-round")
    control.wait_for_selector("#btn-harvest:not([hidden])")
    control.click("#btn-harvest")
    dash.wait_for_selector("#theme-cards .theme-card")
    for phone in phones:
        phone.wait_for_selector("#view-harvest:not([hidden]) .phone-theme")
    dash.screenshot(path=str(screenshot_path(tmp_path, "dashboard-themes.png")))

    control.check("#vote-show")
    control.fill("#vote-budget", "3")
    control.click("#voting-settings button[type=submit]")
    for phone in phones:
        phone.wait_for_selector(".vote-btn")
    # everyone puts two dots on the first theme on their screen that mentions buses, one elsewhere
    for phone in phones:
        rows = phone.locator(".phone-theme")
        bus_row = None
        for i in range(rows.count()):
            if "bus" in rows.nth(i).inner_text().lower():
                bus_row = rows.nth(i)
                break
        assert bus_row is not None
        bus_row.locator(".vote-btn").nth(1).click()
        bus_row.locator(".vote-btn").nth(1).click()
        phone.wait_for_function("() => document.getElementById('vote-status').textContent.indexOf('1') >= 0")
        phone.wait_for_function("() => document.getElementById('vote-status').textContent.indexOf('saved') >= 0")
    phones[0].screenshot(path=str(screenshot_path(tmp_path, "phone-voting.png")))
    dash.wait_for_function("() => Array.from(document.querySelectorAll('#tally .bar-value')).some(e => e.textContent === '6')")
    control.click("#btn-close-voting")
    dash.wait_for_selector("#results:not([hidden]) .bar-row")
    top = dash.inner_text("#priorities .bar-row >> nth=0")
    assert top.startswith("1.") and "6" in top
    dash.screenshot(path=str(screenshot_path(tmp_path, "dashboard-priorities.png")))
    for phone in phones:
        phone.wait_for_selector("#phone-priorities:not([hidden]) .bar-row")

    report = fac.new_page()
    report.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    dash.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    report.goto(f"{live_server.url}/cafes/{cafe_id}/priorities.html")
    assert XSS in report.inner_text("body")          # shown literally, as text
    assert report.locator("svg.chart rect.chart-bar").count() >= 1
    first = report.inner_text(".priority >> nth=0")
    assert "6 dots from 3 people" in first and "bus" in first.lower()
    report.screenshot(path=str(screenshot_path(tmp_path, "report.png")), full_page=True)
    report.emulate_media(media="print")
    assert report.locator("svg.chart").is_visible()    # the chart prints
    assert [d for d in dialogs if "1" == d] == []        # no script ran from a note
