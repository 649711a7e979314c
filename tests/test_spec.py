"""Spec export and flow_version: stable across processes, sensitive to code and options."""

from __future__ import annotations

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
