"""docs/flows-as-data.md is true: its examples run as written, and etl.yaml loads and runs."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import nbflow as nf

DOCS = Path(__file__).resolve().parents[1] / "docs"
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


@pytest.fixture
def global_agents() -> Iterator[None]:
    """The page registers functions and agents in ``nf.agents``: restore it afterwards."""
    saved = dict(nf.agents._agents), dict(nf.agents.python.functions)
    yield
    nf.agents._agents.clear()
    nf.agents._agents.update(saved[0])
    nf.agents.python.functions.clear()
    nf.agents.python.functions.update(saved[1])


def test_every_python_block_of_the_page_runs_in_order(tmp_path, monkeypatch, global_agents):
    shutil.copy(DOCS / "examples" / "etl.yaml", tmp_path / "etl.yaml")
    monkeypatch.chdir(tmp_path)
    blocks = PYTHON_BLOCK.findall((DOCS / "flows-as-data.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 6
    namespace: dict[str, object] = {"__name__": "docs_flows_as_data"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"docs/flows-as-data.md block {number}", "exec"), namespace)
    assert namespace["run"].results["announce"]["message"] == "us: 2 orders, total 19.75"


def test_etl_example_loads_and_runs(global_agents):
    @nf.agents.register_function
    def extract_orders(region):
        return [{"id": i, "amount": str(i * 4)} for i in range(1, 4)]

    @nf.agents.register_function
    def clean_order(order):
        return {**order, "amount": float(order["amount"])}

    @nf.agents.register_function
    def summarize(orders, region):
        return {"count": len(orders), "total": sum(o["amount"] for o in orders)}

    flow = nf.load_flow(DOCS / "examples" / "etl.yaml", store=None)
    assert list(flow.tasks) == ["extract", "clean", "summary", "pause", "announce"]
    run = flow.run()
    assert run.status == "succeeded", run.errors
    assert run.results["clean"] == [
        {"id": 1, "amount": 4.0},
        {"id": 2, "amount": 8.0},
        {"id": 3, "amount": 12.0},
    ]
    assert run.results["announce"] == {"message": "eu: 3 orders, total 24.0", "settled": "settled"}
    # Below min_total the announcement is skipped by its `when`.
    assert flow.run(variables={"min_total": 100}).states["announce"] == "skipped"
