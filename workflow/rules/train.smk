rule train:
    input:
        f"{ART}/data/prepared.npz",
        f"{ART}/data/manifest.json",
        f"{ART}/data/stats.json",
        f"{ART}/data/stats.npz",
        ancient(f"{ART}/tracking.json"),  # see rule prepare: tracking.* edits rerun no train job
        finetune_from,
    output:
        metrics=run_file("metrics.json"),
        history=run_file("history.csv"),
        batch_loss=run_file("batch_loss.csv"),
        predictions=run_file("predictions.npz"),
        model=run_file("model.pt"),
        diagnostics=run_file("diagnostics.json"),
    params:
        config=point_config,
    threads: PARAMS["resources"]["threads"]
    resources:
        # a counter only: limits parallel jobs with `--resources gpu=N` (profiles/gpu-workstation); which
        # device a job uses is chosen by `trickbench train` (trickbench.slots); on SLURM it becomes --gpus
        gpu=1,
    log:
        f"{LOGS}/train/{{study}}/{{point}}.log",
    shell:
        "{TB} train --study {wildcards.study} --point {wildcards.point} > {log} 2>&1"


rule ensemble:
    input:
        study_run_files("metrics.json"),
        study_run_files("predictions.npz"),
    output:
        f"{ART}/ensembles/{{study}}.json",
    params:
        section=section("ensemble"),
    log:
        f"{LOGS}/ensemble/{{study}}.log",
    localrule: True
    shell:
        "{TB} ensemble --study {wildcards.study} > {log} 2>&1"
