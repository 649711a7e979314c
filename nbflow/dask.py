"""Run a flow's task functions on a Dask cluster: :class:`DaskExecutor`.

The engine, the dashboard and the store stay in the kernel; only task functions run on Dask
workers. Each attempt (and each fan-out element) is one Dask task::

    executor.call(task, fn, kwargs)          (kernel)
      -> client.submit(_invoke, fn, kwargs, key="<task>-<hex>", priority=..., pure=False)
      -> wait until Dask reports the future finished, erred or cancelled
      -> return the *future*, not the value

Results stay on the cluster: the engine stores the future as the task's result and passes it
to downstream tasks, whose Dask tasks receive the value on the worker (Dask resolves futures
given as arguments). The kernel fetches a result only when it needs the value: when a user
reads ``run.results[name]`` (:meth:`DaskExecutor.materialize`), and for the few results the
engine reads itself (``when``/branch conditions, a fan-out's source list, ``cache=True``; see
``nbflow.engine._needs_local``).

The executor advertises this to the engine and to ``Run`` with ``remote_results = True`` and
three methods: ``placement(result_or_error)`` (the worker and the moment the attempt really
began there, for the timeline; each worker reports it on the executor's own Dask event topic),
``await amaterialize(value)`` and ``materialize(value)`` (fetch, async and sync).

The client: by default the executor creates a *synchronous* ``distributed.Client`` (whose
event loop runs in Dask's own thread) on first use, connected to ``address`` or to a new
``LocalCluster``. The engine talks to it without blocking the kernel's loop, and because the
client outlives any one event loop, ``flow.run()`` can be called many times from a script (each
call runs its own loop) and ``run.results`` can still be read afterwards. A client passed in
may be synchronous or asynchronous (``await Client(..., asynchronous=True)`` on the running
loop); either works.

Install with ``pip install 'nbflow[dask]'``; ``import nbflow`` never imports this module.

Longer than 500 lines: :class:`DaskExecutor` is one class around one client. Connecting,
submitting, waiting, cancelling, placement reports and fetching results all go through the
same client, its loop (``_io``, ``_on_client_loop``: the kernel's loop never blocks on it),
the lost-scheduler checks and the ``closed`` state. The functions at the end (``_invoke``
and ``_send``, which run on the workers) are the other side of the same exchange, kept
beside the calls that submit them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .context import current
from .dask_locks import DaskLocks
from .errors import NbflowError
from .remote_logs import Observed, observed_call
from .runtime import run_blocking, running_loop

try:
    import distributed
except ImportError as _error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "nbflow.DaskExecutor needs dask.distributed: pip install 'nbflow[dask]'"
    ) from _error

T = TypeVar("T")

#: LocalCluster options used when the executor starts its own cluster (overridable).
LOCAL_CLUSTER_DEFAULTS: dict[str, Any] = {
    "processes": True,
    "threads_per_worker": 1,
    "host": "127.0.0.1",
    # Loopback and a free port: no clash with another cluster's 8787, nothing exposed.
    "dashboard_address": "127.0.0.1:0",
}


class DaskClusterError(NbflowError, ConnectionError):
    """The Dask cluster cannot run or report a task: scheduler lost, client closed, no answer."""


class DaskExecutor:
    """Runs task functions as Dask tasks; results stay on the cluster until read.

    Use as ``flow.run(executor=nf.DaskExecutor(...))`` or ``nf.Flow(..., executor=...)``. The
    executor is reusable across runs and stays connected until :meth:`close` (or the end of a
    ``with``/``async with`` block); the engine never closes an executor it did not create.

    Args:
        client: an existing ``distributed.Client`` (sync or asynchronous). Not closed by
            :meth:`close`: it belongs to the caller.
        address: a scheduler address (``"tcp://10.0.0.5:8786"``) to connect to instead.
        timeout: seconds to wait for the scheduler on connect and for each request the kernel
            makes (fetch, cancel, lookups); a lost scheduler then fails instead of hanging.
        heartbeat: seconds between checks, while a task runs, that the client is still
            connected (a lost scheduler fails the waiting tasks within about this long).
        **cluster_kwargs: options for the ``LocalCluster`` started when neither ``client`` nor
            ``address`` is given, on top of :data:`LOCAL_CLUSTER_DEFAULTS` (processes, one
            thread per worker, loopback host, dashboard on a free loopback port), e.g.
            ``n_workers=2``.

    Raises:
        ValueError: ``client`` together with ``address`` or cluster options, or ``address``
            together with cluster options.
    """

    remote_results = True  # engine/Run protocol: call() returns futures, see materialize()

    def __init__(
        self,
        client: Any = None,
        address: str | None = None,
        *,
        timeout: float = 30.0,
        heartbeat: float = 1.0,
        **cluster_kwargs: Any,
    ) -> None:
        if client is not None and (address is not None or cluster_kwargs):
            raise ValueError(
                "DaskExecutor: give either client=, or address=, or LocalCluster options, "
                "not several"
            )
        if address is not None and cluster_kwargs:
            raise ValueError(
                f"DaskExecutor: LocalCluster options {sorted(cluster_kwargs)} make no sense "
                f"with address={address!r} (that cluster already exists)"
            )
        self.address = address
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.cluster_kwargs = {**LOCAL_CLUSTER_DEFAULTS, **cluster_kwargs}
        if self.cluster_kwargs.get("processes") is False and "protocol" not in cluster_kwargs:
            # In-process workers default to the inproc:// transport, which refuses a host;
            # keep the loopback host and talk TCP instead.
            self.cluster_kwargs["protocol"] = "tcp://"
        self.cluster: Any = None  # the LocalCluster this executor started, if any
        self._client: Any = client
        self._owns_client = client is None
        self._lock = threading.Lock()
        self._closed = False
        # future key -> (worker address, wall-clock start), until placement() takes it. Workers
        # report each start on this executor's own event topic (see _invoke).
        self._placed: dict[str, tuple[str, float | None]] = {}
        self._topic = f"nbflow-started-{uuid.uuid4().hex}"
        # future key -> the attempt (its tuple in nbflow.context.current) whose worker sends
        # what the task writes on this topic too, until its result is in.
        self._observed: dict[str, tuple[Any, ...]] = {}
        self._subscribed: Any = None  # the client whose topic handler is ours

    # -- connection --------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (connecting first if needed: this may block seconds)."""
        return self.connect()

    def connect(self) -> Any:
        """Connect now (start the LocalCluster if one is needed) and return the client.

        Raises:
            DaskClusterError: the scheduler at ``address`` did not answer within ``timeout``,
                or the LocalCluster did not start, or the executor was closed.
        """
        with self._lock:
            if self._closed:
                raise DaskClusterError(f"DaskExecutor: {_CLOSED_HINT}")
            if self._client is not None:
                return self._client
            if self.address is not None:
                try:
                    self._client = distributed.Client(
                        self.address, timeout=self.timeout, set_as_default=False
                    )
                except OSError as error:
                    raise DaskClusterError(
                        f"DaskExecutor: cannot connect to the Dask scheduler at "
                        f"{self.address}: {error}"
                    ) from error
                return self._client
            try:
                self.cluster = distributed.LocalCluster(**self.cluster_kwargs)
                self._client = distributed.Client(
                    self.cluster, timeout=self.timeout, set_as_default=False
                )
            except (OSError, RuntimeError) as error:
                if self.cluster is not None:
                    self.cluster.close()
                    self.cluster = None
                raise DaskClusterError(
                    f"DaskExecutor: cannot start a LocalCluster({self.cluster_kwargs}): {error}; "
                    "in a script, run flows under `if __name__ == '__main__':` (Dask starts "
                    "worker processes with spawn, which re-imports the main module)"
                ) from error
            return self._client

    async def _ready(self) -> Any:
        if self._closed:
            raise DaskClusterError(f"DaskExecutor: {_CLOSED_HINT}")
        client = self._client
        if client is None:
            # Starting a cluster takes seconds: do it off the loop, so widgets stay live.
            # (A closed executor raises in connect().)
            client = await asyncio.to_thread(self.connect)
        status = client.status
        if status != "running":
            raise DaskClusterError(
                f"DaskExecutor: the Dask client is {status!r}, not running "
                f"(scheduler {self._scheduler_address(client)}); "
                f"{_LOST_HINT if status == 'connecting' else _CLOSED_HINT}"
            )
        return client

    # -- the executor protocol ---------------------------------------------------------------

    async def call(
        self,
        task: str,
        fn: Callable[..., Any],
        kwargs: dict[str, Any],
        *,
        is_async: bool,
        priority: int = 0,
    ) -> Any:
        """Run ``fn(**kwargs)`` as one Dask task and return its future once it finished.

        Futures among ``kwargs`` (upstream results) are resolved on the worker. Cancelling
        this call (a timeout, a cancelled run) cancels the Dask future. Each call submits a
        new key, so a retry is a new Dask task.

        Raises:
            Exception: whatever ``fn`` raised on the worker (with its remote traceback).
            DaskClusterError: the scheduler was lost or the future cancelled outside nbflow.
        """
        client = await self._ready()
        if self._subscribed is not client:
            client.subscribe_topic(self._topic, self._on_report)
            self._subscribed = client
        key = f"{task}-{uuid.uuid4().hex}"
        found, observed = observing(task)
        if found is not None:
            self._observed[key] = found
        try:
            future = client.submit(
                _invoke,
                fn,
                kwargs,
                is_async,
                self._topic,
                observed,
                key=key,
                priority=priority,
                pure=False,
            )
        except Exception as error:  # Dask could not pickle the function or an input
            self._observed.pop(key, None)
            raise _unsendable(task, fn, kwargs, error) from error
        try:
            await self._wait(client, future, task)
        except BaseException:  # cancelled or timed out here: stop the Dask task too
            self._placed.pop(future.key, None)
            await self._cancel(client, future)
            raise
        finally:
            # The worker sent the attempt's output before its result (see _invoke): all of
            # it is in by now.
            self._observed.pop(key, None)
        status = future.status
        if status == "finished":
            if future.key not in self._placed:  # its start report was lost: ask who holds it
                where = await self._where(client, future)
                if where is not None:
                    self._placed[future.key] = (where, None)
            return future
        self._placed.pop(future.key, None)
        if status == "error":  # fetching an erred future raises its exception
            await self._io(client, lambda: client.gather([future], asynchronous=True), task)
        raise DaskClusterError(
            f"task {task!r}: its Dask future ended {status!r} without nbflow cancelling it; "
            f"{_LOST_HINT if client.status != 'running' else 'was it cancelled elsewhere?'}"
        )

    def remote_locks(self) -> DaskLocks:
        """The cluster's locks, which ``lock=`` takes too (see :mod:`nbflow.dask_locks`)."""
        return DaskLocks(self)

    def placement(self, outcome: Any) -> tuple[str, float | None] | None:
        """Where and when the attempt behind ``outcome`` (a result or an error) ran.

        Returns ``(worker address, wall-clock time it began on that worker)`` (the time is
        None when unknown), or None for something this executor did not produce.
        """
        if isinstance(outcome, BaseException):
            where = getattr(outcome, "nbflow_worker", None)
            began = getattr(outcome, "nbflow_began", None)
            return (where, began) if isinstance(where, str) else None
        key = getattr(outcome, "key", None)
        return self._placed.pop(key, None) if isinstance(key, str) else None

    def _on_report(self, event: tuple[float, dict[str, Any]]) -> None:
        """A worker began an attempt, or sends what it wrote or how far it is (runs on the
        client's loop, before the result comes)."""
        message = event[1]
        if "began" not in message:
            found = self._observed.get(message["key"])
            output = getattr(found[0], "output", None) if found is not None else None
            if output is not None:
                if "lines" in message:
                    output.remote(found, message["lines"], message["dropped"], message["latest"])
                if "progress" in message:
                    output.progress(found, *message["progress"])
            return
        if len(self._placed) >= _MAX_PLACED:  # attempts nobody asked about: forget them
            self._placed.clear()
        self._placed[message["key"]] = (message["worker"], message["began"])

    async def amaterialize(self, value: Any) -> Any:
        """``value`` with every Dask future in it (also inside lists/dicts) fetched.

        Raises:
            DaskClusterError: no answer within ``timeout`` or the client is gone.
        """
        if not _holds_futures(value):
            return value
        client = self._live_client()
        return await self._io(client, lambda: client.gather(value, asynchronous=True), "fetch")

    def materialize(self, value: Any) -> Any:
        """Like :meth:`amaterialize`, from sync code (``run.results[name]``); blocks.

        Works with no event loop (a script after ``flow.run``) and inside a notebook cell.

        Raises:
            DaskClusterError: no answer within ``timeout`` or the client is gone.
        """
        if not _holds_futures(value):
            return value
        client = self._live_client()
        loop = client.loop.asyncio_loop
        if running_loop() is loop:  # an asynchronous client on this very (notebook) loop
            return run_blocking(self.amaterialize(value))
        pending = self._on_client_loop(client, lambda: client.gather(value, asynchronous=True))
        try:
            return pending.result(self.timeout)
        except concurrent.futures.TimeoutError:
            pending.cancel()
            raise self._no_answer(client, "fetch") from None

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the client and the LocalCluster this executor created (not a given client).

        A closed executor runs no more tasks. Results of earlier runs stay readable while a
        client you gave is open; with the executor's own cluster they are gone.
        """
        with self._lock:
            client, cluster = self._client, self.cluster
            self.cluster, self._closed = None, True
            if self._owns_client:  # a given client stays usable for reading results
                self._client = None
            self._placed.clear()
        if self._owns_client and client is not None:
            client.close()
        if cluster is not None:
            cluster.close()

    async def aclose(self) -> None:
        """:meth:`close` without blocking the event loop."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> DaskExecutor:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> DaskExecutor:
        if self._client is None:
            await asyncio.to_thread(self.connect)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard's URL, if the cluster serves one (and we are connected)."""
        client = self._client
        return getattr(client, "dashboard_link", None) if client is not None else None

    def __repr__(self) -> str:
        client = self._client
        if self._closed:
            return "<DaskExecutor closed>"
        if client is None:
            where = self.address or "LocalCluster (not started)"
            return f"<DaskExecutor {where} not connected>"
        kind = "LocalCluster" if self.cluster is not None else "cluster"
        return f"<DaskExecutor {kind} {self._scheduler_address(client)} status={client.status!r}>"

    # -- talking to the client ---------------------------------------------------------------

    def _live_client(self) -> Any:
        client = self._client
        if client is None or client.status in ("closing", "closed"):
            raise DaskClusterError(
                "DaskExecutor: the client is closed, so results left on the cluster are gone; "
                "read run.results before closing the executor"
            )
        return client

    async def _wait(self, client: Any, future: Any, task: str) -> None:
        """Until ``future`` is finished, erred or cancelled; fail if the client disconnects."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finished(_: Any) -> None:  # runs in Dask's callback thread
            with contextlib.suppress(RuntimeError):  # our loop closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, done)

        future.add_done_callback(finished)
        while not done.done():
            await asyncio.wait({done}, timeout=self.heartbeat)
            if not done.done() and client.status != "running":
                raise DaskClusterError(
                    f"task {task!r}: the Dask client is {client.status!r} while the task runs "
                    f"(scheduler {self._scheduler_address(client)}); {_LOST_HINT}"
                )

    async def _where(self, client: Any, future: Any) -> str | None:
        """The worker holding ``future``'s result (where it ran), or None if unknown."""
        try:
            who = await self._io(
                client, lambda: client.scheduler.who_has(keys=[future.key]), "who_has"
            )
        except (DaskClusterError, OSError):
            return None  # a display detail: never fail a task for it
        holders = who.get(future.key) or ()
        return str(sorted(holders)[0]) if holders else None

    async def _cancel(self, client: Any, future: Any) -> None:
        """Cancel ``future`` on the cluster; best effort, bounded by ``timeout``."""
        if client.status == "running":  # else the scheduler is gone: nothing to ask it
            with contextlib.suppress(DaskClusterError, OSError, RuntimeError):
                await self._io(client, lambda: client.cancel([future], asynchronous=True), "cancel")
                return
        future.release()  # at least drop our reference, so the scheduler may forget it

    async def _io(self, client: Any, make: Callable[[], Awaitable[T]], what: str) -> T:
        """Run the coroutine ``make()`` on the client's loop and await it from this loop."""
        loop = client.loop.asyncio_loop
        try:
            if loop is asyncio.get_running_loop():
                return await asyncio.wait_for(make(), self.timeout)
            pending = self._on_client_loop(client, make)
            return await asyncio.wait_for(asyncio.wrap_future(pending), self.timeout)
        except TimeoutError:
            raise self._no_answer(client, what) from None

    @staticmethod
    def _on_client_loop(
        client: Any, make: Callable[[], Awaitable[T]]
    ) -> concurrent.futures.Future[T]:
        loop = client.loop.asyncio_loop
        if loop.is_closed():
            raise DaskClusterError(
                f"DaskExecutor: the Dask client's event loop is closed; {_CLOSED_HINT}"
            )

        async def run() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(run(), loop)

    def _no_answer(self, client: Any, what: str) -> DaskClusterError:
        return DaskClusterError(
            f"DaskExecutor: {what}: no answer from the Dask scheduler at "
            f"{self._scheduler_address(client)} within {self.timeout}s; {_LOST_HINT}"
        )

    def _scheduler_address(self, client: Any) -> str:
        info = getattr(client, "scheduler", None)
        return str(getattr(info, "address", None) or self.address or "?")


