"""Worker pools and placement policies: round-robin, least-loaded (live load), custom, requests."""

from __future__ import annotations

import asyncio

import pytest

import nbflow as nf
from nbflow.pool import WorkerLoad, least_loaded


def test_round_robin_cycles_through_workers():
    pool = nf.Pool({"a": 1, "b": 1, "c": 1}, policy="round_robin")
    chosen = []
    for i in range(6):
        worker = pool.acquire(f"t{i}")
        chosen.append(worker)
        pool.release(worker)
    assert chosen == ["a", "b", "c", "a", "b", "c"]


def test_round_robin_skips_full_workers():
    pool = nf.Pool({"a": 1, "b": 1, "c": 1}, policy="round_robin")
    assert pool.acquire("t0") == "a"
    assert pool.acquire("t1") == "b"
    pool.release("a")
    assert pool.acquire("t2") == "c"
    assert pool.acquire("t3") == "a"
    assert pool.acquire("t4") is None  # every slot is taken


def test_least_loaded_uses_live_load():
    busy = WorkerLoad("busy", capacity=2, in_flight=1, index=0)
    idle = WorkerLoad("idle", capacity=2, in_flight=0, index=1)
    assert least_loaded("t", [busy, idle]) == "idle"


def test_least_loaded_sends_next_task_to_the_idle_worker_in_a_run():
    """Worker cpu-a is busy with a long task; the short tasks all go to cpu-b."""
    pool = nf.Pool({"cpu-a": 2, "cpu-b": 2}, policy="least_loaded")
    flow = nf.Flow("ll", pool=pool, store=None)

    @flow.task(priority=10)
    async def long(worker):
        await asyncio.sleep(1.0)
        return worker

    for i in range(3):

        @flow.task(name=f"short{i}", after=[] if i == 0 else [f"short{i - 1}"])
        async def short(worker):
            await asyncio.sleep(0.01)
            return worker

    run = flow.run(simulate=True)
    assert run.results["long"] == "cpu-a"
    assert [run.results[f"short{i}"] for i in range(3)] == ["cpu-b", "cpu-b", "cpu-b"]
    assert run.timeline().set_index("task")["worker"].to_dict()["long"] == "cpu-a"


def test_round_robin_in_a_run_alternates_workers():
    flow = nf.Flow("rr", pool=nf.Pool(["w1", "w2"], policy="round_robin"), store=None)
    for i in range(4):
        flow.task(name=f"t{i}", after=[f"t{i - 1}"] if i else [])(lambda worker: worker)
    run = flow.run()
    assert [run.results[f"t{i}"] for i in range(4)] == ["w1", "w2", "w1", "w2"]


def test_capacity_bounds_concurrency():
    flow = nf.Flow("cap", pool=nf.Pool({"only": 2}), store=None)
    in_flight, peak = [0], [0]

    async def work():
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        await asyncio.sleep(0.01)
        in_flight[0] -= 1

    for i in range(8):
        flow.task(name=f"t{i}")(work)
    flow.run()
    assert peak[0] == 2


def test_tasks_ask_for_a_worker_by_name_or_tag():
    pool = nf.Pool({"cpu": 2, "gpu-1": 1}, tags={"gpu-1": ["gpu"]}, policy="least_loaded")
    flow = nf.Flow("req", pool=pool, store=None)
    flow.task(name="train", worker="gpu")(lambda worker: worker)
    flow.task(name="prep", worker="cpu")(lambda worker: worker)
    run = flow.run()
    assert run.results == {"train": "gpu-1", "prep": "cpu"}


def test_request_matching_no_worker_is_a_definition_error():
    flow = nf.Flow("req", pool=nf.Pool({"cpu": 1}), store=None)
    flow.task(name="train", worker="tpu")(lambda: 1)
    with pytest.raises(nf.DefinitionError, match="task 'train' worker='tpu' matches no worker"):
        flow.run()


def test_custom_policy_callable_and_bad_choice():
    def always_last(task, candidates):
        return candidates[-1].name

    pool = nf.Pool({"a": 1, "b": 1}, policy=always_last)
    assert pool.acquire("t") == "b"
    rogue = nf.Pool({"a": 1}, policy=lambda task, candidates: "zzz")
    with pytest.raises(nf.DefinitionError, match="chose 'zzz'"):
        rogue.acquire("t")


@pytest.mark.parametrize(
    ("workers", "message"), [({}, "at least one worker"), ({"a": 0}, "capacity")]
)
def test_bad_pools_are_refused(workers, message):
    with pytest.raises(nf.DefinitionError, match=message):
        nf.Pool(workers)


def test_unknown_policy_name_is_refused():
    with pytest.raises(nf.DefinitionError, match="unknown pool policy 'random'"):
        nf.Pool({"a": 1}, policy="random")
