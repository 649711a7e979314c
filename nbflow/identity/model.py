"""What a task's identity is: its digest, its named parts, and a flow's identities (see
:mod:`nbflow.identity`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Hex characters kept of each SHA-256 digest.
DIGEST_SIZE = 16
#: Helpers' own parts are listed under the task down to this depth (deeper: one digest).
PART_DEPTH = 2
#: The option naming what a task's identity leaves out (``cache_ignore=``).
IGNORE = "cache_ignore"
#: A generated task function names, under this attribute, the callable it stands for.
IDENTITY_OF = "__nbflow_identity__"
#: Between a helper's path and the path of one of its own parts: ``helper clean / global K``.
SEP = " / "
#: Nested containers deeper than this are hashed through their pickle.
_MAX_DEPTH = 40


class CacheWarning(UserWarning):
    """A task's result cannot be reused: something it depends on cannot be hashed.

    The task runs every time (never a stale result); the message names the task and the
    variable, and how to make it cacheable.
    """


def sha(*chunks: str | bytes | memoryview) -> str:
    """Hex SHA-256 of the chunks, cut to :data:`DIGEST_SIZE` characters.

    Each chunk is hashed after its length (8 bytes), so the chunks are told apart however
    they split: ``sha("json", "dumps") != sha("jsond", "umps")``, and no chunk can pass for
    two. (Joined without a mark between them, two names could have the digest of two
    others: a stale hit.)
    """
    digest = hashlib.sha256()
    # The same bytes as one update per length and per chunk, in fewer updates (each costs
    # ~0.1 µs, and a run re-checks thousands of digests): small chunks are joined first; a
    # large one (an array's buffer) is hashed where it is, never copied.
    pending: list[bytes | memoryview] = []
    for chunk in chunks:
        data = chunk.encode("utf-8", "surrogatepass") if isinstance(chunk, str) else chunk
        size = len(data) if isinstance(data, bytes) else memoryview(data).nbytes
        pending.append(size.to_bytes(8, "little"))
        if size > _JOINED:
            digest.update(b"".join(pending))
            pending.clear()
            digest.update(data)
        else:
            pending.append(data)
    digest.update(b"".join(pending))
    return digest.hexdigest()[:DIGEST_SIZE]


_JOINED = 1 << 16  # chunks up to this many bytes are joined before they are hashed


@dataclass(frozen=True, slots=True)
class Part:
    """One thing a task's result depends on: ``path`` names it (``global RATE``), ``digest``
    is its content hash, ``shown`` a short human rendering of its value (``0.25``)."""

    path: str
    digest: str
    shown: str = ""


def parts_digest(parts: Iterable[Part]) -> str:
    """The digest of parts: each one's path and digest, each after its length (a path holds
    any character: a partial's keyword, a flow's name), so no two lists of parts spell
    alike. One string, hashed once: a run re-checks thousands of these, and a chunk of
    :func:`sha` each cost four calls more per part."""
    return sha(
        "parts",
        "".join([f"{len(p.path)}:{p.path}{len(p.digest)}:{p.digest}" for p in parts]),
    )


@dataclass(frozen=True, slots=True)
class Identity:
    """What a task's result depends on: a digest and its named parts.

    ``digest`` is None when some part cannot be hashed (``unhashable`` lists ``(path,
    reason)``): such a task is never served from the cache or a resumed run.
    """

    digest: str | None
    parts: tuple[Part, ...] = ()
    unhashable: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> str:
        """The parts as JSON (what the store keeps next to each result)."""
        return json.dumps([[p.path, p.digest, p.shown] for p in self.parts])

    @classmethod
    def from_json(cls, digest: str | None, text: str | None) -> Identity:
        """The identity stored as :meth:`to_json` (``text`` None: no parts known)."""
        parts = tuple(Part(*row) for row in json.loads(text)) if text else ()
        return cls(digest, parts)

    def differences(self, before: Identity) -> list[tuple[str, Part | None, Part | None]]:
        """``(path, part before, part now)`` of each part that changed, appeared (before
        None) or went (now None), in this identity's order, then the gone ones."""
        old = {p.path: p for p in before.parts}
        new = {p.path: p for p in self.parts}
        found: list[tuple[str, Part | None, Part | None]] = [
            (path, old.get(path), part)
            for path, part in new.items()
            if path not in old or old[path].digest != part.digest
        ]
        found += [(path, part, None) for path, part in old.items() if path not in new]
        return found

    def changes_since(
        self, before: Identity, *, skip: Callable[[str], bool] | None = None
    ) -> list[str]:
        """What changed from ``before`` to this identity, in plain words, parts in order.

        ``skip(path)``: leave out the parts it is true for (a diff that reports code apart).
        """
        words: list[str] = []
        found = self.differences(before)
        # A part whose own parts changed is told by those ("helper `f`: global `K` changed"),
        # not once more as a whole; one that is new or gone is told as a whole, not by its
        # own parts ("helper `f` is new").
        whole = {path for path, old, new in found if old is None or new is None}
        inner = {path.rsplit(SEP, 1)[0] for path, _, _ in found if SEP in path} - whole
        for path, old, new in found:
            if SEP in path and path.rsplit(SEP, 1)[0] in whole:
                continue
            if path in inner or (skip is not None and skip(path)):
                continue
            if old is None:
                words.append(f"{_label(path)} is new")
            elif new is None:
                words.append(f"{_label(path)} is gone")
            else:
                words.append(_changed(path, old.shown, new.shown))
        return words

    def summary(self) -> str:
        """A few words on what it covers: ``source, 2 defaults and 3 globals``."""
        kinds: dict[str, int] = {}
        for part in self.parts:
            if SEP in part.path or part.shown in ("None", "False", "()"):
                continue  # a helper's own parts count with it; unset options do not count
            kind = part.path.split(" ", 1)[0]
            kind = "global" if kind in ("helper", "module", "class") else kind
            kinds[kind] = kinds.get(kind, 0) + 1
        words = []
        for kind in ("source", "default", "closure", "global", "option"):
            count = kinds.get(kind)
            if count:
                words.append(kind if kind == "source" else _plural(count, kind))
        if not words:
            return "nothing"
        return ", ".join(words[:-1]) + (" and " if len(words) > 1 else "") + words[-1]


