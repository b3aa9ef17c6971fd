"""``python -m cafe.bench seating INSTANCES.json --out DIR [--seed S] [--time-limit SEC] [--only NAME ...]``

Plans every instance (format: ``/work/shared/data/seating/instances.json``, described in the data README),
writes each schedule to ``DIR/<name>.json`` (schedule format of the data README), re-reads and verifies it
independently (everyone present seated once, table sizes, hosts, fixed people, repeats recounted from the
written tables) and prints one row per instance, next to a random shuffle (respecting hosts and fixed
people) measured in the same run.

Instances with ``churn`` are planned round by round (``plan_round`` from the history) with the attendance
change applied before its round: leavers are a seeded random choice among those present (never a host),
joiners get new ids ``n, n+1, ...``.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from cafe.domain.seating import (SeatingProblem, balanced_sizes, plan_round, plan_schedule,
                                 schedule_lower_bound)

Schedule = dict[str, Any]


# --------------------------------------------------------------------------- instances -> schedules


def _roles(inst: dict[str, Any]) -> tuple[dict[int, int], list[int]]:
    n, T = int(inst["n"]), int(inst["tables"])
    hosts = {t: t for t in range(min(T, n))} if inst.get("hosts") else {}
    k = int(inst.get("fixed") or 0)
    first = len(hosts)
    fixed = list(range(first, min(n, first + k)))
    return hosts, fixed


def plan_instance(inst: dict[str, Any], seed: int, time_limit: float) -> tuple[Schedule, float]:
    """Plan one instance; returns the schedule (data README format) and the planning time in seconds."""
    n, T, R = int(inst["n"]), int(inst["tables"]), int(inst["rounds"])
    hosts, fixed = _roles(inst)
    host_of = {p: t for t, p in hosts.items()}
    churn = sorted(inst.get("churn") or [], key=lambda c: int(c["before_round"]))
    start = time.perf_counter()
    rounds: list[dict[str, Any]] = []
    everyone = list(range(n))
    if not churn:
        problem = SeatingProblem(participants=tuple(everyone), tables=T, hosts=host_of, fixed=frozenset(fixed),
                                 seed=seed)
        plans = plan_schedule(problem, R, time_limit=time_limit)
        rounds = [{"tables": p.tables} for p in plans]
    else:
        rng = random.Random(seed)
        present = list(everyone)
        next_id = n
        history: list[tuple[tuple[int, ...], ...]] = []
        for r in range(R):
            for ev in churn:
                if int(ev["before_round"]) != r:
                    continue
                candidates = [p for p in present if p not in host_of]
                leave = set(rng.sample(candidates, min(len(candidates), int(ev.get("leave", 0)))))
                present = [p for p in present if p not in leave]
                for _ in range(int(ev.get("join", 0))):
                    present.append(next_id)
                    everyone.append(next_id)
                    next_id += 1
            problem = SeatingProblem(participants=tuple(present), tables=T, history=tuple(history),
                                     hosts={p: t for p, t in host_of.items() if p in present},
                                     fixed=frozenset(p for p in fixed if p in present), seed=seed)
            plan = plan_round(problem, time_limit=time_limit, rounds_left=R - r)
            history.append(tuple(tuple(t) for t in plan.tables))
            rounds.append({"tables": plan.tables, "present": set(present)})
        for rnd in rounds:
            here = rnd.pop("present")
            rnd["absent"] = [p for p in everyone if p not in here]
    elapsed = time.perf_counter() - start
    schedule: Schedule = {"participants": everyone, "rounds": rounds}
    if hosts:
        schedule["hosts"] = {str(t): p for t, p in hosts.items()}
    if fixed:
        schedule["fixed"] = fixed
    return schedule, elapsed


def random_schedule(inst: dict[str, Any], seed: int, attendance: Schedule | None = None) -> Schedule:
    """A random shuffle each round with hosts at their tables and fixed people where they first sat;
    with ``attendance`` (a planned schedule) the same people are present each round."""
    n, T, R = int(inst["n"]), int(inst["tables"]), int(inst["rounds"])
    hosts, fixed = _roles(inst)
    rng = random.Random(seed)
    host_of = {p: t for t, p in hosts.items()}
    everyone = list(attendance["participants"]) if attendance else list(range(n))
    fixed_at: dict[int, int] = {}
    rounds = []
    for r in range(R):
        absent = set(attendance["rounds"][r].get("absent") or []) if attendance else set()
        present = [p for p in everyone if p not in absent]
        tables: list[list[int]] = [[] for _ in range(T)]
        for p, t in host_of.items():
            if p not in absent:
                tables[t].append(p)
        order = list(range(T))
        rng.shuffle(order)
        sizes = balanced_sizes(len(present), T)
        # the biggest sizes go to the tables that already hold someone who cannot move
        order.sort(key=lambda t: -len(tables[t]))
        cap = {t: s for t, s in zip(order, sizes)}
        for p in fixed:
            if p in absent:
                continue
            if p not in fixed_at:
                free = [t for t in range(T) if len(tables[t]) < cap[t]]
                fixed_at[p] = rng.choice(free)
            tables[fixed_at[p]].append(p)
        movers = [p for p in present if p not in host_of and p not in fixed_at]
        rng.shuffle(movers)
        slots = [t for t in range(T) for _ in range(max(0, cap[t] - len(tables[t])))]
        for p, t in zip(movers, slots):
            tables[t].append(p)
        for p in movers[len(slots):]:  # only when people who cannot move overfill a table
            tables[min(range(T), key=lambda t: len(tables[t]))].append(p)
        rounds.append({"tables": tables, "absent": sorted(absent)})
    schedule: Schedule = {"participants": everyone, "rounds": rounds}
    if hosts:
        schedule["hosts"] = {str(t): p for t, p in hosts.items()}
    if fixed:
        schedule["fixed"] = fixed
    return schedule


# --------------------------------------------------------------------------- independent verification


def verify(schedule: Schedule, tables: int) -> dict[str, Any]:
    """Recount everything from the written tables; nothing is taken from the planner."""
    everyone = set(schedule["participants"])
    hosts = {int(t): int(p) for t, p in (schedule.get("hosts") or {}).items()}
    fixed = set(schedule.get("fixed") or [])
    stationary = set(hosts.values()) | fixed
    met: dict[tuple[int, int], int] = defaultdict(int)
    seen_tables: dict[int, set[int]] = defaultdict(set)
    fixed_table: dict[int, int] = {}
    errors: list[str] = []
    host_viol = fixed_viol = revisits = 0
    spread = 0
    for r, rnd in enumerate(schedule["rounds"]):
        tabs = rnd["tables"]
        absent = set(rnd.get("absent") or [])
        if len(tabs) != tables:
            errors.append(f"round {r}: {len(tabs)} tables, expected {tables}")
        seated = [p for t in tabs for p in t]
        if len(seated) != len(set(seated)):
            errors.append(f"round {r}: someone seated twice")
        if set(seated) != everyone - absent:
            errors.append(f"round {r}: seated people differ from those present")
        sizes = [len(t) for t in tabs]
        if sizes:
            spread = max(spread, max(sizes) - min(sizes))
        where = {p: t for t, members in enumerate(tabs) for p in members}
        for t, p in hosts.items():
            if p in where and where[p] != t:
                host_viol += 1
        for p in fixed:
            if p in where:
                if p in fixed_table and fixed_table[p] != where[p]:
                    fixed_viol += 1
                fixed_table.setdefault(p, where[p])
        for t, members in enumerate(tabs):
            ms = sorted(members)
            for i, a in enumerate(ms):
                if a not in stationary:
                    if t in seen_tables[a]:
                        revisits += 1
                    seen_tables[a].add(t)
                for b in ms[i + 1:]:
                    met[(a, b)] += 1
    repeats = sum(v - 1 for v in met.values() if v > 1)
    thirds = sum(v - 2 for v in met.values() if v > 2)
    return {"repeats": repeats, "thirds": thirds, "revisits": revisits, "spread": spread,
            "host_violations": host_viol, "fixed_violations": fixed_viol, "errors": errors}


# --------------------------------------------------------------------------- main


def _fmt(v: Any) -> str:
    return "-" if v is None else str(v)


def main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m cafe.bench seating", description=__doc__.split("\n\n")[0])
    ap.add_argument("instances", help="instances JSON (a list)")
    ap.add_argument("--out", required=True, help="directory for <name>.json schedules")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=8.0,
                    help="seconds per instance for the search (it stops earlier at a proven optimum)")
    ap.add_argument("--only", nargs="*", default=None, help="instance names to run")
    args = ap.parse_args(list(argv))
    instances = json.loads(Path(args.instances).read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header = (f"{'instance':26s} {'n':>5s} {'T':>4s} {'R':>3s} | {'rep':>4s} {'3rd':>4s} {'known':>5s} "
              f"{'LB':>4s} {'ourLB':>5s} {'rev':>4s} {'spr':>3s} {'h/f viol':>8s} {'time s':>7s} {'ok':>3s} | "
              f"{'rnd rep':>7s} {'rnd rev':>7s} {'rnd spr':>7s} {'rnd h/f':>7s}")
    print(header)
    print("-" * len(header))
    failures = 0
    total_time = 0.0
    reached = missed = 0
    for inst in instances:
        name = inst["name"]
        if args.only and name not in args.only:
            continue
        n, T, R = int(inst["n"]), int(inst["tables"]), int(inst["rounds"])
        schedule, elapsed = plan_instance(inst, args.seed, args.time_limit)
        total_time += elapsed
        path = out / f"{name}.json"
        path.write_text(json.dumps(schedule))
        check = verify(json.loads(path.read_text()), T)
        rand = verify(random_schedule(inst, args.seed, schedule), T)
        ours_lb = schedule_lower_bound(n, T, R, bool(inst.get("hosts"))) if not inst.get("churn") else None
        known = inst.get("known_min_repeats")
        ok = not check["errors"] and check["host_violations"] == 0 and check["fixed_violations"] == 0 \
            and check["spread"] <= 1
        if known is not None:
            if check["repeats"] <= known:
                reached += 1
            else:
                missed += 1
        failures += 0 if ok else 1
        print(f"{name:26s} {n:5d} {T:4d} {R:3d} | {check['repeats']:4d} {check['thirds']:4d} {_fmt(known):>5s} "
              f"{_fmt(inst.get('lower_bound')):>4s} {_fmt(ours_lb):>5s} {check['revisits']:4d} "
              f"{check['spread']:3d} {check['host_violations']:>3d}/{check['fixed_violations']:<4d} "
              f"{elapsed:7.3f} {'yes' if ok else 'NO':>3s} | {rand['repeats']:7d} {rand['revisits']:7d} "
              f"{rand['spread']:7d} {rand['host_violations']:>3d}/{rand['fixed_violations']:<3d}")
        for e in check["errors"]:
            print(f"    ! {e}")
        sys.stdout.flush()
    print("-" * len(header))
    print(f"known minimum reached on {reached} of {reached + missed} instances that have one; "
          f"invalid schedules: {failures}; total planning time {total_time:.1f} s")
    return 1 if failures else 0
