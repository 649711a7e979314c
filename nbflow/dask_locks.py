"""``lock=`` on Dask: a ``distributed.Lock`` on the cluster, held by the kernel.

A run on a :class:`~nbflow.dask.DaskExecutor` takes a task's lock in two steps: first in the
kernel's own table (:mod:`nbflow.locks`: runs of this kernel take turns, none holding
anything while it waits), then, as the task begins and before its first attempt is
submitted, the cluster's ``distributed.Lock`` of the same name (``nbflow-lock-<name>``), which
excludes the tasks of every other kernel or client that uses nbflow's locks on that cluster.
The kernel holds it, not a worker: no Dask worker thread waits for a lock, and the lock is
given back when the task ends (on the cluster, from the kernel).

Only the one task of this kernel that holds the kernel's lock waits for the cluster's, while
holding its own slot; the holder on another kernel waits for nothing of this kernel's, so
no cycle of waits can form. ``distributed.Lock`` rests on a semaphore whose leases expire
when a client stops sending heartbeats (``distributed.scheduler.locks.lease-timeout``): a
kernel that dies gives its locks back after that time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .dask import DaskExecutor

#: Prefix of the cluster's lock names, so nbflow's never meet another library's.
PREFIX = "nbflow-lock-"
#: Each request waits this long on the scheduler at most, then asks again: a lock held for
#: an hour never makes one request outlast the executor's ``timeout``.
SLICE = 1.0


class DaskLocks:
    """The cluster's locks, as a run of this kernel takes them (see the module docstring)."""

    def __init__(self, executor: DaskExecutor) -> None:
        self.executor = executor

    async def acquire(self, name: str) -> Any:
        """Wait until the cluster's lock ``name`` is this kernel's; return it (for
        :meth:`release`).

        Raises:
            DaskClusterError: the scheduler does not answer or the client is gone.
        """
        import distributed

        executor = self.executor
        client = await executor._ready()
        lock = distributed.Lock(PREFIX + name, scheduler_rpc=client.scheduler, loop=client.loop)
        while True:
            asked = executor._on_client_loop(client, lambda: lock.acquire(timeout=SLICE))
            try:
                taken = await asyncio.wait_for(
                    asyncio.shield(asyncio.wrap_future(asked)), SLICE + executor.timeout
                )
            except asyncio.CancelledError:
                # The task was cancelled while the scheduler was asked: should the answer be
                # yes, the lock is given straight back, or nobody could ever take it again.
                asked.add_done_callback(lambda done: self._give_back_if_taken(lock, done))
                raise
            except TimeoutError:
                asked.add_done_callback(lambda done: self._give_back_if_taken(lock, done))
                raise executor._no_answer(client, f"lock {name!r}") from None
            if taken:
                return lock
            await executor._ready()  # the client is still connected: ask again

    async def release(self, lock: Any) -> None:
        """Give the cluster's lock back (best effort: a lost scheduler lets it expire)."""
        executor = self.executor
        client = executor._client
        if client is None or client.status != "running":
            return
        with contextlib.suppress(Exception):  # it expires with the lease anyway
            await executor._io(client, lock.release, f"release lock {lock.name!r}")

    def release_soon(self, lock: Any) -> None:
        """:meth:`release` without waiting (a run that ends without its runners)."""
        client = self.executor._client
        if client is not None and client.status == "running":
            with contextlib.suppress(Exception):
                self.executor._on_client_loop(client, lock.release)

    def _give_back_if_taken(self, lock: Any, done: concurrent.futures.Future[Any]) -> None:
        if not done.cancelled() and done.exception() is None and done.result():
            self.release_soon(lock)

    def __repr__(self) -> str:
        return f"<DaskLocks of {self.executor!r}>"
