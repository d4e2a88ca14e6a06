# trickbench: the whole pipeline for Snakemake. Rules are wiring only; each calls one CLI subcommand.
#   snakemake --cores all                                      (params.yaml)
#   snakemake --cores all --configfile configs/cifar10-local.yaml  (a complete params file, used as is)
from snakemake.utils import min_version

min_version("9.0")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_outputs(),
        # not committed (results/ is): without it a fresh clone would find every target present
        LAYOUT.report_record,
    default_target: True
