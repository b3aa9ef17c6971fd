"""Priorities exports, parsed back and checked: CSV, JSON, Markdown, XLSX and the printable report."""
from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from tests.conftest import Actions

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def voted(harvested: dict[str, Any], actions: Actions) -> dict[str, Any]:
    ids = [t["id"] for t in harvested["themes"]]
    dash, cafe_id = harvested["dash"], harvested["cafe"]["id"]
    # a hostile note gets its own theme by hand, and formula-looking text is renamed onto a theme
    added = dash.emit("theme_add", {"cafe_id": cafe_id, "label": "=SUM(A1) " + HOSTILE}, callback=True)
    assert added["ok"]
    assert dash.emit("voting_open", {"cafe_id": cafe_id, "budget": 3, "stacking": True}, callback=True)["ok"]
    for index, (sock, _) in enumerate(harvested["phones"]):
        votes = {str(ids[0]): 2, str(ids[1]): 1} if index < 8 else {str(ids[1]): 3}
        assert sock.emit("vote_set", {"votes": votes}, callback=True)["ok"]
    closed = dash.emit("voting_close", {"cafe_id": cafe_id}, callback=True)
    assert closed["ok"]
    harvested["priorities"] = closed["priorities"]
    harvested["client"] = actions.logged_in(harvested["fac"])
    harvested["hostile_theme"] = added["theme_id"]
    return harvested


def get(v: dict[str, Any], fmt: str, **query: str) -> Any:
    answer = v["client"].get(f"/cafes/{v['cafe']['id']}/priorities.{fmt}", query_string=query)
    assert answer.status_code == 200, answer.data[:300]
    return answer


def test_json_export_follows_the_schema(voted: dict[str, Any]) -> None:
    report = json.loads(get(voted, "json").data)
    assert report["schema"] == "cafe.priorities/1"
    assert report["cafe"]["title"] == "Our neighbourhood" and report["cafe"]["participants"] == 12
    assert report["voting"]["status"] == "closed" and report["voting"]["voters"] == 12
    top = report["priorities"][0]
    assert top["rank"] == 1 and top["dots"] == 8 * 1 + 4 * 3 and top["voters"] == 12
    assert top["theme"] == voted["priorities"][0]["label"]
    assert sum(len(p["notes"]) for p in report["priorities"]) == 12
    assert all("name" not in n for p in report["priorities"] for n in p["notes"])
    named = json.loads(get(voted, "json", names="1").data)
    assert named["names_included"] and all(n["name"].startswith("Guest ") for p in named["priorities"]
                                           for n in p["notes"])
    ranks = [p["rank"] for p in report["priorities"]]
    assert ranks == sorted(ranks)


def test_csv_export(voted: dict[str, Any]) -> None:
    body = get(voted, "csv").get_data(as_text=True).lstrip("\ufeff")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert rows[0]["rank"] == "1" and rows[0]["dots"] == "20"
    assert {r["note"] for r in rows if r["note"]} >= {"More buses on Sunday", "Fix the street lights"}
    hostile = [r for r in rows if HOSTILE in r["theme"]]
    assert hostile and hostile[0]["theme"].startswith("'=SUM")        # never a formula


def test_markdown_export_escapes_text(voted: dict[str, Any]) -> None:
    text = get(voted, "md").get_data(as_text=True)
    assert text.startswith("# Our neighbourhood")
    assert "| 1 |" in text and "## 1." in text
    assert HOSTILE not in text and "\\<img src=x onerror=alert\\(1\\)\\>" in text


def test_xlsx_export(voted: dict[str, Any]) -> None:
    from openpyxl import load_workbook
    book = load_workbook(io.BytesIO(get(voted, "xlsx").data))
    assert book.sheetnames[:2] == ["Priorities", "Notes"]
    rows = list(book["Priorities"].iter_rows(values_only=True))
    assert rows[0][:3] == ("rank", "theme", "dots") and rows[1][0] == 1 and rows[1][2] == 20
    assert all(not str(r[1]).startswith("=") for r in rows[1:])
    notes = list(book["Notes"].iter_rows(values_only=True))
    assert len([r for r in notes[1:] if r[6]]) == 12


def test_printable_report(voted: dict[str, Any]) -> None:
    html = get(voted, "html").get_data(as_text=True)
    assert "<svg" in html and 'class="chart-bar"' in html
    assert voted["priorities"][0]["label"] in html
    assert HOSTILE not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "More buses on Sunday" in html


def test_exports_are_for_the_cafes_facilitator_only(voted: dict[str, Any], actions: Actions) -> None:
    other = actions.logged_in(actions.facilitator())
    assert other.get(f"/cafes/{voted['cafe']['id']}/priorities.json").status_code == 404
    assert actions.app.test_client().get(f"/cafes/{voted['cafe']['id']}/priorities.json").status_code == 401
    assert voted["client"].get(f"/cafes/{voted['cafe']['id']}/priorities.exe").status_code == 404
    token = actions.token(voted["fac"])
    answer = actions.app.test_client().get(f"/cafes/{voted['cafe']['id']}/priorities.json",
                                            headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200


def test_provisional_report_before_voting(harvested: dict[str, Any], actions: Actions) -> None:
    client = actions.logged_in(harvested["fac"])
    report = json.loads(client.get(f"/cafes/{harvested['cafe']['id']}/priorities.json").data)
    assert report["voting"]["status"] == "not_started"
    assert all(p["dots"] == 0 for p in report["priorities"])
    # with no votes, themes raised at more tables rank first
    tables = [len(p["tables"]) for p in report["priorities"]]
    assert tables == sorted(tables, reverse=True)
    assert "provisional" in client.get(f"/cafes/{harvested['cafe']['id']}/priorities.html").get_data(as_text=True)


def test_empty_cafe_exports(actions: Actions) -> None:
    fac = actions.facilitator()
    cafe = actions.cafe(fac)
    client = actions.logged_in(fac)
    for fmt in ("csv", "json", "md", "xlsx", "html"):
        assert client.get(f"/cafes/{cafe['id']}/priorities.{fmt}").status_code == 200, fmt
