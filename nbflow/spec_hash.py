"""The content hash of a flow's definition (:meth:`nbflow.spec.FlowSpec.version`).

The SHA-256 of ``json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",",
":"), default=str)``, computed without building that document: the tasks are streamed into
the hash, each distinct set of shared option values and each parameter object serialised
once (a flow of 100,000 tasks defined in a loop shares a handful). ``tests/test_spec.py``
compares it with the plain ``json.dumps`` form.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Callable, Sequence
from typing import Any

from .spec import _KIND_NAMES, FlowSpec, ParamSpec, TaskSpec

_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode
#: What that encoder writes for a str (ensure_ascii): one C call, no encoder set-up.
_dump_str: Callable[[str], str] = json.encoder.encode_basestring_ascii
#: Fields in the exported JSON, sorted as ``json.dumps(sort_keys=True)`` writes them.
_TASK_KEYS = sorted(n for n, f in TaskSpec.model_fields.items() if not f.exclude)
_TASK_FIELDS = set(TaskSpec.model_fields)
#: Fields that differ from task to task; the others usually come from a shared options object.
_OWN_KEYS = ("after", "index", "is_async", "meta", "name", "params", "source_hash")
_SHARED_KEYS = tuple(k for k in _TASK_KEYS if k not in _OWN_KEYS)
_shared_values = operator.itemgetter(*_SHARED_KEYS)


def spec_version(spec: FlowSpec, sources: Sequence[object] | None = None) -> str:
    """``spec.version()``; ``sources`` as in :func:`_hash_tasks` (a flow's tasks' options
    objects, which spare comparing each task's shared option values one by one)."""
    digest = hashlib.sha256()
    head = spec.model_dump(mode="json", exclude={"tasks"})
    head["tasks"] = None  # a placeholder that keeps the key's sorted position
    for position, key in enumerate(sorted(head)):
        digest.update((("," if position else "{") + _dumps(key) + ":").encode())
        if key == "tasks":
            _hash_tasks(digest, spec.tasks, sources)
        else:
            digest.update(_dumps(head[key]).encode())
    digest.update(b"}")
    return digest.hexdigest()[:16]


def _chunks(spec: TaskSpec) -> list[str]:
    # The JSON text between the own fields' values, for tasks whose shared fields are these.
    dumped = spec.model_dump(mode="json", include=set(_SHARED_KEYS))
    chunks, text = [], "{"
    for key in _TASK_KEYS:
        text += ("" if text == "{" else ",") + f"{_dumps(key)}:"
        if key in _OWN_KEYS:
            chunks.append(text)
            text = ""
        else:
            text += _dumps(dumped[key])
    chunks.append(text + "}")
    return chunks


#: The JSON of a parameter without a default, up to its name, by kind.
_NO_DEFAULT_JSON = {
    kind: f'{{"default":null,"has_default":false,"kind":{_dump_str(kind)},"name":'
    for kind in _KIND_NAMES.values()
}


def _param_json(param: ParamSpec) -> str:
    # As json.dumps(param.model_dump(mode="json"), sort_keys=True) writes it; pydantic only
    # for defaults whose JSON form may differ from json's (floats: inf and nan).
    values = param.__dict__
    default = values["default"]
    if not values["has_default"] and default is None:
        prefix = _NO_DEFAULT_JSON.get(values["kind"])
        if prefix is not None:
            return prefix + _dump_str(values["name"]) + "}"
    if default is None or type(default) in (str, int, bool):
        text = "null" if default is None else _dumps(default)
        return (
            f'{{"default":{text},"has_default":{"true" if values["has_default"] else "false"},'
            f'"kind":{_dump_str(values["kind"])},"name":{_dump_str(values["name"])}}}'
        )
    return _dumps(param.model_dump(mode="json"))


def _meta_json(spec: TaskSpec) -> str:
    return _dumps(spec.model_dump(mode="json", include={"meta"})["meta"])


def _hash_tasks(
    digest: Any, tasks: tuple[TaskSpec, ...], sources: Sequence[object] | None = None
) -> None:
    """Feed ``digest`` the JSON array of ``tasks``, as ``json.dumps`` of their dump writes it.

    Each distinct set of shared option values and each parameter object is serialised once;
    a task adds only its own fields' text. Shared values are told apart by identity (equal
    values may dump differently, as -0.0 and 0.0 do): ``sources``, when given, holds for
    each task the options object its spec was assembled from by :func:`task_spec`, whose
    identity stands for that of all its shared values; otherwise they are compared one by one.
    """
    chunk_memo: dict[Any, list[str]] = {}
    param_texts: dict[int, str] = {}  # by id(param)
    last: Any = (object(),) * len(_SHARED_KEYS)  # matches no task
    comma = ""
    digest.update(b"[")
    for spec, source in zip(
        tasks, [None] * len(tasks) if sources is None else sources, strict=True
    ):
        if type(spec) is not TaskSpec:
            # Only TaskSpec's fields, as FlowSpec dumps its tasks (a subclass's own are not)
            dumped = TaskSpec.model_dump(spec, mode="json", include=_TASK_FIELDS)
            digest.update((comma + _dumps(dumped)).encode())
            comma, last = ",", None
            continue
        values = spec.__dict__
        if source is not None:
            if source is not last:
                found = chunk_memo.get(id(source))
                if found is None:
                    found = chunk_memo[id(source)] = _chunks(spec)
                (c0, c1, c2, c3, c4, c5, c6, c7), last = found, source
        else:
            shared = _shared_values(values)
            # Tasks defined in a loop hold the very same objects: compare by identity only.
            if last is None or not all(map(operator.is_, shared, last)):
                key = tuple(map(id, shared))
                found = chunk_memo.get(key)
                if found is None:
                    found = chunk_memo[key] = _chunks(spec)
                (c0, c1, c2, c3, c4, c5, c6, c7), last = found, shared
        param_text = "[]"
        if values["params"]:
            params = []
            for param in values["params"]:
                text = param_texts.get(id(param))
                if text is None:
                    text = param_texts[id(param)] = _param_json(param)
                params.append(text)
            param_text = "[" + ",".join(params) + "]"
        after, meta = values["after"], values["meta"]
        # One value per name in _OWN_KEYS, in that order, between the chunks.
        text = (
            f"{comma}{c0}{'[' + ','.join(map(_dump_str, after)) + ']' if after else '[]'}"
            f"{c1}{int.__repr__(values['index'])}"
            f"{c2}{'true' if values['is_async'] else 'false'}"
            f"{c3}{_meta_json(spec) if meta else '{}'}"
            f"{c4}{_dump_str(values['name'])}"
            f"{c5}{param_text}"
            f"{c6}{_dump_str(values['source_hash'])}{c7}"
        )
        digest.update(text.encode())
        comma = ","
    digest.update(b"]")
