"""params.yaml: read (bounded), merge command-line overrides, validate against the one schema, fill defaults.

Every entry point (Snakefile, each CLI subcommand that DVC and Snakemake call) goes through
`load_params`, so a bad file fails the same way everywhere: one `ParamsError` naming the file, the key,
the value and what was expected. The rules, in the order they are checked:

1. reading: a regular file of at most MAX_PARAMS_BYTES, UTF-8 YAML nested at most MAX_DEPTH levels, at
   most MAX_ALIASES aliases expanding to at most MAX_EXPANDED_NODES nodes (a "billion laughs" file fails
   before it is built), no key twice in one mapping;
2. plain data: strings, finite numbers, booleans, null, lists and mappings with string keys only
   (.nan/.inf, dates, binary are refused wherever they are, lists included);
3. the schema (src/trickbench/schemas/params.schema.yaml), where an integer is an int (16.0 is not);
4. the rules across keys (`check_cross_fields`) and the output folders (`check_output_dirs`).
"""
from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import yaml

from trickbench.errors import DataError, GridError, ParamsError
from trickbench.folders import ALLOW_OUTSIDE_ENV, check_output_dirs  # noqa: F401 (ALLOW_OUTSIDE_ENV: re-exported)
from trickbench.names import check_names
from trickbench.params_file import (  # noqa: F401 (the limits and parse_params_text: re-exported)
    MAX_ALIASES, MAX_DEPTH, MAX_EXPANDED_NODES, MAX_PARAMS_BYTES, check_plain_data, parse_params_text, read_params_file,
    type_name,
)

# inside the package, so a wheel ships it; workflow/schemas/params.schema.yaml is a symlink to it
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "params.schema.yaml"


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
            if kind is not None:  # a nullable name ([string, "null"]) may also be null
                node["enum"] = names[kind] + ([None] if "null" in node.get("type", ()) else [])
            for value in node.values():
                inject(value)
        elif isinstance(node, list):
            for value in node:
                inject(value)

    inject(schema)
    return schema


