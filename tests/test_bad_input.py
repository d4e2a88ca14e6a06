"""Bad input, swept through the real entry points: malformed params files and wrong CLI calls, each as a
subprocess of `trickbench` (some through `snakemake -n`). Each must exit 2 with one clear line on stderr
that names the culprit (key or file), print no traceback and write nothing, inside the project or out.

tests/test_params.py covers the schema's messages unit by unit; this module checks what a user sees.
Every case runs in <case>/project, so a write that escapes the project (paths.* = ../elsewhere) shows
up in <case>; `outside` lists absolute paths that must not exist afterwards.
"""
from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from conftest import BIN, REPO, tiny_params, write_params
from trickbench.params import MAX_ALIASES, MAX_DEPTH, MAX_PARAMS_BYTES

POINT = "activation-relu__seed-0"
SNAKEMAKE_DRY = ["snakemake", "-n", "--cores", "1"]
NAN, INF = float("nan"), float("inf")


@dataclass
class Case:
    id: str
    argv: list[str]  # after `trickbench` (or the whole command if it starts with "snakemake")
    culprit: str  # must appear in the error line
    params: Callable[[dict], Any] | str | None = None  # edit of the tiny params, or the file's raw text
    setup: Callable[[Path], None] | None = None  # damage the ready project
    prepared: bool = False  # start from a project with prepared data and statistics
    env: dict[str, str] = field(default_factory=dict)
    expect: tuple[str, ...] = ()  # more text the error line must hold (the value, what was expected)
    params_name: str = "params.yaml"  # where `params` is written
    outside: tuple[str, ...] = ()  # absolute paths that must not exist afterwards
    usage: bool = False  # argparse's error: a usage line, then the error line


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


def symlink(relative: str, target: str) -> Callable[[Path], None]:
    def apply(workdir: Path) -> None:
        (workdir / relative).unlink(missing_ok=True)
        (workdir / relative).symlink_to(target)
    return apply


def make_dir(relative: str) -> Callable[[Path], None]:
    return lambda workdir: (workdir / relative).mkdir(parents=True, exist_ok=True)


def one_class_folder(workdir: Path) -> None:
    """imgs/cat/*.png: an image folder with a single class."""
    import numpy as np
    from PIL import Image

    (workdir / "imgs" / "cat").mkdir(parents=True)
    for index in range(6):
        Image.fromarray(np.full((8, 8, 3), 40 * index, np.uint8)).save(workdir / "imgs" / "cat" / f"{index}.png")


def with_download_record(workdir: Path) -> None:
    (workdir / "artifacts" / "raw").mkdir(parents=True)
    (workdir / "artifacts" / "raw" / "download.json").write_text("{}")


def tiny_text(**overrides: Any) -> str:
    params = tiny_params(**overrides)
    params["studies"] = {"acts": {"axes": dict(ACTS)}}
    return yaml.safe_dump(params, sort_keys=False)


def list_laughs(levels: int = 9) -> str:
    """A billion laughs of lists: 10 ** levels strings from a 1 kB file (PyYAML shares the nodes)."""
    text = "  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for i in range(1, levels):
        text += f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n"
    return tiny_text() + "laughs:\n" + text


def dict_laughs(levels: int = 8) -> str:
    text = "  l0: &l0 {" + ", ".join(f"k{j}: x" for j in range(10)) + "}\n"
    for i in range(1, levels):
        text += f"  l{i}: &l{i} {{" + ", ".join(f"k{j}: *l{i - 1}" for j in range(10)) + "}\n"
    return tiny_text() + "laughs:\n" + text


