"""The agent registry, ``@nf.agent``, and the built-in agents (http against a local server)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import nbflow as nf
from nbflow.data import AgentRegistry, UnknownActionError, UnknownAgentError, from_dict
from nbflow.data.agents import actions_of
from nbflow.data.builtins import HttpStatusError


@pytest.fixture
def registry() -> AgentRegistry:
    return AgentRegistry()


@pytest.fixture
def global_agents() -> Iterator[AgentRegistry]:
    """``nf.agents`` restored after the test (the registry is process-wide)."""
    saved = dict(nf.agents._agents), dict(nf.agents.python.functions)
    yield nf.agents
    nf.agents._agents.clear()
    nf.agents._agents.update(saved[0])
    nf.agents.python.functions.clear()
    nf.agents.python.functions.update(saved[1])


class MathAgent:
    def add(self, a, b):
        return a + b

    async def double_later(self, x):
        await asyncio.sleep(0)
        return 2 * x

    def _helper(self):  # private: not an action
        return None

    @staticmethod
    def neg(x):
        return -x


# -- registry ---------------------------------------------------------------------------------


def test_fresh_registry_has_the_builtin_agents(registry):
    assert registry.names() == ["echo", "http", "python", "sleep"]
    assert sorted(actions_of(registry.get("http"))) == ["get", "post"]
    assert sorted(actions_of(registry.get("echo"))) == ["run", "value"]


def test_public_methods_sync_async_and_static_are_actions(registry):
    registry.register("math", MathAgent())
    assert sorted(actions_of(registry.get("math"))) == ["add", "double_later", "neg"]
    assert registry.action("math", "add")(2, 3) == 5


def test_unknown_agent_lists_the_known_ones_with_a_suggestion(registry):
    with pytest.raises(UnknownAgentError) as caught:
        registry.get("htpp")
    message = str(caught.value)
    assert "unknown agent 'htpp'" in message
    assert "echo, http, python, sleep" in message and "did you mean 'http'" in message
    assert isinstance(caught.value, nf.DefinitionError)


def test_unknown_action_lists_the_agents_actions(registry):
    registry.register("math", MathAgent())
    with pytest.raises(
        UnknownActionError,
        match=r"agent 'math' has no action 'ad'; its actions: "
        r"add, double_later, neg; did you mean 'add'\?",
    ):
        registry.action("math", "ad")


def test_missing_action_defaults_to_run(registry):
    assert registry.action("echo", None)(a=1) == {"a": 1}
    with pytest.raises(UnknownActionError, match="no action 'run'"):
        registry.action("http", None)


def test_agent_decorator_registers_an_instance_and_returns_the_class(global_agents):
    @nf.agent("math_test")
    class Calc:
        def square(self, x):
            return x * x

    assert isinstance(Calc, type)
    assert global_agents.action("math_test", "square")(4) == 16


def test_agent_decorator_refuses_a_class_that_needs_arguments(registry):
    class NeedsConfig:
        def __init__(self, url):
            self.url = url

    with pytest.raises(
        nf.DefinitionError,
        match=r"register an instance instead: "
        r"nf.agents.register\('cfg', NeedsConfig\(...\)\)",
    ):
        nf.agent("cfg", registry=registry)(NeedsConfig)


def test_register_refuses_empty_names_and_the_python_agent(registry):
    with pytest.raises(nf.DefinitionError, match="non-empty name"):
        registry.register("", MathAgent())
    with pytest.raises(nf.DefinitionError, match="register_function"):
        registry.register("python", MathAgent())


def test_register_function_forms(registry):
    def clean(x):
        return x

    assert registry.register_function("renamed", clean) is clean
    assert registry.register_function(clean) is clean

    @registry.register_function("third")
    def other(y):
        return y

    assert set(registry.python.functions) == {"renamed", "clean", "third"}
    assert registry.python.name_of(clean, prefer="clean") == "clean"
    with pytest.raises(nf.DefinitionError, match="a lambda needs a name"):
        registry.register_function(lambda: 1)
    with pytest.raises(nf.DefinitionError, match="needs a function"):
        registry.register_function("x", 42)


def test_register_function_accepts_a_task_object(registry):
    flow = nf.Flow("f", store=None)

    @registry.register_function
    @flow.task
    def load():
        return 1

    assert registry.python.functions["load"] is load.fn


def test_unknown_python_action_says_how_to_register(registry):
    with pytest.raises(UnknownActionError, match=r"register_function\('nope', fn\)"):
        registry.action("python", "nope")


# -- agents inside flows ---------------------------------------------------------------------


def test_sync_and_async_actions_run_as_tasks(registry):
    registry.register("math", MathAgent())
    flow = from_dict(
        {
            "name": "calc",
            "tasks": [
                {"id": "s", "agent": "math", "action": "add", "parameters": {"a": 2, "b": 3}},
                {
                    "id": "d",
                    "agent": "math",
                    "action": "double_later",
                    "parameters": {"x": "${results.s}"},
                },
            ],
        },
        agents=registry,
        store=None,
    )
    assert flow.tasks["d"].spec.is_async and not flow.tasks["s"].spec.is_async
    run = flow.run()
    assert run.results == {"s": 5, "d": 10}


def test_echo_and_sleep_builtins(registry):
    flow = from_dict(
        {
            "name": "teach",
            "variables": {"who": "ada"},
            "tasks": [
                {"id": "hello", "agent": "echo", "parameters": {"greeting": "hi ${vars.who}"}},
                {"id": "nap", "agent": "sleep", "parameters": {"seconds": 5, "result": "awake"}},
                {
                    "id": "same",
                    "agent": "echo",
                    "action": "value",
                    "parameters": {"value": "${results.hello}"},
                },
            ],
        },
        agents=registry,
        store=None,
    )
    run = flow.run(simulate=True)  # sleep is asyncio.sleep: virtual time
    assert run.results == {
        "hello": {"greeting": "hi ada"},
        "nap": "awake",
        "same": {"greeting": "hi ada"},
    }


def test_sleep_refuses_negative_seconds(registry):
    with pytest.raises(ValueError, match="seconds must be >= 0"):
        asyncio.run(registry.action("sleep", "run")(-1))


# -- http against a local server ---------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, status, payload, content_type="application/json"):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/count"):
            self._send(200, {"count": 3, "path": self.path, "token": self.headers.get("X-Token")})
        elif self.path == "/text":
            self._send(200, b"plain words", "text/plain; charset=utf-8")
        elif self.path == "/slow":
            time.sleep(1.0)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._send(200, {"late": True})  # the client has given up, as the test wants
        else:
            self._send(404, {"error": "no such page"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length).decode()
        self._send(201, {"got": body, "type": self.headers.get("Content-Type")})


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # port 0: a free port
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_get_with_params_and_headers(registry, server):
    get = registry.action("http", "get")
    answer = asyncio.run(get(f"{server}/count", params={"q": "x y"}, headers={"X-Token": "t"}))
    assert answer["status"] == 200
    assert answer["json"] == {"count": 3, "path": "/count?q=x+y", "token": "t"}
    assert answer["headers"]["Content-Type"] == "application/json"


def test_http_text_body_has_no_json(registry, server):
    answer = asyncio.run(registry.action("http", "get")(f"{server}/text"))
    assert answer["text"] == "plain words" and answer["json"] is None


def test_http_post_json_and_form(registry, server):
    post = registry.action("http", "post")
    sent = asyncio.run(post(f"{server}/items", json={"a": 1}))
    assert sent["status"] == 201
    assert sent["json"] == {"got": '{"a": 1}', "type": "application/json"}
    form = asyncio.run(post(f"{server}/items", data={"a": "1", "b": "2"}))
    assert form["json"] == {"got": "a=1&b=2", "type": "application/x-www-form-urlencoded"}


def test_http_error_status_raises_unless_told_not_to(registry, server):
    get = registry.action("http", "get")
    with pytest.raises(HttpStatusError, match=r"GET .*/missing answered 404: .*no such page") as e:
        asyncio.run(get(f"{server}/missing"))
    assert e.value.status == 404 and isinstance(e.value, OSError)
    answer = asyncio.run(get(f"{server}/missing", raise_for_status=False))
    assert answer["status"] == 404 and answer["json"] == {"error": "no such page"}


def test_http_timeout_raises_timeout_error(registry, server):
    with pytest.raises(TimeoutError, match=r"GET .*/slow timed out after 0.1s"):
        asyncio.run(registry.action("http", "get")(f"{server}/slow", timeout=0.1))


def test_http_refuses_non_http_urls(registry, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    with pytest.raises(ValueError, match="is not an http:// or https:// URL"):
        asyncio.run(registry.action("http", "get")(secret.as_uri()))


def test_http_agent_in_a_yaml_flow(registry, server):
    flow = nf.load_flow(
        f"""
name: api
variables: {{base: "{server}"}}
tasks:
  - id: fetch
    agent: http
    action: get
    parameters: {{url: "${{vars.base}}/count", timeout: 5}}
  - id: report
    agent: http
    action: post
    parameters:
      url: "${{vars.base}}/report"
      json: {{count: "${{results.fetch.json.count}}"}}
""",
        agents=registry,
        store=None,
    )
    run = flow.run()
    assert run.status == "succeeded", run.errors
    assert run.results["report"]["json"]["got"] == '{"count": 3}'
