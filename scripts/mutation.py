"""Mutation testing of the core modules with mutmut, one module at a time (`make mutation`).

    python scripts/mutation.py                      every module of MODULES, in that order
    python scripts/mutation.py scheduler state      only these
    python scripts/mutation.py --report             only print the table of the last runs
    python scripts/mutation.py --survivors          list the surviving mutants, by module

mutmut (configured in pyproject.toml, ``[tool.mutmut]``) copies the package to ``mutants/``
with every mutant compiled in, runs the test selection once to learn which tests call which
function, then runs each mutant against only those tests. Each module is run on its own
(``mutmut run "nbflow.<module>.*"``), so every one of its mutants is tried again; its log goes
to ``test-artifacts/mutation/<module>.log``.

The table counts a mutant listed in docs/mutation-report.md (a name in backquotes) as
equivalent: no test can tell it from the original, so it leaves the score's denominator.
``score = killed / (mutants - equivalent)``; a timeout counts as killed, a mutant that no
test reaches as survived, and a mutant not run (a run stopped early) is left out of the score
(the table says how many).

Environment: ``MUTATION_JOBS`` (default 1) is mutmut's ``--max-children``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "mutation-report.md"
LOGS = ROOT / "test-artifacts" / "mutation"
#: The modules, in the order they are run (retry and conditions last).
MODULES = (
    "scheduler",
    "strategies",
    "fanout",
    "state",
    "graph",
    "variables",
    "spec",
    "spec_hash",
    "identity",
    "retry",
    "conditions",
)
#: The tests each module's mutants are tried against: its own test file and the few that
#: drive it through real runs. mutmut narrows these further, per mutant, to the tests
#: that call the mutated function.
TESTS = {
    "scheduler": [
        "test_scheduler",
        "test_triggers",
        "test_engine",
        "test_joins",
        "test_streaming",
        "test_termination",
        "test_completion",
    ],
    "strategies": ["test_strategies", "test_scheduler", "test_engine"],
    "fanout": ["test_fanout", "test_engine", "test_mapping", "test_streaming", "test_completion"],
    "state": [
        "test_state",
        "test_engine",
        "test_run",
        "test_logs",
        "test_progress",
        "test_signals",
        "test_loops",
        "test_subflows",
        "test_mapping",
    ],
    "graph": [
        "test_graph",
        "test_dsl",
        "test_triggers",
        "test_engine",
        "test_mapping",
        "test_joins",
        "test_signals",
        "test_loops",
        "test_switch",
        "test_subflows",
    ],
    "spec": [
        "test_spec",
        "test_dsl",
        "test_graph",
        "test_joins",
        "test_completion",
        "test_locks",
        "test_loops",
        "test_signals",
        "test_mapping",
        "test_element_cache",
    ],
    "identity": [
        "test_identity",
        "test_identity_properties",
        "test_identity_loaded",
        "test_identity_values",
        "test_reuse",
        "test_cache",
        "test_spec",
        "test_versions",
        "test_dsl",
    ],
    "retry": ["test_retry", "test_engine", "test_fanout", "test_data_loader"],
    "conditions": [
        "test_conditions",
        "test_graph",
        "test_triggers",
        "test_completion",
        "test_loops",
        "test_switch",
        "test_gates",
    ],
}
#: The run-variable checks (variables.py) came out of graph.py: the same tests reach them.
TESTS["variables"] = TESTS["graph"]
#: The version hash (spec_hash.py) came out of spec.py: the same tests reach it.
TESTS["spec_hash"] = TESTS["spec"]
#: mutmut's exit codes (mutmut/stats.py) grouped as this table counts them.
# -9: the system killed the run (a mutant that makes a value unbounded, as `tuple(map(f,
# repeat(x)))`, eats memory until then; mutmut names it a segfault).
KILLED = {1, 3, 24, -24, 152, 255, 36, 37, -9}  # a failing test, a timeout, the type checker
SURVIVED = {0}
NO_TESTS = {5, 33}


def equivalent_mutants() -> set[str]:
    """Names of the mutants docs/mutation-report.md lists as equivalent."""
    if not REPORT.exists():
        return set()
    return set(re.findall(r"`(nbflow\.[^`\s]+__mutmut_\d+)`", REPORT.read_text()))


def results(module: str) -> dict[str, int | None]:
    """mutmut's exit code for each mutant of ``module`` at its last run (None: not run)."""
    saved = LOGS / f"{module}.json"
    if not saved.exists():
        return {}
    return json.loads(saved.read_text())


def row(label: str, codes: dict[str, int | None], equivalent: set[str]) -> tuple[str, ...]:
    """One line of the table: ``label``'s mutants (``codes``) counted."""
    if not codes:
        return (label, "-", "-", "-", "-", "not run")
    count: Counter[str] = Counter()
    for name, code in codes.items():
        if name in equivalent:
            count["equivalent"] += 1
        elif code in KILLED:
            count["killed"] += 1
        elif code is None:
            count["not run"] += 1
        else:  # survived, no tests, suspicious, segfault: not killed
            count["survived"] += 1
    # A mutant not run (a run stopped before its end) is left out of the score, which is of
    # the mutants run; the row says how many were not.
    scored = len(codes) - count["equivalent"] - count["not run"]
    score = f"{100 * count['killed'] / scored:.1f} %" if scored else "-"
    if count["not run"]:
        score += f" ({count['not run']} not run)"
    return (
        label,
        str(len(codes)),
        str(count["killed"]),
        str(count["survived"]),
        str(count["equivalent"]),
        score,
    )


