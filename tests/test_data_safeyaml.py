"""Hostile document text: alias bombs, recursive aliases, deep nesting, duplicate keys,
malformed fields, bytes that are not UTF-8, and strings YAML reads differently."""

from __future__ import annotations

import time
import tracemalloc

import pytest

import nbflow as nf
from nbflow.data.loader import from_dict, loads_flow

TASK = "  - id: a\n    agent: echo\n    action: run\n"


def _bomb(levels: int) -> str:
    """A "billion laughs" document: each level is nine aliases of the one before."""
    lines = ['  l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for n in range(1, levels):
        lines.append(f"  l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]")
    return "name: f\nvariables:\n" + "\n".join(lines) + "\ntasks:\n" + TASK


def test_a_seven_level_alias_bomb_is_refused_in_bounded_time_and_memory():
    text = _bomb(7)
    assert len(text) < 600  # expands to 9**7 = 4,782,969 strings
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(nf.FlowValidationError, match="is it an alias bomb") as info:
            loads_flow(text, store=None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 2.0
    assert peak < 20_000_000
    assert info.value.problems[0].path == "(document)"
    assert "nodes to 6,053,464; a document's aliases may add at most 100,000" in str(info.value)


def test_aliases_that_repeat_a_little_are_fine():
    text = (
        "name: f\nvariables:\n  policy: &p {max_retries: 2, delay: 0}\n"
        "  again: *p\ntasks:\n" + TASK + "    retry: *p\n"
        "  - id: b\n    agent: echo\n    action: run\n    retry:\n      <<: *p\n"
        "      max_retries: 5\n"  # overriding a merged key is not a duplicate key
    )
    flow = loads_flow(text, store=None)
    assert flow.tasks["a"].spec.retry.max_retries == 2
    assert flow.tasks["b"].spec.retry.max_retries == 5


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("name: f\nvariables:\n  loop: &x [1, *x]\ntasks: []\n", "variables.loop[1]"),
        ("name: f\nvariables:\n  loop: &x {<<: *x}\ntasks: []\n", "variables.loop.<<"),
    ],
)
def test_an_alias_inside_itself_is_refused(text, path):
    with pytest.raises(nf.FlowValidationError, match="an alias refers to a node that contains it"):
        loads_flow(text, store=None)
    with pytest.raises(nf.FlowValidationError) as info:
        loads_flow(text, store=None)
    assert info.value.problems[0].path == path


@pytest.mark.parametrize("format", ["yaml", "json"])
def test_deep_nesting_is_refused(format):
    deep = "[" * 150 + "]" * 150
    text = (
        f'{{"name": "f", "variables": {{"v": {deep}}}, "tasks": []}}'
        if format == "json"
        else f"name: f\nvariables:\n  v: {deep}\ntasks: []\n"
    )
    with pytest.raises(nf.FlowValidationError, match="nested more than 100 levels deep"):
        loads_flow(text, store=None, format=format)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("name: f\ntasks:\n" + TASK + "tasks:\n  - id: b\n    agent: echo\n", "tasks"),
        ("name: f\ntasks:\n" + TASK + "    retry: {max_retries: 1, max_retries: 9}\n",
         "tasks[0].retry.max_retries"),
        ("name: f\nvariables: {1: a, 1.0: b}\ntasks: []\n", "variables.1.0"),
        ('{"name": "f", "tasks": [], "tasks": []}', "tasks"),
        ('{"name": "f", "variables": {"x": {"k": 1, "k": 2}}, "tasks": []}', "variables.x.k"),
    ],
)  # fmt: skip
def test_duplicate_keys_are_refused_with_their_path(text, path):
    with pytest.raises(nf.FlowValidationError, match="duplicate key") as info:
        loads_flow(text, store=None, format="json" if text.startswith("{") else "yaml")
    assert [p.path for p in info.value.problems] == [path]


@pytest.mark.parametrize(
    ("field", "path", "message"),
    [
        ("tags: 5", "tasks[0].tags", "invalid value 5 (TypeError: 'int' object is not iterable)"),
        ("retry: {on: null}", "tasks[0].retry.on", "None is not an exception class"),
        ("retry: {on: ['..x']}", "tasks[0].retry.on", "'..x' is not an exception class"),
        ("retry: {on: 5}", "tasks[0].retry.on", "5 is not an exception class"),
    ],
)
def test_each_malformed_field_is_a_located_error(field, path, message):
    text = "name: f\ntasks:\n" + TASK + f"    {field}\n"
    with pytest.raises(nf.FlowValidationError) as info:
        loads_flow(text, store=None)
    assert [p.path for p in info.value.problems] == [path]
    assert message in info.value.problems[0].message


def test_a_malformed_field_hides_no_other_problem():
    document = {
        "name": "f",
        "tasks": [{"id": "a", "agent": "echo", "tags": 5, "priority": "high", "timeout": -1}],
    }
    with pytest.raises(nf.FlowValidationError) as info:
        from_dict(document, store=None)
    assert [p.path for p in info.value.problems] == [  # in document order
        "tasks[0].tags",
        "tasks[0].priority",
        "tasks[0].timeout",
    ]


@pytest.mark.parametrize(
    "variables", [{1: "a", "b": "c"}, {"x": {1: "a", "b": "c"}}, {"x": [{2: 1, "k": {3: 4}}]}]
)
def test_mixed_type_variable_keys_are_an_error_or_work(variables):
    """Top level: variables are names, so a clean error; inside a value: plain data."""
    document = {"name": "f", "variables": variables, "tasks": []}
    if 1 in variables:
        with pytest.raises(nf.FlowValidationError, match=r"variables\[1\]"):
            from_dict(document, store=None)
        return
    flow = from_dict(document, store=None)
    assert flow.variables == variables
    assert flow.flow_version and flow.plan()


def test_a_file_that_is_not_utf8_is_a_located_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\ntasks: []\n".encode("latin-1"))
    with pytest.raises(nf.FlowValidationError) as info:
        nf.load_flow(path, store=None)
    problem = info.value.problems[0]
    assert problem.path == "(document)"
    assert problem.message.startswith("is not UTF-8 text: byte b'\\xe9' at line 1, column 10")
    assert str(path) in str(info.value)


def test_a_utf8_file_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfname: f\ntasks: []\n")
    assert nf.load_flow(path, store=None).name == "f"


def test_to_yaml_round_trips_a_next_line_character():
    flow = from_dict({"name": "f", "variables": {"s": "a\x85b"}, "tasks": []}, store=None)
    text = flow.to_yaml()
    assert '"a\\Nb"' in text  # escaped: written raw, YAML reads it as a line break
    assert loads_flow(text, store=None).variables == {"s": "a\x85b"}
