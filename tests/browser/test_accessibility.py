"""Everyone can take part: axe-core on every page in every phase, keyboard use, slow 3G on a small phone,
right-to-left notes, and a Spanish phone beside an English dashboard."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import PHONE, ROOT, LiveServer, screenshot_path
from tests.conftest import REQUIRE_SERVICES

pytestmark = pytest.mark.browser

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical WCAG 2.1 A/AA violations on the page as it is now."""
    if not page.evaluate("() => !!window.axe"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},
                                           resultTypes: ['violations']});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                       nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
    }""")
    return [v for v in result if v["impact"] in ("serious", "critical")]


def check(page: Any, where: str, found: dict[str, list[Any]]) -> None:
    violations = axe_violations(page)
    if violations:
        found[where] = violations


def setup_cafe(server: LiveServer, **settings: Any) -> dict[str, Any]:
    from cafe import create_app
    from cafe.config import TestConfig
    from cafe.services import accounts
    from cafe.services.cafes import create_cafe

    app = create_app(TestConfig(database_url=server.database_url))
    with app.app_context():
        fac = accounts.create_facilitator(f"a11y-{time.time_ns()}@example.org", "a long passphrase")
        cafe = create_cafe(fac.id, {"title": "Lilongwe water forum", "questions": ["What should change first?"],
                                    "seats_per_table": 2, "hosts": True, "rounds": 2} | settings)
        return {"email": fac.email, "password": "a long passphrase", "cafe_id": cafe.id, "code": cafe.join_code}


def login(browser: Any, server: LiveServer, info: dict[str, Any], **context: Any) -> Any:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, **context)
    page = ctx.new_page()
    page.set_default_timeout(20000)
    page.goto(server.url + "/login")
    page.fill("input[name=email]", info["email"])
    page.fill("input[name=password]", info["password"])
    page.click("main button[type=submit]")
    page.wait_for_url(server.url + "/")
    return ctx


@pytest.fixture(scope="module")
def axe_available() -> None:
    if not AXE.exists():
        if REQUIRE_SERVICES:
            pytest.fail("axe-core is not installed (make test runs npm install)")
        pytest.skip("axe-core is not installed: run `npm install` (make test does)")


def test_axe_finds_nothing_serious_on_any_page_in_any_phase(live_server: LiveServer, browser: Any,
                                                             axe_available: None) -> None:
    live_server.env["CAFE_THEME_MODEL"] = "tfidf"
    live_server.stop()
    live_server.start()
    info = setup_cafe(live_server)
    fac = login(browser, live_server, info, bypass_csp=True)      # axe is injected as a script
    found: dict[str, list[Any]] = {}
    page = fac.new_page()
    page.set_default_timeout(20000)
    for path in ("/", "/cafes/new", f"/cafes/{info['cafe_id']}", "/account"):
        page.goto(live_server.url + path)
        check(page, path, found)
    control = fac.new_page()
    control.set_default_timeout(20000)
    control.on("dialog", lambda d: d.accept())
    control.goto(f"{live_server.url}/cafes/{info['cafe_id']}/control")
    dash = fac.new_page()
    dash.set_default_timeout(20000)
    dash.goto(f"{live_server.url}/cafes/{info['cafe_id']}/dashboard")
    dash.wait_for_selector(".qr-svg")
    anon = browser.new_context(bypass_csp=True)
    for path in ("/login", "/join"):
        p = anon.new_page()
        p.goto(live_server.url + path)
        check(p, path, found)

    phone_ctx = browser.new_context(bypass_csp=True, **PHONE)
    phone = phone_ctx.new_page()
    phone.set_default_timeout(20000)
    phone.goto(f"{live_server.url}/j/{info['code']}")
    phone.wait_for_selector("#view-join:not([hidden])")
    check(phone, "phone: join", found)
    phone.click("#join-form button[type=submit]")
    phone.wait_for_selector("#view-lobby:not([hidden])")
    others = []
    for _ in range(3):
        other = browser.new_context(**PHONE).new_page()
        other.goto(f"{live_server.url}/j/{info['code']}")
        other.click("#join-form button[type=submit]")
        other.wait_for_selector("#view-lobby:not([hidden])")
        others.append(other)
    check(phone, "phone: lobby", found)
    control.wait_for_function("() => document.getElementById('people').textContent.indexOf('4') === 0")
    check(dash, "dashboard: lobby", found)
    check(control, "control: lobby", found)

    control.click("#btn-start")
    phone.wait_for_selector("#view-table:not([hidden])")
    check(phone, "phone: go to table", found)
    phone.click("#im-here")
    phone.fill("#note-text", "Fix the borehole pump")
    phone.click("#note-form button[type=submit]")
    phone.wait_for_selector("#notes .saved")
    for other in others:
        other.click("#im-here")
        other.fill("#note-text", "Clean water at the market")
        other.click("#note-form button[type=submit]")
        other.wait_for_selector("#notes .saved")
    check(phone, "phone: round", found)
    dash.wait_for_selector(".sticky")
    check(dash, "dashboard: round", found)
    check(control, "control: round", found)
    dash.click("#opt-contrast")
    check(dash, "dashboard: round, high contrast", found)
    dash.click("#opt-contrast")

    control.click("#btn-end-round")
    control.wait_for_selector("#btn-harvest:not([hidden])")
    check(phone, "phone: break", found)
    control.click("#btn-harvest")
    dash.wait_for_selector("#theme-cards .theme-card")
    phone.wait_for_selector("#view-harvest:not([hidden]) .phone-theme")
    check(dash, "dashboard: harvest", found)
    check(control, "control: harvest", found)
    check(phone, "phone: harvest", found)

    control.check("#vote-show")
    control.click("#voting-settings button[type=submit]")
    phone.wait_for_selector(".vote-btn")
    phone.locator(".vote-btn").nth(1).click()
    phone.wait_for_function("() => document.getElementById('vote-status').textContent.indexOf('saved') >= 0")
    dash.wait_for_selector("#tally .bar-row")
    check(phone, "phone: voting", found)
    check(dash, "dashboard: voting", found)
    check(control, "control: voting", found)

    control.click("#btn-close-voting")
    dash.wait_for_selector("#results:not([hidden]) .bar-row")
    phone.wait_for_selector("#phone-priorities:not([hidden]) .bar-row")
    check(dash, "dashboard: results", found)
    check(control, "control: results", found)
    check(phone, "phone: results", found)
    report = fac.new_page()
    report.goto(f"{live_server.url}/cafes/{info['cafe_id']}/priorities.html")
    check(report, "printable report", found)
    control.click("#btn-end-cafe")
    phone.wait_for_selector("#view-ended:not([hidden])")
    check(phone, "phone: ended", found)
    assert found == {}, found


def test_the_controls_work_by_keyboard(live_server: LiveServer, browser: Any) -> None:
    info = setup_cafe(live_server)
    fac = login(browser, live_server, info)
    phone = browser.new_context(**PHONE).new_page()
    phone.goto(f"{live_server.url}/j/{info['code']}")
    # join by keyboard alone: type a name, Enter submits
    phone.focus("#name")
    phone.keyboard.type("Keyboard user")
    phone.keyboard.press("Enter")
    phone.wait_for_selector("#view-lobby:not([hidden])")
    control = fac.new_page()
    control.set_default_timeout(20000)
    control.goto(f"{live_server.url}/cafes/{info['cafe_id']}/control")
    control.wait_for_selector("#btn-start:not([hidden])")
    # Tab from the top of the page reaches the start button, and Enter presses it
    control.keyboard.press("Tab")
    for _ in range(30):
        if control.evaluate("() => document.activeElement && document.activeElement.id") == "btn-start":
            break
        control.keyboard.press("Tab")
    assert control.evaluate("() => document.activeElement.id") == "btn-start"
    outline = control.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"                                  # focus is visible
    control.keyboard.press("Enter")
    phone.wait_for_selector("#view-table:not([hidden])")
    # the phone's live region announces the table
    phone.wait_for_function("() => document.getElementById('announcer').textContent.indexOf('table') >= 0")


def test_text_scales_to_200_percent_without_loss(live_server: LiveServer, browser: Any) -> None:
    info = setup_cafe(live_server)
    fac = login(browser, live_server, info)
    control = fac.new_page()
    control.goto(f"{live_server.url}/cafes/{info['cafe_id']}/control")
    phone = browser.new_context(**PHONE).new_page()
    phone.set_default_timeout(20000)
    phone.goto(f"{live_server.url}/j/{info['code']}")

    def fits(page: Any) -> bool:
        page.evaluate("() => { document.documentElement.style.fontSize = '200%'; }")
        return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")

    assert fits(phone), "the join page scrolls sideways at 200% text"
    phone.click("#join-form button[type=submit]")
    phone.wait_for_selector("#view-lobby:not([hidden])")
    assert fits(phone)
    control.wait_for_selector("#btn-start:not([hidden])")
    control.click("#btn-start")
    phone.wait_for_selector("#view-table:not([hidden])")
    assert fits(phone), "the table card scrolls sideways at 200% text"
    phone.click("#im-here")
    assert fits(phone), "the round view scrolls sideways at 200% text"
    assert phone.is_visible("#note-form button[type=submit]")


def test_slow_3g_small_phone_join_and_round_start(live_server: LiveServer, browser: Any, tmp_path: Path) -> None:
    info = setup_cafe(live_server)
    fac = login(browser, live_server, info)
    control = fac.new_page()
    control.goto(f"{live_server.url}/cafes/{info['cafe_id']}/control")
    ctx = browser.new_context(**PHONE)
    phone = ctx.new_page()
    phone.set_default_timeout(30000)
    cdp = ctx.new_cdp_session(phone)
    cdp.send("Network.enable")
    sizes: dict[str, int] = {}
    cdp.on("Network.loadingFinished", lambda e: sizes.__setitem__(e["requestId"], int(e["encodedDataLength"])))
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 400,
                                                  "downloadThroughput": 400 * 1000 / 8,
                                                  "uploadThroughput": 400 * 1000 / 8})
    start = time.monotonic()
    phone.goto(f"{live_server.url}/j/{info['code']}")
    phone.wait_for_selector("#view-join:not([hidden])")
    phone.click("#join-form button[type=submit]")
    phone.wait_for_selector("#view-lobby:not([hidden])")
    to_lobby = time.monotonic() - start
    transferred = sum(sizes.values())
    control.wait_for_selector("#btn-start:not([hidden])")
    start = time.monotonic()
    control.click("#btn-start")
    phone.wait_for_selector("#view-table:not([hidden]) .go-to")
    to_table = time.monotonic() - start
    print(f"\nslow 3G (400 kbit/s, 400 ms): join URL -> lobby {to_lobby:.2f} s, round start -> table {to_table:.2f} s, "
          f"transferred before joining {transferred / 1024:.1f} KB")
    assert transferred <= 100 * 1024
    assert to_lobby < 6.0
    assert to_table < 2.0


def test_rtl_notes_and_a_spanish_phone_beside_an_english_dashboard(live_server: LiveServer, browser: Any,
                                                                   tmp_path: Path) -> None:
    info = setup_cafe(live_server, question_translations={"es": ["¿Qué debería cambiar primero?"],
                                                          "rw": ["Ni iki gikwiye guhinduka mbere?"]})
    fac = login(browser, live_server, info, locale="en-GB")
    control = fac.new_page()
    control.goto(f"{live_server.url}/cafes/{info['cafe_id']}/control")
    dash = fac.new_page()
    dash.set_default_timeout(20000)
    dash.goto(f"{live_server.url}/cafes/{info['cafe_id']}/dashboard")

    spanish = browser.new_context(locale="es-ES", **PHONE).new_page()
    spanish.set_default_timeout(20000)
    spanish.goto(f"{live_server.url}/j/{info['code']}")
    assert spanish.evaluate("() => document.documentElement.lang") == "es"      # defaults from the browser
    spanish.click("#join-form button[type=submit]")
    spanish.wait_for_selector("#view-lobby:not([hidden])")
    assert "¿Qué debería cambiar primero?" in spanish.inner_text("#view-lobby")
    kinyarwanda = browser.new_context(**PHONE).new_page()
    kinyarwanda.set_default_timeout(20000)
    kinyarwanda.goto(f"{live_server.url}/j/{info['code']}")
    kinyarwanda.select_option("#language", "rw")
    kinyarwanda.wait_for_function("() => !!document.documentElement && document.documentElement.lang === 'rw'")
    kinyarwanda.click("#join-form button[type=submit]")
    kinyarwanda.wait_for_selector("#view-lobby:not([hidden])")
    assert "Ni iki gikwiye guhinduka mbere?" in kinyarwanda.inner_text("#view-lobby")

    control.click("#btn-start")
    for phone in (spanish, kinyarwanda):
        phone.wait_for_selector("#view-table:not([hidden])")
    spanish.screenshot(path=str(screenshot_path(tmp_path, "phone-es.png")))
    kinyarwanda.screenshot(path=str(screenshot_path(tmp_path, "phone-rw.png")))
    assert dash.evaluate("() => document.documentElement.lang") == "en"
    assert "Round 1 of 2" in dash.inner_text("#phase")

    spanish.click("#im-here")
    arabic = "نحتاج إلى مياه نظيفة في السوق"
    spanish.fill("#note-text", arabic)
    spanish.click("#note-form button[type=submit]")
    sticky = dash.locator(".sticky", has_text="مياه")
    sticky.wait_for()
    assert sticky.evaluate("e => getComputedStyle(e).direction") == "rtl"
    mine = spanish.locator(".note-text", has_text="مياه")
    assert mine.evaluate("e => getComputedStyle(e).direction") == "rtl"
    dash.click("#opt-contrast")
    dash.screenshot(path=str(screenshot_path(tmp_path, "dashboard-high-contrast.png")))
