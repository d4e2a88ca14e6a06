"""`trickbench diff A B`: which numbers changed between two results folders (or `results/` at two git
commits), by how much, and whether params, data, code or machine changed.

A side is a results folder (a folder holding the report's manifest.json or runs.csv: nothing else is
looked for, no folder above or beside it is searched) or a git commit of the repository. Below a results
folder, nested results folders (presets) are paired by path; the listing never follows a link and stops at
MAX_LISTED entries or MAX_LISTED_DEPTH levels. Every file is read bounded (a regular file of at most
MAX_TABLE_BYTES) and one that is not what the report writes is named in one line.
"""
from __future__ import annotations

import csv
import io
import math
import os
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from trickbench.data.files import read_regular_file
from trickbench.errors import BadInput
from trickbench.io import digest_json
from trickbench.paths import Layout
from trickbench.report.outputs import manifest_file, metrics_file
from trickbench.versions import VersionsError
from trickbench.versions.engines import run
from trickbench.versions.manifest import MACHINE_KEYS, machines, read_manifest

_NAMES = Layout(Path(), Path())
MANIFEST, RUNS, METRICS = manifest_file(_NAMES).name, _NAMES.runs_table.name, metrics_file(_NAMES).name
CURVES = "curves.csv"  # per epoch, summarised by the tables: not compared
# run columns that are bookkeeping, not results: never reported as a changed metric
NOT_METRICS = {"seed", "epochs_run", "threads", "resumed_from_epoch"}
MAX_TABLE_BYTES = 64 * 2**20  # a runs.csv of 100,000 runs is about 40 MiB
MAX_LISTED = 100_000  # entries below a results folder (the default results: about 200)
MAX_LISTED_DEPTH = 8  # folder levels below it (results/<preset>/<study>/<figure>: 3)


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


