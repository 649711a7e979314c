"""A bounded fuzzer of the document loader: whatever the text, nothing but an nbflow error
escapes (a FlowValidationError with paths, a CycleError, a ConditionError...).

Three generators, about 20 s in all: arbitrary text, soups of YAML syntax (anchors, aliases,
merges, tags, flow and block collections), and flow-shaped documents with random values in
every field, given as YAML, as JSON and as a mapping. Inputs that once let a raw exception
out are kept as ``@example``.
"""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import nbflow as nf
from nbflow.data.agents import AgentRegistry
from nbflow.data.loader import from_dict, loads_flow

FUZZ = settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _registry() -> AgentRegistry:
    registry = AgentRegistry()
    registry.register_function("double", lambda x=1: 2 * x)
    return registry


REGISTRY = _registry()


def _survives(load) -> None:
    """Run ``load()``; a loaded flow must also plan, hash and export without a raw error."""
    try:
        flow = load()
    except nf.NbflowError:
        return
    try:
        flow.flow_version  # noqa: B018
        flow.to_yaml(agents=REGISTRY)
    except nf.NbflowError:
        pass


# -- 1. arbitrary text ----------------------------------------------------------------------


@FUZZ
@given(st.text(max_size=400))
@example("name: f\ntasks:\n  - id: a\n    agent: echo\n    action: run\n    tags: 5\n")
@example("name: f\ntasks:\n  - id: a\n    agent: echo\n    action: run\n    retry: {on: null}\n")
@example("name: f\nvariables: {x: {1: a, b: c}}\ntasks: []\n")
@example("name: f\ntasks:\n  - id: a\n    agent: echo\n    retry: {on: ['..x']}\n")
@example("name: f\ntasks: []\ntasks: []\n")
@example("\ud800")
@example("[" * 2000)
@example("&a [*a]")
def test_any_text_gives_an_nbflow_error_or_a_flow(text):
    _survives(lambda: loads_flow(text, agents=REGISTRY, store=None))
    _survives(lambda: loads_flow(text, agents=REGISTRY, store=None, format="json"))


# -- 2. soups of YAML syntax ----------------------------------------------------------------

_TOKENS = [
    "name: f\n", "tasks:\n", "  - id: a\n", "    agent: echo\n", "    action: run\n",
    "variables:", "branches:", "retry:", "on:", "parameters:", "when:", "tags:", "meta:",
    "dependencies:", "fan_out:", "&a ", "&b ", "*a", "*b", "<<: ", "!!binary ", "!!set ",
    "!!omap ", "!!python/name:os.system ", "!!float ", "!!timestamp ", "? ", "- ", ": ",
    "{", "}", "[", "]", ", ", "\n", "\n  ", "\n    ", "'", '"', "|\n", ">\n", "#", "---\n",
    "...\n", "null", "~", "true", "1e999", ".nan", "-.inf", "0x1F", "2001-12-14", "${vars.x}",
    "${results.a.0}", "a", "x", "\t", "\x85", "\ufeff",
]  # fmt: skip


@FUZZ
@given(st.lists(st.sampled_from(_TOKENS), max_size=60).map("".join))
@example("!!float ")
@example("!!timestamp ")
@example("a: &a [1, *a]\n")
@example("x: &x {<<: *x}\n")
@example("name: f\ntasks: &t [{id: a, agent: echo, action: run, dependencies: *t}]\n")
def test_yaml_syntax_soup_gives_an_nbflow_error_or_a_flow(text):
    _survives(lambda: loads_flow(text, agents=REGISTRY, store=None))


# -- 3. flow-shaped documents with random values -------------------------------------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["a", "b", "x", "echo", "run", "${vars.x}", "${results.a}", "${item}"])
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.integers(max_value=9), inner, max_size=4)
    ),
    max_leaves=12,
)
_IDS = st.sampled_from(["a", "b", "c"])


def _mostly(plausible: st.SearchStrategy) -> st.SearchStrategy:
    """A plausible value nine times in ten, anything the other time."""
    return st.integers(0, 9).flatmap(lambda n: _VALUES if n == 0 else plausible)


