"""Fixtures for the integration tests: a café that has reached the harvest."""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import Actions


def events(sock: Any) -> list[tuple[str, Any]]:
    return [(pkt["name"], pkt["args"][0] if pkt["args"] else None) for pkt in sock.get_received()]


def of(evts: list[tuple[str, Any]], name: str) -> list[Any]:
    return [payload for event, payload in evts if event == name]


NOTES = [
    ["More buses on Sunday", "more buses!!", "A bus shelter near the clinic"],
    ["Open the clinic on Saturdays", "Clinic hours are too short", "Longer clinic opening hours"],
    ["Safe crossing by the school", "Speed bumps near the school", "More buses in the evening"],
    ["Clinic open late on Thursdays", "Street lights on Main Street", "Fix the street lights"],
]


@pytest.fixture
def harvested(actions: Actions) -> dict[str, Any]:
    """A café after one round at four tables of three, with notes everywhere, in the harvest phase."""
    actions.app.config["THEME_MODEL"] = "tfidf"
    fac = actions.facilitator()
    cafe = actions.cafe(fac, seats_per_table=3, hosts=False, rounds=2)
    dash = actions.facilitator_socket(fac, cafe["id"])
    phones = [actions.phone(cafe["join_code"]) for _ in range(12)]
    assert dash.emit("round_start", {"cafe_id": cafe["id"]}, callback=True)["ok"]
    tables: dict[int, list[Any]] = {}
    for sock, joined in phones:
        seat = of(events(sock), "seat_assigned")[-1]
        tables.setdefault(seat["table"], []).append((sock, joined))
    for index, (_table, members) in enumerate(sorted(tables.items())):
        for (sock, _), text in zip(members, NOTES[index]):
            assert sock.emit("note_add", {"client_id": str(uuid.uuid4()), "text": text}, callback=True)["ok"]
    assert dash.emit("round_end", {"cafe_id": cafe["id"]}, callback=True)["ok"]
    for sock, _ in phones:
        sock.get_received()
    dash.get_received()
    started = dash.emit("harvest_start", {"cafe_id": cafe["id"]}, callback=True)
    assert started["ok"], started
    return {"fac": fac, "cafe": cafe, "dash": dash, "phones": phones, "themes": started["themes"]}


