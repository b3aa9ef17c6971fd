"""The harvest through the socket protocol: themes proposed and shaped, voting, ranked priorities."""
from __future__ import annotations

from typing import Any

from tests.conftest import Actions, both_databases
from tests.integration.conftest import events, of


def cmd(h: dict[str, Any], event: str, **payload: Any) -> dict[str, Any]:
    return h["dash"].emit(event, {"cafe_id": h["cafe"]["id"]} | payload, callback=True)


@both_databases
def test_harvest_proposes_themes_and_everyone_sees_them(harvested: dict[str, Any]) -> None:
    themes = harvested["themes"]
    assert 2 <= len(themes) <= 8
    all_notes = [n for t in themes for n in t["notes"]]
    assert len(all_notes) == 12 and len({n["id"] for n in all_notes}) == 12
    together = {t["id"] for t in themes for n in t["notes"] if n["text"] in ("More buses on Sunday", "more buses!!")}
    assert len(together) == 1                                   # near-duplicates land together
    for theme in themes:
        assert theme["label"] and theme["note_count"] == len(theme["notes"])
        assert theme["tables"] == len({n["table"] for n in theme["notes"]})
    phone_events = events(harvested["phones"][0][0])
    state = of(phone_events, "cafe_state")[-1]
    assert state["phase"] == "harvest"
    public = of(phone_events, "themes_changed")[-1]["themes"]
    assert [t["id"] for t in public] == [t["id"] for t in themes]
    assert all("notes" not in t for t in public)                 # phones get labels and counts, not every note
    # a reconnecting phone gets the themes in its snapshot
    sock, joined = harvested["phones"][1]
    from cafe.extensions import socketio
    again = socketio.test_client(sock.app)
    answer = again.emit("participant_join", {"join_code": harvested["cafe"]["join_code"],
                                             "rejoin_token": joined["rejoin_token"]}, callback=True)
    assert [t["id"] for t in answer["snapshot"]["themes"]] == [t["id"] for t in themes]


def test_shaping_themes_rename_merge_move_split_add_hide(harvested: dict[str, Any]) -> None:
    themes = harvested["themes"]
    first, second = themes[0], themes[1]
    renamed = cmd(harvested, "theme_rename", theme_id=first["id"], label="  Getting around  ")
    assert renamed["ok"]
    dash_events = events(harvested["dash"])
    latest = {t["id"]: t for t in of(dash_events, "themes_changed")[-1]["themes"]}
    assert latest[first["id"]]["label"] == "Getting around" and latest[first["id"]]["by_hand"]

    moved_note = second["notes"][0]
    assert cmd(harvested, "note_move", note_id=moved_note["id"], theme_id=first["id"])["ok"]
    latest = {t["id"]: t for t in of(events(harvested["dash"]), "themes_changed")[-1]["themes"]}
    assert moved_note["id"] in [n["id"] for n in latest[first["id"]]["notes"]]

    big = max(latest.values(), key=lambda t: len(t["notes"]))
    split = cmd(harvested, "theme_split", theme_id=big["id"], note_ids=[big["notes"][0]["id"]], label="Split off")
    assert split["ok"]
    latest = {t["id"]: t for t in of(events(harvested["dash"]), "themes_changed")[-1]["themes"]}
    assert [n["id"] for n in latest[split["theme_id"]]["notes"]] == [big["notes"][0]["id"]]
    refused = cmd(harvested, "theme_split", theme_id=split["theme_id"], note_ids=[big["notes"][0]["id"]])
    assert refused["error"]["code"] == "invalid_payload"           # cannot empty a theme by splitting

    merged = cmd(harvested, "theme_merge", theme_id=split["theme_id"], into_id=first["id"])
    assert merged["ok"]
    latest = {t["id"]: t for t in of(events(harvested["dash"]), "themes_changed")[-1]["themes"]}
    assert split["theme_id"] not in latest
    assert big["notes"][0]["id"] in [n["id"] for n in latest[first["id"]]["notes"]]

    added = cmd(harvested, "theme_add", label="Something nobody wrote yet")
    assert added["ok"]
    hidden_note = latest[first["id"]]["notes"][0]
    assert cmd(harvested, "note_hide", note_id=hidden_note["id"], hidden=True)["ok"]
    phone_events = events(harvested["phones"][0][0])
    assert hidden_note["id"] in [e["note_id"] for e in of(phone_events, "note_deleted")]
    public = {t["id"]: t for t in of(phone_events, "themes_changed")[-1]["themes"]}
    assert public[first["id"]]["note_count"] == len(latest[first["id"]]["notes"]) - 1
    assert public[added["theme_id"]]["label"] == "Something nobody wrote yet"


