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


@pytest.mark.parametrize("entry", ["wsgi", "cafe.gunicorn_conf"])
def test_gevent_serving_does_not_record_every_greenlet_s_spawning_stack(entry: str, tmp_path: Any) -> None:
    """Under gevent each greenlet would keep up to 10 records of the stack that spawned it, for the cyclic
    collector to walk; a message to a phone starts one (its writer). Both entry points turn that off."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "GEVENT_TRACK_GREENLET_TREE"}
    env.update(CAFE_SERVER="gevent", DATABASE_URL=f"sqlite:///{tmp_path}/cafe.db",
               CAFE_INSTANCE_DIR=str(tmp_path / "instance"))
    code = (f"import {entry}, gevent; "
            "print(gevent.config.track_greenlet_tree, gevent.spawn(lambda: None).spawning_stack)")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["False", "None"]
