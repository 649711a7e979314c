"""Content keys for resume and the cache: inputs hashes and cache keys.

A task's result can be reused when its identity (:mod:`nbflow.identity`) and its inputs are
those of a stored result. Its inputs are the upstream results and run variables it receives,
each by a content digest: an upstream result's is the SHA-256 of its stored bytes (what
:mod:`nbflow.store.codecs` made of it), a run variable's its identity digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping


class StoreWarning(UserWarning):
    """Something could not be stored or read back (a result that does not serialise, a
    damaged stored result...). The run goes on; resume and the cache run the task again."""


#: The digest of an input that is None because its upstream task did not succeed.
NONE_DIGEST = "none"
#: Prefixes the stored identity of a result whose attempt cancelled or finished part of its
#: run (``nf.context().cancel()``/``finish()``): the result alone cannot replay that, so it
#: is never reused (resume and the cache run the task again); see :func:`controlled`.
CONTROLLED = "controlled:"


def controlled(identity: str | None) -> bool:
    """Whether a stored result's ``identity`` marks it as never reused (:data:`CONTROLLED`)."""
    return identity is not None and identity.startswith(CONTROLLED)


def sha(text: str, size: int = 32) -> str:
    """Hex SHA-256 of ``text``, cut to ``size`` characters."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:size]


def inputs_hash(digests: Mapping[str, str | None]) -> str | None:
    """One hash of a task's inputs (parameter -> digest); None when one is unknown."""
    if any(d is None for d in digests.values()):
        return None
    return sha("\n".join(f"{param}={digests[param]}" for param in sorted(digests)))


def cache_key(flow: str, task: str, identity: str, inputs: str, user_key: object = None) -> str:
    """The cache key of one task call: flow, task, identity and inputs (or ``cache_key=``).

    Each field after its length: a name may hold any character (a mark between the fields
    would let flow ``"a\\x00b"``'s task ``"c"`` share the key of flow ``"a"``'s task
    ``"b\\x00c"``, and be served its result)."""
    last = inputs if user_key is None else f"user:{user_key!r}"
    return sha("".join(f"{len(field)}:{field}" for field in (flow, task, identity, last)))
