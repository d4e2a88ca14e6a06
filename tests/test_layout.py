"""One layout: the paths DVC resolves from dvc.yaml and the files a real `snakemake -n` plans are exactly
the ones trickbench.paths.Layout gives (the rules take theirs from it; dvc.yaml, which cannot import
Python, spells them with ${paths.*}), and no rule spells a file name of its own."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, REPO
from trickbench.grid import expand_grid
from trickbench.params import load_params
from trickbench.paths import Layout
from trickbench.report.outputs import curves_table, manifest_file, metrics_file, report_outputs

# params.yaml (one study) and presets of two studies each, with their own paths.artifacts / paths.results
PARAMS_FILES = ["params.yaml", "configs/seed-augmentations.yaml", "configs/seed-learning-rates.yaml"]


def strings(paths) -> list[str]:
    return [str(path) for path in paths]


def expected_dvc_stages(params: dict, layout: Layout) -> dict[str, tuple[list[str], list[str]]]:
    """stage -> (deps, outs) as dvc.yaml should declare them for these params."""
    data = [layout.prepared, layout.manifest, layout.stats_json, layout.stats_arrays]
    stages = {
        "tracking": ([], [layout.tracking_record]),
        "download": ([], [layout.download_record]),
        "prepare": ([layout.download_record], [layout.prepared, layout.manifest]),
        "stats": ([layout.prepared, layout.manifest], [layout.stats_json, layout.stats_arrays]),
    }
    for study in params["studies"]:
        stages[f"train@{study}"] = (data, [layout.study_runs(study)])
    for study in params["studies"]:
        stages[f"ensemble@{study}"] = ([layout.study_runs(study)], [layout.ensemble_json(study)])
    stages["report"] = ([layout.runs_dir, layout.ensembles_dir, layout.manifest, layout.stats_json, layout.stats_arrays],
                        [layout.runs_table, curves_table(layout), metrics_file(layout), manifest_file(layout),
                         layout.report_record])
    return {name: (strings(deps), strings(outs)) for name, (deps, outs) in stages.items()}


def dvc_project(workdir: Path, params_file: str):
    """dvc.yaml with `params_file` as its params.yaml, loaded by DVC itself (interpolation, foreach)."""
    from dvc.repo import Repo

    workdir.mkdir(parents=True)
    shutil.copy(REPO / "dvc.yaml", workdir)
    shutil.copy(REPO / params_file, workdir / "params.yaml")
    Repo.init(str(workdir), no_scm=True).close()
    return Repo(str(workdir))


@pytest.mark.parametrize("params_file", PARAMS_FILES)
def test_dvc_yaml_declares_the_layouts_paths(tmp_path, params_file):
    from dvc.dependency.param import ParamsDependency
    from dvc.dvcfile import load_file

    params = load_params(REPO / params_file)
    layout = Layout.from_params(params)
    repo = dvc_project(tmp_path / "dvc", params_file)
    try:
        declared = {stage.name: ([dep.def_path for dep in stage.deps if not isinstance(dep, ParamsDependency)],
                                 [out.def_path for out in stage.outs])
                    for stage in repo.index.stages}
        project = load_file(repo, os.path.join(repo.root_dir, "dvc.yaml"))  # a relative path is the cwd's
        metrics, plots = project.metrics, project.plots
    finally:
        repo.close()
    assert declared == expected_dvc_stages(params, layout)
    assert metrics == [str(metrics_file(layout))]
    assert plots and all(list(plot.values())[0]["y"].keys() == {str(curves_table(layout))} for plot in plots)


def planned_jobs(output: str) -> list[dict[str, list[str]]]:
    """The jobs of a `snakemake -n` output: rule, and input/output/log/wildcards as lists in their order."""
    jobs: list[dict[str, list[str]]] = []
    for line in output.splitlines():
        rule = re.match(r"^(?:local)?rule (\w+):$", line)
        if rule:
            jobs.append({"rule": [rule.group(1)]})
            continue
        field = re.match(r"^    (input|output|log|wildcards): (.*)$", line)
        if field and jobs:
            jobs[-1][field.group(1)] = field.group(2).split(", ")
    return jobs


@pytest.fixture(scope="module")
def snakemake_plan(tmp_path_factory) -> list[dict[str, list[str]]]:
    """What a real `snakemake -n` plans for the default params.yaml in a fresh copy (nothing built yet)."""
    workdir = tmp_path_factory.mktemp("plan")
    shutil.copy(REPO / "Snakefile", workdir)
    shutil.copy(REPO / "params.yaml", workdir)
    shutil.copytree(REPO / "workflow", workdir / "workflow")
    done = subprocess.run([str(BIN / "snakemake"), "-n", "--cores", "1"], cwd=workdir, capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return planned_jobs(done.stdout + done.stderr)


def jobs_of(plan: list[dict[str, list[str]]], rule: str) -> list[dict[str, list[str]]]:
    return [job for job in plan if job["rule"] == [rule]]


def test_snakemake_data_jobs_read_and_write_the_layouts_files(snakemake_plan):
    layout = Layout.from_params(load_params(REPO / "params.yaml"))
    expected = {  # rule -> (input, output, log)
        "tracking": ([], [layout.tracking_record], [layout.log("tracking")]),
        "download": ([], [layout.download_record], [layout.log("download")]),
        "prepare": ([layout.download_record, layout.tracking_record], [layout.prepared, layout.manifest],
                    [layout.log("prepare")]),
        "stats": ([layout.prepared, layout.manifest], [layout.stats_json, layout.stats_arrays], [layout.log("stats")]),
    }
    for rule, (inputs, outputs, logs) in expected.items():
        [job] = jobs_of(snakemake_plan, rule)
        assert (job.get("input", []), job["output"], job["log"]) == (strings(inputs), strings(outputs), strings(logs)), rule


def test_snakemake_train_jobs_write_the_layouts_run_files(snakemake_plan):
    params = load_params(REPO / "params.yaml")
    layout = Layout.from_params(params)
    data = strings([layout.prepared, layout.manifest, layout.stats_json, layout.stats_arrays, layout.tracking_record])
    planned = {}
    for job in jobs_of(snakemake_plan, "train"):
        wildcards = dict(item.split("=", 1) for item in job["wildcards"])
        planned[wildcards["study"], wildcards["point"]] = (job["input"], job["output"], job["log"])
    assert planned == {
        (point.study, point.point_id): (data, strings(layout.run_files(point.study, point.point_id).outputs.values()),
                                        [str(layout.log("train", point.study, point.point_id))])
        for point in expand_grid(params)}
    # the files of a run lie in its study's folder: what DVC's train stage of that study outputs
    for (study, _), (_, outputs, _) in planned.items():
        assert all(Path(path).parent.parent == layout.study_runs(study) for path in outputs)


def test_snakemake_ensemble_and_report_jobs_write_the_layouts_files(snakemake_plan):
    params = load_params(REPO / "params.yaml")
    layout = Layout.from_params(params)
    run_files = [layout.run_files(point.study, point.point_id) for point in expand_grid(params)]
    ensembles = {job["wildcards"][0]: job for job in jobs_of(snakemake_plan, "ensemble")}
    assert sorted(ensembles) == sorted(f"study={study}" for study in params["studies"])
    for study in params["studies"]:
        job = ensembles[f"study={study}"]
        studied = [files for files in run_files if files.folder.parent == layout.study_runs(study)]
        assert job["output"] == [str(layout.ensemble_json(study))]
        assert job["log"] == [str(layout.log("ensemble", study))]
        assert sorted(job["input"]) == sorted(strings([files.metrics for files in studied] +
                                                      [files.predictions for files in studied]))
    [report] = jobs_of(snakemake_plan, "report")
    assert sorted(report["output"]) == sorted(strings([*report_outputs(params, layout), layout.report_record]))
    assert sorted(report["input"]) == sorted(strings(
        [path for files in run_files for path in (files.metrics, files.history, files.batch_loss, files.diagnostics,
                                                              files.predictions)] +
        [layout.ensemble_json(study) for study in params["studies"]] +
        [layout.manifest, layout.stats_json, layout.stats_arrays]))
    assert report["log"] == [str(layout.log("report"))]


# a quoted string naming a file the pipeline writes (the report captions, *.rst, are the workflow's own)
FILE_NAME = re.compile(r"""["'][^"'\n]*\.(?:json|csv|npz|pt|png|pdf|svg|md|tex|html|log)["']""")


def test_no_rule_spells_a_file_name():
    sources = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    spelled = {path.name: FILE_NAME.findall(path.read_text()) for path in sources}
    assert len(sources) > 1 and {name: found for name, found in spelled.items() if found} == {}


def test_a_log_keeps_a_dotted_point_id_whole():
    layout = Layout(Path("artifacts/x"), Path("results/x"))
    assert layout.log("train", "acts", "activation-leaky_relu_a5.5__seed-0") == \
        Path("artifacts/x/logs/train/acts/activation-leaky_relu_a5.5__seed-0.log")
    assert layout.log("report") == Path("artifacts/x/logs/report.log")
