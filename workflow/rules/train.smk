rule train:
    input:
        LAYOUT.prepared,
        LAYOUT.manifest,
        LAYOUT.stats_json,
        LAYOUT.stats_arrays,
        ancient(LAYOUT.tracking_record),  # see rule prepare: tracking.* edits rerun no train job
        finetune_from,
    output:
        # named: metrics, history, batch_loss, predictions, model, diagnostics
        **LAYOUT.run_files("{study}", "{point}").outputs,
    params:
        tb=TB,
        config=point_config,
    threads: PARAMS["resources"]["threads"]
    resources:
        # a counter only: limits parallel jobs with `--resources gpu=N` (profiles/gpu-workstation); which
        # device a job uses is chosen by `trickbench train` (trickbench.slots); on SLURM it becomes --gpus
        gpu=1,
    log:
        LAYOUT.log("train", "{study}", "{point}"),
    shell:
        "{params.tb} train --study {wildcards.study} --point {wildcards.point} > {log} 2>&1"


rule ensemble:
    input:
        study_run_files("metrics"),
        study_run_files("predictions"),
    output:
        LAYOUT.ensemble_json("{study}"),
    params:
        tb=TB,
        section=section("ensemble"),
    log:
        LAYOUT.log("ensemble", "{study}"),
    localrule: True
    shell:
        "{params.tb} ensemble --study {wildcards.study} > {log} 2>&1"
