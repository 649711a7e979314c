"""A dependency-free layered (Sugiyama-style) layout: layers left to right, edges point right.

Left to right because task names are long and notebook outputs scroll vertically: names
stay on one line, and a wide flow grows downwards. The essay at the end explains the steps.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Sequence
from dataclasses import dataclass, field

from nbflow.errors import CycleError, DefinitionError

Point = tuple[float, float]
Adj = list[list[int]]  # neighbours by node index


@dataclass
class Layout:
    """Geometry of a laid-out DAG, in SVG user units (px).

    ``positions`` are node centres; ``layers`` lists node names per layer, left to right, each
    top to bottom. ``routes`` holds, for an edge spanning several layers, the points it passes
    through in between (so it bends around nodes instead of crossing them).
    """

    positions: dict[str, Point]
    width: float
    height: float
    node_w: float
    node_h: float
    layers: list[list[str]]
    routes: dict[tuple[str, str], list[Point]] = field(default_factory=dict)


def _index(names: Sequence[str], edges: Sequence[tuple[str, str]]) -> tuple[Adj, Adj]:
    """Successor and predecessor lists by index, duplicates dropped."""
    idx = {name: i for i, name in enumerate(names)}
    if len(idx) != len(names):
        raise DefinitionError("node names must be unique")
    succ: Adj = [[] for _ in names]
    pred: Adj = [[] for _ in names]
    seen: set[tuple[int, int]] = set()
    for u, v in edges:
        if u not in idx or v not in idx:
            missing = u if u not in idx else v
            raise DefinitionError(f"edge {(u, v)!r} names {missing!r}, which is not a node")
        e = (idx[u], idx[v])
        if e not in seen:  # duplicate edges would weigh twice in barycenters
            seen.add(e)
            succ[e[0]].append(e[1])
            pred[e[1]].append(e[0])
    return succ, pred


def _generations(names: Sequence[str], succ: Adj, pred: Adj) -> list[int]:
    """Kahn's algorithm by generations: a node's layer is its longest path from a source."""
    indeg = [len(p) for p in pred]
    layer = [0] * len(names)
    frontier = [i for i, d in enumerate(indeg) if d == 0]
    done = 0
    while frontier:
        done += len(frontier)
        nxt = []
        for u in frontier:
            for v in succ[u]:
                indeg[v] -= 1
                if indeg[v] == 0:
                    layer[v] = layer[u] + 1
                    nxt.append(v)
        frontier = nxt
    if done < len(names):
        # Every node left has a predecessor that is left too: walk back until one repeats.
        v = next(i for i, d in enumerate(indeg) if d > 0)
        path, where = [v], {v: 0}
        while True:
            v = next(p for p in pred[v] if indeg[p] > 0)
            if v in where:
                raise CycleError([names[i] for i in reversed([*path[where[v] :], v])])
            where[v] = len(path)
            path.append(v)
    return layer


def topological_layers(names: Sequence[str], edges: Sequence[tuple[str, str]]) -> list[list[str]]:
    """Return Kahn generations: sources first, each layer in input order.

    Raises:
        CycleError: the edges form a cycle (the cycle is on the exception).
        DefinitionError: an edge names an unknown node, or names repeat.
    """
    succ, pred = _index(names, edges)
    layer = _generations(names, succ, pred)
    out: list[list[str]] = [[] for _ in range(max(layer, default=-1) + 1)]
    for i, name in enumerate(names):
        out[layer[i]].append(name)
    return out


def count_crossings(layers: Sequence[Sequence[str]], edges: Sequence[tuple[str, str]]) -> int:
    """Count crossings between edges joining adjacent layers (longer edges are ignored)."""
    where = {name: (k, i) for k, layer in enumerate(layers) for i, name in enumerate(layer)}
    per_pair: dict[int, list[tuple[int, int]]] = {}
    for u, v in set(edges):
        (ku, iu), (kv, iv) = where[u], where[v]
        if kv == ku + 1:
            per_pair.setdefault(ku, []).append((iu, iv))
    return sum(_inversions(sorted(pairs)) for pairs in per_pair.values())


def _inversions(pairs: Sequence[tuple[float, float]]) -> int:
    # Pairs sorted by (upper, lower) position; two edges cross iff their lower ends invert.
    seen: list[float] = []
    n = 0
    for _, b in pairs:
        n += len(seen) - bisect_right(seen, b)
        insort(seen, b)
    return n


def default_node_w(names: Sequence[str]) -> float:
    """A node width that fits the longest name at 12.5 px, clamped to 140..220 px."""
    return min(max(7.2 * max((len(n) for n in names), default=0) + 48.0, 140.0), 220.0)


def layered_layout(
    names: Sequence[str],
    edges: Sequence[tuple[str, str]],
    *,
    node_w: float | None = None,
    node_h: float = 46.0,
    gap_x: float = 52.0,
    gap_y: float = 16.0,
    margin: float = 16.0,
    sweeps: int = 4,
) -> Layout:
    """Lay out a DAG in layers, left to right, reducing edge crossings.

    Deterministic: ties keep input order. ``node_w`` defaults to a width that fits the longest
    name (clamped; longer names are elided by the renderer). ``sweeps=0`` keeps input order
    within layers (useful to compare). Cost per sweep is O(V + E + bends).

    Raises:
        CycleError: the edges form a cycle.
        DefinitionError: an edge names an unknown node, or names repeat.
    """
    names = list(names)
    node_w = default_node_w(names) if node_w is None else node_w
    if not names:
        return Layout({}, 2 * margin, 2 * margin, node_w, node_h, [])
    succ, pred = _index(names, edges)
    layer = _generations(names, succ, pred)  # every source in the first layer

    # Long edges become chains of bend points ("dummies", ids >= n), with a budget so a
    # pathological graph cannot blow up; edges beyond it are drawn straight.
    n = len(names)
    esucc = [list(s) for s in succ]
    epred = [list(p) for p in pred]
    chains: dict[tuple[int, int], list[int]] = {}
    budget = 4 * n + 2000
    for u in range(n):
        for v in succ[u]:
            span = layer[v] - layer[u]
            if 1 < span <= budget + 1:
                budget -= span - 1
                chain = list(range(len(layer), len(layer) + span - 1))
                layer.extend(range(layer[u] + 1, layer[v]))
                esucc.extend([] for _ in chain)
                epred.extend([] for _ in chain)
                esucc[u][esucc[u].index(v)] = chain[0]
                epred[v][epred[v].index(u)] = chain[-1]
                path = [u, *chain, v]
                for j, d in enumerate(chain, start=1):
                    epred[d].append(path[j - 1])
                    esucc[d].append(path[j + 1])
                chains[(u, v)] = chain

    order = _order(layer, esucc, epred, sweeps)
    ys = _assign_y(order, esucc, epred, n, node_h, gap_y)

    top = min(ys[ids[0]] - (node_h / 2 if ids[0] < n else 4) for ids in order)
    positions: dict[str, Point] = {}
    points: list[Point] = [(0.0, 0.0)] * len(layer)
    for k, ids in enumerate(order):
        x = margin + k * (node_w + gap_x) + node_w / 2
        for i in ids:
            points[i] = (x, ys[i] - top + margin)
            if i < n:
                positions[names[i]] = points[i]
    bottom = max(points[ids[-1]][1] + (node_h / 2 if ids[-1] < n else 4) for ids in order)
    width = 2 * margin + len(order) * node_w + (len(order) - 1) * gap_x
    layers = [[names[i] for i in ids if i < n] for ids in order]
    routes = {(names[u], names[v]): [points[d] for d in ch] for (u, v), ch in chains.items()}
    return Layout(positions, width, bottom + margin, node_w, node_h, layers, routes)


def _order(layer: list[int], esucc: Adj, epred: Adj, sweeps: int) -> Adj:
    order: Adj = [[] for _ in range(max(layer) + 1)]
    for i, k in enumerate(layer):
        order[k].append(i)
    pos = [0.0] * len(layer)
    layer_sets = [set(ids) for ids in order]

    def place(ids: list[int]) -> None:
        # Relative positions in (0, 1) so layers of different sizes are comparable.
        for j, i in enumerate(ids):
            pos[i] = (j + 0.5) / len(ids)

    def crossings() -> int:
        return sum(
            _inversions(sorted((pos[u], pos[v]) for u in ids for v in esucc[u] if v in nxt))
            for ids, nxt in zip(order, layer_sets[1:], strict=False)
        )

    for ids in order:
        place(ids)
    best, best_order = crossings() if sweeps else 0, [list(ids) for ids in order]
    for sweep in range(sweeps):
        down = sweep % 2 == 0
        ks = range(1, len(order)) if down else range(len(order) - 2, -1, -1)
        nbrs = epred if down else esucc
        for k in ks:
            ids = order[k]
            bary = {}
            for i in ids:
                ns = nbrs[i]
                bary[i] = sum(pos[j] for j in ns) / len(ns) if ns else pos[i]
            ids.sort(key=lambda i: (bary[i], pos[i]))  # stable, ties by current order
            place(ids)
        c = crossings()
        if c < best:
            best, best_order = c, [list(ids) for ids in order]
        if best == 0:
            break
    return best_order


def _assign_y(
    order: Adj, esucc: Adj, epred: Adj, n: int, node_h: float, gap_y: float
) -> list[float]:
    half = [node_h / 2 if i < n else 4.0 for i in range(len(esucc))]  # bends are 8 px tall
    ys = [0.0] * len(esucc)
    for ids in order:  # all wanting 0 gives a tight stack centred on 0
        _project(ids, [0.0] * len(ids), ys, half, n, gap_y)
    for nbrs in (epred, esucc, None, None):
        for ids in order if nbrs is not esucc else order[::-1]:
            want = []
            for i in ids:
                ns = nbrs[i] if nbrs is not None else epred[i] + esucc[i]
                want.append(sum(ys[j] for j in ns) / len(ns) if ns else ys[i])
            _project(ids, want, ys, half, n, gap_y)
    return ys


def _sep(a: int, b: int, half: list[float], n: int, gap_y: float) -> float:
    return half[a] + half[b] + (gap_y if a < n and b < n else 6.0)


def _project(
    ids: list[int], want: list[float], ys: list[float], half: list[float], n: int, gap_y: float
) -> None:
    """Closest positions to ``want`` (least squares) that keep order and minimum gaps."""
    offs = [0.0]
    for j in range(1, len(ids)):
        offs.append(offs[-1] + _sep(ids[j - 1], ids[j], half, n, gap_y))
    blocks: list[list[float]] = []  # [sum, count]; pool adjacent violators
    for w, o in zip(want, offs, strict=True):
        blocks.append([w - o, 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    j = 0
    for s, c in blocks:
        for _ in range(int(c)):
            ys[ids[j]] = s / c + offs[j]
            j += 1


# How the layout works
# --------------------
# 1. Layering: Kahn's algorithm by generations gives each node its longest distance from a
#    source, so every edge points right. Every source stays in the first layer, even one
#    whose only consumer is far right: a task drawn in a later column reads as if it had an
#    upstream (issue #22). Its long edge bends between the nodes (step 2).
# 2. Long edges: an edge spanning k layers gets k-1 bend points, tiny nodes that take part
#    in ordering and spacing, so long edges route between nodes (a budget keeps it linear).
# 3. Ordering: alternating down and up sweeps sort each layer by the barycenter (mean
#    relative position) of its neighbours in the layer just placed; a node without any
#    keeps its place. The sort is stable, so ties keep the previous order (deterministic).
#    The order with the fewest crossings seen wins, so sweeping never makes things worse.
# 4. Vertical placement: each node wants the mean height of its neighbours; the closest
#    placement keeping order and minimum gaps is an isotonic regression, solved exactly in
#    O(k) by pooling adjacent violators. A few passes straighten the edges.
