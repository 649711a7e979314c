"""Flow versions and their diff; run history by flow."""

from __future__ import annotations

import pytest

import nbflow as nf
from nbflow.versions import VersionDiff


def _unit():
    return 1


def _v1():
    flow = nf.Flow("etl", max_workers=2)

    @flow.task
    def extract():
        return [1, 2]

    @flow.task
    def clean(extract):
        return [x * _unit() for x in extract]

    @flow.task
    def legacy():
        return "old"

    return flow


def _v2():
    flow = _v1()
    flow.remove("legacy")

    @flow.task(priority=5, retry=2)
    def clean(extract, users):  # redefined, as when a notebook cell is edited
        return [x for x in extract if x in users]

    @flow.task
    def users():
        return [1]

    return flow


def test_versions_lists_each_distinct_version_with_its_runs():
    first = _v1()
    first.run()
    first.run()
    second = _v2()
    second.run()
    frame = second.versions()
    assert list(frame.columns) == ["version", "created", "n_tasks", "runs", "last_run", "current"]
    assert frame.version.tolist() == [first.flow_version, second.flow_version]
    assert frame.runs.tolist() == [2, 1] and frame.n_tasks.tolist() == [3, 3]
    assert frame.current.tolist() == [False, True]
    assert first.versions().current.tolist() == [True, False]


def test_diff_versions_says_what_was_added_removed_and_how_tasks_changed():
    a, b = _v1(), _v2()
    a.run()
    b.run()
    diff = nf.diff_versions(a.flow_version, b.flow_version[:8])  # a prefix is enough
    assert isinstance(diff, VersionDiff) and diff
    assert diff.added == ["users"] and diff.removed == ["legacy"]
    assert list(diff.changed) == ["clean"]
    kinds = {c.kind: c.detail for c in diff.changed["clean"]}
    assert kinds["code"] == "source changed, no longer calls _unit()"
    assert "priority 0 -> 5" in kinds["options"] and "retry None -> " in kinds["options"]
    assert kinds["dependencies"] == "+users"
    text = str(diff)
    assert text.splitlines()[0] == f"flow 'etl': {a.flow_version[:12]} -> {b.flow_version[:12]}"
    assert "  + users (added)" in text and "  - legacy (removed)" in text
    assert "  ~ clean: code: source changed" in text
    frame = diff.to_frame()
    assert set(frame.change) == {"added", "removed", "code", "options", "dependencies"}
    assert "+def clean(extract, users):" in diff.source_diff("clean")


def test_diff_of_a_changed_helper_names_the_helper(monkeypatch):
    before = _v1()
    first = before.run()

    def _unit():
        return 2

    monkeypatch.setitem(globals(), "_unit", _unit)
    # The version is read at each run: the same flow object sees the new helper too.
    assert before.flow_version != first.flow_version
    after = _v1()  # defined again, as in a re-run notebook
    assert after.flow_version == before.flow_version
    diff = nf.diff_versions(first.flow_version, after)
    assert {c.detail for c in diff.changed["clean"]} == {"helper _unit() changed"}


def test_diff_of_flow_objects_needs_no_store(monkeypatch):
    monkeypatch.setenv("NBFLOW_STORE", "none")
    diff = nf.diff_versions(_v1(), _v1())
    assert not diff and str(diff).endswith(": no changes")
    assert nf.diff_versions(_v1(), _v2()).added == ["users"]


def test_diff_of_runs_uses_their_versions():
    first, second = _v1().run(), _v2().run()
    assert nf.diff_versions(first, second).removed == ["legacy"]


def test_diff_of_an_unknown_version_is_a_store_error():
    _v1().run()
    with pytest.raises(nf.StoreError, match=r"no flow version 'ffffffff' in store .*versions\(\)"):
        nf.diff_versions("ffffffff", _v1())
    with pytest.raises(TypeError, match="version hashes"):
        nf.diff_versions(42, _v1())


def test_flow_level_option_changes_are_reported():
    a = _v1()
    b = _v1()
    b.max_workers = 4
    diff = nf.diff_versions(a, b)
    assert diff.flow_changes == ["max_workers 2 -> 4"] and not diff.changed


def test_versions_of_a_flow_without_store_is_a_store_error():
    flow = _v1()
    flow.store = None
    with pytest.raises(nf.StoreError, match="flow 'etl' has no store"):
        flow.versions()


def test_the_version_of_one_flow_object_follows_each_change_and_its_undoing():
    # Read again and again from the same flow (as runs do): a global, a closure variable
    # and a default changed in turn each give a new version; undone, the old one is back.
    scope: dict = {}
    source = "RATE = 1\ndef make(factor):\n    def task(x=0):\n        return RATE * factor + x\n"
    exec(source + "    return task\n", scope)
    flow = nf.Flow("loop", store=None)
    for k in range(3):
        flow.task(name=f"t{k}")(scope["make"](2))
    seen = [flow.flow_version, flow.flow_version]
    scope["RATE"] = 2  # a global of every task
    seen.append(flow.flow_version)
    scope["RATE"] = 1
    seen.append(flow.flow_version)
    task = flow.plan().funcs["t1"]
    task.__defaults__ = (5,)  # a default of one task
    seen.append(flow.flow_version)
    task.__defaults__ = (0,)
    seen.append(flow.flow_version)
    task.__closure__[0].cell_contents = 3  # a closure variable of one task
    seen.append(flow.flow_version)
    task.__closure__[0].cell_contents = 2
    seen.append(flow.flow_version)
    assert seen[0] == seen[1] == seen[3] == seen[5] == seen[7]
    assert len({seen[0], seen[2], seen[4], seen[6]}) == 4


def test_a_change_between_the_plan_and_the_run_is_seen_by_the_run():
    # The plan works out identities at definition time; the run reads them again.
    scope: dict = {}
    exec("RATE = 1\ndef task():\n    return RATE\n", scope)
    flow = nf.Flow("later", store=None)
    flow.task(name="t")(scope["task"])
    flow.validate()
    planned = flow.flow_version
    scope["RATE"] = 2
    run = flow.run()
    assert run.results == {"t": 2}
    assert run.flow_version == flow.flow_version != planned


def test_an_identity_that_cannot_be_worked_out_fails_the_run_not_the_plan(monkeypatch):
    # The plan works out identities ahead of the runs; an error doing so is the run's.
    from nbflow.identity import Identities

    def broken(self, calls):
        raise RuntimeError("identity broke")

    flow = nf.Flow("ahead", store=None)
    flow.task(name="t")(lambda: 1)
    monkeypatch.setattr(Identities, "tasks", broken)
    assert flow.validate().names == ("t",)
    with pytest.raises(RuntimeError, match="identity broke"):
        flow.run()
