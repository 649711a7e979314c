"""Validation of flow documents: every kind of problem, each with its exact path, all at once."""

from __future__ import annotations

import pytest

import nbflow as nf
from nbflow.data import AgentRegistry, FlowValidationError, from_dict, loads_flow
from nbflow.data.schema import FlowReferenceError


@pytest.fixture
def registry() -> AgentRegistry:
    registry = AgentRegistry()
    registry.register_function("load", lambda region="eu": [region])
    registry.register_function("count", lambda rows: len(rows))
    return registry


def problems_of(document, registry) -> dict[str, str]:
    with pytest.raises(FlowValidationError) as caught:
        from_dict(document, agents=registry)
    return {p.path: p.message for p in caught.value.problems}


def ok_task(**fields):
    return {"id": "t", "agent": "echo", **fields}


def flow_with(*tasks, **fields):
    return {"name": "f", **fields, "tasks": list(tasks)}


@pytest.mark.parametrize(
    ("task", "path", "message"),
    [
        (ok_task(retry={"max_retries": -1}), "tasks[0].retry.max_retries", "must be >= 0"),
        (ok_task(retry={"delay": -0.5}), "tasks[0].retry.delay", "must be >= 0"),
        (
            ok_task(retry={"on": ["NoSuchError"]}),
            "tasks[0].retry.on",
            "'NoSuchError' is not an exception class",
        ),
        (ok_task(retry={"tries": 3}), "tasks[0].retry.tries", "unknown field"),
        (ok_task(priority="high"), "tasks[0].priority", "must be an integer"),
        (ok_task(timeout=0), "tasks[0].timeout", "must be > 0"),
        (ok_task(timeout="soon"), "tasks[0].timeout", "must be a number"),
        (ok_task(trigger="sometimes"), "tasks[0].trigger", "must be one of 'all_success'"),
        (ok_task(critical="very"), "tasks[0].critical", "must be true or false"),
        (ok_task(parameters=[1, 2]), "tasks[0].parameters", "must be a mapping"),
        (ok_task(dependencies=5), "tasks[0].dependencies", "must be a list"),
        (ok_task(colour="red"), "tasks[0].colour", "unknown field; known fields are id, name"),
        (ok_task(after=["x"]), "tasks[0].after", "not allowed: use 'dependencies'"),
        (
            ok_task(concurrency=2),
            "tasks[0]",
            "concurrency, rate, allow_partial and key need fan_out",
        ),
        (ok_task(meta={"agent": "x"}), "tasks[0].meta", "set by the loader"),
        ({"agent": "echo"}, "tasks[0].id", "required"),
        ({"id": "t"}, "tasks[0].agent", "required"),
        ({"id": "load-rows", "agent": "echo"}, "tasks[0].id", "is not a valid id"),
        ({"id": "class", "agent": "echo"}, "tasks[0].id", "is not a valid id"),
        ({"id": "results", "agent": "echo"}, "tasks[0].id", "'results' is reserved"),
        ("just a string", "tasks[0]", "must be a mapping, got str"),
        (
            ok_task(agent="htpp"),
            "tasks[0].agent",
            "unknown agent 'htpp'; known agents: echo, http, python, sleep; did you mean 'http'?",
        ),
        (
            ok_task(action="vale"),
            "tasks[0].action",
            "agent 'echo' has no action 'vale'; its actions: run, value",
        ),
        (
            ok_task(agent="python", action="lod"),
            "tasks[0].action",
            "agent 'python' has no action 'lod'; its actions: count, load; did you mean 'load'?",
        ),
        (
            ok_task(agent="http", action="get", parameters={"url": "u", "verb": "x"}),
            "tasks[0].parameters.verb",
            "http.get takes no parameter 'verb'; it takes url",
        ),
        (
            ok_task(agent="http", action="get"),
            "tasks[0].parameters",
            "http.get needs parameter 'url'",
        ),
        (ok_task(parameters={"p": "${vars"}), "tasks[0].parameters.p", "is not closed"),
        (ok_task(parameters={"p": "${env.HOME}"}), "tasks[0].parameters.p", "starts with 'env'"),
        (
            ok_task(parameters={"p": "${item}"}),
            "tasks[0].parameters.p",
            "${item} is the element of a fan-out",
        ),
        (ok_task(parameters={"p": "${results.t}"}), "tasks[0].parameters.p", "own result"),
        (ok_task(when="results["), "tasks[0].when", "syntax error"),
        (ok_task(when="__import__('os')"), "tasks[0].when", "is not allowed"),
        (ok_task(dependencies=["t"]), "tasks[0].dependencies[0]", "cannot depend on itself"),
    ],
)
def test_each_kind_of_task_problem_has_its_path(registry, task, path, message):
    found = problems_of(flow_with(task), registry)
    assert path in found, found
    assert message in found[path]


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"on_error": "explode"}, "on_error", "must be one of 'stop' or 'continue'"),
        ({"max_workers": 0}, "max_workers", "must be >= 1"),
        ({"strategy": "fastest"}, "strategy", "unknown strategy 'fastest'"),
        ({"variables": ["a"]}, "variables", "must be a mapping"),
        ({"variables": {"t": 1}}, "variables.t", "also a task id"),
        ({"colour": "red"}, "colour", "unknown field; known fields are name, description"),
        ({"name": ""}, "name", "must not be empty"),
        ({"branches": [{"when": "True"}]}, "branches[0].then", "required"),
        ({"branches": [{"when": "1 +", "then": ["t"]}]}, "branches[0].when", "syntax error"),
    ],
)
def test_each_kind_of_flow_problem_has_its_path(registry, fields, path, message):
    found = problems_of(flow_with(ok_task(), **fields), registry)
    assert message in found.get(path, ""), found


