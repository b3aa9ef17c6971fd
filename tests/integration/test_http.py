"""Pages, the JSON API and the CSV export through Flask's test client."""
from __future__ import annotations

import csv
import io
import re
import uuid
from typing import Any

import pytest

from tests.conftest import Actions


def csrf(client: Any, path: str) -> str:
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1)


def test_first_visit_offers_setup_once_then_requires_login(client: Any) -> None:
    assert client.get("/").headers["Location"].endswith("/setup")
    token = csrf(client, "/setup")
    short = client.post("/setup", data={"email": "a@example.org", "password": "short", "csrf_token": token})
    assert short.status_code == 400 and b"at least 8" in short.data
    made = client.post("/setup", data={"email": "a@example.org", "password": "long enough pw", "csrf_token": token})
    assert made.status_code == 302
    assert b"My caf" in client.get("/").data
    other = client.application.test_client()
    assert other.get("/setup").status_code == 302            # setup is gone for good
    assert other.get("/cafes/new").headers["Location"].startswith("/login")


def test_forms_need_csrf(client: Any) -> None:
    answer = client.post("/setup", data={"email": "a@example.org", "password": "long enough pw"})
    assert answer.status_code == 400


def test_login_logout_and_rate_limit(actions: Actions, client: Any) -> None:
    actions.facilitator("x@example.org", "right password")
    token = csrf(client, "/login")
    wrong = client.post("/login", data={"email": "x@example.org", "password": "nope", "csrf_token": token})
    assert wrong.status_code == 401
    ok = client.post("/login", data={"email": "X@example.org", "password": "right password", "csrf_token": token})
    assert ok.status_code == 302
    assert client.get("/cafes/new").status_code == 200
    token = csrf(client, "/login")
    for _ in range(12):
        last = client.post("/login", data={"email": "x@example.org", "password": "nope", "csrf_token": token})
    assert last.status_code == 429


def test_create_cafe_from_the_form_and_open_its_views(actions: Actions) -> None:
    fac = actions.facilitator()
    client = actions.logged_in(fac)
    token = csrf(client, "/cafes/new")
    answer = client.post("/cafes/new", data={"title": "Health assembly", "questions": "Q one\nQ two",
                                              "rounds": "2", "round_minutes": "15", "seats_per_table": "4",
                                              "hosts": "on", "csrf_token": token})
    assert answer.status_code == 302
    page = client.get(answer.headers["Location"])
    assert b"Health assembly" in page.data
    cafe_id = int(answer.headers["Location"].rsplit("/", 1)[1])
    dash = client.get(f"/cafes/{cafe_id}/dashboard")
    assert dash.status_code == 200 and b"<svg" in dash.data and b"/j/" in dash.data
    assert "script-src 'self'" in dash.headers["Content-Security-Policy"]
    assert client.get(f"/cafes/{cafe_id}/control").status_code == 200
    qr = client.get(f"/cafes/{cafe_id}/qr.svg")
    assert qr.mimetype == "image/svg+xml" and b"<path" in qr.data


def test_cafe_form_errors_are_clear(actions: Actions) -> None:
    client = actions.logged_in(actions.facilitator())
    token = csrf(client, "/cafes/new")
    answer = client.post("/cafes/new", data={"title": "T", "rounds": "many", "csrf_token": token})
    assert answer.status_code == 400 and b"whole number" in answer.data


def test_other_facilitators_cafe_is_not_found(actions: Actions) -> None:
    owner = actions.facilitator()
    cafe = actions.cafe(owner)
    intruder = actions.logged_in(actions.facilitator())
    for path in ("", "/dashboard", "/control", "/notes.csv", "/qr.svg"):
        assert intruder.get(f"/cafes/{cafe['id']}{path}").status_code == 404, path


