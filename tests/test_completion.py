"""complete_when= on fan-out tasks (nbflow.completion): a partial join of a task's own
elements, on the simulated clock (which elements start, which are cancelled, when the task
and its dependants end), and the expression's checks."""

from __future__ import annotations

import asyncio

import pytest

import nbflow as nf

#: element i sleeps SECONDS[i]; element 2 fails (at t=2)
SECONDS = [5, 1, 2, 4, 3, 6]


def probes(**options) -> nf.Flow:
    flow = nf.Flow("probes", store=None)
    flow.task(name="items")(lambda: list(range(len(SECONDS))))

    @flow.task(fan_out="items", **options)
    async def probe(items):
        await asyncio.sleep(SECONDS[items])
        if items == 2:
            raise ValueError("probe 2 is down")
        return items

    @flow.task
    def after(probe):
        return probe

    return flow


def rows(run: nf.Run) -> dict[str, tuple[str, float, float]]:
    frame = run.timeline()
    t0 = frame["start"].min()
    return {
        r.task: (r.status, (r.start - t0).total_seconds(), (r.end - t0).total_seconds())
        for r in frame.itertuples()
    }


def test_complete_when_with_cancel_rest_cancels_the_elements_in_flight_at_that_moment():
    run = probes(complete_when="succeeded >= 3", cancel_rest=True).run(simulate=True)
    found = rows(run)
    # successes at t=1 (element 1), 3 (element 4), 4 (element 3): the third is at t=4
    assert found["probe[0]"] == ("cancelled", 0.0, 4.0)
    assert found["probe[5]"] == ("cancelled", 0.0, 4.0)
    assert found["probe[2]"] == ("failed", 0.0, 2.0)
    assert found["after"][1] == 4.0 and run.duration == 4.0
    assert run.results["after"] == [1, 3, 4]  # in input order, those that succeeded
    assert run.states == {"items": "succeeded", "probe": "succeeded", "after": "succeeded"}
    assert run.status == "succeeded"
    assert list(run.element_errors["probe"]) == [2]


def test_complete_when_without_cancel_rest_lets_the_rest_run_but_not_count():
    run = probes(complete_when="succeeded >= 3").run(simulate=True)
    found = rows(run)
    assert found["after"][1] == 4.0  # the dependants start at the third success...
    assert found["probe[0]"] == ("succeeded", 0.0, 5.0)  # ...the rest run to their end
    assert found["probe[5]"] == ("succeeded", 0.0, 6.0)
    assert run.results["after"] == run.results["probe"] == [1, 3, 4]  # too late to count
    assert run.state.tasks["probe"].ended_t == 4.0
    assert run.duration == 6.0 and run.status == "succeeded"


def test_no_further_element_starts_once_it_holds():
    """Two lanes: elements start as others end; after the second success none starts."""
    run = probes(complete_when="succeeded >= 2", concurrency=2).run(simulate=True)
    found = rows(run)
    # lane A: element 0 (0-5); lane B: 1 (0-1), 2 (1-3 fails), 3 (3-7)... it holds at 5
    assert sorted(found) == ["after", "items", "probe[0]", "probe[1]", "probe[2]", "probe[3]"]
    assert found["after"][1] == 5.0 and found["probe[3]"] == ("succeeded", 3.0, 7.0)
    assert run.results["after"] == [0, 1]


def test_an_element_waiting_for_a_slot_when_it_holds_never_starts():
    run = probes(complete_when="done >= 1").run(simulate=True, max_workers=2)
    found = rows(run)
    assert sorted(found) == ["after", "items", "probe[0]", "probe[1]"]
    assert run.results["after"] == [1] and found["after"][1] == 1.0


def test_when_it_never_holds_the_task_ends_as_any_fan_out_does():
    failed = probes(complete_when="succeeded >= 6", cancel_rest=True).run(simulate=True)
    assert failed.states["probe"] == "failed" and failed.duration == 6.0
    assert "1 of 6 fan-out elements failed" in str(failed.errors["probe"])
    partial = probes(complete_when="succeeded >= 6", allow_partial=True).run(simulate=True)
    assert partial.results["after"] == [0, 1, 3, 4, 5]


def test_it_may_hold_before_any_element_starts():
    run = probes(complete_when="total < 10").run(simulate=True)
    assert run.results["after"] == [] and run.duration == 0.0
    found = rows(run)  # no element started: the task has one row of its own
    assert sorted(found) == ["after", "items", "probe"] and found["probe"][0] == "succeeded"


