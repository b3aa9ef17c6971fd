"""Who sits where, round by round: the World Café seating planner (pure Python, no I/O).

People sit at small tables and move between rounds so that they meet new people. The planner seats the
people present at ``T`` tables, table sizes within one of each other, and minimises lexicographically

1. language isolation (only when someone listed languages): people with nobody at their table who shares
   one of their languages;
2. repeat encounters: the sum over pairs of ``max(0, times_met - 1)``, history included;
3. third (and later) meetings: the sum over pairs of ``max(0, times_met - 2)``;
4. revisits: people who move (not hosts, not fixed) sitting again at a table they already sat at.

Hosts stay at their table every round. Fixed people (who cannot move) stay at the table of their first
seated round; the planner chooses it when they have not sat yet.

How: finite-field / cyclic "move ``v`` tables per round" constructions and binary subspace spreads give
zero-repeat schedules where they apply; a greedy seating plus a tabu search on swaps (as Triska & Musliu
for the social golfer problem) handles everything else, including history, churn, hosts, fixed people and
languages. The search stops at a proven lower bound, at an iteration budget (so results are
deterministic for a seed) or at ``time_limit``, whichever comes first. When repeats are unavoidable and the
search has not reached their bound, the planner also plans the longest run of rounds that can be free of
repeats and extends it one round at a time from that history (each new round only adds the repeats it
must: with everyone one unmet partner short, tables of unmet pairs), keeping the better schedule.
"""
from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Iterable, Mapping, Sequence

__all__ = [
    "SeatingProblem", "RoundPlan", "table_count", "plan_round", "plan_schedule", "schedule_lower_bound",
    "problem_lower_bound", "count_repeats", "count_revisits", "balanced_sizes",
]

Round = Sequence[Sequence[int]]


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class SeatingProblem:
    """What to seat.

    ``participants``: ids present for the round(s) being planned. ``tables``: the number of tables
    (numbered ``0 .. tables-1``). ``history``: past rounds, each a list of tables (index = table number)
    of the ids seated there; ids may include people no longer present. ``hosts``: id -> table they host
    (hosts not present, or with a table number out of range, are ignored). ``fixed``: ids who cannot
    move. ``languages``: id -> languages spoken (optional, soft). ``seed``: for deterministic results.
    """

    participants: tuple[int, ...]
    tables: int
    history: tuple[tuple[tuple[int, ...], ...], ...] = ()
    hosts: Mapping[int, int] = field(default_factory=dict)
    fixed: frozenset[int] = frozenset()
    languages: Mapping[int, frozenset[str]] = field(default_factory=dict)
    seed: int = 0


@dataclass
class RoundPlan:
    """One planned round; every count is relative to everything seated before it."""

    tables: list[list[int]]
    repeats: int
    third_meetings: int
    revisits: int
    lower_bound: int
    language_isolated: int
    warnings: list[str]


# --------------------------------------------------------------------------- small helpers


