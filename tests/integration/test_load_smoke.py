"""A small, fast run of the load benchmark: real servers (app and bare) on loopback, a few phones, notes.

It checks that the benchmark measures what it says (every phone joins, every note is acknowledged and
seen on the dashboard once, both round changes reach every phone); the latency targets are for the full
benchmark (``make bench-load``), not for a shared test machine.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_load_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    # As a user runs it: its own process (it runs asyncio event loops of its own).
    done = subprocess.run([sys.executable, "-m", "cafe.bench", "load", "--phones", "20", "--duration", "3",
                           "--rate", "6", "--clients", "2", "--connect-timeout", "20", "--ack-timeout", "15",
                           "--seat-timeout", "10", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    run = report["runs"]["eventlet"]
    for kind in ("app", "bare"):
        result = run[kind]
        assert "error" not in result, result.get("error", "") + result.get("server_log_tail", "")
        assert result["phones"]["connected"] == 20, result["phones"]
        notes = result["notes"]
        assert notes["sent"] >= 15, notes
        assert notes["acknowledged"] == notes["sent"], notes
        assert notes["seen_on_dashboard"] == notes["acknowledged"], notes
        assert notes["lost"] == 0 and notes["duplicated"] == 0, notes
        assert notes["dashboard_latency_ms"]["n"] == notes["acknowledged"]
        assert result["round_1"]["seated"] == 20 and result["round_2"]["seated"] == 20
        assert result["server_process"]["kb_per_phone"] is not None
        # at the end every phone dropped and came back (the venue's Wi-Fi) as the same person, to its seat
        storm = result["storm"]
        assert (storm["rejoined"], storm["same_seat"], storm["errors"]) == (20, 20, {}), storm
        assert storm["rejoin_ms"]["n"] == 20
        assert result["phones"]["still_connected_at_end"] == 20
        # the phones offered websocket compression, as browsers do, and both servers declined it
        assert result["phones"]["offered_compression"] is True and result["phones"]["compressed"] == 0
    # the room's counts as the dashboard shows them once everyone has joined (the latest read, by counted_at)
    assert run["app"]["phones"]["dashboard_shows"] == {"count": 20, "connected": 20}, run["app"]["phones"]
    storm = run["app"]["storm"]      # the dashboard showed everyone gone, then everyone back
    assert storm["dashboard_shows_after_drop"] == {"count": 20, "connected": 0}, storm
    assert storm["dashboard_shows"] == {"count": 20, "connected": 20}, storm
    assert storm["all_gone_on_dashboard_s"] is not None and storm["all_back_on_dashboard_s"] is not None, storm
    assert run["targets"]["none_lost"]["met"] and run["targets"]["none_duplicated"]["met"]
    assert set(run["app_to_bare_ratio"]) >= {"p50", "p95", "p99"}
    # the app's note writer said where each note's time went: every acknowledged note, in one worker
    [writer] = run["app"]["notes"]["writer"]
    assert writer["operations"] == run["app"]["notes"]["acknowledged"] and 1 <= writer["batches"] <= writer["operations"]
    for stage in ("queue_ms", "database_ms", "publish_ms"):
        assert writer[stage]["n"] == writer["operations"] and 0 <= writer[stage]["p50"] <= writer[stage]["max"] < 15_000
    assert "writer" not in run["bare"]["notes"]


def test_load_benchmark_via_gunicorn_in_alternating_pairs(tmp_path: Path) -> None:
    """The documented production command under the benchmark, and ``--pairs``: app and bare alternate,
    the targets are judged on the pair with the median p95 ratio, and every pair is listed. With
    ``--rotations 3`` every phone is seated in each of three round changes, each one timed."""
    out = tmp_path / "load.json"
    done = subprocess.run([sys.executable, "-m", "cafe.bench", "load", "--phones", "10", "--duration", "2",
                           "--rate", "4", "--clients", "1", "--via", "gunicorn", "--pairs", "2", "--rotations", "3",
                           "--connect-timeout", "20", "--ack-timeout", "15", "--seat-timeout", "10",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["config"]["via"] == "gunicorn"
    run = report["runs"]["eventlet"]
    assert run["app"]["via"] == "gunicorn" and "error" not in run["app"], run["app"].get("server_log_tail")
    assert run["app"]["phones"]["connected"] == 10 and run["app"]["notes"]["lost"] == 0
    # the gunicorn master and its worker are both measured
    assert len(run["app"]["server_process"]["pids"]) == 1 and run["app"]["server_process"]["kb_per_phone"] is not None
    pairs = run["pairs"]
    assert len(pairs) == 2 and sum(p["median"] for p in pairs) == 1
    ratios = sorted(p["p95_ratio"] for p in pairs)
    median = next(p for p in pairs if p["median"])
    assert median["p95_ratio"] == ratios[0]  # of two, the lower middle
    assert run["app_to_bare_ratio"]["p95"] == median["p95_ratio"]
    assert run["targets"]["p95_ratio_to_bare"]["value"] == median["p95_ratio"]
    assert "other_pairs_met" in run["targets"]
    for result in (run["app"], run["bare"]):
        rotations = result["rotations"]
        assert rotations["seated"] == [10, 10, 10] and len(rotations["last_phone_ms"]) == 3
        assert result["round_2"]["last_phone_ms"] == rotations["last_phone_ms"][0]
    assert run["targets"]["round_change_ms"]["value"] == max(run["app"]["rotations"]["last_phone_ms"])


def test_a_bare_run_that_lost_notes_gives_no_ratio_verdict() -> None:
    from cafe.bench.load import verdict

    def run(p95: float, lost: int) -> dict:
        return {"phones": {"connected": 10}, "round_2": {"seated": 10, "last_phone_ms": 100.0},
                "server_process": {"kb_per_phone": 40.0},
                "notes": {"lost": lost, "not_acknowledged": 0, "duplicated": 0,
                          "dashboard_latency_ms": {"p50": p95 / 2, "p95": p95, "p99": p95 * 2}}}

    fair = verdict(run(10.0, 0), run(10.0, 0), 10)["p95_ratio_to_bare"]
    assert fair["met"] and fair["value"] == 1.0 and "note" not in fair
    overloaded = verdict(run(10.0, 0), run(50.0, 3), 10)["p95_ratio_to_bare"]
    assert overloaded["value"] == 0.2 and not overloaded["met"] and "lost 3 notes" in overloaded["note"]


def test_with_several_rotations_the_slowest_round_change_is_judged() -> None:
    from cafe.bench.load import verdict

    app = {"phones": {"connected": 10}, "round_2": {"seated": 10, "last_phone_ms": 300.0},
           "rotations": {"last_phone_ms": [300.0, 520.0, 310.0], "median_ms": 310.0, "max_ms": 520.0,
                         "seated": [10, 10, 10]},
           "server_process": {"kb_per_phone": 40.0},
           "notes": {"lost": 0, "not_acknowledged": 0, "duplicated": 0,
                     "dashboard_latency_ms": {"p50": 5.0, "p95": 10.0, "p99": 20.0}}}
    check = verdict(app, None, 10)["round_change_ms"]
    assert check["value"] == 520.0 and not check["met"] and "3 rotations" in check["of"]
    app["rotations"]["last_phone_ms"][1] = 480.0
    app["rotations"]["seated"][2] = 9                  # a phone left without a seat fails it too
    assert not verdict(app, None, 10)["round_change_ms"]["met"]
    app["rotations"]["seated"][2] = 10
    assert verdict(app, None, 10)["round_change_ms"]["met"]


def test_with_several_workers_latency_is_also_given_apart_for_each_route() -> None:
    from cafe.bench.load import latency_by_route

    acked = [{"client_id": "a", "sent": 10.0, "port": 5001}, {"client_id": "b", "sent": 10.0, "port": 5002},
             {"client_id": "c", "sent": 10.0, "port": 5002}, {"client_id": "d", "sent": 10.0, "port": 5001}]
    seen = {"a": [10.002, 10.5], "b": [10.004], "c": [10.006]}      # "d" never reached the dashboard
    routes = latency_by_route(acked, seen, dashboard_port=5001)
    assert routes["same_worker"]["n"] == 1 and routes["same_worker"]["p50"] == 2.0      # its first arrival
    assert routes["other_worker"]["n"] == 2 and routes["other_worker"]["max"] == 6.0


def test_a_pair_that_misses_a_target_outside_the_median_names_it(monkeypatch) -> None:
    import argparse

    from cafe.bench import load

    def result(p95: float, slowest: float) -> dict:
        return {"phones": {"connected": 10}, "round_2": {"seated": 10, "last_phone_ms": 100.0},
                "rotations": {"last_phone_ms": [100.0, slowest], "median_ms": 100.0, "max_ms": slowest,
                              "seated": [10, 10]},
                "server_process": {"kb_per_phone": 40.0},
                "notes": {"lost": 0, "not_acknowledged": 0, "duplicated": 0,
                          "dashboard_latency_ms": {"p50": p95 / 2, "p95": p95, "p99": p95 * 2}}}

    # p95 ratios 1.0 (the median pair), 1.2 with a round change of 560 ms, and 0.8
    runs = {"app": [result(10.0, 120.0), result(12.0, 560.0), result(8.0, 130.0)],
            "bare": [result(10.0, 200.0), result(10.0, 200.0), result(10.0, 200.0)]}

    async def run_one(kind: str, args: argparse.Namespace, server: str) -> dict:
        return runs[kind].pop(0)

    monkeypatch.setattr(load, "run_one", run_one)
    entry = load.run_pairs(argparse.Namespace(pairs=3, only=None, phones=10), "eventlet")
    assert [p["median"] for p in entry["pairs"]] == [True, False, False]
    others = entry["targets"]["other_pairs_met"]
    assert others["value"] == [False, True] and not others["met"] and not entry["targets"]["all_met"]
    assert others["missed"] == [{"round_change_ms": 560.0}, {}]