def test_api_create_and_show(actions: Actions, client: Any) -> None:
    fac = actions.facilitator()
    token = actions.token(fac)
    headers = {"Authorization": f"Bearer {token}"}
    created = client.post("/api/cafes", json={"title": "API café", "questions": ["Why?"], "rounds": 4,
                                              "round_minutes": 10, "seats_per_table": 4, "hosts": False},
                          headers=headers)
    assert created.status_code == 201, created.json
    body = created.json
    assert set(body) >= {"id", "join_code", "join_url", "dashboard_url"}
    assert re.fullmatch(r"[ABCDEFGHJKMNPQRSTWXYZ2-9]{6}", body["join_code"])
    assert body["join_url"].endswith("/j/" + body["join_code"])
    shown = client.get(f"/api/cafes/{body['id']}", headers=headers).json
    assert shown["title"] == "API café" and shown["rounds"] == 4 and shown["hosts"] is False
    assert shown["state"]["phase"] == "lobby"


def test_api_errors(actions: Actions, client: Any) -> None:
    assert client.post("/api/cafes", json={"title": "x"}).status_code == 401
    bad = client.post("/api/cafes", json={"title": "x"}, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json["error"]["code"] == "unauthorized"
    token = actions.token(actions.facilitator())
    headers = {"Authorization": f"Bearer {token}"}
    for payload, status in ([{}, 400], [{"title": ""}, 400], [{"title": "x", "rounds": 0}, 400],
                            [{"title": "x", "rounds": "3x"}, 400], [[1, 2], 400],
                            [{"title": "x", "questions": "not a list"}, 201], [{"title": "x", "hosts": "maybe"}, 400]):
        answer = client.post("/api/cafes", json=payload, headers=headers)
        assert answer.status_code == status, (payload, answer.json)
    assert client.post("/api/cafes", data="{not json", headers=headers | {"Content-Type": "application/json"}
                       ).status_code == 400
    assert client.get("/api/cafes/999999", headers=headers).status_code == 404


def test_revoked_token_stops_working(actions: Actions, client: Any) -> None:
    from cafe.services import accounts
    fac = actions.facilitator()
    with actions.app.app_context():
        token, secret = accounts.create_token(fac, "x")
        accounts.revoke_token(fac, token.id)
    answer = client.post("/api/cafes", json={"title": "x"}, headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 401


def test_account_page_makes_and_revokes_tokens(actions: Actions) -> None:
    client = actions.logged_in(actions.facilitator())
    token = csrf(client, "/account")
    page = client.post("/account", data={"label": "scripts", "csrf_token": token}).get_data(as_text=True)
    secret = re.search(r'id="new-token">([^<]+)<', page).group(1)
    assert client.post("/api/cafes", json={"title": "t"}, headers={"Authorization": f"Bearer {secret}"}).status_code == 201


def test_notes_csv_export(actions: Actions) -> None:
    fac = actions.facilitator()
    cafe = actions.cafe(fac, seats_per_table=3, hosts=False)
    dash = actions.facilitator_socket(fac, cafe["id"])
    phone, _ = actions.phone(cafe["join_code"], name="Rosa")
    assert dash.emit("round_start", {"cafe_id": cafe["id"]}, callback=True)["ok"]
    for text in ("Clinic open late", "=HYPERLINK(\"x\")", "<img src=x onerror=alert(1)>"):
        assert phone.emit("note_add", {"client_id": str(uuid.uuid4()), "text": text}, callback=True)["ok"]
    client = actions.logged_in(fac)
    body = client.get(f"/cafes/{cafe['id']}/notes.csv").get_data(as_text=True).lstrip("\ufeff")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [r["text"] for r in rows] == ["Clinic open late", "'=HYPERLINK(\"x\")", "<img src=x onerror=alert(1)>"]
    assert rows[0]["round"] == "1" and rows[0]["table"] == "1"
    assert rows[0]["question"] == "What would make this place healthier?"
    assert "name" not in rows[0]
    named = list(csv.DictReader(io.StringIO(client.get(f"/cafes/{cafe['id']}/notes.csv?names=1")
                                            .get_data(as_text=True).lstrip("\ufeff"))))
    assert named[0]["name"] == "Rosa"
    token = actions.token(fac)
    via_token = actions.app.test_client().get(f"/cafes/{cafe['id']}/notes.csv",
                                               headers={"Authorization": f"Bearer {token}"})
    assert via_token.status_code == 200
    assert actions.app.test_client().get(f"/cafes/{cafe['id']}/notes.csv").status_code == 401


def test_phone_page_and_join_form(client: Any) -> None:
    page = client.get("/j/abc234")
    assert page.status_code == 200 and b'data-code="ABC234"' in page.data
    assert client.get("/join?code=abc 234").headers["Location"].endswith("/j/ABC234")


def test_user_text_is_escaped_in_pages(actions: Actions) -> None:
    fac = actions.facilitator()
    cafe = actions.cafe(fac, title="<script>alert(1)</script>", questions=["<b>bold?</b>"])
    client = actions.logged_in(fac)
    for path in ("", "/dashboard", "/control"):
        body = client.get(f"/cafes/{cafe['id']}{path}").get_data(as_text=True)
        assert "<script>alert(1)</script>" not in body and "&lt;script&gt;" in body


def test_a_socket_connection_opens_its_cookie_session_and_binds_its_urls_once(app: Any, monkeypatch: Any) -> None:
    """Every socket event's request context has the connection's environ, whose cookies never change: the
    session (a signature check) and the URL adapter are made at its first event, not at every one (about
    100 µs an event). Each connection has its own, and pages still open the session at every request."""
    from flask import session
    from flask.globals import request_ctx
    from werkzeug.test import EnvironBuilder

    cookie = app.session_interface.get_signing_serializer(app).dumps({"facilitator_id": 7})
    opened: list[str] = []
    real_open = app.session_interface.open_session

    def counting_open(the_app: Any, request: Any) -> Any:
        opened.append(request.path)
        return real_open(the_app, request)

    monkeypatch.setattr(app.session_interface, "open_session", counting_open)

    def environ(path: str, value: str) -> dict[str, Any]:
        return EnvironBuilder(path=path, query_string="EIO=4&transport=websocket",
                              headers={"Cookie": f"session={value}"}).get_environ()

    first, second = environ("/socket.io/", cookie), environ("/socket.io/", "forged")
    adapters = []
    for _ in range(3):
        with app.request_context(first):
            assert session.get("facilitator_id") == 7
            adapters.append(request_ctx.url_adapter)
    with app.request_context(second):
        assert session.get("facilitator_id") is None
        assert request_ctx.url_adapter is not adapters[0]
    assert opened == ["/socket.io/", "/socket.io/"]
    assert adapters[0] is not None and all(adapter is adapters[0] for adapter in adapters)
    page = environ("/join", cookie)
    for _ in range(2):
        with app.request_context(page):
            assert session.get("facilitator_id") == 7
    assert opened[2:] == ["/join", "/join"]


@pytest.mark.parametrize("method,upgrade", [("GET", False), ("POST", False), ("GET", True)])
def test_a_socket_event_leaves_no_garbage_for_the_cyclic_collector(app: Any, method: str, upgrade: bool) -> None:
    """Flask-SocketIO pushes a request context with the connection's environ for every socket event.
    Matching it against the URL rules left 8 objects in reference cycles per event (Werkzeug's matcher
    closure; a NotFound's traceback when no rule matched): with thousands of phones, collections that
    stall the event loop. Pages still match as before, and Socket.IO's path, were Flask ever asked to
    serve it, answers 404."""
    import gc
    import types

    from flask import request
    from werkzeug.exceptions import HTTPException
    from werkzeug.test import EnvironBuilder

    headers = {"Upgrade": "websocket", "Connection": "Upgrade"} if upgrade else {}
    environ = EnvironBuilder(path="/socket.io/", method=method, headers=headers,
                             query_string="EIO=4&transport=" + ("websocket" if upgrade else "polling")).get_environ()
    with app.request_context(environ):
        assert app.full_dispatch_request().status_code == 404
    # Other tests' engines may be finalised meanwhile: count only what routing leaves (it was 100
    # matcher closures, or 100 NotFound and their tracebacks, for 100 events).
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(100):
            with app.request_context(environ):
                assert request.url_rule is None
        gc.collect()
        routing = [o for o in gc.garbage
                   if getattr(o, "__qualname__", "").startswith("StateMachineMatcher")
                   or isinstance(o, (HTTPException, types.TracebackType))]
        assert routing == []
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()
    page = EnvironBuilder(path="/join", method="GET").get_environ()
    with app.request_context(page):
        assert request.url_rule is not None and request.endpoint == "pages.join_form"