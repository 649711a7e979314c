"""A fan-out task's elements, made from its sources as their items arrive.

A source is a list (a result that is there, a run variable) or a
:class:`~nbflow.streams.Stream` (a producer still producing). :class:`Elements` yields
``(index, values)`` as each element becomes available (``values``: one per element
parameter, in ``fan_out`` order):

- one source: each item, under the source's own index (element *i* of a fan-out over a
  fan-out is element *i* of the first, whatever order they end in);
- ``nf.zip``: element *i* once every source has its item *i*. Sources of unequal lengths
  are a :class:`~nbflow.errors.FanOutError`, raised as soon as it shows: when one source
  ended and another has an item it lacks, or when all ended with different sizes;
- a cross product: each combination once its last item arrived, numbered in that order
  (row-major when every source is a list); the task's results are in row-major order
  whatever the arrival order (:attr:`Elements.orders`).

When a streaming source's producer does not succeed, no further element is made and
:attr:`Elements.broken` says which (the task then ends as its trigger rule says). The
element count is known once every source ended (:attr:`Elements.size`, and
``on_size(n)`` is told).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from . import mapping
from .mapping import FanOut
from .streams import Stream, changed


class Elements:
    """The elements of one fan-out task in one run (see the module docstring).

    Args:
        task: the task's name (for messages).
        fan_out: its ``fan_out``.
        sources: one per element parameter, in ``fan_out`` order: a list or a Stream.
    """

    def __init__(self, task: str, fan_out: str | FanOut, sources: list[list[Any] | Stream]):
        self.task, self.fan_out, self.sources = task, fan_out, sources
        self.mode = mapping.mode(fan_out)
        #: the number of elements, once known (at once when every source is a list)
        self.size: int | None = None
        #: the stream whose producer did not succeed, if one did not: no more elements
        self.broken: Stream | None = None
        self.on_size: Callable[[int], None] | None = None
        #: a streamed product's elements: index -> the sort key of its result (its items'
        #: indices in their sources); empty otherwise (the index is the sort key)
        self.orders: dict[int, tuple[int, ...]] = {}
        if all(isinstance(s, list) for s in sources):
            lists: list[list[Any]] = sources  # type: ignore[assignment]
            counts = [len(s) for s in lists]
            if self.mode == "zip" and len(set(counts)) > 1:
                self.size = None  # the error is raised as the elements are read
            else:
                self.size = counts[0] if len(counts) == 1 or self.mode == "zip" else _product(
                    counts)  # fmt: skip

    def listed(self) -> Iterator[tuple[int, tuple[Any, ...]]]:
        """The elements when every source is a list, in order (no waiting).

        Raises:
            FanOutError: a zip of unequal lengths.
        """
        lists: list[list[Any]] = self.sources  # type: ignore[assignment]
        return enumerate(mapping.combine_lists(self.fan_out, self.task, lists))

    def __aiter__(self) -> AsyncIterator[tuple[int, tuple[Any, ...]]]:
        if all(isinstance(s, list) for s in self.sources):
            return self._from_lists()
        return self._streamed()

    async def _from_lists(self) -> AsyncIterator[tuple[int, tuple[Any, ...]]]:
        for pair in self.listed():
            yield pair

    async def _streamed(self) -> AsyncIterator[tuple[int, tuple[Any, ...]]]:
        sources = self.sources
        count = len(sources)
        got: list[dict[int, Any]] = []
        arrived: list[list[int]] = []  # each source's indices, in arrival order
        cursors = [0] * count
        streams: list[Stream] = []
        for source in sources:
            if isinstance(source, Stream):
                got.append({})
                arrived.append([])
                streams.append(source)
            else:
                got.append(dict(enumerate(source)))
                arrived.append(list(range(len(source))))
        made = 0  # elements of a product so far: the next one's index
        while True:
            for stream in streams:
                if stream.ended and not stream.succeeded:
                    self.broken = stream
                    return
            progress = False
            for k, source in enumerate(sources):
                if not isinstance(source, Stream):
                    continue
                while cursors[k] < len(source.arrived):
                    index = source.arrived[cursors[k]]
                    cursors[k] += 1
                    progress = True
                    got[k][index] = source.items[index]
                    arrived[k].append(index)
                    if self.mode == "zip":
                        self._check_zip(got, k, index)
                        if all(index in g for g in got):
                            yield index, tuple(g[index] for g in got)
                    elif count == 1:
                        yield index, (got[0][index],)
                    else:
                        for positions in self._combinations(arrived, k, index):
                            self.orders[made] = positions
                            yield made, tuple(got[j][p] for j, p in enumerate(positions))
                            made += 1
            if progress:
                continue  # look again before waiting: more may have come meanwhile
            if all(s.ended for s in streams):
                self._ended(got)
                return
            await changed(streams)

    def _ended(self, got: list[dict[int, Any]]) -> None:
        """Every source ended with success: check a zip's lengths; the size is known."""
        sizes = [len(g) for g in got]
        if self.mode == "zip":
            if len({frozenset(g) for g in got}) > 1:
                raise self._mismatch(sizes)
            size = sizes[0]
        else:
            size = sizes[0] if len(sizes) == 1 else _product(sizes)
        self.size = size
        if self.on_size is not None:
            self.on_size(size)

    def _check_zip(self, got: list[dict[int, Any]], k: int, index: int) -> None:
        """Item ``index`` of source ``k`` arrived: a source that ended without it cannot
        be zipped with it."""
        for j, source in enumerate(self.sources):
            ended = not isinstance(source, Stream) or source.ended
            if j != k and ended and index not in got[j]:
                raise self._mismatch([len(g) for g in got])

    def _mismatch(self, sizes: list[int]) -> Exception:
        names = [s for _, s in mapping.pairs(self.fan_out)]
        return mapping.zip_mismatch(self.task, self.fan_out, dict(zip(names, sizes, strict=True)))

    @staticmethod
    def _combinations(
        arrived: list[list[int]], k: int, index: int
    ) -> itertools.product[tuple[int, ...]]:
        """The combinations that item ``index`` of source ``k`` completes: with every item
        of the other sources that arrived before it (each combination once, at the arrival
        of its last item)."""
        return itertools.product(*([index] if j == k else a for j, a in enumerate(arrived)))


def _product(counts: list[int]) -> int:
    size = 1
    for count in counts:
        size *= count
    return size
