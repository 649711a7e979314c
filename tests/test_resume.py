"""Resume: a run picks up where an earlier run of the same flow stopped, even after SIGKILL."""

from __future__ import annotations

import functools
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import nbflow as nf
from nbflow.store import StoreWarning

FLOWS = Path(__file__).parent / "flows"


def _counting_flow(calls, fail=()):
    flow = nf.Flow("resumable", on_error="continue")

    @flow.task
    def load():
        calls.append("load")
        return [1, 2, 3]

    @flow.task
    def total(load):
        calls.append("total")
        if "total" in fail:
            raise ValueError("total failed")
        return sum(load)

    @flow.task
    def report(total, label="sum"):
        calls.append("report")
        return f"{label}={total}"

    return flow


def test_resume_last_skips_what_succeeded_and_runs_the_rest():
    calls: list[str] = []
    first = _counting_flow(calls, fail={"total"}).run()
    assert first.states == {"load": "succeeded", "total": "failed", "report": "upstream_failed"}

    calls.clear()
    second = _counting_flow(calls).run(resume="last")
    assert calls == ["total", "report"]
    assert second.status == "succeeded"
    assert second.states == {"load": "cached", "total": "succeeded", "report": "succeeded"}
    assert second.results == {"load": [1, 2, 3], "total": 6, "report": "sum=6"}
    timeline = second.timeline()
    assert timeline.loc[timeline.task == "load", "status"].tolist() == ["cached"]


def test_resume_by_run_id_and_resume_of_a_resumed_run():
    calls: list[str] = []
    first = _counting_flow(calls).run()
    calls.clear()
    second = _counting_flow(calls).run(resume=first.run_id)
    third = _counting_flow(calls).run(resume=second.run_id)
    assert calls == []
    assert set(third.states.values()) == {"cached"}
    assert third.results == first.results
    history = nf.history("resumable")
    assert history.resumed_from.tolist()[1:] == [first.run_id, second.run_id]


def test_resume_runs_a_task_again_when_its_code_changed_and_its_dependants_too():
    calls: list[str] = []
    _counting_flow(calls).run()
    flow = _counting_flow(calls)

    @flow.task
    def load():  # a notebook cell re-run with new code and a new result
        calls.append("load2")
        return [10, 20]

    calls.clear()
    run = flow.run(resume="last")
    assert calls == ["load2", "total", "report"]
    assert run.results["report"] == "sum=30"


def test_resume_keeps_results_whose_inputs_did_not_change():
    calls: list[str] = []
    _counting_flow(calls).run()
    flow = _counting_flow(calls)

    @flow.task
    def load():  # new code, same result: dependants keep theirs
        calls.append("load2")
        return list(range(1, 4))

    calls.clear()
    run = flow.run(resume="last")
    assert calls == ["load2"]
    assert run.states == {"load": "succeeded", "total": "cached", "report": "cached"}


def test_resume_runs_a_task_again_when_a_run_variable_it_reads_changed():
    calls: list[str] = []
    _counting_flow(calls).run(variables={"label": "a"})
    calls.clear()
    run = _counting_flow(calls).run(variables={"label": "b"}, resume="last")
    assert calls == ["report"] and run.results["report"] == "b=6"


def test_resume_last_with_no_earlier_run_runs_everything():
    calls: list[str] = []
    run = _counting_flow(calls).run(resume="last")
    assert run.status == "succeeded" and calls == ["load", "total", "report"]


def test_resume_of_an_unknown_run_or_another_flows_run_is_an_error():
    other = nf.Flow("other")
    other.task(lambda: 1, name="x")
    other_run = other.run()
    flow = _counting_flow([])
    with pytest.raises(nf.StoreError, match=r"resume='nope': no run of flow 'resumable'"):
        flow.run(resume="nope")
    with pytest.raises(nf.StoreError, match=r"it is a run of flow 'other'"):
        flow.run(resume=other_run.run_id)


def test_resume_needs_a_store():
    flow = _counting_flow([])
    flow.store = None
    with pytest.raises(nf.StoreError, match="has no store"):
        flow.run(resume="last")


def test_resume_cannot_be_simulated():
    with pytest.raises(ValueError, match="simulate"):
        _counting_flow([]).run(resume="last", simulate=True)


def test_resume_with_start_in_the_background():
    calls: list[str] = []
    first = _counting_flow(calls).run()
    calls.clear()
    handle = _counting_flow(calls).start(resume=first.run_id)
    run = handle.wait(timeout=30)
    assert calls == [] and run.status == "succeeded"


def test_results_that_are_not_stored_run_again_on_resume():
    calls: list[str] = []
    flow = nf.Flow("partial")

    @flow.task(persist=False)
    def big():
        calls.append("big")
        return 2

    @flow.task
    def small():
        calls.append("small")
        return 3

    flow.run()
    calls.clear()
    run = flow.run(resume="last")
    assert calls == ["big"] and run.states == {"big": "succeeded", "small": "cached"}


def test_a_result_that_does_not_pickle_leaves_the_others_of_its_batch_resumable():
    calls: list[str] = []
    flow = nf.Flow("packs")

    @flow.task
    def lock():
        calls.append("lock")
        return threading.Lock()  # cannot be pickled

    @flow.task
    def number():
        calls.append("number")
        return 2

    @flow.task
    def double(number):
        calls.append("double")
        return number * 2

    with pytest.warns(StoreWarning, match=r"task 'lock': its result \(lock\) cannot be pickled"):
        first = flow.run()
    rows = flow.state_store.results(first.run_id)
    assert not rows["lock"].stored  # its row says it ran; its value is not there
    assert rows["number"].stored and rows["number"].codec == "pickle"
    calls.clear()
    run = flow.run(resume="last")
    assert calls == ["lock"]
    assert run.states == {"lock": "succeeded", "number": "cached", "double": "cached"}
    assert run.results["double"] == 4


