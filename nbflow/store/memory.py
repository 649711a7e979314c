"""``MemoryStore``: the store protocol in plain dicts, for tests and throwaway sessions.

Same projection and semantics as :class:`~nbflow.store.sqlite.SQLiteStore` (results are
pickled, so a cached result is a copy), but nothing survives the process and records are
applied in the caller's thread as they come.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from ..errors import StoreError
from .base import BaseStore
from .rows import ATTEMPT_COLUMNS, EVENT_COLUMNS, NO_ELEMENT, RUN_COLUMNS, Batch, ResultRow
from .writer import Writer


class _Tables:
    """The in-memory tables, written by the writer and read by the store."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.flows: dict[str, float] = {}
        self.versions: dict[tuple[str, str], tuple[str, str, float, int, str, str]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.attempts: dict[tuple[str, str, int, int], tuple[Any, ...]] = {}
        self.events: dict[tuple[str, int], tuple[Any, ...]] = {}
        self.blobs: dict[str, bytes] = {}

    def write(self, batch: Batch) -> None:
        with self.lock:
            for name, created in batch.flows.items():
                self.flows.setdefault(name, created)
            for version in batch.versions:
                self.versions.setdefault((version[0], version[1]), version)
            for run_id, row in batch.runs.items():
                self.runs[run_id] = dict(zip(RUN_COLUMNS, row, strict=True))
            for run_id, status in batch.statuses:
                found = self.runs.get(run_id)
                if found is not None and found["status"] == "running":
                    found["status"] = status
            for key, attempt in batch.attempts.items():
                self.attempts[key] = tuple(attempt)
            for event in batch.events:
                self.events.setdefault((event[0], event[1]), event)
            for digest, blob in batch.blobs.items():
                self.blobs.setdefault(digest, blob)

    def known_versions(self) -> set[tuple[str, str]]:
        return set(self.versions)

    def close(self) -> None:
        pass


class MemoryStore(BaseStore):
    """A :class:`~nbflow.store.StateStore` in memory (lost when the process ends).

    Args:
        max_result_bytes: a pickled result larger than this is not stored (with a warning).
    """

    def __init__(self, *, max_result_bytes: int = 512 * 2**20) -> None:
        self._tables = _Tables()
        tables = self._tables
        writer = Writer(
            lambda: tables,
            location=f"memory:{id(self):x}",
            max_result_bytes=max_result_bytes,
            threaded=False,
        )
        super().__init__(writer, writer.location, 10.0)

    def runs(self, flow: str | None = None) -> list[dict[str, Any]]:
        """Every run (of ``flow``), oldest first."""
        with self._tables.lock:
            rows = [dict(r) for r in self._tables.runs.values()]
        rows = [r for r in rows if flow is None or r["flow"] == flow]
        return sorted(rows, key=lambda r: r["started"] or 0.0)

    def run(self, run_id: str) -> dict[str, Any] | None:
        """The run record of ``run_id``, or None."""
        found = self._tables.runs.get(run_id)
        return dict(found) if found is not None else None

    def last_run(self, flow: str) -> str | None:
        """Id of the most recently started run of ``flow``, or None."""
        runs = self.runs(flow)
        return runs[-1]["run_id"] if runs else None

    def attempts(self, run_id: str) -> list[dict[str, Any]]:
        """Every attempt of ``run_id`` (element None for the task as a whole)."""
        with self._tables.lock:
            rows = [
                dict(zip(ATTEMPT_COLUMNS, a, strict=True))
                for k, a in self._tables.attempts.items()
                if k[0] == run_id
            ]
        for row in rows:
            if row["element"] == NO_ELEMENT:
                row["element"] = None
        return sorted(
            rows, key=lambda r: (r["started"], r["task"], r["element"] or -1, r["attempt"])
        )

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """The event log of ``run_id`` in order; ``payload`` decoded."""
        with self._tables.lock:
            found = [e for k, e in self._tables.events.items() if k[0] == run_id]
        rows = [dict(zip(EVENT_COLUMNS, e, strict=True)) for e in sorted(found, key=lambda e: e[1])]
        for row in rows:
            row["payload"] = json.loads(row["payload"]) if row["payload"] else {}
        return rows

    def _results(self) -> list[ResultRow]:
        with self._tables.lock:
            rows = list(self._tables.attempts.values())
        return [
            ResultRow(a[0], a[1], a[10], a[11], a[12], a[13], a[14], a[6])
            for a in rows
            if a[2] == NO_ELEMENT and a[10] is not None
        ]

    def results(self, run_id: str) -> dict[str, ResultRow]:
        """Task -> :class:`ResultRow` for the tasks of ``run_id`` that succeeded."""
        return {r.task: r for r in self._results() if r.run_id == run_id}

    def find_cached(self, key: str, since: float | None = None) -> ResultRow | None:
        """The newest stored result with cache key ``key`` (created at or after ``since``)."""
        found = [
            r
            for r in self._results()
            if r.cache_key == key and r.digest is not None and r.created >= (since or 0.0)
        ]
        return max(found, key=lambda r: r.created) if found else None

    def load(self, digest: str) -> bytes | None:
        """The pickled result with ``digest``, or None."""
        return self._tables.blobs.get(digest)

    def versions(self, flow: str) -> list[dict[str, Any]]:
        """Recorded versions of ``flow``, oldest first, with run counts."""
        runs = self.runs(flow)
        rows = []
        with self._tables.lock:
            versions = [v for v in self._tables.versions.values() if v[0] == flow]
        for name, version, created, n_tasks, _spec, _sources in sorted(
            versions, key=lambda v: v[2]
        ):
            mine = [r["started"] for r in runs if r["version"] == version]
            rows.append(
                {
                    "flow": name,
                    "version": version,
                    "created": created,
                    "n_tasks": n_tasks,
                    "runs": len(mine),
                    "last_run": max((s for s in mine if s is not None), default=None),
                }
            )
        return rows

    def version(self, version: str, flow: str | None = None) -> dict[str, Any] | None:
        """One recorded version (a unique prefix is enough): flow, version, spec, sources.

        Raises:
            StoreError: the prefix matches several versions.
        """
        with self._tables.lock:
            found = [
                v
                for v in self._tables.versions.values()
                if v[1].startswith(version) and (flow is None or v[0] == flow)
            ]
        if len(found) > 1:
            raise StoreError(
                f"version prefix {version!r} matches several versions in {self.location}; "
                "give more characters"
            )
        if not found:
            return None
        names = ("flow", "version", "created", "n_tasks", "spec", "sources")
        return dict(zip(names, found[0], strict=True))

    def close(self) -> None:
        """Nothing to release."""
