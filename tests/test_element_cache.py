"""``cache=True`` on a fan-out task caches each element by its own input (nbflow.element_cache's
ElementCache), through the real SQLite store and the in-memory one; resume too."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

import nbflow as nf


def repo_flow(store: Any, calls: list[str], **options: Any) -> nf.Flow:
    """repos (a run variable) -> fetch, cached per repository."""
    flow = nf.Flow("repos", store=store, on_error="continue")

    @flow.task
    def repos(names):
        return list(names)

    @flow.task(fan_out={"repo": "repos"}, cache=True, cache_ignore="calls", **options)
    def fetch(repo):
        calls.append(repo)
        return repo.upper()

    return flow


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    if request.param == "sqlite":
        yield str(tmp_path / "cache.db")
        return
    memory = nf.MemoryStore()
    yield memory
    memory.close()


def test_adding_one_element_to_the_source_runs_exactly_that_element(store: Any):
    calls: list[str] = []
    flow = repo_flow(store, calls)
    first = flow.run(variables={"names": ["nbflow", "dask", "prefect"]})
    assert first.results["fetch"] == ["NBFLOW", "DASK", "PREFECT"] and len(calls) == 3
    calls.clear()
    run = flow.run(variables={"names": ["nbflow", "dask", "airflow", "prefect"]})
    assert calls == ["airflow"]  # the one new repository, nothing else
    assert run.results["fetch"] == ["NBFLOW", "DASK", "AIRFLOW", "PREFECT"]
    rows = run.timeline().sort_values("element")
    assert rows[rows.base_task == "fetch"].status.tolist() == [
        "cached", "cached", "succeeded", "cached",
    ]  # fmt: skip
    assert run.states["fetch"] == "succeeded"
    assert run.why("fetch") == (
        "ran: 3 of 4 elements served from the cache (each by its own input), 1 ran"
    )
    calls.clear()
    again = flow.run(variables={"names": ["dask", "nbflow"]})  # fewer, reordered
    assert calls == [] and again.results["fetch"] == ["DASK", "NBFLOW"]
    assert again.states["fetch"] == "cached"


def test_a_streamed_source_is_cached_element_by_element(store: Any):
    calls: list[int] = []
    flow = nf.Flow("streamed-cache", store=store)

    @flow.task
    async def pages(count):
        for page in range(count):
            await asyncio.sleep(0)
            yield page

    @flow.task(fan_out="pages", key="f'page-{item}'", cache=True, cache_ignore="calls")
    async def parse(pages):
        calls.append(pages)
        return pages * 10

    flow.run(variables={"count": 3})
    calls.clear()
    run = flow.run(variables={"count": 4})
    assert calls == [3] and run.results["parse"] == [0, 10, 20, 30]
    assert run.timeline().set_index("task").loc["parse[page-3]", "status"] == "succeeded"
    stored = flow.state_store.results(run.run_id)
    assert "parse[page-3]" in stored  # the element's result, under its key


def test_a_change_of_code_or_of_another_input_reruns_every_element(tmp_path: Any):
    calls: list[str] = []
    store = str(tmp_path / "c.db")
    flow = repo_flow(store, calls)
    names = {"names": ["a", "b"]}
    flow.run(variables=names)

    @flow.task(fan_out={"repo": "repos"}, cache=True, cache_ignore="calls")
    def fetch(repo):  # new code: a new identity
        calls.append(repo)
        return repo * 2

    calls.clear()
    assert flow.run(variables=names).results["fetch"] == ["aa", "bb"]
    assert sorted(calls) == ["a", "b"]

    @flow.task(fan_out={"repo": "repos"}, cache=True, cache_ignore="calls")
    def fetch(repo, suffix):  # noqa: F811  # another input
        calls.append(repo)
        return repo + suffix

    calls.clear()
    flow.run(variables={**names, "suffix": "!"})
    assert sorted(calls) == ["a", "b"]
    calls.clear()
    run = flow.run(variables={**names, "suffix": "?"})
    assert sorted(calls) == ["a", "b"] and run.results["fetch"] == ["a?", "b?"]


def test_a_run_that_failed_at_one_element_reruns_only_that_element(store: Any):
    calls: list[str] = []
    broken = {"dask"}
    flow = nf.Flow("resumed", store=store)

    @flow.task
    def repos():
        return ["nbflow", "dask", "prefect"]

    @flow.task(fan_out={"repo": "repos"}, cache=True, cache_ignore=("calls", "broken"))
    def fetch(repo):
        calls.append(repo)
        if repo in broken:
            raise ConnectionError(repo)
        return repo.upper()

    @flow.task
    def report(fetch):
        return len(fetch)

    failed = flow.run()
    assert failed.status == "failed" and sorted(calls) == ["dask", "nbflow", "prefect"]
    broken.clear()
    calls.clear()
    run = flow.run(resume="last")
    assert calls == ["dask"]  # the elements that succeeded were stored as they ended
    assert run.status == "succeeded" and run.results["report"] == 3
    assert run.states["repos"] == "cached"  # resumed
    calls.clear()
    assert flow.run(resume="last").states["fetch"] == "cached" and calls == []


def test_a_cache_key_callable_is_called_per_element(tmp_path: Any):
    calls: list[str] = []
    flow = nf.Flow("keyed-cache", store=str(tmp_path / "k.db"))

    @flow.task(fan_out="words", cache_key=lambda words: words.lower(), cache_ignore="calls")
    def shout(words):
        calls.append(words)
        return words.upper()

    flow.run(variables={"words": ["Hi", "there"]})
    calls.clear()
    run = flow.run(variables={"words": ["HI", "There", "new"]})
    assert calls == ["new"] and run.results["shout"] == ["HI", "THERE", "NEW"]


def test_without_a_store_cache_true_on_a_fan_out_does_nothing_but_warn():
    calls: list[int] = []
    flow = nf.Flow("nostore", store=None)

    @flow.task(fan_out="n", cache=True)
    def each(n):
        calls.append(n)
        return n

    with pytest.warns(nf.StoreWarning, match="no store"):
        flow.run(variables={"n": [1, 2]})
    with pytest.warns(nf.StoreWarning):
        flow.run(variables={"n": [1, 2]})
    # both runs ran both elements; a sync element runs on a worker thread, so the two
    # elements of one run may append in either order
    assert sorted(calls[:2]) == [1, 2] and sorted(calls[2:]) == [1, 2]


def test_a_damaged_cached_element_is_run_again_with_a_warning(tmp_path: Any):
    calls: list[str] = []
    path = tmp_path / "damaged.db"
    flow = repo_flow(str(path), calls)
    flow.run(variables={"names": ["a", "b"]})
    flow.state_store.flush()  # the run's last commit may still be going on (write-behind)
    with sqlite3.connect(path) as con:  # the rows stay, their bytes vanish (a hand edit)
        con.execute("UPDATE records SET data = x'' WHERE data IS NOT NULL")
    calls.clear()
    with pytest.warns(nf.StoreWarning, match=r"element fetch\[0\]: its stored result .* cannot"):
        run = flow.run(variables={"names": ["a", "b"]})
    assert sorted(calls) == ["a", "b"] and run.results["fetch"] == ["A", "B"]
