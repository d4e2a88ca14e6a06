"""The engines around the results: which one runs this stage, and the commands that run them (`dvc commit`
for the lock, `dvc pull` and `snakemake --touch` for a fresh clone, `git` for the diff), all through `run`."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

from trickbench.provenance import package_version
from trickbench.versions import VersionsError


def tool(name: str) -> str:
    """A tool of this environment (beside the running Python), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else (shutil.which(name) or name)


def run(command: list[str], cwd: Path, *, what: str, hint: str = "", binary: bool = False) -> Any:
    """Run `command` in `cwd` and return its stdout; VersionsError `<what>: <its last error line><hint>` when
    it fails (the one line a user needs; the tool's full output is for rerunning it by hand)."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=not binary)
    if done.returncode != 0:
        output = (done.stderr + done.stdout) if not binary else (done.stderr + done.stdout).decode(errors="replace")
        lines = [line for line in output.splitlines() if line.strip()]
        raise VersionsError(f"{what}: {lines[-1].strip() if lines else 'failed'}{hint}")
    return done.stdout




# ------------------------------------------------------------------------------------------------ engine

def _ancestor_names(limit: int = 8) -> Iterator[str]:
    """Command lines of this process's ancestors (Linux /proc), nearest first."""
    pid = os.getppid()
    for _ in range(limit):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return
        yield cmdline
        parents = [line.split()[1] for line in status.splitlines() if line.startswith("PPid:")]
        if not parents or parents[0] in ("0", "1"):
            return
        pid = int(parents[0])


def detect_engine() -> dict[str, str]:
    """Which engine runs this stage: $TRICKBENCH_ENGINE if set; DVC exports $DVC_STAGE to a stage's cmd;
    Snakemake sets no variable in a local job, so a `snakemake` process among the ancestors; else the CLI."""
    name = os.environ.get("TRICKBENCH_ENGINE")
    if not name:
        if os.environ.get("DVC_STAGE"):
            name = "dvc"
        elif any("snakemake" in Path(part).name for cmd in _ancestor_names() for part in cmd.split()[:2]):
            name = "snakemake"
        else:
            name = "cli"
    version = package_version(name if name in ("dvc", "snakemake") else "trickbench") or "unknown"
    return {"name": name, "version": version}


def lock(root: Path = Path(".")) -> str:
    """Write dvc.lock from the outputs on disk (`dvc commit --force`): after a Snakemake run, the lock DVC
    itself would have written, so `dvc status` and `dvc repro` agree that nothing is out of date and the
    outputs are in DVC's cache, ready for `dvc push`."""
    import yaml

    _require_dvc_project(root, "lock")
    run([tool("dvc"), "commit", "--force", "--quiet"], root, what="dvc commit", hint=" (run `dvc status` for details)")
    stages = (yaml.safe_load((Path(root) / "dvc.lock").read_text()) or {}).get("stages", {})
    tagged = tag_runs_with_lock(Path(root), stages)
    return (f"dvc.lock: {len(stages)} stages recorded ({', '.join(stages)})"
            + (f"; {tagged} MLflow run(s) tagged with their stage's lock entry" if tagged else ""))


def _require_dvc_project(root: Path, command: str) -> None:
    if not (Path(root) / "dvc.yaml").is_file():
        raise VersionsError(f"{Path(root) / 'dvc.yaml'}: missing; `trickbench {command}` runs in a DVC project")


def stage_lock_md5(entry: dict[str, Any]) -> str:
    """md5 of one stage's dvc.lock entry (its cmd, params and the md5 of every dep and out), as canonical JSON."""
    import hashlib
    import json

    return hashlib.md5(json.dumps(entry, sort_keys=True).encode()).hexdigest()


def tag_runs_with_lock(root: Path, stages: dict[str, Any]) -> int:
    """Tag the MLflow runs the manifest names with the lock entry of the stage that made them
    (`trickbench.dvc_stage`, `trickbench.dvc_stage_md5`): train runs with `train@<study>`, summary runs with
    `report`. Done after the lock is written, as a stage cannot know its own entry while it runs."""
    from trickbench import tracking
    from trickbench.params import load_params
    from trickbench.paths import Layout
    from trickbench.report.outputs import manifest_file
    from trickbench.versions.manifest import read_manifest

    params_file = root / "params.yaml"
    if not params_file.is_file():
        return 0
    params = load_params(params_file)
    manifest_path = root / manifest_file(Layout.from_params(params))
    if not params["tracking"]["enabled"] or not manifest_path.is_file():
        return 0
    runs: dict[str, str] = {}
    for study, entry in read_manifest(manifest_path)["mlflow"].items():
        for run_id in entry.get("run_ids", {}).values():
            if run_id and f"train@{study}" in stages:
                runs[run_id] = f"train@{study}"
        if entry.get("summary_run_id") and "report" in stages:
            runs[entry["summary_run_id"]] = "report"
    uri = tracking.tracking_uri(params)
    for run_id, stage in runs.items():
        tracking.tag_run(uri, run_id, {"trickbench.dvc_stage": stage,
                                       "trickbench.dvc_stage_md5": stage_lock_md5(stages[stage])})
    return len(runs)


def pull(root: Path = Path("."), remote: str | None = None) -> str:
    """A fresh clone's artifacts from the DVC remote, then Snakemake's view of them made current: a checkout
    writes files in any order and a clone has no .snakemake records, so `snakemake --touch --forceall` sets
    every output's time in DAG order and records each job's params and code (a later params edit reruns
    exactly what it touches). After it neither `dvc repro` nor `snakemake` has anything to do."""
    _require_dvc_project(root, "pull")
    run([tool("dvc"), "pull", *(["--remote", remote] if remote else [])], root, what="dvc pull")
    run([tool("snakemake"), "--cores", "1", "--touch", "--forceall", "--quiet"], root, what="snakemake --cores")
    return "pull: artifacts checked out from the DVC remote; Snakemake's records brought up to date"
