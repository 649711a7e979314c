"""The store's files deleted or replaced while a run goes on: said, never a silent loss.

Real files, deleted or replaced from a task's body as the run goes on (what ``!rm -rf
.nbflow`` in another cell does): the run keeps its outcome but says it is not recorded, one
``StoreWarning`` shows, and the next run records into the file now at the path.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import sqlite3
import warnings

import pytest

import nbflow as nf
from nbflow.store import StoreWarning
from nbflow.store.sqlite import SQLiteStore


def _remove_store_files(path) -> None:
    """What ``rm -rf`` of the store does: the database, its WAL and shared memory, the
    result files' directory."""
    for found in glob.glob(f"{path}*"):
        if os.path.isdir(found):
            shutil.rmtree(found)
        else:
            os.remove(found)


def _flow(store, name, middle, calls, cache=True):
    """``first`` -> ``second`` -> ``last``; ``second`` calls ``middle`` (which does something
    to the store) in the flow's first run only."""
    flow = nf.Flow(name, store=store)
    once = [middle]

    @flow.task(cache=cache, cache_ignore="calls")
    def first(calls=calls):
        calls.append("first")
        return b"f" * 5000  # a result file with file_bytes=1000

    @flow.task(cache=cache, cache_ignore=("calls", "once"))
    def second(first, calls=calls, once=once):
        calls.append("second")
        if once:
            once.pop()()
        return len(first)

    @flow.task(cache=cache, cache_ignore="calls")
    def last(second, calls=calls):
        calls.append("last")
        return second + 1

    return flow


def _run(flow):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = flow.run()
    return run, [str(w.message) for w in caught if issubclass(w.category, StoreWarning)]


def _assert_lost(run, warned, words):
    assert run.status == "succeeded" and set(run.states.values()) == {"succeeded"}
    assert run.results["last"] == 5001  # the outcome is the tasks'
    assert run.recorded is False
    assert words in str(run.store_error), run.store_error
    assert len(warned) == 1, warned
    assert "NOT fully recorded" in warned[0] and words in warned[0], warned


def _assert_records_normally(flow, store, calls, runs_before):
    """The next run: not a warning, recorded, and history shows it."""
    calls.clear()
    again, warned = _run(flow)
    assert warned == [] and again.recorded is True and again.status == "succeeded"
    assert [r["run_id"] for r in store.runs(flow.name)] == [*runs_before, again.run_id]
    history = nf.history(flow.name, store=store)
    assert list(history["run_id"]) == [*runs_before, again.run_id]
    assert (history["status"] == "succeeded").all()
    return again


def test_a_store_deleted_during_a_run_loses_that_run_loudly_and_the_next_records(tmp_path):
    path = tmp_path / "s.db"
    store = SQLiteStore(path, file_bytes=1000)
    calls: list[str] = []

    def delete():
        store.flush()  # the run's start and first result are in the file: then it goes
        _remove_store_files(path)

    flow = _flow(store, "deleted", delete, calls)
    run, warned = _run(flow)
    _assert_lost(run, warned, f"the store file {path} was deleted or replaced")
    assert "run the flow again to record it" in str(run.store_error)
    # Nothing of the lost run went into the new file: it is a new, empty store.
    assert store.runs() == [] and len(nf.history("deleted", store=store)) == 0
    with contextlib.closing(sqlite3.connect(path)) as con:
        assert con.execute("SELECT count(*) FROM records").fetchone() == (0,)
    again = _assert_records_normally(flow, store, calls, [])
    assert calls == ["first", "second", "last"]  # the cache had nothing: all ran again
    assert again.results["last"] == 5001
    calls.clear()
    third, warned = _run(flow)  # ... and the new store's cache serves them now
    assert warned == [] and set(third.states.values()) == {"cached"} and calls == []


def test_a_store_deleted_before_anything_of_the_run_was_written_is_said_too(tmp_path):
    """The file goes before the writer wrote even the run's start (no cache lookup reads
    the store, no commit before the run's end): the run was described for the old file (its
    flow version known there, so not sent again), so it is lost too, rather than written
    into the new file without its version."""
    path = tmp_path / "s.db"
    store = SQLiteStore(path, file_bytes=1000, interval=3600.0)
    calls: list[str] = []
    _flow(store, "early", lambda: None, calls, cache=False).run()  # the version is in the file
    flow = _flow(store, "early", lambda: _remove_store_files(path), calls, cache=False)
    run, warned = _run(flow)
    _assert_lost(run, warned, f"the store file {path} was deleted or replaced")
    _assert_records_normally(flow, store, calls, [])
    (version,) = store.versions("early")  # the new file has the flow's version: sent again
    assert version["runs"] == 1


def test_a_store_replaced_during_a_run_loses_that_run_and_the_next_records_in_the_new(
    tmp_path,
):
    path, other = tmp_path / "s.db", tmp_path / "other.db"
    earlier = nf.Flow("other-flow", store=other)
    earlier.task(name="one")(lambda: 1)
    kept = earlier.run()
    nf.store.close_all()  # other.db is whole, with its WAL checkpointed into it
    assert not os.path.exists(f"{other}-wal")
    store = SQLiteStore(path, file_bytes=1000)
    calls: list[str] = []

    def replace():
        store.flush()
        for suffix in ("-wal", "-shm"):
            os.remove(f"{path}{suffix}")
        os.replace(other, path)  # e.g. a copy of another store moved into place

    flow = _flow(store, "replaced", replace, calls)
    run, warned = _run(flow)
    _assert_lost(run, warned, f"the store file {path} was deleted or replaced")
    assert [r["run_id"] for r in store.runs()] == [kept.run_id]  # the store now at the path
    _assert_records_normally(flow, store, calls, [])
    assert [r["run_id"] for r in store.runs("other-flow")] == [kept.run_id]


