"""Reading params files: rules 1 and 2 of `trickbench.params` (a bounded YAML reader, plain data only).

1. reading: a regular file of at most MAX_PARAMS_BYTES, UTF-8 YAML nested at most MAX_DEPTH levels, at
   most MAX_ALIASES aliases expanding to at most MAX_EXPANDED_NODES nodes (a "billion laughs" file fails
   before it is built), no key twice in one mapping;
2. plain data: strings, finite numbers, booleans, null, lists and mappings with string keys only
   (.nan/.inf, dates, binary are refused wherever they are, lists included).

Each refusal is one ParamsError naming the file (or the key) and what was expected.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from trickbench.errors import ParamsError
from trickbench.io import read_text_bounded

MAX_PARAMS_BYTES = 1_000_000  # the default params.yaml is 4 kB; the largest config about 10 kB
MAX_DEPTH = 32  # nesting levels (the schema needs 5)
MAX_ALIASES = 100
MAX_EXPANDED_NODES = 100_000  # nodes after expanding every alias (the default params.yaml: about 300)


class _Refused(Exception):
    """A YAML file refused while composing; the message lacks only the file name."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts aliases and depth while composing and refuses a key given twice."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.aliases = 0
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                line = self.peek_event().start_mark.line + 1
                raise _Refused(f"more than {MAX_ALIASES} YAML aliases (alias {MAX_ALIASES + 1} on line {line}); "
                               "write the values out")
            return super().compose_node(parent, index)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep (line {line})")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}  # SafeConstructor calls this with mapping nodes only (maps, !!set)
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _Refused(f"line {line}: key {key!r} given twice in one mapping (first on line "
                               f"{seen[key]}); a second block would silently replace the first")
            seen[key] = line
        return super().construct_mapping(node, deep)


def _expanded_size(root: Any) -> int:
    """Nodes of the document with every alias expanded, counted without expanding (memoised per node);
    refuses a document that refers to itself or grows past MAX_EXPANDED_NODES."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Any) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in active:
            raise _Refused(f"line {node.start_mark.line + 1}: an alias refers to the node that contains it")
        active.add(id(node))
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(key) + size(value) for key, value in node.value)
        active.discard(id(node))
        if total > MAX_EXPANDED_NODES:
            raise _Refused(f"expands to more than {MAX_EXPANDED_NODES:,} values (YAML aliases, line "
                           f"{node.start_mark.line + 1}); write the values out")
        sizes[id(node)] = total
        return total

    return size(root)


def parse_params_text(text: str, source: str) -> Any:
    """YAML text -> Python data under the reading rules (1.); ParamsError names `source` and the line."""
    loader = _BoundedLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _expanded_size(root)
        return loader.construct_document(root)
    except _Refused as refused:
        raise ParamsError(f"{source}: {refused}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ParamsError(f"{source}: not valid YAML{where}: {problem}") from None
    finally:
        loader.dispose()


def read_params_file(path: str | Path) -> dict[str, Any]:
    """The file's mapping as written (no defaults, not validated), read under the reading rules."""
    path = Path(path)
    text = read_text_bounded(path, MAX_PARAMS_BYTES, "params file", ParamsError)
    params = parse_params_text(text, str(path))
    if params is None:
        raise ParamsError(f"{path}: the file is empty; expected the keys data, train, studies")
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level, got {type_name(params)}")
    return params


def type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null", bytes: "binary data"}.get(type(value), f"a {type(value).__name__}")


def check_plain_data(node: Any, location: str = "") -> None:
    """Only what YAML and JSON share: finite numbers (NaN fails every comparison, so no minimum catches
    it; inf passes every exclusiveMinimum), strings, booleans, null, lists, mappings with string keys."""
    where = location or "<top level>"
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                raise ParamsError(f"{where}: key {key!r} is {type_name(key)}; expected a string key")
            check_plain_data(value, f"{location}.{key}" if location else key)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            check_plain_data(value, f"{location}.{index}")
    elif isinstance(node, float):
        if not math.isfinite(node):
            raise ParamsError(f"{where}: {node!r} is not a finite number; expected a finite number (no .nan, .inf)")
    elif not isinstance(node, (str, int, bool)) and node is not None:  # int covers bool
        raise ParamsError(f"{where}: {node!r} is {type_name(node)} (a YAML tag); expected a string, number, "
                          "boolean, null, list or mapping")