def test_shaping_errors(harvested: dict[str, Any], actions: Actions) -> None:
    themes = harvested["themes"]
    assert cmd(harvested, "theme_rename", theme_id=themes[0]["id"], label="   ")["error"]["code"] == "empty"
    assert cmd(harvested, "theme_rename", theme_id=themes[0]["id"], label="x" * 121)["error"]["code"] == "too_long"
    assert cmd(harvested, "theme_rename", theme_id=999999, label="x")["error"]["code"] == "not_found"
    assert cmd(harvested, "theme_merge", theme_id=themes[0]["id"], into_id=themes[0]["id"])["ok"] is False
    assert cmd(harvested, "theme_split", theme_id=themes[0]["id"], note_ids=[])["error"]["code"] == "invalid_payload"
    assert cmd(harvested, "theme_split", theme_id=themes[0]["id"], note_ids="1")["error"]["code"] == "invalid_payload"
    assert cmd(harvested, "note_move", note_id=themes[0]["notes"][0]["id"], theme_id="2")["ok"] is False
    # another facilitator's theme ids are not found from this café, and they cannot touch this café
    other_fac = actions.facilitator()
    other = actions.facilitator_socket(other_fac)
    answer = other.emit("theme_rename", {"cafe_id": harvested["cafe"]["id"], "theme_id": themes[0]["id"],
                                         "label": "mine"}, callback=True)
    assert answer["error"]["code"] == "forbidden"
    # a participant cannot shape themes
    phone = harvested["phones"][0][0]
    answer = phone.emit("theme_rename", {"cafe_id": harvested["cafe"]["id"], "theme_id": themes[0]["id"],
                                         "label": "x"}, callback=True)
    assert answer["error"]["code"] == "unauthorized"


def test_reproposing_asks_first_and_keeps_hand_work(harvested: dict[str, Any]) -> None:
    themes = harvested["themes"]
    plain = cmd(harvested, "themes_propose")
    assert plain["ok"] and plain["kept"] == 0                    # nothing made by hand: no question
    themes = plain["themes"]
    assert cmd(harvested, "theme_rename", theme_id=themes[0]["id"], label="Ours")["ok"]
    asked = cmd(harvested, "themes_propose")
    assert asked["ok"] is False and asked["error"]["code"] == "confirm_needed"
    assert ": 1." in asked["error"]["message"]
    again = cmd(harvested, "themes_propose", confirm=True)
    assert again["ok"] and again["kept"] == 1
    kept = [t for t in again["themes"] if t["label"] == "Ours"]
    assert len(kept) == 1 and kept[0]["id"] == themes[0]["id"]
    assert sorted(n["id"] for n in kept[0]["notes"]) == sorted(n["id"] for n in themes[0]["notes"])
    assert sum(len(t["notes"]) for t in again["themes"]) == 12


def _vote(phone: Any, votes: dict[int, int]) -> dict[str, Any]:
    return phone.emit("vote_set", {"votes": {str(k): v for k, v in votes.items()}}, callback=True)


