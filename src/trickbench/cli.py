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

    return load_params(args.params, overrides=args.overrides)


def _json_mapping(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON mapping, got {text!r}")
    return value


def _layout(params: dict[str, Any]) -> Any:
    from trickbench.paths import Layout

    return Layout.from_params(params)


def _set_threads(params: dict[str, Any]) -> None:
    """Process-wide settings of a training process: the allocator (before torch allocates), threads."""
    from trickbench.train.allocator import tune_allocator

    tune_allocator()
    import torch

    torch.set_num_threads(params["resources"]["threads"])


def cmd_validate(args: argparse.Namespace) -> None:
    params = _params(args)
    from trickbench.grid import check_grid

    print(f"{args.params}: valid; {len(params['studies'])} studies, {check_grid(params)} grid points")


def cmd_list(args: argparse.Namespace) -> None:
    from trickbench.catalog import KIND_ALIASES, REGISTRY_LOCATIONS, registry
    from trickbench.errors import UnknownComponentError

    kind = KIND_ALIASES.get(args.kind, args.kind)
    if kind not in REGISTRY_LOCATIONS:
        plurals = [alias for alias, target in KIND_ALIASES.items() if alias != target]
        raise UnknownComponentError("component kind", args.kind, plurals)
    entries = list(registry(kind))
    width = max(len(entry.name) for entry in entries)
    for entry in entries:
        description = " ".join(entry.description.split())  # one line per entry, whatever the source says
        print(f"{entry.name:<{width}}  {description}")


def cmd_grid(args: argparse.Namespace) -> None:
    from trickbench.grid import expand_grid, study_points

    params = _params(args)
    points = expand_grid(params) if args.study is None else study_points(params, args.study)  # unknown: error
    if args.format == "json":
        print(json.dumps([{"study": p.study, "point_id": p.point_id, "axes": p.axes, "config": p.config}
                          for p in points], indent=2))
    else:
        for point in points:
            print(point.key)


def cmd_download(args: argparse.Namespace) -> None:
    from trickbench.stages.data import download

    _exit_on_sigterm()  # a stopped download deletes its temporary file
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


def _exit_on_sigterm() -> None:
    """SLURM (scancel, time limit) and Snakemake stop jobs with SIGTERM: unwind like Ctrl-C, so the MLflow run
    is marked FAILED and no temporary file is left; the last checkpoint stays and the rerun resumes from it."""
    import signal

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def cmd_train(args: argparse.Namespace) -> None:
    from trickbench.grid import find_point
    from trickbench.slots import slot_held
    from trickbench.stages.train import train_point

    _exit_on_sigterm()
    params = _params(args)
    point = find_point(params, args.study, args.point)  # an unknown point fails before waiting for a GPU
    # a GPU slot (and CUDA_VISIBLE_DEVICES) before torch initialises CUDA; none without GPUs
    with slot_held(params, point.config["device"]):
        _set_threads(params)
        metrics = train_point(params, _layout(params), args.study, args.point)
    print(f"train {args.study}/{args.point}: {metrics['status']}, test error {metrics['test_error']:.4f}")


def cmd_status(args: argparse.Namespace) -> None:
    from trickbench.stages.status import status, status_text

    params = _params(args)
    print(status_text(status(params, _layout(params))))


def cmd_slots(args: argparse.Namespace) -> None:
    from trickbench.slots import slot_dir, status, visible_devices

    params = _params(args)
    devices = visible_devices()
    if not devices:
        print("slots: no GPU (nvidia-smi, $CUDA_VISIBLE_DEVICES, $TRICKBENCH_GPUS); train jobs take no slot")
        return
    per_gpu = params["resources"]["slots_per_gpu"]
    rows = status(devices, per_gpu)
    print(f"slots: {len(devices)} GPU(s) x {per_gpu} slot(s) in {slot_dir()}")
    for row in rows:
        print(f"GPU {row['device']} slot {row['slot'] + 1}: {'held by ' + str(row['holder']) if row['held'] else 'free'}")


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


def cmd_claims(args: argparse.Namespace) -> None:
    from trickbench.claims import VERDICTS, readme_parts, update_readme, write_claims

    if args.readme is not None:
        readme_parts(args.readme)  # a page without its markers: refused before anything is written
    # the page shows the figures: a docs page links inside docs/
    table, scales = write_claims(args.out, args.root, page_dir=args.readme.parent if args.readme else None)
    if args.readme is not None:
        update_readme(args.readme, table)
    if args.preset_reports:
        _refresh_preset_reports(args.root)
    for preset, part in table.groupby("preset", sort=False):
        counts = part["verdict"].value_counts()
        print(f"{preset} [{scales[preset]}]: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS if counts.get(v)))
    print(f"claims: {len(table)} claims -> {args.out / 'claims.csv'}, {args.out / 'claims.md'}, {args.out / 'claims.png'}, "
          f"{args.out / 'ladder.csv'}, {args.out / 'ladder.png'}")


def _refresh_preset_reports(root: Path) -> None:
    """Each preset's own claims files (results/<preset>/claims.*) from its committed results."""
    from trickbench.claims import registered
    from trickbench.params import load_params
    from trickbench.stages.report import refresh_verdicts

    configs = {c.preset: c.config_path for c in registered()}
    for preset, config in configs.items():
        params = load_params(root / config)
        written = refresh_verdicts(params, _layout(params))
        if written:
            print(f"{preset}: {len(written)} claims files under {params['paths']['results']}")


def cmd_plan(args: argparse.Namespace) -> None:
    from trickbench.claims.plan import apply_plan

    text, _ = apply_plan(args.preset, args.root, args.pilot, args.budget, args.write)
    print(text)


def cmd_diff(args: argparse.Namespace) -> None:
    from trickbench.versions.diff import diff, render

    print(render(diff(args.a, args.b, args.root, args.results), args.a, args.b, args.limit))


def cmd_lock(args: argparse.Namespace) -> None:
    from trickbench.versions.engines import lock

    print(lock(args.root))


def cmd_pull(args: argparse.Namespace) -> None:
    from trickbench.versions.engines import pull

    print(pull(args.root, args.remote))


def cmd_ui(args: argparse.Namespace) -> None:
    from trickbench.ui import ui

    ui(_params(args), args.port, lambda line: print(line, flush=True))


def _seed_budget(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of seeds from 3 to 1000, got {text!r}") from None
    if not 3 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"expected a whole number of seeds from 3 to 1000, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trickbench", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", type=Path, help="params file (default: params.yaml)")
    parser.add_argument("--overrides", type=_json_mapping, default=None, metavar="JSON",
                        help="a JSON mapping deep-merged over the params file before validation (the Snakefile "
                             "passes what `snakemake --config` gave)")
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
    add("status", cmd_status, "per study: grid points done, running (last epoch), failed, pending; time left")
    add("slots", cmd_slots, "show the GPU slots of this machine and which train job holds each")
    add("train-study", cmd_train_study, "train every grid point of a study (keeps finished ones)").add_argument(
        "--study", required=True)
    add("ensemble", cmd_ensemble, "ensembles of a study chosen by a validation metric").add_argument(
        "--study", required=True)
    add("report", cmd_report, "tables and figures of every study under results/")
    claims = add("claims", cmd_claims, "verdicts on every claim of the seeds and Xu et al. from the presets' committed "
                 "results (results/claims.md, .csv)")
    claims.add_argument("--root", type=Path, default=Path("."), help="project root holding configs/ and results/")
    claims.add_argument("--out", type=Path, default=Path("results"), help="folder of claims.md and claims.csv")
    claims.add_argument("--readme", type=Path, default=None,
                        help="also rewrite the claims table of this Markdown page, e.g. docs/findings.md "
                             "(between its claims:table markers)")
    claims.add_argument("--preset-reports", action="store_true",
                        help="also rewrite each preset's own results/<preset>/claims.{md,csv,html,png} from its "
                             "committed results (run from the project root)")
    plan = add("plan", cmd_plan, "seeds each claim of a preset needs for 80 %% power, from a pilot's paired spread; "
               "--write records them in configs/<preset>.yaml (plan.seeds)")
    plan.add_argument("preset", help="a preset with claims (configs/<preset>.yaml)")
    plan.add_argument("--root", type=Path, default=Path("."), help="project root holding configs/ and results/")
    plan.add_argument("--pilot", type=Path, default=None,
                      help="the pilot's results folder (default: the preset's own results, every seed run so far)")
    plan.add_argument("--budget", type=_seed_budget, default=20, help="most seeds per study the plan may ask for")
    plan.add_argument("--write", action="store_true", help="record the plan in the preset's config")
    changes = add("diff", cmd_diff, "which metrics changed between two results folders or two git commits of "
                  "results/, by how much, and whether params, data, code or machine changed")
    changes.add_argument("a", help="a results folder, or a git commit (its results/)")
    changes.add_argument("b", help="a results folder, or a git commit (its results/)")
    changes.add_argument("--root", type=Path, default=Path("."), help="the git repository of the commits")
    changes.add_argument("--results", default="results", help="the results folder inside the repository")
    changes.add_argument("--limit", type=int, default=20, help="changed numbers shown per file")
    add("lock", cmd_lock, "record the outputs of a Snakemake run in dvc.lock (dvc commit), so both engines leave "
        "the same lock").add_argument("--root", type=Path, default=Path("."), help="the DVC project")
    add("ui", cmd_ui, "the MLflow UI on the project's store (127.0.0.1), or the configured tracking server; prints "
        "the URL of every study's runs table").add_argument("--port", type=int, default=5000,
                                                            help="port of the local UI (default: 5000)")
    fetch = add("pull", cmd_pull, "on a fresh clone: dvc pull the artifacts, then bring Snakemake's records up to "
                "date (snakemake --touch), so neither engine has anything to do")
    fetch.add_argument("--root", type=Path, default=Path("."), help="the DVC project")
    fetch.add_argument("--remote", help="the DVC remote (default: the project's default remote)")
    return parser


# what a shell reports for a command killed by SIGPIPE (128 + 13), as `grid | head` expects of any Unix tool
EXIT_BROKEN_PIPE = 141


def main(argv: list[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # inside the try: a reader gone before the last buffered line is the same case
    except BrokenPipeError:
        # the reader (`head`, `less`) closed the pipe: stop quietly. stdout goes to /dev/null so the
        # interpreter's own flush at exit does not report the same broken pipe again (Python docs, signal)
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from trickbench.errors import BadInput

    try:
        args.handler(args)
    except BadInput as error:  # anything else is a bug: its traceback, exit 1
        print(f"trickbench {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
