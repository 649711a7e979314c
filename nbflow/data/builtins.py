"""Built-in agents: ``http`` (GET/POST with a timeout), ``sleep`` and ``echo`` (for teaching).

Each is a small class whose public methods are its actions (see :mod:`nbflow.data.agents`).
A fresh :class:`~nbflow.data.agents.AgentRegistry` registers one instance of each.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ..errors import NbflowError


class HttpStatusError(NbflowError, OSError):
    """An HTTP request answered with a status of 400 or more (``status``, ``url``, ``body``)."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        self.method, self.url, self.status, self.body = method, url, status, body
        snippet = body[:200] + ("..." if len(body) > 200 else "")
        super().__init__(f"{method} {url} answered {status}: {snippet}")


class HttpAgent:
    """``http``: ``get`` and ``post`` over the standard library, run in a thread.

    Both return a mapping ``{"status", "url", "headers", "text", "json"}`` (``json`` is the
    parsed body when the response says it is JSON, else None), so a template can read
    ``${results.fetch.json.count}``. Only ``http://`` and ``https://`` URLs are allowed: a
    flow file must not read local files through ``file://``.

    Raises (from an action):
        HttpStatusError: the status is 400 or more and ``raise_for_status`` is true.
        TimeoutError: no answer within ``timeout`` seconds.
        ValueError: the URL is not http(s).
        OSError: the connection failed (``urllib.error.URLError`` is an ``OSError``).
    """

    async def get(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
        raise_for_status: bool = True,
    ) -> dict[str, Any]:
        """GET ``url`` (with ``params`` as the query string)."""
        return await asyncio.to_thread(
            _request, "GET", _with_query(url, params), None, headers, timeout, raise_for_status
        )

    async def post(
        self,
        url: str,
        json: Any = None,
        data: dict[str, Any] | str | bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
        raise_for_status: bool = True,
    ) -> dict[str, Any]:
        """POST ``json`` (sent as JSON) or ``data`` (a mapping is form-encoded) to ``url``."""
        merged = dict(headers or {})
        body: bytes | None
        if json is not None:
            body = jsonlib.dumps(json).encode()
            merged.setdefault("Content-Type", "application/json")
        elif isinstance(data, dict):
            body = urllib.parse.urlencode(data).encode()
            merged.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif isinstance(data, str):
            body = data.encode()
        else:
            body = data
        return await asyncio.to_thread(
            _request, "POST", url, body, merged, timeout, raise_for_status
        )


def _with_query(url: str, params: dict[str, Any] | None) -> str:
    if not params:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urllib.parse.urlencode(params, doseq=True)}"


def _request(
    method: str,
    url: str,
    body: bytes | None,
    headers: dict[str, str] | None,
    timeout: float,
    raise_for_status: bool,
) -> dict[str, Any]:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"http agent: {url!r} is not an http:// or https:// URL")
    request = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return _response(response.status, response.geturl(), response.headers, response.read())
    except urllib.error.HTTPError as error:
        answer = _response(error.code, url, error.headers, error.read())
        if raise_for_status:
            raise HttpStatusError(method, url, error.code, answer["text"]) from None
        return answer
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise TimeoutError(f"{method} {url} timed out after {timeout:g}s") from None
        raise
    except TimeoutError:
        raise TimeoutError(f"{method} {url} timed out after {timeout:g}s") from None


def _response(status: int, url: str, headers: Any, raw: bytes) -> dict[str, Any]:
    charset = headers.get_content_charset() or "utf-8"
    text = raw.decode(charset, errors="replace")
    parsed = None
    if "json" in (headers.get_content_type() or ""):
        try:
            parsed = jsonlib.loads(text)
        except ValueError:
            parsed = None
    return {
        "status": status,
        "url": url,
        "headers": dict(headers.items()),
        "text": text,
        "json": parsed,
    }


class SleepAgent:
    """``sleep``: wait without blocking the loop (good for teaching timelines and timeouts)."""

    async def run(self, seconds: float, result: Any = None) -> Any:
        """Sleep ``seconds`` (asyncio, so simulated runs cost no time) and return ``result``."""
        if seconds < 0:
            raise ValueError(f"sleep: seconds must be >= 0, got {seconds!r}")
        await asyncio.sleep(seconds)
        return result


class EchoAgent:
    """``echo``: return what it is given (shows what templates resolved to)."""

    def run(self, **values: Any) -> dict[str, Any]:
        """Return the task's parameters as a mapping."""
        return dict(values)

    def value(self, value: Any) -> Any:
        """Return ``value`` itself (one parameter, any type)."""
        return value
