"""Checks shared by ``Flow()``, ``run()``/``arun()``/``start()`` and the document loader.

One function per question, so the places that ask agree: :func:`check_options` (``Flow()``
and every run method), :func:`check_task_name` (the DSL; the loader reads
:data:`RESERVED_TASK_NAMES`), :func:`check_run` (a run's options and variables, before any
task runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import DefinitionError

#: Task names that templates, conditions and chained triggers give a meaning of their own:
#: ``vars`` and ``results`` (conditions and templates), ``item`` (a fan-out element in a
#: template), ``worker`` (the parameter that receives the worker's name), ``status`` and
#: ``run_id`` (names a chained flow's condition reads).
RESERVED_TASK_NAMES = frozenset({"vars", "results", "item", "worker", "status", "run_id"})
#: What ``on_error`` may be.
ON_ERROR = ("stop", "continue")


def check_options(*, max_workers: Any, on_error: Any) -> None:
    """Raise when ``max_workers`` or ``on_error`` is not a value a flow can run with.

    Raises:
        DefinitionError: ``on_error`` is not ``"stop"`` or ``"continue"``, or ``max_workers``
            is not a positive int or None (the message names the option).
    """
    if on_error not in ON_ERROR:
        raise DefinitionError(f"on_error must be 'stop' or 'continue', got {on_error!r}")
    # bool is an int, but max_workers=True is a mistake, not "one worker".
    if max_workers is not None and (type(max_workers) is not int or max_workers < 1):
        raise DefinitionError(f"max_workers must be a positive int or None, got {max_workers!r}")


def check_task_name(name: str) -> None:
    """Raise when ``name`` is reserved (see :data:`RESERVED_TASK_NAMES`).

    Raises:
        DefinitionError: the name is reserved.
    """
    if name in RESERVED_TASK_NAMES:
        raise DefinitionError(
            f"task name {name!r} is reserved (conditions, templates or triggers give it a "
            f"meaning; reserved: {', '.join(sorted(RESERVED_TASK_NAMES))}); choose another"
        )


def check_run(
    flow: Any,
    variables: Mapping[str, Any] | None,
    *,
    max_workers: Any = None,
    on_error: Any = None,
) -> None:
    """Check a run's options as ``Flow()`` checks the flow's, and its variables.

    ``None`` options mean the flow's own. ``flow`` is the definition (its ``tasks``).

    Raises:
        DefinitionError: a bad option, variables that are not a mapping of names, or a
            variable named like a task that a task's parameter of that name would never
            receive (it receives the task's result).
    """
    check_options(
        max_workers=max_workers,
        on_error=flow.on_error if on_error is None else on_error,
    )
    if variables is None:
        return
    if not isinstance(variables, Mapping):
        raise DefinitionError(
            f"variables must be a mapping of names to values, got {type(variables).__name__}"
        )
    _check_variable_names(variables, flow.tasks)


def _check_variable_names(variables: Mapping[Any, Any], tasks: Mapping[str, Any]) -> None:
    for name in variables:
        if not isinstance(name, str):
            raise DefinitionError(f"variable names must be strings, got {name!r}")
    if not variables.keys() & tasks.keys():
        return
    # A variable named like a task is shadowed where a parameter of that name receives the
    # task's result; elsewhere (``vars['archive']`` in a condition) it is read as it is.
    for task in tasks.values():
        for param in task.spec.params:
            if param.name in variables and param.name in tasks:
                raise DefinitionError(
                    f"variable {param.name!r} is named like task {param.name!r}: parameter "
                    f"{param.name!r} of task {task.spec.name!r} receives the task's result, "
                    "so the variable would be ignored there; rename the variable"
                )
