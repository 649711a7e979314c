"""Middleware: onion order, run vs task, built-ins, and middleware that raises."""

from __future__ import annotations

import logging

import pytest

import nbflow as nf


def _flow():
    flow = nf.Flow("mw", store=None)

    @flow.task
    def a():
        return 1

    @flow.task
    def b(a):
        return a + 1

    return flow


def test_onion_order_around_runs_and_tasks():
    flow = _flow()
    calls = []

    def tracer(label):
        async def mw(ctx, call_next):
            calls.append(f"{label}>{ctx.kind}:{ctx.task or ''}")
            result = await call_next()
            calls.append(f"{label}<{ctx.kind}:{ctx.task or ''}")
            return result

        return mw

    flow.use(tracer("outer"))
    flow.use(tracer("inner"))
    flow.run()
    assert calls == [
        "outer>run:",
        "inner>run:",
        "outer>task:a",
        "inner>task:a",
        "inner<task:a",
        "outer<task:a",
        "outer>task:b",
        "inner>task:b",
        "inner<task:b",
        "outer<task:b",
        "inner<run:",
        "outer<run:",
    ]


def test_task_middleware_can_change_inputs_and_results():
    flow = _flow()

    class Doubler:
        async def task(self, ctx, call_next):
            if ctx.task == "b":
                ctx.inputs["a"] = 10
            return await call_next() * 2

    flow.use(Doubler())
    assert flow.run().results == {"a": 2, "b": 22}


def test_task_middleware_that_raises_fails_that_task_cleanly():
    flow = _flow()

    async def broken(ctx, call_next):
        if ctx.kind == "task" and ctx.task == "b":
            raise RuntimeError("middleware bug")
        return await call_next()

    flow.use(broken)
    run = flow.run()
    assert run.states == {"a": "succeeded", "b": "failed"}
    assert str(run.errors["b"]) == "middleware bug"


def test_run_middleware_that_raises_fails_the_run_cleanly():
    flow = _flow()

    class Gate:
        async def run(self, ctx, call_next):
            raise PermissionError("not today")

    flow.use(Gate())
    run = flow.run()
    assert run.status == "failed"
    assert run.states == {"a": "cancelled", "b": "cancelled"}
    assert "PermissionError: not today" in run.state.error
    # The error is kept, not only its text: run.error, and raise_for_status() raises it.
    assert isinstance(run.error, nf.middleware.MiddlewareError)
    assert isinstance(run.error.__cause__, PermissionError)
    assert run.errors == {}  # no task failed: the run did
    with pytest.raises(nf.middleware.MiddlewareError, match="not today"):
        run.raise_for_status()


def test_run_middleware_that_never_calls_call_next_is_a_clear_error_not_a_hang():
    flow = _flow()
    ran = []
    flow.task(name="c")(lambda: ran.append("c"))

    class Forgetful:
        async def run(self, ctx, call_next):
            return None  # forgot `return await call_next()`

    flow.use(Forgetful())
    run = flow.run()  # returns: the run never started
    assert run.status == "failed"
    assert ran == []
    assert "Forgetful" in str(run.error) and "call_next()" in str(run.error)
    with pytest.raises(nf.middleware.MiddlewareError, match="without calling call_next"):
        run.raise_for_status()


def test_run_middleware_that_raises_after_the_run_keeps_the_results(tmp_path):
    flow = nf.Flow("mw-after", store=str(tmp_path / "mw.db"))
    flow.task(name="a")(lambda: 1)

    class Audit:
        async def run(self, ctx, call_next):  # around the run only
            await call_next()
            raise RuntimeError("audit log unreachable")

    flow.use(Audit())
    run = flow.run()
    assert run.status == "failed"
    assert run.states == {"a": "succeeded"} and run.results == {"a": 1}
    assert isinstance(run.error.__cause__, RuntimeError)
    # The store records the run as failed, with the middleware's error.
    (record,) = flow.state_store.runs("mw-after")
    assert record["status"] == "failed"
    assert "audit log unreachable" in record["error"]


def test_logging_middleware_logs_attempts(caplog):
    flow = _flow()
    flow.use(nf.middleware.logging())
    with caplog.at_level(logging.INFO, logger="nbflow.tasks"):
        flow.run()
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("a attempt 1 started") for m in messages)
    assert any(m.startswith("b attempt 1 succeeded") for m in messages)
    assert any("finished" in m for m in messages)


def test_validation_middleware_names_task_parameter_and_type():
    flow = nf.Flow("typed", store=None, on_error="continue")

    @flow.task
    def count() -> int:
        return 3

    @flow.task
    def label() -> str:
        return "three"

    @flow.task
    def scale(count: int, label: int) -> float:
        return count * 1.0

    @flow.task
    def wrong_return() -> int:
        return "not a number"  # type: ignore[return-value]

    flow.use(nf.middleware.validation())
    run = flow.run()
    assert run.states["scale"] == "failed" and run.states["wrong_return"] == "failed"
    assert isinstance(run.errors["scale"], nf.middleware.TaskValidationError)
    assert "task 'scale' parameter 'label': expected int, got str 'three'" in str(
        run.errors["scale"]
    )
    assert "task 'wrong_return' return value: expected int" in str(run.errors["wrong_return"])


def test_metrics_middleware_counts_attempts_and_retries():
    flow = nf.Flow("metrics", store=None)
    calls = []

    @flow.task(retry=nf.Retry(max_retries=2, delay=0))
    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OSError("again")
        return 1

    @flow.task
    def steady():
        return 2

    metrics = flow.use(nf.middleware.Metrics())
    flow.run()
    frame = metrics.frame()
    assert frame.loc["flaky", ["attempts", "succeeded", "failed", "retries"]].tolist() == [
        3,
        1,
        2,
        2,
    ]
    assert frame.loc["steady", ["attempts", "retries"]].tolist() == [1, 0]
    assert (frame["total_s"] >= 0).all()


@pytest.mark.parametrize("bad", [42, "not middleware"])
def test_non_callable_middleware_is_ignored_for_tasks(bad):
    flow = _flow()
    flow.use(bad)
    assert flow.run().status == "succeeded"
