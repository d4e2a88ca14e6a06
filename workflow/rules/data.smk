rule tracking:
    output:
        f"{ART}/tracking.json",
    params:
        section=section("tracking"),
    log:
        f"{LOGS}/tracking.log",
    localrule: True
    shell:
        "{TB} tracking > {log} 2>&1"


rule download:
    output:
        f"{ART}/raw/download.json",
    params:
        section=section("data"),
    log:
        f"{LOGS}/download.log",
    localrule: True
    shell:
        "{TB} download > {log} 2>&1"


rule prepare:
    input:
        f"{ART}/raw/download.json",
        # ancient: the store must exist before jobs fan out, but a bookkeeping edit (tracking.*) that
        # rewrites the record reruns no compute
        ancient(f"{ART}/tracking.json"),
    output:
        f"{ART}/data/prepared.npz",
        f"{ART}/data/manifest.json",
    params:
        section=section("data"),
    log:
        f"{LOGS}/prepare.log",
    shell:
        "{TB} prepare --no-progress > {log} 2>&1"


rule stats:
    input:
        f"{ART}/data/prepared.npz",
        f"{ART}/data/manifest.json",
    output:
        f"{ART}/data/stats.json",
        f"{ART}/data/stats.npz",
    params:
        section=section("stats"),
    log:
        f"{LOGS}/stats.log",
    shell:
        "{TB} stats > {log} 2>&1"
