"""What every store backend shares: the writer (submit, flush, warnings) and its handle."""

from __future__ import annotations

from ..errors import StoreError
from .writer import Writer


class BaseStore:
    """A store backend: writes go through a :class:`~nbflow.store.writer.Writer`.

    Subclasses make the writer (with their sink) and implement the read methods of
    :class:`~nbflow.store.StateStore`.
    """

    location: str
    timeout: float

    @property
    def takes_run_queues(self) -> bool:
        """Whether a run's queued/started/succeeded events may skip :meth:`submit` and go to
        the run's own queues, which the writer reads (see ``Recorder``): yes, unless a
        subclass overrides ``submit`` (it then sees every event, as documented)."""
        return type(self).submit is BaseStore.submit

    def __init__(self, writer: Writer, location: str, timeout: float) -> None:
        self.location = location
        self.timeout = timeout
        self._use(writer)

    def _use(self, writer: Writer) -> None:
        self._writer = writer
        if type(self).submit is BaseStore.submit:
            # Skip one call per event on the loop; a subclass overriding submit keeps its own.
            self.submit = writer.submit  # type: ignore[method-assign,assignment]

    def ensure_open(self) -> None:
        """Get a writer again if this handle's was stopped (``nbflow.store.close_all()``).

        Called when a run starts, so a long-lived handle outlives a ``close_all``.

        Raises:
            StoreError: the store cannot be opened again.
        """
        if self._writer.closed:
            self._use(self._reopen())

    def _reopen(self) -> Writer:
        raise StoreError(f"store {self.location} is closed")

    def submit(self, item: object) -> None:
        """Hand one record to the writer; O(1), never blocks (runs on the event loop)."""
        self._writer.submit(item)

    def wake(self) -> None:
        """Have the writer look at its queue now (called when a run starts)."""
        self._writer.wake()

    def flush(self, timeout: float | None = None) -> None:
        """Block until every record submitted so far is written.

        Raises:
            StoreError: a write failed since the last flush, or the writer did not catch up
                within ``timeout`` (default: the store's ``timeout``), e.g. a locked file.
        """
        self._writer.flush(self.timeout if timeout is None else timeout)

    def settle(self, timeout: float | None = None) -> None:
        """Block until every record submitted so far is checked (results pickled, warnings
        known); the writer commits them right after, without the caller waiting.

        Raises:
            StoreError: like :meth:`flush`.
        """
        self._writer.settle(self.timeout if timeout is None else timeout)

    def take_warnings(self, run_id: str) -> list[str]:
        """Warnings the writer kept about ``run_id`` (e.g. a result that does not pickle)."""
        return self._writer.take_warnings(run_id)

    def knows_version(self, flow: str, version: str) -> bool:
        """Whether this flow version is recorded already."""
        return self._writer.known(flow, version)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.location!r}>"
