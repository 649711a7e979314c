"""Per-task logs: prints and logging inside a task land in that attempt's log, concurrent
tasks never mix, the user's streams and logging config are left as they were, the cap."""

from __future__ import annotations

import asyncio
import contextvars
import io
import logging
import re
import sys
import threading
import time

import pytest

import nbflow as nf
from nbflow import capture
from nbflow.logs import AttemptLog, LogCapture


def lines_of(run: nf.Run, task: str) -> list[str]:
    return run.logs(task)["message"].tolist()


# -- concurrent tasks never mix -----------------------------------------------------------


def test_logs_of_two_concurrent_async_tasks_stay_apart():
    flow = nf.Flow("async-mix", store=None)
    both_running = asyncio.Event()
    seen: list[str] = []

    async def talk(me: str) -> None:
        seen.append(me)
        if len(seen) == 2:
            both_running.set()
        await both_running.wait()  # both are in flight: their lines interleave in time
        for i in range(5):
            print(f"{me} line {i}")
            await asyncio.sleep(0)

    @flow.task
    async def left():
        await talk("left")

    @flow.task
    async def right():
        await talk("right")

    run = flow.run()
    assert run.status == "succeeded"
    assert lines_of(run, "left") == [f"left line {i}" for i in range(5)]
    assert lines_of(run, "right") == [f"right line {i}" for i in range(5)]
    # ...written at the same time: the run's log interleaves them.
    tasks = run.logs()["task"].tolist()
    assert tasks != sorted(tasks)


def test_logs_of_two_concurrent_sync_tasks_in_threads_stay_apart():
    flow = nf.Flow("thread-mix", store=None, max_workers=2)
    barrier = threading.Barrier(2, timeout=5)

    def talk(me: str) -> str:
        barrier.wait()  # both threads run now
        for i in range(50):
            print(f"{me} {i}")
            logging.getLogger("user").warning("%s warns %d", me, i)
            if i % 10 == 0:
                time.sleep(0.001)  # let the other thread write too
        return threading.current_thread().name

    @flow.task
    def one():
        return talk("one")

    @flow.task
    def two():
        return talk("two")

    run = flow.run(show=False)
    assert run.status == "succeeded"
    assert run.results["one"] != run.results["two"]  # two threads
    for me in ("one", "two"):
        frame = run.logs(me)
        prints = frame[frame["level"] == "stdout"]["message"].tolist()
        warns = frame[frame["level"] == "WARNING"]["message"].tolist()
        assert prints == [f"{me} {i}" for i in range(50)]
        assert warns == [f"{me} warns {i}" for i in range(50)]
        assert set(frame["logger"].dropna()) == {"user"}


def test_threads_a_task_starts_with_its_context_lose_no_line():
    """Four threads started with the task's context (as the docs advise) print at once;
    frequent thread switches make the race show: every line is kept (words of two prints
    may still run together, as in any stream; no print is lost)."""
    threads, lines = 4, 20_000
    flow = nf.Flow("threads", store=None, logs=LogCapture(head=10**6, tail=0, echo=False))

    @flow.task
    def chatty():
        def work(k: int) -> None:
            for i in range(lines):
                print(f"t{k}-{i}")

        started = []
        for k in range(threads):
            thread = threading.Thread(target=contextvars.copy_context().run, args=(work, k))
            started.append(thread)
            thread.start()
        for thread in started:
            thread.join()

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        run = flow.run()
    finally:
        sys.setswitchinterval(previous)
    written = re.findall(r"t\d+-\d+", "\n".join(run.logs("chatty")["message"]))
    assert sorted(written) == sorted(f"t{k}-{i}" for k in range(threads) for i in range(lines))