def test_missing_name_and_tasks_and_a_non_mapping_document(registry):
    assert problems_of({}, registry) == {"name": "required", "tasks": "required"}
    assert problems_of(["not", "a", "mapping"], registry) == {
        "(document)": "must be a mapping, got list"
    }


def test_every_problem_is_listed_not_only_the_first(registry):
    document = {
        "name": "f",
        "max_workers": 0,
        "tasks": [
            {"id": "a", "agent": "echo", "retry": {"max_retries": -1}, "priority": "x"},
            {"id": "b", "agent": "nope"},
            {"id": "c", "agent": "echo", "timeout": -1},
            {"id": "d", "agent": "echo", "retry": {"max_retries": -2}},
        ],
    }
    with pytest.raises(FlowValidationError) as caught:
        from_dict(document, agents=registry, source="etl.yaml")
    error = caught.value
    assert [p.path for p in error.problems] == [
        "max_workers",
        "tasks[0].retry.max_retries",  # in the order the fields are written
        "tasks[0].priority",
        "tasks[1].agent",
        "tasks[2].timeout",
        "tasks[3].retry.max_retries",
    ]
    text = str(error)
    assert text.startswith("flow definition etl.yaml has 6 problems:")
    assert "tasks[3].retry.max_retries: must be >= 0 [task 'd']" in text


def test_a_dependency_naming_no_task_is_a_missing_dependency_error(registry):
    document = flow_with(
        {"id": "extract", "agent": "echo"},
        {"id": "load", "agent": "echo", "dependencies": ["extrct"]},
    )
    with pytest.raises(nf.MissingDependencyError) as caught:
        from_dict(document, agents=registry)
    error = caught.value
    assert isinstance(error, FlowReferenceError) and isinstance(error, FlowValidationError)
    assert error.task == "load" and error.missing == "extrct" and error.suggestion == "extract"
    assert (
        "tasks[1].dependencies[0]: 'extrct' is not a task of this flow; did you mean "
        "'extract'?" in str(error)
    )


