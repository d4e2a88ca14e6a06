rule report:
    input:
        all_run_files("metrics.json"),
        all_run_files("history.csv"),
        [f"{ART}/ensembles/{study}.json" for study in PARAMS["studies"]],
        f"{ART}/data/stats.json",
        f"{ART}/data/stats.npz",
    output:
        all_outputs(),
    params:
        section=section("report"),
    log:
        f"{LOGS}/report.log",
    localrule: True
    shell:
        "{TB} report > {log} 2>&1"
