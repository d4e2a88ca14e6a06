"""Bad input, swept through the real entry points: malformed params files and wrong CLI calls, each as a
subprocess of `trickbench` (a few through `snakemake -n`). Each must exit non-zero with one clear line
on stderr that names the culprit (key or file), print no traceback and write nothing.

tests/test_params.py covers the schema's messages unit by unit; this module checks what a user sees.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from conftest import BIN, REPO, tiny_params, write_params

POINT = "activation-relu__seed-0"


@dataclass
class Case:
    id: str
    argv: list[str]  # after `trickbench` (or the whole command if it starts with "snakemake")
    culprit: str  # must appear in the error line
    params: Callable[[dict], Any] | str | None = None  # edit of the tiny params, or the file's raw text
    setup: Callable[[Path], None] | None = None  # damage the ready project
    prepared: bool = False  # start from a project with prepared data and statistics
    env: dict[str, str] = field(default_factory=dict)


def edit(**changes: Any) -> Callable[[dict], None]:
    """`edit(**{"train.epochs": "ten"})`: set (or with value DELETE, remove) dotted keys."""
    def apply(params: dict) -> None:
        for dotted, value in changes.items():
            *parents, last = dotted.split(".")
            node = params
            for key in parents:
                node = node.setdefault(key, {})
            if value is DELETE:
                del node[last]
            else:
                node[last] = value
    return apply


DELETE = object()


def damage(relative: str, content: bytes | None = None, truncate: bool = False) -> Callable[[Path], None]:
    def apply(workdir: Path) -> None:
        path = workdir / relative
        if truncate:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 3])
        else:
            path.write_bytes(content)
    return apply


def remove(relative: str) -> Callable[[Path], None]:
    return lambda workdir: (workdir / relative).unlink()


ACTS = {"activation": ["relu", "rrelu"], "seed": [0, 1]}
CASES = [
    # ------------------------------------------------------------------------ the params file itself
    Case("missing-params-file", ["--params", "absent.yaml", "validate"], "absent.yaml"),
    Case("params-is-a-directory", ["--params", "artifacts", "validate"], "artifacts",
         setup=lambda w: (w / "artifacts").mkdir()),
    Case("empty-params-file", ["validate"], "params.yaml", params=""),
    Case("not-yaml", ["validate"], "not valid YAML", params="train: [unclosed\nstudies: {"),
    Case("top-level-list", ["validate"], "mapping", params="- data\n- train\n"),
    Case("unknown-top-level-key", ["validate"], "trian", params=edit(trian={"epochs": 3})),
    Case("missing-data-section", ["validate"], "data", params=edit(data=DELETE)),
    # ------------------------------------------------------------------------ wrong types and values
    Case("epochs-not-a-number", ["validate"], "train.epochs", params=edit(**{"train.epochs": "ten"})),
    Case("negative-batch-size", ["validate"], "train.batch_size", params=edit(**{"train.batch_size": -1})),
    Case("zero-width", ["validate"], "train.width", params=edit(**{"train.width": 0})),
    Case("zero-lr", ["validate"], "train.lr", params=edit(**{"train.lr": 0})),
    Case("bad-device", ["validate"], "train.device", params=edit(**{"train.device": "gpu"})),
    Case("duplicate-regularizer", ["validate"], "train.regularizers",
         params=edit(**{"train.regularizers": ["l2", "l2"]})),
    Case("val-fraction-above-one", ["validate"], "data.val_fraction", params=edit(**{"data.val_fraction": 1.5})),
    Case("prefix-with-space", ["validate"], "tracking.experiment_prefix",
         params=edit(**{"tracking.experiment_prefix": "my runs"})),
    Case("figure-format-jpg", ["validate"], "report.figure_format", params=edit(**{"report.figure_format": "jpg"})),
    Case("ensemble-on-test-metric", ["validate"], "ensemble.metric", params=edit(**{"ensemble.metric": "test_error"})),
    Case("zero-threads", ["validate"], "resources.threads", params=edit(**{"resources.threads": 0})),
    Case("zero-slots-per-gpu", ["validate"], "resources.slots_per_gpu",
         params=edit(**{"resources.slots_per_gpu": 0})),
    # ------------------------------------------------------------------------ unknown names
    Case("unknown-activation", ["validate"], "relux", params=edit(**{"train.activation": "relux"})),
    Case("unknown-activation-on-an-axis", ["validate"], "swishy",
         params=edit(**{"studies.acts.axes": {"activation": ["relu", "swishy"]}})),
    Case("unknown-axis-key", ["validate"], "learning_rate",
         params=edit(**{"studies.acts.axes": {"learning_rate": [0.1]}})),
    Case("unknown-data-source", ["validate"], "data.source", params=edit(**{"data.source": "imagenet"})),
    # ------------------------------------------------------------------------ grids
    Case("empty-grid", ["validate"], "studies", params=edit(studies={})),
    Case("study-without-axes", ["validate"], "studies.acts.axes", params=edit(**{"studies.acts.axes": {}})),
    Case("axis-without-values", ["validate"], "activation",
         params=edit(**{"studies.acts.axes": {"activation": []}})),
    Case("duplicate-grid-ids", ["validate"], "duplicate",
         params=edit(**{"studies.acts.axes": [{"seed": [0]}, {"seed": [0]}]})),
    Case("study-name-with-space", ["validate"], "my study",
         params=edit(studies={"my study": {"axes": {"seed": [0]}}})),
    # ------------------------------------------------------------------------ the command line
    Case("unknown-study-train", ["train", "--study", "nope", "--point", POINT], "nope"),
    Case("unknown-point-train", ["train", "--study", "acts", "--point", "nope"], "nope"),
    Case("unknown-study-grid", ["grid", "--study", "nope"], "nope"),
    Case("unknown-study-ensemble", ["ensemble", "--study", "nope"], "nope"),
    Case("unknown-kind-list", ["list", "gadgets"], "gadgets"),
    Case("train-without-study", ["train", "--point", POINT], "--study"),
    Case("bad-simulated-gpu-count", ["train", "--study", "acts", "--point", POINT], "TRICKBENCH_GPUS",
         prepared=True, env={"TRICKBENCH_GPUS": "two"}),
    # ------------------------------------------------------------------------ missing or damaged files
    Case("train-before-prepare", ["train", "--study", "acts", "--point", POINT], "manifest.json"),
    Case("prepare-before-download", ["prepare", "--no-progress"], "download.json"),
    Case("report-before-training", ["report"], "artifacts", prepared=True),
    Case("garbage-prepared-npz", ["train", "--study", "acts", "--point", POINT], "prepared.npz", prepared=True,
         setup=damage("artifacts/data/prepared.npz", b"\x00garbage" * 100)),
    Case("truncated-prepared-npz", ["train", "--study", "acts", "--point", POINT], "prepared.npz", prepared=True,
         setup=damage("artifacts/data/prepared.npz", truncate=True)),
    Case("truncated-prepared-npz-stats", ["stats"], "prepared.npz", prepared=True,
         setup=damage("artifacts/data/prepared.npz", truncate=True)),
    Case("garbage-stats-json", ["train", "--study", "acts", "--point", POINT], "stats.json", prepared=True,
         setup=damage("artifacts/data/stats.json", b"{not json")),
    Case("missing-stats-npz", ["train", "--study", "acts", "--point", POINT], "stats.npz", prepared=True,
         setup=remove("artifacts/data/stats.npz")),
    Case("unknown-data-option", ["download"], "data.options.foo", params=edit(**{"data.options": {"foo": 1}})),
    Case("missing-cifar-root", ["download"], "/nonexistent/cifar",
         params=edit(data={"source": "cifar10", "options": {"root": "/nonexistent/cifar"}})),
    Case("missing-ndsb-archive", ["download"], "/nonexistent/train.zip",
         params=edit(data={"source": "ndsb", "options": {"archive": "/nonexistent/train.zip"}})),
    Case("missing-finetune-file", ["train", "--study", "acts", "--point", POINT], "train.finetune_from",
         prepared=True, params=edit(**{"train.finetune_from": "no/model.pt"})),
    Case("crop-larger-than-images", ["train", "--study", "acts", "--point", POINT], "input_size", prepared=True,
         params=edit(**{"train.input_size": 100})),
    Case("model-needs-larger-images", ["train", "--study", "acts", "--point", POINT], "ndsb_net", prepared=True,
         params=edit(**{"train.model": "ndsb_net"})),
    Case("plateau-patience-zero", ["train", "--study", "acts", "--point", POINT], "plateau_patience", prepared=True,
         params=edit(**{"train.schedule": "plateau", "train.plateau_patience": 0})),
    Case("garbage-finetune-file", ["train", "--study", "acts", "--point", POINT], "train.finetune_from",
         prepared=True, params=edit(**{"train.finetune_from": "junk.pt"}),
         setup=damage("junk.pt", b"not a torch file")),
    # ------------------------------------------------------------------------ through Snakemake
    Case("snakemake-unknown-activation", ["snakemake", "-n", "--cores", "1"], "relux",
         params=edit(**{"train.activation": "relux"})),
    Case("snakemake-empty-grid", ["snakemake", "-n", "--cores", "1"], "studies", params=edit(studies={})),
    Case("snakemake-not-yaml", ["snakemake", "-n", "--cores", "1"], "not valid YAML",
         params="train: [unclosed\nstudies: {"),
    # (`snakemake --configfile absent.yaml` prints Snakemake's own traceback: not ours to change)
]
KNOWN_GAPS: dict[str, str] = {}  # case id -> reason, for a gap that is known and not yet fixed


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, Path]:
    """Two projects to copy per case: bare (params + workflow) and with prepared data and statistics."""
    from trickbench.params import load_params
    from trickbench.paths import Layout
    from trickbench.stages.data import download, prepare, stats

    bare = tmp_path_factory.mktemp("bare")
    shutil.copy(REPO / "Snakefile", bare)
    shutil.copytree(REPO / "workflow", bare / "workflow")
    write_params(bare / "params.yaml", tiny_params())
    ready = tmp_path_factory.mktemp("ready")
    shutil.copytree(bare, ready, dirs_exist_ok=True)
    params = load_params(ready / "params.yaml")
    params["tracking"]["enabled"] = False
    layout = Layout(ready / "artifacts", ready / "results")
    download(params, layout), prepare(params, layout, progress=False), stats(params, layout)
    return {"bare": bare, "ready": ready}


def files_under(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")
            if p.is_file() and ".snakemake" not in p.parts}


def run_case(case: Case, workdir: Path, template: Path) -> tuple[Case, subprocess.CompletedProcess, dict, dict]:
    shutil.copytree(template, workdir)
    if case.params is not None:
        if isinstance(case.params, str):
            (workdir / "params.yaml").write_text(case.params)
        else:
            params = tiny_params()
            params["studies"] = {"acts": {"axes": dict(ACTS)}}
            case.params(params)
            write_params(workdir / "params.yaml", params)
    if case.setup is not None:
        case.setup(workdir)
    before = files_under(workdir)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **case.env,
           "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}  # a store created here shows up
    command = [str(BIN / case.argv[0]), *case.argv[1:]] if case.argv[0] == "snakemake" else \
        [str(BIN / "trickbench"), *case.argv]
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    return case, done, before, files_under(workdir)


@pytest.fixture(scope="module")
def outcomes(templates, tmp_path_factory) -> dict[str, tuple]:
    base = tmp_path_factory.mktemp("cases")
    with ThreadPoolExecutor(max_workers=4) as pool:  # mostly start-up time: four at once on two cores
        futures = [pool.submit(run_case, case, base / case.id, templates["ready" if case.prepared else "bare"])
                   for case in CASES]
        return {future.result()[0].id: future.result()[1:] for future in futures}


def test_the_sweep_is_wide():
    assert len(CASES) >= 30 and len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_fails_cleanly(case, outcomes, request):
    if case.id in KNOWN_GAPS:
        request.applymarker(pytest.mark.xfail(reason=KNOWN_GAPS[case.id], strict=False))
    done, before, after = outcomes[case.id]
    stderr = done.stderr.strip()
    assert done.returncode != 0, f"exit 0:\n{done.stdout[-2000:]}\n{stderr[-2000:]}"
    assert "Traceback" not in stderr + done.stdout, stderr[-3000:]
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))}"
    if case.argv[0] == "snakemake":  # Snakemake prints its own lines around ours
        errors = [line for line in stderr.splitlines() if line.startswith("trickbench: error:")]
        assert len(errors) == 1 and case.culprit in errors[0], stderr[-3000:]
    elif case.id == "train-without-study":  # argparse: the usage line, then one error line
        assert stderr.splitlines()[-1].startswith("trickbench train: error:") and case.culprit in stderr
    else:
        assert len(stderr.splitlines()) == 1, f"expected one line on stderr, got:\n{stderr[-3000:]}"
        assert stderr.startswith(f"trickbench {case.argv[-1] if case.argv[0] == '--params' else case.argv[0]}: error:") \
            or stderr.startswith("trickbench "), stderr
        assert case.culprit in stderr, stderr
