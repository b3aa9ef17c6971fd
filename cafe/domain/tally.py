"""Votes -> ranked priorities. Pure: no I/O.

Each participant spends a budget of dots on themes. Closing the vote ranks the themes by dots; ties are
broken by how many tables raised the theme, then by how many notes it holds (a pattern across the room
outranks a voice from one table when the room's dots are equal).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MIN_BUDGET = 1
MAX_BUDGET = 10


class VoteError(ValueError):
    """An allocation that breaks the café's voting rules; ``code`` is stable; ``template`` % ``params`` is
    the message (kept apart so that it can be translated)."""

    def __init__(self, code: str, message: str, **params: int) -> None:
        self.template = message
        self.params = params
        self.message = message % params if params else message
        super().__init__(self.message)
        self.code = code


def check_allocation(allocation: Mapping[int, int], *, budget: int, allow_stacking: bool,
                     theme_ids: set[int]) -> dict[int, int]:
    """Validate one participant's whole allocation (theme id -> dots) and return it without zeros."""
    cleaned: dict[int, int] = {}
    for theme_id, dots in allocation.items():
        if theme_id not in theme_ids:
            raise VoteError("not_found", "One of those themes is not on the ballot.")
        if dots < 0:
            raise VoteError("out_of_range", "Dots cannot be negative.")
        if dots > 1 and not allow_stacking:
            raise VoteError("no_stacking", "In this café each theme can get at most one of your dots.")
        if dots:
            cleaned[theme_id] = dots
    spent = sum(cleaned.values())
    if spent > budget:
        raise VoteError("over_budget", "That is %(spent)s dots; you have %(budget)s to give.", spent=spent, budget=budget)
    return cleaned


@dataclass(frozen=True)
class ThemeScore:
    theme_id: int
    dots: int
    tables: int
    notes: int
    voters: int = 0


@dataclass(frozen=True)
class Priority:
    rank: int                 # 1 = the room's top priority; equal scores share a rank
    theme_id: int
    dots: int
    tables: int
    notes: int
    voters: int
    tied: bool                # shares its rank with another theme


def rank(scores: list[ThemeScore]) -> list[Priority]:
    """Rank by dots, then tables, then notes; themes equal on all three share a rank (theme id orders them)."""
    ordered = sorted(scores, key=lambda s: (-s.dots, -s.tables, -s.notes, s.theme_id))
    keys = [(s.dots, s.tables, s.notes) for s in ordered]
    result: list[Priority] = []
    current_rank = 0
    for index, score in enumerate(ordered):
        if index == 0 or keys[index] != keys[index - 1]:
            current_rank = index + 1
        tied = (index > 0 and keys[index] == keys[index - 1]) or (index + 1 < len(keys) and keys[index] == keys[index + 1])
        result.append(Priority(current_rank, score.theme_id, score.dots, score.tables, score.notes, score.voters, tied))
    return result


def totals(allocations: list[Mapping[int, int]]) -> dict[int, tuple[int, int]]:
    """Theme id -> (dots, voters) over all participants' allocations."""
    out: dict[int, list[int]] = {}
    for allocation in allocations:
        for theme_id, dots in allocation.items():
            if dots > 0:
                entry = out.setdefault(theme_id, [0, 0])
                entry[0] += dots
                entry[1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}