def rows(module: str, equivalent: set[str]) -> list[tuple[str, ...]]:
    """The table's lines for ``module``: one, or for a package one per module of it
    (``identity.walk``: mutants named ``nbflow.identity.walk.<function>__mutmut_<n>``) and
    the package's total."""
    codes = results(module)
    if not (ROOT / "nbflow" / module).is_dir() or not codes:
        return [row(module, codes, equivalent)]
    prefix = f"nbflow.{module}."
    by_module: dict[str, dict[str, int | None]] = {}
    for name, code in codes.items():
        inner = name[len(prefix) :].partition(".")[0]
        by_module.setdefault(f"{module}.{inner}", {})[name] = code
    found = [row(label, by_module[label], equivalent) for label in sorted(by_module)]
    return [*found, row(f"{module} (all)", codes, equivalent)]


def table(modules: list[str]) -> str:
    equivalent = equivalent_mutants()
    lines = [
        "| module | mutants | killed | survived | equivalent | score |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += ["| " + " | ".join(r) + " |" for m in modules for r in rows(m, equivalent)]
    return "\n".join(lines)


def survivors(modules: list[str]) -> str:
    equivalent = equivalent_mutants()
    out = []
    for module in modules:
        for name, code in sorted(results(module).items()):
            if code not in KILLED and code is not None and name not in equivalent:
                out.append(name)
    return "\n".join(out)


# mutmut reads its configuration from pyproject.toml; each module gets its own mutants and
# tests here. A change of test selection makes mutmut forget every earlier result, so each
# module's results are kept in test-artifacts/mutation/<module>.json after its run.
_MUTMUT = """
import sys
from pathlib import Path
from mutmut.__main__ import cli
from mutmut.configuration import config

module, jobs, *names = sys.argv[1:]
package = Path("nbflow", module).is_dir()  # nbflow/identity/ is a package of modules
config().only_mutate = [f"nbflow/{module}/*.py" if package else f"nbflow/{module}.py"]
config().pytest_add_cli_args_test_selection = [f"tests/{t}.py" for t in TESTS[module]]
cli(["run", "--max-children", jobs, *(names or [f"nbflow.{module}.*"])])
"""


def _exit_codes(module: str) -> dict[str, int | None]:
    """mutmut's exit code for each mutant of ``module`` (of each of its modules, for a
    package such as ``identity``), from the ``.meta`` files it writes next to the mutants."""
    mutated = ROOT / "mutants" / "nbflow"
    package = mutated / module
    if package.is_dir():
        metas = sorted(package.glob("*.py.meta"))
    else:
        metas = [mutated / f"{module}.py.meta"]
    codes: dict[str, int | None] = {}
    for meta in metas:
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def run(module: str, jobs: int, names: list[str] | None = None) -> float:
    """``mutmut run`` for one module's mutants (all, or ``names``); returns its seconds."""
    LOGS.mkdir(parents=True, exist_ok=True)
    # A fresh copy for each module: mutmut would take another module's unmutated copy in
    # mutants/ for this one's mutants (and forgets every result on a new test selection).
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    (ROOT / "mutants").mkdir()
    # Subprocesses the tests start import the mutated copy too, never the work tree's.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "mutants")}
    code = f"TESTS = {TESTS!r}\n{_MUTMUT}"
    command = [sys.executable, "-c", code, module, str(jobs), *(names or [])]
    start = time.monotonic()
    with open(LOGS / f"{module}.log", "w") as log:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        sys.exit(f"mutmut failed on {module} (exit {done.returncode}); see {LOGS / module}.log")
    codes = _exit_codes(module)
    if names:  # a rerun of some mutants: the others keep their last result
        last = results(module)
        codes = {n: code if n in names else last.get(n) for n, code in codes.items()}
    (LOGS / f"{module}.json").write_text(json.dumps(codes, indent=0, sort_keys=True))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"of {', '.join(MODULES)}")
    parser.add_argument("--report", action="store_true", help="only print the table")
    parser.add_argument("--survivors", action="store_true", help="list surviving mutants")
    parser.add_argument(
        "--again", action="store_true", help="run only the mutants that survived last time"
    )
    args = parser.parse_args()
    modules = args.modules or list(MODULES)
    unknown = sorted(set(modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown module {unknown[0]!r}; choose from {', '.join(MODULES)}")
    if args.survivors:
        print(survivors(modules))
        return
    if not args.report:
        jobs = int(os.environ.get("MUTATION_JOBS", "1"))
        total = 0.0
        for module in modules:
            names = survivors([module]).split() if args.again else None
            if names == []:
                continue
            seconds = run(module, jobs, names)
            total += seconds
            print(f"{module}: {seconds:.0f} s", flush=True)
        print(f"total: {total / 60:.1f} min")
    print(table(modules))


if __name__ == "__main__":
    main()
