"""A sync task's attempt rows (timeline, ``run.attempts``) start when its body began in a
thread, not when it was queued for one: with fewer threads than calls in flight, the wait
for a thread is not the attempt's time."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

import nbflow as nf
from nbflow.executors import LocalExecutor

PAUSE = 0.05  # time.sleep never returns early: a lower bound, never an upper one


def _one_after_another(starts: list[float]) -> bool:
    """Each start at least PAUSE after the one before (less a rounding of the run clock)."""
    return all(b - a >= PAUSE - 1e-6 for a, b in itertools.pairwise(sorted(starts)))


@pytest.fixture
def one_thread() -> Iterator[LocalExecutor]:
    """An executor with one worker thread (the caller's: closed here, not by the runs)."""
    executor = LocalExecutor(threads=1)
    yield executor
    executor.close()


def test_sync_tasks_waiting_for_the_one_thread_start_their_rows_when_their_body_began(
    one_thread: LocalExecutor,
):
    flow = nf.Flow("queued-sync", store=None, executor=one_thread, max_workers=3)
    for i in range(3):
        flow.task(name=f"t{i}")(lambda: time.sleep(PAUSE))
    run = flow.run()
    starts = [row.start for row in run.state.rows]
    # One thread: each body began after the one before it ended (at least PAUSE later).
    # Rows that began when the tasks were placed would all start together.
    assert len(starts) == 3 and _one_after_another(starts)


def test_fan_out_elements_waiting_for_a_thread_start_their_rows_when_their_body_began(
    one_thread: LocalExecutor,
):
    flow = nf.Flow("queued-elements", store=None, executor=one_thread)

    @flow.task(fan_out="xs")
    def each(xs):
        time.sleep(PAUSE)
        return xs

    run = flow.run(variables={"xs": [1, 2, 3]})
    assert run.results["each"] == [1, 2, 3]
    starts = [row.start for row in run.state.rows if row.element is not None]
    assert len(starts) == 3 and _one_after_another(starts)


def test_failed_and_retried_attempts_start_their_rows_when_their_body_began(
    one_thread: LocalExecutor,
):
    flow = nf.Flow("queued-retries", store=None, executor=one_thread, max_workers=2)
    flow.task(name="busy")(lambda: time.sleep(3 * PAUSE))
    tries: list[int] = []

    @flow.task(retry=nf.Retry(max_retries=1, delay=0))
    def flaky():
        tries.append(1)
        time.sleep(PAUSE)
        raise ValueError("no")

    run = flow.run()
    rows = {(row.task, row.attempt): row for row in run.state.rows}
    assert run.states["flaky"] == "failed" and len(tries) == 2
    busy, first, second = rows["busy", 1], rows["flaky", 1], rows["flaky", 2]
    # Whichever body the thread ran first, the other's row starts after it ended.
    assert first.status == second.status == "failed"
    assert _one_after_another([first.start, second.start])
    assert _one_after_another([first.start, busy.start])