def test_each_attempt_and_element_has_its_own_lines():
    flow = nf.Flow("attempts", store=None)
    tries = []

    @flow.task(retry=nf.Retry(max_retries=1, delay=0))
    def flaky():
        tries.append(1)
        print(f"try {len(tries)}")
        if len(tries) == 1:
            raise ConnectionError("busy")
        return [1, 2, 3]

    @flow.task(fan_out="flaky")
    async def each(flaky):
        nf.context().log.info("element of %d", flaky)

    run = flow.run()
    frame = run.logs()
    mine = frame[frame["task"] == "flaky"]
    assert list(zip(mine["attempt"], mine["message"], strict=True)) == [(1, "try 1"), (2, "try 2")]
    elements = frame[frame["task"] == "each"].sort_values("element")
    assert elements["element"].tolist() == [0, 1, 2]
    assert elements["message"].tolist() == ["element of 1", "element of 2", "element of 3"]
    assert set(elements["level"]) == {"INFO"}
    assert set(elements["logger"]) == {"nbflow.task.each"}
    assert list(frame.columns) == [
        "task", "attempt", "element", "time", "level", "message", "logger",
    ]  # fmt: skip


def test_logs_of_a_task_and_unknown_task():
    flow = nf.Flow("one-task", store=None)
    flow.task(name="quiet")(lambda: None)
    run = flow.run()
    assert run.logs().empty and run.logs("quiet").empty
    with pytest.raises(KeyError, match="'nope' is not a task of run"):
        run.logs("nope")


# -- the user's streams and logging ---------------------------------------------------------


def test_nothing_is_installed_while_no_run_is_active():
    stdout, stderr, handlers = sys.stdout, sys.stderr, list(logging.getLogger().handlers)
    flow = nf.Flow("restore", store=None)
    during = {}

    @flow.task
    def look():
        during["stdout"] = sys.stdout
        during["handlers"] = list(logging.getLogger().handlers)

    flow.run()
    assert isinstance(during["stdout"], capture.StreamProxy)
    assert len(during["handlers"]) == len(handlers) + 1
    assert (sys.stdout, sys.stderr) == (stdout, stderr)
    assert logging.getLogger().handlers == handlers
    assert not capture.active()


def test_logs_false_captures_nothing_and_installs_nothing(capsys):
    flow = nf.Flow("off", store=None, logs=False)
    during = {}

    @flow.task
    def look():
        during["stdout"] = sys.stdout
        print("plain print")
        for _ in nf.track(range(3)):  # progress still works
            pass

    run = flow.run()
    assert not isinstance(during["stdout"], capture.StreamProxy)
    assert run.logs().empty
    assert "plain print" in capsys.readouterr().out
    assert run.state.progress["look"] == (1, 3, 3)


def test_the_users_logging_config_still_works():
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    logger = logging.getLogger("nbflow-test-user")
    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        flow = nf.Flow("config", store=None)

        @flow.task
        def work():
            logger.info("to both")
            logger.debug("below the user's level: nowhere")

        run = flow.run()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    assert seen == ["to both"]
    assert lines_of(run, "work") == ["to both"]


def test_ctx_log_reaches_the_users_handlers_once_and_the_log_once():
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler = Keep()
    logging.getLogger().addHandler(handler)
    try:
        flow = nf.Flow("ctxlog", store=None)

        @flow.task
        def work():
            nf.context().log.info("one")
            nf.context().log.debug("below INFO: not kept")

        run = flow.run()
    finally:
        logging.getLogger().removeHandler(handler)
    assert seen == ["one"]
    assert lines_of(run, "work") == ["one"]
    assert "nbflow.task.work" not in logging.Logger.manager.loggerDict  # not registered


def test_a_logged_exception_keeps_its_traceback():
    flow = nf.Flow("exc", store=None)

    @flow.task
    def work():
        try:
            raise KeyError("missing")
        except KeyError:
            logging.getLogger("user").exception("lookup failed")

    message = lines_of(flow.run(), "work")[0]
    assert message.startswith("lookup failed\nTraceback")
    assert "KeyError: 'missing'" in message


def test_prints_are_echoed_unless_a_dashboard_shows_the_run(capsys, monkeypatch):
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # logging as Python starts it
    flow = nf.Flow("echo", store=None)

    @flow.task
    def hello():
        print("hello from a task")
        logging.getLogger("user").warning("a warning, as Python shows it unconfigured")

    flow.run()
    out = capsys.readouterr()
    assert "hello from a task" in out.out
    assert "a warning, as Python shows it unconfigured" in out.err
    flow.logs = LogCapture(echo=False)  # what show=True means by default
    run = flow.run()
    out = capsys.readouterr()
    assert "hello from a task" not in out.out and "a warning" not in out.err
    assert lines_of(run, "hello")[0] == "hello from a task"


