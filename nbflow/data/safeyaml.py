"""Flow documents as text: YAML and JSON to plain data and back, safe against hostile input.

:func:`load_text` parses with PyYAML's safe loader (YAML 1.2 booleans: only ``true`` and
``false``) or :mod:`json`, and refuses, as a :class:`TextProblem` with its path:

- duplicate keys (YAML and JSON parsers keep the last silently: a second ``tasks:`` would
  replace the first);
- alias bombs: aliases may repeat nodes, but the document they expand to may have at most
  :data:`MAX_ALIAS_NODES` nodes, or ten times the written ones, more than it is written with
  (a 400-byte "billion laughs" document expands to millions); and aliases that contain
  themselves;
- nesting deeper than :data:`MAX_DEPTH` levels.

:func:`dump_text` writes YAML that reads back to the same data: every string round-trips,
including those with characters YAML reads as line breaks (``\\x85``, ``\\u2028``...).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..errors import DefinitionError, describe

#: Nodes that aliases may add to a document beyond the nodes written (or ten times those).
MAX_ALIAS_NODES = 100_000
#: The deepest nesting of mappings and lists in a document.
MAX_DEPTH = 100


@dataclass
class TextProblem(Exception):
    """The text of a document cannot become data: where (a path, or ``(document)``), what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def load_text(text: str, format: str = "yaml") -> Any:
    """Parse ``text`` as YAML (which also reads JSON) or, with ``format="json"``, as JSON.

    Raises:
        TextProblem: the text does not parse, or it has duplicate keys, an alias bomb, a
            recursive alias or too deep a nesting.
    """
    if format == "json":
        return _load_json(text)
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())  # a SafeLoader: builds plain data only
    except TextProblem:
        raise
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise TextProblem("(document)", f"cannot parse YAML: {problem}{where}") from None
    except (RecursionError, MemoryError) as error:
        raise TextProblem("(document)", f"cannot parse YAML: {type(error).__name__}") from None
    except Exception as error:  # PyYAML's own constructors fail raw on `!!float ''` and such
        raise TextProblem("(document)", f"cannot parse YAML: {describe(error)}") from None


def dump_text(data: Any) -> str:
    """``data`` (plain: mappings, lists, strings, numbers...) as YAML that reads back equal.

    Raises:
        DefinitionError: a string holds a lone surrogate (``"\\ud800"``): it is not Unicode
            text, and cannot be written as UTF-8.
    """
    import yaml

    try:
        return yaml.dump(
            data, Dumper=_yaml_dumper(), sort_keys=False, allow_unicode=True, width=100
        )
    except UnicodeEncodeError:
        where = _surrogate_path(data) or "(document)"
        raise DefinitionError(
            f"{where}: holds a lone surrogate character, which is not Unicode text and cannot "
            "be written as UTF-8; remove it (or decode the text it came from correctly)"
        ) from None


def _surrogate_path(data: Any) -> str | None:
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                stack.extend([(key, _join(path, "(key)")), (item, _join(path, key))])
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(value))
    return None


# -- JSON -----------------------------------------------------------------------------------


class _Pairs(dict[str, Any]):
    """A JSON object that had duplicate keys (the duplicates are in ``repeated``)."""

    repeated: list[str]


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    repeated = []
    for key, value in pairs:
        if key in result:
            repeated.append(key)
        result[key] = value
    if not repeated:
        return result
    marked = _Pairs(result)
    marked.repeated = repeated
    return marked


