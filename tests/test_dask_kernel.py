"""DaskExecutor inside a real Jupyter kernel (nbclient): run, arun, start, lazy results, close."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "distributed", reason="dask.distributed is not installed: pip install 'nbflow[dask]'"
)
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = [pytest.mark.dask, pytest.mark.notebook, pytest.mark.timeout(240)]

CELLS = [
    """
import os
import nbflow as nf

flow = nf.Flow("kernel-dask", store=None)

@flow.task
def big():
    return b"x" * 10_000_000

@flow.task
def size(big):
    return len(big)

@flow.task
def items():
    return list(range(6))

@flow.task(fan_out="items")
def square(items):
    return items * items

executor = nf.DaskExecutor(n_workers=2)
""",
    # A blocking run on the kernel's running loop; results are fetched from a cell.
    """
run = flow.run(executor=executor)
print(run.status, run.results["size"], run.results["square"])
""",
    """
again = await flow.arun(executor=executor)
print(again.status, again.results["size"])
""",
    """
handle = flow.start(executor=executor)
bg = await handle
print(bg.status, bg.results.to_dict()["square"])
""",
    """
workers = set(run.timeline()["worker"])
print(all(w.startswith("tcp://127.0.0.1:") for w in workers))
""",
    "await executor.aclose()\nprint(repr(executor))",
]


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream").strip()


def test_dask_executor_in_a_real_kernel() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src.strip()) for src in CELLS]
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    outputs = [_stdout(cell) for cell in nb.cells]
    assert outputs[1] == "succeeded 10000000 [0, 1, 4, 9, 16, 25]"
    assert outputs[2] == "succeeded 10000000"
    assert outputs[3] == "succeeded [0, 1, 4, 9, 16, 25]"
    assert outputs[4] == "True"
    assert outputs[5] == "<DaskExecutor closed>"
