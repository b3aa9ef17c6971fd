"""Process settings for serving: the garbage collector held off during a burst of work."""
from __future__ import annotations

import gc
from typing import Any, Callable, Iterator

import pytest

from cafe.serving import collections_deferred


@pytest.fixture(autouse=True)
def _collector_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


class Later:
    """A spawn that keeps the task, to run it when the test says (as the server runs it after the writers)."""

    def __init__(self) -> None:
        self.tasks: list[Callable[[], None]] = []

    def __call__(self, fn: Callable[[], None]) -> Any:
        self.tasks.append(fn)

    def run(self) -> None:
        tasks, self.tasks = self.tasks, []
        for fn in tasks:
            fn()


def test_collection_is_off_during_the_burst_and_back_on_only_once_the_spawned_task_runs() -> None:
    gc.enable()
    later = Later()
    with collections_deferred(later):
        assert not gc.isenabled()
    assert not gc.isenabled() and len(later.tasks) == 1      # not yet: the burst's writers go first
    later.run()
    assert gc.isenabled()


def test_an_overlapping_burst_leaves_turning_it_back_on_to_the_first() -> None:
    gc.enable()
    later = Later()
    with collections_deferred(later):
        with collections_deferred(later):
            pass
        assert later.tasks == [] and not gc.isenabled()
    later.run()
    assert gc.isenabled()


def test_a_process_running_without_collection_is_left_so() -> None:
    gc.disable()
    later = Later()
    with collections_deferred(later):
        pass
    later.run()
    assert later.tasks == [] and not gc.isenabled()


def test_a_failing_burst_still_turns_it_back_on() -> None:
    gc.enable()
    later = Later()
    with pytest.raises(RuntimeError):
        with collections_deferred(later):
            raise RuntimeError("the round could not start")
    later.run()
    assert gc.isenabled()


def test_if_no_task_can_be_started_collection_comes_back_at_once() -> None:
    gc.enable()

    def broken(_fn: Callable[[], None]) -> None:
        raise RuntimeError("no more tasks")

    with pytest.raises(RuntimeError):
        with collections_deferred(broken):
            pass
    assert gc.isenabled()