def _load_json(text: str) -> Any:
    try:
        data = json.loads(text, object_pairs_hook=_object)
    except RecursionError:
        raise TextProblem("(document)", f"nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as error:
        raise TextProblem("(document)", f"cannot parse JSON: {error}") from None
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:  # the duplicates' paths, and the depth
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise TextProblem(path or "(document)", f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, _Pairs):
            key = value.repeated[0]
            raise TextProblem(_join(path, key), f"duplicate key {key!r}")
        if isinstance(value, dict):
            stack.extend((v, _join(path, k), depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))
    return data


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


# -- YAML: reading --------------------------------------------------------------------------

_LOADER: Any = None
_DUMPER: Any = None
_MERGE = "tag:yaml.org,2002:merge"


def _yaml_loader() -> Any:
    """``yaml.SafeLoader`` (libyaml's when PyYAML has it: several times faster) with YAML 1.2
    booleans, so ``on:`` (as in ``retry: {on: [ConnectionError]}``) stays the string "on"
    instead of becoming True, and :func:`_check_nodes` run before anything is built."""
    global _LOADER
    if _LOADER is None:
        import yaml

        base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

        class Loader(base):  # type: ignore[valid-type,misc]
            def construct_document(self, node: Any) -> Any:
                _check_nodes(self, node)
                return super().construct_document(node)

        Loader.yaml_implicit_resolvers = {
            first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }
        Loader.add_implicit_resolver(
            "tag:yaml.org,2002:bool",
            re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
            list("tTfF"),
        )
        _LOADER = Loader
    return _LOADER


def _check_nodes(loader: Any, root: Any) -> None:
    """Refuse duplicate keys, recursive aliases, deep nesting and alias bombs, walking the
    node graph before anything is built: each distinct node once, with its first path."""
    from yaml.nodes import MappingNode, ScalarNode, SequenceNode

    paths: dict[int, str] = {id(root): ""}
    sizes: dict[int, int] = {}  # expanded size of each node, aliases counted each time
    open_: set[int] = set()  # on the current walk: meeting one again is a recursive alias
    stack: list[tuple[Any, int, bool]] = [(root, 0, False)]
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        path = paths[key]
        if done:  # its children are sized: size it
            open_.discard(key)
            sizes[key] = 1 + sum(sizes.get(id(c), 1) for c in _children(node))  # keys: 1
            continue
        if key in sizes:
            continue
        if depth > MAX_DEPTH:
            raise TextProblem(path or "(document)", f"nested more than {MAX_DEPTH} levels deep")
        open_.add(key)
        stack.append((node, depth, True))
        if isinstance(node, MappingNode):
            seen: dict[Any, bool] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE:
                    continue
                name = loader.construct_object(key_node)
                if name in seen:
                    raise TextProblem(_join(path, name), f"duplicate key {name!r}")
                seen[name] = True
            labelled = [(v, _join(path, _label(loader, k))) for k, v in node.value]
            labelled += [(k, path) for k, _ in node.value if not isinstance(k, ScalarNode)]
        elif isinstance(node, SequenceNode):
            labelled = [(v, f"{path}[{i}]") for i, v in enumerate(node.value)]
        else:
            labelled = []
        for child, child_path in labelled:
            if id(child) in open_:
                raise TextProblem(child_path, "an alias refers to a node that contains it")
            paths.setdefault(id(child), child_path)
            stack.append((child, depth + 1, False))
    written = len(sizes)
    expanded = sizes[id(root)]
    if expanded - written > max(MAX_ALIAS_NODES, 10 * written):
        raise TextProblem(
            "(document)",
            f"its aliases expand {written:,} nodes to {expanded:,}; a document's aliases may "
            f"add at most {max(MAX_ALIAS_NODES, 10 * written):,} (is it an alias bomb?)",
        )


def _children(node: Any) -> list[Any]:
    from yaml.nodes import MappingNode, SequenceNode

    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _label(loader: Any, key_node: Any) -> Any:
    from yaml.nodes import ScalarNode

    if key_node.tag == _MERGE:
        return "<<"
    return loader.construct_object(key_node) if isinstance(key_node, ScalarNode) else "?"


# -- YAML: writing --------------------------------------------------------------------------


def _yaml_dumper() -> Any:
    """``yaml.SafeDumper`` that double-quotes the strings a plain, single-quoted or block
    scalar would not give back unchanged."""
    global _DUMPER
    if _DUMPER is None:
        import yaml

        # The pure-Python dumper, as yaml.safe_dump uses: the same text with or without libyaml.
        class Dumper(yaml.SafeDumper):
            pass

        def represent_str(dumper: Any, value: str) -> Any:
            # A character that is not printable (but a newline) may be one YAML reads as a
            # line break (\x85, \u2028...) or strips (\r, a tab at the end): escape it.
            style = None if value.replace("\n", "").isprintable() else '"'
            if style and any("\ud800" <= c <= "\udfff" for c in value):
                raise UnicodeEncodeError("utf-8", value, 0, 1, "surrogates not allowed")
            return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

        Dumper.add_representer(str, represent_str)
        _DUMPER = Dumper
    return _DUMPER