def inserted(after: str, line: str) -> str:
    text = tiny_text()
    assert after in text
    return text.replace(after, after + line, 1)


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
    Case("restart-cycle-not-dividing-epochs", ["validate"], "train.step_size", expect=("a divisor of 10",),
         params=edit(**{"train.schedule": "cosine_restarts", "train.epochs": 10, "train.step_size": 3})),
    Case("more-snapshots-than-cycles", ["validate"], "train.snapshots", expect=("at most 2",),
         params=edit(**{"train.schedule": "cosine_restarts", "train.epochs": 10, "train.step_size": 5,
                        "train.snapshots": 3})),
    Case("garbage-finetune-file", ["train", "--study", "acts", "--point", POINT], "train.finetune_from",
         prepared=True, params=edit(**{"train.finetune_from": "junk.pt"}),
         setup=damage("junk.pt", b"not a torch file")),
    # ------------------------------------------------------------------------ through Snakemake
    Case("snakemake-unknown-activation", ["snakemake", "-n", "--cores", "1"], "relux",
         params=edit(**{"train.activation": "relux"})),
    Case("snakemake-empty-grid", ["snakemake", "-n", "--cores", "1"], "studies", params=edit(studies={})),
    Case("snakemake-not-yaml", ["snakemake", "-n", "--cores", "1"], "not valid YAML",
         params="train: [unclosed\nstudies: {"),
    # ------------------------------------------------------------------------ numbers: finite, typed, in range
    Case("lr-nan", ["validate"], "train.lr", params=edit(**{"train.lr": NAN}), expect=("finite",)),
    Case("lr-inf", ["validate"], "train.lr", params=edit(**{"train.lr": INF})),
    Case("l2-minus-inf", ["validate"], "train.l2", params=edit(**{"train.l2": -INF}), expect=("finite",)),
    Case("momentum-nan", ["validate"], "train.momentum", params=edit(**{"train.momentum": NAN})),
    Case("nan-inside-an-axis-list", ["validate"], "studies.acts.axes.lr.1",
         params=edit(**{"studies.acts.axes": {"lr": [0.1, NAN]}}), expect=("finite",)),
    Case("nan-inside-data-options", ["validate"], "data.options.scale", params=edit(**{"data.options": {"scale": NAN}})),
    Case("val-fraction-nan", ["validate"], "data.val_fraction", params=edit(**{"data.val_fraction": NAN})),
    Case("whitening-epsilon-inf", ["validate"], "stats.whitening_epsilon",
         params=edit(**{"stats.whitening_epsilon": INF})),
    Case("noisy-batch-cv-minus-inf", ["validate"], "report.diagnosis.noisy_batch_cv",
         params=edit(**{"report.diagnosis": {"noisy_batch_cv": -INF}})),
    Case("width-as-float", ["validate"], "train.width", params=edit(**{"train.width": 16.0}),
         expect=("16.0", "expected an integer")),
    Case("threads-as-float", ["validate"], "resources.threads", params=edit(**{"resources.threads": 1.0}),
         expect=("1.0", "integer")),
    Case("epochs-as-float-on-an-axis", ["validate"], "studies.acts.axes.epochs",
         params=edit(**{"studies.acts.axes": {"epochs": [2, 3.0]}}), expect=("3.0",)),
    Case("epochs-as-boolean", ["validate"], "train.epochs", params=edit(**{"train.epochs": True})),
    Case("split-seed-as-float", ["validate"], "data.split_seed", params=edit(**{"data.split_seed": 1.5})),
    Case("channels-as-float", ["validate"], "data.options.channels",
         params=edit(data={"source": "imagefolder", "options": {"path": "images", "channels": 3.0}})),
    Case("input-size-as-float", ["validate"], "train.input_size", params=edit(**{"train.input_size": 4.0})),
    Case("batch-size-huge", ["validate"], "train.batch_size", params=edit(**{"train.batch_size": 10**9}),
         expect=("maximum",)),
    Case("seed-huge", ["validate"], "train.seed", params=edit(**{"train.seed": 2**40})),
    Case("lr-huge", ["validate"], "train.lr", params=edit(**{"train.lr": 1.0e6})),
    Case("threads-huge", ["validate"], "resources.threads", params=edit(**{"resources.threads": 100000})),
    Case("top-k-zero", ["validate"], "ensemble.top_k", params=edit(**{"ensemble.top_k": 0})),
    Case("dpi-huge", ["validate"], "report.dpi", params=edit(**{"report.dpi": 100000})),
    Case("alpha-one", ["validate"], "report.paper_table.alpha", params=edit(**{"report.paper_table": {"alpha": 1}})),
    Case("input-size-zero", ["validate"], "train.input_size", params=edit(**{"train.input_size": 0})),
    Case("image-size-huge", ["validate"], "data.options.image_size",
         params=edit(data={"source": "ndsb", "options": {"image_size": 100000}}), expect=("100000", "4096")),
    Case("image-size-as-float", ["validate"], "data.options.image_size",
         params=edit(data={"source": "ndsb", "options": {"image_size": 80.0}})),
    Case("pad-value-too-large", ["validate"], "data.options.pad_value",
         params=edit(data={"source": "ndsb", "options": {"pad_value": 300}})),
    # ------------------------------------------------------------------------ rules across keys
    Case("fractions-leave-no-training-data", ["validate"], "data.val_fraction + data.test_fraction",
         params=edit(**{"data.val_fraction": 0.5, "data.test_fraction": 0.5}), expect=("less than 1",)),
    Case("baseline-not-an-activation-of-the-study", ["validate"], "report.paper_table.baseline",
         params=edit(**{"report.paper_table": {"baseline": "elu"}}), expect=("'elu'", "relu, rrelu")),
    Case("baseline-misspelt", ["validate"], "report.paper_table.baseline",
         params=edit(**{"report.paper_table": {"baseline": "ReLU"}})),
    Case("input-size-larger-than-digits", ["validate"], "train.input_size",
         params=edit(**{"train.input_size": 9}), expect=("8x8",)),
    Case("input-size-axis-larger-than-digits", ["validate"], "studies.acts.axes.input_size",
         params=edit(**{"studies.acts.axes": {"input_size": [6, 16]}})),
    Case("input-size-larger-than-ndsb-image-size", ["validate"], "train.input_size",
         params=edit(data={"source": "ndsb", "options": {"image_size": 64}}, **{"train.input_size": 70})),
    Case("input-size-larger-than-cifar", ["validate"], "train.input_size",
         params=edit(data={"source": "cifar10"}, **{"train.input_size": 40})),
    Case("unknown-data-option-at-validate", ["validate"], "data.options.foo",
         params=edit(**{"data.options": {"foo": 1}})),
    Case("unknown-cifar-option", ["validate"], "data.options.rootdir",
         params=edit(data={"source": "cifar10", "options": {"rootdir": "x"}}), expect=("archive",)),
    Case("cifar10-has-no-label-type", ["validate"], "data.options.label_type",
         params=edit(data={"source": "cifar10", "options": {"label_type": "coarse"}})),
    Case("bad-cifar100-label-type", ["validate"], "data.options.label_type",
         params=edit(data={"source": "cifar100", "options": {"label_type": "medium"}})),
    Case("whitening-without-matrices", ["validate"], "train.preprocessing",
         params=edit(**{"train.preprocessing": "zca_whiten", "stats.whitening": False})),
    Case("single-class-image-folder", ["download"], "imgs", expect=("1 class (cat)", "at least 2"),
         params=edit(data={"source": "imagefolder", "options": {"path": "imgs"}}), setup=one_class_folder),
    Case("single-class-at-prepare", ["prepare", "--no-progress"], "1 class (cat)",
         params=edit(data={"source": "imagefolder", "options": {"path": "imgs"}}),
         setup=lambda w: (one_class_folder(w), with_download_record(w))),
    # ------------------------------------------------------------------------ output folders
    Case("artifacts-at-root", ["validate"], "paths.artifacts", params=edit(**{"paths.artifacts": "/"}),
         expect=("system folder",)),
    Case("artifacts-in-etc", ["validate"], "paths.artifacts", params=edit(**{"paths.artifacts": "/etc"}),
         expect=("system folder",)),
    Case("results-inside-etc", ["validate"], "paths.results",
         params=edit(**{"paths.results": "/etc/trickbench-bad-input"}), outside=("/etc/trickbench-bad-input",)),
    Case("results-inside-proc", ["validate"], "paths.results", params=edit(**{"paths.results": "/proc/trickbench"})),
    Case("artifacts-two-levels-up", ["validate"], "paths.artifacts",
         params=edit(**{"paths.artifacts": "../../elsewhere"}), expect=("outside", "TRICKBENCH_ALLOW_OUTSIDE")),
    Case("artifacts-beside-the-project", ["download"], "paths.artifacts",
         params=edit(**{"paths.artifacts": "../elsewhere"})),
    Case("results-absolute-outside", ["validate"], "paths.results",
         params=edit(**{"paths.results": "/tmp/trickbench-bad-input-results"}),
         outside=("/tmp/trickbench-bad-input-results",)),
    Case("artifacts-symlink-leaving-the-project", ["download"], "paths.artifacts",
         setup=lambda w: (make_dir("../outside")(w), symlink("artifacts", "../outside")(w))),
    Case("opt-in-still-refuses-etc", ["validate"], "paths.artifacts",
         params=edit(**{"paths.artifacts": "/etc/trickbench"}), env={"TRICKBENCH_ALLOW_OUTSIDE": "1"}),
    Case("opt-in-still-refuses-usr", ["validate"], "paths.results",
         params=edit(**{"paths.results": "/usr/local/trickbench"}), env={"TRICKBENCH_ALLOW_OUTSIDE": "1"}),
    Case("opt-in-still-refuses-var", ["validate"], "paths.results",
         params=edit(**{"paths.results": "/var"}), env={"TRICKBENCH_ALLOW_OUTSIDE": "1"}),
    Case("opt-in-is-exactly-1", ["validate"], "paths.artifacts",
         params=edit(**{"paths.artifacts": "../elsewhere"}), env={"TRICKBENCH_ALLOW_OUTSIDE": "yes"}),
    Case("artifacts-same-as-results", ["validate"], "paths.artifacts and paths.results",
         params=edit(paths={"artifacts": "out", "results": "out/"}), expect=("same folder",)),
    Case("results-inside-artifacts", ["validate"], "paths.results",
         params=edit(paths={"artifacts": "artifacts", "results": "artifacts/results"}), expect=("inside",)),
    Case("artifacts-inside-results", ["validate"], "paths.artifacts",
         params=edit(paths={"artifacts": "results/artifacts", "results": "results"})),
    Case("artifacts-is-the-project", ["validate"], "paths.artifacts", params=edit(**{"paths.artifacts": "."}),
         expect=("project directory",)),
    Case("results-above-the-project", ["validate"], "paths.results", params=edit(**{"paths.results": ".."}),
         env={"TRICKBENCH_ALLOW_OUTSIDE": "1"}),
    # ------------------------------------------------------------------------ reading the file
    Case("duplicate-top-level-block", ["validate"], "'train'", params=tiny_text() + "train: {epochs: 3}\n",
         expect=("twice", "line")),
    Case("duplicate-nested-key", ["validate"], "'lr'", params=inserted("train:\n", "  lr: 0.1\n")),
    Case("duplicate-study", ["validate"], "'acts'", params=tiny_text().replace(
        "studies:\n", "studies:\n  acts: {axes: {seed: [0]}}\n", 1)),
    Case("billion-laughs-lists", ["validate"], "expands", params=list_laughs()),
    Case("billion-laughs-mappings", ["validate"], "expands", params=dict_laughs()),
    Case("too-many-aliases", ["validate"], "aliases", params=tiny_text() + "note: &n x\nmany: ["
         + ", ".join(["*n"] * (MAX_ALIASES + 1)) + "]\n", expect=(str(MAX_ALIASES),)),
    Case("self-referring-alias", ["validate"], "refers to", params=tiny_text() + "loop: &loop [*loop]\n"),
    Case("nested-too-deep", ["validate"], "nested", params=tiny_text() + "deep: " + "[" * (MAX_DEPTH + 5)
         + "]" * (MAX_DEPTH + 5) + "\n"),
    Case("params-file-too-large", ["validate"], "bytes", params=tiny_text() + ("# padding\n" * (MAX_PARAMS_BYTES // 10 + 1)),
         expect=(f"{MAX_PARAMS_BYTES:,}",)),
    Case("params-not-utf8", ["validate"], "UTF-8",
         setup=lambda w: (w / "params.yaml").write_bytes(tiny_text().encode() + b"note: \xff\xfe\n")),
    Case("params-is-dev-null", ["--params", "/dev/null", "validate"], "/dev/null", expect=("device",)),
    Case("params-is-tmp", ["--params", "/tmp", "validate"], "/tmp", expect=("directory",)),
    Case("params-is-a-fifo", ["--params", "fifo.yaml", "validate"], "fifo.yaml", expect=("pipe",),
         setup=lambda w: os.mkfifo(w / "fifo.yaml")),
    Case("params-symlink-to-dev-zero", ["train", "--study", "acts", "--point", POINT], "params.yaml",
         setup=symlink("params.yaml", "/dev/zero"), expect=("device",)),
    Case("params-with-a-date", ["validate"], "report.paper_table.note",
         params=edit(**{"report.paper_table": {"note": datetime.date(2020, 1, 1)}}), expect=("date",)),
    Case("params-with-binary", ["validate"], "tracking.experiment_prefix", expect=("binary",),
         params=edit(**{"tracking.experiment_prefix": b"hello"})),
    Case("params-with-python-tag", ["validate"], "not valid YAML",
         params=tiny_text() + "evil: !!python/object/apply:os.system [echo hi]\n"),
    Case("non-string-study-name", ["validate"], "key 1",
         params=edit(studies={1: {"axes": {"seed": [0]}}})),
    Case("params-top-level-scalar", ["validate"], "mapping", params="just a string\n"),
    # ------------------------------------------------------------------------ the command line
    Case("overrides-not-json", ["--overrides", "{epochs: 3", "validate"], "--overrides", usage=True),
    Case("overrides-not-a-mapping", ["--overrides", "[1, 2]", "validate"], "--overrides", usage=True),
    Case("overrides-bad-value", ["--overrides", '{"train": {"epochs": 0}}', "validate"], "train.epochs",
         expect=("--config",)),
    Case("overrides-nan", ["--overrides", '{"train": {"lr": NaN}}', "validate"], "train.lr"),
    Case("params-dev-null-train", ["--params", "/dev/null", "train", "--study", "acts", "--point", POINT],
         "/dev/null"),
    # ------------------------------------------------------------------------ through Snakemake
    Case("snakemake-duplicate-block", SNAKEMAKE_DRY, "'train'", params=tiny_text() + "train: {epochs: 3}\n"),
    Case("snakemake-lr-nan", SNAKEMAKE_DRY, "train.lr", params=edit(**{"train.lr": NAN})),
    Case("snakemake-width-float", SNAKEMAKE_DRY, "train.width", params=edit(**{"train.width": 16.0})),
    Case("snakemake-artifacts-in-etc", SNAKEMAKE_DRY, "paths.artifacts", params=edit(**{"paths.artifacts": "/etc"})),
    Case("snakemake-artifacts-outside", SNAKEMAKE_DRY, "paths.artifacts",
         params=edit(**{"paths.artifacts": "../elsewhere"})),
    Case("snakemake-config-negative-epochs", [*SNAKEMAKE_DRY, "--config", 'train={"epochs": -5}'], "train.epochs",
         expect=("-5", "minimum")),
    Case("snakemake-config-float-epochs", [*SNAKEMAKE_DRY, "--config", 'train={"epochs": 2.5}'], "train.epochs"),
    Case("snakemake-config-nan-lr", [*SNAKEMAKE_DRY, "--config", 'train={"lr": .nan}'], "train.lr"),
    Case("snakemake-config-unknown-key", [*SNAKEMAKE_DRY, "--config", "trian=3"], "trian"),
    Case("snakemake-config-section-not-a-mapping", [*SNAKEMAKE_DRY, "--config", "train=3"], "train",
         expect=("mapping",)),
    Case("snakemake-config-paths-to-etc", [*SNAKEMAKE_DRY, "--config", 'paths={"results": "/etc"}'],
         "paths.results"),
    Case("snakemake-config-unknown-activation", [*SNAKEMAKE_DRY, "--config", 'train={"activation": "relux"}'],
         "relux"),
    Case("snakemake-configfile-with-space", [*SNAKEMAKE_DRY, "--configfile=my params.yaml"], "my params.yaml",
         params=edit(**{"train.epochs": 0}), params_name="my params.yaml", expect=("train.epochs",)),
    Case("snakemake-configfile-duplicate-key", [*SNAKEMAKE_DRY, "--configfile=dup.yaml"], "dup.yaml",
         params=tiny_text() + "studies: {}\n", params_name="dup.yaml", expect=("'studies'",)),
    Case("snakemake-configfile-laughs", [*SNAKEMAKE_DRY, "--configfile=laughs.yaml"], "laughs.yaml",
         params=list_laughs(), params_name="laughs.yaml", expect=("expands",)),
    Case("snakemake-configfile-too-large", [*SNAKEMAKE_DRY, "--configfile=big.yaml"], "big.yaml",
         params=tiny_text() + ("# padding\n" * (MAX_PARAMS_BYTES // 10 + 1)), params_name="big.yaml"),
    # (a --configfile that is missing, not YAML or a list is refused by Snakemake itself, before the
    # Snakefile runs: exit 1 and its own message; see the README's Snakemake section)
]


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
    return {str(p.relative_to(root)): p.lstat().st_size for p in root.rglob("*")
            if (p.is_file() or p.is_symlink()) and ".snakemake" not in p.parts}


def run_case(case: Case, root: Path, template: Path) -> tuple[Case, subprocess.CompletedProcess, dict, dict]:
    workdir = root / "project"
    shutil.copytree(template, workdir)
    if case.params is not None:
        if isinstance(case.params, str):
            (workdir / case.params_name).write_text(case.params)
        else:
            params = tiny_params()
            params["studies"] = {"acts": {"axes": dict(ACTS)}}
            case.params(params)
            write_params(workdir / case.params_name, params)
    if case.setup is not None:
        case.setup(workdir)
    before = files_under(root)
    env = {key: value for key, value in os.environ.items()
           if key != "TRICKBENCH_ALLOW_OUTSIDE" and not key.startswith("DATABRICKS_")}
    # a store created here shows up; a case's env replaces it, and a value "" unsets the variable
    env.update({"PATH": f"{BIN}:{os.environ['PATH']}", "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
                **case.env})
    env = {key: value for key, value in env.items() if value != ""}
    command = [str(BIN / case.argv[0]), *case.argv[1:]] if case.argv[0] == "snakemake" else \
        [str(BIN / "trickbench"), *case.argv]
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    return case, done, before, files_under(root)


@pytest.fixture(scope="module")
def outcomes(templates, tmp_path_factory) -> dict[str, tuple]:
    base = tmp_path_factory.mktemp("cases")
    with ThreadPoolExecutor(max_workers=4) as pool:  # mostly start-up time: four at once on two cores
        futures = [pool.submit(run_case, case, base / case.id, templates["ready" if case.prepared else "bare"])
                   for case in CASES]
        return {future.result()[0].id: future.result()[1:] for future in futures}


def test_the_sweep_is_wide():
    assert len(CASES) >= 90 and len({case.id for case in CASES}) == len(CASES)


ERROR_LINE = re.compile(r"^trickbench [a-z-]+: error: ")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_fails_cleanly(case, outcomes):
    assert_refused_cleanly(case, *outcomes[case.id])


def assert_refused_cleanly(case: Any, done: subprocess.CompletedProcess, before: dict, after: dict) -> None:
    """Exit 2, no traceback, nothing written (the snapshots before and after, `case.outside`), one error line on
    stderr (Snakemake: one of its lines) naming `case.culprit` and holding every text of `case.expect`."""
    stderr = done.stderr.strip()
    assert done.returncode == 2, f"exit {done.returncode}:\n{done.stdout[-2000:]}\n{stderr[-2000:]}"
    assert "Traceback" not in stderr + done.stdout, stderr[-3000:]
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))}"
    assert not [path for path in case.outside if os.path.lexists(path)], case.outside
    if case.argv[0] == "snakemake":  # Snakemake prints its own lines around ours
        errors = [line for line in stderr.splitlines() if line.startswith("trickbench: error:")]
        assert len(errors) == 1, stderr[-3000:]
        line = errors[0]
    elif getattr(case, "usage", False) or case.id == "train-without-study":  # argparse: usage, then the error
        line = stderr.splitlines()[-1]
        assert re.match(r"^trickbench( [a-z-]+)?: error: ", line), stderr
    else:
        assert len(stderr.splitlines()) == 1, f"expected one line on stderr, got:\n{stderr[-3000:]}"
        line = stderr
        assert ERROR_LINE.match(line), line
    assert case.culprit in line, line
    for text in case.expect:
        assert text in line, line
