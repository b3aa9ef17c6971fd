"""Round clock math: table-driven and property tests."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cafe.domain.clock import RoundClock


def test_countdown_pause_resume_extend() -> None:
    clock = RoundClock(started_at=1000.0, duration=600.0)
    assert clock.ends_at(1000.0) == 1600.0
    assert clock.remaining(1100.0) == 500.0
    paused = clock.pause(1100.0)
    assert paused.paused and paused.remaining(1400.0) == 500.0        # frozen while paused
    resumed = paused.resume(1400.0)
    assert not resumed.paused and resumed.ends_at(1400.0) == 1900.0 and resumed.remaining(1400.0) == 500.0
    longer = resumed.extend(60, 1500.0)
    assert longer.ends_at(1500.0) == 1960.0
    shorter = longer.extend(-60, 1500.0)
    assert shorter.ends_at(1500.0) == 1900.0


def test_time_up_and_extend_after_time_up_counts_from_now() -> None:
    clock = RoundClock(started_at=0.0, duration=60.0)
    assert clock.time_up(61.0) and clock.remaining(61.0) == 0.0
    extended = clock.extend(120, 100.0)
    assert extended.remaining(100.0) == 120.0


def test_pause_when_already_paused_or_over_changes_nothing() -> None:
    clock = RoundClock(started_at=0.0, duration=60.0).pause(10.0)
    assert clock.pause(20.0) == clock
    over = RoundClock(started_at=0.0, duration=60.0)
    assert over.pause(100.0) == over
    assert over.resume(100.0) == over


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["pause", "resume", "extend"]), st.floats(0, 300),
                          st.integers(-100, 600)), max_size=12))
def test_remaining_never_negative_and_frozen_while_paused(steps: list[tuple[str, float, int]]) -> None:
    now = 0.0
    clock = RoundClock(started_at=0.0, duration=600.0)
    for action, wait, seconds in steps:
        now += wait
        if action == "pause":
            clock = clock.pause(now)
        elif action == "resume":
            clock = clock.resume(now)
        elif seconds > 0:
            clock = clock.extend(seconds, now)
        assert clock.remaining(now) >= 0
        if clock.paused:
            assert clock.remaining(now) == clock.remaining(now + 1000)