def table_count(present: int, seats_per_table: int) -> int:
    """Tables needed so that no table has more than ``seats_per_table`` people (at least 1)."""
    if present <= 0:
        return 1
    seats = max(1, int(seats_per_table))
    return max(1, -(-int(present) // seats))


def balanced_sizes(n: int, tables: int) -> list[int]:
    """Table sizes within one of each other, largest first."""
    tables = max(1, tables)
    q, rem = divmod(max(0, n), tables)
    return [q + 1] * rem + [q] * (tables - rem)


def _c2(k: int) -> int:
    return k * (k - 1) // 2 if k > 1 else 0


def _spread_pairs(size: int, groups: int) -> int:
    """Fewest pairs sharing a group when ``size`` people come from ``groups`` groups (unbounded sizes)."""
    if groups <= 0:
        return _c2(size)
    q, r = divmod(size, groups)
    return r * _c2(q + 1) + (groups - r) * _c2(q)


def count_repeats(rounds: Iterable[Round]) -> tuple[int, int]:
    """``(repeats, third_meetings)`` of a whole schedule: sums over pairs of ``max(0, met-1)`` and
    ``max(0, met-2)``."""
    met: dict[tuple[int, int], int] = defaultdict(int)
    for rnd in rounds:
        for members in rnd:
            ms = sorted(members)
            for i, a in enumerate(ms):
                for b in ms[i + 1:]:
                    met[(a, b)] += 1
    return sum(max(0, v - 1) for v in met.values()), sum(max(0, v - 2) for v in met.values())


def count_revisits(rounds: Iterable[Round], stationary: Iterable[int] = ()) -> int:
    """People (not in ``stationary``) sitting at a table they already sat at, summed over rounds."""
    still = set(stationary)
    seen: dict[int, set[int]] = defaultdict(set)
    total = 0
    for rnd in rounds:
        for t, members in enumerate(rnd):
            for p in members:
                if p in still:
                    continue
                if t in seen[p]:
                    total += 1
                seen[p].add(t)
    return total


# --------------------------------------------------------------------------- lower bounds


def _schedule_lb(n: int, tables: int, rounds: int, stationary: Sequence[int]) -> int:
    """Proven lower bound on repeats of ``rounds`` rounds without history.

    ``stationary[t]`` = how many people never leave table ``t``.
    """
    if n <= 1 or rounds <= 1:
        extra = sum(_c2(k) for k in stationary) * max(0, rounds - 1)
        return extra
    T = max(1, min(tables, n))
    sizes = balanced_sizes(n, T)
    smax, smin = sizes[0], sizes[-1]
    R = rounds
    meetings = R * sum(_c2(s) for s in sizes)
    st = list(stationary)[:T] + [0] * max(0, T - len(stationary))
    n_st = sum(st)
    # Stationary people at different tables never meet.
    never = _c2(n_st) - sum(_c2(k) for k in st)
    pairs = _c2(n) - never
    per_person_cap = 0
    for t, k in enumerate(st):
        per_person_cap += k * min(n - 1 - (n_st - k), R * (smax - 1))
    per_person_cap += (n - n_st) * min(n - 1, R * (smax - 1))
    distinct = min(pairs, meetings, per_person_cap // 2)
    lb_count = meetings - distinct
    # Every later round against round 1: a table of s drawn from T groups shares >= f(s, T) pairs.
    lb_pigeon = (R - 1) * sum(_spread_pairs(s, T) for s in sizes)
    # Stationary people sharing a table meet every round.
    lb_forced = (R - 1) * sum(_c2(k) for k in st)
    # Excess degree: each person meets >= R*(smin-1) people but only ``avail`` distinct ones.
    excess_all = 0
    for k in st:
        avail = n - 1 - (n_st - k)
        excess_all += k * max(0, R * (smin - 1) - avail)
    excess_all += (n - n_st) * max(0, R * (smin - 1) - (n - 1))
    lb_excess = -(-excess_all // 2)
    # Over one stationary person per table (they never meet each other) the repeats are distinct.
    lb_excess_st = 0
    for k in st:
        if k:
            avail = n - 1 - (n_st - k)
            lb_excess_st += max(0, R * (smin - 1) - avail)
    return max(lb_count, lb_pigeon, lb_forced, lb_excess, lb_excess_st, 0)


def schedule_lower_bound(n: int, tables: int, rounds: int, hosts: bool = False) -> int:
    """Proven lower bound on the total repeats of ``rounds`` rounds for ``n`` people at ``tables`` tables
    (balanced sizes, no history); with ``hosts`` one person per table never moves.

    Max of: counting (meetings minus distinct pairs available), pigeonhole against round 1, and excess
    degree (overall, halved; and over the hosts, who never meet each other).
    """
    T = max(1, min(tables, n)) if n > 0 else 1
    stationary = [1] * T if hosts and n >= T else ([1] * n + [0] * (T - n) if hosts else [0] * T)
    return _schedule_lb(n, T, rounds, stationary)


def _round_lb(prev_rounds: Sequence[Sequence[Sequence[int]]], present: Sequence[int], sizes: Sequence[int],
              forced_pairs: int) -> int:
    """Lower bound on repeats of one new round with table ``sizes`` given earlier rounds (in indices of
    ``present``, restricted to them)."""
    best = forced_pairs
    T = len(sizes)
    n = len(present)
    size_count: dict[int, int] = defaultdict(int)
    for s in sizes:
        size_count[s] += 1
    for rnd in prev_rounds:
        group_count: dict[int, int] = defaultdict(int)
        seated = 0
        groups = 0
        for g in rnd:
            if g:
                group_count[len(g)] += 1
                seated += len(g)
                groups += 1
        lb1 = sum(c * _spread_pairs(a, T) for a, c in group_count.items())
        k = groups + (n - seated)
        lb2 = sum(c * _spread_pairs(s, k) for s, c in size_count.items())
        best = max(best, lb1, lb2)
    return best


# --------------------------------------------------------------------------- constructions


def _is_prime(k: int) -> bool:
    if k < 2:
        return False
    i = 2
    while i * i <= k:
        if k % i == 0:
            return False
        i += 1
    return True


def _prime_power(q: int) -> tuple[int, int] | None:
    for p in range(2, q + 1):
        if q % p == 0:
            k, x = 0, q
            while x % p == 0:
                x //= p
                k += 1
            return (p, k) if x == 1 else None
    return None


@lru_cache(maxsize=16)
def _gf_tables(q: int) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]] | None:
    """Addition and multiplication tables of GF(q), elements 0..q-1 (base-p digits = coefficients)."""
    pk = _prime_power(q)
    if pk is None:
        return None
    p, k = pk

    def digits(x: int) -> list[int]:
        return [(x // p ** i) % p for i in range(k)]

    def number(ds: Sequence[int]) -> int:
        return sum((d % p) * p ** i for i, d in enumerate(ds))

    add = tuple(tuple(number([a + b for a, b in zip(digits(x), digits(y))]) for y in range(q)) for x in range(q))
    if k == 1:
        mul = tuple(tuple((x * y) % p for y in range(q)) for x in range(q))
        return add, mul
    # Monic irreducible polynomial of degree k: no roots is enough for k <= 3; check all divisors otherwise.
    def polymulmod(a: list[int], b: list[int], mod: list[int]) -> list[int]:
        res = [0] * (2 * k - 1)
        for i, x in enumerate(a):
            for j, y in enumerate(b):
                res[i + j] = (res[i + j] + x * y) % p
        for d in range(2 * k - 2, k - 1, -1):
            c = res[d]
            if c:
                for i in range(k + 1):
                    res[d - k + i] = (res[d - k + i] - c * mod[i]) % p
        return res[:k]

    def irreducible(mod: list[int]) -> bool:
        # x^(p^k) == x mod f and gcd conditions are overkill here: brute-force check that the
        # multiplication has no zero divisors.
        for a in range(1, q):
            for b in range(1, q):
                if number(polymulmod(digits(a), digits(b), mod)) == 0:
                    return False
        return True

    for low in range(p ** k):
        mod = digits(low) + [1]
        if irreducible(mod):
            mul = tuple(tuple(number(polymulmod(digits(x), digits(y), mod)) for y in range(q)) for x in range(q))
            return add, mul
    return None


def _good_speed_set(T: int, size: int, R: int, must: Sequence[int], limit: int = 20000) -> list[int] | None:
    """``size`` elements of Z_T including ``must`` whose pairwise differences have additive order >= R."""
    def ok(d: int) -> bool:
        d %= T
        return d != 0 and T // math.gcd(d, T) >= R

    chosen = list(must)
    for i, a in enumerate(chosen):
        for b in chosen[i + 1:]:
            if not ok(a - b):
                return None
    cands = [v for v in range(T) if v not in chosen and all(ok(v - c) for c in chosen)]
    nodes = [0]

    def dfs(start: int, cur: list[int]) -> list[int] | None:
        if len(cur) == size:
            return cur
        nodes[0] += 1
        if nodes[0] > limit:
            return None
        for i in range(start, len(cands)):
            v = cands[i]
            if len(cands) - i < size - len(cur):
                return None
            if all(ok(v - c) for c in cur):
                got = dfs(i + 1, cur + [v])
                if got:
                    return got
        return None

    return dfs(0, chosen)


def _cyclic_construction(n: int, T: int, R: int, station: Mapping[int, int], movers: Sequence[int]
                         ) -> list[list[list[int]]] | None:
    """Rounds from "row k moves ``v_k`` tables per round" (over GF(T) when T is a prime power, Z_T
    otherwise). Returns as many zero-repeat rounds as the construction gives (<= R), or None.

    ``station``: index -> table of people who never move (at most one per table). Dummies fill the last
    row (or the stationary row), so table sizes stay within one.
    """
    if T < 2 or n < 2:
        return None
    s = -(-n // T)
    if s < 2:
        return None
    by_table: dict[int, int] = {}
    for p, t in station.items():
        if t in by_table:
            return None
        by_table[t] = p
    gf = None
    pk = _prime_power(T)
    if pk is not None and (pk[1] == 1 or T <= 64):
        gf = _gf_tables(T) if pk[1] > 1 else None
    has_station = bool(station)
    row_round = False
    if pk is not None and (pk[1] == 1 or gf is not None):
        elems = list(range(T))
        if has_station:
            speeds = [0] + list(range(1, s)) if s <= T else None
        elif s <= T - 1:
            speeds = list(range(1, s + 1))
        elif s == T:
            speeds = list(range(T))
        else:
            speeds = None
        if speeds is None:
            return None
        k = min(R, T)
        rhos = elems[:k]
        row_round = (R > T and s == T and not has_station)

        if gf is None:
            def seat(b: int, v: int, rho: int) -> int:
                return (b + rho * v) % T
        else:
            add, mul = gf

            def seat(b: int, v: int, rho: int) -> int:
                return add[b][mul[rho][v]]
    else:
        k = min(R, T)
        speeds = None
        if not has_station:
            got = _good_speed_set(T, s + 1, k, [0])
            speeds = got[1:] if got else None
        if speeds is None:
            speeds = _good_speed_set(T, s, k, [0])
        if speeds is None:
            return None
        rhos = list(range(k))

        def seat(b: int, v: int, rho: int) -> int:
            return (b + rho * v) % T
    # Slots (row, column). Row 0 is the stationary row when there are stationary people.
    dummies = s * T - n
    grid: list[list[int]] = [[-1] * T for _ in range(s)]
    for t, p in by_table.items():
        grid[0][t] = p
    free_row0 = T - len(by_table)
    dummy_row = 0 if (has_station and dummies <= free_row0) else s - 1
    if has_station and dummy_row == s - 1 and s - 1 == 0:
        return None
    it = iter(movers)
    placed_dummies = 0
    for r_ in range(s):
        for b in range(T):
            if grid[r_][b] != -1:
                continue
            if r_ == dummy_row and placed_dummies < dummies:
                grid[r_][b] = -2
                placed_dummies += 1
                continue
            try:
                grid[r_][b] = next(it)
            except StopIteration:
                return None
    if placed_dummies != dummies:
        return None
    rounds: list[list[list[int]]] = []
    for rho in rhos:
        tabs: list[list[int]] = [[] for _ in range(T)]
        for r_ in range(s):
            v = speeds[r_]
            row = grid[r_]
            for b in range(T):
                p = row[b]
                if p >= 0:
                    tabs[seat(b, v, rho)].append(p)
        rounds.append(tabs)
    if row_round and len(rounds) < R:
        rounds.append([[p for p in grid[r_] if p >= 0] for r_ in range(s)])
    return rounds


def _binary_spread_construction(n: int, T: int, R: int, movers: Sequence[int], rng: random.Random,
                                 deadline: float) -> list[list[list[int]]] | None:
    """``n = 2^k`` people, tables of ``2^j``: rounds are the cosets of pairwise trivially intersecting
    ``j``-dimensional subspaces of GF(2)^k (a partial spread), so nobody meets twice."""
    if n < 4 or n & (n - 1) or T < 2 or n % T or (n // T) & (n // T - 1) or n > 1024:
        return None
    k = n.bit_length() - 1
    j = (n // T).bit_length() - 1
    if j < 1 or j >= k:
        return None
    # Random j-dim subspaces, greedy + restarts (a partial spread).
    def random_subspace() -> frozenset[int]:
        basis: list[int] = []
        span = {0}
        while len(basis) < j:
            v = rng.randrange(1, n)
            if v in span:
                continue
            basis.append(v)
            span = span | {x ^ v for x in span}
        return frozenset(span)

    best: list[frozenset[int]] = []
    target = min(R, (n - 1) // ((1 << j) - 1))
    for attempt in range(400):
        if time.perf_counter() > deadline:
            break
        chosen: list[frozenset[int]] = []
        used: set[int] = set()
        fails = 0
        while len(chosen) < target and fails < 200:
            w = random_subspace()
            if any(x in used for x in w if x):
                fails += 1
                continue
            chosen.append(w)
            used |= {x for x in w if x}
        if len(chosen) > len(best):
            best = chosen
        if len(best) >= target:
            break
    if len(best) < 2:
        return None
    people = list(movers)
    rounds: list[list[list[int]]] = []
    for w in best:
        reps: dict[int, int] = {}
        tabs: list[list[int]] = [[] for _ in range(T)]
        for x in range(n):
            rep = min(x ^ y for y in w)
            t = reps.setdefault(rep, len(reps))
            tabs[t].append(people[x])
        rounds.append(tabs)
    return rounds


# --------------------------------------------------------------------------- the planner


_LIST_ROWS_MAX = 300


class _Row(dict):  # type: ignore[type-arg]
    """A sparse row of the meetings matrix: reading a pair that never met gives 0 without storing it (a
    defaultdict would fill every row with zeros as the search looks around, and slow every scan of it)."""

    __slots__ = ()

    def __missing__(self, key: int) -> int:
        return 0


class _Context:
    """A normalised problem in indices ``0..n-1`` plus the costs and bounds the search works with."""

    def __init__(self, problem: SeatingProblem, rounds: int) -> None:
        self.problem = problem
        seen: set[int] = set()
        ids: list[int] = []
        for p in problem.participants:
            if p not in seen:
                seen.add(p)
                ids.append(p)
        self.ids = ids
        self.index = {p: i for i, p in enumerate(ids)}
        n = self.n = len(ids)
        self.R = max(1, int(rounds))
        self.T = T = max(1, int(problem.tables))
        self.q, self.rem = divmod(n, T)
        self.rng = random.Random(problem.seed)
        self.warnings: list[str] = []
        idx = self.index
        # History restricted to present people, in indices.
        self.hist: list[list[list[int]]] = []
        for rnd in problem.history:
            self.hist.append([[idx[p] for p in members if p in idx] for members in rnd])
        # Stationary people: hosts, then fixed.
        station: dict[int, int] = {}
        self.host_idx: set[int] = set()
        for pid, t in sorted(problem.hosts.items(), key=lambda kv: (kv[1], kv[0])):
            if pid in idx and 0 <= int(t) < T:
                station[idx[pid]] = int(t)
                self.host_idx.add(idx[pid])
        self.fixed_idx: set[int] = {idx[p] for p in problem.fixed if p in idx and idx[p] not in self.host_idx}
        first_table: dict[int, int] = {}
        for rnd in problem.history:
            for t, members in enumerate(rnd):
                for p in members:
                    if p in idx and idx[p] in self.fixed_idx and idx[p] not in first_table:
                        first_table[idx[p]] = t
        count = [0] * T

        def fits(t: int) -> bool:
            if count[t] < self.q:
                return True
            if count[t] == self.q and self.rem:
                return sum(1 for c in count if c >= self.q + 1) < self.rem
            return False

        for p, t in list(station.items()):
            if fits(t):
                count[t] += 1
            else:
                del station[p]
                self.host_idx.discard(p)
                self.warnings.append(f"Table {t + 1} has more hosts than seats; participant {ids[p]} will move.")
        pending: list[int] = []
        for p in sorted(self.fixed_idx, key=lambda i: ids[i]):
            t = first_table.get(p)
            if t is not None and t < T and fits(t):
                station[p] = t
                count[t] += 1
            else:
                if t is not None:
                    self.warnings.append(f"Participant {ids[p]} cannot move but their table {t + 1} is gone or "
                                         f"full; seating them anew.")
                pending.append(p)
        self.lang: list[frozenset[str]] = [frozenset(problem.languages.get(p, ()) or ()) for p in ids]
        self.has_lang = any(self.lang)
        # Base meeting counts (history only) and tables visited.
        self.base_pairs: dict[tuple[int, int], int] = defaultdict(int)
        self.visits: list[dict[int, int]] = [dict() for _ in range(n)]
        for rnd in self.hist:
            for t, members in enumerate(rnd):
                for i, a in enumerate(members):
                    self.visits[a][t] = self.visits[a].get(t, 0) + 1
                    for b in members[i + 1:]:
                        key = (a, b) if a < b else (b, a)
                        self.base_pairs[key] += 1
        host_at = {t: p for p, t in station.items() if p in self.host_idx}
        for p in pending:
            best_t, best_key = None, None
            for t in range(T):
                if not fits(t):
                    continue
                here = [x for x, tt in station.items() if tt == t]
                met = sum(self.base_pairs.get((min(p, x), max(p, x)), 0) for x in here)
                lang_bad = 0
                if self.lang[p] and here and not any(self.lang[p] & self.lang[x] for x in here):
                    lang_bad = 1
                key = (t in host_at, len(here), met, lang_bad, t)
                if best_key is None or key < best_key:
                    best_t, best_key = t, key
            if best_t is None:  # cannot happen: capacity covers everyone
                continue
            station[p] = best_t
            count[best_t] += 1
        self.station = station
        self.movable = [i not in station for i in range(n)]
        for p in sorted(self.fixed_idx, key=lambda i: ids[i]):
            if p not in station:
                continue
            t = station[p]
            if t in host_at:
                self.warnings.append(
                    f"Participant {ids[p]} cannot move and sits with host {ids[host_at[t]]} at table {t + 1} "
                    f"every round, so that pair repeats each round: consider making {ids[p]} a host instead.")
            else:
                self.warnings.append(
                    f"Participant {ids[p]} cannot move and stays at table {t + 1}: consider making them the "
                    f"host of table {t + 1}.")
        self.sizes = balanced_sizes(n, T)
        smax = self.sizes[0] if n else 0
        if n and smax > T and (self.hist or self.R > 1):
            self.warnings.append(
                f"{smax} seats per table but only {T} tables: some people must meet again in every later "
                f"round (more tables or smaller tables would avoid it).")
        if self.has_lang:
            for i in range(n):
                if self.lang[i] and not any(self.lang[i] & self.lang[j] for j in range(n) if j != i):
                    self.warnings.append(f"Nobody else present speaks a language of participant {ids[i]}.")
        # Weights: lexicographic (language isolation) > repeats > third meetings > revisits.
        max_rev = n * self.R + 1
        self.Wrev = 1
        self.W2 = max_rev
        max_meet = self.R * sum(_c2(s) for s in self.sizes) + 1
        self.W1 = self.W2 * (max_meet + 1)
        self.Wiso = self.W1 * (max_meet + 1) if self.has_lang else 0
        maxc = max(self.base_pairs.values(), default=0) + self.R + 3
        self.inc = [0] + [self.W1 + (self.W2 if c >= 2 else 0) for c in range(1, maxc + 1)]

    # ---------------------------------------------------------------- state

    def new_matrix(self) -> list:
        n = self.n
        if n <= _LIST_ROWS_MAX:
            m: list = [[0] * n for _ in range(n)]
        else:
            m = [_Row() for _ in range(n)]
        for (a, b), v in self.base_pairs.items():
            m[a][b] = v
            m[b][a] = v
        return m

    def new_visits(self) -> list[dict[int, int] | None]:
        return [dict(v) if self.movable[i] else None for i, v in enumerate(self.visits)]

    def iso_count(self, members: Sequence[int]) -> int:
        lang = self.lang
        bad = 0
        for x in members:
            lx = lang[x]
            if lx and all(lx.isdisjoint(lang[c]) for c in members if c != x):
                bad += 1
        return bad

    # ---------------------------------------------------------------- greedy

    def greedy_round(self, m: list, vis: list, rng: random.Random) -> list[list[int]]:
        """Seat one round greedily on top of the counts in ``m``/``vis`` (which are not updated)."""
        n, T, q, rem = self.n, self.T, self.q, self.rem
        inc = self.inc
        tabs: list[list[int]] = [[] for _ in range(T)]
        big_used = 0
        for p, t in self.station.items():
            tabs[t].append(p)
        for t in range(T):
            if rem and len(tabs[t]) == q + 1:
                big_used += 1
        movers = [i for i in range(n) if self.movable[i]]
        rng.shuffle(movers)
        dict_rows = n > _LIST_ROWS_MAX
        if dict_rows:
            acq = {p: [c for c, v in m[p].items() if v > 0] for p in movers}
            movers.sort(key=lambda p: -len(acq[p]))
        else:
            deg = {p: sum(1 for v in m[p] if v > 0) for p in movers}
            movers.sort(key=lambda p: -deg[p])
        has_lang = self.has_lang
        lang = self.lang
        Wiso = self.Wiso
        Wrev = self.Wrev
        where = [-1] * n
        for p, t in self.station.items():
            where[p] = t
        open_list = [t for t in range(T) if len(tabs[t]) < q or (rem and len(tabs[t]) == q)]

        def is_open(t: int) -> bool:
            k = len(tabs[t])
            return k < q or (k == q and big_used < rem)

        for p in movers:
            mp = m[p]
            vp = vis[p]
            choice = -1
            if dict_rows:
                bad = {where[c] for c in acq[p]}
                bad.update(vp)
                bad.discard(-1)
                # Scan open tables from a random offset for a free one.
                L = len(open_list)
                start = int(rng.random() * L)
                i = 0
                while i < L:
                    t = open_list[(start + i) % L]
                    i += 1
                    if not is_open(t):
                        continue
                    if t in bad:
                        continue
                    if has_lang and lang[p] and tabs[t] and all(lang[p].isdisjoint(lang[c]) for c in tabs[t]):
                        continue
                    choice = t
                    break
            if choice < 0:
                best = None
                ties = 0
                for t in open_list:
                    if not is_open(t):
                        continue
                    members = tabs[t]
                    cost = 0
                    for c in members:
                        cost += inc[mp[c]]
                    if vp.get(t, 0):
                        cost += Wrev
                    if has_lang and lang[p] and members and all(lang[p].isdisjoint(lang[c]) for c in members):
                        cost += Wiso
                    # prefer emptier tables on ties (keeps options open)
                    key = (cost, len(members))
                    if best is None or key < best:
                        best, choice, ties = key, t, 1
                    elif key == best:
                        ties += 1
                        if rng.randrange(ties) == 0:
                            choice = t
            t = choice
            was_q = len(tabs[t]) == q
            if was_q and rem:
                big_used += 1
            tabs[t].append(p)
            where[p] = t
            if was_q and rem and big_used >= rem:
                open_list = [x for x in open_list if is_open(x)]
            elif not is_open(t):
                open_list.remove(t)
        return tabs

    def greedy_schedule(self, prefix: list[list[list[int]]], rounds: int, rng: random.Random
                        ) -> list[list[list[int]]]:
        """Keep ``prefix`` rounds, then seat greedily up to ``rounds`` rounds."""
        m = self.new_matrix()
        vis = self.new_visits()
        out = [[list(t) for t in rnd] for rnd in prefix[:rounds]]
        for rnd in out:
            self._add_round(m, vis, rnd)
        while len(out) < rounds:
            rnd = self.greedy_round(m, vis, rng)
            out.append(rnd)
            if len(out) < rounds:
                self._add_round(m, vis, rnd)
        return out

    def _add_round(self, m: list, vis: list, rnd: Sequence[Sequence[int]]) -> None:
        for t, members in enumerate(rnd):
            for i, a in enumerate(members):
                va = vis[a]
                if va is not None:
                    va[t] = va.get(t, 0) + 1
                ma = m[a]
                for b in members[i + 1:]:
                    ma[b] += 1
                    m[b][a] += 1

    def relabel(self, rounds: list[list[list[int]]], passes: int = 3) -> list[list[list[int]]]:
        """Renumber the tables of each round (those without hosts or fixed people) to cut revisits; who
        sits with whom is unchanged."""
        T = self.T
        if T < 2 or T > 120 or not rounds:
            return rounds
        rounds = [[list(t) for t in rnd] for rnd in rounds]
        fixed_tables = set(self.station.values())
        free = [t for t in range(T) if t not in fixed_tables]
        if len(free) < 2:
            return rounds
        movable = self.movable
        vis: list[dict[int, int]] = [dict(v) for v in self.visits]
        for rnd in rounds:
            for t, members in enumerate(rnd):
                for p in members:
                    vis[p][t] = vis[p].get(t, 0) + 1
        for _ in range(passes):
            changed = False
            for rnd in rounds:
                # cost[x][l]: movers of the group now at table x who sat at table l in another round
                cost = {}
                for x in free:
                    row = {}
                    for label in free:
                        c = 0
                        for p in rnd[x]:
                            if movable[p]:
                                v = vis[p].get(label, 0) - (1 if label == x else 0)
                                if v > 0:
                                    c += 1
                        row[label] = c
                    cost[x] = row
                # assignment group x -> label, improved by pairwise exchanges
                label_of = {x: x for x in free}
                improved = True
                while improved:
                    improved = False
                    for i, x in enumerate(free):
                        for y in free[i + 1:]:
                            lx, ly = label_of[x], label_of[y]
                            if cost[x][ly] + cost[y][lx] < cost[x][lx] + cost[y][ly]:
                                label_of[x], label_of[y] = ly, lx
                                improved = True
                if any(label_of[x] != x for x in free):
                    changed = True
                    old = {x: rnd[x] for x in free}
                    for x in free:
                        for p in old[x]:
                            vis[p][x] -= 1
                    for x in free:
                        rnd[label_of[x]] = old[x]
                        for p in old[x]:
                            vis[p][label_of[x]] = vis[p].get(label_of[x], 0) + 1
            if not changed:
                break
        return rounds

    # ---------------------------------------------------------------- evaluation

    def evaluate(self, rounds: Sequence[Sequence[Sequence[int]]]) -> int:
        """Weighted cost of the planned rounds on top of the history."""
        pairs: dict[tuple[int, int], int] = {}
        base = self.base_pairs
        vis: dict[tuple[int, int], int] = {}
        inc = self.inc
        cost = 0
        for rnd in rounds:
            for t, members in enumerate(rnd):
                for i, a in enumerate(members):
                    if self.movable[a]:
                        v = vis.get((a, t))
                        if v is None:
                            v = self.visits[a].get(t, 0)
                        if v:
                            cost += self.Wrev
                        vis[(a, t)] = v + 1
                    for b in members[i + 1:]:
                        key = (a, b) if a < b else (b, a)
                        c = pairs.get(key)
                        if c is None:
                            c = base.get(key, 0)
                        cost += inc[c]
                        pairs[key] = c + 1
                if self.has_lang:
                    cost += self.Wiso * self.iso_count(members)
        return cost

    def _avail_new(self) -> list[int]:
        """Per person: the present people they could still meet for the first time (not met in the
        history; for people who never move, not those who never move at another table)."""
        cached = getattr(self, "_avail_cache", None)
        if cached is not None:
            return cached
        n, T = self.n, self.T
        station = self.station
        st_count = [0] * T
        for t in station.values():
            st_count[t] += 1
        n_st = sum(st_count)
        met = [0] * n
        met_st_other = [0] * n
        for (a, b), v in self.base_pairs.items():
            if v <= 0:
                continue
            met[a] += 1
            met[b] += 1
            ta, tb = station.get(a), station.get(b)
            if ta is not None and tb is not None and ta != tb:
                met_st_other[a] += 1
                met_st_other[b] += 1
        avail = []
        for p in range(n):
            a = n - 1 - met[p]
            t = station.get(p)
            if t is not None:
                a -= (n_st - st_count[t]) - met_st_other[p]
            avail.append(max(0, a))
        self._avail_cache = avail
        return avail

    def history_excess_lb(self, rounds: int) -> int:
        """Excess degree with history: over ``rounds`` rounds each person meets at least
        ``rounds * (smallest table - 1)`` people but only ``avail`` of them for the first time; every
        other meeting is a repeat, counted once from each side."""
        if not self.hist or not self.n:
            return 0
        smin = self.sizes[-1]
        need = rounds * (smin - 1)
        total = sum(max(0, need - a) for a in self._avail_new())
        return -(-total // 2)

    def target_cost(self, rounds: int | None = None) -> tuple[int, int]:
        """(weighted lower bound on the cost, lower bound on repeats) of the planned rounds (of
        ``rounds`` rounds instead of ``self.R`` when given)."""
        n, T = self.n, self.T
        R = self.R if rounds is None else max(1, int(rounds))
        st = [0] * T
        for t in self.station.values():
            st[t] += 1
        if not self.hist:
            lb = _schedule_lb(n, T, R, st)
        else:
            forced = 0
            by_t: dict[int, list[int]] = defaultdict(list)
            for p, t in self.station.items():
                by_t[t].append(p)
            for members in by_t.values():
                for i, a in enumerate(members):
                    for b in members[i + 1:]:
                        if self.base_pairs.get((min(a, b), max(a, b)), 0):
                            forced += 1
            per_round = _round_lb(self.hist, list(range(n)), self.sizes, forced)
            lb = max(R * per_round, _schedule_lb(n, T, R, st), self.history_excess_lb(R))
        lb3 = 0
        if not self.hist:
            meetings = R * sum(_c2(s) for s in self.sizes)
            lb3 = max(0, meetings - 2 * _c2(n))
        lbrev = 0
        for p in range(n):
            if self.movable[p]:
                lbrev += max(0, R - (T - sum(1 for t in self.visits[p] if t < T)))
        lbiso = 0
        if self.has_lang:
            for i in range(n):
                if self.lang[i] and not any(self.lang[i] & self.lang[j] for j in range(n) if j != i):
                    lbiso += R
        return lbiso * self.Wiso + lb * self.W1 + lb3 * self.W2 + lbrev, lb

    # ---------------------------------------------------------------- report

    def report(self, rounds: Sequence[Sequence[Sequence[int]]]) -> list[RoundPlan]:
        ids = self.ids
        pairs = dict(self.base_pairs)
        prev = [[list(t) for t in rnd] for rnd in self.hist]
        vis = [dict(v) for v in self.visits]
        plans: list[RoundPlan] = []
        host_first = self.host_idx
        avail = list(self._avail_new())
        for rnd in rounds:
            rep = third = rev = iso = 0
            forced = 0
            by_t: dict[int, list[int]] = defaultdict(list)
            for p, t in self.station.items():
                by_t[t].append(p)
            for members in by_t.values():
                for i, a in enumerate(members):
                    for b in members[i + 1:]:
                        if pairs.get((min(a, b), max(a, b)), 0):
                            forced += 1
            lb = _round_lb(prev, list(range(self.n)), [len(t) for t in rnd], forced)
            smin = min((len(t) for t in rnd), default=0)
            if smin > 1:
                lb = max(lb, -(-sum(max(0, smin - 1 - a) for a in avail) // 2))
            for t, members in enumerate(rnd):
                for i, a in enumerate(members):
                    if self.movable[a]:
                        if vis[a].get(t, 0):
                            rev += 1
                        vis[a][t] = vis[a].get(t, 0) + 1
                    for b in members[i + 1:]:
                        key = (a, b) if a < b else (b, a)
                        c = pairs.get(key, 0)
                        if c >= 1:
                            rep += 1
                        else:
                            avail[a] -= 1
                            avail[b] -= 1
                        if c >= 2:
                            third += 1
                        pairs[key] = c + 1
                if self.has_lang:
                    iso += self.iso_count(members)
            prev.append([list(t) for t in rnd])
            tables = []
            for members in rnd:
                hosts_here = sorted(ids[p] for p in members if p in host_first)
                tables.append(hosts_here + sorted(ids[p] for p in members if p not in host_first))
            plans.append(RoundPlan(tables=tables, repeats=rep, third_meetings=third, revisits=rev,
                                   lower_bound=lb, language_isolated=iso, warnings=list(self.warnings)))
        return plans


class _Search:
    """Tabu search on swaps (and single moves when sizes are uneven) over all planned rounds."""

    def __init__(self, ctx: _Context, rounds: list[list[list[int]]], rng: random.Random) -> None:
        self.ctx = ctx
        self.rng = rng
        self.sample = 64
        self.tenure = 4
        self.tenure_spread = 8
        self.stall = 400 + 20 * ctx.n
        self.load(rounds)

    def load(self, rounds: list[list[list[int]]]) -> None:
        ctx = self.ctx
        self.tabs = [[list(t) for t in rnd] for rnd in rounds]
        self.m = ctx.new_matrix()
        self.vis = ctx.new_visits()
        self.pos = []
        for rnd in self.tabs:
            pos = [-1] * ctx.n
            for t, members in enumerate(rnd):
                for p in members:
                    pos[p] = t
            self.pos.append(pos)
            ctx._add_round(self.m, self.vis, rnd)
        self.cost = ctx.evaluate(self.tabs)

    def snapshot(self) -> list[list[list[int]]]:
        return [[list(t) for t in rnd] for rnd in self.tabs]

    def is_conflicted(self, r: int, p: int) -> bool:
        t = self.pos[r][p]
        members = self.tabs[r][t]
        mp = self.m[p]
        if any(mp[c] >= 2 for c in members if c != p):
            return True
        if self.ctx.Wrev and self.vis[p].get(t, 0) >= 2:
            return True
        return self.ctx.has_lang and self.ctx.iso_count(members) > 0

    def conflicts(self) -> list[tuple[int, int]]:
        ctx = self.ctx
        movable = ctx.movable
        out = []
        for r, rnd in enumerate(self.tabs):
            for t, members in enumerate(rnd):
                iso_bad = ctx.has_lang and ctx.iso_count(members) > 0
                for p in members:
                    if not movable[p]:
                        continue
                    mp = self.m[p]
                    if (ctx.Wrev and self.vis[p].get(t, 0) >= 2) or any(mp[c] >= 2 for c in members if c != p):
                        out.append((r, p))
                    elif iso_bad:
                        out.append((r, p))
        return out

    def delta_swap(self, r: int, p: int, qq: int) -> int:
        ctx = self.ctx
        inc = ctx.inc
        A, B = self.pos[r][p], self.pos[r][qq]
        tabA, tabB = self.tabs[r][A], self.tabs[r][B]
        mp, mq = self.m[p], self.m[qq]
        d = 0
        for c in tabA:
            if c != p:
                d += inc[mq[c]] - inc[mp[c] - 1]
        for c in tabB:
            if c != qq:
                d += inc[mp[c]] - inc[mq[c] - 1]
        for x, fr, to in ((p, A, B), (qq, B, A)):
            vx = self.vis[x]
            if vx is not None:
                d += ctx.Wrev * ((1 if vx.get(to, 0) >= 1 else 0) - (1 if vx.get(fr, 0) >= 2 else 0))
        if ctx.has_lang:
            na = [c for c in tabA if c != p] + [qq]
            nb = [c for c in tabB if c != qq] + [p]
            d += ctx.Wiso * (ctx.iso_count(na) + ctx.iso_count(nb) - ctx.iso_count(tabA) - ctx.iso_count(tabB))
        return d

    def apply_swap(self, r: int, p: int, qq: int, d: int) -> None:
        pos = self.pos[r]
        A, B = pos[p], pos[qq]
        tabA, tabB = self.tabs[r][A], self.tabs[r][B]
        m = self.m
        mp, mq = m[p], m[qq]
        for c in tabA:
            if c != p:
                mc = m[c]
                mp[c] -= 1
                mc[p] -= 1
                mq[c] += 1
                mc[qq] += 1
        for c in tabB:
            if c != qq:
                mc = m[c]
                mq[c] -= 1
                mc[qq] -= 1
                mp[c] += 1
                mc[p] += 1
        tabA[tabA.index(p)] = qq
        tabB[tabB.index(qq)] = p
        pos[p], pos[qq] = B, A
        for x, fr, to in ((p, A, B), (qq, B, A)):
            vx = self.vis[x]
            if vx is not None:
                vx[fr] -= 1
                vx[to] = vx.get(to, 0) + 1
        self.cost += d

    def delta_move(self, r: int, p: int, B: int) -> int:
        ctx = self.ctx
        inc = ctx.inc
        A = self.pos[r][p]
        tabA, tabB = self.tabs[r][A], self.tabs[r][B]
        mp = self.m[p]
        d = 0
        for c in tabA:
            if c != p:
                d -= inc[mp[c] - 1]
        for c in tabB:
            d += inc[mp[c]]
        vx = self.vis[p]
        d += ctx.Wrev * ((1 if vx.get(B, 0) >= 1 else 0) - (1 if vx.get(A, 0) >= 2 else 0))
        if ctx.has_lang:
            na = [c for c in tabA if c != p]
            nb = tabB + [p]
            d += ctx.Wiso * (ctx.iso_count(na) + ctx.iso_count(nb) - ctx.iso_count(tabA) - ctx.iso_count(tabB))
        return d

    def apply_move(self, r: int, p: int, B: int, d: int) -> None:
        pos = self.pos[r]
        A = pos[p]
        tabA, tabB = self.tabs[r][A], self.tabs[r][B]
        m = self.m
        mp = m[p]
        for c in tabA:
            if c != p:
                mp[c] -= 1
                m[c][p] -= 1
        for c in tabB:
            mp[c] += 1
            m[c][p] += 1
        tabA.remove(p)
        tabB.append(p)
        pos[p] = B
        vx = self.vis[p]
        vx[A] -= 1
        vx[B] = vx.get(B, 0) + 1
        self.cost += d

    def run(self, target: int, deadline: float, max_work: int) -> tuple[list[list[list[int]]], int]:
        ctx = self.ctx
        rng = self.rng
        inc = ctx.inc
        T, q, rem = ctx.T, ctx.q, ctx.rem
        movable = ctx.movable
        has_lang = ctx.has_lang
        Wrev = ctx.Wrev
        best_cost = self.cost
        best = self.snapshot()
        if best_cost <= target:
            return best, best_cost
        tabu: dict[tuple[int, int, int], int] = {}
        it = 0
        last_improve = 0
        conflicts = self.conflicts()
        stall = self.stall
        perturbations = 0
        K = self.sample
        small = len(self.tabs) * ctx.n <= 2000
        unit = ctx.n + ctx.T + (4 * ctx.n if has_lang else 0)
        work = 0
        while work < max_work:
            it += 1
            if (it & 31) == 0 and time.perf_counter() > deadline:
                break
            if small or it % 20 == 0:
                conflicts = self.conflicts()
            picks: list[tuple[int, int]] = []
            tries = 0
            while len(picks) < K and tries < 3 * K:
                tries += 1
                if not conflicts:
                    break
                j = rng.randrange(len(conflicts))
                r, p = conflicts[j]
                if self.is_conflicted(r, p):
                    if (r, p) not in picks:
                        picks.append((r, p))
                else:
                    conflicts[j] = conflicts[-1]
                    conflicts.pop()
            if not picks:
                conflicts = self.conflicts()
                if not conflicts:
                    break
                continue
            work += len(picks) * unit
            best_d = None
            best_mv: tuple[int, int, int, int] | None = None
            ties = 0
            cost_now = self.cost
            m = self.m
            for r, p in picks:
                pos = self.pos[r]
                tabs_r = self.tabs[r]
                A = pos[p]
                tabA = tabs_r[A]
                mp = m[p]
                vp = self.vis[p]
                leave_p = 0
                for c in tabA:
                    if c != p:
                        leave_p += inc[mp[c] - 1]
                rev_leave = Wrev if vp.get(A, 0) >= 2 else 0
                can_move = rem and len(tabA) == q + 1
                for B in range(T):
                    if B == A:
                        continue
                    tabB = tabs_r[B]
                    join = 0
                    for c in tabB:
                        join += inc[mp[c]]
                    base_p = join - leave_p + (Wrev if vp.get(B, 0) else 0) - rev_leave
                    p_tabu = tabu.get((r, p, B), 0) > it
                    if can_move and len(tabB) == q:
                        d = base_p
                        if has_lang:
                            d = self.delta_move(r, p, B)
                        if not p_tabu or cost_now + d < best_cost:
                            if best_d is None or d < best_d:
                                best_d, best_mv, ties = d, (r, p, B, -1), 1
                            elif d == best_d:
                                ties += 1
                                if rng.randrange(ties) == 0:
                                    best_mv = (r, p, B, -1)
                    for qq in tabB:
                        if not movable[qq]:
                            continue
                        mq = m[qq]
                        d = base_p - inc[mp[qq]]
                        for c in tabA:
                            if c != p:
                                d += inc[mq[c]]
                        for c in tabB:
                            if c != qq:
                                d -= inc[mq[c] - 1]
                        vq = self.vis[qq]
                        d += Wrev * ((1 if vq.get(A, 0) else 0) - (1 if vq.get(B, 0) >= 2 else 0))
                        if has_lang:
                            d = self.delta_swap(r, p, qq)
                        if (p_tabu or tabu.get((r, qq, A), 0) > it) and cost_now + d >= best_cost:
                            continue
                        if best_d is None or d < best_d:
                            best_d, best_mv, ties = d, (r, p, B, qq), 1
                        elif d == best_d:
                            ties += 1
                            if rng.randrange(ties) == 0:
                                best_mv = (r, p, B, qq)
            if best_mv is None:
                continue
            r, p, B, qq = best_mv
            A = self.pos[r][p]
            tenure = self.tenure + rng.randrange(self.tenure_spread)
            tabu[(r, p, A)] = it + tenure
            if qq >= 0:
                tabu[(r, qq, B)] = it + tenure
                self.apply_swap(r, p, qq, best_d)
                conflicts.append((r, qq))
                conflicts.append((r, p))
            else:
                self.apply_move(r, p, B, best_d)
            if self.cost < best_cost:
                best_cost = self.cost
                best = self.snapshot()
                last_improve = it
                if best_cost <= target:
                    break
            elif it - last_improve > stall:
                perturbations += 1
                if perturbations % 4 == 0:
                    self.load(best)
                self._perturb(2 + rng.randrange(3))
                tabu.clear()
                conflicts = self.conflicts()
                last_improve = it
        self.iterations = it
        self.work = work
        return best, best_cost

    def _perturb(self, k: int) -> None:
        ctx = self.ctx
        rng = self.rng
        R = len(self.tabs)
        movers = [i for i in range(ctx.n) if ctx.movable[i]]
        if len(movers) < 2:
            return
        for _ in range(k):
            r = rng.randrange(R)
            p, qq = rng.sample(movers, 2)
            if self.pos[r][p] == self.pos[r][qq]:
                continue
            self.apply_swap(r, p, qq, self.delta_swap(r, p, qq))


def _empty_plans(problem: SeatingProblem, rounds: int) -> list[RoundPlan]:
    T = max(1, int(problem.tables))
    return [RoundPlan(tables=[[] for _ in range(T)], repeats=0, third_meetings=0, revisits=0, lower_bound=0,
                      language_isolated=0, warnings=[]) for _ in range(max(1, rounds))]


_WORK_PER_SECOND = 0.8e6


def _work_budget(time_limit: float) -> int:
    """Deterministic search budget (in candidate evaluations) that normally runs out before
    ``time_limit``: about half of what a typical machine evaluates per second. The search result then
    depends only on the seed; ``time_limit`` still caps the time on a slow or busy machine."""
    return max(20_000, int(time_limit * _WORK_PER_SECOND))


def plan_schedule(problem: SeatingProblem, rounds: int, *, time_limit: float = 0.3) -> list[RoundPlan]:
    """Plan ``rounds`` further rounds after the history for the same participants at once.

    Constructions first (when they apply), then a greedy seating improved by tabu search until a proven
    lower bound, an iteration budget or ``time_limit`` seconds. When some repeats are unavoidable and the
    search has not reached their bound, it also plans (with an extra budget) the longest run of rounds that
    can be free of repeats, extends it round by round from that history (the last rounds then only add
    repeats where they must) and keeps the lexicographically better schedule.
    Each RoundPlan's counts are relative to everything before it (history and the earlier planned
    rounds).
    """
    start = time.perf_counter()
    deadline = start + max(0.0, float(time_limit))
    rounds = max(1, int(rounds))
    if not problem.participants:
        return _empty_plans(problem, rounds)
    ctx, best, _ = _solve(problem, rounds, deadline, _work_budget(time_limit), float(time_limit), extend=True)
    return ctx.report(best)


_EXTEND_WORK_SHARE = 5 / 6  # extra budget for the extension strategy, as a share of the search budget
_PREFIX_WORK_SHARE = 4 / 5  # of that, for planning the repeat-free rounds


def _solve(problem: SeatingProblem, rounds: int, deadline: float, work: int, time_limit: float, *,
           extend: bool, loose: bool = False) -> tuple[_Context, list[list[list[int]]], int]:
    """Plan ``rounds`` rounds (in the indices of the returned context); returns the context, the rounds
    and the search work spent. ``loose``: stop as soon as the repeats and third meetings reach their
    bounds (revisits are left to the caller)."""
    ctx = _Context(problem, rounds)
    rng = ctx.rng
    target, lb_rep = ctx.target_cost()
    if loose:
        lbrev = target % ctx.W2
        target = target - lbrev + ctx.W2 - 1
    candidates: list[list[list[list[int]]]] = []
    movers = [i for i in range(ctx.n) if ctx.movable[i]]
    rng.shuffle(movers)
    if not ctx.hist and rounds > 1:
        built = _cyclic_construction(ctx.n, ctx.T, rounds, ctx.station, movers)
        if built:
            candidates.append(ctx.greedy_schedule(built, rounds, rng) if len(built) < rounds else built)
        if not ctx.station:
            built = _binary_spread_construction(ctx.n, ctx.T, rounds, movers, rng,
                                                min(deadline, time.perf_counter() + 0.2 * time_limit))
            if built:
                candidates.append(ctx.greedy_schedule(built, rounds, rng) if len(built) < rounds else built)
    best, best_cost = None, None
    for cand in candidates:
        cand = ctx.relabel(cand)
        c = ctx.evaluate(cand)
        if best_cost is None or c < best_cost:
            best, best_cost = cand, c
    if best_cost is None or best_cost > target:
        greedy = ctx.relabel(ctx.greedy_schedule([], rounds, rng))
        c = ctx.evaluate(greedy)
        if best_cost is None or c < best_cost:
            best, best_cost = greedy, c
    assert best is not None and best_cost is not None
    used = 0
    # Repeats (or third meetings) above their bound although some are unavoidable: after a first part of
    # the search, also try the longest repeat-free run of rounds extended round by round.
    try_ext = extend and lb_rep > 0 and rounds > 2 and best_cost // ctx.W2 > target // ctx.W2
    if best_cost > target and time.perf_counter() < deadline:
        search = _Search(ctx, best, rng)
        best, best_cost = search.run(target, deadline, work)
        used += search.work
        if best_cost > target:
            best = ctx.relabel(best)
            best_cost = ctx.evaluate(best)
    if try_ext and best_cost // ctx.W2 > target // ctx.W2 and time.perf_counter() < deadline:
        ext_work = int(work * _EXTEND_WORK_SHARE)
        ext, ext_used = _extend_prefix(ctx, problem, rounds, deadline, ext_work, time_limit)
        work = used + ext_work
        used += ext_used
        if ext is not None:
            c = ctx.evaluate(ext)
            if c < best_cost:
                best, best_cost = ext, c
    if try_ext and best_cost > target and time.perf_counter() < deadline and work - used > 0:
        search = _Search(ctx, best, rng)
        best, best_cost = search.run(target, deadline, work - used)
        used += search.work
        if best_cost > target:
            best = ctx.relabel(best)
    return ctx, best, used


def _extend_prefix(ctx: _Context, problem: SeatingProblem, rounds: int, deadline: float, work: int,
                   time_limit: float) -> tuple[list[list[list[int]]] | None, int]:
    """The longest run of rounds that may be free of repeats (its lower bound is 0), planned on its own
    (exactly as ``plan_schedule`` would plan that many rounds), then extended one round at a time from
    that history, each round minimising the repeats it adds (at most half of the ``work`` the prefix
    leaves). Returns the rounds (indices of ``ctx``), or None, and the search work spent."""
    L = 0
    for r in range(rounds - 1, 0, -1):
        if ctx.target_cost(r)[1] == 0:
            L = r
            break
    if L < 2:
        return None, 0
    _, prefix, used = _solve(problem, L, deadline, int(work * _PREFIX_WORK_SHARE), time_limit,
                             extend=False, loose=True)
    ids = ctx.ids
    history = list(problem.history)
    out = [[list(t) for t in rnd] for rnd in prefix]
    history.extend(tuple(tuple(ids[p] for p in t) for t in rnd) for rnd in out)
    left = rounds - L
    per_round = max(1, (work - used) // (2 * left))
    for _ in range(left):
        if time.perf_counter() >= deadline:
            return None, used
        sub = replace(problem, history=tuple(history))
        _, nxt, u = _solve(sub, 1, deadline, per_round, time_limit, extend=False, loose=True)
        used += u
        rnd = [list(t) for t in nxt[0]]
        out.append(rnd)
        history.append(tuple(tuple(ids[p] for p in t) for t in rnd))
    return ctx.relabel(out), used


_LOOKAHEAD_MAX = 400


def plan_round(problem: SeatingProblem, *, time_limit: float = 0.3, rounds_left: int = 1) -> RoundPlan:
    """Seat the next round from the history (greedy + tabu search; milliseconds for a sparse café).

    With ``rounds_left > 1`` (this round and the ones still to come) the planner looks ahead: it plans
    the remaining rounds together and returns the first. When attendance has not changed since the
    history started and the history is exactly the start of the schedule this planner would have made
    (same seed), it continues that schedule, so a café planned round by round still gets the
    zero-repeat constructions. Above 400 people the look-ahead is skipped (sparse, and kept fast).
    """
    rounds_left = max(1, int(rounds_left))
    if len(problem.participants) > _LOOKAHEAD_MAX:
        rounds_left = 1  # large cafés are sparse: one greedy round is already optimal, and fast
    start = time.perf_counter()
    if rounds_left > 1 and problem.history and problem.participants:
        present = set(problem.participants)
        same = all({p for t in rnd for p in t} == present for rnd in problem.history)
        if same:
            k = len(problem.history)
            fresh = plan_schedule(replace(problem, history=()), k + rounds_left, time_limit=time_limit)
            norm = [[sorted(t) for t in rnd] for rnd in problem.history]
            if all([sorted(t) for t in fresh[i].tables] == norm[i] and len(fresh[i].tables) == len(norm[i])
                   for i in range(k)):
                return fresh[k]
    left = max(0.0, time_limit - (time.perf_counter() - start))
    return plan_schedule(problem, rounds_left, time_limit=left)[0]


def problem_lower_bound(problem: SeatingProblem, rounds: int) -> int:
    """Proven lower bound on the repeats that ``rounds`` further rounds of ``problem`` add to its history."""
    if not problem.participants:
        return 0
    return _Context(problem, rounds).target_cost()[1]
