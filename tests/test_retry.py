"""nf.Retry as a value object and on its own: backoff, filters, deadline, jitter, decorators."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

import nbflow as nf
from nbflow.retry import RetryState, coerce_retry, retry_sync


def test_retry_is_a_frozen_comparable_value():
    a = nf.Retry(max_retries=2, on=(IOError,))
    assert a == nf.Retry(max_retries=2, on=("OSError",))
    with pytest.raises(Exception, match="frozen"):
        a.max_retries = 5  # type: ignore[misc]
    assert "max_retries=2" in repr(a)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_retries", -1, "greater than or equal to 0"),
        ("backoff", 0.5, "greater than or equal to 1"),
        ("on", ("NotAnError",), "not an exception class"),
    ],
)
def test_retry_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        nf.Retry(**{field: value})


def test_backoff_grows_and_is_capped():
    policy = nf.Retry(delay=0.1, backoff=2.0, max_delay=0.5)
    assert [policy.delay_for(n) for n in (1, 2, 3, 4, 5)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.5, 0.5]
    )


def test_jitter_is_reproducible_with_a_seed():
    policy = nf.Retry(delay=0.0, jitter=1.0, seed=42)
    first = [policy.delay_for(n, rng) for rng in [policy.rng()] for n in (1, 2, 3)]
    second = [policy.delay_for(n, rng) for rng in [policy.rng()] for n in (1, 2, 3)]
    assert first == second and all(0.0 <= d <= 1.0 for d in first) and len(set(first)) == 3


def test_retry_helper_retries_then_returns():
    calls = []

    async def fetch():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("flaky")
        return "page"

    seen = []
    result = asyncio.run(
        nf.retry(
            fetch, nf.Retry(max_retries=3, delay=0), on_retry=lambda a, e, d: seen.append((a, d))
        )
    )
    assert result == "page" and len(calls) == 3 and seen == [(1, 0.0), (2, 0.0)]


def test_not_on_and_retry_if_stop_retrying_at_once():
    policy = nf.Retry(max_retries=5, delay=0, not_on=(PermissionError,))
    calls = []

    def denied():
        calls.append(1)
        raise PermissionError("no")

    with pytest.raises(PermissionError):
        asyncio.run(nf.retry(denied, policy))
    assert len(calls) == 1

    picky = nf.Retry(max_retries=5, delay=0, retry_if=lambda e: "transient" in str(e))
    calls.clear()

    def fatal():
        calls.append(1)
        raise ValueError("fatal")

    with pytest.raises(ValueError, match="fatal"):
        asyncio.run(nf.retry(fatal, picky))
    assert len(calls) == 1


def test_deadline_bounds_total_time():
    state = RetryState(nf.Retry(max_retries=100, delay=1.0, backoff=1.0, deadline=2.5), now=0.0)
    state.attempt = 1
    assert state.next_delay(RuntimeError(), now=0.0) == 1.0
    state.attempt = 2
    assert state.next_delay(RuntimeError(), now=1.6) is None  # 1.6 + 1.0 passes the deadline


def test_policy_as_decorator_on_sync_and_async_functions():
    policy = nf.Retry(max_retries=2, delay=0)
    sync_calls, async_calls = [], []

    @policy
    def sync_flaky(x):
        sync_calls.append(x)
        if len(sync_calls) < 2:
            raise OSError("once")
        return x * 2

    @policy
    async def async_flaky(x):
        async_calls.append(x)
        if len(async_calls) < 3:
            raise OSError("twice")
        return x * 3

    assert sync_flaky(4) == 8 and len(sync_calls) == 2
    assert asyncio.run(async_flaky(2)) == 6 and len(async_calls) == 3
    assert sync_flaky.__name__ == "sync_flaky"


@pytest.mark.parametrize("error", [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit()])
def test_cancellation_is_never_retried(error):
    # on=BaseException names these too: only should_retry's own guard keeps them out (the
    # default on=(Exception,) would, without the guard).
    policy = nf.Retry(on=(BaseException,))
    assert policy.should_retry(RuntimeError("retry me"))
    assert not policy.should_retry(error)


def test_retrying_event_carries_attempt_and_delay():
    flow = nf.Flow("retry-events", store=None)
    calls = []

    @flow.task(retry=nf.Retry(max_retries=2, delay=0.001, backoff=3.0))
    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OSError("again")

    events = []
    flow.subscribe(events.append)
    flow.run()
    retrying = [(e.attempt, e.delay) for e in events if isinstance(e, nf.TaskRetrying)]
    assert retrying == [(1, pytest.approx(0.001)), (2, pytest.approx(0.003))]


def _broken_judge(error: BaseException) -> bool:
    return error.args[5]  # the task's error has one argument: IndexError


def test_retry_if_that_raises_is_reported_with_the_tasks_own_error():
    flow = nf.Flow("judged", store=None)
    calls = []

    @flow.task(retry=nf.Retry(max_retries=3, delay=0, retry_if=_broken_judge))
    def fetch():
        calls.append(1)
        raise ConnectionError("server down")

    run = flow.run()
    error = run.errors["fetch"]
    assert calls == [1]  # not retried: the policy could not decide
    assert isinstance(error, nf.RetryIfError)
    assert isinstance(error.error, ConnectionError) and str(error.error) == "server down"
    assert isinstance(error.__cause__, IndexError)
    assert str(error) == (
        "task 'fetch' failed with ConnectionError: server down, and its retry_if raised "
        "IndexError: tuple index out of range deciding whether to retry it, so it was not "
        "retried; fix retry_if (the task's own error is this error's .error)"
    )
    traceback = run.state.tasks["fetch"].traceback
    assert "ConnectionError: server down" in traceback and "IndexError" in traceback


def test_retry_if_that_raises_in_a_fan_out_element_closes_its_attempt():
    flow = nf.Flow("judged-fan", store=None)

    @flow.task
    def items():
        return [1, 2]

    @flow.task(fan_out="items", retry=nf.Retry(max_retries=2, delay=0, retry_if=_broken_judge))
    def each(items):
        raise ConnectionError(f"element {items}")

    run = flow.run()
    assert run.states["each"] == "failed"
    assert all(isinstance(e, nf.RetryIfError) for e in run.element_errors["each"].values())
    assert set(run.timeline()["status"]) == {"succeeded", "failed"}  # no attempt left open


def test_retry_if_that_raises_outside_a_flow():
    policy = nf.Retry(max_retries=3, delay=0, retry_if=_broken_judge)

    def call():
        raise ConnectionError("server down")

    with pytest.raises(nf.RetryIfError, match=r"^the call failed with ConnectionError") as info:
        policy(call)()
    assert isinstance(info.value.error, ConnectionError)


def test_exceptions_serialise_by_name_and_resolve_from_dotted_names():
    policy = nf.Retry(on=(ConnectionError, json.JSONDecodeError))
    assert policy.model_dump()["on"] == ["ConnectionError", "json.decoder.JSONDecodeError"]
    assert nf.Retry(on="json.decoder.JSONDecodeError").on == (json.JSONDecodeError,)
    assert nf.Retry(on="json.JSONDecodeError").on == (json.JSONDecodeError,)
    for name in ["no_such_module_x.Error", "json.no_such_error", "NoSuchError"]:
        with pytest.raises(ValueError, match=rf"'{name}' is not an exception class \(use e\.g\."):
            nf.Retry(on=name)
    with pytest.raises(ValueError, match=r"42 is not an exception class \[type"):
        nf.Retry(on=(42,))


def test_coerce_retry_says_what_it_accepts():
    with pytest.raises(
        ValueError, match=r"^retry must be a Retry, an int \(max_retries\) or None, not a bool$"
    ):
        coerce_retry(True)
    with pytest.raises(
        ValueError, match=r"^retry must be a Retry, an int \(max_retries\) or None, not 'x'$"
    ):
        coerce_retry("x")  # type: ignore[arg-type]


def test_should_retry_filters():
    assert nf.Retry(not_on=(ValueError,)).should_retry(OSError())
    assert not nf.Retry(not_on=(ValueError,)).should_retry(ValueError())
    only_os = nf.Retry(retry_if=lambda error: isinstance(error, OSError))
    assert only_os.should_retry(OSError()) and not only_os.should_retry(KeyError())


def test_jitter_is_added_to_the_backoff_from_one_seeded_source():
    policy = nf.Retry(delay=1.0, backoff=2.0, jitter=0.5, seed=7)
    draws = random.Random(7)
    assert policy.delay_for(1) == 1.0 + random.Random(7).uniform(0.0, 0.5)
    assert policy.delay_for(1) == policy.delay_for(1)  # seeded: the same every time
    state = RetryState(policy, now=0.0)
    delays = []
    for attempt in (1, 2):
        state.attempt = attempt
        delays.append(state.next_delay(OSError(), now=0.0))
    assert delays == [1.0 + draws.uniform(0.0, 0.5), 2.0 + draws.uniform(0.0, 0.5)]


def test_no_attempt_starts_at_the_deadline_itself():
    state = RetryState(nf.Retry(delay=0.5, backoff=1.0, deadline=1.0), now=0.0)
    state.attempt = 1
    assert state.next_delay(OSError(), now=0.25) == 0.5
    assert state.next_delay(OSError(), now=0.5) is None  # 0.5 + 0.5 is the deadline


def test_retry_sync_counts_attempts_and_keeps_its_policy():
    calls = []

    def flaky():
        calls.append(1)
        raise OSError("again")

    with pytest.raises(OSError):
        retry_sync(flaky, nf.Retry(max_retries=2, delay=0))
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(OSError):
        retry_sync(flaky, nf.Retry(max_retries=50, delay=0.01, backoff=1.0, deadline=0.05))
    assert 2 <= len(calls) < 10  # the deadline, not max_retries, ended it


def test_async_retry_reports_each_error_and_keeps_a_deadline():
    seen = []

    async def flaky():
        raise OSError("again")

    async def main():
        policy = nf.Retry(max_retries=50, delay=0.01, backoff=1.0, deadline=0.05)
        await nf.retry(flaky, policy, on_retry=lambda n, error, delay: seen.append((n, error)))

    with pytest.raises(OSError):
        asyncio.run(main())
    assert 2 <= len(seen) < 10
    assert all(isinstance(error, OSError) for _, error in seen)
    assert [n for n, _ in seen] == list(range(1, len(seen) + 1))
