"""The manifest of a results folder: what made its numbers (params, data, code, engine, machines, MLflow runs),
written by the report stage and read back, bounded and checked, by `diff` and `lock`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from trickbench.data.files import read_regular_file
from trickbench.io import digest_json, read_json, write_json
from trickbench.versions import VersionsError

MANIFEST_VERSION = 1
MANIFEST_MAX_BYTES = 16 * 2**20  # the default run's is 9 KiB; its size grows with the number of runs
# provenance keys that describe the machine (git_commit is the code, reported on its own)
MACHINE_KEYS = ("cpu", "gpu", "torch", "cuda", "cudnn", "threads", "python")


def params_digests(params: dict[str, Any]) -> dict[str, Any]:
    """The digest of the resolved params and of each section: a diff names the sections that changed."""
    return {"digest": digest_json(params), "sections": {key: digest_json(value) for key, value in sorted(params.items())}}


def machines(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The distinct machines of these runs (provenance without the commit), with how many runs each made."""
    found: dict[str, dict[str, Any]] = {}
    for record in records:
        made = record.get("provenance") or {}
        machine = {key: made[key] for key in MACHINE_KEYS if key in made}
        key = digest_json(machine)
        found.setdefault(key, {**machine, "runs": 0})["runs"] += 1
    return [found[key] for key in sorted(found)]


def build_manifest(params: dict[str, Any], records: dict[str, list[dict[str, Any]]], data_digest: str | None,
                   summary_runs: dict[str, str | None], experiments: dict[str, dict[str, Any]],
                   train_seconds: dict[str, float], git_commit: str, engine: dict[str, str]) -> dict[str, Any]:
    """The manifest of one results folder (`records`: each study's run records, metrics.json)."""
    every = [record for study_records in records.values() for record in study_records]
    commits = sorted({str((r.get("provenance") or {}).get("git_commit", "unknown")) for r in every})
    return {
        "manifest_version": MANIFEST_VERSION,
        "params": params_digests(params),
        "data_digest": data_digest,
        "git_commit": git_commit,
        "runs_git_commits": commits,
        "engine": engine,
        "machines": machines(every),
        "runs": {"count": len(every), "completed": sum(r.get("status") == "completed" for r in every),
                 "digest": digest_json(sorted(r.get("run_digest", "") for r in every))},
        "mlflow": {study: {**experiments.get(study, {}), "summary_run_id": summary_runs.get(study),
                           "run_ids": {r["point_id"]: r.get("mlflow_run_id") for r in study_records}}
                   for study, study_records in records.items()},
        # apart: the one key that differs between two runs of the same work by the same engine into one store
        "timing": {"train_seconds": {study: round(seconds, 3) for study, seconds in train_seconds.items()},
                   "train_seconds_total": round(sum(train_seconds.values()), 3)},
    }


def experiments(params: dict[str, Any], studies: list[str]) -> dict[str, dict[str, Any]]:
    """Each study's MLflow experiment: its name, and its id where the store has it."""
    from trickbench import tracking

    names = {study: tracking.experiment_name(params, study) for study in studies}
    if not params["tracking"]["enabled"]:
        return {study: {"experiment": name, "experiment_id": None} for study, name in names.items()}
    mlflow_client = tracking.client(tracking.tracking_uri(params))
    found = {study: tracking.retry(lambda name=name: mlflow_client.get_experiment_by_name(name))
             for study, name in names.items()}
    return {study: {"experiment": names[study], "experiment_id": getattr(found[study], "experiment_id", None)}
            for study in studies}


def report_manifest(params: dict[str, Any], layout: Any, collected: dict[str, Any],
                    summary_runs: dict[str, str | None]) -> dict[str, Any]:
    """The manifest of the report stage's results folder (`collected`: each study's StudyData)."""
    from trickbench import provenance
    from trickbench.versions.engines import detect_engine

    data_digest = read_json(layout.manifest)["digest"] if layout.manifest.exists() else None
    seconds = {study: float(data.curves["seconds"].sum()) if "seconds" in data.curves else 0.0
               for study, data in collected.items()}
    return build_manifest(params, {study: data.records for study, data in collected.items()}, data_digest,
                          summary_runs, experiments(params, list(collected)), seconds, provenance.git_commit(),
                          detect_engine())



def write_manifest(path: Path, manifest: dict[str, Any]) -> Path:
    write_json(path, manifest)
    return path


