"""`snakemake --lint` reports only what the docs argue: one "specify a conda environment or container" per
rule, because the workflow's software is the pinned lock file (docs/getting-started.md, "How the software
is deployed"). Any other lint (a variable from outside a rule in a shell command, functions mixed with
rules, ...) fails here."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

from conftest import BIN, REPO

ARGUED = "Specify a conda environment or container for each rule."


def snakemake(args, cwd):
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run([str(BIN / "snakemake"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def lints(text):
    """{(what, title)} from Snakemake's lint report: what is 'rule NAME' or 'snakefile PATH'."""
    found, target = set(), None
    for line in text.splitlines():
        header = re.match(r"Lints for (rule \S+|snakefile \S+)", line)
        if header:
            target = header.group(1).rstrip(":")
        elif re.match(r"    \* ", line):
            found.add((target, line.strip()[2:].rstrip(":")))
    return found


def test_only_the_argued_lint_is_left(tmp_path):
    for name in ("Snakefile", "params.yaml"):
        shutil.copy(REPO / name, tmp_path)
    shutil.copytree(REPO / "workflow", tmp_path / "workflow")
    rules = set(snakemake(["--list-rules"], tmp_path).stdout.split()) - {"all"}
    assert {"train", "report"} <= rules
    done = snakemake(["--lint"], tmp_path)
    report = done.stdout + done.stderr
    assert lints(report) == {(f"rule {rule}", ARGUED) for rule in rules}, report[-3000:]
    deployment = (REPO / "docs" / "getting-started.md").read_text()
    assert "conda environment or container" in deployment and "requirements.lock" in deployment