@both_databases
def test_voting_budget_two_tabs_close_and_ranking(harvested: dict[str, Any], actions: Actions) -> None:
    themes = harvested["themes"]
    ids = [t["id"] for t in themes]
    phone, joined = harvested["phones"][0]
    assert _vote(phone, {ids[0]: 1})["error"]["code"] == "wrong_phase"         # not open yet
    opened = cmd(harvested, "voting_open", budget=3, stacking=False, show_tally=False)
    assert opened["ok"] and opened["state"]["phase"] == "voting" and opened["state"]["vote_budget"] == 3
    assert cmd(harvested, "theme_rename", theme_id=ids[0], label="late")["error"]["code"] == "wrong_phase"

    over = _vote(phone, {i: 1 for i in ids[:4]} if len(ids) >= 4 else {ids[0]: 4})
    assert over["ok"] is False and over["error"]["code"] in ("over_budget", "no_stacking")
    assert _vote(phone, {ids[0]: 2})["error"]["code"] == "no_stacking"
    assert _vote(phone, {999999: 1})["error"]["code"] == "not_found"
    assert phone.emit("vote_set", {"votes": {"x": 1}}, callback=True)["error"]["code"] == "invalid_payload"
    assert phone.emit("vote_set", {"votes": {str(ids[0]): 11}}, callback=True)["error"]["code"] == "out_of_range"
    ok = _vote(phone, {ids[0]: 1, ids[1]: 1})
    assert ok["ok"] and ok["spent"] == 2 and ok["budget"] == 3

    # a second tab of the same person replaces, never adds to, the allocation
    from cafe.extensions import socketio
    tab = socketio.test_client(actions.app)
    assert tab.emit("participant_join", {"join_code": harvested["cafe"]["join_code"],
                                         "rejoin_token": joined["rejoin_token"]}, callback=True)["ok"]
    assert _vote(tab, {ids[1]: 1})["ok"]
    # tally hidden from phones, visible to facilitators
    for sock, _ in harvested["phones"][1:3]:
        assert of(events(sock), "tally_changed") == []
    tally = of(events(harvested["dash"]), "tally_changed")[-1]
    assert {t["theme_id"]: t["dots"] for t in tally["tally"]} == {ids[1]: 1}

    # everyone else votes: theme ids[1] wins
    for sock, _ in harvested["phones"][1:]:
        assert _vote(sock, {ids[1]: 1, ids[-1]: 1})["ok"]
    closed = cmd(harvested, "voting_close")
    assert closed["ok"] and closed["state"]["phase"] == "results"
    ranked = closed["priorities"]
    assert ranked[0]["theme_id"] == ids[1] and ranked[0]["dots"] == 12 and ranked[0]["rank"] == 1
    assert [p["rank"] for p in ranked] == sorted(p["rank"] for p in ranked)
    assert _vote(phone, {ids[0]: 1})["error"]["code"] == "wrong_phase"          # after close
    phone_events = events(harvested["phones"][3][0])
    assert of(phone_events, "priorities_ranked")[-1]["priorities"] == ranked


def test_live_tally_to_phones_when_shown(harvested: dict[str, Any]) -> None:
    ids = [t["id"] for t in harvested["themes"]]
    assert cmd(harvested, "voting_open", budget=5, stacking=True, show_tally=True)["ok"]
    phone = harvested["phones"][0][0]
    watcher = harvested["phones"][5][0]
    watcher.get_received()
    assert _vote(phone, {ids[0]: 5})["ok"]
    tally = of(events(watcher), "tally_changed")[-1]
    assert tally["tally"] == [{"theme_id": ids[0], "dots": 5, "voters": 1, "paper": 0}] and tally["voters"] == 1
    # each tally carries the café's version it was counted at, so that a page can keep the newest when two
    # workers' tallies arrive out of order
    assert _vote(watcher, {ids[1]: 2})["ok"]
    later = of(events(watcher), "tally_changed")[-1]
    assert later["voters"] == 2 and later["version"] > tally["version"]
    shown = cmd(harvested, "tally_show", show=False)
    assert shown["ok"] and shown["state"]["version"] > later["version"]


def test_bad_voting_settings(harvested: dict[str, Any]) -> None:
    assert cmd(harvested, "voting_open", budget=0)["error"]["code"] == "out_of_range"
    assert cmd(harvested, "voting_open", budget=11)["error"]["code"] == "out_of_range"
    assert cmd(harvested, "voting_open", stacking="yes")["error"]["code"] == "invalid_payload"
    assert cmd(harvested, "voting_close")["error"]["code"] == "wrong_phase"


