"""Bad input, third sweep (issue 26): grid sizes, names that become paths, run files read back, bounded reads of
user paths, tracking URIs and system folders with the outside-path opt-in. Every case runs `trickbench` (or
`snakemake -n`) in a subprocess in <case>/project and must exit 2 with exactly one line on stderr naming the
culprit, no traceback, and leave the case folder as it was (a snapshot of every file before and after).

`trickbench status` is a report, not a stage: a point with a malformed run file is shown as `corrupt (<file>)`
(exit 0), never as pending; that table is at the end.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from conftest import BIN, tiny_params, write_params, write_run
from test_bad_input import ACTS, assert_refused_cleanly, edit, files_under, run_case, templates  # noqa: F401 (a fixture)
from trickbench.folders import SYSTEM_TREES
from trickbench.grid import MAX_POINT_ID_BYTES, MAX_POINTS_PER_STUDY, MAX_POINTS_TOTAL

POINT = "activation-relu__seed-0"
OTHER = "activation-rrelu__seed-1"
RUN = f"artifacts/runs/acts/{POINT}"
SNAKEMAKE_DRY = ["snakemake", "-n", "--cores", "1"]
BIG = 5 * 1024 * 1024  # over the README and params caps (4 MiB, 1 MB)


@dataclass
class Case:
    id: str
    argv: list[str]  # after `trickbench`, or a whole `snakemake` command
    culprit: str  # must appear in the error line
    params: Callable[[dict], Any] | str | None = None  # an edit of the tiny params, or the file's text
    setup: Callable[[Path], None] | None = None  # damage the project
    template: str = "bare"  # bare, ready (prepared data) or trained (finished runs and ensembles)
    env: dict[str, str] = field(default_factory=dict)  # MLFLOW_TRACKING_URI here replaces the project's store
    expect: tuple[str, ...] = ()  # more text the error line must hold
    outside: tuple[str, ...] = ()  # absolute paths that must not exist afterwards
    params_name: str = "params.yaml"  # where `params` is written (test_bad_input.run_case)


# ------------------------------------------------------------------------------------------------ damage

def write(relative: str, content: bytes | str) -> Callable[[Path], None]:
    def apply(workdir: Path) -> None:
        path = workdir / relative
        path.unlink(missing_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return apply


def truncate(relative: str) -> Callable[[Path], None]:
    def apply(workdir: Path) -> None:
        data = (workdir / relative).read_bytes()
        (workdir / relative).write_bytes(data[: len(data) // 2])
    return apply


def edit_json(relative: str, change: Callable[[Any], Any]) -> Callable[[Path], None]:
    import json

    def apply(workdir: Path) -> None:
        path = workdir / relative
        path.write_text(json.dumps(change(json.loads(path.read_text()))))
    return apply


def npz(relative: str, **arrays: Any) -> Callable[[Path], None]:
    def apply(workdir: Path) -> None:
        with open(workdir / relative, "wb") as handle:
            np.savez(handle, **arrays)
    return apply


def fifo(relative: str) -> Callable[[Path], None]:
    def apply(workdir: Path) -> None:
        (workdir / relative).unlink(missing_ok=True)
        os.mkfifo(workdir / relative)
    return apply


def sparse(relative: str, size: int = BIG) -> Callable[[Path], None]:
    def apply(workdir: Path) -> None:
        with open(workdir / relative, "wb") as handle:
            handle.truncate(size)
    return apply


def link(relative: str, target: str) -> Callable[[Path], None]:
    return lambda workdir: (workdir / relative).symlink_to(target)


def without(key: str) -> Callable[[dict], dict]:
    return lambda record: {k: v for k, v in record.items() if k != key}


def probs(rows: int, classes: int) -> np.ndarray:
    return np.full((rows, classes), 1.0 / classes)


LABELS = np.random.default_rng(1).integers(0, 3, 30)  # conftest.write_run's val and test labels


# ------------------------------------------------------------------------------------------------ the tables

def grid_cases() -> list[Case]:
    eight_by_ten = {key: list(range(1, 11)) for key in ("seed", "width", "batch_size", "epochs", "patience",
                                                        "step_size", "plateau_patience", "snapshots")}
    over_total = {f"s{i}": {"axes": {"seed": list(range(9_000))}} for i in range(6)}  # 54,000 > 50,000
    long_value = "m" * (MAX_POINT_ID_BYTES - 10) + ".pt"
    return [
        Case("grid-8-axes-of-10", ["validate"], "studies.acts.axes", params=edit(**{"studies.acts.axes": eight_by_ten}),
             expect=("100,000,000", f"{MAX_POINTS_PER_STUDY:,}")),
        Case("grid-8-axes-of-10-grid", ["grid"], "studies.acts.axes", params=edit(**{"studies.acts.axes": eight_by_ten})),
        Case("grid-8-axes-of-10-snakemake", SNAKEMAKE_DRY, "studies.acts.axes",
             params=edit(**{"studies.acts.axes": eight_by_ten})),
        Case("grid-blocks-add-up", ["validate"], "studies.acts.axes", expect=("12,000",),
             params=edit(**{"studies.acts.axes": [{"seed": list(range(6_000))},
                                                  {"seed": list(range(6_000, 12_000)), "activation": ["elu"]}]})),
        Case("grid-total-over-cap", ["validate"], "studies", params=edit(studies=over_total),
             expect=("54,000", f"{MAX_POINTS_TOTAL:,}")),
        Case("grid-one-and-one-point-zero", ["validate"], "studies.acts.axes.lr", expect=("1.0", "1"),
             params=edit(**{"studies.acts.axes": {"lr": [0.1, 1, 1.0]}})),
        Case("grid-same-seed-twice", ["validate"], "studies.acts.axes.seed", params=edit(**{"studies.acts.axes": {
            "seed": [0, 1, 0]}})),
        Case("grid-same-list-twice", ["validate"], "studies.acts.axes.regularizers", params=edit(**{
            "studies.acts.axes": {"regularizers": [["l2"], ["dropout"], ["l2"]]}})),
        Case("grid-point-id-too-long", ["validate"], "studies.acts.axes", expect=(f"{MAX_POINT_ID_BYTES}",),
             params=edit(**{"studies.acts.axes": {"finetune_from": [long_value], "seed": [0]}})),
        Case("grid-value-with-slash", ["validate"], "studies.acts.axes.finetune_from",
             params=edit(**{"studies.acts.axes": {"finetune_from": ["runs/model.pt"]}})),
    ]


def name_cases() -> list[Case]:
    def study(name: str) -> Callable[[dict], None]:
        return edit(studies={name: {"axes": dict(ACTS)}})

    return [
        Case("study-name-trailing-newline", ["validate"], "studies", params=study("acts\n"), expect=("U+000A",)),
        Case("study-name-trailing-newline-snakemake", SNAKEMAKE_DRY, "studies", params=study("acts\n")),
        Case("study-name-300-chars", ["validate"], "studies", params=study("s" * 300), expect=("255",)),
        Case("study-name-65-chars", ["validate"], "studies", params=study("s" * 65), expect=("too long",)),
        Case("study-name-tab", ["validate"], "studies", params=study("ac\tts")),
        Case("device-trailing-newline", ["validate"], "train.device", params=edit(**{"train.device": "cpu\n"})),
        Case("device-line-separator", ["validate"], "train.device", params=edit(**{"train.device": "cpu\u2028"})),
        Case("device-newline-on-an-axis", ["validate"], "studies.acts.axes.device.1",
             params=edit(**{"studies.acts.axes": {"device": ["cpu", "cuda:0\n"]}})),
        Case("device-newline-in-base", ["validate"], "studies.acts.base.device",
             params=edit(**{"studies.acts.base": {"device": "cpu\n"}})),
        Case("prefix-trailing-newline", ["validate"], "tracking.experiment_prefix",
             params=edit(**{"tracking.experiment_prefix": "runs\n"})),
        Case("prefix-too-long", ["validate"], "tracking.experiment_prefix",
             params=edit(**{"tracking.experiment_prefix": "p" * 65})),
        Case("tracking-uri-newline", ["validate"], "tracking.uri",
             params=edit(**{"tracking.uri": "sqlite:///mlflow.db\n"})),
        Case("artifacts-trailing-newline", ["validate"], "paths.artifacts", params=edit(**{"paths.artifacts": "art\n"})),
        Case("results-nul", ["validate"], "paths.results", params=edit(**{"paths.results": "res\x00ults"})),
        Case("results-component-too-long", ["validate"], "paths.results", expect=("255",),
             params=edit(**{"paths.results": "results/" + "r" * 256})),
        Case("artifacts-path-too-long", ["validate"], "paths.artifacts", expect=("1,024",),
             params=edit(**{"paths.artifacts": "/".join(["a" * 200] * 6)})),
        Case("imagefolder-path-newline", ["validate"], "data.options.path",
             params=edit(data={"source": "imagefolder", "options": {"path": "images\n"}})),
        Case("cifar-root-escape", ["validate"], "data.options.root",
             params=edit(data={"source": "cifar10", "options": {"root": "data\x1b[2J"}})),
        Case("option-key-newline", ["validate"], "data.options",
             params=edit(data={"source": "imagefolder", "options": {"path\n": "images"}})),
        Case("finetune-from-newline", ["validate"], "train.finetune_from",
             params=edit(**{"train.finetune_from": "model.pt\n"})),
        Case("finetune-from-component-too-long", ["validate"], "train.finetune_from",
             params=edit(**{"train.finetune_from": "m" * 300 + ".pt"})),
        Case("description-escape", ["validate"], "studies.acts.description",
             params=edit(**{"studies.acts.description": "fine\x1b[31m"})),
        Case("note-too-long", ["validate"], "report.paper_table.note",
             params=edit(**{"report.paper_table": {"note": "n" * 10_001}})),
        Case("snakemake-config-device-newline", [*SNAKEMAKE_DRY, "--config", 'train={"device": "cpu\\n"}'],
             "train.device"),
    ]


def run_file_cases() -> list[Case]:
    metrics, history, predictions = f"{RUN}/metrics.json", f"{RUN}/history.csv", f"{RUN}/predictions.npz"
    metrics_damage = {
        "a-list": write(metrics, "[]"), "empty-mapping": write(metrics, "{}"), "truncated": truncate(metrics),
        "binary": write(metrics, b"\x89PNG\r\n\x1a\n" + bytes(range(256))), "a-fifo": fifo(metrics),
        "no-status": edit_json(metrics, without("status")),
        "status-a-number": edit_json(metrics, lambda r: {**r, "status": 3}),
        "unknown-status": edit_json(metrics, lambda r: {**r, "status": "great"}),
        "no-val-loss": edit_json(metrics, without("val_loss")),
        "val-loss-a-string": edit_json(metrics, lambda r: {**r, "val_loss": "low"}),
        "another-points": edit_json(metrics, lambda r: {**r, "point_id": OTHER}),
    }
    predictions_damage = {
        "other-arrays": npz(predictions, x=np.zeros(3)),
        "val-probs-1d": npz(predictions, val_probs=np.zeros(30), val_labels=LABELS),
        "labels-float": npz(predictions, val_probs=probs(30, 3), val_labels=LABELS.astype(float)),
        "labels-out-of-range": npz(predictions, val_probs=probs(30, 3), val_labels=LABELS + 3),
        "labels-other-length": npz(predictions, val_probs=probs(30, 3), val_labels=LABELS[:10]),
        "test-probs-alone": npz(predictions, val_probs=probs(30, 3), val_labels=LABELS, test_probs=probs(30, 3)),
        "snapshots-2d": npz(predictions, val_probs=probs(30, 3), val_labels=LABELS, test_probs=probs(30, 3),
                            test_labels=LABELS, snapshot_val_probs=probs(30, 3)),
        "garbage": write(predictions, b"PK\x03\x04garbage" * 50),
    }
    cases = []
    for name, damage in metrics_damage.items():
        for command in (["ensemble", "--study", "acts"], ["report"], ["train-study", "--study", "acts"]):
            cases.append(Case(f"metrics-{name}-{command[0]}", command, metrics, setup=damage, template="trained"))
    for name, damage in predictions_damage.items():
        for command in (["ensemble", "--study", "acts"], ["report"]):
            cases.append(Case(f"predictions-{name}-{command[0]}", command, predictions, setup=damage,
                              template="trained"))
    cases.append(Case("predictions-other-classes-ensemble", ["ensemble", "--study", "acts"], predictions,
                      setup=npz(predictions, val_probs=probs(30, 4), val_labels=LABELS, test_probs=probs(30, 4),
                                test_labels=LABELS), template="trained", expect=("differs",)))
    history_damage = {"empty": write(history, ""), "header-only": write(history, "epoch,train_loss\n"),
                      "no-seconds-column": write(history, "epoch,train_loss,train_error,val_loss,val_error,lr\n1,1,1,1,1,1\n"),
                      "a-word": write(history, "epoch,train_loss,train_error,val_loss,val_error,lr,seconds\n1,low,1,1,1,1,1\n"),
                      "binary": write(history, bytes(range(256)) * 4)}
    cases += [Case(f"history-{name}-report", ["report"], history, setup=damage, template="trained")
              for name, damage in history_damage.items()]
    cases += [
        Case("diagnostics-a-list-report", ["report"], f"{RUN}/diagnostics.json", template="trained",
             setup=write(f"{RUN}/diagnostics.json", "[1, 2]")),
        Case("diagnostics-entry-without-layer-report", ["report"], f"{RUN}/diagnostics.json", template="trained",
             setup=write(f"{RUN}/diagnostics.json", '{"dead_units": [{"dead_fraction": 0.1, "units": 3}]}')),
        Case("batch-loss-no-loss-column-report", ["report"], f"{RUN}/batch_loss.csv", template="trained",
             setup=write(f"{RUN}/batch_loss.csv", "epoch,batch\n0,0\n")),
        Case("ensemble-json-empty-mapping-report", ["report"], "ensembles/acts.json", template="trained",
             setup=write("artifacts/ensembles/acts.json", "{}")),
        Case("ensemble-json-rows-of-strings-report", ["report"], "ensembles/acts.json", template="trained",
             setup=edit_json("artifacts/ensembles/acts.json", lambda r: {**r, "rows": ["x"]})),
    ]
    manifest = "artifacts/data/manifest.json"
    for name, damage in {"a-list": write(manifest, "[]"), "no-digest": edit_json(manifest, without("digest")),
                         "counts-per-other-classes": edit_json(manifest, lambda r: {**r, "class_counts": {"train": [1]}})
                         }.items():
        for command in (["report"], ["train-study", "--study", "acts"], ["status"],
                        ["train", "--study", "acts", "--point", POINT]):
            cases.append(Case(f"manifest-{name}-{command[0]}", command, "manifest.json", setup=damage,
                              template="trained"))
    return cases


def bounded_read_cases() -> list[Case]:
    readme = ["claims", "--readme"]
    return [
        Case("readme-dev-zero", [*readme, "/dev/zero"], "/dev/zero", expect=("character device",)),
        Case("readme-fifo", [*readme, "README.md"], "README.md", setup=fifo("README.md"), expect=("named pipe",)),
        Case("readme-too-large", [*readme, "README.md"], "README.md", setup=sparse("README.md"), expect=("at most",)),
        Case("readme-a-folder", [*readme, "docs"], "docs", setup=lambda w: (w / "docs").mkdir()),
        Case("readme-missing", [*readme, "NOPE.md"], "NOPE.md"),
        Case("readme-not-utf8", [*readme, "README.md"], "README.md", setup=write("README.md", b"\xff\xfe<!-- x")),
        Case("params-dev-zero", ["--params", "/dev/zero", "validate"], "/dev/zero"),
        Case("params-dev-urandom", ["--params", "/dev/urandom", "grid"], "/dev/urandom"),
        Case("params-fifo", ["--params", "p.yaml", "validate"], "p.yaml", setup=fifo("p.yaml")),
        Case("params-too-large", ["--params", "p.yaml", "validate"], "p.yaml", setup=sparse("p.yaml")),
        Case("params-proc-file", ["--params", "/proc/self/status", "validate"], "/proc/self/status"),
        Case("params-symlink-to-dev-zero", ["--params", "p.yaml", "validate"], "p.yaml",
             setup=link("p.yaml", "/dev/zero")),
    ]


def tracking_cases() -> list[Case]:
    def uri(value: str) -> Callable[[dict], None]:
        return edit(**{"tracking.uri": value})

    no_databricks = {"HOME": "/nonexistent", "DATABRICKS_HOST": "", "DATABRICKS_TOKEN": ""}
    return [
        Case("uri-file", ["validate"], "tracking.uri", params=uri("file:///tmp/mlruns"), expect=("MLFLOW_ALLOW_FILE_STORE",)),
        Case("uri-plain-path", ["validate"], "tracking.uri", params=uri("mlruns"), expect=("file store",)),
        Case("uri-unity-catalog", ["validate"], "tracking.uri", params=uri("uc:databricks-uc"), expect=("sqlite:///",)),
        Case("uri-ftp", ["validate"], "tracking.uri", params=uri("ftp://host/x")),
        Case("uri-sqlite-two-slashes", ["validate"], "tracking.uri", params=uri("sqlite://mlflow.db")),
        Case("env-uri-file-tracking-stage", ["tracking"], "$MLFLOW_TRACKING_URI", env={"MLFLOW_TRACKING_URI": "file:./mlruns"},
             expect=("file store",)),
        Case("env-uri-file-train", ["train", "--study", "acts", "--point", POINT], "$MLFLOW_TRACKING_URI",
             template="ready", env={"MLFLOW_TRACKING_URI": "file:///tmp/mlruns"}),
        Case("databricks-without-credentials", ["tracking"], "DATABRICKS_HOST", params=uri("databricks"),
             env={**no_databricks, "MLFLOW_TRACKING_URI": ""}, expect=("tracking.uri", "DATABRICKS_TOKEN")),
        Case("databricks-profile-without-credentials", ["tracking"], "DATABRICKS_HOST",
             env={**no_databricks, "MLFLOW_TRACKING_URI": "databricks://team"}, expect=("[team]",)),
        Case("databricks-report", ["report"], "DATABRICKS_HOST", template="trained",
             env={**no_databricks, "MLFLOW_TRACKING_URI": "databricks"}),
        Case("postgresql-without-driver", ["tracking"], "tracking.uri", params=uri("postgresql://u:p@127.0.0.1:1/db"),
             env={"MLFLOW_TRACKING_URI": ""}, expect=("driver",)),
        Case("mysql-without-driver", ["tracking"], "$MLFLOW_TRACKING_URI", env={"MLFLOW_TRACKING_URI": "mysql://u@h/db"},
             expect=("driver",)),
    ]


def outside_cases() -> list[Case]:
    allow = {"TRICKBENCH_ALLOW_OUTSIDE": "1"}
    targets = ["/var/lib/dpkg/trickbench-results", "/var/tmp", "/var/cache/tb", "/usr/local/trickbench", "/opt/tb",
               "/srv/tb", "/boot/tb", "/proc/tb", "/sys/tb", "/dev/shm/tb", "/lib64/tb", "/libexec/tb", "/snap/tb",
               "/run/user/tb", "/etc/tb", "/bin/tb", "/sbin/tb", "/root", "/home", "/tmp", "/mnt", "/"]
    cases = [Case(f"outside-{target.strip('/').replace('/', '-') or 'slash'}", ["validate"], "paths.results", env=allow,
                  params=edit(**{"paths.results": target}), expect=("system folder",), outside=(f"{target}/acts",))
             for target in targets]
    cases += [
        Case("outside-symlink-into-var", ["stats"], "paths.artifacts", env=allow, template="ready",
             setup=link("out", "/var/lib"), params=edit(**{"paths.artifacts": "out/artifacts"}), expect=("/var",),
             outside=("/var/lib/artifacts",)),
        Case("outside-dotdot-into-usr", ["validate"], "paths.results", env=allow, expect=("/usr",),
             params=edit(**{"paths.results": "../" * 40 + "usr/share/tb"})),
        Case("outside-snakemake-config", [*SNAKEMAKE_DRY, "--config", 'paths={"results": "/var/cache/tb"}'],
             "paths.results", env=allow),
    ]
    return cases


CASES = [*grid_cases(), *name_cases(), *run_file_cases(), *bounded_read_cases(), *tracking_cases(), *outside_cases()]


# ------------------------------------------------------------------------------------------------ running them

@pytest.fixture(scope="module")
def trained_template(templates, tmp_path_factory) -> Path:  # noqa: F811
    """The prepared project with every point of `acts` finished (conftest.write_run, digests of this data on
    the CPU, as status and train-study check them) and its ensemble table."""
    from trickbench.grid import expand_grid
    from trickbench.io import read_json, write_json
    from trickbench.params import load_params
    from trickbench.paths import Layout
    from trickbench.stages.ensemble import ensemble
    from trickbench.stages.train import run_digest

    root = tmp_path_factory.mktemp("trained")
    shutil.copytree(templates["ready"], root, dirs_exist_ok=True)
    params = load_params(root / "params.yaml")
    layout = Layout(root / "artifacts", root / "results")
    digest = read_json(layout.manifest)["digest"]
    rng = np.random.default_rng(0)
    for point in expand_grid(params):
        write_run(layout, point, rng)
        files = layout.run_files(point.study, point.point_id)
        write_json(files.metrics, {**read_json(files.metrics), "run_digest": run_digest(point, digest, "cpu")})
    ensemble(params, layout, "acts")
    return root


@pytest.fixture(scope="module")
def outcomes(templates, trained_template, tmp_path_factory) -> dict[str, tuple]:  # noqa: F811
    base = tmp_path_factory.mktemp("cases")
    sources = {**templates, "trained": trained_template}
    with ThreadPoolExecutor(max_workers=4) as pool:  # mostly start-up time: four at once on two cores
        runs = pool.map(lambda case: run_case(case, base / case.id, sources[case.template]), CASES)
        return {case.id: outcome for case, *outcome in runs}


def test_the_sweep_covers_every_class():
    assert len({case.id for case in CASES}) == len(CASES)
    assert len(CASES) >= 120


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_v3_fails_cleanly(case, outcomes):
    assert_refused_cleanly(case, *outcomes[case.id])


# ------------------------------------------------------------------------------------------------ what is accepted

def test_the_opt_in_still_allows_a_folder_of_ones_own(tmp_path):
    """The system folders are refused, not everything outside: a folder beside the project is allowed."""
    project = tmp_path / "project"
    project.mkdir()
    params = tiny_params()
    params["paths"] = {"artifacts": str(tmp_path / "elsewhere" / "artifacts"), "results": "results"}
    write_params(project / "params.yaml", params)
    env = {**os.environ, "TRICKBENCH_ALLOW_OUTSIDE": "1"}
    done = subprocess.run([str(BIN / "trickbench"), "validate"], cwd=project, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "elsewhere").exists()


def test_every_system_tree_is_refused_with_the_opt_in():
    from trickbench.folders import system_folder

    for tree in SYSTEM_TREES:
        assert system_folder(Path(tree) / "x") == tree
    assert system_folder(Path("/lib32/x")) == "/lib32" and system_folder(Path("/home/me/results")) is None


def test_a_grid_at_the_caps_is_accepted(tmp_path):
    from trickbench.grid import check_grid

    params = {"studies": {f"s{i}": {"axes": {"seed": list(range(100)), "width": list(range(1, 101))}}
                          for i in range(MAX_POINTS_TOTAL // MAX_POINTS_PER_STUDY)}}
    assert check_grid(params) == MAX_POINTS_TOTAL


def test_a_real_history_and_metrics_pass_the_readers(trained_template):
    """The readers accept what conftest.write_run writes in the train stage's layout (a positive control)."""
    done = subprocess.run([str(BIN / "trickbench"), "train-study", "--study", "acts"], cwd=trained_template,
                          env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 grid points complete" in done.stdout


# ------------------------------------------------------------------------------------------------ status

STATUS_DAMAGE = {
    "metrics.json": [write(f"{RUN}/metrics.json", "[]"), write(f"{RUN}/metrics.json", "{}"),
                     truncate(f"{RUN}/metrics.json"), fifo(f"{RUN}/metrics.json"),
                     edit_json(f"{RUN}/metrics.json", without("run_digest"))],
    "history.csv": [write(f"{RUN}/history.csv", ""), write(f"{RUN}/history.csv", "epoch,seconds\n1,2\n"),
                    lambda w: (w / RUN / "history.csv").unlink()],
    "predictions.npz": [lambda w: (w / RUN / "predictions.npz").unlink()],
}
STATUS_CASES = [(file, index, damage) for file, damages in STATUS_DAMAGE.items() for index, damage in enumerate(damages)]


@pytest.mark.parametrize("file,index,damage", STATUS_CASES, ids=[f"{f}-{i}" for f, i, _ in STATUS_CASES])
def test_status_shows_a_point_with_a_malformed_file_as_corrupt(file, index, damage, trained_template, tmp_path):
    workdir = tmp_path / "project"
    shutil.copytree(trained_template, workdir, symlinks=True)
    damage(workdir)
    before = files_under(tmp_path)
    done = subprocess.run([str(BIN / "trickbench"), "status"], cwd=workdir, capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert files_under(tmp_path) == before
    first, *points = done.stdout.splitlines()
    assert first.startswith("acts: 4 grid points: 3 done, 0 running, 0 failed, 1 corrupt, 0 pending;"), first
    assert "0s" not in first and "nothing left to train" not in first, first
    [line] = points
    assert line.split()[:2] == ["corrupt", POINT] and f"corrupt ({file})" in line, line


def test_a_malformed_file_is_bad_input_and_still_a_value_error():
    from trickbench.errors import BadInput, MalformedFileError, UnreadableFileError

    assert issubclass(MalformedFileError, UnreadableFileError) and issubclass(MalformedFileError, ValueError)
    assert issubclass(MalformedFileError, BadInput)