def test_writes_outside_tasks_go_where_they_went(capsys):
    flow = nf.Flow("outside", store=None, logs=LogCapture(echo=False))

    @flow.task
    async def slow():
        await asyncio.sleep(0.05)

    async def main():
        handle = flow.start()
        await asyncio.sleep(0.01)
        print("from the notebook, while a run goes on")  # not in any task
        return await handle

    run = asyncio.run(main())
    assert "from the notebook" in capsys.readouterr().out
    assert run.logs().empty


def test_a_stream_replaced_during_the_run_is_left_alone():
    """Something that replaced sys.stdout after us (and still holds our proxy) keeps its
    stream: ours stays inside it, switched off; the next run switches it on again and,
    finding it in place at its end, puts the original back."""
    flow = nf.Flow("wrapped", store=None, logs=LogCapture(echo=False))
    ours = []
    mine = io.StringIO()

    @flow.task
    def wrap():
        ours.append(sys.stdout)
        sys.stdout = mine  # e.g. contextlib.redirect_stdout, entered and not left

    original = sys.stdout
    try:
        flow.run()
        assert sys.stdout is mine  # not undone
        proxy = ours[0]
        assert not proxy._nbflow_on
        sys.stdout = proxy  # the redirect ends: our proxy is back, as a pass-through
        print("passes through")
        flow.task(name="wrap")(lambda: print("captured again"))
        run = flow.run()
        assert lines_of(run, "wrap") == ["captured again"]
        assert sys.stdout is original  # ...and this time the stream could be put back
    finally:
        sys.stdout = original


def test_a_failing_capture_never_fails_the_run(monkeypatch, capsys):
    def broken(*args):
        raise RuntimeError("capture bug")

    monkeypatch.setattr("nbflow.logs.RunOutput.write", broken)
    monkeypatch.setattr("nbflow.logs.RunOutput.record", broken)
    flow = nf.Flow("broken", store=None)

    @flow.task
    def talk():
        print("still printed")
        logging.getLogger("user").warning("still logged")
        return 1

    run = flow.run()
    assert run.status == "succeeded"
    assert "still printed" in capsys.readouterr().out


def test_a_thread_that_outlives_its_attempt_writes_where_it_would(capsys):
    flow = nf.Flow("zombie", store=None, logs=LogCapture(echo=False))
    release, written = threading.Event(), threading.Event()

    @flow.task(timeout=0.05)
    def stuck():
        release.wait(5)
        print("after my attempt timed out")
        written.set()

    @flow.task
    async def later():  # the run goes on while the stuck thread writes
        await asyncio.sleep(0.2)
        release.set()
        while not written.is_set():
            await asyncio.sleep(0.01)

    run = flow.run(on_error="continue")
    assert run.states == {"stuck": "failed", "later": "succeeded"}
    assert "after my attempt timed out" in capsys.readouterr().out
    assert run.logs().empty


# -- what a line is ------------------------------------------------------------------------


def test_partial_lines_and_carriage_returns():
    flow = nf.Flow("partial", store=None)

    @flow.task
    def bar():
        sys.stdout.write("a")
        sys.stdout.write("b\nc")
        print("d", "e", sep="-")
        sys.stdout.write("overwritten\rshown\n")
        for i in range(3):
            sys.stderr.write(f"\r{i}/3")
        sys.stderr.write("\n")
        sys.stdout.write("unfinished")

    frame = flow.run().logs("bar")
    assert list(zip(frame["level"], frame["message"], strict=True)) == [
        ("stdout", "ab"),
        ("stdout", "cd-e"),
        ("stdout", "shown"),
        ("stderr", "2/3"),
        ("stdout", "unfinished"),
    ]


def test_a_long_line_is_cut():
    flow = nf.Flow("long", store=None, logs=LogCapture(max_chars=100))

    @flow.task
    def wide():
        print("x" * 250)

    [line] = lines_of(flow.run(), "wide")
    assert line == "x" * 100 + "… (150 more characters)"


