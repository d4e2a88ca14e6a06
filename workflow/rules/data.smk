rule tracking:
    output:
        LAYOUT.tracking_record,
    params:
        tb=TB,
        section=section("tracking"),
    log:
        LAYOUT.log("tracking"),
    localrule: True
    shell:
        "{params.tb} tracking > {log} 2>&1"


rule download:
    output:
        LAYOUT.download_record,
    params:
        tb=TB,
        section=section("data"),
    log:
        LAYOUT.log("download"),
    localrule: True
    shell:
        "{params.tb} download > {log} 2>&1"


rule prepare:
    input:
        LAYOUT.download_record,
        # ancient: the store must exist before jobs fan out, but a bookkeeping edit (tracking.*) that
        # rewrites the record reruns no compute
        ancient(LAYOUT.tracking_record),
    output:
        LAYOUT.prepared,
        LAYOUT.manifest,
    params:
        tb=TB,
        section=section("data"),
    log:
        LAYOUT.log("prepare"),
    shell:
        "{params.tb} prepare --no-progress > {log} 2>&1"


rule stats:
    input:
        LAYOUT.prepared,
        LAYOUT.manifest,
    output:
        LAYOUT.stats_json,
        LAYOUT.stats_arrays,
    params:
        tb=TB,
        section=section("stats"),
    log:
        LAYOUT.log("stats"),
    shell:
        "{params.tb} stats > {log} 2>&1"