_RETRY = st.fixed_dictionaries(
    {},
    optional={
        "max_retries": _mostly(st.integers(0, 3)),
        "delay": _mostly(st.floats(0, 1)),
        "on": _mostly(st.sampled_from(["ConnectionError", ["ValueError"], "os.nope", "..x"])),
        "not_on": _mostly(st.just(["KeyError"])),
    },
)
_OPTIONS = {
    "name": st.text(max_size=8),
    "parameters": st.dictionaries(
        st.sampled_from(["x", "values", "seconds"]),
        _VALUES | st.sampled_from(["${vars.x}", "${results.a}", "${item}", "${results.a.0}"]),
        max_size=2,
    ),
    "dependencies": st.lists(_IDS, max_size=2),
    "meta": st.dictionaries(st.text(max_size=4), _VALUES, max_size=2),
    "priority": st.integers(-5, 5),
    "weight_rule": st.sampled_from(["absolute", "downstream", "upstream"]),
    "retry": _RETRY,
    "timeout": st.floats(0.001, 5),
    "when": st.sampled_from(
        ["True", "vars['x'] == 1", "a > 0", "len(results) >= 0", "data.clear()", "x +"]
    ),
    "trigger": st.sampled_from(["all_success", "all_done", "one_success", "none_failed"]),
    "fan_out": _IDS,
    "concurrency": st.integers(1, 3),
    "allow_partial": st.booleans(),
    "critical": st.booleans(),
    "tags": st.lists(st.text(max_size=4), max_size=2),
    "cache": st.booleans(),
    "estimate": st.floats(0.1, 5),
}
_TASK = st.fixed_dictionaries(
    {
        "id": _mostly(_IDS),
        "agent": _mostly(st.sampled_from(["echo", "python"])),
        "action": _mostly(st.sampled_from(["run", "double"])),
    },
    optional={field: _mostly(value) for field, value in _OPTIONS.items()},
)
_DOCUMENT = st.fixed_dictionaries(
    {"name": _mostly(st.just("f")), "tasks": st.lists(_mostly(_TASK), max_size=4)},
    optional={
        "variables": _mostly(st.dictionaries(st.sampled_from(["x", "y"]), _VALUES, max_size=2)),
        "on_error": _mostly(st.sampled_from(["stop", "continue"])),
        "max_workers": _mostly(st.integers(1, 4)),
        "strategy": _mostly(st.sampled_from(["priority", "fifo"])),
        "branches": st.lists(
            st.fixed_dictionaries(
                {"when": _mostly(st.just("x == 1")), "then": _mostly(st.lists(_IDS))},
                optional={"otherwise": _mostly(st.lists(_IDS))},
            ),
            max_size=2,
        ),
        "description": _mostly(st.text(max_size=8)),
    },
)


def _as_yaml(document: dict) -> str | None:
    try:
        return yaml.safe_dump(document, allow_unicode=True)
    except yaml.YAMLError:
        return None


@FUZZ
@given(_DOCUMENT)
@example({"name": "f", "tasks": [{"id": "a", "agent": "echo", "action": "run", "tags": 5}]})
@example({"name": "f", "tasks": [{"id": "a", "agent": "echo", "retry": {"on": None}}]})
@example({"name": "f", "variables": {"x": {1: "a", "b": "c"}}, "tasks": []})
def test_flow_shaped_documents_give_an_nbflow_error_or_a_flow(document):
    _survives(lambda: from_dict(document, agents=REGISTRY, store=None))
    text = _as_yaml(document)
    if text is not None:
        _survives(lambda: loads_flow(text, agents=REGISTRY, store=None))
    try:
        text = json.dumps(document)
    except ValueError:
        return
    _survives(lambda: loads_flow(text, agents=REGISTRY, store=None, format="json"))


@pytest.mark.parametrize("source", ["tags: 5", "retry: {on: null}"])
def test_past_fuzzer_finds_are_located_errors(source):
    text = f"name: f\ntasks:\n  - id: a\n    agent: echo\n    action: run\n    {source}\n"
    with pytest.raises(nf.FlowValidationError, match=r"tasks\[0\]\.(tags|retry\.on): "):
        loads_flow(text, agents=REGISTRY, store=None)


# -- to_yaml round-trips every string ------------------------------------------------------


@settings(max_examples=1000, deadline=None)
@given(st.text())
@example("a\x85b")
@example("a\u2028b\u2029")
@example("\ufeffa")
@example("a\r\nb ")
@example("line\n  indented\n")
def test_to_yaml_round_trips_every_string(text):
    flow = from_dict(
        {"name": "f", "description": text, "variables": {"s": text, text: [text]}, "tasks": []},
        store=None,
    )
    again = loads_flow(flow.to_yaml(agents=REGISTRY), agents=REGISTRY, store=None)
    assert (again.description or "") == text  # an empty description is not written
    assert again.variables == {"s": text, text: [text]}


def test_a_lone_surrogate_cannot_be_exported():
    flow = from_dict({"name": "f", "variables": {"s": "a\ud800"}, "tasks": []}, store=None)
    with pytest.raises(nf.DefinitionError, match=r"^variables\.s: holds a lone surrogate"):
        flow.to_yaml()