def _text(path: Path) -> str:
    data = read_regular_file(path, MAX_TABLE_BYTES, limit_name="MAX_TABLE_BYTES")
    if b"\0" in data:
        raise VersionsError(f"{path}: a binary file, not a table the report writes (CSV text)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise VersionsError(f"{path}: not UTF-8 text (byte {error.start}); not a table the report writes") from None


def csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV table the report wrote; VersionsError naming the file otherwise."""
    try:
        rows = list(csv.DictReader(io.StringIO(_text(path), newline="")))
    except csv.Error as error:
        raise VersionsError(f"{path}: not a CSV table ({error})") from None
    if any(None in row or None in row.values() for row in rows):
        raise VersionsError(f"{path}: rows with more or fewer cells than the header; not a table the report writes")
    return rows


def csv_numbers(path: Path) -> dict[str, float]:
    """The numbers of a CSV table by `row key/column`, the row key made of its non-numeric cells (for
    runs.csv the study and grid point), else its row number."""
    rows = csv_rows(path)
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



def json_numbers(path: Path) -> dict[str, float]:
    import json

    try:
        return _numbers(json.loads(_text(path)))
    except ValueError as error:
        raise VersionsError(f"{path}: unreadable JSON ({error})") from None


def listing(root: Path) -> dict[str, list[str]]:
    """Each folder below `root` ('.' for root itself, else its relative POSIX path) -> its regular files,
    sorted; links and special files are passed over, never followed. Bounded: VersionsError beyond
    MAX_LISTED entries or MAX_LISTED_DEPTH levels."""
    found: dict[str, list[str]] = {}
    pending, count = ["."], 0
    while pending:
        relative = pending.pop()
        try:
            with os.scandir(root / relative) as it:
                entries = sorted(it, key=lambda entry: entry.name)
        except OSError as error:
            raise VersionsError(f"{root / relative}: cannot list ({error.strerror})") from None
        count += len(entries)
        if count > MAX_LISTED:
            raise VersionsError(f"{root}: more than {MAX_LISTED} entries below it (MAX_LISTED); "
                                "not a results folder the report writes")
        found[relative] = [entry.name for entry in entries if entry.is_file(follow_symlinks=False)]
        for entry in reversed(entries):
            if entry.is_dir(follow_symlinks=False):
                child = entry.name if relative == "." else f"{relative}/{entry.name}"
                if child.count("/") + 1 > MAX_LISTED_DEPTH:
                    raise VersionsError(f"{root / child}: more than {MAX_LISTED_DEPTH} folder levels below {root} "
                                        "(MAX_LISTED_DEPTH); not a results folder the report writes")
                pending.append(child)
    return found


def is_results_folder(files: list[str]) -> bool:
    return RUNS in files or MANIFEST in files


def results_folders(found: dict[str, list[str]]) -> list[str]:
    """The results folders of a listing (its root included when it is one), by relative path."""
    return [folder for folder, files in sorted(found.items()) if is_results_folder(files)]


def own_files(found: dict[str, list[str]], folder: str) -> list[str]:
    """The files of results folder `folder`, with those of its subfolders that are no results folders of
    their own (a preset's folder under results/ is compared on its own)."""
    prefix = "" if folder == "." else folder + "/"
    nested = [f + "/" for f in results_folders(found) if f != folder and (folder == "." or f.startswith(prefix))]
    files = []
    for sub, names in sorted(found.items()):
        inside = sub == folder or (folder == "." and sub != ".") or sub.startswith(prefix)
        if inside and (sub == folder or not any((sub + "/").startswith(n) for n in nested)):
            base = "" if sub == "." else sub + "/"
            files.extend(base + name for name in names)
    return sorted(files)


def folder_numbers(root: Path, found: dict[str, list[str]], folder: str) -> dict[str, dict[str, float]]:
    """Every number of a results folder, per file (metrics.json, runs.csv and each table's csv)."""
    numbers: dict[str, dict[str, float]] = {}
    prefix = "" if folder == "." else folder + "/"
    for name in own_files(found, folder):
        relative, base = name[len(prefix):], name.rsplit("/", 1)[-1]
        if base == METRICS:
            numbers[relative] = json_numbers(root / name)
        elif base.endswith(".csv") and base != CURVES:
            numbers[relative] = csv_numbers(root / name)
    return numbers


def run_provenance(folder: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Machines and commits from runs.csv's provenance columns: what a folder without a manifest still tells."""
    path = folder / RUNS
    if not path.is_file():
        return [], []
    rows = csv_rows(path)
    records = [{"provenance": {k: row[k] for k in (*MACHINE_KEYS, "git_commit") if k in row}} for row in rows
               if any(k in row for k in MACHINE_KEYS)]
    commits = sorted({r["provenance"]["git_commit"] for r in records if "git_commit" in r["provenance"]})
    return machines(records), commits


# ------------------------------------------------------------------------------------------------ git

def resolve_commit(root: Path, revision: str) -> str:
    if not revision or revision.startswith("-") or not revision.isprintable():
        raise VersionsError(f"{revision!r}: neither a results folder nor a git commit of {root}")
    try:
        return run(["git", "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], root,
                   what=f"git rev-parse {revision}").strip()
    except VersionsError:
        raise VersionsError(f"{revision}: neither a results folder nor a git commit of {root}") from None


def _git(root: Path, *args: str, binary: bool = False) -> Any:
    return run(["git", *args], root, what=f"git {' '.join(args)}", binary=binary)


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
            loaded = yaml.safe_load(_text(path))
            results = str(loaded["paths"]["results"]).rstrip("/")
        except (yaml.YAMLError, KeyError, TypeError, BadInput):
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
    root: Path = Path(".")  # the results folder given (or of a commit) that this folder is, or is below
    found: dict[str, list[str]] = field(default_factory=dict)  # the listing of root
    relative: str = "."  # this folder's place in it

    def numbers(self) -> dict[str, dict[str, float]]:
        return folder_numbers(self.root, self.found, self.relative)

    def params_sections(self, from_file: bool = False) -> dict[str, str] | None:
        """Digest per params section: the manifest's (validated, defaults filled) or, with `from_file` or
        without a manifest, the raw file's; the two kinds are never compared with each other."""
        if self.manifest and not (from_file and self.params_file is not None):
            return self.manifest["params"]["sections"]
        if self.params_file is not None:
            import yaml

            loaded = yaml.safe_load(_text(self.params_file)) or {}
            return {key: digest_json(value) for key, value in loaded.items()} if isinstance(loaded, dict) else None
        return None

    def data_digest(self) -> str | None:
        """The prepared data's digest, as the manifest records it (a folder without one cannot tell)."""
        return self.manifest["data_digest"] if self.manifest else None

    def machines(self) -> list[dict[str, Any]]:
        return self.manifest["machines"] if self.manifest else run_provenance(self.folder)[0]

    def commits(self) -> list[str]:
        if self.manifest:
            return self.manifest["runs_git_commits"] or [self.manifest["git_commit"]]
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
    numbers_a, numbers_b = a.numbers(), b.numbers()
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


@dataclass
class Tree:
    """One side as given: a results folder, or the `results` folder of a commit unpacked in a scratch folder."""

    label: str
    root: Path
    params_files: dict[str, Path] = field(default_factory=dict)  # results folder -> the commit's params file

    def sides(self, shown: Callable[[str], str]) -> dict[str, Side]:
        """Each results folder of the tree (the root and the presets' below it), by relative path."""
        found = listing(self.root)
        sides = {}
        for folder in results_folders(found):
            path = self.root if folder == "." else self.root / folder
            manifest = read_manifest(path / MANIFEST) if MANIFEST in found[folder] else None
            sides[folder] = Side(self.label, path, manifest, self.params_files.get(shown(folder)), self.root, found,
                                 folder)
        return sides


def folder_tree(spec: str) -> Tree:
    """A side given as a path: it must be a results folder itself (nothing above or beside it is searched)."""
    folder = Path(spec)
    if os.path.lexists(folder / MANIFEST):
        read_manifest(folder / MANIFEST)  # a FIFO, a link to a device, another program's file: named here
    elif not (folder / RUNS).is_file():
        raise VersionsError(f"{spec}: not a results folder (no {MANIFEST} or {RUNS} in it); give the folder the "
                            "report stage writes (paths.results) or a git commit")
    return Tree(spec, folder)


def commit_tree(spec: str, root: Path, results: str, scratch: Path) -> Tree:
    commit = resolve_commit(root, spec)
    tree = extract_commit(root, commit, results, scratch)
    return Tree(f"{spec} ({commit[:12]})", tree / results, params_files(tree))


def diff(a: str, b: str, root: Path = Path("."), results: str = "results") -> list[FolderDiff]:
    """Diff `a` and `b`: two results folders, or two git revisions of `root` (their `results` folder and
    every preset's folder under it, paired by path)."""
    with tempfile.TemporaryDirectory(prefix="trickbench-diff-") as scratch:
        given = [Path(spec).is_dir() for spec in (a, b)]
        tree_a, tree_b = [folder_tree(spec) if is_dir else commit_tree(spec, root, results, Path(scratch) / str(i))
                          for i, (spec, is_dir) in enumerate(zip((a, b), given))]
        shown = (lambda name: name) if all(given) else (  # noqa: E731
            lambda name: results if name == "." else f"{results}/{name}")
        found_a, found_b = tree_a.sides(shown), tree_b.sides(shown)
        diffs = []
        for name in sorted(set(found_a) | set(found_b)):
            if name in found_a and name in found_b:
                diffs.append(diff_folders(shown(name), found_a[name], found_b[name]))
            else:
                diffs.append(FolderDiff(shown(name), [f"only in {tree_a.label if name in found_a else tree_b.label}"]))
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

