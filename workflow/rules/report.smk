# Stage report: tables, figures and the diagnosis of every study. Each output is marked report(...) with a
# caption in workflow/report/, so `snakemake --report results/report.html` (after a run) browses them;
# which files exist and where they are shown comes from trickbench.report.outputs (a function of params).
from trickbench.versions.manifest import report_description


report: "../report/workflow.rst"
# what the description names (its Jinja sees snakemake.config): the commit and params digest of the manifest
config["trickbench_versions"] = report_description(PARAMS, LAYOUT)


rule report:
    input:
        all_run_files("metrics"),
        all_run_files("history"),
        all_run_files("batch_loss"),
        all_run_files("diagnostics"),
        all_run_files("predictions"),
        [LAYOUT.ensemble_json(study) for study in PARAMS["studies"]],
        LAYOUT.manifest,
        LAYOUT.stats_json,
        LAYOUT.stats_arrays,
    output:
        marked_report_outputs(),
        LAYOUT.report_record,
    params:
        tb=TB,
        section=section("report"),
    log:
        LAYOUT.log("report"),
    localrule: True
    shell:
        "{params.tb} report > {log} 2>&1"
