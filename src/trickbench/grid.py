"""Studies -> grid points with stable, readable identifiers.

A study is a base configuration (params `train`, then the study's `base`) plus axes. `axes` is one
mapping key -> values (their cartesian product) or a list of such mappings (the union of their
products), so a study need not be the product of everything. A point's id lists the keys its block
varies, in the order written: `activation-relu__initializer-he_normal__seed-0`.

Every study is checked from its axes alone before anything is expanded (`check_study`): at most
MAX_POINTS_PER_STUDY points per study and MAX_POINTS_TOTAL in all (the product of the axes' lengths, per
block), no value twice in one axis (1 and 1.0 are one value), ids of safe characters and at most
MAX_POINT_ID_BYTES bytes (a point id is a folder name: NAME_MAX is 255 bytes, and `<id>.log` must fit).
"""
from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from trickbench.errors import GridError
from trickbench.io import digest_json

ID_SAFE = re.compile(r"[A-Za-z0-9_.+=-]+")  # fullmatch: `$` would let a trailing newline through

# the largest preset has 75 points (seed-initializers); 10,000 already means days of training on a GPU, and
# validating a point takes about 0.1 ms, so the caps keep `trickbench validate` under a few seconds
MAX_POINTS_PER_STUDY = 10_000
MAX_POINTS_TOTAL = 50_000
MAX_POINT_ID_BYTES = 200  # a folder name (NAME_MAX 255) with room for `<id>.log` and temporary names


@dataclass(frozen=True)
class GridPoint:
    study: str
    point_id: str
    axes: dict[str, Any]
    config: dict[str, Any]
    base_keys: frozenset[str] = field(default_factory=frozenset)

    @property
    def key(self) -> str:
        return f"{self.study}/{self.point_id}"

    @property
    def config_digest(self) -> str:
        return digest_json(self.config)

    def origin_of(self, key: str) -> str:
        """The params key a value of this point came from, for error messages."""
        if key in self.axes:
            return f"studies.{self.study}.axes.{key}"
        if key in self.base_keys:
            return f"studies.{self.study}.base.{key}"
        return f"train.{key}" if key else f"studies.{self.study}"


def format_value(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(format_value(item) for item in value) if value else "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def point_id(axes: dict[str, Any]) -> str:
    return "__".join(f"{key}-{format_value(value)}" for key, value in axes.items())


def _blocks(study: dict[str, Any]) -> list[dict[str, Any]]:
    return study["axes"] if isinstance(study["axes"], list) else [study["axes"]]


def _same_value_key(value: Any) -> str:
    """Equal values give equal keys: 1 and 1.0 (one point: the same learning rate), but true is not 1."""
    def canonical(item: Any) -> Any:
        if isinstance(item, bool) or item is None or isinstance(item, str):
            return item
        if isinstance(item, (int, float)):
            return ["number", float(item) if math.isfinite(item) else str(item)]
        if isinstance(item, list):
            return [canonical(inner) for inner in item]
        if isinstance(item, dict):
            return {str(key): canonical(inner) for key, inner in item.items()}
        return repr(item)

    return json.dumps(canonical(value), sort_keys=True)


def _check_axis(name: str, key: str, values: list[Any]) -> int:
    """The axis's values: no two equal, each a safe piece of a point id; the longest piece in bytes."""
    seen: dict[str, Any] = {}
    longest = 0
    for value in values:
        same = _same_value_key(value)
        if same in seen:
            raise GridError(f"studies.{name}.axes.{key}: {value!r} equals {seen[same]!r}, given earlier in the "
                            "same axis; expected every value once (each would be the same grid point)")
        seen[same] = value
        piece = format_value(value)
        if not ID_SAFE.fullmatch(piece):
            raise GridError(f"studies.{name}.axes.{key}: {value!r} makes the grid point id piece {piece!r}, with "
                            "characters other than letters, digits and _ . + = -; use plain names and numbers "
                            "as axis values")
        longest = max(longest, len(piece.encode()))
    return longest


def check_study(name: str, study: dict[str, Any]) -> int:
    """The study's number of grid points, from its axes' sizes alone (nothing is expanded); GridError
    naming the key for a duplicate value, an unsafe or too long id, or more than MAX_POINTS_PER_STUDY."""
    total = 0
    for block in _blocks(study):
        id_bytes = sum(len(key) + 1 + _check_axis(name, key, values) for key, values in block.items())
        id_bytes += 2 * (len(block) - 1)  # the `__` between pieces
        if id_bytes > MAX_POINT_ID_BYTES:
            raise GridError(f"studies.{name}.axes: grid point ids up to {id_bytes} bytes long; expected at most "
                            f"{MAX_POINT_ID_BYTES} (a point id is a folder name): use shorter axis values")
        total += math.prod(len(values) for values in block.values())
    if total > MAX_POINTS_PER_STUDY:
        raise GridError(f"studies.{name}.axes: {total:,} grid points (the product of the axes' lengths); expected "
                        f"at most {MAX_POINTS_PER_STUDY:,} per study: split the study or shorten its axes")
    return total


def check_grid(params: dict[str, Any]) -> int:
    """Every study's size (check_study) and their sum (at most MAX_POINTS_TOTAL), before any expansion."""
    total = sum(check_study(name, study) for name, study in params["studies"].items())
    if total > MAX_POINTS_TOTAL:
        raise GridError(f"studies: {total:,} grid points in all; expected at most {MAX_POINTS_TOTAL:,}: "
                        "run the studies from separate params files")
    return total


def expand_study(name: str, study: dict[str, Any], train: dict[str, Any]) -> list[GridPoint]:
    check_study(name, study)
    base = {**train, **study.get("base", {})}
    points: dict[str, GridPoint] = {}
    for block_index, block in enumerate(_blocks(study)):
        keys = list(block)
        for values in itertools.product(*(block[key] for key in keys)):
            axes = dict(zip(keys, values))
            identifier = point_id(axes)
            if identifier in points:
                raise GridError(
                    f"studies.{name}.axes: duplicate grid point {identifier!r} "
                    f"(block {block_index} repeats a point of an earlier block or a value of its own)"
                )
            points[identifier] = GridPoint(
                study=name,
                point_id=identifier,
                axes=axes,
                config={**base, **axes},
                base_keys=frozenset(study.get("base", {})),
            )
    return list(points.values())


def expand_grid(params: dict[str, Any]) -> list[GridPoint]:
    check_grid(params)
    points: list[GridPoint] = []
    for name, study in params["studies"].items():
        points.extend(expand_study(name, study, params["train"]))
    return points


def study_points(params: dict[str, Any], study: str) -> list[GridPoint]:
    if study not in params["studies"]:
        raise GridError(f"unknown study {study!r}; studies in params: {', '.join(params['studies'])}")
    return expand_study(study, params["studies"][study], params["train"])


def find_point(params: dict[str, Any], study: str, identifier: str) -> GridPoint:
    for point in study_points(params, study):
        if point.point_id == identifier:
            return point
    raise GridError(f"study {study!r} has no grid point {identifier!r}; run `trickbench grid` to list them")


def axis_keys(points: list[GridPoint]) -> list[str]:
    """All axis keys of a study's points, in first-seen order."""
    keys: dict[str, None] = {}
    for point in points:
        keys.update(dict.fromkeys(point.axes))
    return list(keys)
