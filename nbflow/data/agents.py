"""The agent registry: named objects whose actions a flow defined as data can call.

An *agent* is any object; its *actions* are its public methods (sync or async), or, for an
agent whose actions change at run time, the mapping its ``agent_actions()`` method returns.
A task of a YAML flow names an agent and an action; the action is called with the task's
parameters (templates resolved) and its return value is the task's result::

    @nf.agent("math")                      # registers MathAgent() under "math"
    class MathAgent:
        def add(self, a, b):               # action "add"
            return a + b

        async def slow_double(self, x):    # async actions work too
            ...

    nf.agents.register("math2", MathAgent())

The ``python`` agent's actions are plain functions registered by name, so decorator-defined
tasks and YAML tasks can share code (and a decorator flow can be exported with
``flow.to_yaml()``)::

    nf.agents.register_function("clean", clean)      # or @nf.agents.register_function

Built-in agents: ``python``, ``http``, ``sleep`` and ``echo`` (see :mod:`nbflow.data.builtins`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar, overload

from ..dsl import Task
from ..errors import DefinitionError, closest

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: The action used when a task names an agent but no action.
DEFAULT_ACTION = "run"


class UnknownAgentError(DefinitionError, LookupError):
    """No agent is registered under a name; the message lists the known ones."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name, self.known = name, known
        close = closest(name, known)
        hint = f"; did you mean {close!r}?" if close else ""
        super().__init__(
            f"unknown agent {name!r}; known agents: {', '.join(known) or 'none'}{hint} "
            f"(register one with nf.agents.register({name!r}, agent))"
        )


class UnknownActionError(DefinitionError, LookupError):
    """An agent has no action of a name; the message lists its actions."""

    def __init__(self, agent: str, action: str, known: list[str]) -> None:
        self.agent, self.action, self.known = agent, action, known
        close = closest(action, known)
        hint = f"; did you mean {close!r}?" if close else ""
        extra = (
            f" (register a function with nf.agents.register_function({action!r}, fn))"
            if agent == "python"
            else ""
        )
        super().__init__(
            f"agent {agent!r} has no action {action!r}; its actions: "
            f"{', '.join(known) or 'none'}{hint}{extra}"
        )


def actions_of(agent: Any) -> dict[str, Callable[..., Any]]:
    """The actions of ``agent``: ``agent.agent_actions()`` if defined, else public methods."""
    custom = getattr(agent, "agent_actions", None)
    if callable(custom):
        return dict(custom())
    found: dict[str, Callable[..., Any]] = {}
    for name in dir(type(agent)):
        if name.startswith("_"):
            continue
        raw = inspect.getattr_static(type(agent), name)
        if inspect.isfunction(raw) or isinstance(raw, staticmethod | classmethod):
            found[name] = getattr(agent, name)
    return found


class PythonAgent:
    """The ``python`` agent: its actions are functions registered by name.

    A YAML task ``{agent: python, action: clean}`` calls the function registered as
    ``"clean"``. Parameters the task does not set are filled like a decorator task's: from
    the upstream task of that name, a run variable, or the parameter's default.
    """

    def __init__(self) -> None:
        self.functions: dict[str, Callable[..., Any]] = {}

    def agent_actions(self) -> Mapping[str, Callable[..., Any]]:
        """The registered functions by name."""
        return self.functions

    def name_of(self, fn: Callable[..., Any], prefer: str | None = None) -> str | None:
        """The name ``fn`` is registered under (``prefer`` wins if it is one), or None."""
        names = [n for n, f in self.functions.items() if f is fn]
        if prefer in names:
            return prefer
        return names[0] if names else None


