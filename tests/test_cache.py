"""Result caching: cache=True, cache_key=, cache_ttl, invalidation, across processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
from ipython_cells import kernel

import nbflow as nf
from nbflow import cache as cache_module
from nbflow.store import StoreWarning

FLOWS = Path(__file__).parent / "flows"


def _scale():
    return 10


def _flow(calls, **options):
    flow = nf.Flow("cached")

    # `calls` changes with every run: it must not count as something the result depends on.
    @flow.task(cache=True, cache_ignore="calls", **options)
    def base(n=3):
        calls.append("base")
        return [_scale() * i for i in range(n)]

    @flow.task(cache=True, cache_ignore="calls")
    def report(base):
        calls.append("report")
        return sum(base)

    return flow


def test_a_second_run_is_served_from_the_cache():
    calls: list[str] = []
    seen: list[nf.Event] = []
    _flow(calls).run()
    flow = _flow(calls)
    flow.subscribe(seen.append)
    run = flow.run()
    assert calls == ["base", "report"]
    assert run.states == {"base": "cached", "report": "cached"}
    assert run.results == {"base": [0, 10, 20], "report": 30}
    succeeded = [e for e in seen if isinstance(e, nf.TaskSucceeded)]
    assert [e.cached for e in succeeded] == [True, True]
    assert run.timeline().status.tolist() == ["cached", "cached"]


def test_a_cache_lookup_reads_the_one_row_it_needs(monkeypatch):
    """Each cached task finds its result by its key alone, never by reading every result
    of the run it was stored by (which made a flow of n cached tasks O(n²) to serve)."""
    from nbflow.store.sqlite import SQLiteStore

    flow = nf.Flow("many-cached")
    for i in range(50):
        flow.task(name=f"t{i}", cache=True)(lambda i=i: {"value": i})
    flow.task(name="plain", cache=True)(lambda: 7)
    flow.run()

    def whole_run(*_args):
        raise AssertionError("a cache lookup read every result of a run")

    monkeypatch.setattr(SQLiteStore, "results", whole_run)
    run = flow.run()
    assert set(run.states.values()) == {"cached"}
    assert run.results["t7"] == {"value": 7} and run.results["plain"] == 7


def test_changing_a_tasks_code_invalidates_it_and_through_its_result_its_dependants():
    calls: list[str] = []
    flow = _flow(calls)
    flow.run()

    @flow.task(cache=True, cache_ignore="calls")
    def base(n=3):  # the notebook cell, edited and run again
        calls.append("base2")
        return [1, 2, 3]

    run = flow.run()
    assert calls == ["base", "report", "base2", "report"]
    assert run.results["report"] == 6


def test_changing_a_notebook_helper_invalidates_the_tasks_that_call_it(monkeypatch):
    calls: list[str] = []
    _flow(calls).run()

    def _scale():
        return 100

    monkeypatch.setitem(globals(), "_scale", _scale)
    run = _flow(calls).run()
    assert calls == ["base", "report", "base", "report"]
    assert run.results["report"] == 300


def test_new_code_with_the_same_result_keeps_the_dependants_cached():
    calls: list[str] = []
    flow = _flow(calls)
    flow.run()

    @flow.task(cache=True, cache_ignore="calls")
    def base(n=3):
        calls.append("base2")
        return [0, 10, 20]

    run = flow.run()
    assert calls == ["base", "report", "base2"]
    assert run.states == {"base": "succeeded", "report": "cached"}


def test_different_inputs_are_different_cache_entries():
    calls: list[str] = []
    _flow(calls).run(variables={"n": 2})
    _flow(calls).run(variables={"n": 3})
    run = _flow(calls).run(variables={"n": 2})
    assert calls == ["base", "report", "base", "report"]
    assert run.results["report"] == 10


def test_cache_key_callable_decides_what_counts_as_the_same_inputs():
    calls: list[str] = []
    flow = nf.Flow("keyed")

    @flow.task(cache_key=lambda url, attempt_label: url, cache_ignore="calls")
    def fetch(url, attempt_label):
        calls.append(attempt_label)
        return url.upper()

    flow.run(variables={"url": "a", "attempt_label": "first"})
    run = flow.run(variables={"url": "a", "attempt_label": "second"})
    assert calls == ["first"] and run.states == {"fetch": "cached"}
    flow.run(variables={"url": "b", "attempt_label": "third"})
    assert calls == ["first", "third"]


def test_cache_key_returning_none_skips_the_cache():
    calls: list[str] = []
    flow = nf.Flow("nokey")
    flow.task(cache_key=lambda: None, name="t")(lambda: calls.append("t"))
    flow.run()
    flow.run()
    assert calls == ["t", "t"]


def test_a_cache_key_that_raises_fails_the_task_with_a_clear_error():
    flow = nf.Flow("badkey")

    def key(**inputs):
        raise KeyError("nope")

    flow.task(cache_key=key, name="t")(lambda x=1: x)
    run = flow.run()
    assert run.states == {"t": "failed"}
    assert "task 't': cache_key=key raised KeyError" in str(run.errors["t"])


def test_cache_ttl_expires_entries(monkeypatch):
    calls: list[str] = []
    _flow(calls, cache_ttl=60).run()
    assert _flow(calls, cache_ttl=60).run().states["base"] == "cached"
    later = cache_module.time.time() + 3600
    monkeypatch.setattr(cache_module.time, "time", lambda: later)
    run = _flow(calls, cache_ttl=60).run()
    assert run.states["base"] == "succeeded" and calls.count("base") == 2


def test_fan_out_tasks_are_cached_element_by_element():
    calls: list[int] = []
    flow = nf.Flow("fan-cache")

    @flow.task
    def items():
        return [1, 2, 3]

    @flow.task(fan_out="items", cache=True, cache_ignore="calls")
    def double(items):
        calls.append(items)
        return 2 * items

    flow.run()
    run = flow.run()
    assert sorted(calls) == [1, 2, 3] and run.results["double"] == [2, 4, 6]  # ran once
    assert run.states["double"] == "cached"  # every element came from the cache
    rows = run.timeline()
    assert rows[rows.base_task == "double"].status.tolist() == ["cached"] * 3


def test_an_input_that_cannot_be_hashed_means_no_reuse_and_a_warning():
    flow = nf.Flow("lock-input")
    lock = threading.Lock()
    calls: list[str] = []
    flow.task(cache=True, name="t", cache_ignore="calls")(lambda handle: calls.append("t"))
    for _ in range(2):
        with pytest.warns(nf.CacheWarning, match=r"task 't': run variable 'handle' cannot be hash"):
            run = flow.run(variables={"handle": lock})
        assert run.status == "succeeded" and run.states["t"] == "succeeded"
    assert calls == ["t", "t"]  # never served from the cache


def test_cache_true_without_a_store_warns_that_it_does_nothing():
    flow = nf.Flow("nostore", store=None)
    flow.task(cache=True, name="t")(lambda: 1)
    with pytest.warns(StoreWarning, match=r"flow 'nostore' has no store, so cache=True on \['t'\]"):
        flow.run()


@pytest.mark.slow
def test_cache_hits_across_processes_and_misses_after_the_code_changed(tmp_path):
    db, markers = tmp_path / "cache.db", tmp_path / "markers"
    markers.mkdir()
    script = tmp_path / "cache_flow.py"
    shutil.copy(FLOWS / "cache_flow.py", script)

    def run() -> dict:
        out = subprocess.run(
            [sys.executable, str(script), str(db), str(markers)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    def ran() -> dict[str, int]:
        return {p.name: len(p.read_text().split()) for p in markers.iterdir()}

    first = run()
    assert first["states"] == {"base": "succeeded", "report": "succeeded"}
    second = run()  # another process: served from the store
    assert second["states"] == {"base": "cached", "report": "cached"}
    assert second["results"] == first["results"] and ran() == {"base": 1, "report": 1}

    # Edit the helper `scale()` that `base` calls, as a notebook user would.
    source = script.read_text()
    assert "return 10" in source
    script.write_text(source.replace("return 10", "return 7"))
    third = run()
    assert third["states"] == {"base": "succeeded", "report": "succeeded"}
    assert third["results"] == {"base": [0, 7, 14], "report": 21}
    assert ran() == {"base": 2, "report": 2}


#: A task reading a lock (which does not pickle) through each place its identity covers:
#: (the cell defining `task` in a flow `flow`, the path the warning names).
UNHASHABLE_PLACES = {
    "global": ("def task():\n    return str(LOCK)\n", "global LOCK"),
    "helper's global": (
        "def helper():\n    return str(LOCK)\ndef task():\n    return helper()\n",
        "global helper / global LOCK",
    ),
    "default": ("def task(lock=LOCK):\n    return str(lock)\n", "default lock"),
    "closure": (
        "def make(lock):\n    def task():\n        return str(lock)\n    return task\n"
        "task = make(LOCK)\n",
        "closure lock",
    ),
    "class attribute": (
        "class Cfg:\n    lock = LOCK\ndef task():\n    return str(Cfg.lock)\n",
        "global Cfg / attribute lock",
    ),
    "partial argument": (
        "import functools\ndef run(lock):\n    return str(lock)\n"
        "task = functools.partial(run, LOCK)\n",
        "argument 0",
    ),
    "instance": (
        "class Holder:\n    def __init__(self, lock):\n        self.lock = lock\n"
        "    def run(self):\n        return str(self.lock)\ntask = Holder(LOCK).run\n",
        "instance",
    ),
    "callable object": (
        "class Runner:\n    def __init__(self, lock):\n        self.lock = lock\n"
        "    def __call__(self):\n        return str(self.lock)\ntask = Runner(LOCK)\n",
        "instance",
    ),
    # A function or a class held in a value: the value's digest stood for it by a mark,
    # whatever else it read (its own part's digest "unhashable"): a result was reused.
    "function in a list": (
        "def handle():\n    return str(LOCK)\nHANDLERS = [handle]\n"
        "def task():\n    return HANDLERS[0]()\n",
        "global HANDLERS",
    ),
    "class in a dict": (
        "class Conn:\n    lock = LOCK\nKINDS = {'conn': Conn}\n"
        "def task():\n    return str(KINDS['conn'].lock)\n",
        "global KINDS",
    ),
}


@pytest.mark.parametrize("place", list(UNHASHABLE_PLACES))
def test_a_value_that_cannot_be_hashed_anywhere_means_one_warning_and_no_reuse(place):
    source, path = UNHASHABLE_PLACES[place]
    with kernel() as cells:
        cells.run("import threading\nimport nbflow as nf\nLOCK = threading.Lock()\n")
        cells.run(source)
        flow = nf.Flow(f"unhashable-{place}")
        flow.task(name="t", cache=True)(cells["task"])
        for _ in range(2):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                run = flow.run()
            found = [w for w in caught if issubclass(w.category, nf.CacheWarning)]
            assert len(found) == 1, [str(w.message) for w in found]
            assert str(found[0].message).startswith(f"task 't': {path} cannot be hashed"), str(
                found[0].message
            )
            assert run.states["t"] == "succeeded"  # ran: never served from the cache


def test_a_method_bound_to_a_function_of_another_class_is_run_again_after_an_edit(tmp_path):
    # A list of handlers, each a function bound to an object with types.MethodType: hashed by
    # its pickle (getattr(box, "f")), the edit of f was served from the cache (1, not 2).
    with kernel() as cells:
        cells.run(
            "import types\nimport nbflow as nf\n"
            f"flow = nf.Flow('m', store={str(tmp_path / 's.db')!r})\n"
            "class Box:\n    pass\nbox = Box()\n"
            "def task():\n    return HANDLERS[0]()\nflow.task(name='t', cache=True)(task)\n"
        )
        cells.run("def f(self):\n    return 1\nHANDLERS = [types.MethodType(f, box)]\n")
        assert cells["flow"].run().results == {"t": 1}
        assert cells["flow"].run().states == {"t": "cached"}
        cells.run("def f(self):\n    return 2\nHANDLERS = [types.MethodType(f, box)]\n")
        run = cells["flow"].run()
        assert run.states == {"t": "succeeded"} and run.results == {"t": 2}
        assert run.why("t").startswith("ran: global `HANDLERS` changed since run ")
        # One it cannot hash (a lambda bound to the object holding it): one warning naming
        # the task and the variable, and no reuse.
        cells.run("box.m = types.MethodType(lambda self: 3, box)\nHANDLERS = [box.m]\n")
        for _ in range(2):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                run = cells["flow"].run()
            found = [str(w.message) for w in caught if issubclass(w.category, nf.CacheWarning)]
            assert len(found) == 1, found
            assert found[0].startswith("task 't': global HANDLERS cannot be hashed"), found
            assert run.states == {"t": "succeeded"} and run.results == {"t": 3}


def test_flows_and_tasks_whose_names_join_alike_share_no_cache_entry(tmp_path):
    # The key joined flow, task and identity with "\x00", which a name may hold: the task "c"
    # of flow "a\x00b" and the task "b\x00c" of flow "a" had one key, in one store.
    store = str(tmp_path / "s.db")

    def where() -> list[str]:
        context = nf.context()
        return [context.flow, context.task]

    def run(flow_name: str, task_name: str) -> nf.Run:
        flow = nf.Flow(flow_name, store=store)
        flow.task(name=task_name, cache=True)(where)
        return flow.run()

    assert run("a\x00b", "c").results == {"c": ["a\x00b", "c"]}
    second = run("a", "b\x00c")
    assert second.states == {"b\x00c": "succeeded"}
    assert second.results == {"b\x00c": ["a", "b\x00c"]}
    assert run("a", "b\x00c").states == {"b\x00c": "cached"}


def test_a_task_whose_function_is_in_a_recursive_group_sees_the_other_members(tmp_path):
    # The task's own parts hold the other members by name (a stand-in each, as in any
    # member's parts): the group's digest is a part of its identity. Without it, an edit of
    # what odd reads was served from the cache: even(4) stayed True with STEP = 2.
    with kernel() as cells:
        cells.run(
            f"import nbflow as nf\nflow = nf.Flow('group', store={str(tmp_path / 's.db')!r})\n"
            "STEP = 1\ndef odd(n):\n    return n != 0 and even(n - STEP)\n"
            "def even(n=4):\n    return n == 0 or odd(n - 1)\n"
            "flow.task(name='even', cache=True)(even)\n"
        )
        assert cells["flow"].run().results == {"even": True}
        assert cells["flow"].run().states == {"even": "cached"}
        cells.run("STEP = 2\n")
        run = cells["flow"].run()
        assert run.states == {"even": "succeeded"} and run.results == {"even": False}
        assert run.why("even").startswith("ran: group `even, odd` changed since run ")
