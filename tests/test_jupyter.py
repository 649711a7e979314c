"""Running flows inside a real Jupyter kernel (nbclient): blocking run, background start."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.notebook

CELLS = [
    """
import asyncio, nbflow as nf
flow = nf.Flow("kernel-demo", max_workers=2, store=None)

@flow.task
async def a():
    await asyncio.sleep(0.05)
    return 1

@flow.task
def b(a):
    return a + 1
""",
    # A blocking call inside the kernel's running loop: no `await`.
    "run = flow.run()\nprint(run.status, run.results)",
    # The kernel's loop is still usable afterwards, and the flow ran on it.
    "import asyncio\nprint(asyncio.get_running_loop().is_running())",
    "handle = flow.start()\nprint(handle.status in ('pending', 'running'))",
    "second = handle.wait()\nprint(second.status, second.results['b'])",
    "third = await flow.arun()\nprint(third.status)",
    "h2 = flow.start()\nfinal = await h2\nprint(final.status, h2.done())",
]


def _outputs(cell):
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_flow_runs_in_a_real_kernel():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src.strip()) for src in CELLS]
    NotebookClient(nb, timeout=60, kernel_name="python3", allow_errors=False).execute()
    outputs = [_outputs(cell).strip() for cell in nb.cells]
    assert outputs[1] == "succeeded {'a': 1, 'b': 2}"
    assert outputs[2] == "True"
    assert outputs[3] == "True"
    assert outputs[4] == "succeeded 2"
    assert outputs[5] == "succeeded"
    assert outputs[6] == "succeeded True"
