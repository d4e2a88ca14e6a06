"""The `trickbench` command: a thin shell that validates params and calls one stage.

Heavy imports (torch, mlflow, pandas) happen inside the subcommands, so `trickbench grid` and a
failing validation stay fast.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

EXIT_BAD_INPUT = 2


def _params(args: argparse.Namespace) -> dict[str, Any]:
    from trickbench.params import load_params

    return load_params(args.params)


def _layout(params: dict[str, Any]) -> Any:
    from trickbench.paths import Layout

    return Layout.from_params(params)


def _set_threads(params: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(params["resources"]["threads"])


def cmd_validate(args: argparse.Namespace) -> None:
    params = _params(args)
    from trickbench.grid import expand_grid

    print(f"{args.params}: valid; {len(params['studies'])} studies, {len(expand_grid(params))} grid points")


def cmd_list(args: argparse.Namespace) -> None:
    from trickbench.catalog import KIND_ALIASES, REGISTRY_LOCATIONS, registry

    kind = KIND_ALIASES.get(args.kind, args.kind)
    if kind not in REGISTRY_LOCATIONS:
        valid = sorted(set(REGISTRY_LOCATIONS) | set(KIND_ALIASES))
        raise LookupError(f"unknown component kind {args.kind!r}; valid kinds: {', '.join(valid)}")
    entries = list(registry(kind))
    width = max(len(entry.name) for entry in entries)
    for entry in entries:
        print(f"{entry.name:<{width}}  {entry.description}")


def cmd_grid(args: argparse.Namespace) -> None:
    from trickbench.grid import expand_grid

    points = [p for p in expand_grid(_params(args)) if args.study in (None, p.study)]
    if args.format == "json":
        print(json.dumps([{"study": p.study, "point_id": p.point_id, "axes": p.axes, "config": p.config}
                          for p in points], indent=2))
    else:
        for point in points:
            print(point.key)


def cmd_download(args: argparse.Namespace) -> None:
    from trickbench.stages.data import download

    params = _params(args)
    record = download(params, _layout(params))
    print(f"download: {params['data']['source']}: {len(record.get('files', []))} file(s) verified")


def cmd_prepare(args: argparse.Namespace) -> None:
    from trickbench.stages.data import prepare

    params = _params(args)
    manifest = prepare(params, _layout(params), progress=not args.no_progress)
    print(f"prepare: {manifest['sizes']} images of shape {manifest['image_shape']}, digest {manifest['digest'][:12]}")


def cmd_stats(args: argparse.Namespace) -> None:
    from trickbench.stages.data import stats

    params = _params(args)
    summary = stats(params, _layout(params))
    print(f"stats: channel mean {[round(v, 4) for v in summary['channel_mean']]}")


def cmd_tracking(args: argparse.Namespace) -> None:
    from trickbench.stages.data import init_tracking

    params = _params(args)
    record = init_tracking(params, _layout(params))
    print(f"tracking: {record.get('uri', 'disabled')}")


def cmd_train(args: argparse.Namespace) -> None:
    from trickbench.stages.train import train_point

    params = _params(args)
    _set_threads(params)
    metrics = train_point(params, _layout(params), args.study, args.point)
    print(f"train {args.study}/{args.point}: {metrics['status']}, test error {metrics['test_error']:.4f}")


def cmd_train_study(args: argparse.Namespace) -> None:
    from trickbench.stages.train import train_study

    params = _params(args)
    _set_threads(params)
    results = train_study(params, _layout(params), args.study)
    print(f"train {args.study}: {len(results)} grid points complete")


def cmd_ensemble(args: argparse.Namespace) -> None:
    from trickbench.stages.ensemble import ensemble

    params = _params(args)
    result = ensemble(params, _layout(params), args.study)
    print(f"ensemble {args.study}: {len(result['rows'])} rows")


def cmd_report(args: argparse.Namespace) -> None:
    from trickbench.stages.report import report

    params = _params(args)
    written = report(params, _layout(params))
    print(f"report: {len(written)} files under {params['paths']['results']}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trickbench", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", type=Path, help="params file (default: params.yaml)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], None], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--params", default=argparse.SUPPRESS, type=Path, help="params file (default: params.yaml)")
        sub.set_defaults(handler=handler)
        return sub

    add("validate", cmd_validate, "validate the params file against the schema and the registries")
    add("list", cmd_list, "list the registered components of a kind with their definitions").add_argument(
        "kind", help="activations, initializers, models, regularizers, augmentations, preprocessings, optimizers, schedules, sources")
    grid = add("grid", cmd_grid, "print the expanded grid points (study/point_id)")
    grid.add_argument("--study")
    grid.add_argument("--format", choices=["ids", "json"], default="ids")
    add("download", cmd_download, "locate or fetch the raw data and verify its checksums")
    add("prepare", cmd_prepare, "decode the raw data into uint8 splits with a content digest").add_argument(
        "--no-progress", action="store_true")
    add("stats", cmd_stats, "channel statistics, colour PCA and whitening matrices of the training split")
    add("tracking", cmd_tracking, "create the MLflow store and experiments before jobs fan out")
    train = add("train", cmd_train, "train one grid point")
    train.add_argument("--study", required=True)
    train.add_argument("--point", required=True)
    add("train-study", cmd_train_study, "train every grid point of a study (keeps finished ones)").add_argument(
        "--study", required=True)
    add("ensemble", cmd_ensemble, "ensembles of a study chosen by a validation metric").add_argument(
        "--study", required=True)
    add("report", cmd_report, "tables and figures of every study under results/")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from trickbench.grid import GridError
    from trickbench.params import ParamsError
    from trickbench.registry import UnknownComponentError

    bad_input: tuple[type[BaseException], ...] = (ParamsError, GridError, UnknownComponentError, LookupError,
                                                 FileNotFoundError, NotADirectoryError, IsADirectoryError)
    try:
        from trickbench.data.sources import DataError

        bad_input += (DataError,)
    except ImportError:
        pass
    try:
        args.handler(args)
    except bad_input as error:
        message = str(error) if not isinstance(error, OSError) or not error.filename else \
            f"{error.filename}: {error.strerror}"
        print(f"trickbench {args.command}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
