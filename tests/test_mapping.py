"""What a fan-out maps over (nbflow.mapping, nbflow.elements) and element keys
(nbflow.element_keys): several parameters (cross product, zip), renamed parameters, run
variables as sources, ``key=``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import nbflow as nf
from nbflow import mapping


def times(run: nf.Run) -> dict[str, tuple[float, float | None]]:
    return {r.task: (r.start, r.end) for r in run.state.rows}


# -- forms -------------------------------------------------------------------------------


def test_the_forms_of_fan_out_are_one_canonical_value():
    assert mapping.coerce("items") == "items"
    assert mapping.coerce(["items"]) == "items"
    assert mapping.coerce({"items": "items"}) == "items"
    assert mapping.coerce(nf.zip("a")) == "a"  # one source: a zip is a product
    assert mapping.coerce(["a", "b"]) == nf.product("a", "b")
    assert mapping.coerce({"repo": "repos"}) == nf.FanOut(params=(("repo", "repos"),))
    assert mapping.coerce(nf.zip(repo="repos", day="days")).mode == "zip"
    dumped = nf.zip("a", b="bs").model_dump(mode="json")
    assert mapping.coerce(dumped) == nf.zip("a", b="bs")  # a spec read back
    assert str(nf.zip("a", b="bs")) == "nf.zip(a, b='bs')"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (5, "fan_out must be a parameter name"),
        ([], "at least one parameter"),
        (["a", "a"], "names parameter 'a' twice"),
        ({"x": "not a name"}, "identifiers"),
    ],
)
def test_a_bad_fan_out_form_is_refused_when_the_task_is_defined(value: Any, message: str):
    flow = nf.Flow("bad", store=None)
    with pytest.raises(nf.DefinitionError, match=rf"task 'each': fan_out: .*{message}"):

        @flow.task(fan_out=value)
        def each(a, x): ...


def test_an_element_parameter_must_be_a_parameter_and_a_source_not_the_task():
    flow = nf.Flow("bad", store=None)
    with pytest.raises(nf.DefinitionError, match=r"'day' is not a parameter of the function"):

        @flow.task(fan_out=nf.zip(repo="repos", day="days"))
        def each(repo): ...

    with pytest.raises(nf.DefinitionError, match=r"cannot fan out over its own result"):

        @flow.task(fan_out={"x": "each"})
        def each(x): ...


# -- several parameters ------------------------------------------------------------------


def product_flow() -> nf.Flow:
    flow = nf.Flow("product", store=None)

    @flow.task
    def models():
        return ["a", "b"]

    @flow.task
    def sizes():
        return [1, 2, 3]

    @flow.task(fan_out=["models", "sizes"])
    def train(models, sizes, epochs=5):
        return f"{models}{sizes}x{epochs}"

    return flow


def test_a_cross_product_runs_every_combination_in_row_major_order():
    run = product_flow().run()
    assert run.results["train"] == ["a1x5", "a2x5", "a3x5", "b1x5", "b2x5", "b3x5"]
    assert [r.task for r in run.state.rows if r.base == "train"] == [
        f"train[{i}]" for i in range(6)
    ]
    assert run.state.tasks["train"].size == 6


def test_a_zip_pairs_by_position_and_refuses_unequal_lengths():
    flow = nf.Flow("zipped", store=None, on_error="continue")

    @flow.task
    def urls():
        return ["u0", "u1", "u2"]

    @flow.task
    def days():
        return [10, 11, 12]

    @flow.task
    def short():
        return [1, 2]

    @flow.task(fan_out=nf.zip("urls", "days"))
    def fetch(urls, days):
        return f"{urls}@{days}"

    @flow.task(fan_out=nf.zip(u="urls", n="short"))
    def mismatch(u, n):
        return u

    run = flow.run()
    assert run.results["fetch"] == ["u0@10", "u1@11", "u2@12"]
    error = run.errors["mismatch"]
    assert isinstance(error, nf.FanOutError)
    assert "zip needs sources of equal lengths, but 'urls' has 3 elements, 'short' has 2" in str(
        error
    )
    rows = [r for r in run.state.rows if r.base == "mismatch"]
    assert [(r.task, r.element, r.status) for r in rows] == [("mismatch", None, "failed")]


def test_a_renamed_parameter_reads_its_source_and_not_the_whole_list():
    flow = nf.Flow("renamed", store=None)

    @flow.task
    def repos():
        return ["nbflow", "dask"]

    @flow.task(fan_out={"repo": repos}, key="repo")  # a task object names its task
    def fetch(repo, suffix="!"):
        return repo + suffix

    plan = flow.plan()
    assert plan.upstream["fetch"] == ("repos",)
    assert [p.name for p in plan.free_params["fetch"]] == ["suffix"]
    run = flow.run()
    assert run.results["fetch"] == ["nbflow!", "dask!"]
    assert run.elements("fetch") == {"nbflow": "nbflow!", "dask": "dask!"}


def test_a_renamed_parameter_and_the_whole_source_together():
    flow = nf.Flow("both", store=None)

    @flow.task
    def items():
        return [3, 1, 2]

    @flow.task(fan_out={"x": "items"})
    def rank(x, items):
        return sorted(items).index(x)

    from nbflow.streams import stream_consumers

    assert stream_consumers(flow.plan()) == {}  # it takes the whole list: it cannot stream
    assert flow.run().results["rank"] == [2, 0, 1]


# -- run variables -----------------------------------------------------------------------


def test_a_run_variable_is_a_fan_out_source():
    flow = nf.Flow("variables", store=None)

    @flow.task(fan_out="urls")
    def fetch(urls):
        return urls.upper()

    @flow.task(fan_out={"n": "numbers"})
    def double(n):
        return 2 * n

    @flow.task(fan_out="regions")
    def region(regions=("eu", "us")):
        return regions

    run = flow.run(variables={"urls": ["a", "b"], "numbers": [1, 2, 3]})
    assert run.results == {"fetch": ["A", "B"], "double": [2, 4, 6], "region": ["eu", "us"]}
    run = flow.run(variables={"urls": [], "numbers": [1], "regions": ["ap"]})
    assert run.results == {"fetch": [], "double": [2], "region": ["ap"]}


def test_a_product_of_a_run_variable_and_an_upstream_result():
    flow = nf.Flow("mixed", store=None)

    @flow.task
    def models():
        return ["m1", "m2"]

    @flow.task(fan_out={"model": "models", "seed": "seeds"})
    def fit(model, seed):
        return f"{model}/{seed}"

    run = flow.run(variables={"seeds": [0, 1]})
    assert run.results["fit"] == ["m1/0", "m1/1", "m2/0", "m2/1"]


ZIP = r"^task 'each' fan_out=nf\.zip\(urls, days\): "


@pytest.mark.parametrize(
    ("variables", "error", "message"),
    [
        ({}, nf.MissingInputError, r"task 'each' parameter 'urls' is not a task"),
        ({"urls": "abc"}, nf.FanOutError, ZIP + r"run variable 'urls' is a str.*\['abc'\]"),
        ({"urls": iter([1])}, nf.FanOutError, ZIP + r"run variable 'urls' is a one-shot iterator"),
        ({"urls": 5}, nf.FanOutError, ZIP + r"run variable 'urls' \(int\) is not iterable"),
        (
            {"urls": [1, 2], "days": [1]},
            nf.FanOutError,
            ZIP + r"zip needs sources of equal lengths",
        ),
        (
            {"urls": ["a", "b", "a"], "days": [1, 2, 3]},
            nf.DuplicateKeyError,
            r"^task 'each' key='urls': key 'a' is not unique: elements 0 and 2 both have it",
        ),
    ],
)
def test_bad_run_variable_sources_are_refused_before_any_task_runs(
    variables: dict[str, Any], error: type[Exception], message: str
):
    flow = nf.Flow("refused", store=None)
    ran: list[str] = []

    @flow.task
    def first():
        ran.append("first")

    @flow.task(fan_out=nf.zip("urls", "days"), key="urls")
    def each(urls, days=None):
        ran.append("each")

    if "days" not in variables and "urls" in variables and error is not nf.MissingInputError:
        variables = {**variables, "days": [1]}
    with pytest.raises(error, match=message):
        flow.run(variables=variables)
    assert ran == [] and flow.last_run is None


# -- streaming sources -------------------------------------------------------------------


def streaming_sources() -> nf.Flow:
    flow = nf.Flow("streamed-pairs", store=None)

    @flow.task
    async def letters():
        for letter in "abc":
            await asyncio.sleep(2)
            yield letter

    @flow.task
    async def numbers():
        for n in (1, 2, 3):
            await asyncio.sleep(1)
            yield n

    return flow


def test_a_product_of_two_streams_starts_each_combination_as_it_completes():
    flow = streaming_sources()

    @flow.task(fan_out=["letters", "numbers"])
    async def combo(letters, numbers):
        return f"{letters}{numbers}"

    run = flow.run(simulate=True)
    assert run.results["combo"] == [f"{x}{n}" for x in "abc" for n in (1, 2, 3)]  # row-major
    starts = sorted(
        (r.start, run.state.tasks["combo"].element_results[r.element])
        for r in run.state.rows
        if r.base == "combo"
    )
    # a1 when 'a' arrives (2); a2 then too; a3 at 3; b1, b2, b3 at 4; c1, c2, c3 at 6.
    assert starts == [
        (2, "a1"), (2, "a2"), (3, "a3"), (4, "b1"), (4, "b2"), (4, "b3"), (6, "c1"),
        (6, "c2"), (6, "c3"),
    ]  # fmt: skip


def test_a_zip_of_two_streams_pairs_by_index_as_both_arrive():
    flow = streaming_sources()

    @flow.task(fan_out=nf.zip(x="letters", n="numbers"))
    async def pair(x, n):
        return f"{x}{n}"

    run = flow.run(simulate=True)
    assert run.results["pair"] == ["a1", "b2", "c3"]
    assert [times(run)[f"pair[{i}]"][0] for i in range(3)] == [2, 4, 6]


def test_a_zip_fails_as_soon_as_one_stream_outgrows_an_ended_one():
    flow = nf.Flow("outgrown", store=None)
    closed: list[bool] = []

    @flow.task
    def pair_of():
        return [1, 2]

    @flow.task
    async def endless():
        try:
            i = 0
            while True:
                await asyncio.sleep(1)
                yield i
                i += 1
        finally:
            closed.append(True)

    @flow.task(fan_out=nf.zip(a="pair_of", b="endless"))
    async def zipped(a, b):
        return a + b

    run = flow.run(simulate=True)
    assert run.status == "failed" and run.states["zipped"] == "failed"
    assert "'pair_of' has 2 elements, 'endless' has 3" in str(run.errors["zipped"])
    assert run.states["endless"] == "cancelled" and closed == [True]  # the run stopped it
    assert times(run)["zipped[1]"][0] == 2


# -- keys --------------------------------------------------------------------------------


def keyed_flow(key: Any, **options: Any) -> nf.Flow:
    flow = nf.Flow("keyed", store=None, on_error="continue")

    @flow.task
    def repos():
        return [{"name": "nbflow", "stars": 3}, {"name": "dask", "stars": 0}]

    @flow.task(fan_out="repos", key=key, **options)
    def stars(repos):
        if not repos["stars"]:
            raise ValueError(f"no stars for {repos['name']}")
        return repos["stars"]

    return flow


@pytest.mark.parametrize("key", ["item['name']", lambda item: item["name"]], ids=["expr", "fn"])
def test_a_key_names_elements_in_the_timeline_errors_and_results(key: Any):
    flow = keyed_flow(key, allow_partial=True)
    run = flow.run()
    assert run.results["stars"] == [3]
    assert run.elements("stars") == {"nbflow": 3}
    assert set(run.element_errors["stars"]) == {"dask"}
    frame = run.timeline()
    rows = frame[frame.base_task == "stars"]
    assert rows.task.tolist() == ["stars[nbflow]", "stars[dask]"]
    assert rows.key.tolist() == ["nbflow", "dask"] and rows.element.tolist() == [0, 1]
    from nbflow.widgets.views import element_errors_text

    text = element_errors_text(run.state.tasks["stars"])
    assert text == "1 of 2 elements failed; first: stars[dask] ValueError: no stars for dask"
    # The dashboard draws the same: its timeline's rows and its task table's error.
    from nbflow.render import gantt_svg

    assert "stars[nbflow]" in gantt_svg(run.timeline()) and "stars[dask]" in run._repr_html_()


def test_a_failed_keyed_fan_out_names_the_element_in_its_error():
    run = keyed_flow("item['name']").run()
    assert "first (element stars[dask]): ValueError: no stars for dask" in str(run.errors["stars"])


def test_a_key_that_is_not_unique_fails_the_task_before_the_duplicate_starts():
    flow = nf.Flow("dupes", store=None, on_error="continue")
    started: list[str] = []

    @flow.task
    async def names():
        for name in ("a", "b", "a", "c"):
            await asyncio.sleep(1)
            yield name

    @flow.task(fan_out="names", key="item")
    async def each(names):
        started.append(names)
        await asyncio.sleep(0.5)
        return names

    run = flow.run(simulate=True)
    error = run.errors["each"]
    assert isinstance(error, nf.DuplicateKeyError)
    assert (error.key, error.first, error.second) == ("a", 0, 2)
    assert str(error).startswith(
        "task 'each' key='item': key 'a' is not unique: elements 0 and 2 both have it"
    )
    assert started == ["a", "b"] and run.states["each"] == "failed"


def test_a_key_over_several_parameters_sees_a_dict_and_the_names():
    flow = product_flow()

    @flow.task(fan_out=["models", "sizes"], key="item['models'] + '-' + str(sizes)")
    def tagged(models, sizes):
        return nf.context().key

    @flow.task(fan_out=["models", "sizes"], key="f'{models}{sizes}'")
    def formatted(models, sizes):
        return nf.context().key

    run = flow.run()
    assert run.results["tagged"] == ["a-1", "a-2", "a-3", "b-1", "b-2", "b-3"]
    assert run.results["formatted"] == ["a1", "a2", "a3", "b1", "b2", "b3"]


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("itme['name']", r"unknown name 'itme' \(did you mean 'item'\?\)"),
        ("__import__('os')", r"key"),
    ],
)
def test_a_bad_key_expression_is_refused_when_the_task_is_defined(key: str, message: str):
    with pytest.raises(nf.ConditionError, match=message):
        keyed_flow(key)


def test_a_key_needs_a_fan_out_and_must_give_a_str_or_an_int():
    flow = nf.Flow("keys", store=None)
    with pytest.raises(nf.DefinitionError, match="key need fan_out"):

        @flow.task(key="item")
        def alone(): ...

    run = keyed_flow("item").run()
    assert "key='item' gave dict" in str(run.errors["stars"])


def test_the_store_records_each_attempt_with_its_key(tmp_path):
    flow = keyed_flow("item['name']", allow_partial=True)
    flow.store = str(tmp_path / "keys.db")
    run = flow.run()
    attempts = flow.state_store.attempts(run.run_id)
    assert [(a["task"], a["element"], a["key"]) for a in attempts if a["task"] == "stars"] == [
        ("stars", 0, "nbflow"),
        ("stars", 1, "dask"),
    ]
    replayed = flow.state_store.state(run.run_id)  # folded from the recorded events
    assert replayed.tasks["stars"].element_keys == {0: "nbflow", 1: "dask"}


def test_renamed_sources_are_inputs_once_each_and_a_missing_variable_is_named():
    flow = nf.Flow("renamed", store=None)

    @flow.task
    def models():
        return ["m1", "m2"]

    # `model` and `again` both read the task `models`; `seed` reads the variable `seeds`.
    @flow.task(fan_out=nf.zip(model="models", again="models", seed="seeds"))
    def fit(model, again, seed, seeds):  # (it also takes the whole list)
        return f"{model}/{again}/{seed}/{len(seeds)}"

    plan = flow.plan()
    assert plan.upstream["fit"] == ("models",)
    assert [p.name for p in plan.free_params["fit"]] == ["seeds"]
    run = flow.run(variables={"seeds": [0, 1]})
    assert run.results["fit"] == ["m1/m1/0/2", "m2/m2/1/2"]
    with pytest.raises(nf.MissingInputError, match=r"task 'fit' parameter 'seeds'"):
        flow.run()


def test_a_key_function_s_duplicate_over_run_variables_is_refused_before_any_task_runs():
    flow = nf.Flow("keyed", store=None)
    ran: list[str] = []

    @flow.task(fan_out="urls", key=lambda url: url[0])
    def one(urls):
        ran.append(urls)

    with pytest.raises(nf.DuplicateKeyError, match=r"^task 'one' key=.*<lambda>: key 'a' is not"):
        flow.run(variables={"urls": ["ab", "ac"]})
    assert ran == [] and flow.last_run is None


def test_a_bad_run_variable_after_a_task_source_is_refused_before_any_task_runs():
    flow = nf.Flow("mixed-bad", store=None)
    ran: list[str] = []

    @flow.task
    def models():
        ran.append("models")
        return ["m1", "m2"]

    @flow.task(fan_out={"model": "models", "seed": "seeds"})
    def fit(model, seed):
        ran.append("fit")

    with pytest.raises(nf.FanOutError, match=r"run variable 'seeds' is a str"):
        flow.run(variables={"seeds": "01"})
    assert ran == [] and flow.last_run is None


def test_an_element_parameter_named_like_another_task_maps_over_its_source():
    flow = nf.Flow("users", store=None)
    flow.task(name="user")(lambda: "admin")
    flow.task(name="users")(lambda: ["a", "b"])

    @flow.task(fan_out={"user": "users"})  # `user` is the element, not the task `user`
    def greet(user):
        return f"hi {user}"

    assert flow.plan().upstream["greet"] == ("users",)
    assert flow.run(simulate=True).results["greet"] == ["hi a", "hi b"]
