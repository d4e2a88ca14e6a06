"""Studies -> grid points with stable, readable identifiers.

A study is a base configuration (params `train`, then the study's `base`) plus axes. `axes` is one
mapping key -> values (their cartesian product) or a list of such mappings (the union of their
products), so a study need not be the product of everything. A point's id lists the keys its block
varies, in the order written: `activation-relu__initializer-he_normal__seed-0`.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from trickbench.errors import GridError
from trickbench.io import digest_json

ID_SAFE = re.compile(r"^[A-Za-z0-9_.+=-]+$")


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


def expand_study(name: str, study: dict[str, Any], train: dict[str, Any]) -> list[GridPoint]:
    blocks = study["axes"] if isinstance(study["axes"], list) else [study["axes"]]
    base = {**train, **study.get("base", {})}
    points: dict[str, GridPoint] = {}
    for block_index, block in enumerate(blocks):
        keys = list(block)
        for values in itertools.product(*(block[key] for key in keys)):
            axes = dict(zip(keys, values))
            identifier = point_id(axes)
            if not ID_SAFE.match(identifier):
                raise GridError(
                    f"studies.{name}.axes: grid point id {identifier!r} has characters other than "
                    "letters, digits and _ . + = -; use plain names and numbers as axis values"
                )
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
