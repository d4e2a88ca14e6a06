"""The GPU machine's image has torch, numpy, PyYAML, Pillow, scikit-learn and pytest but no jsonschema,
snakemake, mlflow or dvc, and runs the checkout with PYTHONPATH=src. These tests rebuild that here: a bare
venv that sees the project venv's packages through a .pth file, with those four blocked at import by a
sitecustomize, and without the project venv's scripts on PATH; then the benchmarks' CPU smoke modes, the
GPU check and the `gpu`-marked tests run in it. (Python 3.12 itself is not on this machine: the venv is
3.11, like the project's; pyproject's requires-python admits both.)
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from conftest import REPO

CIFAR10 = Path(os.environ.get("TRICKBENCH_CIFAR10_DIR", REPO.parent / "shared" / "datasets" / "cifar10"))
needs_cifar = pytest.mark.skipif(not (CIFAR10 / "cifar10_train_subset.zip").is_file(),
                                 reason=f"the CIFAR-10 ZIPs are not in {CIFAR10}")
BLOCKED = ("jsonschema", "snakemake", "mlflow", "dvc")
RATIO = re.compile(r"^RATIO (\S+): ([0-9.]+|nan)x \(", flags=re.M)

SITECUSTOMIZE = textwrap.dedent(f"""
    import sys

    BLOCKED = {BLOCKED!r}


    class NotOnTheDeviceImage:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}} (not on the GPU machine's image)", name=name)
            return None


    sys.meta_path.insert(0, NotOnTheDeviceImage())
""")


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """(python, env) of the bare venv: the project venv's site-packages, minus the blocked packages."""
    root = tmp_path_factory.mktemp("device-image") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    site_packages = Path(sysconfig.get_paths(vars={"base": str(root), "platbase": str(root)})["purelib"])
    project_site = sysconfig.get_paths()["purelib"]
    (site_packages / "project_venv.pth").write_text(f"import site; site.addsitedir({project_site!r})\n")
    (site_packages / "sitecustomize.py").write_text(SITECUSTOMIZE)
    project_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != project_bin)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PATH=path, PYTHONPATH=str(REPO / "src"), TRICKBENCH_CIFAR10_DIR=str(CIFAR10), OMP_NUM_THREADS="1")
    return str(root / "bin" / "python"), env


def run(bare, *args: str, timeout: int = 900, cwd: Path = REPO) -> subprocess.CompletedProcess:
    python, env = bare
    return subprocess.run([python, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def ratios(output: str) -> dict[str, float]:
    return {name: float(value) for name, value in RATIO.findall(output)}


def test_the_bare_venv_lacks_the_blocked_packages_and_has_the_rest(bare):
    for name in BLOCKED:
        done = run(bare, "-c", f"import {name}")
        assert done.returncode != 0 and "not on the GPU machine's image" in done.stderr, (name, done.stderr)
    done = run(bare, "-c", "import torch, yaml, PIL, sklearn, numpy, trickbench; print(trickbench.__file__)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(REPO / "src" / "trickbench" / "__init__.py")
    done = run(bare, "-c", "import shutil; print(shutil.which('snakemake'), shutil.which('dvc'))")
    assert done.stdout.split() == ["None", "None"], done.stdout


def test_benchmark_train_config_needs_no_jsonschema_and_matches_the_validated_one(bare):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from _common import train_config
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    overrides = {"model": "nin", "width": 24, "augmentations": ["flip", "crop"], "deterministic": True}
    validated = train_config(**overrides)  # jsonschema is here
    code = f"import json, sys; sys.path.insert(0, 'benchmarks'); from _common import train_config; " \
           f"print(json.dumps(train_config(**{overrides!r})))"
    done = run(bare, "-c", code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == validated
    done = run(bare, "-c", "import sys; sys.path.insert(0, 'benchmarks'); from _common import train_config; "
                           "train_config(modle='nin')")
    assert done.returncode != 0 and "unknown keys modle" in done.stderr


def test_gpu_check_without_cuda_says_so_exits_0_and_writes_nothing(bare, tmp_path):
    out = tmp_path / "gpu"
    done = run(bare, "benchmarks/gpu_check.py", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "no CUDA" in done.stdout and not out.exists()


def test_gpu_marked_tests_import_and_collect_there(bare):
    done = run(bare, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests/test_gpu_smoke.py",
               "tests/test_slots.py", timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "error" not in done.stdout.lower(), done.stdout[-3000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert "passed" in summary and "skipped" in summary, summary  # the helpers ran; the CUDA tests skipped


@pytest.mark.slow
@needs_cifar
def test_the_benchmarks_cpu_smoke_modes_run_there(bare):
    done = run(bare, "benchmarks/gpu_time_to_accuracy.py")
    assert done.returncode == 0 and done.stdout.startswith("SKIPPED gpu_time_to_accuracy: no CUDA device"), done.stderr
    done = run(bare, "benchmarks/gpu_time_to_accuracy.py", "--quick", "--force-cpu")  # default: --preset loop
    assert done.returncode == 0, done.stderr[-3000:]
    assert {"time_to_20pct_cpu", "preset_loop_cpu"} <= set(ratios(done.stdout)), done.stdout[-3000:]
    assert re.search(r"^PRESET paper_cifar10_epoch_s=[0-9.]+ paper_cifar10_preset_minutes=[0-9.]+", done.stdout, re.M)
    done = run(bare, "benchmarks/gpu_time_to_accuracy.py", "--quick", "--force-cpu", "--skip-time-to-accuracy",
               "--preset", "estimate")
    assert done.returncode == 1 and "runs Snakemake, which is not installed here" in done.stderr, done.stderr[-2000:]
    done = run(bare, "benchmarks/mfu.py", "--quick")
    assert done.returncode == 0 and "mfu_cpu_nin" in ratios(done.stdout), done.stderr[-3000:]
    done = run(bare, "benchmarks/throughput.py", "--quick", "--devices", "cpu", "--models", "small_cnn",
               "--ablations", "none", "--no-eval")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "throughput_cpu_small_cnn" in ratios(done.stdout)
    assert "trickbench (fp32, NHWC) " in done.stdout and "usual (fp32, NCHW) " in done.stdout
