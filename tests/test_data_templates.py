"""Templates: ``${vars.x}`` / ``${results.task.field}`` / ``${item}``, parsed safely, no eval."""

from __future__ import annotations

import dataclasses
import os
import sys
from types import SimpleNamespace
from typing import NamedTuple

import pydantic
import pytest

from nbflow.data.templates import (
    Interpolation,
    Reference,
    TemplateError,
    TemplateSyntaxError,
    compile_value,
    resolve,
)

CONTEXT = {
    "vars": {"region": "eu", "limits": {"rows": 5}},
    "results": {"extract": {"rows": [{"id": 1}, {"id": 2}], "count": 2}, "n": 7},
    "item": {"name": "ada"},
}


def test_template_whole_string_keeps_the_value_type():
    assert compile_value("${results.extract.rows}").resolve(CONTEXT) == [{"id": 1}, {"id": 2}]
    assert compile_value("${results.n}").resolve(CONTEXT) == 7


def test_template_inside_text_is_interpolated():
    value = compile_value("s3://bucket/${vars.region}/part-${results.extract.count}.csv")
    assert isinstance(value.value, Interpolation)
    assert value.resolve(CONTEXT) == "s3://bucket/eu/part-2.csv"


def test_template_walks_indices_nested_keys_and_item():
    assert resolve("${results.extract.rows.1.id}", CONTEXT) == 2
    assert resolve("${results.extract.rows.-1.id}", CONTEXT) == 2
    assert resolve("${vars.limits.rows}", CONTEXT) == 5
    assert resolve("hello ${item.name}", CONTEXT) == "hello ada"


def test_template_walks_mappings_and_lists_of_parameters():
    params = {"a": ["${vars.region}", {"b": "${results.n}"}], "c": 3, "d": None}
    assert compile_value(params).resolve(CONTEXT) == {"a": ["eu", {"b": 7}], "c": 3, "d": None}


def test_template_escape_gives_a_literal_dollar_brace():
    assert resolve("cost $${not.a.template} in ${vars.region}", CONTEXT) == (
        "cost ${not.a.template} in eu"
    )


def test_text_without_templates_stays_plain():
    assert compile_value("just text $ and {braces}").value == "just text $ and {braces}"


def test_references_lists_every_template_in_order():
    compiled = compile_value({"x": "${vars.region}-${results.extract.count}", "y": ["${item}"]})
    refs = list(compiled.references())
    assert [(r.root, r.path) for r in refs] == [
        ("vars", ("region",)),
        ("results", ("extract", "count")),
        ("item", ()),
    ]
    assert all(isinstance(r, Reference) for r in refs)


def test_missing_key_names_the_template_the_place_and_the_key():
    value = compile_value("${results.extract.rowz}", "tasks.load.parameters.table")
    with pytest.raises(TemplateError) as caught:
        value.resolve(CONTEXT)
    message = str(caught.value)
    assert "'${results.extract.rowz}'" in message
    assert "tasks.load.parameters.table" in message
    assert "no key 'rowz'" in message and "'rows'" in message  # lists what exists
    assert caught.value.key == "rowz" and isinstance(caught.value, LookupError)


def test_missing_variable_and_bad_index_are_clear():
    with pytest.raises(TemplateError, match=r"vars has no key 'bucket'"):
        resolve("${vars.bucket}", CONTEXT)
    with pytest.raises(TemplateError, match=r"index 9 is out of range: results.extract.rows has 2"):
        resolve("${results.extract.rows.9}", CONTEXT)
    with pytest.raises(TemplateError, match=r"is a list; use an index, not 'id'"):
        resolve("${results.extract.rows.id}", CONTEXT)
    with pytest.raises(TemplateError, match=r"results.n is int 7, which has no key 'x'"):
        resolve("${results.n.x}", CONTEXT)


def test_root_missing_from_context_is_a_template_error():
    with pytest.raises(TemplateError, match="'item' is not set here"):
        compile_value("${item}").resolve({"vars": {}, "results": {}})


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("${vars.region", "is not closed"),
        ("${}", "empty template"),
        ("${env.HOME}", "starts with 'env'"),
        ("${vars}", r"must name a variable: \$\{vars.NAME\}"),
        ("${results}", r"must name a task id"),
        ("${results.a..b}", "invalid part ''"),
        ("${results.a.__class__}", "private name '__class__'"),
        ("${vars.9lives}", "not a valid name"),
        ("${results.a b}", "invalid part 'a b'"),
    ],
)
def test_template_syntax_errors_are_found_when_compiling(text, match):
    with pytest.raises(TemplateSyntaxError, match=match) as caught:
        compile_value({"p": text}, "tasks.t.parameters")
    assert caught.value.where == "tasks.t.parameters.p"


def test_attribute_access_is_public_only():
    @dataclasses.dataclass
    class Box:
        size: int = 3
        _secret: str = "no"

    assert resolve("${results.box.size}", {"results": {"box": Box()}}) == 3
    with pytest.raises(TemplateSyntaxError, match="private"):
        resolve("${results.box._secret}", {"results": {"box": Box()}})


class Point(NamedTuple):
    x: int
    y: int


class Model(pydantic.BaseModel):
    rows: list[int]


@dataclasses.dataclass
class Report:
    point: Point
    model: Model
    extra: SimpleNamespace


def test_templates_read_the_fields_of_plain_data_objects():
    report = Report(Point(1, 2), Model(rows=[7, 8]), SimpleNamespace(tag="t"))
    context = {"results": {"report": report}}
    assert resolve("${results.report.point.y}", context) == 2
    assert resolve("${results.report.point.0}", context) == 1  # a namedtuple is a tuple
    assert resolve("${results.report.model.rows.1}", context) == 8
    assert resolve("${results.report.extra.tag}", context) == "t"
    with pytest.raises(
        TemplateError, match=r"is a Point with no field 'z' \(its fields: 'x', 'y'\)"
    ):
        resolve("${results.report.point.z}", context)


def _rows():
    yield 1


class Plain:
    size = 3

    def method(self):
        return "called"


@pytest.mark.parametrize(
    ("template", "value"),
    [
        ("${results.rows.gi_frame.f_globals.os.environ.SECRET}", _rows()),  # the walk
        ("${results.rows.gi_code}", _rows()),
        ("${results.rows.f_globals}", sys._getframe()),
        ("${results.rows.environ.HOME}", os),  # a module
        ("${results.rows.path.sep}", os),
        ("${results.rows.size}", Plain()),  # not plain data: nbflow cannot know its attributes
        ("${results.rows.method}", Plain()),
        ("${results.rows.mro}", Report),  # a class, even a dataclass
        ("${results.rows.x}", Point),
        ("${results.rows.real}", 5),
        ("${results.rows.upper}", "text"),
        ("${results.rows.model_dump}", Model(rows=[])),
    ],
)
def test_templates_refuse_to_walk_into_anything_but_data(template, value, monkeypatch):
    monkeypatch.setenv("SECRET", "hunter2")
    with pytest.raises(TemplateError) as info:
        resolve(template, {"results": {"rows": value}})
    assert "hunter2" not in str(info.value)


def test_templates_never_evaluate_code():
    # Anything that is not a dotted path is rejected as syntax, not executed.
    for text in ("${__import__('os').system('true')}", "${results.a + 1}", "${vars.a()}"):
        with pytest.raises(TemplateSyntaxError):
            compile_value(text)