@pytest.mark.parametrize(
    ("task", "path", "message"),
    [
        (
            ok_task(id="u", parameters={"p": "${results.extrct.rows}"}),
            "tasks[1].parameters.p",
            "reads 'extrct', which is not a task of this flow; did you mean 'extract'?",
        ),
        (ok_task(id="u", fan_out="extrct"), "tasks[1].fan_out", "'extrct' is not a task"),
        (
            ok_task(id="u", dependencies="nothing"),
            "tasks[1].dependencies[0]",
            "'nothing' is not a task",
        ),
    ],
)
def test_every_reference_to_no_task_is_a_missing_dependency(registry, task, path, message):
    document = flow_with({"id": "extract", "agent": "echo"}, task)
    with pytest.raises(nf.MissingDependencyError):
        from_dict(document, agents=registry)
    assert message in problems_of(document, registry)[path]


def test_branch_member_naming_no_task_is_a_missing_dependency(registry):
    document = flow_with(ok_task(), branches=[{"when": "True", "then": ["t"], "otherwise": ["u"]}])
    with pytest.raises(nf.MissingDependencyError, match=r"branches\[0\].otherwise\[0\]"):
        from_dict(document, agents=registry)


def test_fan_out_element_must_be_read_as_item(registry):
    document = flow_with(
        {"id": "rows", "agent": "echo"},
        ok_task(id="each", fan_out="rows", parameters={"p": "${results.rows}"}),
    )
    found = problems_of(document, registry)
    assert "read the element as ${item}" in found["tasks[1].parameters.p"]


def test_variable_named_like_a_task_is_refused(registry):
    document = flow_with(
        {"id": "rows", "agent": "echo"}, ok_task(id="u", parameters={"p": "${vars.rows}"})
    )
    assert "has the name of a task" in problems_of(document, registry)["tasks[1].parameters.p"]


def test_duplicate_ids_are_refused(registry):
    found = problems_of(flow_with(ok_task(), ok_task()), registry)
    assert found["tasks[1].id"] == "duplicate id 't' (also tasks[0])"


def test_cycle_is_raised_with_the_cycle_named(registry):
    document = flow_with(
        {"id": "a", "agent": "echo", "dependencies": ["b"]},
        {"id": "b", "agent": "echo", "dependencies": ["a"]},
    )
    with pytest.raises(nf.CycleError, match=r"a -> b -> a|b -> a -> b"):
        from_dict(document, agents=registry)


def test_condition_reading_a_non_upstream_task_is_a_condition_error(registry):
    document = flow_with({"id": "a", "agent": "echo"}, ok_task(when="mystery > 1"))
    with pytest.raises(nf.ConditionError, match="unknown name 'mystery'"):
        from_dict(document, agents=registry)


def test_yaml_syntax_error_has_line_and_column(registry):
    with pytest.raises(FlowValidationError, match=r"cannot parse YAML: .* at line \d+, column \d+"):
        loads_flow("name: f\ntasks:\n  - id: [a\n", agents=registry)


def test_json_syntax_error(registry):
    with pytest.raises(FlowValidationError, match="cannot parse JSON"):
        loads_flow('{"name": "f",', agents=registry, format="json")


def test_yaml_on_key_is_a_string_not_a_boolean(registry):
    flow = loads_flow(
        "name: f\ntasks:\n  - id: t\n    agent: echo\n    retry: {on: [KeyError]}\n",
        agents=registry,
        store=None,
    )
    assert flow.tasks["t"].spec.retry.on == (KeyError,)


def test_boolean_key_from_a_yaml_1_1_parser_gets_a_hint(registry):
    # yaml.safe_load turns `on:` into True; nf.load_flow does not, but from_dict may get it.
    document = flow_with(ok_task(retry={True: ["KeyError"]}))
    assert "quote the key, as 'on'" in problems_of(document, registry)["tasks[0].retry.True"]
