"""Run history, flow versions and what changed between two versions.

``nf.history(flow_name=None)`` and ``flow.versions()`` read the store into pandas
DataFrames. ``nf.diff_versions(a, b)`` compares two versions of a flow task by task: which
tasks were added or removed, and for each task present in both, whether its code (its own
source or a notebook helper it calls), its options or its dependencies changed.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import StoreError
from .identity import SEP, Identity, Part, is_code_path
from .store import StateStore, default_location, resolve_store
from .store.recorder import describe_version

if TYPE_CHECKING:
    import pandas as pd

    from .flow import Flow

HISTORY_COLUMNS = [
    "run_id", "flow", "flow_version", "status", "start", "end", "duration_s", "variables",
    "resumed_from", "parent_run", "stored_bytes", "file_bytes",
]  # fmt: skip
VERSION_COLUMNS = ["version", "created", "n_tasks", "runs", "last_run", "current"]
#: Spec fields that are not "options" in a diff (they are identity, code or dependencies).
_NOT_OPTIONS = frozenset({"name", "index", "params", "source_hash", "after", "is_async"})


def _store(store: Any) -> StateStore:
    found = resolve_store("default" if store is None else store)
    if found is None:
        raise StoreError(
            "no store to read: NBFLOW_STORE is 'none' (or store=None); pass store=PATH"
            if store is None
            else f"no store to read from {store!r}"
        )
    return found


def _timestamps(frame: pd.DataFrame, *columns: str) -> None:
    import pandas as pd

    for column in columns:
        frame[column] = pd.to_datetime(frame[column], unit="s")


def history(flow_name: str | None = None, store: Any = None) -> pd.DataFrame:
    """Every recorded run (of ``flow_name``), oldest first, as a pandas DataFrame.

    Columns: ``run_id``, ``flow``, ``flow_version``, ``status`` (``running``, ``succeeded``,
    ``failed``, ``cancelled``, or ``interrupted``: its process died before it ended, see
    :mod:`nbflow.store.liveness`; a run that may still be going on is ``running``),
    ``start``, ``end``, ``duration_s``, ``variables`` (JSON), ``resumed_from``,
    ``parent_run``, ``stored_bytes`` (what the run's events and results take in the
    database), ``file_bytes`` (what the result files of its own results take: large
    results are files beside the database; identical results share one file, counted in
    each run that wrote it). The frame's ``attrs["store_bytes"]`` is the store's whole size
    on disk, files included. ``store``: a path or store
    object; default: the default store (see :func:`nbflow.store.default_location`).

    Raises:
        StoreError: there is no store, or it cannot be read.
    """
    import pandas as pd

    found = _store(store)
    rows = found.runs(flow_name)
    sizes = found.run_sizes()
    files = found.run_file_sizes()
    frame = pd.DataFrame(
        [
            (
                r["run_id"],
                r["flow"],
                r["version"],
                r["status"],
                r["started"],
                r["ended"],
                (r["ended"] - r["started"]) if r["ended"] and r["started"] else None,
                r["variables"],
                r["resumed_from"],
                r["parent_run"],
                sizes.get(r["run_id"], 0),
                files.get(r["run_id"], 0),
            )
            for r in rows
        ],
        columns=HISTORY_COLUMNS,
    )
    frame["duration_s"] = frame["duration_s"].astype(float)
    frame.attrs["store_bytes"] = found.size()
    _timestamps(frame, "start", "end")
    return frame


def flow_versions(flow: Flow) -> pd.DataFrame:
    """The recorded versions of ``flow`` (see :meth:`nbflow.Flow.versions`).

    Raises:
        StoreError: the flow has no store, or it cannot be read.
    """
    import pandas as pd

    store = flow.state_store
    if store is None:
        raise StoreError(
            f"flow {flow.name!r} has no store (store=None or NBFLOW_STORE=none), so no "
            "versions are recorded; give it one with Flow(..., store=PATH)"
        )
    current = flow.flow_version
    rows = store.versions(flow.name)
    frame = pd.DataFrame(
        [
            (
                r["version"],
                r["created"],
                r["n_tasks"],
                r["runs"],
                r["last_run"],
                r["version"] == current,
            )
            for r in rows
        ],
        columns=VERSION_COLUMNS,
    )
    _timestamps(frame, "created", "last_run")
    return frame


# -- diff -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskChange:
    """One way a task changed: ``kind`` is ``code``, ``options``, ``values`` (a default, a
    closure variable, a global or a module it depends on) or ``dependencies``."""

    task: str
    kind: str
    detail: str


@dataclass(slots=True)
class VersionDiff:
    """What changed from version ``a`` to version ``b`` of a flow.

    ``added``/``removed``: task names; ``changed``: task -> its :class:`TaskChange` list;
    ``flow_changes``: flow-level options that differ. ``str(diff)`` reads as a summary;
    ``diff.to_frame()`` is one row per change; ``diff.source_diff(task)`` is a unified diff
    of the task's code. A diff is falsy when nothing changed.
    """

    flow: str
    a: str
    b: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[TaskChange]] = field(default_factory=dict)
    flow_changes: list[str] = field(default_factory=list)
    _sources: tuple[dict[str, Any], dict[str, Any]] = field(default=({}, {}), repr=False)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.flow_changes)

    def to_frame(self) -> pd.DataFrame:
        """One row per change: ``task``, ``change`` (added, removed, code, options,
        dependencies, flow) and ``detail``."""
        import pandas as pd

        rows = [(t, "added", "") for t in self.added]
        rows += [(t, "removed", "") for t in self.removed]
        rows += [(c.task, c.kind, c.detail) for cs in self.changed.values() for c in cs]
        rows += [("", "flow", d) for d in self.flow_changes]
        return pd.DataFrame(rows, columns=["task", "change", "detail"])

    def source_diff(self, task: str) -> str:
        """Unified diff of ``task``'s source (and its helpers') from ``a`` to ``b``."""
        old, new = (_task_source(s, task) for s in self._sources)
        lines = difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            f"{task} @ {self.a[:8]}",
            f"{task} @ {self.b[:8]}",
        )
        return "".join(lines)

    def __str__(self) -> str:
        lines = [f"flow {self.flow!r}: {self.a[:12]} -> {self.b[:12]}"]
        if not self:
            return lines[0] + ": no changes"
        lines += [f"  + {t} (added)" for t in self.added]
        lines += [f"  - {t} (removed)" for t in self.removed]
        for task, changes in self.changed.items():
            what = "; ".join(f"{c.kind}: {c.detail}" for c in changes)
            lines.append(f"  ~ {task}: {what}")
        lines += [f"  * flow: {d}" for d in self.flow_changes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"<VersionDiff {self.flow!r} {self.a[:8]}->{self.b[:8]} added={len(self.added)} "
            f"removed={len(self.removed)} changed={len(self.changed)}>"
        )

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(str(self))}</pre>"


def _task_source(sources: dict[str, Any], task: str) -> str:
    code = sources.get("code", {})
    key = sources.get("tasks", {}).get(task)
    text = code.get(key, "") if key else ""
    for name, helper in sorted(sources.get("helpers", {}).get(task, {}).items()):
        text += f"\n# helper {name}\n{code.get(helper, '')}"
    return text


def _resolve(value: Any, store: StateStore | None, flow: str | None) -> dict[str, Any]:
    """A version as ``{flow, version, spec (dict), sources (dict)}``."""
    from .flow import Flow
    from .run import Run

    if isinstance(value, Flow):
        spec = value.spec()
        funcs = {n: t.fn for n, t in value.tasks.items()}
        identity = value.identify()
        spec_json, sources = describe_version(spec, funcs, identity)
        return {
            "flow": value.name,
            "version": identity.version,
            "spec": json.loads(spec_json),
            "sources": json.loads(sources),
        }
    if isinstance(value, Run):
        flow, value = value.flow, value.flow_version
    if not isinstance(value, str):
        raise TypeError(
            f"diff_versions takes version hashes (or prefixes), Flow or Run objects, got "
            f"{type(value).__name__}"
        )
    if store is None:
        raise StoreError(
            f"no store to look version {value!r} up in; pass store=PATH or set NBFLOW_STORE"
        )
    found = store.version(value, flow)
    if found is None:
        raise StoreError(
            f"no flow version {value!r} in store {store.location}; see flow.versions() for "
            "recorded versions"
        )
    return {
        "flow": found["flow"],
        "version": found["version"],
        "spec": json.loads(found["spec"]),
        "sources": json.loads(found["sources"]),
    }


def diff_versions(a: Any, b: Any, *, store: Any = None) -> VersionDiff:
    """Compare two versions of a flow: tasks added, removed and changed (and how).

    ``a`` and ``b`` are version hashes (a unique prefix is enough) as shown by
    ``flow.versions()``, ``Run`` objects, or ``Flow`` objects (their definition now, which
    needs no store). ``store``: a path or store object to look versions up in (default: the
    store of the ``Flow`` given, else the default store).

    Raises:
        StoreError: a version is not in the store, or there is no store to look it up in.
        TypeError: ``a`` or ``b`` is not a version, Run or Flow.
    """
    found_store = None
    if any(not _is_flow(v) for v in (a, b)):
        flows = [v for v in (a, b) if _is_flow(v)]
        if store is None and flows and flows[0].state_store is not None:
            found_store = flows[0].state_store  # the store the Flow given records into
        else:
            found_store = _store(store)
    old = _resolve(a, found_store, None)
    new = _resolve(b, found_store, old["flow"])
    return compare(old, new)


def _is_flow(value: Any) -> bool:
    from .flow import Flow

    return isinstance(value, Flow)


def _deps(task: dict[str, Any], names: set[str]) -> set[str]:
    params = {p["name"] for p in task.get("params", [])}
    return {p for p in params if p in names and p != task["name"]} | set(task.get("after", []))


def compare(old: dict[str, Any], new: dict[str, Any]) -> VersionDiff:
    """Diff two resolved versions (``{flow, version, spec, sources}`` dicts)."""
    old_tasks = {t["name"]: t for t in old["spec"].get("tasks", [])}
    new_tasks = {t["name"]: t for t in new["spec"].get("tasks", [])}
    diff = VersionDiff(
        old["flow"],
        old["version"],
        new["version"],
        added=[n for n in new_tasks if n not in old_tasks],
        removed=[n for n in old_tasks if n not in new_tasks],
        _sources=(old["sources"], new["sources"]),
    )
    old_names, new_names = set(old_tasks), set(new_tasks)
    for name, before in old_tasks.items():
        after = new_tasks.get(name)
        if after is None:
            continue
        changes = []
        if before.get("source_hash") != after.get("source_hash") or _task_source(
            old["sources"], name
        ) != _task_source(new["sources"], name):
            changes.append(TaskChange(name, "code", _code_detail(old, new, name)))
        options = [
            f"{key} {before.get(key)!r} -> {after.get(key)!r}"
            for key in sorted(set(before) | set(after))
            if key not in _NOT_OPTIONS and before.get(key) != after.get(key)
        ]
        if options:
            changes.append(TaskChange(name, "options", ", ".join(options)))
        values = _value_changes(old["sources"], new["sources"], name)
        if values:
            changes.append(TaskChange(name, "values", "; ".join(values)))
        deps_before, deps_after = _deps(before, old_names), _deps(after, new_names)
        if deps_before != deps_after:
            moves = [f"+{d}" for d in sorted(deps_after - deps_before)]
            moves += [f"-{d}" for d in sorted(deps_before - deps_after)]
            changes.append(TaskChange(name, "dependencies", " ".join(moves)))
        if changes:
            diff.changed[name] = changes
    for key in ("max_workers", "on_error", "strategy", "branches"):
        if old["spec"].get(key) != new["spec"].get(key):
            diff.flow_changes.append(f"{key} {old['spec'].get(key)!r} -> {new['spec'].get(key)!r}")
    return diff


def _value_changes(old: dict[str, Any], new: dict[str, Any], task: str) -> list[str]:
    """What the task depends on that changed besides code: defaults, closures, globals,
    modules (from the identities both versions recorded; older versions recorded none)."""
    before, after = old.get("parts", {}).get(task), new.get("parts", {}).get(task)
    if before is None or after is None:
        return []
    now = Identity(None, tuple(Part(*p) for p in after))
    then = Identity(None, tuple(Part(*p) for p in before))
    # A global a task (or helper) reads that came or went with an edit of its code is told
    # by that code change, not once more.
    edited = {
        path.rsplit(SEP, 1)[0] if SEP in path else ""
        for path, a, b in now.differences(then)
        if path.endswith("source") and a is not None and b is not None
    }

    def skip(path: str) -> bool:
        owner = path.rsplit(SEP, 1)[0] if SEP in path else ""
        came_or_went = path not in {p.path for p in then.parts} or path not in {
            p.path for p in now.parts
        }
        return is_code_path(path) or (owner in edited and came_or_went)

    return now.changes_since(then, skip=skip)


def _code_detail(old: dict[str, Any], new: dict[str, Any], task: str) -> str:
    def parts(sources: dict[str, Any]) -> dict[str, str]:
        found = {"<own>": sources.get("tasks", {}).get(task, "")}
        found.update(sources.get("helpers", {}).get(task, {}))
        return found

    before, after = parts(old["sources"]), parts(new["sources"])
    what = []
    if before.get("<own>") != after.get("<own>"):
        what.append("source changed")
    for name in sorted((set(before) | set(after)) - {"<own>"}):
        if name not in before:
            what.append(f"calls new helper {name}()")
        elif name not in after:
            what.append(f"no longer calls {name}()")
        elif before[name] != after[name]:
            what.append(f"helper {name}() changed")
    return ", ".join(what) or "source changed"


def why(run: Any, task: str, *, store: Any = None) -> str:
    """Why ``task`` of a run ran, or why its result was reused, in plain words.

    ``run`` is a :class:`~nbflow.run.Run` (the same as ``run.why(task)``) or the id of any
    run recorded in ``store`` (default: the default store).

    Raises:
        KeyError: no such run in the store, or the task has no result in it.
        StoreError: there is no store, or it cannot be read.
    """
    from .reuse import why as explain
    from .reuse import why_recorded
    from .run import Run

    if isinstance(run, Run):
        return explain(run, task)
    return why_recorded(_store(store), str(run), task)


__all__ = [
    "TaskChange",
    "VersionDiff",
    "default_location",
    "diff_versions",
    "history",
    "why",
]
