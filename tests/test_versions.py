"""Versioned results (#17): the manifest, `trickbench diff` (two folders, two real commits), the lock written
after a Snakemake run against DVC's own, and push -> fresh clone -> pull -> nothing to do, for both engines.

The first part is fast (synthetic results folders, a temporary git repository); the engine runs are `slow`.
"""
from __future__ import annotations

import copy
import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import BIN, REPO, mlflow_runs, tiny_params, write_params
from trickbench import cli
from trickbench.versions import diff as versions_diff, engines, manifest as results_manifest
from trickbench.io import read_json, write_json

GIT_ID = ["-c", "user.email=test@trickbench", "-c", "user.name=test"]
MACHINE = {"cpu": "Test CPU (2 logical CPUs)", "gpu": "none", "torch": "2.0", "cuda": "none", "cudnn": "none",
           "threads": 1, "python": "3.11.7"}
RUN_COLUMNS = ["study", "point_id", "status", "activation", "seed", "test_error", "test_loss", *MACHINE, "git_commit"]


# ------------------------------------------------------------------------------------------ synthetic folders

def records(test_errors: dict[str, float], commit: str = "a" * 40, machine: dict | None = None) -> list[dict]:
    return [{"study": "acts", "point_id": point, "status": "completed", "run_digest": f"digest-{point}",
             "mlflow_run_id": f"run-{point}", "test_error": error, "test_loss": 2 * error,
             "provenance": {**(machine or MACHINE), "git_commit": commit}}
            for point, error in test_errors.items()]