def test_live_lines_go_out_in_batches():
    flow = nf.Flow("batches", store=None, logs=LogCapture(interval=0.1))

    @flow.task
    def steady():
        for i in range(400):  # ~0.4 s of lines, all within the head
            print(i)
            time.sleep(0.001)

    run = flow.run()
    assert len(run.logs("steady")) == 400
    assert 2 <= len(run.state.logs["steady"]) <= 10  # a batch per interval, not per line


def test_cap_keeps_the_head_and_the_tail_and_counts_the_rest():
    cap = LogCapture(head=3, tail=2)
    log = AttemptLog()
    for i in range(10):
        log.add(float(i), "stdout", f"line {i}", None, cap)
    lines, dropped = log.finish(10.0, cap)
    assert dropped == 5
    assert [m for _, _, m, _ in lines] == [
        "line 0", "line 1", "line 2",
        "… 5 lines not kept (an attempt keeps its first 3 and its last 2 lines: see "
        "nbflow.LogCapture)",
        "line 8", "line 9",
    ]  # fmt: skip


def test_a_million_lines_keep_the_kernel_free_and_the_store_small(tmp_path):
    """One task prints a million lines: the run records head + tail lines, and the event
    loop keeps turning meanwhile (the lines are counted in the task's thread)."""
    from nbflow.store import open_store

    flow = nf.Flow("chatty", store=str(tmp_path / "store.db"), logs=LogCapture(echo=False))
    done = threading.Event()
    lags: list[float] = []

    @flow.task
    def chatty():
        for i in range(1_000_000):
            print("line", i)
        done.set()

    @flow.task
    async def ticker():
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - before - 0.01)

    began = time.perf_counter()
    run = flow.run()
    elapsed = time.perf_counter() - began
    frame = run.logs("chatty")
    head, tail = LogCapture().head, LogCapture().tail
    assert len(frame) == head + 1 + tail
    assert frame["message"].iloc[0] == "line 0"
    assert frame["message"].iloc[head].startswith(f"… {1_000_000 - head - tail:,} lines not kept")
    assert frame["message"].iloc[-1] == "line 999999"
    # The loop was never held for long: the ticker kept ticking while the task printed.
    assert len(lags) > 10 and max(lags) < 0.5, (len(lags), max(lags))
    # A few events a second while it printed, not one per line.
    assert len(run.state.logs["chatty"]) < 10 + 4 * elapsed
    stored = open_store(str(tmp_path / "store.db")).run_sizes()[run.run_id]
    assert stored < 150_000, stored
    print(f"a million lines: {elapsed:.2f} s, {stored:,} bytes stored", file=sys.__stderr__)


def test_logs_are_stored_with_the_run_and_read_back(tmp_path):
    from nbflow.store import open_store

    flow = nf.Flow("stored", store=str(tmp_path / "s.db"), logs=LogCapture(echo=False))

    @flow.task
    def talk():
        print("kept")
        nf.context().log.warning("careful")

    @flow.task
    def quiet(talk):
        return 1

    run = flow.run()
    state = open_store(str(tmp_path / "s.db")).state(run.run_id)
    assert nf.Run(state).logs().drop(columns="time").equals(run.logs().drop(columns="time"))
    assert nf.Run(state).logs()["message"].tolist() == ["kept", "careful"]
    assert list(state.logs) == ["talk"]  # a task that wrote nothing has no log events


def test_a_quiet_run_emits_no_log_or_progress_events():
    flow = nf.Flow("quiet", store=None)
    events: list[nf.Event] = []
    flow.subscribe(events.append)
    for i in range(20):
        flow.task(name=f"t{i}")(lambda: None)
    flow.run()
    assert not [e for e in events if isinstance(e, nf.TaskLog | nf.TaskProgress)]


def test_bad_logs_setting():
    with pytest.raises(TypeError, match=r"logs must be True, False or an nbflow\.LogCapture"):
        nf.Flow("bad", logs="yes")
    with pytest.raises(ValueError, match="head must be an int >= 0"):
        LogCapture(head=-1)
    with pytest.raises(ValueError, match="max_chars must be an int >= 80"):
        LogCapture(max_chars=10)
    with pytest.raises(ValueError, match="interval must be positive seconds"):
        LogCapture(interval=0)
