"""Versioned results: the manifest of a results folder, and what changed between two of them.

The report stage writes `<results>/manifest.json`: digests of the params (whole and per section) and of the
prepared data, the git commit of the code, the engine that ran it, the machines of the runs, the MLflow
experiments and runs, and, under `timing`, the training time. The same code, params and machine give
the same manifest but for `timing`, the engine's name and the MLflow run ids (new work, new runs).
`trickbench diff A B` compares two results folders, or `results/` at two git commits, and says which
numbers changed, by how much, and whether params, data, code or machine changed.

The manifest cannot hold the dvc.lock hash of the stage that writes it (DVC writes the entry after the
stage ran, and the entry hashes the manifest): the lock's `outs` of the report stage name the manifest's
md5, and `trickbench lock` (after the lock is written) tags each MLflow run the manifest names with the
md5 of its stage's entry. `lock` and `pull` are the two steps of the Makefile around the engines.
"""
from __future__ import annotations

import csv
import io
import math
import os
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from trickbench.errors import BadInput
from trickbench.io import digest_json, read_json, write_json

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
# provenance keys that describe the machine (git_commit is the code, reported on its own)
MACHINE_KEYS = ("cpu", "gpu", "torch", "cuda", "cudnn", "threads", "python")
# run columns that are bookkeeping, not results: never reported as a changed metric
NOT_METRICS = {"seed", "epochs_run", "threads", "resumed_from_epoch"}


class VersionsError(BadInput, LookupError):
    """A results folder or git revision that cannot be read: bad input (one line, exit 2)."""


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


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


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
    version = _version(name) if name in ("dvc", "snakemake") else _version("trickbench")
    return {"name": name, "version": version}


# ------------------------------------------------------------------------------------------------ manifest

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

    path = Path(layout.results) / MANIFEST
    if path.is_file():
        manifest = read_json(path)
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


# ------------------------------------------------------------------------------------------------ reading

