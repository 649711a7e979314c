"""Content keys for resume and the cache: value digests, inputs hashes, task versions.

All three are SHA-256 based and stable across processes:

- a value's digest is the hash of its pickle (protocol 5); a value that cannot be pickled is
  hashed by ``repr`` instead, with a warning (its key then rarely matches again);
- a task's inputs hash combines, per parameter, the digest of the upstream result or run
  variable it receives (``worker`` assigned by the engine is not an input);
- a task's version covers its own source, the notebook helpers it calls (recomputed at run
  time, so re-running a helper's cell counts) and the options that shape its result.
"""

from __future__ import annotations

import hashlib
import operator
import pickle
import warnings
from collections.abc import Callable, Mapping
from itertools import repeat
from typing import TYPE_CHECKING, Any

from ..errors import describe
from ..spec import deep_source_hash

if TYPE_CHECKING:
    from ..graph import Plan
    from ..spec import TaskSpec

PICKLE_PROTOCOL = 5


class StoreWarning(UserWarning):
    """Something could not be stored (a result that does not pickle, a locked database...).

    The run goes on; only resume and caching of the named task are affected.
    """


def sha(text: str | bytes, size: int = 32) -> str:
    """Hex SHA-256 of ``text``, cut to ``size`` characters."""
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()[:size]


def dumps(value: Any) -> bytes:
    """Pickle ``value`` the way the store does (protocol 5)."""
    return pickle.dumps(value, protocol=PICKLE_PROTOCOL)


def blob_digest(blob: bytes) -> str:
    """Digest of an already pickled value."""
    return hashlib.sha256(blob).hexdigest()


def value_digest(
    value: Any, task: str, what: str = "an input", warn: Callable[[str], None] | None = None
) -> str:
    """Digest of ``value``: SHA-256 of its pickle, or of its ``repr`` (with a warning).

    ``task`` and ``what`` name the value in the warning; ``warn(message)`` reports it (default:
    :func:`warnings.warn` with :class:`StoreWarning`).
    """
    if value is None:
        return NONE_DIGEST
    try:
        return blob_digest(dumps(value))
    except Exception as error:
        message = (
            f"task {task!r}: {what} cannot be pickled ({describe(error)}); it is "
            "hashed by repr() instead, so resume and the cache will usually run the task again"
        )
        if warn is None:
            warnings.warn(message, StoreWarning, stacklevel=2)
        else:
            warn(message)
        return "repr:" + sha(repr(value), 64)


NONE_BLOB = pickle.dumps(None, protocol=PICKLE_PROTOCOL)
NONE_DIGEST = hashlib.sha256(NONE_BLOB).hexdigest()
#: The inputs hash of a task that receives nothing.
EMPTY_INPUTS = sha("")


def inputs_hash(
    plan: Plan,
    name: str,
    variables: Mapping[str, Any],
    dep_digest: Callable[[str, str], str | None],
    var_digest: Callable[[str], str],
) -> str | None:
    """Hash of what task ``name`` receives: upstream results and run variables.

    ``dep_digest(param, upstream)`` gives the digest of an upstream result (None when unknown:
    then the task has no inputs hash and is never resumed or served from the cache);
    ``var_digest(param)`` the digest of a run variable. Defaults are part of the source.
    """
    parts = []
    for param, dep in plan.data_params[name]:
        digest = dep_digest(param, dep)
        if digest is None:
            return None
        parts.append(f"{param}={digest}")
    for p in plan.free_params[name]:
        if p.name in variables:
            parts.append(f"{p.name}={var_digest(p.name)}")
    return sha("\n".join(sorted(parts)))


def task_version(spec: TaskSpec, fn: Callable[..., Any]) -> str:
    """Version of one task: its code (with the helpers it calls now) and result-shaping options.

    Priority, retries, timeouts, tags and the like do not change a result, so they are not
    part of it; ``fan_out`` and ``allow_partial`` do.
    """
    return sha(f"{spec.source_hash}|{deep_source_hash(fn)}|{spec.fan_out}|{spec.allow_partial}", 16)


def cache_key(flow: str, task: str, version: str, inputs: str | None, user_key: Any = None) -> str:
    """The cache key of one task call: flow, task, version and inputs (or ``cache_key=``)."""
    if user_key is not None:
        return sha(f"{flow}\x00{task}\x00{version}\x00user:{user_key!r}")
    return sha(f"{flow}\x00{task}\x00{version}\x00{inputs}")


_CACHE = operator.attrgetter("cache")
_CACHE_KEY = operator.attrgetter("cache_key")


def cache_tasks(plan: Plan) -> list[str]:
    """Names of the tasks of ``plan`` that use the cache (kept in ``plan.memo``).

    Checked in C first: most flows have none, and a run asks before anything else.
    """

    def make() -> list[str]:
        specs = list(map(plan.specs.__getitem__, plan.names))
        # `is`, never `==`: a cache_key callable object may define an unusual __eq__.
        if any(map(_CACHE, specs)) or any(
            map(operator.is_not, map(_CACHE_KEY, specs), repeat(None))
        ):
            return [s.name for s in specs if s.cache or s.cache_key is not None]
        return []

    return plan.table("caches", make)