def report_description(params: dict[str, Any], layout: Any) -> dict[str, str]:
    """What the Snakemake report's description (workflow/report/workflow.rst) names: the commit and the
    digests of the results' manifest, else (no run yet) of the code and params at hand."""
    from trickbench import provenance
    from trickbench.report.outputs import manifest_file

    path = manifest_file(layout)
    if path.is_file():
        manifest = read_manifest(path)
        return {"git_commit": manifest["git_commit"], "params_digest": manifest["params"]["digest"][:12],
                "data_digest": (manifest.get("data_digest") or "unknown")[:12],
                "engine": f"{manifest['engine']['name']} {manifest['engine']['version']}", "source": str(path)}
    return {"git_commit": provenance.git_commit(), "params_digest": digest_json(params)[:12], "data_digest": "unknown",
            "engine": "none yet", "source": "the code and params at hand (no manifest yet)"}


def output_digests(paths: list[Path]) -> dict[str, str]:
    """sha256 of every file the report wrote, for its record (artifacts/report.json, a cached DVC out): the
    lock hashes the record, so it covers the tables and figures that dvc.yaml does not list one by one."""
    from trickbench.io import sha256_file

    return {str(path): sha256_file(path) for path in sorted(map(Path, paths))}


def digest_tags(params: dict[str, Any], layout: Any) -> dict[str, str]:
    """MLflow tags of a summary run: the digests its tables' footers and the manifest name."""
    data = read_json(layout.manifest)["digest"] if Path(layout.manifest).exists() else "unknown"
    return {"trickbench.params_digest": digest_json(params), "trickbench.data_digest": data}


def extend_footer(footer: str, params: dict[str, Any], data_digest: str | None) -> str:
    """The provenance line under a table, with the params and data digests added (still one line):
    `_Runs made on ..., git <commit>; params <digest>, data <digest>._`"""
    digests = f"params {digest_json(params)[:12]}, data {(data_digest or 'unknown')[:12]}"
    if not footer:
        return f"_{digests}._"
    return f"{footer.removesuffix('._')}; {digests}._"



def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_mapping_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, dict) and all(_is_str(k) and check(v) for k, v in value.items())


def _is_list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and all(check(item) for item in value)


# what `diff`, `lock` and the report's description read, with what each must be
MANIFEST_SHAPE: dict[str, tuple[Callable[[Any], bool], str]] = {
    "manifest_version": (lambda v: v == MANIFEST_VERSION, f"the number {MANIFEST_VERSION}"),
    "params": (lambda v: isinstance(v, dict) and _is_str(v.get("digest")) and _is_mapping_of(_is_str)(v.get("sections")),
               "a mapping with a digest and the sections' digests"),
    "data_digest": (lambda v: v is None or _is_str(v), "a digest or null"),
    "git_commit": (_is_str, "a commit"),
    "runs_git_commits": (_is_list_of(_is_str), "a list of commits"),
    "engine": (lambda v: isinstance(v, dict) and _is_str(v.get("name")) and _is_str(v.get("version")),
               "a mapping with the engine's name and version"),
    "machines": (_is_list_of(lambda m: isinstance(m, dict)), "a list of machines"),
    "mlflow": (_is_mapping_of(lambda v: isinstance(v, dict)), "a mapping of studies to their MLflow runs"),
}


def read_manifest(path: Path) -> dict[str, Any]:
    """A manifest the report stage wrote, read bounded (a regular file of at most MANIFEST_MAX_BYTES) and
    checked against MANIFEST_SHAPE; one line naming the file and the key otherwise."""
    data = read_regular_file(path, MANIFEST_MAX_BYTES, limit_name="MANIFEST_MAX_BYTES")
    try:
        manifest = json.loads(data.decode("utf-8"))
    except ValueError as error:  # UnicodeDecodeError is one
        raise VersionsError(f"{path}: not a trickbench manifest (unreadable JSON: {error})") from None
    if not isinstance(manifest, dict):
        raise VersionsError(f"{path}: not a trickbench manifest (a JSON {type(manifest).__name__}, not an object)")
    for key, (check, expected) in MANIFEST_SHAPE.items():
        if not check(manifest.get(key)):
            raise VersionsError(f"{path}: not a trickbench manifest ({key}: expected {expected}, got "
                                f"{json.dumps(manifest.get(key))[:60]})")
    return manifest