class AgentRegistry:
    """Agents by name. ``nf.agents`` is the registry flows use unless given another.

    A fresh ``AgentRegistry()`` holds the built-in agents (``python``, ``http``, ``sleep``,
    ``echo``); pass one to ``nf.load_flow(..., agents=registry)`` to keep tests isolated.
    """

    def __init__(self, *, builtins: bool = True) -> None:
        self._agents: dict[str, Any] = {}
        self.python = PythonAgent()
        self._agents["python"] = self.python
        if builtins:
            from .builtins import EchoAgent, HttpAgent, SleepAgent

            self._agents.update(http=HttpAgent(), sleep=SleepAgent(), echo=EchoAgent())

    # -- registering -------------------------------------------------------------------------

    def register(self, name: str, agent: Any) -> Any:
        """Register ``agent`` under ``name`` (replacing an earlier one); returns ``agent``.

        A class is instantiated with no arguments.

        Raises:
            DefinitionError: ``name`` is empty, is ``python`` (use :meth:`register_function`),
                or the class needs constructor arguments.
        """
        if not isinstance(name, str) or not name:
            raise DefinitionError(f"an agent needs a non-empty name, got {name!r}")
        if name == "python":
            raise DefinitionError(
                "the 'python' agent is built in; add functions to it with "
                "nf.agents.register_function(name, fn)"
            )
        instance = _instantiate(name, agent) if isinstance(agent, type) else agent
        self._agents[name] = instance
        return agent

    def unregister(self, name: str) -> None:
        """Remove the agent ``name`` (no error if absent; ``python`` stays)."""
        if name != "python":
            self._agents.pop(name, None)

    @overload
    def register_function(self, name: F, fn: None = None, /) -> F: ...

    @overload
    def register_function(self, name: str, fn: F, /) -> F: ...

    @overload
    def register_function(self, name: str, fn: None = None, /) -> Callable[[F], F]: ...

    def register_function(self, name: Any, fn: Any = None, /) -> Any:
        """Make ``fn`` an action of the ``python`` agent, under ``name``.

        Forms: ``register_function("clean", clean)``, ``@register_function`` (the function's
        ``__name__``) and ``@register_function("clean")``. A task object made by
        ``@flow.task`` registers its function. Returns ``fn`` unchanged.

        Raises:
            DefinitionError: ``fn`` is not callable or has no usable name.
        """
        if callable(name) and fn is None:
            return self._add_function(None, name)
        if fn is None:
            return lambda func: self._add_function(name, func)
        return self._add_function(name, fn)

    def _add_function(self, name: str | None, fn: Any) -> Any:
        target = fn.fn if isinstance(fn, Task) else fn
        if not callable(target):
            raise DefinitionError(f"register_function needs a function, got {fn!r}")
        label = name or getattr(target, "__name__", None)
        if not label or label == "<lambda>":
            raise DefinitionError("a lambda needs a name: nf.agents.register_function('name', fn)")
        self.python.functions[label] = target
        return fn

    # -- looking up --------------------------------------------------------------------------

    def get(self, name: str) -> Any:
        """The agent registered as ``name``.

        Raises:
            UnknownAgentError: none is; the message lists the known agents.
        """
        try:
            return self._agents[name]
        except KeyError:
            raise UnknownAgentError(name, self.names()) from None

    def action(self, agent: str, action: str | None) -> Callable[..., Any]:
        """The callable for ``agent.action`` (``action`` None: the agent's ``run``).

        Raises:
            UnknownAgentError: no such agent.
            UnknownActionError: the agent has no such action; the message lists its actions.
        """
        actions = actions_of(self.get(agent))
        chosen = action or DEFAULT_ACTION
        if chosen not in actions:
            raise UnknownActionError(agent, chosen, sorted(actions))
        return actions[chosen]

    def names(self) -> list[str]:
        """Registered agent names, sorted."""
        return sorted(self._agents)

    def __contains__(self, name: object) -> bool:
        return name in self._agents

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"<AgentRegistry {', '.join(self.names())}>"


def _instantiate(name: str, cls: type) -> Any:
    try:
        return cls()
    except TypeError as error:
        raise DefinitionError(
            f"agent {name!r}: {cls.__name__}() cannot be created without arguments ({error}); "
            f"register an instance instead: nf.agents.register({name!r}, {cls.__name__}(...))"
        ) from None


#: The registry used by ``nf.load_flow`` and ``Flow.from_dict`` unless given another.
agents = AgentRegistry()


def agent(name: str, *, registry: AgentRegistry | None = None) -> Callable[[type[T]], type[T]]:
    """Class decorator: register an instance of the class as agent ``name``.

    The class's public methods (sync or async) become the agent's actions. The class is
    returned unchanged.

    Raises:
        DefinitionError: the class cannot be created without arguments.
    """

    def decorate(cls: type[T]) -> type[T]:
        if not isinstance(cls, type):
            raise DefinitionError(f"@nf.agent({name!r}) decorates a class, got {cls!r}")
        (registry or agents).register(name, cls)
        return cls

    return decorate