# ---------------------------------------------------------------------------------------------------
# overrides (snakemake --config)
# ---------------------------------------------------------------------------------------------------
def merge_overrides(params: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge as Snakemake merges `--config` into its config: mappings are merged key by key, any
    other value (lists included) replaces the one in the file."""
    merged = copy.deepcopy(dict(params))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = merge_overrides(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def typed_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`snakemake --config train='{"epochs": 3}'` parses the value with YAML's BaseLoader, so every nested
    scalar arrives as a string ("3"): read each string as params.yaml would (3, 0.1, true, null, .nan),
    keeping it a string when YAML reads it as anything but a number, boolean or null."""
    def typed(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {key: typed(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [typed(item) for item in value]
        if isinstance(value, str):
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                return value
            return parsed if parsed is None or isinstance(parsed, (int, float, bool)) else value
        return value

    return typed(overrides)


def overrides_source(source: str, overrides: Mapping[str, Any] | None) -> str:
    return f"{source} with --config {', '.join(overrides)}" if overrides else source


# ---------------------------------------------------------------------------------------------------
# 3. schema (1. reading and 2. plain data: trickbench.params_file)
# ---------------------------------------------------------------------------------------------------
def _raise(error: Exception) -> None:
    raise error


@lru_cache(maxsize=1)
def _validator_class() -> Any:
    """Draft 2020-12, except that an integer is an int: jsonschema counts 16.0 as an integer, and
    `width: 16.0` would then crash a layer constructor far from the params file."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool))
    return jsonschema.validators.extend(base, type_checker=checker)


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
    error = _innermost(error)
    location = ".".join(str(part) for part in error.absolute_path) or "<top level>"
    if error.validator == "enum":
        expected = "one of: " + ", ".join(map(str, error.validator_value))
        return f"{source}: {location}: {error.instance!r} is not valid; expected {expected}"
    if error.validator == "type":
        expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return (f"{source}: {location}: {error.instance!r} is {type_name(error.instance)}; expected "
                + " or ".join(type_name({"integer": 0, "number": 0.0, "string": "", "boolean": True,
                                          "null": None, "array": [], "object": {}}[kind]) for kind in expected))
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        return f"{source}: {location}: {error.message}; allowed keys: {', '.join(allowed)}"
    return f"{source}: {location}: {error.message}"


# ---------------------------------------------------------------------------------------------------
# 4. across keys (the output folders: trickbench.folders)
# ---------------------------------------------------------------------------------------------------
def _point_error(point: Any, key: str, message: str, source: str) -> ParamsError:
    return ParamsError(f"{source}: {point.origin_of(key)}: {message} (grid point {point.study}/{point.point_id})")


def _check_cycles(point: Any, source: str) -> None:
    """A restarting schedule runs whole cycles of train.step_size epochs, one snapshot at each cycle's end."""
    epochs, length, snapshots = point.config["epochs"], point.config["step_size"], point.config["snapshots"]
    schedule = point.config["schedule"]
    if epochs % length:
        raise _point_error(point, "step_size", f"{length} epochs per cycle of schedule {schedule} do not divide "
                           f"train.epochs = {epochs}; expected a divisor of {epochs}", source)
    if snapshots > epochs // length:
        raise _point_error(point, "snapshots", f"{snapshots} snapshots, but schedule {schedule} has "
                           f"{epochs // length} cycles of {length} epochs; expected at most {epochs // length}", source)


def _check_plan(params: dict[str, Any], source: str) -> None:
    """plan.seeds names studies of this preset (it may ask for more seeds than the axis has yet)."""
    seeds = (params.get("plan") or {}).get("seeds")
    if seeds is None:
        return
    planned = seeds if isinstance(seeds, dict) else dict.fromkeys(params["studies"], seeds)
    for study in planned:
        if study not in params["studies"]:
            raise ParamsError(f"{source}: plan.seeds.{study}: no such study; expected one of "
                              f"{', '.join(params['studies'])}")


def check_cross_fields(params: dict[str, Any], points: list[Any], source: str) -> None:
    """Rules no single key can state: each error names the keys, their values and what was expected."""
    _check_plan(params, source)
    data = params["data"]
    total = data["val_fraction"] + data["test_fraction"]
    if total >= 1:
        raise ParamsError(f"{source}: data.val_fraction + data.test_fraction = {data['val_fraction']:g} + "
                          f"{data['test_fraction']:g} = {total:g}; expected less than 1 (no training data left)")

    # the source's own declaration of its options (OPTIONS) and of the image size they give; importing
    # the sources (numpy, Pillow: about 0.5 s) only when there is something to check
    side = None
    if data["options"] or any(point.config["input_size"] is not None for point in points):
        from trickbench.catalog import registry
        from trickbench.data.sources import Options

        source_class = registry("source").get(data["source"])
        try:
            options = Options(data["source"], data["options"], source_class.OPTIONS)
            side = source_class().image_side(options)
        except DataError as error:
            raise ParamsError(f"{source}: {error}") from None

    from trickbench.catalog import registry_extras

    extras = registry_extras()
    preprocessings, schedules = extras["preprocessing"], extras["schedule"]
    for point in points:
        config = point.config
        if schedules[config["schedule"]]["restarts"]:
            _check_cycles(point, source)
        if preprocessings[config["preprocessing"]]["needs_whitening"] and not params["stats"]["whitening"]:
            raise _point_error(point, "preprocessing", f"{config['preprocessing']} needs the whitening matrices, "
                               "but stats.whitening is false", source)
        if side is not None and config["input_size"] is not None and config["input_size"] > side:
            raise _point_error(point, "input_size", f"{config['input_size']} is larger than the {side}x{side} "
                               f"images of data.source {data['source']}; expected at most {side}", source)

    baseline = params["report"]["paper_table"]["baseline"]
    for study in params["studies"]:
        study_points = [p for p in points if p.study == study]
        if not any("activation" in p.axes for p in study_points):
            continue
        activations = list(dict.fromkeys(p.config["activation"] for p in study_points))
        if baseline not in activations:
            raise ParamsError(f"{source}: report.paper_table.baseline: {baseline!r} is not an activation of study "
                              f"{study!r}; expected one of: {', '.join(activations)}")


def _check_tracking_uri(tracking: dict[str, Any], source: str) -> None:
    """The scheme of tracking.uri (the store itself is checked by each stage: trickbench.tracking.check_store)."""
    from trickbench.tracking import uri_scheme_problem

    uri = tracking["uri"]
    if tracking["enabled"] and uri is not None and (problem := uri_scheme_problem(uri)) is not None:
        raise ParamsError(f"{source}: tracking.uri: {uri!r}: {problem}")


# ---------------------------------------------------------------------------------------------------
def validate(params: Any, source: str = "params", project: Path | None = None) -> dict[str, Any]:
    """Validate and return a copy with defaults filled; raise ParamsError on the first problem.
    `project`: the directory relative paths.* resolve against (default: the working directory).
    Anything but a mapping fails the schema's top-level `type: object`."""
    try:
        check_plain_data(params)
    except ParamsError as error:
        raise ParamsError(f"{source}: {error}") from None
    check_names(params, "", lambda where, message: _raise(ParamsError(f"{source}: {where}: {message}")))
    schema = schema_with_registries()
    filled = copy.deepcopy(params)
    validator = _validator_class()(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise ParamsError(_format_error(errors[0], source))
    fill_defaults(filled, schema, schema)

    from trickbench.grid import expand_grid

    try:
        points = expand_grid(filled)  # checks every study's size and values before expanding
    except GridError as error:
        raise ParamsError(f"{source}: {error}") from None
    train_schema = {**schema["$defs"]["train_config"], "$defs": schema["$defs"]}
    point_validator = _validator_class()(train_schema)
    checked: set[tuple[str, str | None, str]] = set()
    for point in points:
        # the train_config keys are independent of each other: a point whose every (axis, value) was part of
        # a valid point of its study is valid too, so a 10,000-point study validates about as many points as
        # it has axis values (a jsonschema pass over one config takes about 1.5 ms)
        pairs = {(point.study, key, repr(value)) for key, value in point.axes.items()} | {(point.study, None, "")}
        if pairs <= checked:
            continue
        checked |= pairs
        point_errors = list(point_validator.iter_errors(point.config))
        if point_errors:
            error = _innermost(point_errors[0])  # always inside the config: its keys are checked already
            key = str(error.absolute_path[0])
            message = _format_error(error, source).split(": ", 2)[-1]
            raise _point_error(point, key, message, source)
    check_cross_fields(filled, points, source)
    check_output_dirs(filled, source, project)
    _check_tracking_uri(filled["tracking"], source)
    return filled


def load_params(path: str | Path = "params.yaml", overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The params file, with `overrides` (snakemake --config) deep-merged over it, validated."""
    params = read_params_file(path)
    if overrides:
        params = merge_overrides(params, overrides)
    return validate(params, source=overrides_source(str(path), overrides))
