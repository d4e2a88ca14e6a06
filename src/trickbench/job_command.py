"""The `trickbench` command line every Snakemake job runs, given to its rule as a `params` value.

Every job reads the params the Snakefile planned with: the same params file and the same `--config`
overrides (`trickbench --params FILE --overrides JSON`). Snakemake reruns a job when a params value it can
record changes (str, numbers, containers: `persistence._serialize_param_builtin`) and skips the values it
cannot. This command must not be a rerun trigger: it changes with the spelling of the file name or with an
override of a section the job does not read, and what a job does read is already its `section` param. So
it is an object, not a str; the shell sees `str(command)`.
"""
from __future__ import annotations

import json
import shlex
from typing import Any


class JobCommand:
    """`trickbench --params FILE [--overrides JSON]`, quoted for the shell."""

    def __init__(self, params_file: str, overrides: dict[str, Any]):
        self.params_file = params_file
        self.overrides = overrides

    def __str__(self) -> str:
        words = ["trickbench", "--params", shlex.quote(self.params_file)]
        if self.overrides:
            words += ["--overrides", shlex.quote(json.dumps(self.overrides, sort_keys=True))]
        return " ".join(words)

    def __repr__(self) -> str:
        return f"JobCommand({str(self)!r})"
