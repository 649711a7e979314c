"""Every result type is recorded by the default store: history, resume and the cache work.

Results are compared with ``is`` only, never with ``==``: a DataFrame's or an array's ``==``
returns an array whose truth value raises, and a user's class may make ``==`` raise outright.
Each case runs through the default SQLite store (``NBFLOW_STORE``, a fresh file per test).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import nbflow as nf


class RaisingEq:
    """A value whose ``==`` and truth value both raise."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        raise TypeError("RaisingEq cannot be compared")

    def __bool__(self) -> bool:
        raise TypeError("RaisingEq has no truth value")

    __hash__ = object.__hash__


class ArrayEq:
    """A value whose ``==`` returns something that is not a bool (as numpy's does)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> object:
        return np.array([True, False])

    __hash__ = object.__hash__


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})


CASES = {
    "dataframe": (_frame, lambda v: v.equals(_frame())),
    "empty dataframe": (pd.DataFrame, lambda v: isinstance(v, pd.DataFrame) and v.empty),
    "series": (lambda: pd.Series([1.5, 2.5]), lambda v: v.equals(pd.Series([1.5, 2.5]))),
    "ndarray": (
        lambda: np.arange(6).reshape(2, 3),
        lambda v: (v == np.arange(6).reshape(2, 3)).all(),
    ),
    "0-d array": (lambda: np.array(7), lambda v: int(v) == 7),
    "raising ==": (lambda: RaisingEq(3), lambda v: type(v) is RaisingEq and v.value == 3),
    "array ==": (lambda: ArrayEq(4), lambda v: type(v) is ArrayEq and v.value == 4),
}


def _flow(make, calls: list[str], *, cache: bool) -> nf.Flow:
    flow = nf.Flow("types")

    # A task returning None beside the odd value: the two are recorded in one batch.
    @flow.task
    def nothing():
        calls.append("nothing")

    @flow.task(cache=cache)
    def value():
        calls.append("value")
        return make()

    @flow.task(cache=cache)
    def downstream(value):
        calls.append("downstream")
        return type(value).__name__

    return flow


@pytest.mark.parametrize("case", CASES)
def test_a_result_of_this_type_is_recorded_and_resumed(case):
    make, same = CASES[case]
    calls: list[str] = []
    first = _flow(make, calls, cache=False).run()
    assert first.status == "succeeded"
    history = nf.history("types")  # raised StoreError when the batch was dropped
    assert history.run_id.tolist() == [first.run_id]
    assert history.status.tolist() == ["succeeded"]

    calls.clear()
    resumed = _flow(make, calls, cache=False).run(resume="last")
    assert calls == []
    assert resumed.states == {"nothing": "cached", "value": "cached", "downstream": "cached"}
    assert same(resumed.results["value"])


@pytest.mark.parametrize("case", CASES)
def test_a_result_of_this_type_is_served_from_the_cache(case):
    make, same = CASES[case]
    calls: list[str] = []
    _flow(make, calls, cache=True).run()
    calls.clear()
    second = _flow(make, calls, cache=True).run()
    assert calls == ["nothing"]
    assert second.states["value"] == "cached"
    assert second.states["downstream"] == "cached"
    assert same(second.results["value"])
    assert len(nf.history("types")) == 2


def test_fan_out_elements_of_arrays_are_recorded_and_resumed():
    calls: list[str] = []

    def flow() -> nf.Flow:
        f = nf.Flow("arrays")

        @f.task
        def chunks():
            return [np.arange(3), np.arange(3, 6)]

        @f.task(fan_out="chunks")
        def doubled(chunks):
            calls.append("doubled")
            return chunks * 2

        return f

    first = flow().run()
    assert [a.tolist() for a in first.results["doubled"]] == [[0, 2, 4], [6, 8, 10]]
    calls.clear()
    resumed = flow().run(resume="last")
    assert calls == []
    assert [a.tolist() for a in resumed.results["doubled"]] == [[0, 2, 4], [6, 8, 10]]