def test_an_expression_that_fails_fails_the_task_and_cancels_the_elements():
    run = probes(complete_when="succeeded / done > 0.5").run(simulate=True)
    assert run.states["probe"] == "failed" and run.status == "failed"
    error = run.errors["probe"]
    assert isinstance(error, nf.ConditionError) and error.field == "complete_when"
    assert "ZeroDivisionError" in str(error) and "'done': 0" in str(error)
    elements = {label: row for label, row in rows(run).items() if label.startswith("probe[")}
    assert all(status == "cancelled" for status, *_ in elements.values() if status != "succeeded")
    assert rows(run)["probe"][0] == "failed"  # it failed before its first element: its row


def test_stopping_at_the_first_failure_still_succeeds_with_what_succeeded():
    """When the expression holds the task succeeds, whatever failed (as with allow_partial):
    `failed >= 1` stops early, it does not fail the task."""
    run = probes(complete_when="failed >= 1", cancel_rest=True).run(simulate=True)
    assert run.duration == 2.0 and run.results["after"] == [1]
    assert run.states["probe"] == "succeeded" and list(run.element_errors["probe"]) == [2]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"fan_out": "items", "complete_when": "succeded >= 3"},
            "task 'bad' complete_when 'succeded >= 3': unknown name 'succeded' (did you mean "
            "'succeeded'?); complete_when counts the task's fan-out elements and can use done, "
            "succeeded, failed, total",
        ),
        (
            {"fan_out": "items", "complete_when": "results['x'] > 1"},
            "task 'bad' complete_when \"results['x'] > 1\": unknown name 'results'; "
            "complete_when counts",
        ),
        (
            {"fan_out": "items", "complete_when": "done >="},
            "task 'bad' complete_when 'done >=': syntax error",
        ),
        (
            {"complete_when": "done >= 1"},
            "task 'bad' complete_when='done >= 1' needs fan_out='<parameter>'",
        ),
    ],
)
def test_bad_complete_when_is_refused_when_the_task_is_defined(options, message):
    flow = probes()
    with pytest.raises(nf.DefinitionError) as error:
        flow.task(name="bad", **options)(lambda items: items)
    assert str(error.value).startswith(message)


def test_cancelling_a_task_that_completed_early_cancels_its_late_elements_only():
    """Without cancel_rest the elements in flight run on after the task completed; cancelling
    the task then (here its region) cuts them short, and the task stays succeeded."""
    flow = probes(complete_when="succeeded >= 3", tags=["probing"])

    @flow.task
    async def stopper():
        await asyncio.sleep(4.5)
        nf.context().cancel(tag="probing")

    run = flow.run(simulate=True)
    found = rows(run)
    assert found["probe[0]"] == ("cancelled", 0.0, 4.5)
    assert found["probe[5]"] == ("cancelled", 0.0, 4.5)
    assert run.states["probe"] == "succeeded" and run.results["after"] == [1, 3, 4]
    assert run.duration == 4.5 and run.status == "succeeded"


def test_retries_count_once_an_element_ended_and_allow_partial_keeps_what_succeeded():
    """Elements 0 and 1 fail once, then succeed on their retry (1 s later); it holds at the
    second success counted *as the element ended*, whatever its attempts."""
    flow = nf.Flow("retried-probes", store=None)
    flow.task(name="items")(lambda: [0, 1, 2, 3, 4])
    tries: dict = {}

    @flow.task(fan_out="items", complete_when="succeeded >= 2", allow_partial=True,
               retry=nf.Retry(max_retries=1, delay=1), cancel_rest=True)  # fmt: skip
    async def probe(items):
        tries[items] = tries.get(items, 0) + 1
        await asyncio.sleep(1 + items)
        if items in (0, 1) and tries[items] == 1:
            raise ConnectionError("flaky")
        if items == 4:
            raise ValueError("broken for good")
        return items

    flow.task(name="after")(lambda probe: probe)
    run = flow.run(simulate=True)
    found = rows(run)
    # element 0: fails 0-1, retried 2-3 (succeeds at 3); element 2 succeeds at 3 too
    assert found["probe[2]"] == ("succeeded", 0.0, 3.0)
    assert run.results["after"] == [0, 2] and found["after"][1] == 3.0
    assert {k: v[0] for k, v in found.items() if k.startswith("probe[")} == {
        "probe[0]": "succeeded",
        "probe[1]": "cancelled",
        "probe[2]": "succeeded",
        "probe[3]": "cancelled",
        "probe[4]": "cancelled",
    }  # fmt: skip  (last attempt of each; probe[1]'s first one failed at 2)
    assert tries == {0: 2, 1: 2, 2: 1, 3: 1, 4: 1} and run.duration == 3.0
