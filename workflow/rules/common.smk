# Load and validate the params once (the same schema and code the CLI and DVC's stages use), expand the grid.
import json
import sys

from snakemake.io import report as report_flag

from trickbench.grid import expand_grid
from trickbench.job_command import JobCommand
from trickbench.params import ParamsError, load_params, typed_overrides
from trickbench.paths import Layout
from trickbench.report.outputs import report_entries, report_outputs

# `--configfile X` names a complete params file used as is (Snakemake would deep-merge it into params.yaml);
# `--config key=value` (config_settings.config: only what the command line gave) is deep-merged over it
PARAMS_FILE = str(workflow.overwrite_configfiles[-1]) if workflow.overwrite_configfiles else "params.yaml"
OVERRIDES = typed_overrides(workflow.config_settings.config)
try:
    PARAMS = load_params(PARAMS_FILE, OVERRIDES)
except ParamsError as error:
    # one line and exit 2, as the CLI (sys.exit("...") would make Snakemake exit 1)
    print(f"trickbench: error: {error}", file=sys.stderr)
    sys.exit(2)
# every path a rule names comes from LAYOUT, the layout the CLI writes (no file name is spelled in a rule);
# a wildcard passes through as itself: LAYOUT.ensemble_json("{study}") is artifacts/ensembles/{study}.json
LAYOUT = Layout.from_params(PARAMS)
# every job validates the same file with the same overrides, so it sees exactly PARAMS; each rule passes it
# as `params: tb=TB` (shell: "{params.tb} ..."), a value Snakemake does not record (trickbench.job_command)
TB = JobCommand(PARAMS_FILE, OVERRIDES)
# Expanded once: the input/params functions below run per job, and a 1,000-point DAG would otherwise
# expand the grid 1,000 times (benchmarks/pipeline_overhead.py).
GRID = expand_grid(PARAMS)
POINTS = {(p.study, p.point_id): p for p in GRID}
STUDY_POINTS = {study: [p for p in GRID if p.study == study] for study in PARAMS["studies"]}


def section(*keys):
    """The JSON of exactly the params a job reads: Snakemake reruns the job when, and only when, it changes."""
    return json.dumps({key: PARAMS[key] for key in keys}, sort_keys=True)


def point_config(wildcards):
    return json.dumps(POINTS[(wildcards.study, wildcards.point)].config, sort_keys=True)


def finetune_from(wildcards):
    """A fine-tuning run depends on the model it starts from: retraining that reruns this one."""
    point = POINTS[(wildcards.study, wildcards.point)]
    return [point.config["finetune_from"]] if point.config["finetune_from"] else []


def study_run_files(name):
    """One output of every run (a name of RunFiles.outputs: "metrics", ...) of the study a job's wildcards name."""
    return lambda wildcards: [LAYOUT.run_files(wildcards.study, p.point_id).outputs[name]
                              for p in STUDY_POINTS[wildcards.study]]


def all_run_files(name):
    return [LAYOUT.run_files(p.study, p.point_id).outputs[name] for p in GRID]


def all_outputs():
    return report_outputs(PARAMS, LAYOUT)


def marked_report_outputs():
    """The report's outputs, each marked report(...) with its caption (paths relative to rules/report.smk)."""
    return [
        report_flag(str(entry.path), caption=f"../report/{entry.caption}.rst", category=entry.category,
                    subcategory=entry.subcategory)
        if entry.caption else str(entry.path)
        for entry in report_entries(PARAMS, LAYOUT)
    ]


wildcard_constraints:
    study=r"[A-Za-z0-9][A-Za-z0-9_-]*",
    point=r"[A-Za-z0-9_.+=-]+",
