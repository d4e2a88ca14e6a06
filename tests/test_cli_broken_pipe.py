"""`trickbench grid | head`: a reader that closes the pipe early stops the command quietly (no traceback)."""
from __future__ import annotations

import subprocess

from conftest import BIN, tiny_params, write_params


def test_grid_into_head_exits_quietly(tmp_path):
    # 6000 grid points print ~400 kB, far more than a pipe buffers: `head -1` exits while grid still writes
    params = tiny_params(studies={"many": {"axes": {"seed": list(range(6000))}}})
    path = write_params(tmp_path / "params.yaml", params)
    script = f'"{BIN / "trickbench"}" --params "{path}" grid | head -1; echo "grid exit: ${{PIPESTATUS[0]}}" >&2'
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout == "many/seed-0\n"
    assert done.stderr == "grid exit: 141\n"  # nothing else: no BrokenPipeError traceback, no "Exception ignored"


def test_grid_whole_output_still_arrives(tmp_path):
    path = write_params(tmp_path / "params.yaml", tiny_params())
    done = subprocess.run([str(BIN / "trickbench"), "--params", str(path), "grid"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"acts/activation-{a}__seed-{s}" for a in ("relu", "rrelu") for s in (0, 1)]