def test_a_store_deleted_by_path_while_another_flow_opens_it_loses_only_the_run_going_on(
    tmp_path,
):
    """As in a notebook: ``!rm -rf .nbflow`` while a run goes on, and another cell makes a
    flow on the same path meanwhile. The run going on is told; the store is not stopped
    under it (it was, and the run waited out the store's timeout for a reply)."""
    path = tmp_path / ".nbflow" / "nbflow.db"
    calls: list[str] = []
    other = nf.Flow("other", store=str(path))
    other.task(name="one")(lambda: 1)

    def delete_and_open_again():
        nf.store.open_store(path).flush()
        shutil.rmtree(path.parent)
        nf.store.open_store(path)  # what Flow(store=path).run() resolves first

    flow = _flow(str(path), "by-path", delete_and_open_again, calls)
    run, warned = _run(flow)
    _assert_lost(run, warned, f"the store file {path} was deleted or replaced")
    done, warned = _run(other)
    assert warned == [] and done.recorded is True
    store = nf.store.open_store(path)
    _assert_records_normally(flow, store, calls, [])
    assert [r["flow"] for r in store.runs()] == ["other", "by-path"]


def test_a_store_deleted_between_runs_is_a_new_store_and_the_next_run_records(tmp_path):
    path = tmp_path / "s.db"
    store = SQLiteStore(path, file_bytes=1000)
    calls: list[str] = []
    flow = _flow(store, "between", lambda: None, calls)
    flow.run()
    _remove_store_files(path)  # no run going on: nothing is lost that the user did not delete
    _assert_records_normally(flow, store, calls, [])  # (nothing read the store in between)
    assert calls == ["first", "second", "last"]


def test_result_files_deleted_during_a_run_are_said_lost_and_not_offered_again(tmp_path):
    path = tmp_path / "s.db"
    store = SQLiteStore(path, file_bytes=1000)
    calls: list[str] = []

    def delete_results():
        store.flush()  # first's result file and its row are written
        shutil.rmtree(store.files.root)

    flow = _flow(store, "files", delete_results, calls)
    run, warned = _run(flow)
    _assert_lost(run, warned, f"the store's result files {store.files.root} were deleted")
    assert "the stored results of 'first' are lost" in str(run.store_error)
    # The rest of the run is recorded; the lost result is not offered to the cache.
    assert [r["run_id"] for r in store.runs()] == [run.run_id]
    again = _assert_records_normally(flow, store, calls, [run.run_id])
    assert calls == ["first"]  # its file was lost: it ran (without a warning), the same bytes
    assert again.states == {"first": "succeeded", "second": "cached", "last": "cached"}
    calls.clear()
    third, warned = _run(flow)
    assert warned == [] and set(third.states.values()) == {"cached"} and calls == []


class _DeletesItsDirectory:
    """A serialiser whose ``dump`` deletes the result files' directory half-way through."""

    name, suffix = "deleting", ".bin"

    def __init__(self, root) -> None:
        self.root, self.dumps = root, 0

    def accepts(self, value):
        return isinstance(value, bytearray)

    def dump(self, value, file):
        self.dumps += 1
        file.write(value[:10])
        if self.dumps == 1:
            file.flush()
            shutil.rmtree(self.root)
        file.write(value[10:])

    def load(self, file):
        return bytearray(file.read())

    def size_hint(self, value):
        return len(value)


def test_a_result_file_whose_directory_is_deleted_as_it_is_written_is_written_again(tmp_path):
    store = SQLiteStore(tmp_path / "s.db", file_bytes=1000)
    store.files.root.mkdir(parents=True)
    serializer = store.serializers.register(_DeletesItsDirectory(store.files.root))
    flow = nf.Flow("rewritten", store=store)
    flow.task(name="big", cache=True)(lambda: bytearray(b"z" * 5000))
    run, warned = _run(flow)
    assert warned == [] and run.recorded is True and serializer.dumps == 2
    row = store.results(run.run_id)["big"]
    assert store.read_result(row) == bytearray(b"z" * 5000)


@pytest.mark.parametrize("kind", ["db", "results"])
def test_a_lost_run_is_told_once_not_again_by_the_next_flush(tmp_path, kind):
    """As for a full disk: the run that lost its records is told; the next
    ``store.flush()`` does not raise that again."""
    path = tmp_path / "s.db"
    store = SQLiteStore(path, file_bytes=1000)
    target = (lambda: _remove_store_files(path)) if kind == "db" else None

    def middle():
        store.flush()
        if target is not None:
            target()
        else:
            shutil.rmtree(store.files.root)

    run, warned = _run(_flow(store, "flush", middle, []))
    assert run.recorded is False and len(warned) == 1
    store.flush()  # told to the run already: not raised again