#: Placements kept for placement(); the engine asks right away, so this only bounds memory
#: for callers of call() that never ask.
_MAX_PLACED = 100_000

_LOST_HINT = (
    "the scheduler is unreachable (stopped, crashed or the network is down); "
    "start it again and create a new DaskExecutor"
)
_CLOSED_HINT = "it was closed; create a new DaskExecutor"


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


def _holds_futures(value: Any) -> bool:
    """Whether ``value`` is a Dask future or a list/tuple/set/dict holding one."""
    if isinstance(value, distributed.Future):
        return True
    if isinstance(value, list | tuple | set | frozenset):
        return any(_holds_futures(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_futures(v) for v in value.values())
    return False


def _unsendable(
    task: str, fn: Callable[..., Any], kwargs: dict[str, Any], error: Exception
) -> TypeError:
    """A clear error for a call Dask could not serialize, naming the input that fails."""
    import cloudpickle

    culprit = f"its function {getattr(fn, '__qualname__', fn)!r}"
    for name, value in [("", fn), *kwargs.items()]:
        if isinstance(value, distributed.Future):
            continue
        try:
            cloudpickle.dumps(value)
        except Exception as cause:
            what = f"input {name!r} ({type(value).__name__})" if name else culprit
            return TypeError(
                f"task {task!r}: {what} cannot be pickled to send it to Dask: {cause}; "
                "pass something that pickles (or create it inside the task)"
            )
    return TypeError(f"task {task!r}: Dask could not send the call to the cluster: {error}")


def _invoke(
    fn: Callable[..., Any],
    kwargs: dict[str, Any],
    is_async: bool,
    topic: str,
    observed: Observed | None = None,
) -> Any:
    """What each Dask task runs (on the worker): ``fn(**kwargs)``, async ones via asyncio.run.

    The keyword arguments travel as one dict so a task parameter named like one of
    ``Client.submit``'s options (``key``, ``priority``, ``workers``...) cannot clash with it.
    Where and when the attempt began goes to the executor on its event ``topic`` (the result
    itself stays here); an exception carries the same as ``nbflow_worker``/``nbflow_began``.
    What the task prints, logs and reports goes there too, while it runs and as it ends
    (:mod:`nbflow.remote_logs`), before the result is reported.
    """
    began, address, send = time.time(), None, None
    with contextlib.suppress(ValueError):  # ValueError: not running on a Dask worker
        worker = distributed.get_worker()
        address = worker.address
        key = worker.get_current_task()
        worker.log_event(topic, {"key": key, "worker": address, "began": began})
        send = functools.partial(_send, worker, topic, key)
    try:
        with observed_call(observed, send, address):
            result = fn(**kwargs)
            if is_async or inspect.iscoroutine(result):
                result = asyncio.run(result)
        return result
    except Exception as error:
        with contextlib.suppress(Exception):  # some exceptions refuse attributes
            error.nbflow_worker, error.nbflow_began = address, began  # type: ignore[attr-defined]
        raise


def _send(worker: Any, topic: str, key: Any, message: dict[str, Any]) -> None:
    """Send ``message`` about the task ``key`` to the executor (from the task's thread)."""
    worker.log_event(topic, {"key": key, **message})


def observing(task: str) -> tuple[tuple[Any, ...] | None, Observed | None]:
    """The running attempt (its tuple in :data:`nbflow.context.current`) and what its worker
    needs to capture its output, for a call made inside it; ``(None, None)`` otherwise."""
    found = current.get()
    output = getattr(found[0], "output", None) if found is not None else None
    if output is None or found is None:
        return None, None
    engine = found[0]
    observed = Observed(engine.run_id, engine.plan.flow_name, task, found[2], found[3],
                        output.cap, output.echo, found[5])  # fmt: skip
    return found, observed
