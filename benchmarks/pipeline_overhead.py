"""What the engines and the CLI cost around the training itself (GitHub issue 7).

  * no-op `snakemake` and no-op `dvc repro` on a 100-grid-point project that has run once for real;
  * DAG construction (`snakemake -n`) of a 1,000-grid-point project;
  * a job's fixed cost: from `trickbench train` process start to its first completed training step, in
    parts (start-up: interpreter, imports, params and reading the prepared data; build: data to the
    device, model, initial statistics; first step: the MLflow run opened, compilation, cuDNN autotuning,
    the step itself), read from the job's progress record (`timeline`), with the MLflow run created on a
    worker thread (the default) and in the calling thread (TRICKBENCH_TRACKING_BACKGROUND=0);
  * `trickbench grid` / `validate`: wall time, and that neither imports torch nor mlflow.

Baselines, measured in the same run: `python -c pass`, `python -c "import torch"`, `snakemake --version`,
`dvc --version`. Each figure is the best of --repeats runs (the least disturbed by other processes).

The 100-point projects must have run once, for real, for the no-op runs to mean anything (DVC's lock
holds hashes of real outputs): both engines run the whole pipeline first with the smallest settings
(digits, small_cnn width 2, 1 epoch, tracking off); the time of that run is printed too. With 2 cores
this takes several minutes: Snakemake starts one process per grid point, DVC one per study.

    python benchmarks/pipeline_overhead.py            # 100 / 1,000 points (about 10 min on 2 cores)
    python benchmarks/pipeline_overhead.py --quick    # 4 / 20 points, 1 repeat (a test of the script)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _common import BIN, REPO, best_of, clean_env, dvc_bin, header, ratio_line, snakemake_bin, table, timed

ACTIVATIONS = ["relu", "leaky_relu_a100", "prelu", "rrelu"]
# trickbench train as shipped, and with one start-up measure switched off
STARTUP_VARIANTS = {
    "default": {},
    "MLflow in the calling thread": {"TRICKBENCH_TRACKING_BACKGROUND": "0"},
}
TARGETS = {"noop_snakemake": 3.0, "noop_dvc": 5.0, "dag": 10.0, "startup": 4.0}


def project_params(points: int, *, tracking: bool, epochs: int = 1, width: int = 2) -> dict:
    """The repository's params.yaml cut to the smallest run, with one study of `points` grid points."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update({"epochs": epochs, "width": width, "batch_size": 128, "snapshots": 1})
    params["tracking"]["enabled"] = tracking
    per_activation = -(-points // len(ACTIVATIONS))
    if points < len(ACTIVATIONS):
        axes = {"seed": list(range(points))}
    else:
        axes = {"activation": ACTIVATIONS, "seed": list(range(per_activation))}
    params["studies"] = {"grid": {"description": f"{points} grid points for the overhead benchmark", "axes": axes}}
    return params


def make_project(target: Path, params: dict) -> Path:
    """A temporary copy of the pipeline (Snakefile, workflow/, dvc.yaml) with its own params.yaml."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    shutil.copy(REPO / "Snakefile", target)
    shutil.copy(REPO / "dvc.yaml", target)
    shutil.copytree(REPO / "workflow", target / "workflow")
    (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return target


def env_for(workdir: Path, **extra: str) -> dict[str, str]:
    return clean_env(MLFLOW_TRACKING_URI=f"sqlite:///{workdir / 'mlflow.db'}", **extra)


def count_points(workdir: Path, env: dict[str, str]) -> int:
    out = subprocess.run([str(BIN / "trickbench"), "grid"], cwd=workdir, env=env, capture_output=True, text=True,
                         check=True).stdout
    return len(out.split())


def measure_baselines(repeats: int) -> dict[str, float]:
    env = clean_env()
    py = sys.executable
    return {
        "python -c pass": best_of(repeats, lambda: timed([py, "-c", "pass"], env)[0]),
        "import torch": best_of(repeats, lambda: timed([py, "-c", "import torch"], env)[0]),
        "import torch + torch._dynamo": best_of(repeats, lambda: timed([py, "-c", "import torch, torch._dynamo"], env)[0]),
        "import mlflow": best_of(repeats, lambda: timed([py, "-c", "import mlflow.tracking"], env)[0]),
        "snakemake --version": best_of(repeats, lambda: timed([snakemake_bin(), "--version"], env)[0]),
        "dvc --version": best_of(repeats, lambda: timed([dvc_bin(), "--version"], env)[0]),
    }


def cli_checks(repeats: int, workdir: Path) -> dict[str, float]:
    """`trickbench grid` / `validate`: wall time, and that torch and mlflow stay unimported."""
    env = env_for(workdir)
    results = {}
    for command in ("grid", "validate"):
        argv = [sys.executable, "-X", "importtime", "-m", "trickbench.cli", command]
        done = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, check=True)
        imported = set(re.findall(r"\|\s+(\S+)\s*$", done.stderr, flags=re.M))
        heavy = sorted(name for name in imported if name.split(".")[0] in ("torch", "mlflow", "pandas", "seaborn"))
        print(f"check trickbench {command}: imports torch/mlflow/pandas/seaborn: {', '.join(heavy) or 'none'}")
        results[f"trickbench {command}"] = best_of(
            repeats, lambda: timed([str(BIN / "trickbench"), command], env, workdir)[0])
    return results


def without_scontrol(env: dict[str, str], root: Path) -> dict[str, str] | None:
    """An environment whose `scontrol` fails at once, or None when there is no scontrol on PATH.

    snakemake-executor-plugin-slurm runs `scontrol show config` (timeout 10 s) whenever Snakemake loads
    its executor plugins (every run but --version). On a machine with SLURM's client installed and no
    controller answering (this workplace while nobody runs the test cluster) that costs ~9 s; on a
    workstation without SLURM or on a live cluster it costs nothing. The stub shows the second case.
    """
    if shutil.which("scontrol", path=env.get("PATH")) is None:
        return None
    stub = root / "no-scontrol"
    stub.mkdir(exist_ok=True)
    (stub / "scontrol").write_text("#!/bin/sh\nexit 1\n")
    (stub / "scontrol").chmod(0o755)
    return dict(env, PATH=f"{stub}{os.pathsep}{env['PATH']}")


def snakemake_variants(env: dict[str, str], root: Path) -> dict[str, dict[str, str]]:
    variants = {"": env}
    stubbed = without_scontrol(env, root)
    if stubbed is not None:
        variants = {" (SLURM plugin's scontrol stall)": env, "": stubbed}
    return variants


def engine_noops(points: int, repeats: int, root: Path, cores: int, reuse: bool) -> dict[str, float]:
    """reuse: the projects under `root` ran before (--keep DIR --reuse): only the no-op runs are timed."""
    results: dict[str, float] = {}
    # Snakemake: run once for real, then time the no-op
    smk = root / "snakemake"
    if not reuse:
        make_project(smk, project_params(points, tracking=False))
    env = env_for(smk)
    assert count_points(smk, env) == points
    variants = snakemake_variants(env, root)
    if not reuse:
        seconds, _ = timed([snakemake_bin(), "--cores", str(cores)], variants[""], smk)
        results[f"first real snakemake run ({points} points, set-up)"] = seconds
    _, output = timed([snakemake_bin(), "--cores", str(cores)], variants[""], smk)
    if "Nothing to be done" not in output:
        raise RuntimeError(f"the second snakemake run was not a no-op:\n{output[-3000:]}")
    for suffix, variant in variants.items():
        results[f"no-op snakemake{suffix}"] = best_of(
            repeats, lambda: timed([snakemake_bin(), "--cores", str(cores)], variant, smk)[0])

    # DVC: run once for real (one train-study process for all points), then time the no-op
    dvc = root / "dvc"
    env = env_for(dvc)
    if not reuse:
        make_project(dvc, project_params(points, tracking=False))
        subprocess.run(["git", "init", "-q"], cwd=dvc, env=env, check=True)
        subprocess.run([dvc_bin(), "init", "-q"], cwd=dvc, env=env, check=True)
        seconds, _ = timed([dvc_bin(), "repro"], env, dvc)
        results[f"first real dvc repro ({points} points, set-up)"] = seconds
    _, output = timed([dvc_bin(), "repro"], env, dvc)
    if "Running stage" in output:
        raise RuntimeError(f"the second dvc repro was not a no-op:\n{output[-3000:]}")
    results["no-op dvc repro"] = best_of(repeats, lambda: timed([dvc_bin(), "repro"], env, dvc)[0])
    return results


def dag(points: int, repeats: int, root: Path) -> dict[str, float]:
    project = make_project(root / "dag", project_params(points, tracking=True))
    env = env_for(project)

    def once(variant: dict[str, str]) -> float:
        seconds, output = timed([snakemake_bin(), "-n", "--cores", "2"], variant, project)
        jobs = len(re.findall(r"^rule train:", output, flags=re.M))
        if jobs != points:
            raise RuntimeError(f"snakemake -n planned {jobs} train jobs, expected {points}:\n{output[-2000:]}")
        return seconds

    variants = snakemake_variants(env, root)
    results = {f"snakemake -n ({points} points){suffix}": best_of(repeats, lambda: once(variant))
               for suffix, variant in variants.items()}
    return results


def startup(repeats: int, root: Path) -> dict[str, float]:
    """Process start -> first training step of `trickbench train`, default params (digits, small_cnn
    width 16), MLflow on (store created by the tracking stage first, as in the pipeline)."""
    project = make_project(root / "startup", project_params(2, tracking=True, epochs=1, width=16))
    env = env_for(project)
    tb = str(BIN / "trickbench")
    for stage in ("tracking", "download", "prepare", "stats"):
        subprocess.run([tb, stage], cwd=project, env=env, check=True, capture_output=True)
    point = subprocess.run([tb, "grid"], cwd=project, env=env, capture_output=True, text=True,
                           check=True).stdout.split()[0]
    study, point_id = point.split("/")
    command = [tb, "train", "--study", study, "--point", point_id]

    def job_parts(variant: dict[str, str]) -> dict[str, float]:
        """Seconds of the whole job and of each fixed cost, from the process start."""
        shutil.rmtree(project / "artifacts" / "runs", ignore_errors=True)
        started = time.time()
        whole = timed(command, dict(env, **variant), project)[0]
        record = json.loads(next((project / "artifacts" / "runs").rglob("progress.json")).read_text())
        moments = record["timeline"]
        return {"start-up": moments["data_loaded"] - started, "build": moments["built"] - moments["data_loaded"],
                "first step": moments["first_step"] - moments["built"], "fixed cost": moments["first_step"] - started,
                "whole 1-epoch job": whole}

    samples: dict[str, list[float]] = {}
    for _ in range(repeats):  # interleaved, so a burst of load hits every variant alike
        for name, variant in STARTUP_VARIANTS.items():
            for part, seconds in job_parts(variant).items():
                samples.setdefault(f"{part}, {name}", []).append(seconds)
    return {key: min(values) for key, values in samples.items()}


def stall_ratio(measured: dict[str, float], key: str, name: str) -> None:
    """The SLURM plugin's scontrol stall against the plain figure."""
    stalled = measured.get(f"{key} (SLURM plugin's scontrol stall)")
    if stalled is not None:
        ratio_line(f"{name}_scontrol_stall", stalled, measured[key], what="with the scontrol stall",
                   baseline_what="without", unit="s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 / 20 grid points, 1 repeat: checks the script")
    parser.add_argument("--points", type=int, default=None, help="grid points of the no-op projects (100)")
    parser.add_argument("--dag-points", type=int, default=None, help="grid points of the DAG project (1,000)")
    parser.add_argument("--repeats", type=int, default=None, help="best of this many runs (3)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores for the set-up run")
    parser.add_argument("--keep", type=Path, default=None, help="build the projects here and keep them")
    parser.add_argument("--reuse", action="store_true",
                        help="with --keep: the projects there ran before; only time the no-op runs again")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: noop, dag, startup")
    args = parser.parse_args()
    points = args.points or (4 if args.quick else 100)
    dag_points = args.dag_points or (20 if args.quick else 1000)
    repeats = args.repeats or (1 if args.quick else 3)
    skip = set(filter(None, args.skip.split(",")))

    header("pipeline_overhead", torch_info=False)
    root = args.keep or Path(tempfile.mkdtemp(prefix="trickbench-overhead-"))
    if args.reuse and not (args.keep and (root / "snakemake").is_dir() and (root / "dvc").is_dir()):
        parser.error("--reuse needs --keep DIR holding the projects of an earlier run")
    if args.keep and not args.reuse:
        shutil.rmtree(root, ignore_errors=True)
    try:
        base = measure_baselines(repeats)
        rows = [{"what": k, "seconds": v} for k, v in base.items()]
        measured: dict[str, float] = {}
        if "startup" not in skip:
            measured.update(startup(repeats, root))
            measured.update(cli_checks(repeats, root / "startup"))
        if "noop" not in skip:
            measured.update(engine_noops(points, repeats, root, args.cores, args.reuse))
        if "dag" not in skip:
            measured.update(dag(dag_points, repeats, root))
        rows += [{"what": k, "seconds": v} for k, v in measured.items()]
        print()
        table(rows, ["what", "seconds"])
        print()

        if "noop" not in skip:
            value = measured["no-op snakemake"]
            ratio_line(f"noop_snakemake_{points}", value, base["snakemake --version"], what="no-op snakemake",
                       baseline_what="snakemake --version", unit="s", target=f"<= {TARGETS['noop_snakemake']:g} s",
                       met=value <= TARGETS["noop_snakemake"])
            stall_ratio(measured, "no-op snakemake", f"noop_snakemake_{points}")
            value = measured["no-op dvc repro"]
            ratio_line(f"noop_dvc_{points}", value, base["dvc --version"], what="no-op dvc repro",
                       baseline_what="dvc --version", unit="s", target=f"<= {TARGETS['noop_dvc']:g} s",
                       met=value <= TARGETS["noop_dvc"])
            smk = next((v for k, v in measured.items() if k.startswith("first real snakemake")), None)
            dvc = next((v for k, v in measured.items() if k.startswith("first real dvc")), None)
            if smk is not None and dvc is not None:
                ratio_line(f"one_process_per_point_{points}", smk, dvc, what="snakemake real run (1 process/point)",
                           baseline_what="dvc repro real run (1 process/study)", unit="s")
        if "dag" not in skip:
            value = measured[f"snakemake -n ({dag_points} points)"]
            ratio_line(f"dag_{dag_points}", value, base["snakemake --version"], what="snakemake -n",
                       baseline_what="snakemake --version", unit="s", target=f"<= {TARGETS['dag']:g} s",
                       met=value <= TARGETS["dag"])
            stall_ratio(measured, f"snakemake -n ({dag_points} points)", f"dag_{dag_points}")
        if "startup" not in skip:
            value = measured["fixed cost, default"]
            ratio_line("startup_first_step", value, base["import torch"], what="trickbench train to first step",
                       baseline_what="python -c 'import torch'", unit="s", target=f"<= {TARGETS['startup']:g} s",
                       met=value <= TARGETS["startup"])
            for name in list(STARTUP_VARIANTS)[1:]:
                key = re.sub(r"\W+", "_", name.lower()).strip("_")
                ratio_line(f"startup_vs_{key}", value, measured[f"fixed cost, {name}"], what="fixed cost, default",
                           baseline_what=name, unit="s")
                ratio_line(f"job_vs_{key}", measured["whole 1-epoch job, default"],
                           measured[f"whole 1-epoch job, {name}"], what="whole job, default", baseline_what=name,
                           unit="s")
            ratio_line("cli_grid", measured["trickbench grid"], base["python -c pass"], what="trickbench grid",
                       baseline_what="python -c pass", unit="s")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