def is_code_path(path: str) -> bool:
    """Whether a part's path is code (a source, or a helper as a whole), not a value."""
    last = path.rsplit(SEP, 1)[-1]
    return last == "source" or (SEP not in path and path.startswith(("helper ", "class ")))


def _plural(count: int, kind: str) -> str:
    name = "closure variable" if kind == "closure" else kind
    return f"{count} {name}{'s' if count != 1 else ''}"


def _label(path: str) -> str:
    """``global RATE`` -> ``global `RATE```; nested parts: ``helper `f`: global `K```."""
    pieces = path.split(SEP)
    labels = []
    for piece in pieces:
        kind, _, name = piece.partition(" ")
        labels.append(f"{kind} `{name}`" if name else kind)
    return ": ".join(labels)


def _changed(path: str, old: str, new: str) -> str:
    if path.endswith(SEP + "source"):  # a helper's or a method's code: "helper `f` changed"
        path = path[: -len(SEP + "source")]
    label = _label(path)
    if old and new and old != new and len(old) + len(new) < 80:
        return f"{label} changed ({old} -> {new})"
    return f"{label} changed"


@dataclass(frozen=True, slots=True)
class FlowIdentity:
    """A flow's version as of one moment (a run's start) and each task's identity."""

    version: str
    tasks: Mapping[str, Identity]

    def task_version(self, name: str) -> str | None:
        """The digest of task ``name`` (None: it has no stable identity, see
        :class:`Identity`)."""
        return self.tasks[name].digest


def flow_version(spec_version: str, tasks: Mapping[str, Identity]) -> str:
    """A flow's version: its definition's hash (``spec_version``: names, options,
    dependencies) and the identity of every task. A task that cannot be hashed counts by
    what could not be hashed (its variable's path), so the version stays stable."""
    chunks = [spec_version]
    for name, identity in tasks.items():
        if identity.digest is not None:
            chunks += [name, "digest", identity.digest]
        else:  # (a path holds any character: the paths' own digest, a chunk of fixed size)
            chunks += [name, "unhashable", sha(*[path for path, _ in identity.unhashable])]
    return sha(*chunks)


def identity_options(spec: Any) -> tuple[tuple[str, Any], ...]:
    """What a task's identity takes from its options (``spec``: a TaskSpec): the options
    that shape its result and the user code they hold. Priority, retries, timeouts, tags
    and the like decide when and how often a task runs, not what it returns."""
    retry_if = spec.retry.retry_if if spec.retry is not None else None
    fan_out = spec.fan_out
    if fan_out is not None and not isinstance(fan_out, str):  # a FanOut: as plain data
        fan_out = (fan_out.mode, fan_out.params)
    found = [("fan_out", fan_out), ("allow_partial", spec.allow_partial)]
    callables = (
        ("when", spec.when_fn), ("cache_key", spec.cache_key), ("retry_if", retry_if),
        ("until", spec.until_fn),
    )  # fmt: skip
    found += [(name, value) for name, value in callables if value is not None]
    if spec.cache_ignore:
        found.append((IGNORE, tuple(sorted(spec.cache_ignore))))
    if spec.complete_when is not None:  # which elements' results the list holds
        found.append(("complete_when", (spec.complete_when, spec.cancel_rest)))
    if spec.max_iterations is not None:  # where a loop stops decides its result
        found.append(("loop", (spec.until, spec.max_iterations)))
    return tuple(found)
