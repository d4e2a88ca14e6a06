"""params.yaml: load, validate against the one schema, fill defaults.

Every entry point (Snakefile, each CLI subcommand that DVC and Snakemake call) goes through
`load_params`, so a bad file fails the same way everywhere: one `ParamsError` naming the key.
"""
from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "params.schema.yaml"


WHITENING = ("pca_whiten", "zca_whiten")


class ParamsError(ValueError):
    """A params file that cannot be used; the message names the file, the key and what was expected."""


@lru_cache(maxsize=1)
def raw_schema() -> dict[str, Any]:
    with open(SCHEMA_PATH) as handle:
        return yaml.safe_load(handle)


def schema_with_registries() -> dict[str, Any]:
    """The schema with every `x-registry: kind` string constrained to the registered names."""
    from trickbench.catalog import registry_names

    names = registry_names()
    schema = copy.deepcopy(raw_schema())

    def inject(node: Any) -> None:
        if isinstance(node, dict):
            kind = node.get("x-registry")
            if kind is not None:
                node["enum"] = names[kind]
            for value in node.values():
                inject(value)
        elif isinstance(node, list):
            for value in node:
                inject(value)

    inject(schema)
    return schema


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].removeprefix("#/$defs/")
        node = root["$defs"][name]
    return node


def fill_defaults(instance: Any, schema: dict[str, Any], root: dict[str, Any]) -> None:
    """Insert the schema's `default` for every missing property, recursively (objects only)."""
    schema = _resolve(schema, root)
    if not isinstance(instance, dict) or schema.get("type") != "object":
        return
    for key, sub in schema.get("properties", {}).items():
        sub_resolved = _resolve(sub, root)
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        elif key not in instance and "default" in sub_resolved:
            instance[key] = copy.deepcopy(sub_resolved["default"])
        if key in instance:
            fill_defaults(instance[key], sub_resolved, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                fill_defaults(value, extra, root)


def _innermost(error: Any) -> Any:
    """oneOf/anyOf hide the useful message in their context: descend into the branch that fits the
    instance's type (a branch that fails only on type is the wrong branch, not the problem)."""
    import jsonschema

    while error.context:
        candidates = [e for e in error.context if e.validator != "type"] or list(error.context)
        error = jsonschema.exceptions.best_match(candidates)
    return error


def _format_error(error: Any, source: str) -> str:
    import jsonschema

    error = _innermost(error)
    location = ".".join(str(part) for part in error.absolute_path) or "<top level>"
    if error.validator == "enum":
        expected = "one of: " + ", ".join(map(str, error.validator_value))
        return f"{source}: {location}: {error.instance!r} is not valid; expected {expected}"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        return f"{source}: {location}: {error.message}; allowed keys: {', '.join(allowed)}"
    if error.validator == "propertyNames":
        return f"{source}: {location}: {error.message}"
    return f"{source}: {location}: {error.message}"


def validate(params: dict[str, Any], source: str = "params") -> dict[str, Any]:
    """Validate and return a copy with defaults filled; raise ParamsError on the first problem."""
    import jsonschema

    schema = schema_with_registries()
    if not isinstance(params, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level, got {type(params).__name__}")
    filled = copy.deepcopy(params)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise ParamsError(_format_error(errors[0], source))
    fill_defaults(filled, schema, schema)

    from trickbench.grid import expand_grid, GridError

    try:
        points = expand_grid(filled)
    except GridError as error:
        raise ParamsError(f"{source}: {error}") from None
    train_schema = {**schema["$defs"]["train_config"], "$defs": schema["$defs"]}
    point_validator = jsonschema.Draft202012Validator(train_schema)
    for point in points:
        point_errors = list(point_validator.iter_errors(point.config))
        if point_errors:
            error = _innermost(point_errors[0])
            key = str(error.absolute_path[0]) if error.absolute_path else ""
            where = point.origin_of(key)
            message = _format_error(error, source).split(": ", 2)[-1]
            raise ParamsError(f"{source}: {where}: {message} (grid point {point.study}/{point.point_id})")
        if point.config["preprocessing"] in WHITENING and not filled["stats"]["whitening"]:
            raise ParamsError(f"{source}: {point.origin_of('preprocessing')}: {point.config['preprocessing']} "
                              "needs the whitening matrices, but stats.whitening is false")
    return filled


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        with open(path) as handle:
            params = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ParamsError(f"{path}: not valid YAML{where}: {problem}") from None
    if params is None:
        raise ParamsError(f"{path}: the file is empty; expected the keys data, train, studies")
    return validate(params, source=str(path))
