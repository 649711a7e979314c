"""Why a task ran, or why its result was reused, in plain words: ``run.why("task")``.

Like Bazel's ``--explain``: every answer names the run it compares with and the parts of the
task's identity (:mod:`nbflow.identity`) or inputs that differ::

    ran: global `RATE` changed (0.1 -> 0.25) since run 4f2c1a9e
    cached: same source, 1 default and 3 globals and inputs as run 4f2c1a9e
    resumed from run 4f2c1a9e: same source and inputs

A run answers from what it decided as it went (``nbflow.cache.Decision``) and from the
store, which keeps each result's identity: so :func:`why` also explains any recorded run,
given its id.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from .identity import Identity
from .lifecycle import TaskState
from .store.keys import CONTROLLED, NONE_DIGEST, controlled
from .store.results import ResultRow

if TYPE_CHECKING:
    from .run import Run
    from .store.sqlite import SQLiteStore


def why(run: Run, task: str) -> str:
    """Why ``task`` of ``run`` ran, or was served from the store, in one line.

    Raises:
        KeyError: ``task`` is not a task of the run.
    """
    record = run.state.tasks[task]
    durable = run._durable
    state = record.state
    if state not in (TaskState.SUCCEEDED, TaskState.CACHED):
        return _not_run(record)
    if durable is None:
        return "ran: the flow has no store, so no result is reused (give it one: store=PATH)"
    hooks, context = durable.hooks, durable.recorder.context
    identity = context.identity.tasks[task]
    decision = hooks.decisions.get(task)
    store = durable.store
    if state is TaskState.CACHED and decision is not None and decision.source is not None:
        return _reused(decision.kind, decision.source, identity)
    if decision is not None and decision.kind == "elements":  # a fan-out cached per element
        return "ran: " + decision.reason
    if identity.digest is None:
        path, reason = identity.unhashable[0]
        return f"ran: {path} cannot be hashed ({reason}), so this task is never reused"
    reason = decision.reason if decision else "off"
    inputs = _inputs(hooks, task)
    difference = _difference(
        store, run.run_id, run.flow, task, identity, inputs, run.state.wall_start, reason
    )
    return "ran: " + difference


def why_recorded(store: SQLiteStore, run_id: str, task: str) -> str:
    """:func:`why` for any run recorded in ``store`` (from its results and identities).

    Raises:
        KeyError: the run is not in the store, or ``task`` has no result in it.
    """
    record = store.run(run_id)
    if record is None:
        raise KeyError(f"no run {run_id!r} in store {store.location}")
    rows = store.results(run_id)
    if task not in rows:
        raise KeyError(f"task {task!r} has no result in run {run_id} (it did not succeed)")
    row = rows[task]
    digest = row.identity
    if digest is not None and controlled(digest):
        digest = digest[len(CONTROLLED) :]
    parts = store.identity_parts(digest) if digest else None
    identity = Identity.from_json(digest, parts)
    if row.reused_from is not None:
        return _reused("reused", row.reused_from, identity)
    if digest is None:
        return "ran: something it depends on cannot be hashed, so this task is never reused"
    if digest != row.identity:
        return (
            "ran, and cancelled or finished part of its run (nf.context().cancel/finish): "
            "its result alone cannot replay that, so it is never reused"
        )
    inputs = _recorded_inputs(store, record, task, rows)
    return "ran: " + _difference(
        store, run_id, record["flow"], task, identity, inputs, record["started"]
    )


def _reused(kind: str, source: str, identity: Identity) -> str:
    same = f"same {identity.summary()} and inputs as run {source[:8]}"
    if kind == "resumed":
        return f"resumed from run {source[:8]}: {same[: -len(f' as run {source[:8]}')]}"
    return f"{'cached' if kind == 'cached' else 'reused'}: {same}"


def _difference(
    store: SQLiteStore,
    run_id: str,
    flow: str,
    task: str,
    identity: Identity,
    inputs: dict[str, str | None] | None,
    before: float,
    reason: str = "",
) -> str:
    """What differs from the newest earlier result of ``task`` in ``flow``."""
    if reason == "unreadable":
        return (
            "the store could not be read as it ran (a StoreWarning said why), so nothing was reused"
        )
    earlier = [r for r in store.task_results(flow, task, before) if r.run_id != run_id]
    if not earlier:
        return "no earlier result of this task in the store"
    last = earlier[0]
    since = f"since run {last.run_id[:8]}"
    if controlled(last.identity):
        return (
            f"in run {last.run_id[:8]} it cancelled or finished part of its run "
            "(nf.context().cancel/finish), which its result alone cannot replay, so that "
            "result is never reused"
        )
    if last.identity != identity.digest:
        old = Identity.from_json(last.identity, store.identity_parts(last.identity or ""))
        changes = identity.changes_since(old) if old.parts else []
        return ("; ".join(changes) or "its code or what it depends on changed") + f" {since}"
    old_inputs = _recorded_inputs(store, store.run(last.run_id) or {}, task, None)
    changed = _changed_inputs(inputs, old_inputs)
    if changed:
        return f"{_plural('input', changed)} changed {since}"
    if reason == "off":
        return (
            f"same {identity.summary()} and inputs as run {last.run_id[:8]}, but nothing asked "
            "for reuse: cache=True, or resume='last', would have reused it"
        )
    if reason == "damaged":
        return f"the stored result of run {last.run_id[:8]} was damaged (checksum)"
    if reason == "not stored" or not last.stored:
        return (
            f"run {last.run_id[:8]} could not store its result (a StoreWarning said why), so "
            "there was nothing to reuse"
        )
    return f"same {identity.summary()} and inputs as run {last.run_id[:8]}"


def _changed_inputs(
    now: dict[str, str | None] | None, then: dict[str, str | None] | None
) -> list[str]:
    if now is None or then is None:
        return []
    return sorted(p for p in set(now) | set(then) if now.get(p) != then.get(p))


def _plural(word: str, names: list[str]) -> str:
    shown = ", ".join(f"`{n}`" for n in names)
    return f"{word} {shown}" if len(names) == 1 else f"{word}s {shown}"


def _inputs(hooks: Any, task: str) -> dict[str, str | None] | None:
    """The digests of what ``task`` received in this run (None: unknown)."""
    try:
        found = hooks._input_digests(task)
    except Exception:
        return None
    return {p: (hooks._reused_digest(p, task) if d == "restored" else d) for p, d in found.items()}


def _recorded_inputs(
    store: SQLiteStore, record: dict[str, Any], task: str, rows: dict[str, ResultRow] | None
) -> dict[str, str | None] | None:
    """The digests of what ``task`` received in a recorded run (upstream results by their
    stored bytes, variables by the run's digests); None when the run's version is unknown."""
    version = store.version(record.get("version") or "", record.get("flow"))
    if version is None:
        return None
    spec = json.loads(version["spec"])
    tasks = {t["name"] for t in spec.get("tasks", [])}
    params: list[dict[str, Any]] = next(
        (t["params"] for t in spec.get("tasks", []) if t["name"] == task), []
    )
    rows = rows if rows is not None else store.results(record["run_id"])
    variables = json.loads(record.get("var_digests") or "{}")
    found: dict[str, str | None] = {}
    for param in (p["name"] for p in params):
        if param in tasks and param != task:
            row = rows.get(param)
            found[param] = NONE_DIGEST if row is None else _digest(store, row)
        elif param in variables:
            found[param] = variables[param]
    return found


def _digest(store: SQLiteStore, row: ResultRow) -> str | None:
    if not row.stored:
        return None
    if row.digest is not None:
        return row.digest
    try:
        return hashlib.sha256(store.result_bytes(row)).hexdigest()
    except Exception:
        return None


def _not_run(record: Any) -> str:
    state = record.state
    if state is TaskState.FAILED:
        return "ran and failed (no result to reuse)"
    if state in (TaskState.SKIPPED, TaskState.UPSTREAM_FAILED):
        return f"did not run: {state.value} ({record.reason})" if record.reason else state.value
    if state is TaskState.CANCELLED:
        return "did not finish: cancelled"
    return f"not finished yet: {state.value}"