def test_a_result_too_large_for_a_pack_is_stored_alone_and_resumes():
    calls: list[str] = []
    flow = nf.Flow("large-result")

    @flow.task
    def large():
        calls.append("large")
        return b"x" * (2 << 20)  # over a pack's 1 MiB

    @flow.task
    def size(large):
        calls.append("size")
        return len(large)

    first = flow.run()
    rows = flow.state_store.results(first.run_id)
    assert rows["large"].file is not None and rows["large"].size > 2 << 20  # a file
    calls.clear()
    run = flow.run(resume="last")
    assert calls == [] and run.results == {"large": b"x" * (2 << 20), "size": 2 << 20}


def test_resume_compares_inputs_when_an_upstream_ran_again_with_another_result():
    calls: list[str] = []
    first = _counting_flow(calls).run()
    flow = _counting_flow(calls)
    rows = flow.state_store.results(first.run_id)
    assert all(row.file is None and row.stored for row in rows.values())  # small: in a pack

    @flow.task
    def total(load):  # new code: runs again, with a new result for `report`
        calls.append("total2")
        return sum(load) + 1

    calls.clear()
    run = flow.run(resume="last")
    assert calls == ["total2", "report"] and run.results["report"] == "sum=7"
    assert run.states["load"] == "cached"


def test_resume_of_a_flow_with_a_decorated_task_and_a_run_variable():
    def logged(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            calls.append(fn.__name__)
            return fn(*args, **kwargs)

        return wrapper

    calls: list[str] = []
    flow = nf.Flow("decorated")
    flow.task(name="base")(logged(lambda: 5))
    flow.task(name="scaled")(logged(lambda base, factor: base * factor))
    flow.run(variables={"factor": 2})
    calls.clear()
    same = flow.run(variables={"factor": 2}, resume="last")
    assert calls == [] and same.results == {"base": 5, "scaled": 10}
    other = flow.run(variables={"factor": 3}, resume="last")
    assert calls == ["<lambda>"] and other.results == {"base": 5, "scaled": 15}


# -- the crash test ---------------------------------------------------------------------------


def _expected_results() -> dict[str, int]:
    values = {f"t0_{j}": 1 for j in range(5)}
    for k in range(1, 10):
        for j in range(5):
            values[f"t{k}_{j}"] = values[f"t{k - 1}_{j}"] + values[f"t{k - 1}_{(j + 1) % 5}"] + 1
    return values


def _committed_successes(db: Path) -> int:
    with sqlite3.connect(db, timeout=5) as con:
        return con.execute("SELECT count(*) FROM results WHERE codec IS NOT NULL").fetchone()[0]


@pytest.mark.slow
def test_crash_halfway_then_resume_in_a_new_process_runs_every_task_exactly_once(tmp_path):
    db, markers, release = tmp_path / "crash.db", tmp_path / "markers", tmp_path / "release"
    markers.mkdir()
    command = [sys.executable, str(FLOWS / "crash_flow.py"), str(db), str(markers), str(release)]
    victim = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Halfway: layers 0-4 (25 tasks) finished and committed, layer 5 waits for release.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            done = len(list(markers.iterdir()))
            if done == 25 and db.exists() and _committed_successes(db) == 25:
                break
            assert victim.poll() is None, victim.stderr.read().decode()  # type: ignore[union-attr]
            time.sleep(0.02)
        else:
            pytest.fail("the first process never got halfway")
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    first_run = nf.history("crash", store=db)
    # Nobody recorded its end (it was killed); history sees that its process is gone.
    assert first_run.status.tolist() == ["interrupted"]

    release.write_text("go")
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    run = json.loads(resumed.stdout.strip().splitlines()[-1])

    assert run["status"] == "succeeded"
    states = list(run["states"].values())
    assert states.count("cached") == 25 and states.count("succeeded") == 25
    assert run["results"] == _expected_results()
    lines = {path.name: path.read_text().split() for path in markers.iterdir()}
    assert len(lines) == 50
    assert all(len(pids) == 1 for pids in lines.values()), lines  # each task ran once
    for name, pids in lines.items():  # the first half ran in the killed process only
        layer = int(name[1 : name.index("_")])
        assert pids == [str(victim.pid) if layer < 5 else str(run["pid"])], name

    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    history = nf.history("crash", store=db)
    assert history.status.tolist() == ["interrupted", "succeeded"]
    assert history.resumed_from.tolist()[1] == history.run_id.tolist()[0]


def test_resume_runs_tasks_again_when_their_pack_is_gone(tmp_path):
    calls: list[str] = []
    path = tmp_path / "packs.db"
    flow = _counting_flow(calls)
    flow.store = str(path)
    first = flow.run()
    assert first.status == "succeeded"
    flow.state_store.flush()  # the run's last commit may still be going on (write-behind)
    with sqlite3.connect(path) as con:  # the rows stay, their bytes vanish (a hand edit)
        con.execute("UPDATE records SET data = x'' WHERE data IS NOT NULL")
    calls.clear()
    flow = _counting_flow(calls)
    flow.store = str(path)
    run = flow.run(resume=first.run_id)
    assert calls == ["load", "total", "report"] and run.results["report"] == "sum=6"
