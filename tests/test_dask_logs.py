"""Per-task logs on Dask workers: captured on the worker, sent back with the result.

One LocalCluster for the module: a single worker process on loopback with two threads, so
two tasks run at once *in the same process*, which is where their lines could mix.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

distributed = pytest.importorskip(
    "distributed", reason="dask.distributed is not installed: pip install 'nbflow[dask]'"
)

import nbflow as nf  # noqa: E402
from nbflow.dask import DaskExecutor  # noqa: E402
from nbflow.logs import LogCapture  # noqa: E402

pytestmark = [pytest.mark.dask, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def executor() -> Iterator[DaskExecutor]:
    cluster = distributed.LocalCluster(
        n_workers=1,
        processes=True,
        threads_per_worker=2,
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = distributed.Client(cluster, set_as_default=False)
    yield DaskExecutor(client=client)
    client.close()
    cluster.close()


def meet(folder: Path, me: str, other: str) -> None:
    """Say ``me`` started, then wait (at most 30 s) until ``other`` did too."""
    (folder / me).touch()
    deadline = time.monotonic() + 30
    while not (folder / other).exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def talk(me: str, lines: int) -> int:
    for i in range(lines):
        print(f"{me} {i}")
        logging.getLogger("user").warning("%s warns %d", me, i)
        if i % 10 == 0:
            time.sleep(0.002)  # let the other thread write too
    return lines


def test_two_concurrent_tasks_on_one_worker_keep_their_own_logs(executor, tmp_path):
    flow = nf.Flow("dask-mix", store=None, executor=executor, logs=LogCapture(echo=False))

    @flow.task
    def one() -> Any:
        import os

        meet(tmp_path, "one", "two")
        talk("one", 40)
        return os.getpid()

    @flow.task
    def two() -> Any:
        import os

        meet(tmp_path, "two", "one")
        talk("two", 40)
        return os.getpid()

    run = flow.run()
    assert run.status == "succeeded", run.errors
    pids = {name: run.results[name] for name in ("one", "two")}
    assert pids["one"] == pids["two"]  # one worker process, two threads at once
    for me in ("one", "two"):
        frame = run.logs(me)
        prints = frame[frame["level"] == "stdout"]["message"].tolist()
        warns = frame[frame["level"] == "WARNING"]["message"].tolist()
        assert prints == [f"{me} {i}" for i in range(40)]
        assert warns == [f"{me} warns {i}" for i in range(40)]
        assert frame["attempt"].tolist() == [1] * 80
    # The lines' times are the worker's, on the run's clock: within the run.
    times = run.logs()["time"]
    timeline = run.timeline()
    assert times.min() >= timeline["start"].min() - pd.Timedelta(seconds=1)
    assert times.max() <= timeline["end"].max() + pd.Timedelta(seconds=1)


def test_context_log_progress_and_failures_on_a_worker(executor):
    flow = nf.Flow("dask-context", store=None, executor=executor, logs=LogCapture(echo=False))

    @flow.task
    async def counted() -> str:
        ctx = nf.context()
        ctx.log.info("run %s task %s attempt %d", ctx.run_id[:8], ctx.task, ctx.attempt)
        for _ in nf.track(range(3)):
            await asyncio.sleep(0.01)
        return ctx.run_id

    @flow.task(retry=nf.Retry(max_retries=1, delay=0))
    def failing() -> None:
        print("about to fail")
        raise ValueError("bad input")

    run = flow.run(on_error="continue")
    assert run.states == {"counted": "succeeded", "failing": "failed"}
    [line] = run.logs("counted")["message"]
    assert line == f"run {run.run_id[:8]} task counted attempt 1"
    assert run.state.progress["counted"] == (1, 3, 3)
    frame = run.logs("failing")
    assert list(zip(frame["attempt"], frame["message"], strict=True)) == [
        (1, "about to fail"),
        (2, "about to fail"),
    ]


def test_the_cap_applies_on_the_worker(executor):
    flow = nf.Flow(
        "dask-cap", store=None, executor=executor, logs=LogCapture(head=5, tail=3, echo=False)
    )

    @flow.task
    def chatty() -> None:
        for i in range(10_000):
            print("line", i)

    run = flow.run()
    messages = run.logs("chatty")["message"].tolist()
    assert messages[:5] == [f"line {i}" for i in range(5)]
    assert messages[5].startswith("… 9,992 lines not kept")
    assert messages[6:] == ["line 9997", "line 9998", "line 9999"]


def test_no_capture_asked_nothing_sent(executor):
    flow = nf.Flow("dask-off", store=None, executor=executor, logs=False)

    @flow.task
    def quiet() -> int:
        print("to the worker's own stdout")
        return 1

    run = flow.run()
    assert run.results["quiet"] == 1 and run.logs().empty


def test_a_loops_iterations_keep_their_own_lines_on_a_worker(executor):
    flow = nf.Flow("dask-loop", store=None, executor=executor, logs=LogCapture(echo=False))

    @flow.loop(until="result >= 2", max_iterations=3, retry=nf.Retry(max_retries=1, delay=0))
    def refine(previous=None):
        ctx = nf.context()  # the worker's: it knows the iteration too
        print(f"iteration {ctx.iteration} attempt {ctx.attempt}")
        if ctx.iteration == 2 and ctx.attempt == 1:
            raise ConnectionError("flaky")
        return (previous or 0) + 1

    run = flow.run()
    assert run.status == "succeeded", run.errors
    frame = run.logs()
    assert list(zip(frame["task"], frame["attempt"], frame["message"], strict=True)) == [
        ("refine", 1, "iteration 1 attempt 1"),
        ("refine#2", 1, "iteration 2 attempt 1"),
        ("refine#2", 2, "iteration 2 attempt 2"),
    ]