def test_harvest_needs_the_rounds_to_be_over(actions: Actions) -> None:
    fac = actions.facilitator()
    cafe = actions.cafe(fac, seats_per_table=2, hosts=False)
    dash = actions.facilitator_socket(fac, cafe["id"])
    assert dash.emit("harvest_start", {"cafe_id": cafe["id"]}, callback=True)["error"]["code"] == "wrong_phase"
    actions.phone(cafe["join_code"])
    assert dash.emit("round_start", {"cafe_id": cafe["id"]}, callback=True)["ok"]
    assert dash.emit("harvest_start", {"cafe_id": cafe["id"]}, callback=True)["error"]["code"] == "wrong_phase"


def test_removed_participant_is_out_at_once(actions: Actions) -> None:
    fac = actions.facilitator()
    cafe = actions.cafe(fac, seats_per_table=2, hosts=False)
    dash = actions.facilitator_socket(fac, cafe["id"])
    phone, joined = actions.phone(cafe["join_code"])
    other, _ = actions.phone(cafe["join_code"])
    assert dash.emit("round_start", {"cafe_id": cafe["id"]}, callback=True)["ok"]
    answer = dash.emit("participant_remove", {"cafe_id": cafe["id"], "participant_id": joined["participant"]["id"]},
                       callback=True)
    assert answer["ok"]
    assert not phone.is_connected()
    _again, refused = actions.phone(cafe["join_code"], rejoin_token=joined["rejoin_token"])
    assert refused["error"]["code"] == "removed"
    wrong = dash.emit("participant_remove", {"cafe_id": cafe["id"], "participant_id": 999999}, callback=True)
    assert wrong["error"]["code"] == "not_found"
    assert other.emit("participant_remove", {"cafe_id": cafe["id"], "participant_id": 1}, callback=True
                      )["error"]["code"] == "unauthorized"


def test_the_last_round_end_embeds_the_notes_before_the_harvest(actions: Actions) -> None:
    """Ending the last round embeds every note in the background (with the real model), so that the
    harvest only clusters; ending an earlier round does not."""
    import time
    import uuid

    from cafe.domain.embedders import clear_caches, get_embedder

    actions.app.config["THEME_MODEL"] = "use"
    clear_caches()
    fac = actions.facilitator()
    cafe = actions.cafe(fac, seats_per_table=3, hosts=False, rounds=2)
    dash = actions.facilitator_socket(fac, cafe["id"])
    phones = [actions.phone(cafe["join_code"]) for _ in range(6)]
    texts = [f"Idea number {i}: {word}" for i, word in enumerate(["buses", "clinic", "lights", "parks",
                                                                      "water", "schools"])]
    cache = get_embedder("use").cache                # type: ignore[attr-defined]
    for round_no in (1, 2):
        assert dash.emit("round_start", {"cafe_id": cafe["id"]}, callback=True)["ok"]
        for (sock, _), text in zip(phones, texts):
            note = {"client_id": str(uuid.uuid4()), "text": f"{text} (round {round_no})"}
            assert sock.emit("note_add", note, callback=True)["ok"]
        assert dash.emit("round_end", {"cafe_id": cafe["id"]}, callback=True)["ok"]
        if round_no == 1:
            time.sleep(0.5)
            assert not any(f"{t} (round 1)" in cache for t in texts)
    wanted = [f"{t} (round {r})" for t in texts for r in (1, 2)]
    deadline = time.monotonic() + 120                # the first use loads the model
    while time.monotonic() < deadline and not all(w in cache for w in wanted):
        time.sleep(0.2)
    assert all(w in cache for w in wanted)
    started = dash.emit("harvest_start", {"cafe_id": cafe["id"]}, callback=True)
    assert started["ok"] and sum(len(t["notes"]) for t in started["themes"]) == 12
