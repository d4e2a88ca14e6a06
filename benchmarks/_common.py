"""Helpers shared by the benchmark scripts (not a benchmark itself).

Every benchmark measures its baseline in the same run and prints one or more lines

    RATIO <name>: <x>x (<what> <value> / <baseline> <value>; target ...)

so a figure is always a ratio of two numbers taken on the same machine under the same load. Absolute
numbers depend on the machine and on what else runs on it (`load` in the header line says how busy
it was).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The CIFAR-10 ZIPs (JPEG image folders): a folder inside the checkout (git-ignored), because only the working
# tree travels to a GPU machine; --cifar10-dir or $TRICKBENCH_CIFAR10_DIR point elsewhere (this workplace's
# copy is ../shared/datasets/cifar10).
DEFAULT_CIFAR10_DIR = REPO / "benchmarks" / "data" / "cifar10"
# glibc malloc settings of platform.md (what the Makefile exports and `trickbench train` applies)
MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX")


def cifar10_dir() -> Path:
    return Path(os.environ.get("TRICKBENCH_CIFAR10_DIR") or DEFAULT_CIFAR10_DIR)


def add_cifar10_argument(parser: Any) -> None:
    parser.add_argument("--cifar10-dir", default=None,
                        help=f"folder of the CIFAR-10 ZIPs (default: $TRICKBENCH_CIFAR10_DIR, else "
                        f"{DEFAULT_CIFAR10_DIR.relative_to(REPO)})")


def use_cifar10_dir(args: Any) -> Path:
    """--cifar10-dir as $TRICKBENCH_CIFAR10_DIR, which the benchmark's worker processes inherit."""
    if getattr(args, "cifar10_dir", None):
        os.environ["TRICKBENCH_CIFAR10_DIR"] = str(Path(args.cifar10_dir).resolve())
    return cifar10_dir()


def cifar10_archive(name: str) -> Path:
    path = cifar10_dir() / name
    if not path.is_file():
        raise SystemExit(f"{path}: not found; copy the CIFAR-10 ZIPs into {cifar10_dir()} or pass --cifar10-dir "
                         "(or set TRICKBENCH_CIFAR10_DIR)")
    return path


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header(title: str, *, torch_info: bool = True) -> None:
    """One line naming the machine, the software and the load, printed before any figure."""
    parts = [title, f"{cpu_model()} x {os.cpu_count()} cores", f"python {platform.python_version()}"]
    if torch_info:
        import torch

        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
        if torch.cuda.is_available():
            parts.append(f"GPU {torch.cuda.get_device_name()}")
    parts.append(f"load {load_average()}")
    parts.append(time.strftime("%Y-%m-%d %H:%M"))
    print(" | ".join(parts), flush=True)


def ratio_line(name: str, value: float, baseline: float, *, what: str, baseline_what: str, unit: str,
               target: str | None = None, met: bool | None = None, higher_is_better: bool = True) -> float:
    """Print `RATIO name: x (what value unit / baseline_what value unit; target ...)` and return x."""
    ratio = value / baseline if baseline else float("nan")
    shown = f"{ratio:.2f}" if ratio != ratio or ratio >= 0.1 else f"{ratio:.4f}"
    line = f"RATIO {name}: {shown}x ({what} {fmt(value)} {unit} / {baseline_what} {fmt(baseline)} {unit}"
    if target is not None:
        line += f"; target {target}: {'met' if met else 'MISSED'}"
    print(line + ")", flush=True)
    return ratio