def results_folder(folder: Path, params: dict, test_errors: dict[str, float], data_digest: str = "d" * 64,
                   commit: str = "a" * 40, machine: dict | None = None, seconds: float = 10.0,
                   manifest: bool = True) -> Path:
    """A results folder as the report stage leaves it: runs.csv, metrics.json, a table's csv, the manifest."""
    runs = records(test_errors, commit, machine)
    (folder / "acts").mkdir(parents=True, exist_ok=True)
    with open(folder / "runs.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, RUN_COLUMNS)
        writer.writeheader()
        for run in runs:
            activation, seed = run["point_id"].split("__")
            writer.writerow({**{k: run[k] for k in ("study", "point_id", "status", "test_error", "test_loss")},
                             "activation": activation, "seed": seed, **run["provenance"]})
    write_json(folder / "metrics.json", {"acts": {"runs": len(runs), "best_single": {"test_error": min(test_errors.values())}}})
    with open(folder / "acts" / "summary.csv", "w", newline="") as handle:
        handle.write("activation,test_error_mean,n\n")
        for point, error in test_errors.items():
            handle.write(f"{point.split('__')[0]},{error},1\n")
    (folder / "data").mkdir(exist_ok=True)
    (folder / "data" / "class_counts.md").write_text(f"Images per class of `digits` (data digest {data_digest[:12]}); ...\n")
    if manifest:
        results_manifest.write_manifest(folder / versions_diff.MANIFEST, results_manifest.build_manifest(
            params, {"acts": runs}, data_digest, {"acts": "summary-run"},
            {"acts": {"experiment": "trickbench-acts", "experiment_id": "1"}}, {"acts": seconds}, commit,
            {"name": "snakemake", "version": "9.27.1"}))
    return folder


ERRORS = {"relu__seed-0": 0.05, "rrelu__seed-0": 0.04}


def test_manifest_is_the_same_for_the_same_work_except_its_timing(tmp_path):
    params = tiny_params()
    one = read_json(results_folder(tmp_path / "one", params, ERRORS, seconds=10.0) / versions_diff.MANIFEST)
    two = read_json(results_folder(tmp_path / "two", copy.deepcopy(params), ERRORS, seconds=12.5) / versions_diff.MANIFEST)
    assert one["timing"] != two["timing"]
    assert {k: v for k, v in one.items() if k != "timing"} == {k: v for k, v in two.items() if k != "timing"}
    assert one["mlflow"]["acts"]["run_ids"] == {p: f"run-{p}" for p in ERRORS}
    assert one["mlflow"]["acts"]["summary_run_id"] == "summary-run"
    assert one["machines"] == [{**MACHINE, "runs": 2}]
    edited = copy.deepcopy(params)
    edited["train"]["lr"] = 0.5
    three = read_json(results_folder(tmp_path / "three", edited, ERRORS) / versions_diff.MANIFEST)
    changed = {k for k in one["params"]["sections"] if one["params"]["sections"][k] != three["params"]["sections"][k]}
    assert changed == {"train"} and one["params"]["digest"] != three["params"]["digest"]


def test_engine_is_detected_from_the_environment(monkeypatch):
    monkeypatch.delenv("TRICKBENCH_ENGINE", raising=False)
    monkeypatch.delenv("DVC_STAGE", raising=False)
    assert engines.detect_engine()["name"] == "cli"  # pytest is no engine
    monkeypatch.setenv("DVC_STAGE", "report")
    engine = engines.detect_engine()
    assert engine["name"] == "dvc" and re.fullmatch(r"\d+\.\d+.*", engine["version"])
    monkeypatch.setenv("TRICKBENCH_ENGINE", "snakemake")
    assert engines.detect_engine()["name"] == "snakemake"


def test_footer_names_params_and_data_digests_in_one_line():
    params = tiny_params()
    line = results_manifest.extend_footer("_Runs made on Test CPU, git abc._", params, "e" * 64)
    assert line.startswith("_Runs made on Test CPU, git abc; params ") and line.endswith(f", data {'e' * 12}._")
    assert "\n" not in line
    edited = copy.deepcopy(params)
    edited["train"]["epochs"] = 99
    assert results_manifest.extend_footer("_Runs x._", edited, "e" * 64) != results_manifest.extend_footer("_Runs x._", params, "e" * 64)


def diff_output(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["diff", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_diff_of_two_folders_names_changed_metrics_and_why(tmp_path, capsys):
    params = tiny_params()
    a = results_folder(tmp_path / "a", params, ERRORS)
    edited = copy.deepcopy(params)
    edited["train"]["lr"] = 0.01
    b = results_folder(tmp_path / "b", edited, {"relu__seed-0": 0.05, "rrelu__seed-0": 0.03})
    code, out, _ = diff_output(capsys, str(a), str(b))
    assert code == 0
    assert "params: changed (train)" in out and "data: same" in out and "code: same" in out and "machine: same" in out
    assert "acts/rrelu__seed-0: test_error: 0.04 -> 0.03 (-0.01)" in out
    assert "acts/rrelu__seed-0: test_loss: 0.08 -> 0.06 (-0.02)" in out
    assert "acts.best_single.test_error: 0.04 -> 0.03 (-0.01)" in out
    assert "rrelu: test_error_mean: 0.04 -> 0.03" in out  # acts/summary.csv, keyed by activation
    assert "relu__seed-0: test_error" not in out.replace("rrelu__seed-0", "")  # unchanged numbers are not listed
    assert "seed" not in re.sub(r"__seed-0", "", out)  # the seed column is an axis, not a metric


def test_diff_says_data_code_and_machine_changed(tmp_path, capsys):
    params = tiny_params()
    a = results_folder(tmp_path / "a", params, ERRORS)
    b = results_folder(tmp_path / "b", params, ERRORS, data_digest="f" * 64, commit="b" * 40,
                       machine={**MACHINE, "cpu": "Other CPU (8 logical CPUs)", "threads": 4})
    code, out, _ = diff_output(capsys, str(a), str(b))
    assert code == 0
    assert "0 number(s) changed" in out and "params: same" in out
    assert f"data: changed ({'d' * 12} -> {'f' * 12})" in out
    assert f"code: changed ({'a' * 12} -> {'b' * 12})" in out
    assert "machine: changed (Test CPU (2 logical CPUs), 1 thread(s)" in out and "Other CPU (8 logical CPUs), 4 thread(s)" in out


def test_diff_without_manifests_reads_the_runs_provenance(tmp_path, capsys):
    params = tiny_params()
    a = results_folder(tmp_path / "a", params, ERRORS, manifest=False)
    b = results_folder(tmp_path / "b", params, {"relu__seed-0": 0.06, "rrelu__seed-0": 0.04}, commit="c" * 40,
                       manifest=False)
    code, out, _ = diff_output(capsys, str(a), str(b))
    assert code == 0
    # the data digest is read from manifests only, never from a table's caption (class_counts.md names it)
    assert "params: unknown" in out and "data: unknown" in out and f"code: changed ({'a' * 12} -> {'c' * 12})" in out
    assert "machine: same" in out and "acts/relu__seed-0: test_error: 0.05 -> 0.06 (+0.01)" in out


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *GIT_ID, *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_diff_between_two_commits_of_a_repository(tmp_path, capsys):
    """Two real commits: results/ (the default pipeline) and results/preset/ (a preset whose params file is
    configs/preset.yaml, and whose folder has no manifest: why is read from the commits' params files)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    params = tiny_params()
    write_params(repo / "params.yaml", params)
    preset = copy.deepcopy(params)
    preset["paths"]["results"] = "results/preset"
    (repo / "configs").mkdir()
    write_params(repo / "configs" / "preset.yaml", preset)
    results_folder(repo / "results", params, ERRORS)
    results_folder(repo / "results" / "preset", preset, ERRORS, manifest=False)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    first = git(repo, "rev-parse", "HEAD")

    preset["train"]["epochs"] = 7
    write_params(repo / "configs" / "preset.yaml", preset)
    results_folder(repo / "results" / "preset", preset, {"relu__seed-0": 0.05, "rrelu__seed-0": 0.02}, manifest=False)
    git(repo, "commit", "-qam", "second: the preset retrained")

    code, out, _ = diff_output(capsys, first[:7], "HEAD", "--root", str(repo))
    assert code == 0, out
    default, preset_part = out.split("\nresults/preset: ")
    assert "results: 0 number(s) changed" in default and "params: same" in default
    assert preset_part.startswith("4 number(s) changed")  # runs.csv (error, loss), metrics.json, summary.csv
    assert "params: changed (train) (from the commits' params files)" in preset_part
    assert "acts/rrelu__seed-0: test_error: 0.04 -> 0.02 (-0.02)" in preset_part
    assert git(repo, "status", "--porcelain") == ""  # nothing written into the repository

    # the preset's folder gets a manifest; the first commit's has none: both sides are then read from the
    # params files (a manifest's validated sections never compared with a raw file's)
    from trickbench.params import validate

    results_folder(repo / "results" / "preset", validate(preset), {"relu__seed-0": 0.05, "rrelu__seed-0": 0.02})
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "third: the preset's manifest")
    code, out, _ = diff_output(capsys, first[:7], "HEAD", "--root", str(repo))
    assert code == 0, out
    assert "params: changed (train) (from the commits' params files)" in out.split("\nresults/preset: ")[1]


@pytest.mark.parametrize("argv, culprit", [
    (["no-such-folder", "HEAD"], "no-such-folder: neither a results folder nor a git commit"),
    (["{empty}", "{empty}"], "not a results folder"),
])
def test_diff_bad_input_is_one_line_and_exit_2(tmp_path, argv, culprit):
    (tmp_path / "empty").mkdir()
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "commit", "-q", "--allow-empty", "-m", "empty")
    argv = [a.replace("{empty}", str(tmp_path / "empty")) for a in argv]
    done = subprocess.run([str(BIN / "trickbench"), "diff", *argv, "--root", str(repo)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and culprit in done.stderr and done.stderr.startswith("trickbench diff: error: ")


@pytest.mark.parametrize("command", ["lock", "pull"])
def test_lock_and_pull_outside_a_dvc_project_is_bad_input(tmp_path, command):
    done = subprocess.run([str(BIN / "trickbench"), command, "--root", str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert f"{tmp_path / 'dvc.yaml'}: missing" in done.stderr and not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------ the engines

POINTS = ["activation-relu__seed-0", "activation-relu__seed-1", "activation-rrelu__seed-0", "activation-rrelu__seed-1"]
# written anew by every run of the same work: MLflow run ids and the seconds per epoch
VOLATILE = {"metrics.json", "history.csv", "progress.json"}  # run ids, seconds, pid and host


def engine_env(workdir: Path) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONPATH": str(REPO / "src"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}


def run(command: list[str], workdir: Path, env_from: Path | None = None) -> str:
    done = subprocess.run(command, cwd=workdir, env=engine_env(env_from or workdir), capture_output=True,
                          text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def new_project(target: Path) -> Path:
    """The tiny pipeline in a git repository of its own, with DVC initialised and a first commit."""
    target.mkdir(parents=True)
    for name in ("Snakefile", "dvc.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(REPO / name, target)
    shutil.copytree(REPO / "workflow", target / "workflow")
    shutil.copytree(REPO / ".dvc", target / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache", "config.local"))
    write_params(target / "params.yaml", tiny_params())
    git(target, "init", "-q")
    git(target, "add", "-A")
    git(target, "commit", "-qm", "the pipeline")
    return target


def commit_and_push(workdir: Path, remote: Path) -> None:
    run([str(BIN / "dvc"), "remote", "add", "-d", "test", str(remote)], workdir)
    run([str(BIN / "dvc"), "push"], workdir)
    git(workdir, "add", "-A")
    git(workdir, "commit", "-qm", "a run: dvc.lock and results")


@pytest.fixture(scope="module")
def snakemake_first(tmp_path_factory):
    workdir = new_project(tmp_path_factory.mktemp("versions") / "smk")
    run([str(BIN / "snakemake"), "--cores", "2", "--quiet"], workdir)
    lock_line = run([str(BIN / "trickbench"), "lock"], workdir)
    assert "7 stages recorded" in lock_line
    commit_and_push(workdir, workdir.parent / "remote-smk")
    return workdir


@pytest.fixture(scope="module")
def dvc_first(tmp_path_factory):
    workdir = new_project(tmp_path_factory.mktemp("versions") / "dvc")
    # another preset's folder and the claims live under results/ too: DVC must neither delete nor hash them
    (workdir / "results" / "other-preset").mkdir(parents=True)
    (workdir / "results" / "other-preset" / "runs.csv").write_text("study,point_id\n")
    (workdir / "results" / "claims.md").write_text("claims\n")
    run([str(BIN / "dvc"), "repro"], workdir)
    commit_and_push(workdir, workdir.parent / "remote-dvc")
    return workdir


def lock_of(workdir: Path) -> dict:
    return yaml.safe_load((workdir / "dvc.lock").read_text())["stages"]


def dir_listing(workdir: Path, md5: str) -> dict[str, str]:
    """The files of a directory out, from DVC's cache (<md5>.dir: the md5 of each file)."""
    name = md5.removesuffix(".dir")
    listing = json.loads((workdir / ".dvc/cache/files/md5" / name[:2] / f"{name[2:]}.dir").read_text())
    return {entry["relpath"]: entry["md5"] for entry in listing}


@pytest.mark.slow
def test_snakemake_lock_is_the_lock_dvc_writes(snakemake_first, dvc_first):
    """`make run` (snakemake, then `trickbench lock`) and `dvc repro` leave the same lock: the same stages,
    commands, params and outputs, and the same md5 for every output whose content is deterministic."""
    smk, dvc = lock_of(snakemake_first), lock_of(dvc_first)
    assert list(smk) == list(dvc) == ["tracking", "download", "prepare", "stats", "train@acts", "ensemble@acts", "report"]
    for stage in smk:
        assert smk[stage]["cmd"] == dvc[stage]["cmd"], stage
        assert smk[stage].get("params") == dvc[stage].get("params"), stage
        assert [o["path"] for o in smk[stage]["outs"]] == [o["path"] for o in dvc[stage]["outs"]], stage
    outs = lambda lock, stage: {o["path"]: o["md5"] for o in lock[stage]["outs"]}  # noqa: E731
    for stage in ("download", "prepare", "stats"):
        assert outs(smk, stage) == outs(dvc, stage), stage
        assert {d["path"]: d["md5"] for d in smk[stage].get("deps", [])} == \
            {d["path"]: d["md5"] for d in dvc[stage].get("deps", [])}, stage
    smk_runs = dir_listing(snakemake_first, outs(smk, "train@acts")["artifacts/runs/acts"])
    dvc_runs = dir_listing(dvc_first, outs(dvc, "train@acts")["artifacts/runs/acts"])
    # six outputs per point and its progress record (trickbench status: pid, host, seconds)
    assert set(smk_runs) == set(dvc_runs) and len(smk_runs) == 7 * len(POINTS)
    differ = {path for path in smk_runs if smk_runs[path] != dvc_runs[path]}
    assert {Path(p).name for p in differ} <= VOLATILE, differ  # models, predictions, batch losses: identical
    # the results both engines committed: the same numbers
    for name in ("acts/summary.csv", "acts/paper_table.csv", "acts/ensembles.csv"):
        assert (snakemake_first / "results" / name).read_text() == (dvc_first / "results" / name).read_text(), name
    smk_manifest = read_json(snakemake_first / "results/manifest.json")
    dvc_manifest = read_json(dvc_first / "results/manifest.json")
    assert smk_manifest["engine"]["name"] == "snakemake" and dvc_manifest["engine"]["name"] == "dvc"
    for key in ("params", "data_digest", "machines", "runs"):
        assert smk_manifest[key] == dvc_manifest[key], key
    # after the Snakemake run and the lock, DVC has nothing to do either
    assert "Running stage" not in run([str(BIN / "dvc"), "repro"], snakemake_first)


@pytest.mark.slow
def test_lock_tags_each_mlflow_run_with_its_stage_entry(snakemake_first):

    lock = lock_of(snakemake_first)
    manifest = read_json(snakemake_first / "results/manifest.json")["mlflow"]["acts"]
    runs = {r.info.run_id: r for r in mlflow_runs(f"sqlite:///{snakemake_first / 'mlflow.db'}", "trickbench-acts")}
    for run_id in manifest["run_ids"].values():
        tags = runs[run_id].data.tags
        assert tags["trickbench.dvc_stage"] == "train@acts"
        assert tags["trickbench.dvc_stage_md5"] == engines.stage_lock_md5(lock["train@acts"])
        assert tags["mlflow.source.git.commit"] and tags["trickbench.params_digest"] and tags["trickbench.data_digest"]
    summary = runs[manifest["summary_run_id"]].data.tags
    assert summary["trickbench.dvc_stage_md5"] == engines.stage_lock_md5(lock["report"])
    params_digest = read_json(snakemake_first / "results/manifest.json")["params"]["digest"]
    assert summary["trickbench.params_digest"] == params_digest and summary["mlflow.source.git.commit"]


@pytest.mark.slow
def test_dvc_leaves_other_presets_and_claims_alone(dvc_first):
    assert (dvc_first / "results/other-preset/runs.csv").read_text() == "study,point_id\n"
    assert (dvc_first / "results/claims.md").read_text() == "claims\n"
    (dvc_first / "results/claims.md").write_text("claims, redone\n")  # `trickbench claims` rewrote them
    try:
        assert "up to date" in run([str(BIN / "dvc"), "status"], dvc_first)
    finally:
        (dvc_first / "results/claims.md").write_text("claims\n")
    record = read_json(dvc_first / "artifacts/report.json")  # the lock hashes the record, which hashes each table
    assert record["sha256"]["results/acts/summary.md"] and set(record["sha256"]) == set(record["outputs"])


def fresh_clone_pull(origin: Path, target: Path) -> Path:
    git(origin.parent, "clone", "-q", str(origin), str(target))
    assert not (target / "artifacts").exists()
    assert "pull: artifacts checked out" in run([str(BIN / "trickbench"), "pull"], target)
    return target


@pytest.mark.parametrize("engine", ["snakemake_first", "dvc_first"])
@pytest.mark.slow
def test_fresh_clone_pull_has_nothing_to_do(engine, request, tmp_path):
    """run -> dvc push -> fresh git clone -> `trickbench pull` (make pull): data, checkpoints and predictions
    are back, and neither `dvc repro` nor `snakemake` has anything to do; a params edit then reruns exactly
    what it touches under both."""
    origin = request.getfixturevalue(engine)
    clone = fresh_clone_pull(origin, tmp_path / "clone")
    for path in ("artifacts/data/prepared.npz", "artifacts/data/stats.npz", "artifacts/report.json",
                 *(f"artifacts/runs/acts/{p}/{name}" for p in POINTS for name in ("model.pt", "predictions.npz"))):
        assert (clone / path).read_bytes() == (origin / path).read_bytes(), path
    assert "Data and pipelines are up to date" in run([str(BIN / "dvc"), "status"], clone)
    assert "Nothing to be done" in run([str(BIN / "snakemake"), "-n", "--cores", "1"], clone)
    assert "Running stage" not in run([str(BIN / "dvc"), "repro", "--dry"], clone)
    assert git(clone, "status", "--porcelain") == ""  # results/ and dvc.lock as committed

    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["report"]["dpi"] = 90
    write_params(clone / "params.yaml", params)
    jobs = re.findall(r"^rule (\w+):", run([str(BIN / "snakemake"), "-n", "--cores", "1"], clone), flags=re.M)
    assert sorted(jobs) == ["all", "report"]
    assert "report:" in run([str(BIN / "dvc"), "status"], clone) and "train@acts" not in run([str(BIN / "dvc"), "status"], clone)


@pytest.mark.slow
def test_params_and_metrics_diff_against_the_last_commit(dvc_first):
    """After an edit of train.lr: `dvc params diff` names it; after `dvc repro`, `dvc metrics diff` shows the
    headline numbers that moved, against the committed lock and results."""
    params = yaml.safe_load((dvc_first / "params.yaml").read_text())
    params["train"]["lr"] = 0.01
    write_params(dvc_first / "params.yaml", params)
    assert re.search(r"params\.yaml\s+train\.lr\s+0\.05\s+0\.01", run([str(BIN / "dvc"), "params", "diff"], dvc_first))
    status = run([str(BIN / "dvc"), "status"], dvc_first)
    assert "train@acts" in status and "prepare" not in status
    ran = re.findall(r"Running stage '([^']+)'", run([str(BIN / "dvc"), "repro"], dvc_first))
    assert sorted(ran) == ["ensemble@acts", "report", "train@acts"]
    metrics = run([str(BIN / "dvc"), "metrics", "diff"], dvc_first)
    assert re.search(r"results/metrics\.json\s+acts\.best_single\.test_error\s+\S+\s+\S+\s+-?\d", metrics), metrics
    out = run([str(BIN / "trickbench"), "diff", "HEAD", "results"], dvc_first)
    assert "params: changed (train)" in out and "code: same" in out and "acts/activation-relu__seed-0: test_error" in out


@pytest.mark.slow
def test_snakemake_report_names_the_commit_and_params_digest(snakemake_first, tmp_path):
    manifest = read_json(snakemake_first / "results/manifest.json")
    run([str(BIN / "snakemake"), "--cores", "1", "--report", str(tmp_path / "report.html")], snakemake_first)
    html = (tmp_path / "report.html").read_text()
    commit, digest = manifest["git_commit"], manifest["params"]["digest"][:12]
    assert re.search(rf"made by git commit .{{0,120}}{re.escape(commit)}.{{0,200}}params digest .{{0,80}}{digest}", html)
    footer = (snakemake_first / "results/acts/summary.md").read_text().strip().splitlines()[-1]
    assert footer.endswith(f"; params {digest}, data {manifest['data_digest'][:12]}._")