def _numbers(value: Any, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a JSON value, by dotted key."""
    if isinstance(value, dict):
        found: dict[str, float] = {}
        for key, inner in value.items():
            found.update(_numbers(inner, f"{prefix}.{key}" if prefix else str(key)))
        return found
    if isinstance(value, bool) or value is None:
        return {}
    if isinstance(value, (int, float)):
        return {prefix: float(value)}
    return {}


def _float(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def csv_numbers(path: Path) -> dict[str, float]:
    """The numbers of a CSV table by `row key/column`, the row key made of its non-numeric cells (for
    runs.csv the study and grid point), else its row number."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    columns = list(rows[0])
    numeric = [c for c in columns if c not in NOT_METRICS and all(_float(r[c]) is not None or r[c] in ("", "nan")
                                                                  for r in rows)
               and any(_float(r[c]) is not None for r in rows)]
    labels = [c for c in columns if c not in numeric and c not in NOT_METRICS]
    if {"study", "point_id"} <= set(columns):
        key_columns = ["study", "point_id"]
    elif labels and len({row[labels[0]] for row in rows}) == len(rows):
        key_columns = labels[:1]  # an id column (claims.csv), or the one axis of a table
    else:
        key_columns = labels[:3]  # the axes of a summary table
    found: dict[str, float] = {}
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        key = "/".join(row[c] for c in key_columns) if key_columns else str(index)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            key = f"{key}#{seen[key]}"
        for column in numeric:
            value = _float(row[column])
            if value is not None:
                found[f"{key}: {column}"] = value
    return found


def folder_numbers(folder: Path) -> dict[str, dict[str, float]]:
    """Every number of a results folder, per file (metrics.json, runs.csv and each table's csv), not
    descending into nested results folders (a preset's own folder under results/)."""
    numbers: dict[str, dict[str, float]] = {}
    for path in sorted(_own_files(folder)):
        relative = path.relative_to(folder).as_posix()
        if path.name == "metrics.json":
            numbers[relative] = _numbers(read_json(path))
        elif path.suffix == ".csv" and path.name != "curves.csv":  # curves: per epoch, summarised by the tables
            numbers[relative] = csv_numbers(path)
    return numbers


def is_results_folder(folder: Path) -> bool:
    return (folder / "runs.csv").is_file() or (folder / MANIFEST).is_file()


def _own_files(folder: Path) -> Iterator[Path]:
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            if not is_results_folder(entry):
                yield from _own_files_below(entry)
        elif entry.is_file():
            yield entry


def _own_files_below(folder: Path) -> Iterator[Path]:
    for entry in sorted(folder.rglob("*")):
        if entry.is_file():
            yield entry


def results_folders(root: Path) -> dict[str, Path]:
    """Each results folder under `root` (root itself included) by its path relative to root."""
    found = {".": root} if is_results_folder(root) else {}
    for path in sorted(root.rglob("*")):
        if path.is_dir() and is_results_folder(path):
            found[path.relative_to(root).as_posix()] = path
    return found


def run_provenance(folder: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Machines and commits from runs.csv's provenance columns: what a folder without a manifest still tells."""
    path = folder / "runs.csv"
    if not path.is_file():
        return [], []
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    records = [{"provenance": {k: row[k] for k in (*MACHINE_KEYS, "git_commit") if k in row}} for row in rows
               if any(k in row for k in MACHINE_KEYS)]
    commits = sorted({r["provenance"]["git_commit"] for r in records if "git_commit" in r["provenance"]})
    return machines(records), commits


# ------------------------------------------------------------------------------------------------ git

def _git(root: Path, *args: str, binary: bool = False) -> Any:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=not binary)
    if done.returncode != 0:
        error = done.stderr if not binary else done.stderr.decode(errors="replace")
        raise VersionsError(f"git {' '.join(args)}: {error.strip().splitlines()[-1] if error.strip() else 'failed'}")
    return done.stdout


def resolve_commit(root: Path, revision: str) -> str:
    try:
        return _git(root, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}").strip()
    except VersionsError:
        raise VersionsError(f"{revision}: neither a results folder nor a git commit of {root}") from None


def extract_commit(root: Path, commit: str, results: str, target: Path) -> Path:
    """`results` (a folder of the repository) as it was at `commit`, unpacked under `target`; the params
    files of the commit (params.yaml, configs/) beside it, to tell why without a manifest."""
    paths = [p for p in (results, "params.yaml", "configs")
             if _git(root, "ls-tree", "--name-only", commit, "--", p).strip()]
    if results not in paths:
        raise VersionsError(f"{commit[:12]}: has no {results}/")
    archive = _git(root, "archive", "--format=tar", commit, "--", *paths, binary=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def params_files(tree: Path) -> dict[str, Path]:
    """results folder (relative to the tree) -> the params file of the tree that writes it."""
    import yaml

    found: dict[str, Path] = {}
    for path in [tree / "params.yaml", *sorted((tree / "configs").glob("*.yaml"))]:
        if not path.is_file():
            continue
        try:
            loaded = yaml.safe_load(path.read_text())
            results = str(loaded["paths"]["results"]).rstrip("/")
        except (yaml.YAMLError, KeyError, TypeError):
            continue
        found.setdefault(results, path)
    return found


# ------------------------------------------------------------------------------------------------ diff

@dataclass
class Side:
    label: str
    folder: Path
    manifest: dict[str, Any] | None
    params_file: Path | None = None  # from the commit, where the folder has no manifest

    def params_sections(self, from_file: bool = False) -> dict[str, str] | None:
        """Digest per params section: the manifest's (validated, defaults filled) or, with `from_file` or
        without a manifest, the raw file's; the two kinds are never compared with each other."""
        if self.manifest and not (from_file and self.params_file is not None):
            return self.manifest["params"]["sections"]
        if self.params_file is not None:
            import yaml

            loaded = yaml.safe_load(self.params_file.read_text()) or {}
            return {key: digest_json(value) for key, value in loaded.items()}
        return None

    def data_digest(self) -> str | None:
        if self.manifest:
            return self.manifest.get("data_digest")
        table = self.folder / "data" / "class_counts.md"  # its caption names the data digest
        if table.is_file():
            text = table.read_text()
            marker = "data digest "
            if marker in text:
                return text.split(marker, 1)[1][:12]
        return None

    def machines(self) -> list[dict[str, Any]]:
        return self.manifest["machines"] if self.manifest else run_provenance(self.folder)[0]

    def commits(self) -> list[str]:
        if self.manifest:
            return self.manifest.get("runs_git_commits") or [self.manifest.get("git_commit", "unknown")]
        return run_provenance(self.folder)[1]


@dataclass
class FolderDiff:
    name: str
    why: list[str]
    changed: dict[str, list[tuple[str, float, float]]] = field(default_factory=dict)
    only_a: dict[str, list[str]] = field(default_factory=dict)
    only_b: dict[str, list[str]] = field(default_factory=dict)
    unchanged: int = 0

    @property
    def number_changes(self) -> int:
        return sum(len(v) for v in self.changed.values())


def _short(commits: list[str]) -> str:
    return ", ".join(c[:12] + ("-dirty" if c.endswith("-dirty") else "") for c in commits) or "unknown"


def why(a: Side, b: Side) -> list[str]:
    """Whether params, data, code and machine differ between the two sides ('unknown' where a side cannot say)."""
    reasons = []
    both = bool(a.manifest and b.manifest)
    sections_a, sections_b = a.params_sections(from_file=not both), b.params_sections(from_file=not both)
    if sections_a is None or sections_b is None:
        reasons.append("params: unknown (no manifest or params file)")
    else:
        changed = sorted(k for k in set(sections_a) | set(sections_b) if sections_a.get(k) != sections_b.get(k))
        source = "" if a.manifest and b.manifest else " (from the commits' params files)"
        reasons.append(f"params: changed ({', '.join(changed)}){source}" if changed else f"params: same{source}")
    data_a, data_b = a.data_digest(), b.data_digest()
    if data_a is None or data_b is None:
        reasons.append("data: unknown")
    else:
        width = min(len(data_a), len(data_b))
        reasons.append("data: same" if data_a[:width] == data_b[:width]
                       else f"data: changed ({data_a[:12]} -> {data_b[:12]})")
    commits_a, commits_b = a.commits(), b.commits()
    if not commits_a or not commits_b:
        reasons.append("code: unknown")
    else:
        reasons.append("code: same" if commits_a == commits_b
                       else f"code: changed ({_short(commits_a)} -> {_short(commits_b)})")
    machines_a, machines_b = a.machines(), b.machines()
    strip = lambda ms: sorted(digest_json({k: v for k, v in m.items() if k != "runs"}) for m in ms)  # noqa: E731
    if not machines_a or not machines_b:
        reasons.append("machine: unknown")
    elif strip(machines_a) == strip(machines_b):
        reasons.append("machine: same")
    else:
        describe = lambda ms: "; ".join(f"{m.get('cpu', '?')}, {m.get('threads', '?')} thread(s), GPU {m.get('gpu', '?')}, "  # noqa: E731
                                        f"torch {m.get('torch', '?')}" for m in ms)
        reasons.append(f"machine: changed ({describe(machines_a)} -> {describe(machines_b)})")
    return reasons


def _close(x: float, y: float) -> bool:
    return x == y or (math.isnan(x) and math.isnan(y))


def diff_folders(name: str, a: Side, b: Side) -> FolderDiff:
    result = FolderDiff(name, why(a, b))
    numbers_a, numbers_b = folder_numbers(a.folder), folder_numbers(b.folder)
    for file in sorted(set(numbers_a) | set(numbers_b)):
        left, right = numbers_a.get(file, {}), numbers_b.get(file, {})
        changed = [(key, left[key], right[key]) for key in left if key in right and not _close(left[key], right[key])]
        result.unchanged += sum(1 for key in left if key in right) - len(changed)
        if changed:
            result.changed[file] = changed
        if missing := sorted(set(left) - set(right)):
            result.only_a[file] = missing
        if added := sorted(set(right) - set(left)):
            result.only_b[file] = added
    return result


def _side(label: str, folder: Path, params_file: Path | None = None) -> Side:
    manifest_path = folder / MANIFEST
    return Side(label, folder, read_json(manifest_path) if manifest_path.is_file() else None, params_file)


def diff(a: str, b: str, root: Path = Path("."), results: str = "results") -> list[FolderDiff]:
    """Diff `a` and `b`: two results folders, or two git revisions of `root` (their `results` folder and
    every preset's folder under it, paired by path)."""
    with tempfile.TemporaryDirectory(prefix="trickbench-diff-") as scratch:
        sides = []
        for index, spec in enumerate((a, b)):
            if Path(spec).is_dir():
                if not results_folders(Path(spec)):
                    raise VersionsError(f"{spec}: not a results folder (no runs.csv or {MANIFEST} in it or below)")
                sides.append((Path(spec), None, spec))
            else:
                commit = resolve_commit(root, spec)
                tree = extract_commit(root, commit, results, Path(scratch) / str(index))
                sides.append((tree / results, tree, f"{spec} ({commit[:12]})"))
        (folder_a, tree_a, label_a), (folder_b, tree_b, label_b) = sides
        found_a, found_b = results_folders(folder_a), results_folders(folder_b)
        files_a = params_files(tree_a) if tree_a else {}
        files_b = params_files(tree_b) if tree_b else {}
        diffs = []
        shown = lambda name: (results if name == "." else f"{results}/{name}") if tree_a or tree_b else name  # noqa: E731
        for name in sorted(set(found_a) | set(found_b)):
            if name in found_a and name in found_b:
                diffs.append(diff_folders(shown(name), _side(label_a, found_a[name], files_a.get(shown(name))),
                                          _side(label_b, found_b[name], files_b.get(shown(name)))))
            else:
                diffs.append(FolderDiff(shown(name), [f"only in {label_a if name in found_a else label_b}"]))
        return diffs


def _format(value: float) -> str:
    return f"{value:.6g}"


def render(diffs: list[FolderDiff], a: str, b: str, limit: int = 20) -> str:
    lines = [f"trickbench diff {a} {b}"]
    for item in diffs:
        lines.append("")
        lines.append(f"{item.name}: {item.number_changes} number(s) changed, {item.unchanged} unchanged")
        lines.extend(f"  {reason}" for reason in item.why)
        for file, changes in item.changed.items():
            lines.append(f"  {file}: {len(changes)} changed")
            for key, left, right in changes[:limit]:
                lines.append(f"    {key}: {_format(left)} -> {_format(right)} ({right - left:+.4g})")
            if len(changes) > limit:
                lines.append(f"    ... and {len(changes) - limit} more")
        for file, keys in item.only_a.items():
            lines.append(f"  {file}: {len(keys)} number(s) only in A" + (f" (e.g. {keys[0]})" if keys else ""))
        for file, keys in item.only_b.items():
            lines.append(f"  {file}: {len(keys)} number(s) only in B" + (f" (e.g. {keys[0]})" if keys else ""))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ the lock
def _tool(name: str) -> str:
    """A tool of this environment (beside the running Python), else the one on PATH."""
    import shutil
    import sys

    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else (shutil.which(name) or name)



def lock(root: Path = Path(".")) -> str:
    """Write dvc.lock from the outputs on disk (`dvc commit --force`): after a Snakemake run, the lock DVC
    itself would have written, so `dvc status` and `dvc repro` agree that nothing is out of date and the
    outputs are in DVC's cache, ready for `dvc push`."""
    import yaml

    if not (Path(root) / "dvc.yaml").is_file():
        raise VersionsError(f"{Path(root) / 'dvc.yaml'}: missing; `trickbench lock` runs in a DVC project")
    done = subprocess.run([_tool("dvc"), "commit", "--force", "--quiet"], cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise VersionsError(f"dvc commit: {lines[-1] if lines else 'failed'} (run `dvc status` for details)")
    stages = (yaml.safe_load((Path(root) / "dvc.lock").read_text()) or {}).get("stages", {})
    tagged = tag_runs_with_lock(Path(root), stages)
    return (f"dvc.lock: {len(stages)} stages recorded ({', '.join(stages)})"
            + (f"; {tagged} MLflow run(s) tagged with their stage's lock entry" if tagged else ""))


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

    params_file = root / "params.yaml"
    if not params_file.is_file():
        return 0
    params = load_params(params_file)
    manifest_path = root / Layout.from_params(params).results / MANIFEST
    if not params["tracking"]["enabled"] or not manifest_path.is_file():
        return 0
    runs: dict[str, str] = {}
    for study, entry in read_json(manifest_path).get("mlflow", {}).items():
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
    if not (Path(root) / "dvc.yaml").is_file():
        raise VersionsError(f"{Path(root) / 'dvc.yaml'}: missing; `trickbench pull` runs in a DVC project")
    steps = [[_tool("dvc"), "pull", *(["--remote", remote] if remote else [])],
             [_tool("snakemake"), "--cores", "1", "--touch", "--forceall", "--quiet"]]
    for command in steps:
        done = subprocess.run(command, cwd=root, capture_output=True, text=True)
        if done.returncode != 0:
            lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
            raise VersionsError(f"{Path(command[0]).name} {command[1]}: {lines[-1] if lines else 'failed'}")
    return "pull: artifacts checked out from the DVC remote; Snakemake's records brought up to date"