def fmt(value: float) -> str:
    if value != value:  # nan
        return "nan"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """An aligned plain-text table (airbench style)."""
    cells = [[str(c) for c in columns]] + [[fmt(r[c]) if isinstance(r.get(c), float) else str(r.get(c, ""))
                                            for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for index, row in enumerate(cells):
        print("  ".join(cell.rjust(width) if index else cell.ljust(width) for cell, width in zip(row, widths)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
    sys.stdout.flush()


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: this venv first on PATH, no glibc malloc settings."""
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "benchmarks"), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def run_child(args: Sequence[str], env: dict[str, str], *, cwd: Path | None = None, timeout: float = 1800) -> dict:
    """Run a worker process that prints its result as JSON on its last stdout line."""
    done = subprocess.run(list(args), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed(command: Sequence[str], env: dict[str, str], cwd: Path | None = None, *, check: bool = True,
          timeout: float = 3600) -> tuple[float, str]:
    """Wall seconds of one command (process start to exit) and its combined output."""
    started = time.perf_counter()
    done = subprocess.run(list(command), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - started
    output = done.stdout + done.stderr
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed ({done.returncode}):\n{output[-3000:]}")
    return seconds, output


def best_of(repeats: int, measure: Callable[[], float]) -> float:
    """The minimum of `repeats` measurements: the least disturbed by other processes on the machine."""
    return min(measure() for _ in range(max(1, repeats)))


def train_config(**overrides: Any) -> dict[str, Any]:
    """A complete train configuration: the schema's defaults under the repository's params.yaml `train`.

    Validated with jsonschema where it is installed; the GPU machine's image has none, and there the
    schema's defaults are filled in without validation, after a check that every key is a train key
    (the benchmarks' own configurations, validated wherever jsonschema exists, e.g. in the tests)."""
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update(overrides)
    try:
        import jsonschema  # noqa: F401  (only whether it is there)
    except ImportError:
        from trickbench.params import ParamsError, fill_defaults, raw_schema

        schema = raw_schema()
        train_schema = schema["$defs"]["train_config"]
        unknown = sorted(set(params["train"]) - set(train_schema["properties"]))
        if unknown:
            raise ParamsError(f"benchmark params: train: unknown keys {', '.join(unknown)}")
        config = dict(params["train"])
        fill_defaults(config, train_schema, schema)
        return config
    from trickbench.params import validate

    return validate(params, source="benchmark params")["train"]


def decode_cifar10(n_images: int | None = None, *, archive: str = "cifar10_train_subset.zip",
                   workers: int | None = None) -> tuple[Any, Any]:
    """(images uint8 NHWC, labels int64) of a CIFAR-10 ZIP, decoded by trickbench's own decoder.

    n_images: that many images spread evenly over the (class-sorted) archive, in a fixed shuffled
    order; None: all of them (the `cifar10` source's load() is what benchmarks/prepare.py times).
    """
    import numpy as np

    from trickbench.data.class_layout import tree_layout
    from trickbench.data.decode import DecodeSpec, decode_members
    from trickbench.data.trees import open_tree

    path = cifar10_archive(archive)
    split = "test" if "test" in archive else "train"
    with open_tree(path) as tree:
        layout = tree_layout(tree, main_split=split)
        names, labels = layout.members(split)
        pick = np.arange(len(names)) if n_images is None else \
            np.linspace(0, len(names) - 1, min(n_images, len(names))).round().astype(int)
        pick = np.random.default_rng(0).permutation(pick)
        images = decode_members(tree, [names[i] for i in pick], DecodeSpec(3, None, 0, (32, 32)),
                                workers=workers, progress=False)
    return images, labels[pick]


def snakemake_bin() -> str:
    return str(BIN / "snakemake")


def dvc_bin() -> str:
    return str(BIN / "dvc")


# The device's specified dense bf16 peak (no sparsity), FLOP/s, by a part of torch.cuda.get_device_name();
# the first match counts, so a more specific name comes before the general one (H100 PCIe before H100 SXM)
SPECIFIED_BF16_PEAK = {
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H100": 989e12,  # SXM (the HBM3 parts report "NVIDIA H100 80GB HBM3")
    "H200": 989e12,
    "GH200": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
}


def specified_peak(device_name: str) -> float | None:
    """The datasheet bf16 dense peak of a GPU named `device_name`; None for a device not in the table."""
    return next((peak for key, peak in SPECIFIED_BF16_PEAK.items() if key in device_name), None)


def real_job_io(folder: Path) -> dict[str, Any]:
    """What a real train job writes besides the model: its checkpoint every epoch (`checkpoint_path`) and
    its MLflow run behind the queue (`tracker`, an SQLite store in `folder`), as keyword arguments of
    trickbench.train.loop.train. Without mlflow (the GPU machine's bare image) the tracker is left out."""
    extras: dict[str, Any] = {"checkpoint_path": Path(folder) / "checkpoint.pt"}
    try:
        import mlflow  # noqa: F401  (only whether it is there)
    except ImportError:
        print("tracking: off (mlflow is not installed here); checkpoints on", flush=True)
        return extras
    from trickbench import tracking

    uri = f"sqlite:///{Path(folder) / 'mlflow.db'}"
    tracking.ensure_experiments(uri, ["benchmark"])
    extras["tracker"] = tracking.BackgroundRun(lambda: tracking.Run(uri, "benchmark", "benchmark", {}))
    return extras
