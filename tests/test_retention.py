"""Retention: nf.prune removes exactly the runs, cache entries and files it says (#23)."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest

import nbflow as nf
from nbflow.store.retention import AUTO_EVERY, seconds
from nbflow.store.sqlite import SQLiteStore


def _flow(store, name="kept", big=False):
    flow = nf.Flow(name, store=store)
    payload = "b" * 5000 if big else "s"
    calls: list[int] = []

    @flow.task(cache=True, cache_ignore="calls")
    def value(n=0):
        calls.append(n)
        return f"{payload}{n}"

    return flow


def _runs(store, flow=None):
    return [r["run_id"] for r in store.runs(flow)]


def test_prune_keeps_the_newest_runs_of_each_flow_and_says_what_it_removed(tmp_path):
    store = SQLiteStore(tmp_path / "p.db", file_bytes=100, keep_runs=None)
    flow = _flow(store, big=True)
    runs = [flow.run(variables={"n": i}).run_id for i in range(5)]
    other = _flow(store, name="other").run().run_id
    files_before = {p for p in store.files.root.rglob("*") if p.is_file()}
    assert len(files_before) == 5

    report = nf.prune(keep_runs=2, store=store)
    assert (report.runs, report.cache_entries, report.files) == (3, 3, 3)
    assert "removed 3 runs" in str(report)
    assert _runs(store, "kept") == runs[3:] and _runs(store, "other") == [other]
    files_after = {p for p in store.files.root.rglob("*") if p.is_file()}
    kept = {store.files.path(store.results(r)["value"].file) for r in runs[3:]}
    assert files_after == kept  # exactly the files of the kept runs
    with contextlib.closing(sqlite3.connect(store.location)) as con:
        assert con.execute(
            "SELECT count(*) FROM records WHERE run_id = ?", (runs[0],)
        ).fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM cache_entries").fetchone() == (3,)  # 2 + other
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # What was removed is no longer served: n=0 runs again; n=4 is still cached.
    assert flow.run(variables={"n": 0}).states["value"] == "succeeded"
    assert flow.run(variables={"n": 4}).states["value"] == "cached"


def test_prune_older_than_removes_only_old_runs_and_never_a_running_one(tmp_path):
    store = SQLiteStore(tmp_path / "age.db", keep_runs=None)
    old, new = _flow(store).run().run_id, None
    with contextlib.closing(sqlite3.connect(store.location)) as con:
        con.execute("UPDATE runs SET started = started - 40 * 86400 WHERE run_id = ?", (old,))
        con.execute(
            "INSERT INTO runs (run_id, flow, version, status, started) "
            "VALUES ('live', 'kept', 'v', 'running', 0)"
        )
        con.commit()
    new = _flow(store).run().run_id
    report = nf.prune(older_than="30d", store=store)
    assert report.runs == 1
    assert sorted(_runs(store, "kept")) == sorted(["live", new])


def test_a_result_a_kept_run_reused_survives_the_run_that_stored_it(tmp_path):
    store = SQLiteStore(tmp_path / "reuse.db", keep_runs=None)
    flow = _flow(store)
    flow.run()  # stores the result
    second = flow.run()  # reuses it (cached)
    assert second.states["value"] == "cached"
    nf.prune(keep_runs=1, store=store)
    assert _runs(store, "kept") == [second.run_id]
    resumed = flow.run(resume=second.run_id)
    assert resumed.states["value"] == "cached" and resumed.results["value"] == "s0"


def test_a_store_keeps_each_flow_to_its_keep_runs_by_itself(tmp_path):
    store = SQLiteStore(tmp_path / "auto.db", keep_runs=3)
    flow = _flow(store)
    for i in range(3 + AUTO_EVERY):
        flow.run(variables={"n": i % 2})
    store.flush()
    assert len(_runs(store, "kept")) == 3  # the last one started with 2 before it kept


def test_history_says_how_much_each_run_and_the_store_take(tmp_path):
    store = SQLiteStore(tmp_path / "sizes.db", keep_runs=None)
    _flow(store).run()
    history = nf.history("kept", store=store)
    assert history.stored_bytes.iloc[0] > 0
    assert history.attrs["store_bytes"] >= history.stored_bytes.sum()


def test_history_counts_the_result_files_each_run_wrote(tmp_path):
    """Large results are files beside the database: ``file_bytes`` says what a run's own
    files take (a file of two identical results once; a result served from the cache is
    the earlier run's), so the runs worth pruning can be told from the table."""
    store = SQLiteStore(tmp_path / "files.db", keep_runs=None, file_bytes=1_000)
    flow = nf.Flow("files", store=store)
    flow.task(name="big", cache=True)(lambda: b"x" * 50_000)
    flow.task(name="same")(lambda: b"x" * 50_000)  # identical: one file
    flow.task(name="small")(lambda: 1)
    flow.run()
    again = flow.run()  # big from the cache; same runs again (no cache), its file exists
    assert again.states["big"] == "cached"
    history = nf.history("files", store=store)
    (size,) = {f.stat().st_size for f in store.files.root.rglob("*") if f.is_file()}
    assert history.file_bytes.tolist() == [size, size]
    assert history.attrs["store_bytes"] >= size + history.stored_bytes.sum()


def test_prune_needs_a_rule_and_well_formed_ages(tmp_path):
    store = SQLiteStore(tmp_path / "bad.db")
    with pytest.raises(ValueError, match="keep_runs=N, older_than"):
        nf.prune(store=store)
    with pytest.raises(ValueError, match="a number and a unit"):
        nf.prune(older_than="a month", store=store)
    assert seconds("2h") == 7200 and seconds("1.5d") == 129600 and seconds(30) == 30


def test_vacuum_gives_space_back(tmp_path):
    store = SQLiteStore(tmp_path / "vac.db", keep_runs=None)
    flow = nf.Flow("fat", store=store)
    for i in range(200):
        flow.task(name=f"t{i}")(lambda i=i: "x" * 4000 + str(i))
    for _ in range(3):
        flow.run()
    store.flush()
    before = store.size()  # the file and its WAL
    report = nf.prune(keep_runs=0, store=store)
    assert report.runs == 3 and report.bytes_freed > before // 2
    assert store.size() == before - report.bytes_freed
