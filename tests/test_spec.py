"""Spec export and flow_version: stable across processes, sensitive to code and options."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap

import nbflow as nf

FLOW_SOURCE = textwrap.dedent(
    """
    import nbflow as nf
    flow = nf.Flow("versioned", max_workers=2)

    @flow.task(priority=3, retry=nf.Retry(max_retries=2, on=(ConnectionError,)))
    def load():
        return [1, 2, 3]

    @flow.task(when="len(load) > 0")
    def total(load, scale=2):
        return sum(load) * scale

    print(flow.flow_version)
    """
)


def _version_in_subprocess(source: str, tmp_path, name: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_flow_version_is_stable_across_processes(tmp_path):
    first = _version_in_subprocess(FLOW_SOURCE, tmp_path, "a")
    second = _version_in_subprocess(FLOW_SOURCE, tmp_path, "b")
    assert first == second and len(first) == 16


def test_flow_version_changes_with_code(tmp_path):
    base = _version_in_subprocess(FLOW_SOURCE, tmp_path, "a")
    changed = _version_in_subprocess(FLOW_SOURCE.replace("* scale", "* scale + 1"), tmp_path, "b")
    assert base != changed


def test_flow_version_changes_with_options(tmp_path):
    base = _version_in_subprocess(FLOW_SOURCE, tmp_path, "a")
    changed = _version_in_subprocess(FLOW_SOURCE.replace("priority=3", "priority=4"), tmp_path, "b")
    assert base != changed


def test_spec_exports_to_json():
    flow = nf.Flow("f", max_workers=3)

    @flow.task(retry=nf.Retry(max_retries=1, on=(ConnectionError,)), tags=["x"])
    def a():
        return 1

    @flow.task(when="a > 0")
    def b(a, k=5):
        return a

    data = json.loads(flow.spec().model_dump_json())
    assert data["name"] == "f" and data["max_workers"] == 3
    task_a, task_b = data["tasks"]
    assert task_a["retry"]["on"] == ["ConnectionError"]
    assert task_b["params"] == [
        {"name": "a", "has_default": False, "default": None, "kind": "positional_or_keyword"},
        {"name": "k", "has_default": True, "default": 5, "kind": "positional_or_keyword"},
    ]
    assert task_b["when"] == "a > 0"


def test_object_defaults_do_not_leak_memory_addresses():
    flow = nf.Flow("f")
    sentinel = object()

    @flow.task
    def a(x=sentinel):
        return 1

    assert flow.spec().model_dump()["tasks"][0]["params"][0]["default"] == "<object>"


def _reference_version(spec) -> str:
    # The definition of flow_version: the hash of the whole spec's canonical JSON.
    payload = spec.model_dump(mode="json")
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _varied_flow() -> nf.Flow:
    flow = nf.Flow("varied", max_workers=3, on_error="continue", strategy="fifo")
    shared = nf.Retry(max_retries=2, delay=0.5, on=(ConnectionError, "TimeoutError"))
    for i in range(6):  # tasks defined in a loop share one options object
        flow.task(name=f"leaf{i}", priority=2, retry=shared, tags=("batch",))(lambda: 1)
    flow.task(name="ünïcode ✓", meta={"title": "Zoë", "n": [1, 2.5, None], "z": {"b": 1}})(
        lambda leaf0, leaf1, scale=1.5, label="x", flag=True, items=(1, "a"), obj=object(): 0
    )

    @flow.task(after=["leaf2"], when="leaf3 > 0", timeout=2, estimate=0.25, critical=True)
    async def gated(leaf3, *args, mode="full", **kwargs):
        return leaf3

    @flow.task(fan_out="leaf4", concurrency=2, rate=3.0, allow_partial=True, cache=True)
    def fanned(leaf4, worker=None):
        return leaf4

    flow.task(name="leaf5", priority=True)(lambda: 2)  # redefined: same position, new options
    flow.branch("leaf0 > 0", then=["fanned"], otherwise=["gated"])
    return flow


def test_streamed_version_equals_the_hash_of_the_whole_json():
    flow = _varied_flow()
    spec = flow.spec()
    assert spec.version() == _reference_version(spec)
    # The flow hashes its tasks knowing which share an options object: the same text.
    assert flow.spec_version == spec.version()
    empty = nf.Flow("empty").spec()
    assert empty.version() == _reference_version(empty)


def test_tasks_defined_in_a_loop_share_options_and_parameters():
    flow = nf.Flow("loop")
    flow.task(name="a")(lambda: 1)
    for i in range(3):
        flow.task(name=f"r{i}", priority=1)(lambda a: a)
    readers = [flow.tasks[f"r{i}"].spec for i in range(3)]
    assert readers[0].params[0] is readers[1].params[0]  # one ParamSpec for `a`
    assert readers[0].retry is readers[2].retry and readers[0].priority == 1
    assert readers[0].meta is not readers[1].meta  # mutable: each task has its own
    assert [s.name for s in readers] == ["r0", "r1", "r2"]
    assert readers[0].model_fields_set == set(nf.spec.TaskSpec.model_fields)


def _signature_cases():
    import functools
    import inspect

    def mixed(x, y=1, /, z=2, *args, k, m=3, **kw): ...

    def plain(p, q=(1, 2)): ...

    @functools.wraps(plain)
    def wrapped(*a, **k): ...

    def declared(x): ...

    declared.__signature__ = inspect.Signature(
        [inspect.Parameter("u", inspect.Parameter.KEYWORD_ONLY)]
    )

    class Callable:
        def method(self, a, b=2): ...

        def __call__(self, z): ...

    def keyword_only(*, only, other=None): ...

    def base(a, b, c=3): ...

    class Partial:
        # Read on the class: a function marked as a partialmethod (inspect.signature
        # drops the bound argument), which the code object alone would not show.
        method = functools.partialmethod(base, 1)

    return [
        mixed,
        plain,
        wrapped,
        declared,
        Callable().method,
        Callable(),
        keyword_only,
        lambda v, w=None: 0,
        functools.partial(plain, 1),
        print,
        Partial.method,
    ]


def test_parameters_read_from_code_match_inspect_signature():
    import inspect

    from nbflow.spec import parameters as _parameters

    var = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    for fn in _signature_cases():
        expected = [
            (p.name, p.kind, p.default)
            for p in inspect.signature(fn).parameters.values()
            if p.kind not in var
        ]
        assert [t for t in _parameters(fn) if t[1] not in var] == expected, fn


def test_streamed_version_covers_subclassed_specs_lists_and_meta():
    import datetime

    from nbflow.spec import FlowSpec, TaskSpec

    class Annotated(TaskSpec):  # a spec of another type is dumped whole
        note: str = "kept"

    at = datetime.datetime(2024, 1, 2, 3, 4, 5)  # str() and JSON differ: a space, a "T"
    spec = FlowSpec(
        name="f",
        tasks=(
            TaskSpec(name="a", index=0),
            Annotated(name="b", index=1),
            TaskSpec(name="c", index=2, after=("a", "b"), meta={"at": at}),
            Annotated(name="d", index=3, meta={"at": at}),  # dumped whole: in JSON mode
        ),
    )
    assert spec.version() == _reference_version(spec)


def test_introspected_parameters():
    import functools

    from nbflow.spec import ParamSpec, introspect_params

    def f(a, b=1, *args, c, d=[1], e="x", **kw): ...  # noqa: B006

    params = introspect_params(f)  # no table of shared parameters: one of its own
    assert params == (
        ParamSpec(name="a", has_default=False, kind="positional_or_keyword"),
        ParamSpec(name="b", has_default=True, default=1, kind="positional_or_keyword"),
        ParamSpec(name="c", has_default=False, kind="keyword_only"),
        ParamSpec(name="d", has_default=True, default=[1], kind="keyword_only"),
        ParamSpec(name="e", has_default=True, default="x", kind="keyword_only"),
    )
    assert all(p.model_fields_set == {"name", "has_default", "default", "kind"} for p in params)

    def g(x, y=1): ...

    def h(*, x, y=1, z=True): ...

    shared: dict = {}
    first, second = introspect_params(g, shared), introspect_params(h, shared)
    again = introspect_params(g, shared)
    assert again[0] is first[0] and again[1] is first[1]  # equal parameters are one object
    assert [p.kind for p in second] == ["keyword_only"] * 3  # never g's, of another kind
    assert (second[1].default, type(second[2].default)) == (1, bool)  # True is not 1

    def k(y=True): ...

    assert introspect_params(k, shared)[0].default is True  # equal to g's 1, of another type
    # Read through inspect.signature (a partial): *args and **kw are there, and skipped.
    assert introspect_params(functools.partial(f)) == params


def test_a_task_keeps_its_meta_and_the_function_it_wraps():
    import functools

    from nbflow.spec import unwrapped

    def original():
        return 1

    @functools.wraps(original)
    def decorated():
        return original()

    assert unwrapped(decorated) is original and unwrapped(original) is original
    flow = nf.Flow("meta")
    flow.task(name="a", meta={"owner": "ana"})(lambda: 1)
    assert flow.tasks["a"].spec.meta == {"owner": "ana"}
